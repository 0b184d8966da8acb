//! Parser throughput in MB/s: `cargo bench -p imspector-protocols`.
//!
//! Each parser is fed the real captures in ../shared/captures (chunk by chunk,
//! as they crossed the wire) and synthetic traffic (64 KiB reads, as the relay
//! does). Every figure is the median of several timed rounds, with the range.
//! The ceiling beside each: a memchr search for every line end of the same
//! chunks, measured in the same rounds, and the parser's share of it.
//! Set `BENCH_QUICK=1` for one short round per case; an argument measures
//! only the cases whose name contains it (`cargo bench --bench parsers -- IRC`).

#[allow(dead_code)]
#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use imspector_protocols::synthetic::{self, IrcTraffic, YahooTraffic};
use imspector_protocols::{new_session, Direction, Frame, ProtocolKind};

/// Labelled synthetic inputs: (label, direction, bytes).
type Synthetic = Vec<(&'static str, Direction, Vec<u8>)>;

/// One parser to measure: adding a protocol is one line here.
struct Parser {
    kind: ProtocolKind,
    /// `protocol` value of the captures in ../shared/captures/expected
    /// (`None`: there are none, as for Yahoo).
    captures: Option<&'static str>,
    synthetic: fn() -> Synthetic,
}

const PARSERS: &[Parser] = &[
    Parser {
        kind: ProtocolKind::Irc,
        captures: Some("irc"),
        synthetic: irc_synthetic,
    },
    Parser {
        kind: ProtocolKind::Msn,
        captures: Some("msn"),
        synthetic: Vec::new,
    },
    Parser {
        kind: ProtocolKind::GaduGadu,
        captures: Some("gadu-gadu"),
        synthetic: Vec::new,
    },
    Parser {
        kind: ProtocolKind::Yahoo,
        captures: None,
        synthetic: yahoo_synthetic,
    },
    Parser {
        kind: ProtocolKind::IcqAim,
        captures: Some("oscar"),
        synthetic: oscar_synthetic,
    },
    Parser {
        kind: ProtocolKind::Jabber,
        captures: Some("xmpp"),
        synthetic: xmpp_synthetic,
    },
];

/// OSCAR reads of FLAPs: ICBM messages (each an event), and rate-info SNACs
/// (no event) that pass through without being held.
fn oscar_synthetic() -> Synthetic {
    fn flap(seq: u16, family: u16, subtype: u16, body: &[u8]) -> Vec<u8> {
        let len = (10 + body.len()) as u16;
        let mut out = vec![0x2a, 2];
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&family.to_be_bytes());
        out.extend_from_slice(&subtype.to_be_bytes());
        out.extend_from_slice(&[0; 6]);
        out.extend_from_slice(body);
        out
    }
    let text = b"<HTML><BODY>a line of chat of a usual length, in plain ASCII</BODY></HTML>";
    let mut message = b"cookie01\x00\x01\x03bob".to_vec();
    let fragments_len = 5 + 4 + 4 + text.len();
    message.extend_from_slice(&[0, 2]);
    message.extend_from_slice(&(fragments_len as u16).to_be_bytes());
    message.extend_from_slice(&[5, 1, 0, 1, 1, 1, 1]);
    message.extend_from_slice(&((4 + text.len()) as u16).to_be_bytes());
    message.extend_from_slice(&[0, 0, 0, 0]);
    message.extend_from_slice(text);
    let len = 4 << 20;
    let (mut chat, mut other) = (Vec::new(), Vec::new());
    let mut seq = 0u16;
    while chat.len() < len {
        seq = seq.wrapping_add(1);
        chat.extend(flap(seq, 4, 6, &message));
    }
    while other.len() < len {
        seq = seq.wrapping_add(1);
        other.extend(flap(seq, 1, 7, &[0x11; 1200]));
    }
    vec![
        (
            "ICBM messages (every FLAP an event)",
            Direction::Outgoing,
            chat,
        ),
        ("rate info SNACs (no events)", Direction::Incoming, other),
    ]
}

/// A client's stream of chat messages, and a server's stream of presences
/// (caps, vCard hashes, MUC items: no events).
fn xmpp_synthetic() -> Synthetic {
    let len = 4 << 20;
    let header = "<?xml version='1.0'?><stream:stream to='example.org' xmlns='jabber:client' \
                  xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
    let (mut chat, mut other) = (header.to_string(), header.to_string());
    let mut n = 0u32;
    while chat.len() < len {
        n += 1;
        chat.push_str(&format!(
            "<message to='friend{}@example.net' type='chat' id='m{n}'><body>the build is green \
             again &amp; the logs look fine, see you at the meeting at ten</body>\
             <active xmlns='http://jabber.org/protocol/chatstates'/></message>",
            n % 40
        ));
    }
    while other.len() < len {
        n += 1;
        other.push_str(&format!(
            "<presence from='room@conference.example.org/user{n}' to='alice@example.org/pc'>\
             <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='http://pidgin.im/' \
             ver='DdnydQG7RGhP9E3k9Sf+b+bF0zo='/><x xmlns='vcard-temp:x:update'><photo/></x>\
             <x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' \
             role='participant'/></x></presence>"
        ));
    }
    vec![
        (
            "chat messages (every stanza an event)",
            Direction::Outgoing,
            chat.into_bytes(),
        ),
        (
            "MUC presences (no events)",
            Direction::Incoming,
            other.into_bytes(),
        ),
    ]
}

fn irc_synthetic() -> Synthetic {
    let len = 4 << 20;
    vec![
        (
            "chat lines (every line an event)",
            Direction::Outgoing,
            synthetic::irc(IrcTraffic::Chat, len, 1),
        ),
        (
            "other lines (no events)",
            Direction::Incoming,
            synthetic::irc(IrcTraffic::NoEvents, len, 2),
        ),
        (
            // After a welcome the core judges every line of them; before one
            // it gives up after 64 KiB.
            "random bytes after the welcome (iperf3's data)",
            Direction::Incoming,
            [
                &b":irc.example.net 001 me :Welcome\r\n"[..],
                &synthetic::random_bytes(len, 3),
            ]
            .concat(),
        ),
    ]
}

fn yahoo_synthetic() -> Synthetic {
    let len = 4 << 20;
    vec![
        (
            "messages (every packet an event)",
            Direction::Outgoing,
            synthetic::yahoo(YahooTraffic::Chat, len, 1),
        ),
        (
            "presence (no events)",
            Direction::Incoming,
            synthetic::yahoo(YahooTraffic::NoEvents, len, 2),
        ),
    ]
}

/// The relay reads at most this much at once.
const READ_CHUNK: usize = 64 * 1024;

fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |case: &str| only.as_deref().is_none_or(|o| case.contains(o));
    let (rounds, round_time) = if quick {
        (1, Duration::from_millis(100))
    } else {
        (7, Duration::from_millis(400))
    };
    println!(
        "{:<48} {:>10} {:>22} {:>12} {:>12} {:>8}",
        "case", "MB/s", "range", "events/s", "scan MB/s", "of scan"
    );
    for parser in PARSERS {
        let name = parser.kind.log_name();
        if let Some(protocol) = parser.captures {
            // OSCAR's FLAPs and XMPP's stanzas end at their captures' gaps:
            // they are played joined.
            let streams = match parser.kind {
                ProtocolKind::IcqAim | ProtocolKind::Jabber => {
                    support::streams_across_gaps(protocol)
                }
                _ => support::streams(protocol),
            };
            let captures: Vec<(Direction, Vec<u8>)> =
                streams.into_iter().flat_map(|s| s.chunks).collect();
            // Each capture stream is short: a pass plays all of them back to back.
            let case = format!("{name}: captures ({} chunks)", captures.len());
            if wanted(&case) {
                report(&case, measure(parser.kind, &captures, rounds, round_time));
            }
        }
        for (label, dir, data) in (parser.synthetic)() {
            let chunks: Vec<(Direction, Vec<u8>)> =
                data.chunks(READ_CHUNK).map(|c| (dir, c.to_vec())).collect();
            let case = format!("{name}: synthetic {label}");
            if wanted(&case) {
                report(&case, measure(parser.kind, &chunks, rounds, round_time));
            }
        }
    }
}

struct Measured {
    /// MB/s of each round.
    rates: Vec<f64>,
    /// MB/s of the line-end scan in each round.
    scan_rates: Vec<f64>,
    events_per_pass: usize,
    bytes_per_pass: usize,
}

/// Feed every chunk through a fresh session, over and over, for `round_time`.
fn measure(
    kind: ProtocolKind,
    chunks: &[(Direction, Vec<u8>)],
    rounds: usize,
    round_time: Duration,
) -> Measured {
    let bytes_per_pass: usize = chunks.iter().map(|(_, c)| c.len()).sum();
    let mut events_per_pass = 0;
    let (mut rates, mut scan_rates) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        rates.push(rate(round_time, bytes_per_pass, || {
            events_per_pass = pass(kind, chunks);
        }));
        scan_rates.push(rate(round_time, bytes_per_pass, || {
            black_box(scan_lines(chunks));
        }));
    }
    Measured {
        rates,
        scan_rates,
        events_per_pass,
        bytes_per_pass,
    }
}

/// MB/s of running `pass` (over `bytes_per_pass` bytes) for `round_time`.
fn rate(round_time: Duration, bytes_per_pass: usize, mut pass: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut bytes = 0usize;
    while start.elapsed() < round_time {
        pass();
        bytes += bytes_per_pass;
    }
    bytes as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// The ceiling: every line end of the chunks found with memchr.
fn scan_lines(chunks: &[(Direction, Vec<u8>)]) -> usize {
    chunks
        .iter()
        .map(|(_, data)| memchr::memchr_iter(b'\n', data).count())
        .sum()
}

/// One playback; returns the number of events found.
fn pass(kind: ProtocolKind, chunks: &[(Direction, Vec<u8>)]) -> usize {
    let mut session = new_session(kind).expect("a parser exists for a benchmarked protocol");
    let mut pending = [BytesMut::new(), BytesMut::new()];
    let mut events = 0;
    for (dir, data) in chunks {
        let buf = &mut pending[usize::from(*dir == Direction::Incoming)];
        buf.extend_from_slice(data);
        let feed = session.feed(*dir, buf);
        for frame in feed.frames {
            if let Frame::Pdu(pdu) = frame {
                events += pdu.events.len();
            }
        }
        // The relay feeds a core no more once it stopped.
        if feed.stop.is_some() {
            break;
        }
    }
    black_box(events)
}

fn median_and_range(mut rates: Vec<f64>) -> (f64, String) {
    rates.sort_by(f64::total_cmp);
    let range = format!("{:.0} .. {:.0}", rates[0], rates[rates.len() - 1]);
    (rates[rates.len() / 2], range)
}

fn report(case: &str, m: Measured) {
    let (median, range) = median_and_range(m.rates);
    let (scan, _) = median_and_range(m.scan_rates);
    let events_per_s = median * 1e6 / m.bytes_per_pass as f64 * m.events_per_pass as f64;
    let share = 100.0 * median / scan;
    println!(
        "{case:<48} {median:>10.1} {range:>22} {events_per_s:>12.0} {scan:>12.0} {share:>7.0}%"
    );
}
