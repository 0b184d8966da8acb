//! The Gadu-Gadu parser on real captures and libgadu's test vectors: every
//! expected event, in order, every byte forwarded unchanged, and rewritten
//! streams that a fresh parser reads back with the new texts.

mod support;

use bytes::BytesMut;
use imspector_protocols::gadugadu::GaduGaduSession;
use imspector_protocols::invariants::{replay, Lcg};
use imspector_protocols::{ChatEvent, Direction, Frame, ProtocolSession, Rewrite};

fn direction(name: &str) -> Direction {
    match name {
        "outgoing" => Direction::Outgoing,
        _ => Direction::Incoming,
    }
}

#[test]
fn gadu_gadu_captures_give_the_expected_events() {
    for stream in support::streams("gadu-gadu") {
        let mut session = GaduGaduSession::default();
        let result = replay(&mut session, &stream.chunk_refs());
        assert_eq!(result.stopped, None, "{}", stream.name);
        let expected = stream.expected_events();
        assert_eq!(
            result.events.len(),
            expected.len(),
            "{}: events {:#?}",
            stream.name,
            result.events
        );
        for (got, want) in result.events.iter().zip(expected) {
            let name = &stream.name;
            assert_eq!(
                got.direction,
                direction(want["direction"].as_str().unwrap()),
                "{name}"
            );
            assert_eq!(
                got.kind.code() as u64,
                want["type"].as_u64().unwrap(),
                "{name}"
            );
            assert_eq!(got.local_id, want["local_id"].as_str().unwrap(), "{name}");
            assert_eq!(got.remote_id, want["remote_id"].as_str().unwrap(), "{name}");
            assert_eq!(got.group, want["group"].as_bool().unwrap(), "{name}");
            assert_eq!(got.text, want["text"].as_str().unwrap(), "{name}");
            if got.group && got.direction == Direction::Incoming {
                assert_eq!(
                    got.prefix,
                    format!("{}: ", want["sender"].as_str().unwrap())
                );
            } else {
                assert_eq!(got.prefix, "", "{name}");
            }
        }
        // The login packet told the local UIN: a notice shows it back.
        let local = stream.expected["local_id"].as_str().unwrap();
        let notice = session
            .notice_to_client("42", "logged")
            .unwrap_or_else(|| panic!("{}: no login seen", stream.name));
        let events = feed_all(&mut session, Direction::Incoming, &notice);
        assert_eq!(events.len(), 1, "{}", stream.name);
        assert_eq!(events[0].local_id, local, "{}", stream.name);
        assert_eq!(events[0].text, "logged", "{}", stream.name);
    }
}

fn feed_all(session: &mut GaduGaduSession, dir: Direction, data: &[u8]) -> Vec<ChatEvent> {
    let mut buf = BytesMut::from(data);
    let feed = session.feed(dir, &mut buf).expect("parses");
    assert!(buf.is_empty());
    feed.frames
        .into_iter()
        .flat_map(|f| match f {
            Frame::Pdu(p) => p.events,
            Frame::Opaque(_) => Vec::new(),
        })
        .collect()
}

/// What a word filter does: every message gets a new text of another length.
/// The peer must receive packets that parse to the new texts, with the same
/// parties.
#[test]
fn rewritten_captures_carry_the_new_texts() {
    for stream in support::streams("gadu-gadu") {
        let mut proxy = GaduGaduSession::default();
        let mut peer = GaduGaduSession::default();
        let mut before = Vec::new();
        let mut after = Vec::new();
        for (dir, bytes) in &stream.chunks {
            let mut buf = BytesMut::from(&bytes[..]);
            let feed = proxy.feed(*dir, &mut buf).unwrap();
            assert!(buf.is_empty(), "{}", stream.name);
            let mut out = Vec::new();
            for frame in feed.frames {
                match frame {
                    Frame::Opaque(b) => out.extend_from_slice(&b),
                    Frame::Pdu(pdu) => {
                        let event = &pdu.events[0];
                        let new = format!("[{}] {}", event.text.len(), event.text.to_uppercase());
                        before.push(event.clone());
                        let bytes = proxy.rewrite(*dir, &pdu, Rewrite::Text(&new)).unwrap();
                        out.extend_from_slice(&bytes);
                    }
                }
            }
            after.extend(feed_all(&mut peer, *dir, &out));
        }
        assert_eq!(before.len(), after.len(), "{}", stream.name);
        for (old, new) in before.iter().zip(&after) {
            assert_eq!(
                new.text,
                format!("[{}] {}", old.text.len(), old.text.to_uppercase())
            );
            assert_eq!(
                (&new.remote_id, new.group, new.direction, &new.prefix),
                (&old.remote_id, old.group, old.direction, &old.prefix),
                "{}",
                stream.name
            );
        }
    }
}

#[test]
fn gadu_gadu_survives_random_chunking_and_mutation() {
    let mut rng = Lcg(0x66);
    for stream in support::streams("gadu-gadu") {
        for _ in 0..200 {
            let mut chunks = Vec::new();
            for (dir, bytes) in &stream.chunks {
                let mut bytes = bytes.clone();
                // One chunk in four is damaged.
                if rng.next_u32() & 3 == 0 {
                    rng.mutate(&mut bytes);
                }
                chunks.push((*dir, bytes));
            }
            let split: Vec<(Direction, Vec<u8>)> = chunks
                .iter()
                .flat_map(|(d, b)| {
                    rng.chunks(b)
                        .into_iter()
                        .map(|c| (*d, c.to_vec()))
                        .collect::<Vec<_>>()
                })
                .collect();
            let refs: Vec<(Direction, &[u8])> =
                split.iter().map(|(d, b)| (*d, b.as_slice())).collect();
            replay(&mut GaduGaduSession::default(), &refs);
        }
    }
}
