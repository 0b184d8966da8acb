//! MSN Messenger (MSNP2 to MSNP21), notification server and switchboard.
//!
//! Framing: CRLF-terminated command lines `CMD TrID args`; some commands carry
//! a payload whose byte count is their last argument (see [`command`]).
//! The notification server (NS) and the switchboard (SB, the chat rooms up to
//! MSNP18) both run on port 1863; the first command of the client tells them
//! apart. Messages are MIME payloads of `MSG` on a switchboard, of `UUM`/`UBM`
//! (Yahoo interop) and, in MSNP21, of `SDG` on the notification server.
//! Everything that is not a chat event is forwarded byte for byte.

mod command;
mod content;
mod mime;
mod p2p;

use bytes::{Bytes, BytesMut};

use crate::event::{ChatEvent, Direction, EventType};
use crate::session::{Feed, Frame, Pdu, ProtocolSession, Rewrite, Stop};
use command::{bare_address, may_be_command, Line};
use content::{Content, Sdg};

pub use command::{MAX_LINE, MAX_PAYLOAD};

/// Which server the connection talks to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Not known yet (or a capture that starts mid-session).
    #[default]
    Unknown,
    Notification,
    Switchboard,
}

/// The display name injected notices come from.
const NOTICE_NICK: &str = "IMSpector";

#[derive(Debug, Default, Clone)]
pub struct MsnSession {
    role: Role,
    /// The local user's address, without endpoint.
    local: Option<String>,
    /// The other parties of the switchboard, in the order they joined.
    participants: Vec<String>,
    /// The address the client called (`CAL`), until someone joins.
    called: Option<String>,
    /// The time the proxy last gave us (UNIX seconds), naming group chats.
    now: i64,
    /// Set once the switchboard has had more than one other party: the remote id
    /// of the conversation from then on.
    group: Option<String>,
    /// P2P INVITEs being reassembled, per direction.
    slp: [p2p::Assembler; 2],
}

/// Who a conversation is with, as logged.
struct Peer {
    remote_id: String,
    group: bool,
    prefix: String,
}

impl MsnSession {
    fn local_id(&self) -> String {
        self.local.clone().unwrap_or_default()
    }

    /// Update the state from a command and return its chat events.
    fn inspect(&mut self, dir: Direction, line: &Line<'_>, payload: &[u8]) -> Vec<ChatEvent> {
        match (dir, line.command()) {
            (Direction::Outgoing, "VER") if self.role == Role::Unknown => {
                self.role = Role::Notification;
            }
            (Direction::Outgoing, "USR") => self.client_usr(line),
            // `USR trid OK email ...` confirms who we are (NS and SB alike).
            (Direction::Incoming, "USR") if line.arg(2) == Some("OK") => {
                if let Some(addr) = line.arg(3).filter(|a| a.contains('@')) {
                    self.local = Some(bare_address(addr).to_string());
                }
            }
            (Direction::Outgoing, "ANS") => {
                // ANS trid email ticket sid
                self.role = Role::Switchboard;
                if let Some(addr) = line.arg(2) {
                    self.local = Some(bare_address(addr).to_string());
                }
            }
            (Direction::Outgoing, "CAL") => {
                if let Some(addr) = line.arg(2) {
                    self.called = Some(bare_address(addr).to_string());
                }
            }
            // JOI email nick [caps]; IRO trid n total email nick [caps]
            (Direction::Incoming, "JOI") => self.join(line.arg(1)),
            (Direction::Incoming, "IRO") => self.join(line.arg(4)),
            (Direction::Incoming, "BYE") => {
                if let Some(addr) = line.arg(1) {
                    let addr = bare_address(addr);
                    self.participants.retain(|p| !p.eq_ignore_ascii_case(addr));
                }
            }
            (_, "MSG") if self.role != Role::Notification => {
                // Outgoing `MSG trid ack len`, incoming `MSG email nick len`.
                let sender = match dir {
                    Direction::Outgoing => None,
                    Direction::Incoming => line.arg(1).map(bare_address),
                };
                let peer = self.switchboard_peer(sender);
                return self.events(dir, content::of_mime(payload), payload, peer);
            }
            // Messages to and from Yahoo users: `UUM trid email network type len`
            // and `UBM email network type len`.
            (Direction::Outgoing, "UUM") | (Direction::Incoming, "UBM") => {
                let to = if dir == Direction::Outgoing { 2 } else { 1 };
                let Some(remote) = line.arg(to) else {
                    return Vec::new();
                };
                let peer = Peer {
                    remote_id: bare_address(remote).to_string(),
                    group: false,
                    prefix: String::new(),
                };
                return self.events(dir, content::of_mime(payload), payload, peer);
            }
            (_, "SDG") => return self.sdg(dir, payload),
            _ => {}
        }
        Vec::new()
    }

    fn client_usr(&mut self, line: &Line<'_>) {
        match (line.arg(2), line.arg(3), line.arg(4)) {
            // NS login: USR trid TWN|MD5|SSO I email
            (Some(_), Some("I"), Some(addr)) => {
                self.role = Role::Notification;
                self.local = Some(bare_address(addr).to_string());
            }
            // SB login: USR trid email ticket
            (Some(addr), Some(_), None) if addr.contains('@') => {
                self.role = Role::Switchboard;
                self.local = Some(bare_address(addr).to_string());
            }
            _ => {}
        }
    }

    fn join(&mut self, addr: Option<&str>) {
        let Some(addr) = addr.map(bare_address) else {
            return;
        };
        // From MSNP18 the user's own other endpoints join too.
        let is_self = self
            .local
            .as_deref()
            .is_some_and(|l| l.eq_ignore_ascii_case(addr));
        if is_self
            || self
                .participants
                .iter()
                .any(|p| p.eq_ignore_ascii_case(addr))
        {
            return;
        }
        self.participants.push(addr.to_string());
        if self.participants.len() > 1 && self.group.is_none() {
            // As the original: named after the time the group formed.
            self.group = Some(format!("groupchat-{}", self.now));
        }
    }

    /// The remote party of a switchboard message from `sender` (None: our own).
    /// The conversation a message command at the start of `buf` belongs
    /// to, for a payload too large to inspect.
    fn conversation_of(&self, dir: Direction, buf: &[u8]) -> Option<ChatEvent> {
        let nl = memchr::memchr(b'\n', &buf[..buf.len().min(MAX_LINE)])?;
        let line = Line::parse(&buf[..=nl]);
        let peer = match (dir, line.command()) {
            (_, "MSG") if self.role != Role::Notification => {
                let sender = match dir {
                    Direction::Outgoing => None,
                    Direction::Incoming => line.arg(1).map(bare_address),
                };
                self.switchboard_peer(sender)
            }
            (Direction::Outgoing, "UUM") => Peer {
                remote_id: bare_address(line.arg(2)?).to_string(),
                group: false,
                prefix: String::new(),
            },
            (Direction::Incoming, "UBM") => Peer {
                remote_id: bare_address(line.arg(1)?).to_string(),
                group: false,
                prefix: String::new(),
            },
            _ => return None,
        };
        Some(ChatEvent {
            direction: dir,
            kind: EventType::Message,
            local_id: self.local_id(),
            remote_id: peer.remote_id,
            group: peer.group,
            prefix: String::new(),
            text: String::new(),
            encrypted: false,
        })
    }

    fn switchboard_peer(&self, sender: Option<&str>) -> Peer {
        if let Some(group) = &self.group {
            return Peer {
                remote_id: group.clone(),
                group: true,
                prefix: sender.map(|s| format!("{s}: ")).unwrap_or_default(),
            };
        }
        let remote = sender
            .or(self.participants.first().map(String::as_str))
            .or(self.called.as_deref())
            .unwrap_or_default();
        Peer {
            remote_id: remote.to_string(),
            group: false,
            prefix: String::new(),
        }
    }

    /// MSNP21 messages: the routing headers say who talks to whom.
    fn sdg(&mut self, dir: Direction, payload: &[u8]) -> Vec<ChatEvent> {
        let Some(sdg) = Sdg::parse(payload) else {
            return Vec::new();
        };
        let (Some(from), Some(to)) = (sdg.routing.get("From"), sdg.routing.get("To")) else {
            return Vec::new();
        };
        let to_group = is_group_address(to);
        let peer = match (dir, to_group) {
            (Direction::Outgoing, group) => Peer {
                remote_id: bare_address(to).to_string(),
                group,
                prefix: String::new(),
            },
            (Direction::Incoming, true) => Peer {
                remote_id: bare_address(to).to_string(),
                group: true,
                prefix: format!("{}: ", bare_address(from)),
            },
            (Direction::Incoming, false) => Peer {
                remote_id: bare_address(from).to_string(),
                group: false,
                prefix: String::new(),
            },
        };
        let content = sdg.content(payload.len());
        let mut events = self.events(dir, content, payload, peer);
        if self.local.is_none() {
            // Before (or without) a login we saw, the routing header names us.
            let me = match dir {
                Direction::Outgoing => Some(from),
                Direction::Incoming => (!to_group).then_some(to),
            };
            for e in &mut events {
                e.local_id = me.map(bare_address).unwrap_or_default().to_string();
            }
        }
        events
    }

    fn events(
        &mut self,
        dir: Direction,
        content: Content,
        payload: &[u8],
        peer: Peer,
    ) -> Vec<ChatEvent> {
        let (kind, text) = match content {
            Content::Text { body, charset } => (EventType::Message, charset.decode(&payload[body])),
            Content::Typing => (EventType::Typing, String::new()),
            Content::File(text) => (EventType::File, text),
            Content::Webcam => (EventType::Webcam, String::new()),
            Content::P2p { version, body } => {
                let Some(slp) = p2p::slp_data(&payload[body], version) else {
                    return Vec::new();
                };
                match self.slp[dir_index(dir)].push(slp) {
                    Some(p2p::Invite::File { name, size }) => {
                        (EventType::File, format!("{name} {size} bytes"))
                    }
                    Some(p2p::Invite::Webcam) => (EventType::Webcam, String::new()),
                    None => return Vec::new(),
                }
            }
            Content::Other => return Vec::new(),
        };
        vec![ChatEvent {
            direction: dir,
            kind,
            local_id: self.local_id(),
            remote_id: peer.remote_id,
            group: peer.group,
            prefix: peer.prefix,
            text,
            encrypted: false,
        }]
    }
}

/// MSNP21 addresses of circles (9:), temporary groups (10:) and threads (19:).
fn is_group_address(addr: &str) -> bool {
    matches!(addr.split_once(':'), Some(("9" | "10" | "19", _)))
}

fn dir_index(dir: Direction) -> usize {
    match dir {
        Direction::Outgoing => 0,
        Direction::Incoming => 1,
    }
}

/// Split one command (line and payload) off the front of `buf`, if complete.
/// An error says why the stream is not MSN.
fn next_command(buf: &[u8]) -> Result<Option<(usize, usize)>, Stop> {
    let too_large = |why| Stop::TooLarge {
        why,
        conversation: None,
    };
    let Some(nl) = memchr::memchr(b'\n', &buf[..buf.len().min(MAX_LINE + 1)]) else {
        if buf.len() > MAX_LINE {
            return Err(too_large(format!(
                "MSN command line longer than {MAX_LINE} bytes"
            )));
        }
        if !may_be_command(buf) {
            return Err(Stop::NotThisProtocol(
                "the stream does not start with an MSN command".into(),
            ));
        }
        return Ok(None);
    };
    let line_end = nl + 1;
    let payload = Line::parse(&buf[..line_end])
        .payload_len()
        .map_err(too_large)?;
    let end = line_end + payload;
    Ok((buf.len() >= end).then_some((line_end, end)))
}

impl ProtocolSession for MsnSession {
    fn set_now(&mut self, unix_secs: i64) {
        self.now = unix_secs;
    }

    fn held(&self) -> usize {
        self.slp.iter().map(p2p::Assembler::held).sum()
    }

    fn feed(&mut self, dir: Direction, buf: &mut BytesMut) -> Feed {
        // First find the commands, then split the buffer. Runs of commands
        // without events become one opaque frame.
        let mut parts: Vec<(usize, Vec<ChatEvent>)> = Vec::new();
        let mut stop = None;
        let mut pos = 0;
        loop {
            let (line_end, end) = match next_command(&buf[pos..]) {
                Ok(Some(found)) => found,
                Ok(None) => break,
                // The commands before the bad one are delivered and logged.
                Err(Stop::TooLarge { why, .. }) => {
                    let conversation = self.conversation_of(dir, &buf[pos..]).map(Box::new);
                    stop = Some(Stop::TooLarge { why, conversation });
                    break;
                }
                Err(other) => {
                    stop = Some(other);
                    break;
                }
            };
            let line = Line::parse(&buf[pos..pos + line_end]);
            let events = self.inspect(dir, &line, &buf[pos + line_end..pos + end]);
            match parts.last_mut() {
                Some((len, last)) if last.is_empty() && events.is_empty() => *len += end,
                _ => parts.push((end, events)),
            }
            pos += end;
        }
        let frames = parts
            .into_iter()
            .map(|(len, events)| {
                let bytes = buf.split_to(len).freeze();
                if events.is_empty() {
                    Frame::Opaque(bytes)
                } else {
                    Frame::Pdu(Pdu { bytes, events })
                }
            })
            .collect();
        Feed { frames, stop }
    }

    fn rewrite(&self, _dir: Direction, pdu: &Pdu, change: Rewrite<'_>) -> Option<Bytes> {
        let Rewrite::Text(new_text) = change;
        let (line_end, end) = next_command(&pdu.bytes).ok()??;
        let line = Line::parse(&pdu.bytes[..line_end]);
        let payload = &pdu.bytes[line_end..end];
        let (prefix, content) = match line.command() {
            "SDG" => {
                let sdg = Sdg::parse(payload)?;
                let content = sdg.content(payload.len());
                let Content::Text { charset, .. } = content else {
                    return None;
                };
                let body = charset.encode(new_text)?;
                let mut head = payload[..sdg.messaging_at].to_vec();
                let messaging = &payload[sdg.messaging_at..sdg.body_at];
                head.extend(if sdg.messaging.get("Content-Length").is_some() {
                    mime::set_header(messaging, "Content-Length", &body.len().to_string())
                } else {
                    messaging.to_vec()
                });
                (head, body)
            }
            _ => {
                let Content::Text { body, charset } = content::of_mime(payload) else {
                    return None;
                };
                (payload[..body.start].to_vec(), charset.encode(new_text)?)
            }
        };
        let mut out = line.with_payload_len(prefix.len() + content.len());
        out.extend_from_slice(&prefix);
        out.extend_from_slice(&content);
        Some(Bytes::from(out))
    }

    fn notice_to_client(&self, remote_id: &str, text: &str) -> Option<Bytes> {
        if self.role != Role::Switchboard {
            return None;
        }
        // In a group chat the notice comes from a participant the client knows.
        let from = if self.group.as_deref() == Some(remote_id) {
            self.participants.first()?.as_str()
        } else {
            remote_id
        };
        if from.is_empty() || from.contains(|c: char| c.is_ascii_whitespace()) {
            return None;
        }
        let payload =
            format!("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n{text}");
        let out = format!("MSG {from} {NOTICE_NICK} {}\r\n{payload}", payload.len());
        Some(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests;
