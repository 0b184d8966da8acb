//! The IRC parser on real captures: every expected event, in order, and every
//! byte forwarded unchanged.

mod support;

use imspector_protocols::invariants::{replay, Lcg};
use imspector_protocols::irc::IrcSession;
use imspector_protocols::{Direction, EventType};

#[test]
fn irc_captures_give_the_expected_events() {
    for stream in support::streams("irc") {
        let mut session = IrcSession::default();
        let result = replay(&mut session, &stream.chunk_refs());
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
                got.remote_id,
                want["remote_id"].as_str().unwrap(),
                "{}",
                stream.name
            );
            if let Some(local) = want["local_id"].as_str() {
                assert_eq!(got.local_id, local, "{}", stream.name);
            }
            let text = want["text"].as_str().unwrap();
            match got.kind {
                // File transfers log "name size bytes".
                EventType::File => assert!(got.text.starts_with(text), "{}", stream.name),
                _ => assert_eq!(got.text, text, "{}", stream.name),
            }
        }
        if stream.name.contains("starttls") {
            assert!(
                result.stopped.is_some(),
                "STARTTLS must switch to passthrough"
            );
        }
    }
}

#[test]
fn irc_survives_random_chunking_and_mutation() {
    let mut rng = Lcg(0x1c);
    for stream in support::streams("irc") {
        for _ in 0..20 {
            let mut chunks = Vec::new();
            for (dir, bytes) in &stream.chunks {
                let mut bytes = bytes.clone();
                if rng.next_u32() % 4 == 0 {
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
            replay(&mut IrcSession::default(), &refs);
        }
    }
}
