//! Cutting one direction of an XMPP stream into its stream headers and
//! top-level elements, as the bytes arrive.
//!
//! quick-xml reads the buffer from the end of the last complete XML event each
//! time more bytes come, so no byte is read twice except those of an event
//! that was cut short. Only the depth of elements is tracked here; the
//! elements that may carry chat events or state (messages, presences, some
//! iqs, `<proceed/>`) are held until complete and then read as a tree. Every
//! other element is forwarded as it arrives.

use quick_xml::errors::{Error, IllFormedError, SyntaxError};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::ns;

/// The largest element held for inspection, and the longest single tag.
/// Servers cap stanzas at about this size (prosody 256 KiB, ejabberd 64 KiB).
pub const MAX_STANZA: usize = 256 * 1024;

/// A top-level element that is held until complete and then inspected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Message,
    Presence,
    Iq,
    Proceed,
}

impl Kind {
    pub fn tag(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Presence => "presence",
            Kind::Iq => "iq",
            Kind::Proceed => "proceed",
        }
    }
}

/// How a top-level element that has not ended yet is relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Hold(Kind),
    /// An iq: whether it matters depends on its first child.
    AwaitFirstChild,
    /// Forwarded as it arrives.
    Stream,
}

/// A piece of the front of the buffer, by length, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Cut {
    Opaque(usize),
    /// A stream header's start tag (`<stream:stream ...>`).
    Header(usize),
    /// A whole element to inspect.
    Element(Kind, usize),
}

/// Why a scan stopped following the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum ScanStop {
    /// The bytes are not an XMPP stream we can follow, and why.
    NotXmpp(String),
    /// An element or tag over [`MAX_STANZA`]; `held` is the kind of the held
    /// element the buffer starts with (its start tag), if it is one.
    TooLong { why: String, held: Option<Kind> },
}

/// What one scan found.
#[derive(Debug, Default)]
pub struct Scan {
    pub cuts: Vec<Cut>,
    pub stop: Option<ScanStop>,
    /// The `to` of a top-level element, when asked for (the local JID of a
    /// stream whose resource binding we did not see).
    pub to: Option<String>,
}

/// The state of one direction at the first byte of the buffer it is given.
/// Each scan reads the buffer from there: what stays held is at most one
/// element (bounded by [`MAX_STANZA`]) or one partial tag, so a copy of the
/// session in any earlier state can read any continuation.
#[derive(Debug, Clone, Default)]
pub struct Framer {
    /// Element depth: 0 outside a stream, 1 between stanzas.
    depth: usize,
    /// The top-level element the buffer starts inside, if any (only one that
    /// is forwarded as it arrives: a held one starts the buffer at its tag).
    open: Option<Mode>,
}

impl Framer {
    /// Whether the stream is open and between two top-level elements: bytes
    /// injected now do not land inside an element.
    pub fn between_stanzas(&self) -> bool {
        self.depth == 1 && self.open.is_none()
    }

    /// Read what is in `buf`. The caller must split off exactly the returned
    /// cuts; what stays is given again, with more, next time.
    pub fn scan(&mut self, buf: &[u8], want_to: bool) -> Scan {
        let mut scan = Scan::default();
        // Start of the bytes not yet given to a cut, and the end of the last
        // complete event.
        let mut cut_from = 0;
        let mut scanned = 0;
        let mut reader = Reader::from_reader(buf);
        let config = reader.config_mut();
        config.check_end_names = false;
        config.allow_unmatched_ends = true;
        loop {
            let at = reader.buffer_position() as usize;
            let event = match reader.read_event() {
                Ok(Event::Eof) => break,
                Ok(event) => event,
                Err(e) => {
                    scan.stop = malformed(&e, &buf[at..]).map(ScanStop::NotXmpp);
                    break;
                }
            };
            scanned = reader.buffer_position() as usize;
            if let Event::DocType(_) = event {
                scan.stop = Some(ScanStop::NotXmpp(DTD.into()));
                break;
            }
            match self.open {
                None => self.top_level(event, at, scanned, &mut cut_from, &mut scan, want_to),
                Some(mode) => self.inside(mode, event, scanned, &mut cut_from, &mut scan),
            }
            if scan.stop.is_some() {
                break;
            }
            if matches!(scan.cuts.last(), Some(Cut::Element(Kind::Proceed, _))) {
                // TLS follows: the rest is not ours to read.
                return scan;
            }
        }
        match self.open {
            None | Some(Mode::Stream) => {
                if scanned > cut_from {
                    scan.cuts.push(Cut::Opaque(scanned - cut_from));
                    cut_from = scanned;
                }
            }
            // The held element is read again from its start tag.
            Some(Mode::Hold(_) | Mode::AwaitFirstChild) => {
                if scan.stop.is_none() && buf.len() - cut_from > MAX_STANZA {
                    scan.stop = Some(too_long(self.open));
                }
                self.depth = 1;
                self.open = None;
            }
        }
        if scan.stop.is_none() && buf.len() - cut_from > MAX_STANZA {
            scan.stop = Some(too_long(self.open));
        }
        scan
    }

    /// An event between top-level elements.
    fn top_level(
        &mut self,
        event: Event<'_>,
        at: usize,
        end: usize,
        cut_from: &mut usize,
        scan: &mut Scan,
        want_to: bool,
    ) {
        let self_closed = matches!(event, Event::Empty(_));
        let tag = match event {
            Event::Start(tag) | Event::Empty(tag) => tag,
            Event::Text(text) if is_space(&text) => return,
            Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                scan.stop = Some(ScanStop::NotXmpp(
                    "text outside any XMPP stanza: not an XMPP stream".into(),
                ));
                return;
            }
            Event::End(_) => {
                self.depth = 0;
                return;
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) | Event::Eof => {
                return
            }
        };
        let mut cut_before = |scan: &mut Scan| {
            if at > *cut_from {
                scan.cuts.push(Cut::Opaque(at - *cut_from));
            }
            *cut_from = at;
        };
        if !self_closed && is_stream_header(&tag) {
            cut_before(scan);
            scan.cuts.push(Cut::Header(end - at));
            *cut_from = end;
            self.depth = 1;
            return;
        }
        // A capture that starts mid-stream: its stanzas are still stanzas.
        self.depth = 1;
        if want_to && scan.to.is_none() {
            scan.to = attribute(&tag, "to");
        }
        let mode = match held_kind(&tag) {
            Some(Kind::Iq) if self_closed => Mode::Stream,
            Some(Kind::Iq) => Mode::AwaitFirstChild,
            Some(kind) => Mode::Hold(kind),
            None => Mode::Stream,
        };
        if mode != Mode::Stream {
            cut_before(scan);
        }
        if !self_closed {
            self.open = Some(mode);
            self.depth = 2;
        } else if let Mode::Hold(kind) = mode {
            scan.cuts.push(Cut::Element(kind, end - at));
            *cut_from = end;
        }
    }

    /// An event inside a top-level element.
    fn inside(
        &mut self,
        mode: Mode,
        event: Event<'_>,
        end: usize,
        cut_from: &mut usize,
        scan: &mut Scan,
    ) {
        match &event {
            Event::Start(child) | Event::Empty(child) => {
                if mode == Mode::AwaitFirstChild && self.depth == 2 {
                    self.open = Some(iq_mode(child));
                }
                if matches!(event, Event::Start(_)) {
                    self.depth += 1;
                }
            }
            Event::Text(text) if mode == Mode::AwaitFirstChild && !is_space(text) => {
                self.open = Some(Mode::Stream);
            }
            Event::End(_) => {
                self.depth -= 1;
                if self.depth == 1 {
                    if let Some(Mode::Hold(kind)) = self.open {
                        // The same bound whether the element came in one
                        // read or in many.
                        if end - *cut_from > MAX_STANZA {
                            scan.stop = Some(too_long(self.open));
                            return;
                        }
                        scan.cuts.push(Cut::Element(kind, end - *cut_from));
                        *cut_from = end;
                    }
                    self.open = None;
                }
            }
            _ => {}
        }
    }
}

fn too_long(open: Option<Mode>) -> ScanStop {
    let (what, held) = match open {
        Some(Mode::Hold(kind)) => (format!("a <{}> stanza", kind.tag()), Some(kind)),
        Some(Mode::AwaitFirstChild) => ("an <iq> stanza".into(), Some(Kind::Iq)),
        _ => ("an XML tag".into(), None),
    };
    ScanStop::TooLong {
        why: format!(
            "{what} longer than {} KiB (more than XMPP servers accept)",
            MAX_STANZA / 1024
        ),
        held,
    }
}

const DTD: &str =
    "a DTD (<!DOCTYPE>) in an XMPP stream, which XMPP forbids (an entity-expansion bomb?): not inspected";

/// Which held element a top-level tag starts, if any.
fn held_kind(tag: &BytesStart<'_>) -> Option<Kind> {
    match tag.local_name().as_ref() {
        "message" => Some(Kind::Message),
        "presence" => Some(Kind::Presence),
        "iq" => Some(Kind::Iq),
        "proceed" => Some(Kind::Proceed),
        _ => None,
    }
}

/// An iq is held when its first child may be a file offer, a call, an
/// upload slot request or the resource binding; other iqs (rosters, disco,
/// vCards with photos) are forwarded as they arrive.
fn iq_mode(child: &BytesStart<'_>) -> Mode {
    let held = match child.local_name().as_ref() {
        "bind" | "si" | "jingle" | "request" => true,
        "query" => attribute(child, "xmlns").as_deref() == Some(ns::OOB_IQ),
        _ => false,
    };
    if held {
        Mode::Hold(Kind::Iq)
    } else {
        Mode::Stream
    }
}

fn is_stream_header(tag: &BytesStart<'_>) -> bool {
    tag.local_name().as_ref() == "stream"
}

pub fn attribute(tag: &BytesStart<'_>, name: &str) -> Option<String> {
    tag.attributes()
        .with_checks(false)
        .flatten()
        .find(|a| a.key.as_ref() == name)
        .map(|a| a.value.into_owned())
}

fn is_space(text: &str) -> bool {
    text.bytes()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// `None` when the reader only ran out of bytes in the middle of an event;
/// otherwise why the bytes are not XML.
fn malformed(error: &Error, rest: &[u8]) -> Option<String> {
    let incomplete = match error {
        Error::Syntax(SyntaxError::UnclosedDoctype) => return Some(DTD.into()),
        // `<!` and nothing yet to tell what follows.
        Error::Syntax(SyntaxError::InvalidBangMarkup) => rest.len() < 3,
        Error::Syntax(_) => true,
        // `&name` without its `;` so far: incomplete unless a tag follows.
        Error::IllFormed(IllFormedError::UnclosedReference) => !rest.contains(&b'<'),
        Error::Encoding(quick_xml::encoding::EncodingError::Utf8(e)) => e.error_len().is_none(),
        _ => false,
    };
    (!incomplete).then(|| format!("not well-formed XML: {error}; not an XMPP stream we can follow"))
}
