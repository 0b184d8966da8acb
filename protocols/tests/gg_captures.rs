//! The Gadu-Gadu parser on real captures and libgadu's test vectors: every
//! expected event, in order, every byte forwarded unchanged, and rewritten
//! streams that a fresh parser reads back with the new texts.

mod support;

use bytes::BytesMut;
use imspector_protocols::gadugadu::GaduGaduSession;
use imspector_protocols::invariants::replay;
use imspector_protocols::{ChatEvent, Direction, Frame, ProtocolSession, Rewrite};

#[test]
fn gadu_gadu_captures_give_the_expected_events() {
    for stream in support::streams("gadu-gadu") {
        let mut session = GaduGaduSession::default();
        let result = replay(&mut session, &stream.chunk_refs());
        assert_eq!(result.stopped, None, "{}", stream.name);
        support::assert_expected_events(&stream, &result.events);
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
    let feed = session.feed(dir, &mut buf);
    assert_eq!(feed.stop, None);
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
            let feed = proxy.feed(*dir, &mut buf);
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
    support::replay_damaged::<GaduGaduSession>("gadu-gadu", 200, 0x66);
}
