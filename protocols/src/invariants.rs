//! The properties every protocol core must keep, checked by the fuzz targets and
//! by the tests on captures and random input.

use bytes::BytesMut;

use crate::event::{ChatEvent, Direction};
use crate::session::{Frame, ProtocolSession, Rewrite};

/// What a stream produced when fed through a session.
#[derive(Debug, Default)]
pub struct Replay {
    pub events: Vec<ChatEvent>,
    /// Whether a direction switched to plain relaying, and why.
    pub stopped: Option<String>,
}

/// Feed `chunks` (direction, bytes) through `session` as a proxy would, and
/// check that the bytes each side would receive equal the bytes sent, and that
/// rewriting a PDU to its own text reproduces an equivalent PDU.
/// Panics with a description when a property does not hold.
pub fn replay<S: ProtocolSession + Clone>(
    session: &mut S,
    chunks: &[(Direction, &[u8])],
) -> Replay {
    let mut result = Replay::default();
    let mut pending = [BytesMut::new(), BytesMut::new()];
    let mut sent = [Vec::new(), Vec::new()];
    let mut received = [Vec::new(), Vec::new()];
    for (dir, data) in chunks {
        let i = index(*dir);
        sent[i].extend_from_slice(data);
        if result.stopped.is_some() {
            received[i].extend_from_slice(data);
            continue;
        }
        pending[i].extend_from_slice(data);
        let before = session.clone();
        let feed = session.feed(*dir, &mut pending[i]);
        // The bytes of this read up to the frame at hand.
        let mut preceding = Vec::new();
        for frame in feed.frames {
            match frame {
                Frame::Opaque(b) => preceding.extend_from_slice(&b),
                Frame::Pdu(pdu) => {
                    check_identity_rewrite(&before, *dir, &preceding, &pdu);
                    preceding.extend_from_slice(&pdu.bytes);
                    result.events.extend(pdu.events);
                }
            }
        }
        received[i].extend_from_slice(&preceding);
        if let Some(stop) = feed.stop {
            result.stopped = Some(stop.to_string());
        }
        if result.stopped.is_some() {
            for j in 0..2 {
                received[j].extend_from_slice(&pending[j].split());
            }
        }
    }
    // End of stream: whatever is still held goes out unchanged.
    for j in 0..2 {
        received[j].extend_from_slice(&pending[j]);
        assert_eq!(
            received[j], sent[j],
            "bytes forwarded in direction {j} differ from the bytes received"
        );
    }
    result
}

fn index(dir: Direction) -> usize {
    match dir {
        Direction::Outgoing => 0,
        Direction::Incoming => 1,
    }
}

/// Rewriting a PDU's text to the text it already has must give bytes that parse
/// to one PDU with the same events (byte equality is not required: an encoder
/// may normalise). They are parsed by a copy of the session in the state it
/// had just before the PDU: `before` (the state before this read) fed the
/// `preceding` bytes of the read.
fn check_identity_rewrite<S: ProtocolSession + Clone>(
    before: &S,
    dir: Direction,
    preceding: &[u8],
    pdu: &crate::session::Pdu,
) {
    let Some(first) = pdu.events.first() else {
        return;
    };
    if pdu.events.iter().any(|e| e.text != first.text) {
        return;
    }
    let mut session = before.clone();
    let mut lead = BytesMut::from(preceding);
    let _ = session.feed(dir, &mut lead);
    assert!(
        lead.is_empty(),
        "the bytes before a PDU parse again to frames"
    );
    let Some(bytes) = session.rewrite(dir, pdu, Rewrite::Text(&first.text)) else {
        return;
    };
    let mut again = BytesMut::from(&bytes[..]);
    let feed = session.feed(dir, &mut again);
    assert!(
        feed.stop.is_none(),
        "rewritten PDU does not parse: {:?}",
        feed.stop
    );
    assert!(
        again.is_empty(),
        "rewritten PDU left {} bytes unparsed",
        again.len()
    );
    let events: Vec<ChatEvent> = feed
        .frames
        .into_iter()
        .flat_map(|f| match f {
            Frame::Pdu(p) => p.events,
            Frame::Opaque(_) => Vec::new(),
        })
        .collect();
    assert_eq!(events, pdu.events, "rewritten PDU parses to other events");
}

/// A small deterministic generator for the random-input tests (no dependency).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next_u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }

    /// Split `data` into random chunks, to exercise reassembly.
    pub fn chunks<'a>(&mut self, data: &'a [u8]) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let n = (self.next_u32() as usize % 64 + 1).min(rest.len());
            out.push(&rest[..n]);
            rest = &rest[n..];
        }
        out
    }

    /// Flip, insert or delete a few bytes of `data`.
    pub fn mutate(&mut self, data: &mut Vec<u8>) {
        for _ in 0..(self.next_u32() % 4 + 1) {
            if data.is_empty() {
                data.push(self.next_u32() as u8);
                continue;
            }
            let at = self.next_u32() as usize % data.len();
            match self.next_u32() % 3 {
                0 => data[at] = self.next_u32() as u8,
                1 => data.insert(at, self.next_u32() as u8),
                _ => {
                    data.remove(at);
                }
            }
        }
    }
}

/// Cut fuzzer input into chunks of both directions: each chunk is one control
/// byte (low bit: direction, the other bits: length - 1) followed by up to that
/// many bytes. The fuzzer thereby chooses both the data and where reads end.
pub fn split_fuzz_input(data: &[u8]) -> Vec<(Direction, &[u8])> {
    let mut chunks = Vec::new();
    let mut rest = data;
    while let Some((&control, tail)) = rest.split_first() {
        let dir = if control & 1 == 0 {
            Direction::Outgoing
        } else {
            Direction::Incoming
        };
        let len = (usize::from(control >> 1) + 1).min(tail.len());
        chunks.push((dir, &tail[..len]));
        rest = &tail[len..];
    }
    chunks
}
