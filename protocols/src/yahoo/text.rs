//! Charsets of YMSG values. A message says it is UTF-8 with key 97 = 1;
//! without it, clients wrote their legacy Windows code page, taken here to be
//! windows-1252 (what the Western-language clients used).

use encoding_rs::WINDOWS_1252;

use super::packet::find_separator;
use crate::charset;

/// A message text, decoded as its key 97 says.
pub fn decode(bytes: &[u8], utf8: bool) -> String {
    if utf8 {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        charset::decode(WINDOWS_1252, bytes)
    }
}

/// A message text in the charset of the packet it goes into; `None` when
/// windows-1252 cannot hold a character of it, or when it would hold a
/// separator (only windows-1252 can give one: "À€"), which would cut the
/// packet's pairs.
pub fn encode(text: &str, utf8: bool) -> Option<Vec<u8>> {
    if utf8 {
        return Some(text.as_bytes().to_vec());
    }
    let bytes = charset::encode_exact(WINDOWS_1252, text)?;
    find_separator(&bytes).is_none().then_some(bytes)
}

/// An id, room or file name: UTF-8 when it is valid UTF-8 (clients of YMSG 13
/// and later), the legacy charset otherwise.
pub fn name(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => decode(bytes, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_text_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255u8).filter(|&b| b != 0xc0).collect();
        let text = decode(&all, false);
        assert_eq!(encode(&text, false).unwrap(), all);
        assert_eq!(decode(b"caf\xe9 \x80", false), "café €");
    }

    #[test]
    fn what_a_packet_cannot_hold_is_refused() {
        assert_eq!(encode("À€", false), None);
        assert_eq!(encode("À €", false).unwrap(), b"\xc0 \x80");
        assert_eq!(encode("漢", false), None);
        assert_eq!(encode("漢", true).unwrap(), "漢".as_bytes());
    }

    #[test]
    fn names_are_utf8_or_legacy() {
        assert_eq!(name("zoë".as_bytes()), "zoë");
        assert_eq!(name(b"zo\xeb"), "zoë");
    }
}
