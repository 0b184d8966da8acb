//! XMPP client-to-server streams (RFC 6120), the original's "Jabber".
//!
//! Framing: each direction is one XML document, `<stream:stream>` and its
//! top-level elements; it restarts (a new header) after SASL success and
//! after STARTTLS. [`framing`] follows the element depth with quick-xml and
//! cuts messages, presences and the iqs that may matter, which [`tree`] then
//! reads with their namespaces and [`events`] turns into chat events.
//! Everything else is forwarded as it arrives. The local id is the JID the
//! server bound; after the server's `<proceed/>` to a STARTTLS the session is
//! TLS, and a relay that intercepts it feeds us the new plaintext streams.
//! docs/protocols/xmpp.md tells what is logged and rewritten.

mod events;
mod framing;
mod jid;
mod ns;
mod rewrite;
#[cfg(test)]
mod tests;
mod tree;

use bytes::{Bytes, BytesMut};
use quick_xml::events::Event;
use quick_xml::Reader;

use crate::event::{ChatEvent, Direction, EventType};
use crate::session::{Feed, Frame, Pdu, ProtocolSession, Rewrite, Stop};
use events::{Context, Rooms};
use framing::{Cut, Framer, Kind, ScanStop};

pub use framing::MAX_STANZA;

/// The namespaces of a stream whose header we did not see (a capture that
/// starts mid-stream).
const DEFAULT_HEADER: &str =
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

#[derive(Debug, Clone, Default)]
pub struct XmppSession {
    framers: [Framer; 2],
    /// Whether a direction's first byte was looked at.
    started: [bool; 2],
    /// Each direction's last stream header (its namespace declarations).
    headers: [Option<String>; 2],
    /// The `to` of the client's stream header.
    server_name: Option<String>,
    /// Our full JID: from the resource binding, or until then from what
    /// stanzas are addressed to.
    local_jid: Option<String>,
    bound: bool,
    rooms: Rooms,
    /// The direction fed last: the PDU being judged came from it.
    last_fed: Option<Direction>,
}

fn index(dir: Direction) -> usize {
    match dir {
        Direction::Outgoing => 0,
        Direction::Incoming => 1,
    }
}

impl XmppSession {
    fn local_bare(&self) -> String {
        self.local_jid.as_deref().map(jid::bare).unwrap_or_default()
    }

    fn header(&self, dir: Direction) -> &str {
        self.headers[index(dir)]
            .as_deref()
            .unwrap_or(DEFAULT_HEADER)
    }

    fn on_header(&mut self, dir: Direction, bytes: &[u8]) {
        let header = String::from_utf8_lossy(bytes).into_owned();
        if dir == Direction::Outgoing {
            if let Ok(Event::Start(tag)) = Reader::from_str(&header).read_event() {
                if let Some(to) = framing::attribute(&tag, "to") {
                    self.server_name = Some(to);
                }
            }
        }
        self.headers[index(dir)] = Some(header);
    }

    /// The frame of a complete element, and a stop it causes.
    fn on_element(&mut self, dir: Direction, kind: Kind, bytes: Bytes) -> (Frame, Option<Stop>) {
        let element = match tree::parse(self.header(dir), &bytes) {
            Ok(element) => element,
            Err(why) => {
                let stop = Stop::NotThisProtocol(format!(
                    "an XMPP <{}> that is not well-formed XML ({why}): not inspected",
                    kind.tag()
                ));
                return (Frame::Opaque(bytes), Some(stop));
            }
        };
        let local = self.local_bare();
        let ctx = Context {
            local: &local,
            rooms: &self.rooms,
        };
        let events = match kind {
            Kind::Message => events::message(&ctx, dir, &element),
            Kind::Iq => {
                let events = events::iq(&ctx, dir, &element);
                if dir == Direction::Incoming {
                    if let Some(jid) = events::bound_jid(&element) {
                        self.local_jid = Some(jid);
                        self.bound = true;
                    }
                }
                events
            }
            Kind::Presence => {
                self.rooms.on_presence(dir, &element);
                Vec::new()
            }
            Kind::Proceed => {
                if dir == Direction::Incoming && element.is(ns::TLS, "proceed") {
                    // New streams start on both sides once TLS is up.
                    self.framers = Default::default();
                    self.headers = Default::default();
                    return (Frame::Opaque(bytes), Some(Stop::Encrypted("XMPP STARTTLS")));
                }
                Vec::new()
            }
        };
        let frame = if events.is_empty() {
            Frame::Opaque(bytes)
        } else {
            Frame::Pdu(Pdu { bytes, events })
        };
        (frame, None)
    }
}

impl XmppSession {
    /// A message event of the conversation of the `<message>` that `held`
    /// starts with, read from its start tag alone (the stanza is too large
    /// to hold), for the log line saying that inspection stopped.
    fn conversation_of(&self, dir: Direction, held: &[u8]) -> Option<ChatEvent> {
        let mut reader = Reader::from_reader(held);
        let Ok(Event::Start(_)) = reader.read_event() else {
            return None;
        };
        let tag_end = reader.buffer_position() as usize;
        let mut tag = held[..tag_end - 1].to_vec();
        tag.extend_from_slice(b"/>");
        let message = tree::parse(self.header(dir), &tag).ok()?;
        let local = self.local_bare();
        let ctx = Context {
            local: &local,
            rooms: &self.rooms,
        };
        events::conversation_event(&ctx, dir, &message)
    }
}

/// Why the first bytes of a direction are not XML.
fn not_xml(first: &[u8]) -> String {
    if first.first() == Some(&0x16) {
        return "a TLS handshake where an XMPP stream was expected (direct TLS, XEP-0368): not inspected"
            .into();
    }
    let shown: String = first
        .iter()
        .take(8)
        .map(|&b| match b {
            b' '..=b'~' => (b as char).to_string(),
            _ => format!("\\x{b:02x}"),
        })
        .collect();
    format!("not XML (starts with \"{shown}\"): not an XMPP stream")
}

impl ProtocolSession for XmppSession {
    fn feed(&mut self, dir: Direction, buf: &mut BytesMut) -> Feed {
        let i = index(dir);
        self.last_fed = Some(dir);
        if !self.started[i] {
            match buf.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'<') => self.started[i] = true,
                Some(_) => {
                    return Feed::stopped(Stop::NotThisProtocol(not_xml(buf.trim_ascii_start())))
                }
                None => {}
            }
        }
        let want_to = dir == Direction::Incoming && self.local_jid.is_none();
        let scan = self.framers[i].scan(buf, want_to);
        if let Some(to) = scan.to {
            self.local_jid = Some(to);
        }
        let mut feed = Feed::default();
        for cut in scan.cuts {
            match cut {
                Cut::Opaque(n) => feed.frames.push(Frame::Opaque(buf.split_to(n).freeze())),
                Cut::Header(n) => {
                    let bytes = buf.split_to(n).freeze();
                    self.on_header(dir, &bytes);
                    feed.frames.push(Frame::Opaque(bytes));
                }
                Cut::Element(kind, n) => {
                    let bytes = buf.split_to(n).freeze();
                    let (frame, stop) = self.on_element(dir, kind, bytes);
                    feed.frames.push(frame);
                    if stop.is_some() {
                        feed.stop = stop;
                        return feed;
                    }
                }
            }
        }
        feed.stop = scan.stop.map(|stop| match stop {
            ScanStop::NotXmpp(why) => Stop::NotThisProtocol(why),
            ScanStop::TooLong { why, held } => Stop::TooLarge {
                conversation: (held == Some(Kind::Message))
                    .then(|| self.conversation_of(dir, buf))
                    .flatten()
                    .map(Box::new),
                why,
            },
        });
        feed
    }

    fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    fn rewrite(&self, dir: Direction, pdu: &Pdu, change: Rewrite<'_>) -> Option<Bytes> {
        let Rewrite::Text(text) = change;
        if pdu
            .events
            .iter()
            .any(|e| e.kind != EventType::Message || e.encrypted)
        {
            return None;
        }
        if pdu.events.iter().all(|e| e.text == text) {
            return Some(pdu.bytes.clone());
        }
        let stanza = tree::parse(self.header(dir), &pdu.bytes).ok()?;
        let local = self.local_bare();
        let ctx = Context {
            local: &local,
            rooms: &self.rooms,
        };
        let (message, _) = events::carried(&ctx, dir, &stanza)?;
        rewrite::replace_bodies(&pdu.bytes, message, text).map(Bytes::from)
    }

    fn notice_to_client(&self, remote_id: &str, text: &str) -> Option<Bytes> {
        let to = self.local_jid.as_deref()?;
        // Bytes for the client go between two of the server's stanzas; while
        // one is being forwarded piece by piece there is no such place.
        let judging_incoming = self.last_fed == Some(Direction::Incoming);
        if !judging_incoming && !self.framers[index(Direction::Incoming)].between_stanzas() {
            return None;
        }
        let group = self.rooms.contains(remote_id);
        Some(Bytes::from(rewrite::notice(remote_id, to, text, group)))
    }
}
