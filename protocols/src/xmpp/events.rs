//! The chat events of complete stanzas, and the state stanzas teach us
//! (the bound JID, the rooms we are in and our nick there).

use std::collections::BTreeMap;

use super::jid;
use super::ns;
use super::tree::Element;
use crate::event::{ChatEvent, Direction, EventType};

/// At most this many rooms are remembered per connection.
const MAX_ROOMS: usize = 512;

/// The MUC rooms this connection is in: room bare JID -> our nick.
#[derive(Debug, Clone, Default)]
pub struct Rooms(BTreeMap<String, String>);

impl Rooms {
    pub fn contains(&self, room: &str) -> bool {
        self.0.contains_key(room)
    }

    fn nick(&self, room: &str) -> Option<&str> {
        self.0.get(room).map(String::as_str)
    }

    /// Learn from a presence: a join we send (`<x xmlns='…/muc'/>` to
    /// room/nick), and the room's answer about us (status 110), which gives
    /// the nick the room really uses, or says we left.
    pub fn on_presence(&mut self, dir: Direction, presence: &Element) {
        let leaving = presence.attr("type") == Some("unavailable");
        let (attr, marker) = match dir {
            Direction::Outgoing => ("to", presence.child(ns::MUC, "x").is_some()),
            Direction::Incoming => (
                "from",
                presence.child(ns::MUC_USER, "x").is_some_and(|x| {
                    x.children_named(ns::MUC_USER, "status")
                        .any(|s| s.attr("code") == Some("110"))
                }),
            ),
        };
        let Some(occupant) = presence.attr(attr) else {
            return;
        };
        let (room, Some(nick)) = (jid::bare(occupant), jid::resource(occupant)) else {
            return;
        };
        if leaving && (marker || dir == Direction::Outgoing) {
            self.0.remove(&room);
        } else if marker && (self.0.len() < MAX_ROOMS || self.0.contains_key(&room)) {
            self.0.insert(room, nick.to_string());
        }
    }
}

/// What events are named after.
pub struct Context<'a> {
    /// Our bare JID, lower-cased (empty before the binding).
    pub local: &'a str,
    pub rooms: &'a Rooms,
}

/// The full JID the server bound for us, from an `<iq type='result'>`.
pub fn bound_jid(iq: &Element) -> Option<String> {
    if iq.attr("type") != Some("result") {
        return None;
    }
    let jid = iq.child(ns::BIND, "bind")?.child(ns::BIND, "jid")?;
    Some(jid.text.trim().to_string()).filter(|j| !j.is_empty())
}

/// The message a stanza carries and the direction it went: the stanza
/// itself, or for a carbon copy (XEP-0280) the forwarded one. `None` for
/// archive results (XEP-0313: history, not new messages) and for carbons
/// that did not come from our own account.
pub fn carried<'e>(
    ctx: &Context<'_>,
    dir: Direction,
    message: &'e Element,
) -> Option<(&'e Element, Direction)> {
    if message.child_ns_prefix(ns::MAM_PREFIX, "result").is_some() {
        return None;
    }
    if dir == Direction::Incoming {
        for (name, carried_dir) in [
            ("sent", Direction::Outgoing),
            ("received", Direction::Incoming),
        ] {
            if let Some(carbon) = message.child(ns::CARBONS, name) {
                if message
                    .attr("from")
                    .is_some_and(|from| jid::bare(from) != ctx.local)
                {
                    return None;
                }
                let forwarded = carbon.child(ns::FORWARD, "forwarded")?;
                let inner = forwarded.children.iter().find(|c| c.name == "message")?;
                return Some((inner, carried_dir));
            }
        }
    }
    Some((message, dir))
}

/// The events of a `<message>` stanza.
pub fn message(ctx: &Context<'_>, dir: Direction, stanza: &Element) -> Vec<ChatEvent> {
    match carried(ctx, dir, stanza) {
        Some((message, dir)) => message_events(ctx, dir, message),
        None => Vec::new(),
    }
}

/// An event with no text in the conversation `message` (a start tag alone)
/// belongs to.
pub fn conversation_event(
    ctx: &Context<'_>,
    dir: Direction,
    message: &Element,
) -> Option<ChatEvent> {
    let conversation = conversation(ctx, dir, message)?;
    Some(ChatEvent {
        direction: dir,
        kind: EventType::Message,
        local_id: ctx.local.to_string(),
        remote_id: conversation.remote,
        group: conversation.group,
        prefix: String::new(),
        text: String::new(),
        encrypted: false,
    })
}

/// The party a message is exchanged with, as logged.
struct Conversation {
    remote: String,
    group: bool,
    prefix: String,
}

fn conversation(ctx: &Context<'_>, dir: Direction, message: &Element) -> Option<Conversation> {
    let peer = message.attr(match dir {
        Direction::Outgoing => "to",
        Direction::Incoming => "from",
    })?;
    let room = jid::bare(peer);
    let nick = jid::resource(peer);
    if message.attr("type") == Some("groupchat") {
        let mut prefix = String::new();
        if dir == Direction::Incoming {
            // The room echoes our own lines back (logged when they went out),
            // and replays its history on join.
            if nick.is_some() && ctx.rooms.nick(&room) == nick {
                return None;
            }
            if message.child(ns::DELAY, "delay").is_some()
                || message.child(ns::DELAY_LEGACY, "x").is_some()
            {
                return None;
            }
            if let Some(nick) = nick {
                prefix = format!("{nick}: ");
            }
        }
        return Some(Conversation {
            remote: room,
            group: true,
            prefix,
        });
    }
    // A private message with a room occupant is its own conversation.
    let remote = match nick {
        Some(nick) if ctx.rooms.contains(&room) || message.child(ns::MUC_USER, "x").is_some() => {
            format!("{room}/{}", nick.to_lowercase())
        }
        _ => room,
    };
    Some(Conversation {
        remote,
        group: false,
        prefix: String::new(),
    })
}

/// The end-to-end encryption a message uses, named for the log.
fn encryption(message: &Element) -> Option<&'static str> {
    if message.child(ns::OMEMO_LEGACY, "encrypted").is_some()
        || message
            .child_ns_prefix(ns::OMEMO_PREFIX, "encrypted")
            .is_some()
    {
        return Some("OMEMO");
    }
    if message.child(ns::OPENPGP, "openpgp").is_some() {
        return Some("OpenPGP (XEP-0373)");
    }
    if message.child(ns::PGP_LEGACY, "x").is_some() {
        return Some("OpenPGP (XEP-0027)");
    }
    if body(message).is_some_and(|b| b.text.starts_with("?OTR")) {
        return Some("OTR");
    }
    None
}

/// The first non-empty `<body>`.
pub fn body(message: &Element) -> Option<&Element> {
    message
        .children_named(&message.ns, "body")
        .find(|b| !b.text.is_empty())
}

fn message_events(ctx: &Context<'_>, dir: Direction, message: &Element) -> Vec<ChatEvent> {
    if message.attr("type") == Some("error") {
        return Vec::new();
    }
    let Some(conversation) = conversation(ctx, dir, message) else {
        return Vec::new();
    };
    let event = |kind: EventType, text: String, encrypted: bool| ChatEvent {
        direction: dir,
        kind,
        local_id: ctx.local.to_string(),
        remote_id: conversation.remote.clone(),
        group: conversation.group,
        prefix: conversation.prefix.clone(),
        text,
        encrypted,
    };
    if let Some(scheme) = encryption(message) {
        return vec![event(
            EventType::Message,
            format!("[{scheme} encrypted message]"),
            true,
        )];
    }
    let mut events = Vec::new();
    let urls: Vec<&str> = message
        .children_named(ns::OOB_X, "x")
        .filter_map(|x| x.child(ns::OOB_X, "url"))
        .map(|url| url.text.trim())
        .filter(|url| !url.is_empty())
        .collect();
    for url in &urls {
        events.push(event(EventType::File, file_at(url), false));
    }
    match body(message) {
        // A shared file's body is usually its URL: one event for it.
        Some(body) if !urls.contains(&body.text.trim()) => {
            events.push(event(EventType::Message, body.text.clone(), false))
        }
        Some(_) => {}
        None if !conversation.group && message.child(ns::CHATSTATES, "composing").is_some() => {
            events.push(event(EventType::Typing, String::new(), false))
        }
        None => {}
    }
    // A call proposed by Jingle Message Initiation (XEP-0353).
    if let Some(propose) = message.child(ns::JINGLE_MESSAGE, "propose") {
        if propose.children.iter().any(is_video) {
            events.push(event(EventType::Webcam, String::new(), false));
        }
    }
    events
}

/// The events of an `<iq>`: file offers (SI, Jingle), upload slot requests
/// and video calls.
pub fn iq(ctx: &Context<'_>, dir: Direction, iq: &Element) -> Vec<ChatEvent> {
    let set = iq.attr("type") == Some("set");
    let peer = iq.attr(match dir {
        Direction::Outgoing => "to",
        Direction::Incoming => "from",
    });
    let mut found: Vec<(EventType, String)> = Vec::new();
    for child in &iq.children {
        match (child.ns.as_str(), child.name.as_str()) {
            (ns::SI, "si") if set => {
                if let Some(file) = child.child(ns::SI_FILE, "file") {
                    found.push((
                        EventType::File,
                        file_text(file.attr("name"), file.attr("size")),
                    ));
                }
            }
            (ns::JINGLE, "jingle") if set && child.attr("action") == Some("session-initiate") => {
                jingle_offer(child, &mut found)
            }
            (ns::UPLOAD, "request") if dir == Direction::Outgoing => found.push((
                EventType::File,
                file_text(child.attr("filename"), child.attr("size")),
            )),
            (ns::UPLOAD_LEGACY, "request") if dir == Direction::Outgoing => {
                let text = |name| child.child(ns::UPLOAD_LEGACY, name).map(|c| c.text.trim());
                found.push((EventType::File, file_text(text("filename"), text("size"))))
            }
            (ns::OOB_IQ, "query") if set => {
                if let Some(url) = child.child(ns::OOB_IQ, "url") {
                    found.push((EventType::File, file_at(url.text.trim())));
                }
            }
            _ => {}
        }
    }
    found
        .into_iter()
        .map(|(kind, text)| ChatEvent {
            direction: dir,
            kind,
            local_id: ctx.local.to_string(),
            remote_id: peer.map(jid::bare).unwrap_or_default(),
            group: false,
            prefix: String::new(),
            text,
            encrypted: false,
        })
        .collect()
}

/// The files (XEP-0234) and the video (XEP-0167) a Jingle session offers.
fn jingle_offer(jingle: &Element, found: &mut Vec<(EventType, String)>) {
    let mut video = false;
    for content in jingle.children_named(ns::JINGLE, "content") {
        for description in content.children.iter().filter(|c| c.name == "description") {
            if description.ns.starts_with(ns::JINGLE_FILE_PREFIX) {
                let dns = description.ns.as_str();
                if let Some(file) = description.child(dns, "file") {
                    let text = |name| file.child(dns, name).map(|c| c.text.trim());
                    found.push((EventType::File, file_text(text("name"), text("size"))));
                }
            }
            video |= is_video(description);
        }
    }
    if video {
        found.push((EventType::Webcam, String::new()));
    }
}

fn is_video(description: &Element) -> bool {
    description.is(ns::JINGLE_RTP, "description") && description.attr("media") == Some("video")
}

/// "NAME SIZE bytes", as the other protocols log a file offer.
fn file_text(name: Option<&str>, size: Option<&str>) -> String {
    let name = name.unwrap_or("(no name)");
    match size.and_then(|s| s.parse::<u64>().ok()) {
        Some(size) => format!("{name} {size} bytes"),
        None => name.to_string(),
    }
}

/// A file shared by URL: its name (the URL's last path segment) and the URL.
fn file_at(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let name = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or(path);
    format!("{name} ({url})")
}
