//! Loading the real captures in ../shared/captures (streams and expected events).

use std::path::PathBuf;

use imspector_protocols::Direction;
use serde_json::Value;

/// `IMSPECTOR_CAPTURES` when set, else ../shared/captures next to the workspace.
pub fn captures_dir() -> PathBuf {
    match std::env::var_os("IMSPECTOR_CAPTURES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/captures"),
    }
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
