//! Charsets of YMSG values. A message says it is UTF-8 with key 97 = 1;
//! without it, clients wrote their legacy Windows code page, taken here to be
//! windows-1252 (what the Western-language clients used).

use encoding_rs::WINDOWS_1252;

use super::packet::SEPARATOR;

/// A message text, decoded as its key 97 says.
pub fn decode(bytes: &[u8], utf8: bool) -> String {
    if utf8 {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        WINDOWS_1252
            .decode_without_bom_handling(bytes)
            .0
            .into_owned()
    }
}

/// A message text in the charset of the packet it goes into. Characters
/// windows-1252 lacks become numeric character references (`&#8364;`), which
/// the clients' HTML-like rendering shows. A separator never appears in the
/// result, so a filter's text cannot cut the packet's pairs.
pub fn encode(text: &str, utf8: bool) -> Vec<u8> {
    let mut bytes = if utf8 {
        text.as_bytes().to_vec()
    } else {
        WINDOWS_1252.encode(text).0.into_owned()
    };
    // Only windows-1252 can produce it ("À€"); UTF-8 never has 0xC0.
    while let Some(at) = memchr::memmem::find(&bytes, &SEPARATOR) {
        bytes[at] = b'?';
    }
    bytes
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
        assert_eq!(encode(&text, false), all);
        assert_eq!(decode(b"caf\xe9 \x80", false), "café €");
    }

    #[test]
    fn encoded_text_never_holds_a_separator() {
        assert_eq!(encode("À€", false), b"?\x80");
        assert_eq!(encode("漢", false), b"&#28450;");
        assert_eq!(encode("漢", true), "漢".as_bytes());
    }

    #[test]
    fn names_are_utf8_or_legacy() {
        assert_eq!(name("zoë".as_bytes()), "zoë");
        assert_eq!(name(b"zo\xeb"), "zoë");
    }
}
