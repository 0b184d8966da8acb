//! The YMSG packet: a 20-byte header, then key/value pairs.
//!
//! Header (all big-endian): `YMSG`, version (u16), vendor id (u16), payload
//! length (u16, not counting the header), service (u16), status (u32),
//! session id (u32). The payload is `key 0xC0 0x80 value 0xC0 0x80 ...`,
//! keys being decimal numbers. The length field is 16 bits, so a packet is
//! never longer than [`HEADER_LEN`] + 65535 bytes.

pub const MAGIC: &[u8; 4] = b"YMSG";
pub const HEADER_LEN: usize = 20;
pub const SEPARATOR: [u8; 2] = [0xc0, 0x80];
/// The newest version whose packets this parser knows (YMSG 9 to 16).
pub const NEWEST_VERSION: u16 = 16;
/// More pairs in one packet than this is not a packet we inspect: a message
/// packet with a few hundred offline messages has a few thousand.
pub const MAX_PAIRS: usize = 4096;
/// Keys are decimal numbers; none in use has more digits than this.
const MAX_KEY_DIGITS: usize = 6;

/// Service numbers, with libpurple's names.
pub mod service {
    pub const MESSAGE: u16 = 0x06;
    pub const CONFINVITE: u16 = 0x18;
    // 0x19 to 0x1b: conference logon, decline and logoff.
    pub const CONFADDINVITE: u16 = 0x1c;
    pub const CONFMSG: u16 = 0x1d;
    pub const FILETRANSFER: u16 = 0x46;
    pub const NOTIFY: u16 = 0x4b;
    pub const P2PFILEXFER: u16 = 0x4d;
    pub const AUTHRESP: u16 = 0x54;
    pub const AUTH: u16 = 0x57;
    /// A chat room message.
    pub const COMMENT: u16 = 0xa8;
    pub const FILETRANS_15: u16 = 0xdc;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    pub vendor: u16,
    pub len: u16,
    pub service: u16,
    pub status: u32,
    pub session: u32,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Header {
    /// The header at the front of `b`, which starts with [`MAGIC`] and has at
    /// least [`HEADER_LEN`] bytes.
    pub fn parse(b: &[u8]) -> Header {
        Header {
            version: be16(b, 4),
            vendor: be16(b, 6),
            len: be16(b, 8),
            service: be16(b, 10),
            status: be32(b, 12),
            session: be32(b, 16),
        }
    }

    /// The whole packet's length.
    pub fn packet_len(&self) -> usize {
        HEADER_LEN + usize::from(self.len)
    }
}

/// One key/value pair; the value is raw bytes (its charset depends on the packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair<'a> {
    pub key: u32,
    pub value: &'a [u8],
}

/// Why a payload's pairs were not all read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairsError<'a> {
    /// More than [`MAX_PAIRS`]: the first ones, which name the conversation.
    TooMany(Vec<Pair<'a>>),
    /// What is wrong.
    Malformed(String),
}

/// Every pair of a payload. Each key and each value must end with the
/// separator, as every client writes them.
pub fn pairs(payload: &[u8]) -> Result<Vec<Pair<'_>>, PairsError<'_>> {
    let mut out = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        if out.len() == MAX_PAIRS {
            return Err(PairsError::TooMany(out));
        }
        let malformed = PairsError::Malformed;
        let (key, after) = until_separator(rest).ok_or_else(|| {
            malformed(format!("key/value pair {} has no separator", out.len() + 1))
        })?;
        let key = parse_key(key).ok_or_else(|| {
            malformed(format!(
                "key/value pair {} has the key {:?}, not a number",
                out.len() + 1,
                String::from_utf8_lossy(&key[..key.len().min(16)])
            ))
        })?;
        let (value, after) = until_separator(after)
            .ok_or_else(|| malformed(format!("the value of key {key} has no separator")))?;
        out.push(Pair { key, value });
        rest = after;
    }
    Ok(out)
}

/// The bytes before the next separator, and those after it.
fn until_separator(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = find_separator(b)?;
    Some((&b[..at], &b[at + SEPARATOR.len()..]))
}

/// Where the first separator starts. (A two-byte needle: looking for its
/// first byte is faster than setting up a substring search for each field.)
pub fn find_separator(b: &[u8]) -> Option<usize> {
    memchr::memchr_iter(SEPARATOR[0], b).find(|&at| b.get(at + 1) == Some(&SEPARATOR[1]))
}

fn parse_key(key: &[u8]) -> Option<u32> {
    if key.is_empty() || key.len() > MAX_KEY_DIGITS || !key.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(key).ok()?.parse().ok()
}

/// A whole packet from a header (its length is recomputed) and pairs; `None`
/// when the payload would not fit the 16-bit length.
pub fn encode(header: &Header, pairs: &[(u32, &[u8])]) -> Option<Vec<u8>> {
    let mut payload = Vec::new();
    for (key, value) in pairs {
        payload.extend_from_slice(key.to_string().as_bytes());
        payload.extend_from_slice(&SEPARATOR);
        payload.extend_from_slice(value);
        payload.extend_from_slice(&SEPARATOR);
    }
    let len = u16::try_from(payload.len()).ok()?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&header.version.to_be_bytes());
    out.extend_from_slice(&header.vendor.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&header.service.to_be_bytes());
    out.extend_from_slice(&header.status.to_be_bytes());
    out.extend_from_slice(&header.session.to_be_bytes());
    out.extend_from_slice(&payload);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip() {
        let header = Header {
            version: 16,
            vendor: 0,
            len: 0,
            service: service::MESSAGE,
            status: 1,
            session: 0x1234_5678,
        };
        let packet = encode(&header, &[(1, b"alice"), (5, b"bob"), (14, b"")]).unwrap();
        assert_eq!(&packet[..4], b"YMSG");
        let parsed = Header::parse(&packet);
        assert_eq!(parsed.packet_len(), packet.len());
        assert_eq!(Header { len: 0, ..parsed }, header);
        let got = pairs(&packet[HEADER_LEN..]).unwrap();
        assert_eq!(
            got,
            [
                Pair {
                    key: 1,
                    value: b"alice"
                },
                Pair {
                    key: 5,
                    value: b"bob"
                },
                Pair {
                    key: 14,
                    value: b""
                },
            ]
        );
    }

    #[test]
    fn malformed_pairs_say_what_is_wrong() {
        let why = |payload: &[u8]| match pairs(payload) {
            Err(PairsError::Malformed(why)) => why,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            why(b"1\xc0\x80alice"),
            "the value of key 1 has no separator"
        );
        assert_eq!(
            why(b"1\xc0\x80alice\xc0\x805"),
            "key/value pair 2 has no separator"
        );
        assert!(why(b"x1\xc0\x80a\xc0\x80").contains("not a number"));
        assert!(pairs(b"1234567\xc0\x80a\xc0\x80").is_err());
        let many = b"1\xc0\x80\xc0\x80".repeat(MAX_PAIRS + 1);
        match pairs(&many) {
            Err(PairsError::TooMany(first)) => assert_eq!(first.len(), MAX_PAIRS),
            other => panic!("{other:?}"),
        }
        assert_eq!(pairs(&many[..5 * MAX_PAIRS]).unwrap().len(), MAX_PAIRS);
    }

    #[test]
    fn payloads_over_64k_are_not_encoded() {
        let header =
            Header::parse(b"YMSG\x00\x10\x00\x00\x00\x00\x00\x06\x00\x00\x00\x00\x00\x00\x00\x00");
        let big = vec![b'a'; 65535];
        assert!(encode(&header, &[(14, &big)]).is_none());
        assert!(encode(&header, &[(14, &big[..65535 - 7])]).is_some());
    }
}
