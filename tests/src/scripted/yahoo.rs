//! A scripted YMSG 16 pager session, written from the protocol documentation
//! (libpurple's yahoo prpl, Wireshark's YMSG dissector): alice (the local
//! client) logs in and chats with bob. The encoder and the decoders here are
//! the test's own, independent of the proxy's parser, and stricter than the
//! protocol: version 16, vendor 0, the session id the server gave, a length
//! that covers exactly the pairs, canonical decimal keys, every key and value
//! followed by its separator, message texts in UTF-8 (key 97 = 1) on one line.
//! [`check_with_tshark`] has tshark's YMSG dissector decode a capture of the
//! same traffic, as a decoder that owes nothing to either.

use std::path::Path;

use super::{Decoded, Item, ScriptedProtocol};
use crate::replay::Sender;
use crate::tshark;

pub const ALICE: &str = "alice";
pub const BOB: &str = "bob";
pub const PORT: u16 = 5050;
/// The session id the server gives at login.
pub const SESSION: u32 = 0x5ab3_c101;

pub const HEADER_LEN: usize = 20;
const SEPARATOR: [u8; 2] = [0xc0, 0x80];
/// Longer payloads or more pairs are malformed here.
const MAX_PAYLOAD: usize = 8192;
const MAX_PAIRS: usize = 64;

/// Services, with libpurple's names.
pub mod service {
    pub const LOGON: u16 = 0x01;
    pub const MESSAGE: u16 = 0x06;
    pub const PING: u16 = 0x12;
    pub const CONFINVITE: u16 = 0x18;
    pub const CONFMSG: u16 = 0x1d;
    pub const NOTIFY: u16 = 0x4b;
    pub const AUTHRESP: u16 = 0x54;
    pub const AUTH: u16 = 0x57;
    pub const COMMENT: u16 = 0xa8;
    pub const FILETRANS_15: u16 = 0xdc;
    pub const LIST_15: u16 = 0xf1;
}

/// The key the marker's id travels in, both ways (`PING`; libpurple sends 1002
/// with other packets as well).
const MARKER_KEY: u32 = 1002;

/// One packet: header fields and pairs, values as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub service: u16,
    pub status: u32,
    pub session: u32,
    pub pairs: Vec<(u32, Vec<u8>)>,
}

impl Packet {
    pub fn new(service: u16, status: u32, pairs: &[(u32, &[u8])]) -> Packet {
        Packet {
            service,
            status,
            session: SESSION,
            pairs: pairs.iter().map(|(k, v)| (*k, v.to_vec())).collect(),
        }
    }

    /// The YMSG 16 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut payload = Vec::new();
        for (key, value) in &self.pairs {
            payload.extend_from_slice(key.to_string().as_bytes());
            payload.extend_from_slice(&SEPARATOR);
            payload.extend_from_slice(value);
            payload.extend_from_slice(&SEPARATOR);
        }
        let mut out = b"YMSG".to_vec();
        out.extend_from_slice(&16u16.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.service.to_be_bytes());
        out.extend_from_slice(&self.status.to_be_bytes());
        out.extend_from_slice(&self.session.to_be_bytes());
        out.extend(payload);
        out
    }

    /// The first value of `key`.
    pub fn get(&self, key: u32) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_slice())
    }

    fn text(&self, key: u32) -> Result<String, String> {
        let value = self.get(key).ok_or(format!("no key {key}"))?;
        let text = std::str::from_utf8(value).map_err(|_| format!("key {key} is not UTF-8"))?;
        Ok(text.to_string())
    }

    /// A message text: UTF-8 when key 97 is 1, else the legacy charset (read
    /// as Latin-1: the scripted users write no other letters), on one line
    /// (they send no line breaks, so one means a pair ran into another).
    fn message_text(&self, key: u32) -> Result<String, String> {
        let text = match self.get(97) {
            Some(b"1") => self.text(key)?,
            None => {
                let value = self.get(key).ok_or(format!("no key {key}"))?;
                value.iter().map(|&b| b as char).collect()
            }
            Some(other) => return Err(format!("key 97 is {other:?}")),
        };
        if text.contains(['\r', '\n', '\0']) {
            return Err(format!("text {text:?} runs into another pair"));
        }
        Ok(text)
    }
}

/// Strictly decode the packet at the front of `buf`.
pub fn decode(buf: &[u8]) -> Result<Option<(usize, Packet)>, String> {
    let magic = &buf[..buf.len().min(4)];
    if !b"YMSG".starts_with(magic) {
        return Err(format!("{magic:02x?} is no YMSG header"));
    }
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let be16 = |at: usize| u16::from_be_bytes([buf[at], buf[at + 1]]);
    let be32 = |at: usize| u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let (version, vendor, len) = (be16(4), be16(6), usize::from(be16(8)));
    if (version, vendor) != (16, 0) {
        return Err(format!("version {version}, vendor {vendor}"));
    }
    if len > MAX_PAYLOAD {
        return Err(format!("payload length {len}"));
    }
    let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Ok(None);
    };
    let packet = Packet {
        service: be16(10),
        status: be32(12),
        session: be32(16),
        pairs: pairs(payload)?,
    };
    Ok(Some((HEADER_LEN + len, packet)))
}

fn pairs(payload: &[u8]) -> Result<Vec<(u32, Vec<u8>)>, String> {
    let mut fields = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        let at = rest
            .windows(2)
            .position(|w| w == SEPARATOR)
            .ok_or(format!("field {} without its separator", fields.len() + 1))?;
        fields.push(&rest[..at]);
        rest = &rest[at + 2..];
    }
    if fields.len() % 2 != 0 {
        return Err("a key without a value".into());
    }
    if fields.len() / 2 > MAX_PAIRS {
        return Err(format!("{} pairs", fields.len() / 2));
    }
    fields
        .chunks(2)
        .map(|kv| {
            let key = std::str::from_utf8(kv[0]).unwrap_or_default();
            let canonical = !key.is_empty()
                && key.bytes().all(|b| b.is_ascii_digit())
                && (key == "0" || !key.starts_with('0'));
            match key.parse() {
                Ok(key) if canonical => Ok((key, kv[1].to_vec())),
                _ => Err(format!("key {:?}", String::from_utf8_lossy(kv[0]))),
            }
        })
        .collect()
}

/// Every packet of a stream, strictly decoded.
pub fn decode_all(mut stream: &[u8]) -> Result<Vec<Packet>, String> {
    let mut out = Vec::new();
    while !stream.is_empty() {
        match decode(stream)? {
            Some((len, packet)) => {
                out.push(packet);
                stream = &stream[len..];
            }
            None => return Err(format!("{} bytes of a partial packet", stream.len())),
        }
    }
    Ok(out)
}

/// Alice's session with bob, counting the markers.
#[derive(Debug, Default)]
pub struct Yahoo {
    markers: u32,
}

impl Yahoo {
    pub fn new() -> Self {
        Self::default()
    }

    /// Alice is typing to bob.
    pub fn typing(&self) -> Vec<u8> {
        Packet::new(
            service::NOTIFY,
            0x16,
            &[
                (49, b"TYPING"),
                (1, b"alice"),
                (14, b" "),
                (13, b"1"),
                (5, b"bob"),
            ],
        )
        .encode()
    }

    /// Alice invites bob to see her webcam.
    pub fn webcam_invite(&self) -> Vec<u8> {
        Packet::new(
            service::NOTIFY,
            0x16,
            &[
                (49, b"WEBCAMINVITE"),
                (1, b"alice"),
                (14, b" "),
                (13, b"0"),
                (5, b"bob"),
            ],
        )
        .encode()
    }

    /// Alice offers bob a file (YMSG 15 file transfer).
    pub fn file_offer(&self, name: &str, size: u64) -> Vec<u8> {
        let size = size.to_string();
        Packet::new(
            service::FILETRANS_15,
            0,
            &[
                (1, b"alice"),
                (5, b"bob"),
                (265, b"TXlGaWxlVHJhbnNmZXI-"),
                (222, b"1"),
                (266, b"1"),
                (302, b"268"),
                (300, b"268"),
                (27, name.as_bytes()),
                (28, size.as_bytes()),
                (301, b"268"),
                (303, b"268"),
            ],
        )
        .encode()
    }

    /// Alice's line in a conference.
    pub fn conference_message(&self, room: &str, members: &[&str], text: &str) -> Vec<u8> {
        let mut pairs: Vec<(u32, &[u8])> = vec![(1, b"alice")];
        pairs.extend(members.iter().map(|m| (53, m.as_bytes())));
        pairs.extend([(57, room.as_bytes()), (14, text.as_bytes()), (97, b"1")]);
        Packet::new(service::CONFMSG, 0, &pairs).encode()
    }

    /// Alice's line in a chat room.
    pub fn chat_message(&self, room: &str, text: &str) -> Vec<u8> {
        Packet::new(
            service::COMMENT,
            0,
            &[
                (1, b"alice"),
                (104, room.as_bytes()),
                (117, text.as_bytes()),
                (124, b"1"),
                (97, b"1"),
            ],
        )
        .encode()
    }
}

/// A message the server delivers from `from`; `utf8` false leaves key 97 out
/// (the legacy charset).
pub fn incoming_message(from: &str, text: &[u8], utf8: bool) -> Vec<u8> {
    let mut pairs: Vec<(u32, &[u8])> = vec![(5, b"alice"), (4, from.as_bytes()), (14, text)];
    if utf8 {
        pairs.push((97, b"1"));
    }
    pairs.push((15, b"1764633600"));
    Packet::new(service::MESSAGE, 1, &pairs).encode()
}

/// `from` is typing to alice.
pub fn incoming_typing(from: &str) -> Vec<u8> {
    Packet::new(
        service::NOTIFY,
        0x16,
        &[
            (5, b"alice"),
            (4, from.as_bytes()),
            (49, b"TYPING"),
            (14, b" "),
            (13, b"1"),
        ],
    )
    .encode()
}

/// Messages stored while alice was offline, in one packet.
pub fn offline_messages(messages: &[(&str, &str)]) -> Vec<u8> {
    let mut pairs: Vec<(u32, &[u8])> = vec![(31, b"6"), (32, b"6")];
    for (from, text) in messages {
        pairs.extend([
            (4, from.as_bytes()),
            (5, &b"alice"[..]),
            (14, text.as_bytes()),
            (15, b"1764633600"),
            (97, b"1"),
        ]);
    }
    Packet::new(service::MESSAGE, 0x5a55_aa56, &pairs).encode()
}

/// `host` invites alice to a conference with `others`.
pub fn conference_invite(host: &str, room: &str, others: &[&str]) -> Vec<u8> {
    let mut pairs: Vec<(u32, &[u8])> =
        vec![(1, b"alice"), (50, host.as_bytes()), (57, room.as_bytes())];
    pairs.extend(others.iter().map(|m| (52, m.as_bytes())));
    pairs.extend([(58, &b"Join my conference"[..]), (13, b"0")]);
    Packet::new(service::CONFINVITE, 0, &pairs).encode()
}

/// `from`'s line in a conference, as the server delivers it.
pub fn incoming_conference_message(from: &str, room: &str, text: &str) -> Vec<u8> {
    Packet::new(
        service::CONFMSG,
        0,
        &[
            (1, b"alice"),
            (3, from.as_bytes()),
            (57, room.as_bytes()),
            (14, text.as_bytes()),
            (97, b"1"),
        ],
    )
    .encode()
}

/// `from`'s line in a chat room, as the server delivers it.
pub fn incoming_chat_message(from: &str, room: &str, text: &str, emote: bool) -> Vec<u8> {
    let kind: &[u8] = if emote { b"2" } else { b"1" };
    Packet::new(
        service::COMMENT,
        0,
        &[
            (104, room.as_bytes()),
            (109, from.as_bytes()),
            (117, text.as_bytes()),
            (124, kind),
            (97, b"1"),
        ],
    )
    .encode()
}

impl ScriptedProtocol for Yahoo {
    fn log_name(&self) -> &'static str {
        "Yahoo"
    }

    fn port(&self) -> u16 {
        PORT
    }

    fn config(&self) -> String {
        "yahoo_protocol=on\n".into()
    }

    fn ids(&self) -> (String, String) {
        (ALICE.into(), BOB.into())
    }

    /// The YMSG 16 login as libpurple does it, after the HTTPS token exchange
    /// (which runs elsewhere): AUTH, the challenge, AUTHRESP with the cookies,
    /// then the buddy list and alice's logon.
    fn login(&mut self) -> Vec<(Sender, Vec<u8>)> {
        let auth = Packet {
            session: 0,
            ..Packet::new(service::AUTH, 0, &[(1, b"alice")])
        };
        let list = Packet::new(
            service::LIST_15,
            0,
            &[
                (302, b"318"),
                (300, b"318"),
                (65, b"Friends"),
                (302, b"319"),
                (300, b"319"),
                (7, b"bob"),
                (301, b"319"),
                (303, b"319"),
                (301, b"318"),
                (303, b"318"),
            ],
        );
        let logon = Packet::new(
            service::LOGON,
            0,
            &[
                (0, b"alice"),
                (1, b"alice"),
                (8, b"1"),
                (7, b"bob"),
                (10, b"0"),
                (13, b"1"),
            ],
        );
        vec![
            (Sender::Client, auth.encode()),
            (
                Sender::Server,
                Packet::new(
                    service::AUTH,
                    1,
                    &[(1, b"alice"), (94, b"c2FsdHlzYWx0"), (13, b"2")],
                )
                .encode(),
            ),
            (
                Sender::Client,
                Packet::new(
                    service::AUTHRESP,
                    0,
                    &[
                        (1, b"alice"),
                        (0, b"alice"),
                        (277, b"v=1&n=cookie"),
                        (278, b"z=cookie"),
                        (307, b"aGFzaA--"),
                        (244, b"4194239"),
                        (2, b"alice"),
                        (2, b"1"),
                        (98, b"us"),
                        (135, b"9.0.0.2162"),
                    ],
                )
                .encode(),
            ),
            (Sender::Server, [list.encode(), logon.encode()].concat()),
        ]
    }

    fn message(&mut self, text: &str) -> Vec<u8> {
        Packet::new(
            service::MESSAGE,
            0,
            &[
                (1, b"alice"),
                (5, b"bob"),
                (14, text.as_bytes()),
                (97, b"1"),
                (63, b";0"),
                (64, b"0"),
                (206, b"0"),
            ],
        )
        .encode()
    }

    /// A keep-alive `PING` with the marker's number.
    fn marker(&mut self) -> Vec<u8> {
        self.markers += 1;
        let id = self.markers.to_string();
        Packet::new(
            service::PING,
            0,
            &[(0, b"alice"), (MARKER_KEY, id.as_bytes())],
        )
        .encode()
    }

    fn marker_reply(&mut self, id: &str) -> Vec<u8> {
        Packet::new(
            service::PING,
            1,
            &[(143, b"60"), (144, b"13"), (MARKER_KEY, id.as_bytes())],
        )
        .encode()
    }

    fn decode_at_server(&self, buf: &[u8]) -> Decoded {
        let Some((len, p)) = decode(buf)? else {
            return Ok(None);
        };
        let expect_session = if p.service == service::AUTH {
            0
        } else {
            SESSION
        };
        if p.session != expect_session {
            return Err(format!("session id {:#x}", p.session));
        }
        if p.service != service::AUTH
            && p.service != service::PING
            && p.get(1).is_some()
            && p.get(1) != Some(b"alice")
        {
            return Err("a packet from someone other than alice".into());
        }
        let item = match p.service {
            service::MESSAGE => {
                if p.get(5).is_none_or(<[u8]>::is_empty) {
                    return Err("a message without a recipient".into());
                }
                Item::Text {
                    from: None,
                    text: p.message_text(14)?,
                }
            }
            service::PING => Item::Marker(p.text(MARKER_KEY)?),
            service::NOTIFY => Item::Other(format!("{} to {}", p.text(49)?, p.text(5)?)),
            service::FILETRANS_15 => Item::Other(format!(
                "file {} {} to {}",
                p.text(27)?,
                p.text(28)?,
                p.text(5)?
            )),
            service::CONFMSG => Item::Other(format!(
                "conference {}: {}",
                p.text(57)?,
                p.message_text(14)?
            )),
            service::COMMENT => {
                Item::Other(format!("room {}: {}", p.text(104)?, p.message_text(117)?))
            }
            service::AUTH | service::AUTHRESP => Item::Other(format!("login {:#x}", p.service)),
            other => {
                return Err(format!(
                    "a client service the server does not know: {other:#x}"
                ))
            }
        };
        Ok(Some((len, item)))
    }

    fn decode_at_client(&self, buf: &[u8]) -> Decoded {
        let Some((len, p)) = decode(buf)? else {
            return Ok(None);
        };
        if p.session != SESSION {
            return Err(format!("session id {:#x}", p.session));
        }
        let item = match p.service {
            service::MESSAGE => {
                if p.get(5) != Some(b"alice") {
                    return Err("a message not to alice".into());
                }
                Item::Text {
                    from: Some(p.text(4)?),
                    text: p.message_text(14)?,
                }
            }
            service::PING => Item::Marker(p.text(MARKER_KEY)?),
            service::NOTIFY => Item::Other(format!("{} from {}", p.text(49)?, p.text(4)?)),
            service::CONFMSG => Item::Other(format!(
                "conference {} {}: {}",
                p.text(57)?,
                p.text(3)?,
                p.message_text(14)?
            )),
            service::COMMENT => Item::Other(format!(
                "room {} {}: {}",
                p.text(104)?,
                p.text(109)?,
                p.message_text(117)?
            )),
            service::AUTH | service::LIST_15 | service::LOGON | service::CONFINVITE => {
                Item::Other(format!("service {:#x}", p.service))
            }
            other => {
                return Err(format!(
                    "a server service the client does not know: {other:#x}"
                ))
            }
        };
        Ok(Some((len, item)))
    }
}

/// A packet as tshark shows it: header fields and pairs in its notation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shown {
    headers: Vec<String>,
    pairs: Vec<(String, String)>,
}

impl Shown {
    /// What tshark should show for these packets: the session id as it reads
    /// it (little-endian), values as ASCII with each other byte a U+FFFD.
    fn of(packets: &[Packet], stream: &[u8]) -> Shown {
        let mut headers = Vec::new();
        let mut at = 0;
        for p in packets {
            let len = u16::from_be_bytes([stream[at + 8], stream[at + 9]]);
            headers.push(format!(
                "16 {len} {} {} {:#010x}",
                p.service,
                p.status,
                p.session.swap_bytes()
            ));
            at += HEADER_LEN + usize::from(len);
        }
        let ascii = |b: &[u8]| -> String {
            b.iter()
                .map(|&c| if c.is_ascii() { c as char } else { '\u{fffd}' })
                .collect()
        };
        let pairs = packets
            .iter()
            .flat_map(|p| p.pairs.iter().map(|(k, v)| (k.to_string(), ascii(v))))
            .collect();
        Shown { headers, pairs }
    }
}

/// Decode the capture `file` with tshark's YMSG dissector and check it read,
/// in each direction, exactly the packets our decoder reads in the bytes the
/// client sent (`to_server`) and received (`to_client`), or the server did.
pub fn check_with_tshark(file: &Path, to_server: &[u8], to_client: &[u8]) -> anyhow::Result<()> {
    let fields = [
        "tcp.srcport",
        "ymsg.version",
        "ymsg.len",
        "ymsg.service",
        "ymsg.status",
        "ymsg.session_id",
        "ymsg.content-line.key",
        "ymsg.content-line.value",
    ];
    let frames = tshark::frames(file, "ymsg", &fields)?;
    for (from_server, stream) in [(false, to_server), (true, to_client)] {
        let packets = decode_all(stream).map_err(|e| anyhow::anyhow!("our decoder: {e}"))?;
        let want = Shown::of(&packets, stream);
        let mut got = Shown {
            headers: Vec::new(),
            pairs: Vec::new(),
        };
        for frame in &frames {
            let port = tshark::values(frame, "tcp.srcport");
            if (port.first().map(String::as_str) == Some("5050")) != from_server {
                continue;
            }
            let column = |name| tshark::values(frame, name);
            let header_fields: Vec<Vec<String>> = [
                "ymsg.version",
                "ymsg.len",
                "ymsg.service",
                "ymsg.status",
                "ymsg.session_id",
            ]
            .into_iter()
            .map(column)
            .collect();
            // One value of each header field per packet in the frame.
            for i in 0..header_fields[0].len() {
                let header: Vec<&str> = header_fields
                    .iter()
                    .map(|f| f.get(i).map_or("", String::as_str))
                    .collect();
                got.headers.push(header.join(" "));
            }
            let keys = column("ymsg.content-line.key");
            let values = column("ymsg.content-line.value");
            anyhow::ensure!(
                keys.len() == values.len(),
                "tshark: keys {keys:?}, values {values:?}"
            );
            got.pairs.extend(keys.into_iter().zip(values));
        }
        let side = if from_server {
            "server to client"
        } else {
            "client to server"
        };
        anyhow::ensure!(
            got == want,
            "tshark reads the {side} packets in {} otherwise:\n  tshark: {got:?}\n  ours:   {want:?}",
            file.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_client_sends_decodes_at_the_server() {
        let mut y = Yahoo::new();
        let msg = y.message("hi there");
        assert_eq!(
            y.decode_at_server(&msg),
            Ok(Some((
                msg.len(),
                Item::Text {
                    from: None,
                    text: "hi there".into()
                }
            )))
        );
        assert_eq!(y.decode_at_server(&msg[..msg.len() - 1]), Ok(None));
        let marker = y.marker();
        assert_eq!(
            y.decode_at_server(&marker),
            Ok(Some((marker.len(), Item::Marker("1".into()))))
        );
        assert_eq!(
            y.decode_at_server(&y.file_offer("a.jpg", 12))
                .unwrap()
                .unwrap()
                .1,
            Item::Other("file a.jpg 12 to bob".into())
        );
    }

    #[test]
    fn wrong_lengths_and_separators_are_malformed() {
        let mut y = Yahoo::new();
        let msg = y.message("hello");
        // One byte short: the last value loses its separator.
        let mut short = msg.clone();
        short[9] -= 1;
        assert!(y.decode_at_server(&short).is_err());
        // Too long: the packet runs into the next one.
        let mut long = msg.clone();
        long[9] += 20;
        long.extend(y.marker());
        assert!(y.decode_at_server(&long).is_err());
        assert!(y.decode_at_server(b"GET / HTTP/1.1\r\n").is_err());
        let leading_zero = Packet::new(service::MESSAGE, 0, &[]).encode();
        let mut bad = leading_zero[..HEADER_LEN].to_vec();
        bad[9] = 6;
        bad.extend(b"01\xc0\x80\xc0\x80");
        assert!(y.decode_at_server(&bad).is_err());
    }

    #[test]
    fn what_the_server_sends_decodes_at_the_client() {
        let y = Yahoo::new();
        let notice = incoming_message(BOB, b"logged", true);
        assert_eq!(
            y.decode_at_client(&notice),
            Ok(Some((
                notice.len(),
                Item::Text {
                    from: Some(BOB.into()),
                    text: "logged".into()
                }
            )))
        );
        let legacy = incoming_message(BOB, b"caf\xe9", false);
        assert_eq!(
            y.decode_at_client(&legacy).unwrap().unwrap().1,
            Item::Text {
                from: Some(BOB.into()),
                text: "café".into()
            }
        );
    }
}
