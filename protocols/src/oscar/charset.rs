//! The character sets OSCAR texts declare, decoded to UTF-8 with encoding_rs.

use encoding_rs::{Encoding, UTF_16BE, WINDOWS_1252};

/// Charset numbers of an ICBM message fragment.
pub const ASCII: u16 = 0x0000;
pub const UCS2BE: u16 = 0x0002;
pub const LATIN1: u16 = 0x0003;

/// The chat-room label for UCS-2BE (family 0x0E names charsets as strings).
pub const UCS2_LABEL: &[u8] = b"unicode-2-0";

/// A decoded text, and whether its bytes were malformed for the charset.
pub struct Decoded {
    pub text: String,
    pub malformed: bool,
}

/// A fragment's text in charset `charset`. ASCII and unknown numbers take
/// UTF-8 when the bytes are valid UTF-8 (clients send it so), else Latin-1.
/// Latin-1 is read as windows-1252, its superset, as browsers and clients do.
pub fn decode(charset: u16, bytes: &[u8]) -> Decoded {
    match charset {
        UCS2BE => ucs2(bytes),
        LATIN1 => latin1(bytes),
        _ => legacy(bytes),
    }
}

/// A chat-room text in the charset its label names (`us-ascii`,
/// `iso-8859-1`, `unicode-2-0`, `utf-8`...).
pub fn decode_label(label: &[u8], bytes: &[u8]) -> Decoded {
    if label.eq_ignore_ascii_case(UCS2_LABEL) {
        return ucs2(bytes);
    }
    match Encoding::for_label(label) {
        Some(encoding) if encoding != UTF_16BE && encoding.is_single_byte() => {
            let (text, malformed) = encoding.decode_without_bom_handling(bytes);
            Decoded {
                text: text.into_owned(),
                malformed,
            }
        }
        _ => legacy(bytes),
    }
}

/// Text with no declared charset (old ICQ messages): UTF-8 when valid, else
/// the Western codepage.
pub fn legacy(bytes: &[u8]) -> Decoded {
    match std::str::from_utf8(bytes) {
        Ok(text) => Decoded {
            text: text.to_string(),
            malformed: false,
        },
        Err(_) => latin1(bytes),
    }
}

fn latin1(bytes: &[u8]) -> Decoded {
    let (text, malformed) = WINDOWS_1252.decode_without_bom_handling(bytes);
    Decoded {
        text: text.into_owned(),
        malformed,
    }
}

/// UCS-2BE; an odd length leaves half a character, which decodes to U+FFFD
/// and marks the text malformed.
fn ucs2(bytes: &[u8]) -> Decoded {
    let (text, malformed) = UTF_16BE.decode_without_bom_handling(bytes);
    Decoded {
        text: text.into_owned(),
        malformed: malformed || bytes.len() % 2 == 1,
    }
}

/// `text` for a fragment that declared `charset`: in that charset when it can
/// hold the text, else in UCS-2BE. Returns the charset used and the bytes.
pub fn encode(charset: u16, text: &str) -> (u16, Vec<u8>) {
    if charset != UCS2BE {
        if text.is_ascii() {
            return (charset, text.as_bytes().to_vec());
        }
        if charset == LATIN1 {
            if let Some(bytes) = crate::charset::encode_exact(WINDOWS_1252, text) {
                return (LATIN1, bytes);
            }
        }
    }
    (UCS2BE, ucs2_bytes(text))
}

pub fn ucs2_bytes(text: &str) -> Vec<u8> {
    crate::charset::encode_lossy(UTF_16BE, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_declared_charset_decodes() {
        assert_eq!(decode(ASCII, b"hey").text, "hey");
        assert_eq!(decode(LATIN1, b"caf\xe9").text, "café");
        assert_eq!(decode(UCS2BE, &ucs2_bytes("żółw")).text, "żółw");
        assert_eq!(decode(ASCII, "żółw".as_bytes()).text, "żółw");
        assert_eq!(decode_label(b"unicode-2-0", &[0, b'h', 0, b'i']).text, "hi");
        assert_eq!(decode_label(b"iso-8859-1", b"\xe9").text, "é");
        assert_eq!(decode_label(b"utf-8", "é".as_bytes()).text, "é");
    }

    #[test]
    fn an_odd_ucs2_length_is_malformed() {
        let d = decode(UCS2BE, &[0, b'h', 0]);
        assert!(d.malformed);
        assert_eq!(d.text, "h\u{fffd}");
    }

    #[test]
    fn a_text_keeps_its_charset_when_it_can() {
        assert_eq!(encode(ASCII, "hi"), (ASCII, b"hi".to_vec()));
        assert_eq!(encode(LATIN1, "é"), (LATIN1, vec![0xe9]));
        assert_eq!(encode(LATIN1, "ż"), (UCS2BE, vec![0x01, 0x7c]));
        assert_eq!(encode(ASCII, "é"), (UCS2BE, vec![0x00, 0xe9]));
        assert_eq!(encode(UCS2BE, "a"), (UCS2BE, vec![0, b'a']));
    }
}
