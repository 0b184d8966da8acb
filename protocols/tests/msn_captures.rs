//! The MSN parser on real captures: every expected event, in order, and every
//! byte forwarded unchanged, also when the stream arrives in random pieces or
//! is damaged.

mod support;

use imspector_protocols::invariants::{replay, Lcg};
use imspector_protocols::msn::MsnSession;
use imspector_protocols::{Direction, EventType};

#[test]
fn msn_captures_give_the_expected_events() {
    for stream in support::streams("msn") {
        let mut session = MsnSession::default();
        let result = replay(&mut session, &stream.chunk_refs());
        assert!(
            result.stopped.is_none(),
            "{}: {:?}",
            stream.name,
            result.stopped
        );
        let expected = stream.expected_events();
        assert_eq!(
            result.events.len(),
            expected.len(),
            "{}: events {:#?}",
            stream.name,
            result.events
        );
        for (got, want) in result.events.iter().zip(expected) {
            let dir = match want["direction"].as_str().unwrap() {
                "outgoing" => Direction::Outgoing,
                _ => Direction::Incoming,
            };
            assert_eq!(got.direction, dir, "{}", stream.name);
            assert_eq!(
                got.kind.code() as u64,
                want["type"].as_u64().unwrap(),
                "{}",
                stream.name
            );
            assert_eq!(
                got.local_id,
                want["local_id"].as_str().unwrap(),
                "{}",
                stream.name
            );
            assert_eq!(
                got.remote_id,
                want["remote_id"].as_str().unwrap(),
                "{}",
                stream.name
            );
            assert_eq!(
                got.group,
                want["group"].as_bool().unwrap(),
                "{}",
                stream.name
            );
            // Typing notifications have no text.
            let text = want["text"].as_str().unwrap_or("");
            match got.kind {
                EventType::File => assert!(got.text.starts_with(text), "{}", stream.name),
                _ => assert_eq!(got.text, text, "{}", stream.name),
            }
        }
    }
}

#[test]
fn msn_capture_split_into_single_bytes() {
    for stream in support::streams("msn") {
        let bytes: Vec<(Direction, Vec<u8>)> = stream
            .chunks
            .iter()
            .flat_map(|(d, b)| b.iter().map(|&x| (*d, vec![x])).collect::<Vec<_>>())
            .collect();
        let refs: Vec<(Direction, &[u8])> = bytes.iter().map(|(d, b)| (*d, b.as_slice())).collect();
        let whole = replay(&mut MsnSession::default(), &stream.chunk_refs());
        let split = replay(&mut MsnSession::default(), &refs);
        assert_eq!(split.events, whole.events, "{}", stream.name);
    }
}

#[test]
fn msn_survives_random_chunking_and_mutation() {
    let mut rng = Lcg(0x1863);
    for stream in support::streams("msn") {
        for _ in 0..50 {
            let mut chunks = Vec::new();
            for (dir, bytes) in &stream.chunks {
                let mut bytes = bytes.clone();
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
            replay(&mut MsnSession::default(), &refs);
        }
    }
}
