//! Replaying recorded IM sessions (../shared/captures) through the proxy: a
//! client in the client namespace plays the client's bytes, a server in the
//! server namespace plays the server's, each waiting for the other side's
//! preceding bytes, and each checks it received exactly what was recorded.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::netns::Netns;
use crate::wait::DEADLINE;

/// `shared/captures` beside the checkout.
pub fn captures_dir() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|dir| dir.join("shared/captures"))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| here.join("../../shared/captures"))
}

/// Who sent a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Client,
    Server,
}

/// One recorded connection, cut at its first gap (or joined across its gaps).
pub struct Recording {
    pub name: String,
    pub protocol: String,
    pub segments: Vec<(Sender, Vec<u8>)>,
    /// The chat events a monitor should log (`events` of expected/*.json).
    pub expected: Vec<Value>,
}

impl Recording {
    /// Every recording of `protocol` (`irc`, `msn`, `gadu-gadu`, `oscar`, `xmpp`).
    pub fn all(protocol: &str) -> anyhow::Result<Vec<Recording>> {
        Self::load(protocol, false)
    }

    /// Every recording of `protocol`, each side's bytes joined across the
    /// capture's gaps: for a framing that resyncs there (OSCAR's FLAPs).
    pub fn all_across_gaps(protocol: &str) -> anyhow::Result<Vec<Recording>> {
        Self::load(protocol, true)
    }

    fn load(protocol: &str, across_gaps: bool) -> anyhow::Result<Vec<Recording>> {
        let dir = captures_dir();
        let mut names: Vec<String> = std::fs::read_dir(dir.join("expected"))
            .with_context(|| format!("{}", dir.display()))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let expected: Value =
                serde_json::from_slice(&std::fs::read(dir.join("expected").join(&name))?)?;
            if expected["protocol"] != protocol {
                continue;
            }
            let stream: Value =
                serde_json::from_slice(&std::fs::read(dir.join("streams").join(&name))?)?;
            let mut segments = Vec::new();
            for seg in stream["segments"].as_array().context("segments")? {
                if seg.get("gap").is_some() {
                    if across_gaps {
                        continue;
                    }
                    break;
                }
                let sender = match seg["dir"].as_str() {
                    Some("c2s") => Sender::Client,
                    _ => Sender::Server,
                };
                segments.push((sender, hex(seg["hex"].as_str().context("hex")?)?));
            }
            out.push(Recording {
                name,
                protocol: protocol.to_string(),
                segments,
                expected: expected["events"].as_array().cloned().unwrap_or_default(),
            });
        }
        if out.is_empty() {
            bail!("no {protocol} recordings in {}", dir.display());
        }
        Ok(out)
    }

    /// A session written by a test rather than recorded.
    pub fn synthetic(name: &str, segments: Vec<(Sender, Vec<u8>)>) -> Self {
        Recording {
            name: name.to_string(),
            protocol: String::new(),
            segments,
            expected: Vec::new(),
        }
    }

    /// Play the recording between a client in `client_ns` connecting to `dst`
    /// and a server in `server_ns` listening on `dst`'s port. Returns the
    /// longest time either side waited for a segment of the other's.
    pub fn replay(
        &self,
        client_ns: &Netns,
        server_ns: &Netns,
        dst: SocketAddr,
    ) -> anyhow::Result<Duration> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let server_segments = self.segments.clone();
        let server_ns_path = format!("/run/netns/{}", server_ns.name);
        let server = std::thread::spawn(move || -> anyhow::Result<Duration> {
            let file = std::fs::File::open(&server_ns_path)?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
            // The previous recording's connection may still be closing on
            // this port: wait for it rather than fail.
            let listener = crate::wait::until(&format!("port {} to be free", dst.port()), || {
                TcpListener::bind(("::", dst.port())).ok()
            })?;
            ready_tx.send(())?;
            let (conn, _) = listener.accept()?;
            play(conn, &server_segments, Sender::Server)
        });
        if ready_rx.recv_timeout(DEADLINE).is_err() {
            let why = match server.join() {
                Ok(Err(e)) => format!("{e:#}"),
                _ => "no reason given".to_string(),
            };
            bail!("{}: replay server did not start: {why}", self.name);
        }
        let segments = self.segments.clone();
        let client = client_ns.run(move || -> anyhow::Result<Duration> {
            let conn = TcpStream::connect(dst)?;
            play(conn, &segments, Sender::Client)
        })?;
        let server = server
            .join()
            .map_err(|_| anyhow::anyhow!("replay server panicked"))?;
        let client = client.with_context(|| format!("{}: client side", self.name))?;
        let server = server.with_context(|| format!("{}: server side", self.name))?;
        Ok(client.max(server))
    }
}

/// Send our segments, and read and compare the other side's, in recorded order.
/// Returns the longest wait for one of the other side's segments.
fn play(
    mut conn: TcpStream,
    segments: &[(Sender, Vec<u8>)],
    me: Sender,
) -> anyhow::Result<Duration> {
    conn.set_read_timeout(Some(DEADLINE))?;
    let mut longest = Duration::ZERO;
    for (index, (sender, bytes)) in segments.iter().enumerate() {
        if *sender == me {
            conn.write_all(bytes)?;
        } else {
            let start = std::time::Instant::now();
            let mut got = vec![0; bytes.len()];
            conn.read_exact(&mut got)
                .with_context(|| format!("reading segment {index} ({} bytes)", bytes.len()))?;
            if &got != bytes {
                bail!(
                    "segment {index} differs:\n  recorded {:?}\n  received {:?}",
                    String::from_utf8_lossy(bytes),
                    String::from_utf8_lossy(&got)
                );
            }
            longest = longest.max(start.elapsed());
        }
    }
    let _ = conn.shutdown(Shutdown::Write);
    let mut extra = Vec::new();
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let _ = conn.read_to_end(&mut extra);
    if !extra.is_empty() {
        bail!(
            "{} bytes more than recorded: {:?}",
            extra.len(),
            String::from_utf8_lossy(&extra)
        );
    }
    Ok(longest)
}

fn hex(s: &str) -> anyhow::Result<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2).context("odd hex")?, 16).context("hex"))
        .collect()
}
