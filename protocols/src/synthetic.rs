//! Deterministic synthetic traffic for the benchmarks: realistic line and
//! message sizes, no dependency on the captures.

use crate::invariants::Lcg;

/// What kind of IRC lines to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrcTraffic {
    /// Channel and private PRIVMSGs as a client sends them: every line is a chat event.
    Chat,
    /// What a busy channel sends besides chat (NAMES and WHO replies, JOIN,
    /// PART without a reason, MODE, PING): parsed, never an event.
    NoEvents,
}

const WORDS: &[&str] = &[
    "the", "build", "is", "green", "again", "after", "lunch", "can", "you", "check", "logs",
    "server", "restart", "ok", "thanks", "tomorrow", "meeting", "at", "ten", "please", "review",
];

/// Whole IRC lines (CR LF ended) of about `len` bytes in total.
pub fn irc(traffic: IrcTraffic, len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Lcg(seed);
    let mut out = Vec::with_capacity(len + 512);
    while out.len() < len {
        let line = match traffic {
            IrcTraffic::Chat => chat_line(&mut rng),
            IrcTraffic::NoEvents => other_line(&mut rng),
        };
        out.extend_from_slice(line.as_bytes());
    }
    out
}

/// `len` bytes of noise, like iperf3's data: a stream that is not IRC at all,
/// with a CR, an LF or a NUL every 85 bytes or so.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Lcg(seed);
    (0..len).map(|_| rng.next_u32() as u8).collect()
}

/// Between `min` and `max` words: chat lines are 20 to 250 bytes of text.
fn words(rng: &mut Lcg, min: u32, max: u32) -> String {
    let n = min + rng.next_u32() % (max - min + 1);
    let mut text = String::new();
    for i in 0..n {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(WORDS[rng.next_u32() as usize % WORDS.len()]);
    }
    text
}

/// 40 people: a client has a few dozen conversations, not thousands.
fn nick(rng: &mut Lcg) -> String {
    format!("user{}", rng.next_u32() % 40)
}

fn chat_line(rng: &mut Lcg) -> String {
    let target = if rng.next_u32() & 3 == 0 {
        nick(rng)
    } else {
        format!("#chan{}", rng.next_u32() % 8)
    };
    format!("PRIVMSG {target} :{}\r\n", words(rng, 3, 40))
}

fn other_line(rng: &mut Lcg) -> String {
    let who = format!(
        "{0}!~{0}@host-{1}.example.net",
        nick(rng),
        rng.next_u32() % 10_000
    );
    match rng.next_u32() % 6 {
        0 => {
            let names: Vec<String> = (0..20 + rng.next_u32() % 20).map(|_| nick(rng)).collect();
            format!(
                ":irc.example.net 353 me = #chan{} :{}\r\n",
                rng.next_u32() % 8,
                names.join(" ")
            )
        }
        1 => format!(
            ":irc.example.net 352 me #chan{} ~{} host-{}.example.net irc.example.net {} H :0 {}\r\n",
            rng.next_u32() % 8,
            nick(rng),
            rng.next_u32() % 10_000,
            nick(rng),
            words(rng, 1, 3)
        ),
        2 => format!(":{who} JOIN #chan{}\r\n", rng.next_u32() % 8),
        3 => format!(":{who} PART #chan{}\r\n", rng.next_u32() % 8),
        4 => format!(":{who} MODE #chan{} +v {}\r\n", rng.next_u32() % 8, nick(rng)),
        _ => format!("PING :irc.example.net-{}\r\n", rng.next_u32()),
    }
}

/// What kind of YMSG packets to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YahooTraffic {
    /// Messages as a client sends them (UTF-8, to one of 40 people): every
    /// packet is a chat event.
    Chat,
    /// Presence updates and pings from the server: forwarded unparsed.
    NoEvents,
}

/// Whole YMSG 16 packets of about `len` bytes in total.
pub fn yahoo(traffic: YahooTraffic, len: usize, seed: u64) -> Vec<u8> {
    use crate::yahoo::packet::{encode, Header};
    let mut rng = Lcg(seed);
    let mut out = Vec::with_capacity(len + 512);
    while out.len() < len {
        let (service, pairs) = match traffic {
            YahooTraffic::Chat => (
                0x06,
                vec![
                    (1, "me".to_string()),
                    (5, nick(&mut rng)),
                    (14, words(&mut rng, 3, 40)),
                    (97, "1".to_string()),
                    (63, ";0".to_string()),
                    (64, "0".to_string()),
                ],
            ),
            YahooTraffic::NoEvents => (
                0xc6,
                vec![
                    (7, nick(&mut rng)),
                    (10, (rng.next_u32() % 100).to_string()),
                    (19, words(&mut rng, 1, 6)),
                    (47, "1".to_string()),
                    (138, "1".to_string()),
                ],
            ),
        };
        let header = Header {
            version: 16,
            vendor: 0,
            len: 0,
            service,
            status: 0,
            session: 0x1234,
        };
        let pairs: Vec<(u32, &[u8])> = pairs.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        out.extend(encode(&header, &pairs).expect("a short packet"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::replay;
    use crate::irc::IrcSession;
    use crate::Direction;

    #[test]
    fn chat_traffic_is_all_events_and_other_traffic_none() {
        let chat = irc(IrcTraffic::Chat, 20_000, 1);
        let lines = chat
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        let got = replay(
            &mut IrcSession::default(),
            &[(Direction::Outgoing, chat.as_slice())],
        );
        assert_eq!(got.events.len(), lines);

        let other = irc(IrcTraffic::NoEvents, 20_000, 1);
        for dir in [Direction::Incoming, Direction::Outgoing] {
            let got = replay(&mut IrcSession::default(), &[(dir, other.as_slice())]);
            assert!(got.events.is_empty());
        }
        assert!(other.ends_with(b"\r\n"));
    }

    #[test]
    fn yahoo_chat_is_all_events_and_other_traffic_none() {
        use crate::yahoo::YahooSession;
        let chat = yahoo(YahooTraffic::Chat, 20_000, 1);
        let packets = chat.windows(4).filter(|w| w == b"YMSG").count();
        let got = replay(
            &mut YahooSession::default(),
            &[(Direction::Outgoing, &chat)],
        );
        assert_eq!(got.events.len(), packets);
        let other = yahoo(YahooTraffic::NoEvents, 20_000, 1);
        let got = replay(
            &mut YahooSession::default(),
            &[(Direction::Incoming, &other)],
        );
        assert!(got.events.is_empty());
        assert_eq!(got.stopped, None);
    }
}
