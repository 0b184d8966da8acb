//! The chat events a protocol reports.

/// Which way the bytes travel. `Outgoing` is from the local (monitored) client
/// to the server, the original's `outgoing = 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Outgoing,
    Incoming,
}

impl Direction {
    pub fn reverse(self) -> Self {
        match self {
            Direction::Outgoing => Direction::Incoming,
            Direction::Incoming => Direction::Outgoing,
        }
    }
}

/// Event types, numbered as in the original's log files and tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Message = 1,
    File = 2,
    Typing = 3,
    Webcam = 4,
}

impl EventType {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Its name in structured output (syslog, metrics, alerts).
    pub fn name(self) -> &'static str {
        match self {
            EventType::Message => "message",
            EventType::File => "file",
            EventType::Typing => "typing",
            EventType::Webcam => "webcam",
        }
    }
}

/// One chat event seen in a PDU.
///
/// Ids are as the protocol spelled them; the proxy lower-cases them before logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatEvent {
    pub direction: Direction,
    pub kind: EventType,
    pub local_id: String,
    pub remote_id: String,
    /// True for a group chat (IRC channel, MSN switchboard with several parties...).
    pub group: bool,
    /// What is logged before the text and is not part of it: the sender of an
    /// incoming group line (`nick: `), `/me ` for an IRC action. Filters do not see it.
    pub prefix: String,
    /// The text filters inspect and may rewrite: the message, or for a file
    /// transfer its name and size.
    pub text: String,
    /// The message is end-to-end encrypted (OMEMO, OpenPGP, OTR...): `text`
    /// only says so and with what; `block_encrypted` blocks it.
    pub encrypted: bool,
}

impl ChatEvent {
    /// The event data as logged: prefix and text.
    pub fn event_data(&self) -> String {
        format!("{}{}", self.prefix, self.text)
    }
}
