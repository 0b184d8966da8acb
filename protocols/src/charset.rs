//! Legacy charsets, through encoding_rs: decoding for the log and the filters,
//! encoding for rewrites and notices.

use encoding_rs::{EncoderResult, Encoding, UTF_16BE, UTF_16LE};

/// Text in `encoding`, malformed sequences replaced by U+FFFD. A BOM is data
/// here: the protocols declare their charset.
pub fn decode(encoding: &'static Encoding, bytes: &[u8]) -> String {
    encoding.decode_without_bom_handling(bytes).0.into_owned()
}

/// `text` in `encoding`, or `None` when a character has no place in it (a
/// rewrite must not change more than the filter asked for).
pub fn encode_exact(encoding: &'static Encoding, text: &str) -> Option<Vec<u8>> {
    encode(encoding, text, None)
}

/// `text` in `encoding`, characters it cannot hold replaced by `?`.
pub fn encode_lossy(encoding: &'static Encoding, text: &str) -> Vec<u8> {
    encode(encoding, text, Some(b'?')).expect("a replacement never fails")
}

fn encode(encoding: &'static Encoding, text: &str, replacement: Option<u8>) -> Option<Vec<u8>> {
    // The Encoding Standard encodes UTF-16 as UTF-8; the wire wants UTF-16.
    if encoding == UTF_16LE || encoding == UTF_16BE {
        let big = encoding == UTF_16BE;
        return Some(
            text.encode_utf16()
                .flat_map(|u| {
                    if big {
                        u.to_be_bytes()
                    } else {
                        u.to_le_bytes()
                    }
                })
                .collect(),
        );
    }
    let mut encoder = encoding.new_encoder();
    let mut out = Vec::with_capacity(text.len() + 16);
    let mut rest = text;
    loop {
        let needed = encoder
            .max_buffer_length_from_utf8_without_replacement(rest.len())
            .unwrap_or(rest.len() * 4 + 16);
        out.reserve(needed);
        let (result, read) =
            encoder.encode_from_utf8_to_vec_without_replacement(rest, &mut out, true);
        rest = &rest[read..];
        match result {
            EncoderResult::InputEmpty => return Some(out),
            EncoderResult::OutputFull => {}
            EncoderResult::Unmappable(_) => out.push(replacement?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use encoding_rs::{UTF_8, WINDOWS_1250, WINDOWS_1252};

    #[test]
    fn windows_1252_is_not_latin_1() {
        // 0x80..0x9F are glyphs in windows-1252 and controls in ISO-8859-1.
        let bytes = b"\x80 \x93quoted\x94 \x85 caf\xe9";
        let text = decode(WINDOWS_1252, bytes);
        assert_eq!(text, "€ \u{201c}quoted\u{201d} … café");
        assert_eq!(encode_exact(WINDOWS_1252, &text).unwrap(), bytes);
    }

    #[test]
    fn cp1250_polish_letters_and_unassigned_bytes_round_trip() {
        let bytes = b"Za\xbf\xf3\xb3\xe6 g\xea\x9cl\xb9 ja\x9f\xf1 \xa3\x8c\x8f\xaf";
        let text = decode(WINDOWS_1250, bytes);
        assert_eq!(text, "Zażółć gęślą jaźń ŁŚŹŻ");
        assert_eq!(encode_exact(WINDOWS_1250, &text).unwrap(), bytes);
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(
            encode_exact(WINDOWS_1250, &decode(WINDOWS_1250, &all)).unwrap(),
            all
        );
    }

    #[test]
    fn unmappable_characters_fail_or_become_question_marks() {
        assert_eq!(encode_exact(WINDOWS_1250, "a€b漢"), None);
        assert_eq!(encode_lossy(WINDOWS_1250, "a€b漢c"), b"a\x80b?c");
        assert_eq!(encode_exact(UTF_8, "漢").unwrap(), "漢".as_bytes());
    }

    #[test]
    fn utf_16_both_ways() {
        let le = b"h\0i\0 \0\xac\x20";
        assert_eq!(decode(UTF_16LE, le), "hi €");
        assert_eq!(encode_exact(UTF_16LE, "hi €").unwrap(), le);
        assert_eq!(encode_exact(UTF_16BE, "hi").unwrap(), b"\0h\0i");
    }
}
