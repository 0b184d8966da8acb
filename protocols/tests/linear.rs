//! Every core is linear in its input: the same streams fed one byte at a time
//! cost at most a bounded factor of the CPU they cost in whole reads, measured
//! in the same run. A core that parses what it holds again with each new byte
//! (quadratic in a PDU's size) fails on the large PDUs below.

#[allow(dead_code)] // this test reads only the streams' bytes
mod support;

use std::time::Duration;

use bytes::BytesMut;
use imspector_protocols::synthetic::{self, IrcTraffic, YahooTraffic};
use imspector_protocols::{new_session, Direction, ProtocolKind};

/// What one byte fed alone may cost, against its share of a whole read: the
/// per-call work (finding where the PDU stands) is constant, not growing. In
/// a debug build a call costs up to about 100 times a byte of a whole read
/// (XMPP the most); a core that parses its held PDU again per byte costs
/// thousands of times more on the 60 KiB PDUs below (IRC did: 26 s against
/// 3 ms).
const FACTOR: u32 = 150;
/// Timer and cache noise.
const SLACK: Duration = Duration::from_millis(50);

/// The CPU time this thread has used: other work on a loaded machine delays
/// a run but does not add to it (wall-clock time did, and failed the bound).
fn thread_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only fills the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

type Chunks = Vec<(Direction, Vec<u8>)>;

/// The fastest of three runs: the others only add scheduling noise.
fn cpu(kind: ProtocolKind, streams: &[Chunks], byte_at_a_time: bool) -> Duration {
    (0..3)
        .map(|_| {
            let start = thread_cpu();
            for chunks in streams {
                let mut session = new_session(kind).expect("a core");
                let mut held = [BytesMut::new(), BytesMut::new()];
                for (dir, data) in chunks {
                    let buf = &mut held[usize::from(*dir == Direction::Incoming)];
                    let pieces: Vec<&[u8]> = if byte_at_a_time {
                        data.chunks(1).collect()
                    } else {
                        vec![data.as_slice()]
                    };
                    for piece in pieces {
                        buf.extend_from_slice(piece);
                        if session.feed(*dir, buf).stop.is_some() {
                            break;
                        }
                    }
                }
            }
            thread_cpu() - start
        })
        .min()
        .expect("three runs")
}

fn captures(name: &str) -> Vec<Chunks> {
    support::streams(name)
        .into_iter()
        .map(|s| s.chunks)
        .collect()
}

fn packet(ty: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = ty.to_le_bytes().to_vec();
    p.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    p.extend_from_slice(payload);
    p
}

/// The largest PDUs each core takes, beside its real traffic.
fn large(kind: ProtocolKind) -> Vec<Chunks> {
    let out = Direction::Outgoing;
    match kind {
        ProtocolKind::Irc => {
            let mut line = b"PRIVMSG #c :".to_vec();
            line.resize(60 * 1024, b'a');
            line.extend_from_slice(b"\r\n");
            let mut tags = b"@".to_vec();
            tags.resize(8 * 1024, b't');
            tags.extend_from_slice(b" :n!u@h PRIVMSG me :hi\r\n");
            vec![vec![
                (out, line),
                (Direction::Incoming, tags),
                (out, synthetic::irc(IrcTraffic::Chat, 64 * 1024, 1)),
            ]]
        }
        ProtocolKind::Msn => {
            // A switchboard, then an MSNSLP INVITE in one-byte P2P chunks.
            let mut chunks: Chunks = vec![
                (out, b"USR 1 alice@example.com 123.456\r\n".to_vec()),
                (
                    Direction::Incoming,
                    b"USR 1 OK alice@example.com Alice\r\nJOI bob@example.com Bob\r\n".to_vec(),
                ),
            ];
            let mut slp =
                b"INVITE MSNMSGR:bob@example.com MSNSLP/1.0\r\nContent-Length: 20000\r\n\r\n"
                    .to_vec();
            slp.resize(slp.len() + 20000, b'x');
            for (i, byte) in slp.iter().enumerate().take(8000) {
                let mut payload = b"MIME-Version: 1.0\r\nContent-Type: application/x-msnmsgrp2p\r\nP2P-Dest: bob@example.com\r\n\r\n".to_vec();
                let mut header = [0u8; 48];
                header[24..28].copy_from_slice(&1u32.to_le_bytes());
                payload.extend_from_slice(&header);
                payload.push(*byte);
                payload.extend_from_slice(&[0; 4]);
                let mut msg = format!("MSG {} D {}\r\n", i + 2, payload.len()).into_bytes();
                msg.extend_from_slice(&payload);
                chunks.push((out, msg));
            }
            vec![chunks]
        }
        ProtocolKind::GaduGadu => {
            let login = packet(0x15, &[1, 0, 0, 0]);
            vec![vec![(out, login), (out, packet(0x99, &vec![0; 60 * 1024]))]]
        }
        ProtocolKind::Yahoo => vec![vec![(
            out,
            synthetic::yahoo(YahooTraffic::Chat, 64 * 1024, 1),
        )]],
        ProtocolKind::IcqAim | ProtocolKind::Jabber => Vec::new(),
    }
}

#[test]
fn every_core_is_linear_in_its_input() {
    let mut report = Vec::new();
    for (kind, capture) in [
        (ProtocolKind::Irc, Some("irc")),
        (ProtocolKind::Msn, Some("msn")),
        (ProtocolKind::GaduGadu, Some("gadu-gadu")),
        (ProtocolKind::IcqAim, Some("oscar")),
        (ProtocolKind::Jabber, Some("xmpp")),
        (ProtocolKind::Yahoo, None),
    ] {
        let mut streams = capture.map(captures).unwrap_or_default();
        streams.extend(large(kind));
        let whole = cpu(kind, &streams, false);
        let bytes = cpu(kind, &streams, true);
        let budget = whole * FACTOR + SLACK;
        report.push(format!(
            "{}: whole reads {whole:?}, byte at a time {bytes:?} (budget {budget:?})",
            kind.log_name()
        ));
        assert!(bytes <= budget, "{}", report.join("\n"));
    }
    eprintln!("{}", report.join("\n"));
}
