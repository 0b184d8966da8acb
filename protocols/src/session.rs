//! The interface every protocol core implements.

use bytes::{Bytes, BytesMut};

use crate::event::{ChatEvent, Direction};

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
    /// Set when the session from now on carries data the parser must not look at
    /// (IRC STARTTLS, XMPP STARTTLS...), or that it lost sync after the frames
    /// returned here. Everything left in the buffer and every later byte is to
    /// be relayed untouched. The string says why, for the log.
    pub passthrough: Option<&'static str>,
}

/// The parser could not make sense of the stream and cannot resynchronise.
/// The caller relays the rest of the connection unchanged. Returned only when
/// nothing was taken from the buffer in that call; a parser that already split
/// frames off returns them with [`Feed::passthrough`] instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SyncLost(pub String);

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
    /// direction `dir`). Incomplete data stays in `buf` for the next call.
    /// Every consumed byte appears in exactly one returned frame, in order.
    fn feed(&mut self, dir: Direction, buf: &mut BytesMut) -> Result<Feed, SyncLost>;

    /// Re-encode `pdu` with a change, fixing any length fields. `None` when this
    /// PDU cannot be rewritten, in which case the caller forwards it unchanged.
    fn rewrite(&self, dir: Direction, pdu: &Pdu, change: Rewrite<'_>) -> Option<Bytes>;

    /// Bytes that, sent to the local client, show it `text` as if it came from
    /// `remote_id`. `None` when the protocol cannot inject a notice.
    fn notice_to_client(&self, remote_id: &str, text: &str) -> Option<Bytes>;
}

/// Create the protocol core for a new connection.
pub fn new_session(kind: ProtocolKind) -> Option<Box<dyn ProtocolSession>> {
    match kind {
        ProtocolKind::Irc => Some(Box::new(crate::irc::IrcSession::default())),
        ProtocolKind::Msn => Some(Box::new(crate::msn::MsnSession::default())),
        ProtocolKind::GaduGadu => Some(Box::new(crate::gadugadu::GaduGaduSession::default())),
        _ => None,
    }
}
