//! Pure protocol cores for IMSpector.
//!
//! Each protocol is a state machine that is fed the bytes of one direction of a
//! connection and returns [`Frame`]s: opaque bytes that are forwarded as they are,
//! or PDUs that carry chat [`ChatEvent`]s. Nothing here does I/O or reads a clock,
//! so every parser can be unit-tested and fuzzed on plain byte slices.

pub mod charset;
pub mod event;
pub mod gadugadu;
pub mod handoff;
pub mod invariants;
pub mod irc;
pub mod msn;
pub mod oscar;
pub mod session;
pub mod synthetic;
pub mod words;
pub mod xmpp;
pub mod yahoo;

pub use event::{ChatEvent, Direction, EventType};
pub use handoff::{Handoff, HandoffTable};
pub use session::{Feed, Frame, Pdu, ProtocolKind, ProtocolSession, Rewrite, Stop};

/// Create the protocol core for a new connection; `None` for a protocol that is
/// relayed without inspection.
pub fn new_session(kind: ProtocolKind) -> Option<Box<dyn ProtocolSession>> {
    match kind {
        ProtocolKind::Irc => Some(Box::new(irc::IrcSession::default())),
        ProtocolKind::Msn => Some(Box::new(msn::MsnSession::default())),
        ProtocolKind::GaduGadu => Some(Box::new(gadugadu::GaduGaduSession::default())),
        ProtocolKind::Yahoo => Some(Box::new(yahoo::YahooSession::default())),
        ProtocolKind::IcqAim => Some(Box::new(oscar::OscarSession::default())),
        ProtocolKind::Jabber => Some(Box::new(xmpp::XmppSession::default())),
    }
}
