//! Loading the real captures in ../shared/captures (streams and expected events).

use std::path::PathBuf;

use imspector_protocols::invariants::{replay, Lcg};
use imspector_protocols::{ChatEvent, Direction, EventType, ProtocolSession};
use serde_json::Value;

/// `shared/captures` next to the checkout (found from any depth of worktree).
pub fn captures_dir() -> PathBuf {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .ancestors()
        .map(|dir| dir.join("shared/captures"))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| crate_dir.join("../../shared/captures"))
}

/// One reassembled TCP connection: (direction, bytes) in wire order. Gaps end it
/// (nothing after a hole can be trusted for byte equality).
pub struct Stream {
    pub name: String,
    pub chunks: Vec<(Direction, Vec<u8>)>,
    pub expected: Value,
}

impl Stream {
    pub fn chunk_refs(&self) -> Vec<(Direction, &[u8])> {
        self.chunks
            .iter()
            .map(|(d, b)| (*d, b.as_slice()))
            .collect()
    }

    /// The expected chat events (`events`, not `other_events`).
    pub fn expected_events(&self) -> &Vec<Value> {
        self.expected["events"].as_array().expect("events array")
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Every stream of one protocol (`irc`, `msn`, `gadu-gadu`, `oscar`, `xmpp`).
pub fn streams(protocol: &str) -> Vec<Stream> {
    load(protocol, false)
}

/// Every stream of `protocol`, each direction's bytes joined across its gaps:
/// for a framing that resyncs there (OSCAR's FLAPs end at the capture's gaps).
#[allow(dead_code)] // each test binary compiles all of support; one uses this
pub fn streams_across_gaps(protocol: &str) -> Vec<Stream> {
    load(protocol, true)
}

fn load(protocol: &str, across_gaps: bool) -> Vec<Stream> {
    let dir = captures_dir();
    let mut names: Vec<_> = std::fs::read_dir(dir.join("expected"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("expected").join(&name)).unwrap(),
        )
        .unwrap();
        if expected["protocol"] != protocol {
            continue;
        }
        let stream: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("streams").join(&name)).unwrap(),
        )
        .unwrap();
        let mut chunks = Vec::new();
        for seg in stream["segments"].as_array().unwrap() {
            if seg.get("gap").is_some() {
                if across_gaps {
                    continue;
                }
                break;
            }
            let dir = match seg["dir"].as_str().unwrap() {
                "c2s" => Direction::Outgoing,
                _ => Direction::Incoming,
            };
            chunks.push((dir, hex(seg["hex"].as_str().unwrap())));
        }
        out.push(Stream {
            name,
            chunks,
            expected,
        });
    }
    assert!(!out.is_empty(), "no {protocol} captures found");
    out
}

fn direction(name: &str) -> Direction {
    match name {
        "outgoing" => Direction::Outgoing,
        _ => Direction::Incoming,
    }
}

/// `events` are the stream's expected events, in order: direction, type, ids,
/// group, text (a file transfer's text starts with the expected name), and the
/// `sender: ` prefix of incoming group lines where the expectation names one.
pub fn assert_expected_events(stream: &Stream, events: &[ChatEvent]) {
    let name = &stream.name;
    let expected = stream.expected_events();
    assert_eq!(events.len(), expected.len(), "{name}: events {events:#?}");
    for (got, want) in events.iter().zip(expected) {
        assert_eq!(
            got.direction,
            direction(want["direction"].as_str().unwrap()),
            "{name}"
        );
        assert_eq!(
            u64::from(got.kind.code()),
            want["type"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(got.remote_id, want["remote_id"].as_str().unwrap(), "{name}");
        if let Some(local) = want["local_id"].as_str() {
            assert_eq!(got.local_id, local, "{name}");
        }
        if let Some(group) = want["group"].as_bool() {
            assert_eq!(got.group, group, "{name}");
        }
        // Typing notifications have no text.
        let text = want["text"].as_str().unwrap_or("");
        match got.kind {
            EventType::File => assert!(got.text.starts_with(text), "{name}: {got:?}"),
            _ => assert_eq!(got.text, text, "{name}"),
        }
        if let (true, Direction::Incoming, Some(sender)) =
            (got.group, got.direction, want["sender"].as_str())
        {
            assert_eq!(got.prefix, format!("{sender}: "), "{name}");
        }
    }
}

/// Each stream fed one byte at a time gives the events it gives whole.
#[allow(dead_code)] // each test binary compiles all of support; two use this
pub fn assert_single_bytes_give_the_same_events<S: ProtocolSession + Default + Clone>(
    streams: &[Stream],
) {
    for stream in streams {
        let bytes: Vec<(Direction, Vec<u8>)> = stream
            .chunks
            .iter()
            .flat_map(|(d, b)| b.iter().map(|&x| (*d, vec![x])).collect::<Vec<_>>())
            .collect();
        let refs: Vec<(Direction, &[u8])> = bytes.iter().map(|(d, b)| (*d, b.as_slice())).collect();
        let whole = replay(&mut S::default(), &stream.chunk_refs());
        let split = replay(&mut S::default(), &refs);
        assert_eq!(split.events, whole.events, "{}", stream.name);
    }
}

/// Replay every stream of `protocol` `rounds` times, with one chunk in four
/// damaged and every chunk cut at random points: the invariants of
/// `invariants::replay` must hold throughout.
pub fn replay_damaged<S: ProtocolSession + Default + Clone>(
    protocol: &str,
    rounds: usize,
    seed: u64,
) {
    let mut rng = Lcg(seed);
    for stream in streams(protocol) {
        for _ in 0..rounds {
            let mut pieces: Vec<(Direction, Vec<u8>)> = Vec::new();
            for (dir, bytes) in &stream.chunks {
                let mut bytes = bytes.clone();
                if rng.next_u32() & 3 == 0 {
                    rng.mutate(&mut bytes);
                }
                for piece in rng.chunks(&bytes) {
                    pieces.push((*dir, piece.to_vec()));
                }
            }
            let refs: Vec<(Direction, &[u8])> =
                pieces.iter().map(|(d, b)| (*d, b.as_slice())).collect();
            replay(&mut S::default(), &refs);
        }
    }
}
