//! The interface every protocol core implements.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::event::{ChatEvent, Direction};
use crate::handoff::Handoff;

/// The protocols IMSpector knows, with the names the original used for log
/// directories and the `protocolname` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolKind {
    Msn,
    IcqAim,
    Yahoo,
    Irc,
    GaduGadu,
    Jabber,
}

impl ProtocolKind {
    pub const ALL: [ProtocolKind; 6] = [
        ProtocolKind::Msn,
        ProtocolKind::IcqAim,
        ProtocolKind::Yahoo,
        ProtocolKind::Irc,
        ProtocolKind::GaduGadu,
        ProtocolKind::Jabber,
    ];

    /// Name used in log paths and SQL rows.
    pub fn log_name(self) -> &'static str {
        match self {
            ProtocolKind::Msn => "MSN",
            ProtocolKind::IcqAim => "ICQ-AIM",
            ProtocolKind::Yahoo => "Yahoo",
            ProtocolKind::Irc => "IRC",
            ProtocolKind::GaduGadu => "Gadu-Gadu",
            ProtocolKind::Jabber => "Jabber",
        }
    }

    /// Prefix of the `<prefix>_protocol` and `<prefix>_ports` options.
    pub fn config_prefix(self) -> &'static str {
        match self {
            ProtocolKind::Msn => "msn",
            ProtocolKind::IcqAim => "icq",
            ProtocolKind::Yahoo => "yahoo",
            ProtocolKind::Irc => "irc",
            ProtocolKind::GaduGadu => "gg",
            ProtocolKind::Jabber => "jabber",
        }
    }

    /// The ports the original listened for.
    pub fn default_ports(self) -> &'static [u16] {
        match self {
            ProtocolKind::Msn => &[1863],
            ProtocolKind::IcqAim => &[5190],
            ProtocolKind::Yahoo => &[5050],
            ProtocolKind::Irc => &[6667],
            ProtocolKind::GaduGadu => &[8074],
            ProtocolKind::Jabber => &[5222, 5223],
        }
    }

    /// Whether clients of this protocol send keep-alives at least every few
    /// minutes even when nobody chats (IRC servers PING, MSN clients PNG every
    /// 50 s, Gadu-Gadu clients GG_PING, OSCAR clients FLAP keep-alives, Yahoo
    /// clients PING). XMPP has no mandatory keep-alive: a quiet XMPP session
    /// may be silent for hours.
    pub fn has_keepalives(self) -> bool {
        self != ProtocolKind::Jabber
    }

    pub fn from_config_prefix(prefix: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.config_prefix() == prefix)
    }
}

/// A unit of protocol output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Bytes to forward exactly as they are.
    Opaque(Bytes),
    /// A protocol data unit that carries chat events.
    Pdu(Pdu),
}

/// A PDU: its exact bytes and the events found in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    pub bytes: Bytes,
    pub events: Vec<ChatEvent>,
}

/// What one call to [`ProtocolSession::feed`] produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Feed {
    pub frames: Vec<Frame>,
    /// Set when the core looks at nothing more in this connection, after the
    /// frames returned here. Everything left in the buffer and every later byte
    /// of both directions is relayed untouched (or handed to TLS).
    pub stop: Option<Stop>,
}

impl Feed {
    /// No frames, and a stop: the core saw nothing it could use.
    pub fn stopped(stop: Stop) -> Self {
        Feed {
            frames: Vec::new(),
            stop: Some(stop),
        }
    }
}

/// Why a core stopped inspecting a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The session switched to TLS (an accepted STARTTLS): what follows is
    /// encrypted. The string names the exchange, for the log.
    Encrypted(&'static str),
    /// The bytes are not this protocol as the core knows it, or it lost sync;
    /// the string says what it saw.
    NotThisProtocol(String),
    /// A PDU longer than the core's bound on it: the core will not hold it,
    /// so it and the rest of the connection cannot be inspected. `why` names
    /// the PDU and its size; `conversation` is an event of the conversation it
    /// belongs to (its text is not used), when the core can tell, so that the
    /// relay logs there that inspection stopped.
    TooLarge {
        why: String,
        conversation: Option<Box<ChatEvent>>,
    },
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Encrypted(what) => write!(f, "{what}: the session is encrypted from here"),
            Stop::NotThisProtocol(why) => write!(f, "{why}"),
            Stop::TooLarge { why, .. } => write!(f, "{why}: too large to inspect"),
        }
    }
}

/// A requested change to a PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite<'a> {
    /// Replace the text of every event of the PDU with this one.
    Text(&'a str),
}

/// The sans-IO core of one protocol for one connection.
pub trait ProtocolSession: Send {
    /// The current time (UNIX seconds), given before each `feed`: the cores
    /// have no clock, and a few things are named by time (MSN group chats).
    fn set_now(&mut self, _unix_secs: i64) {}

    /// Consume what can be parsed from the front of `buf` (bytes that arrived in
    /// direction `dir`). Every consumed byte appears in exactly one returned
    /// frame, in order.
    ///
    /// What stays in `buf` is held: a core leaves bytes there only while they
    /// can still become a PDU that carries events or changes its state, and
    /// within its bound on a PDU's size. The relay does not let held bytes
    /// wait: after `hold_timeout_ms` it forwards them, keeps them in `buf`, and
    /// the core frames them as usual once the PDU is complete (the relay then
    /// sends only the part it had not forwarded, and logs the events). So a
    /// core needs no timer of its own and a pause cannot hide a message.
    fn feed(&mut self, dir: Direction, buf: &mut BytesMut) -> Feed;

    /// The server name the client asked for in the protocol itself (the XMPP
    /// stream's `to`), for the certificate when TLS after a STARTTLS is
    /// intercepted. After [`Stop::Encrypted`] a relay that intercepts the TLS
    /// keeps feeding the same core the decrypted bytes, so a core that returns
    /// it must be ready for the plaintext that follows (a new XMPP stream).
    fn server_name(&self) -> Option<&str> {
        None
    }

    /// The process-wide table through which a connection learns the user a
    /// token of an earlier connection stood for (OSCAR's login cookie). The
    /// relay gives it once, before the first `feed`.
    fn share_ids(&mut self, _ids: Arc<dyn Handoff>) {}

    /// Bytes the core keeps of its own between feeds, beyond what stays in
    /// `buf` (an MSN P2P INVITE being reassembled from its chunks): the relay
    /// counts them in `max_buffered_bytes` with the held bytes.
    fn held(&self) -> usize {
        0
    }

    /// Re-encode `pdu` with a change, fixing any length fields. `None` when this
    /// PDU cannot be rewritten, in which case the relay blocks it: what a
    /// filter changed never goes out as it was.
    fn rewrite(&self, dir: Direction, pdu: &Pdu, change: Rewrite<'_>) -> Option<Bytes>;

    /// Bytes that, sent to the local client, show it `text` as if it came from
    /// `remote_id`. `None` when the protocol cannot inject a notice.
    fn notice_to_client(&self, remote_id: &str, text: &str) -> Option<Bytes>;
}
