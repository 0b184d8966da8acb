//! The event record every sink stores: the original's columns, in its order.

use std::borrow::Cow;
use std::sync::Arc;

use imspector_protocols::EventType;

/// What `hide_eventdata=on` logs instead of the text.
pub const HIDDEN: &str = "*HIDDEN*";

/// The client and ids are shared (`Arc`): every event of a conversation
/// carries the same ones, so that logging a message copies only its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// UNIX seconds.
    pub timestamp: i64,
    /// `IP:port` of the local client (`[v6]:port`).
    pub client: Arc<str>,
    /// `MSN`, `ICQ-AIM`, `Yahoo`, `IRC`, `Gadu-Gadu` or `Jabber`; for the ICAP
    /// service also `Matrix` and the names of web-chat rules.
    pub protocol: Cow<'static, str>,
    pub outgoing: bool,
    pub kind: EventType,
    /// Lower-cased.
    pub local_id: Arc<str>,
    /// Lower-cased.
    pub remote_id: Arc<str>,
    pub filtered: bool,
    /// Text the filters appended, e.g. `2 badwords;`.
    pub categories: String,
    /// The original text (before any rewriting), or [`HIDDEN`].
    pub data: String,
}
