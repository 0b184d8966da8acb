//! The chat events of each inspected service, from its key/value pairs.

use super::packet::{service, Header, Pair};
use super::{text, Room, YahooSession};
use crate::event::{ChatEvent, Direction, EventType};

/// Keys naming the sender of a packet, in the order they are preferred: a
/// client names itself with 1 (or 0), the server names the other party with 4.
const SENDER_OUT: [u32; 3] = [1, 0, 4];
const SENDER_IN: [u32; 3] = [4, 1, 0];
const RECIPIENT: u32 = 5;
const UTF8: u32 = 97;

/// The key of the text a filter may rewrite, by service.
pub fn text_key(service: u16) -> Option<u32> {
    match service {
        service::MESSAGE | service::CONFMSG => Some(14),
        service::COMMENT => Some(117),
        _ => None,
    }
}

fn value<'a>(pairs: &[Pair<'a>], key: u32) -> Option<&'a [u8]> {
    pairs.iter().find(|p| p.key == key).map(|p| p.value)
}

fn values<'a>(pairs: &'a [Pair<'a>], key: u32) -> impl Iterator<Item = &'a [u8]> + 'a {
    pairs.iter().filter(move |p| p.key == key).map(|p| p.value)
}

/// An id as logged: lower case, like the original.
fn id(bytes: &[u8]) -> String {
    text::name(bytes).to_lowercase()
}

pub fn is_utf8(pairs: &[Pair<'_>]) -> bool {
    value(pairs, UTF8) == Some(b"1")
}

fn sender(dir: Direction, pairs: &[Pair<'_>]) -> Option<String> {
    let keys = match dir {
        Direction::Outgoing => SENDER_OUT,
        Direction::Incoming => SENDER_IN,
    };
    keys.iter()
        .find_map(|&k| value(pairs, k))
        .filter(|v| !v.is_empty())
        .map(id)
}

/// The messages of a packet. A message packet may carry several (offline
/// messages: sender, recipient, text and time, again and again): a sender
/// key after a text starts the next one. Other services carry one.
pub fn records<'p, 'a>(service: u16, pairs: &'p [Pair<'a>]) -> Vec<&'p [Pair<'a>]> {
    if service != service::MESSAGE {
        return vec![pairs];
    }
    let mut out = Vec::new();
    let (mut start, mut has_text) = (0, false);
    for (i, pair) in pairs.iter().enumerate() {
        if has_text && matches!(pair.key, 0 | 1 | 4) {
            out.push(&pairs[start..i]);
            (start, has_text) = (i, false);
        }
        has_text |= pair.key == 14;
    }
    out.push(&pairs[start..]);
    out
}

/// `NAME SIZE bytes`, the event text of a file offer (`NAME` when the size is not told).
fn file_text(name: &[u8], size: Option<&[u8]>) -> String {
    let name = text::name(name);
    match size.map(text::name) {
        Some(size) if !size.is_empty() => format!("{name} {size} bytes"),
        _ => name,
    }
}

/// Who a one-to-one event is between: (local, remote) pairs, one per
/// recipient of what the client sends.
struct Ends(Vec<(String, String)>);

impl YahooSession {
    fn local_or(&self, id: Option<String>) -> String {
        id.or_else(|| self.local.clone()).unwrap_or_default()
    }

    fn ends(&self, dir: Direction, pairs: &[Pair<'_>]) -> Ends {
        let from = sender(dir, pairs);
        let mut to = values(pairs, RECIPIENT).filter(|v| !v.is_empty()).map(id);
        Ends(match dir {
            Direction::Outgoing => {
                let local = self.local_or(from);
                to.map(|remote| (local.clone(), remote)).collect()
            }
            Direction::Incoming => match from {
                Some(remote) => vec![(self.local_or(to.next()), remote)],
                None => Vec::new(),
            },
        })
    }

    fn one_to_one(
        &self,
        dir: Direction,
        kind: EventType,
        pairs: &[Pair<'_>],
        text: String,
    ) -> Vec<ChatEvent> {
        self.ends(dir, pairs)
            .0
            .into_iter()
            .map(|(local_id, remote_id)| ChatEvent {
                direction: dir,
                kind,
                local_id,
                remote_id,
                group: false,
                prefix: String::new(),
                text: text.clone(),
                encrypted: false,
            })
            .collect()
    }

    /// Update the state from one packet and return its chat events.
    pub(super) fn inspect(
        &mut self,
        dir: Direction,
        header: &Header,
        pairs: &[Pair<'_>],
    ) -> Vec<ChatEvent> {
        if dir == Direction::Outgoing {
            self.note_local(header.service, pairs);
        }
        match header.service {
            service::MESSAGE => records(service::MESSAGE, pairs)
                .into_iter()
                .flat_map(|record| self.message(dir, record))
                .collect(),
            service::NOTIFY => self.notify(dir, pairs),
            service::FILETRANSFER | service::P2PFILEXFER => self.file(dir, pairs),
            service::FILETRANS_15 => self.file_15(dir, pairs),
            service::CONFMSG => self.conference_message(dir, pairs),
            service::CONFINVITE..=service::CONFADDINVITE => {
                self.conference_member(dir, header.service, pairs);
                Vec::new()
            }
            service::COMMENT => self.chat_message(dir, pairs),
            _ => Vec::new(),
        }
    }

    /// The conversation a packet belongs to, from its first pairs (for a
    /// packet too large to inspect): an event without text.
    pub(super) fn conversation_of(
        &self,
        dir: Direction,
        service: u16,
        pairs: &[Pair<'_>],
    ) -> Option<ChatEvent> {
        let room_key = match service {
            service::CONFINVITE..=service::CONFMSG => Some(57),
            service::COMMENT => Some(104),
            _ => None,
        };
        let (local_id, remote_id, group) = match room_key {
            Some(key) => {
                let room = value(pairs, key).map(id).filter(|r| !r.is_empty())?;
                (
                    self.local_or(value(pairs, 1).filter(|v| !v.is_empty()).map(id)),
                    room,
                    true,
                )
            }
            None => {
                let (local, remote) = self
                    .ends(dir, records(service, pairs)[0])
                    .0
                    .into_iter()
                    .next()?;
                (local, remote, false)
            }
        };
        Some(ChatEvent {
            direction: dir,
            kind: EventType::Message,
            local_id,
            remote_id,
            group,
            prefix: String::new(),
            text: String::new(),
            encrypted: false,
        })
    }

    /// The login names the local user (key 1 of AUTH, 0 or 1 of AUTHRESP);
    /// before or without it, the first client packet that names its sender.
    fn note_local(&mut self, service: u16, pairs: &[Pair<'_>]) {
        let from = sender(Direction::Outgoing, pairs);
        if from.is_some()
            && (self.local.is_none() || matches!(service, service::AUTH | service::AUTHRESP))
        {
            self.local = from;
        }
    }

    fn message(&self, dir: Direction, record: &[Pair<'_>]) -> Vec<ChatEvent> {
        match value(record, 14).filter(|t| !t.is_empty()) {
            Some(t) => {
                let text = text::decode(t, is_utf8(record));
                self.one_to_one(dir, EventType::Message, record, text)
            }
            None => Vec::new(),
        }
    }

    /// NOTIFY: key 49 says what. TYPING with key 13 = 1 is typing in progress
    /// (0 is stopped typing, not an event); WEBCAMINVITE is a webcam invitation.
    fn notify(&self, dir: Direction, pairs: &[Pair<'_>]) -> Vec<ChatEvent> {
        let kind = match value(pairs, 49) {
            Some(b"TYPING") if value(pairs, 13) == Some(b"1") => EventType::Typing,
            Some(b"WEBCAMINVITE") => EventType::Webcam,
            _ => return Vec::new(),
        };
        self.one_to_one(dir, kind, pairs, String::new())
    }

    /// FILETRANSFER and P2PFILEXFER: name 27, size 28. A P2P exchange has
    /// several packets; key 13 = 1 (or none) is the offer.
    fn file(&self, dir: Direction, pairs: &[Pair<'_>]) -> Vec<ChatEvent> {
        let Some(name) = value(pairs, 27).filter(|n| !n.is_empty()) else {
            return Vec::new();
        };
        if !matches!(value(pairs, 13), None | Some(b"1")) {
            return Vec::new();
        }
        let text = file_text(name, value(pairs, 28));
        self.one_to_one(dir, EventType::File, pairs, text)
    }

    /// FILETRANS_15 (YMSG 15 and later): key 222 = 1 is an offer of one or
    /// more files, each a name (27) followed by its size (28).
    fn file_15(&self, dir: Direction, pairs: &[Pair<'_>]) -> Vec<ChatEvent> {
        if value(pairs, 222) != Some(b"1") {
            return Vec::new();
        }
        let mut files: Vec<(&[u8], Option<&[u8]>)> = Vec::new();
        for pair in pairs {
            match (pair.key, files.last_mut()) {
                (27, _) => files.push((pair.value, None)),
                (28, Some((_, size @ None))) => *size = Some(pair.value),
                _ => {}
            }
        }
        files
            .into_iter()
            .filter(|(name, _)| !name.is_empty())
            .flat_map(|(name, size)| {
                self.one_to_one(dir, EventType::File, pairs, file_text(name, size))
            })
            .collect()
    }

    /// CONFMSG: room 57, text 14; the client names the members (53), the
    /// server the sender (3).
    fn conference_message(&mut self, dir: Direction, pairs: &[Pair<'_>]) -> Vec<ChatEvent> {
        let Some(room) = value(pairs, 57).map(text::name).filter(|r| !r.is_empty()) else {
            return Vec::new();
        };
        let member_key = match dir {
            Direction::Outgoing => 53,
            Direction::Incoming => 3,
        };
        let member = value(pairs, member_key).map(text::name);
        self.groups.note(Room::Conference, &room, member.as_deref());
        let Some(body) = value(pairs, 14).filter(|t| !t.is_empty()) else {
            return Vec::new();
        };
        let (local, prefix) = match dir {
            Direction::Outgoing => (sender(dir, pairs), String::new()),
            // The server names the local user with key 1.
            Direction::Incoming => (
                value(pairs, 1).filter(|v| !v.is_empty()).map(id),
                member
                    .map(|m| format!("{}: ", m.to_lowercase()))
                    .unwrap_or_default(),
            ),
        };
        vec![ChatEvent {
            direction: dir,
            kind: EventType::Message,
            local_id: self.local_or(local),
            remote_id: room.to_lowercase(),
            group: true,
            prefix,
            text: text::decode(body, is_utf8(pairs)),
            encrypted: false,
        }]
    }

    /// Invitations, logons and logoffs of a conference (room 57) tell who else
    /// is in it: the inviter (50) or the newcomer (53) from the server, the
    /// invitees (52) or members (3) from the client.
    fn conference_member(&mut self, dir: Direction, service: u16, pairs: &[Pair<'_>]) {
        let Some(room) = value(pairs, 57).map(text::name) else {
            return;
        };
        let key = match (dir, service) {
            (Direction::Incoming, service::CONFINVITE | service::CONFADDINVITE) => 50,
            (Direction::Incoming, _) => 53,
            (Direction::Outgoing, service::CONFINVITE | service::CONFADDINVITE) => 52,
            (Direction::Outgoing, _) => 3,
        };
        let member = value(pairs, key).map(text::name);
        self.groups.note(Room::Conference, &room, member.as_deref());
    }

    /// COMMENT, a chat room line: room 104, text 117, sender 109 (from the
    /// server), 124 = 2 for an emote (`/me`).
    fn chat_message(&mut self, dir: Direction, pairs: &[Pair<'_>]) -> Vec<ChatEvent> {
        let Some(room) = value(pairs, 104).map(text::name).filter(|r| !r.is_empty()) else {
            return Vec::new();
        };
        let member = match dir {
            Direction::Outgoing => None,
            Direction::Incoming => value(pairs, 109).map(text::name).filter(|m| !m.is_empty()),
        };
        self.groups.note(Room::Chat, &room, member.as_deref());
        let Some(body) = value(pairs, 117).filter(|t| !t.is_empty()) else {
            return Vec::new();
        };
        let mut prefix = member
            .map(|m| format!("{}: ", m.to_lowercase()))
            .unwrap_or_default();
        if value(pairs, 124) == Some(b"2") {
            prefix.push_str("/me ");
        }
        let local = value(pairs, 1).filter(|v| !v.is_empty()).map(id);
        vec![ChatEvent {
            direction: dir,
            kind: EventType::Message,
            local_id: self.local_or(local),
            remote_id: room.to_lowercase(),
            group: true,
            prefix,
            text: text::decode(body, is_utf8(pairs)),
            encrypted: false,
        }]
    }
}
