//! The MIME-style header blocks of MSG payloads and MSNP21 SDG payloads, and
//! the text charsets they declare.

use encoding_rs::{Encoding, UTF_8, WINDOWS_1252};
use memchr::memmem;

use crate::charset;

/// One header block (`Name: value` lines) followed by a blank line.
#[derive(Debug)]
pub struct Headers<'a> {
    fields: Vec<(&'a str, &'a str)>,
}

impl<'a> Headers<'a> {
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// The media type, lower-cased, without parameters.
    pub fn media_type(&self) -> String {
        let ct = self.get("Content-Type").unwrap_or("");
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    }

    /// The `charset` parameter of the Content-Type.
    pub fn charset(&self) -> Charset {
        let ct = self.get("Content-Type").unwrap_or("");
        let param = ct.split(';').skip(1).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("charset")
                .then(|| v.trim().trim_matches('"'))
        });
        Charset::named(param)
    }
}

/// Split `data` into a header block and the offset of what follows its blank
/// line. Without a blank line the whole of `data` is headers. `None` when the
/// block is not text.
pub fn split_headers(data: &[u8]) -> Option<(Headers<'_>, usize)> {
    let (block, rest) = match memmem::find(data, b"\r\n\r\n") {
        Some(i) => (&data[..i], i + 4),
        None => (data, data.len()),
    };
    let block = std::str::from_utf8(block).ok()?;
    let fields = block
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim(), v.trim()))
        .collect();
    Some((Headers { fields }, rest))
}

/// Replace the value of header `name` in a header block (bytes up to and
/// including its blank line); the block is returned unchanged without it.
pub fn set_header(block: &[u8], name: &str, value: &str) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(block) else {
        return block.to_vec();
    };
    let mut out = String::with_capacity(text.len() + value.len());
    for line in text.split_inclusive("\r\n") {
        match line.split_once(':') {
            Some((n, _)) if n.trim().eq_ignore_ascii_case(name) => {
                out.push_str(n);
                out.push_str(": ");
                out.push_str(value);
                out.push_str("\r\n");
            }
            _ => out.push_str(line),
        }
    }
    out.into_bytes()
}

/// The charset a text body declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// A label encoding_rs knows. As in browsers, ISO-8859-1 and US-ASCII are
    /// windows-1252, which old clients really sent. No label at all is UTF-8:
    /// MSN clients from 5.0 on always sent it.
    Known(&'static Encoding),
    /// A label nobody knows: logged as UTF-8 where valid; never rewritten.
    Unknown,
}

impl Charset {
    fn named(name: Option<&str>) -> Self {
        match name {
            None => Charset::Known(UTF_8),
            Some(label) => Encoding::for_label(label.trim().as_bytes())
                .map_or(Charset::Unknown, Charset::Known),
        }
    }

    /// UTF-8 that is not valid UTF-8 (and text of an unknown charset) is read as
    /// windows-1252, so that no byte is lost from the log.
    pub fn decode(self, bytes: &[u8]) -> String {
        match self {
            Charset::Known(encoding) if encoding != UTF_8 => charset::decode(encoding, bytes),
            _ => match std::str::from_utf8(bytes) {
                Ok(text) => text.to_string(),
                Err(_) => charset::decode(WINDOWS_1252, bytes),
            },
        }
    }

    /// `None` when text in this charset cannot be re-encoded faithfully.
    pub fn encode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Charset::Known(encoding) => charset::encode_exact(encoding, text),
            Charset::Unknown => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_body() {
        let data = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nhi";
        let (h, body) = split_headers(data).unwrap();
        assert_eq!(h.media_type(), "text/plain");
        assert_eq!(h.charset(), Charset::Known(UTF_8));
        assert_eq!(h.get("mime-version"), Some("1.0"));
        assert_eq!(&data[body..], b"hi");
    }

    #[test]
    fn declared_charsets_decode_as_encoding_rs_reads_them() {
        // ISO-8859-1 is windows-1252: 0x80 is the euro sign, not a control.
        let cs = Charset::named(Some("ISO-8859-1"));
        assert_eq!(cs.decode(b"caf\xe9 \x80"), "café €");
        assert_eq!(cs.encode("café €").unwrap(), b"caf\xe9 \x80");
        assert_eq!(cs.encode("漢"), None);
        // UTF-16 (little-endian unless said otherwise), as some clients sent.
        let cs = Charset::named(Some("utf-16"));
        assert_eq!(cs.decode(b"h\0i\0"), "hi");
        assert_eq!(cs.encode("hi").unwrap(), b"h\0i\0");
        assert_eq!(Charset::named(Some("Shift_JIS")).decode(b"\x82\xa0"), "あ");
        // Invalid UTF-8 keeps its bytes in the log; an unknown charset is
        // logged but never rewritten.
        assert_eq!(Charset::named(Some("UTF-8")).decode(b"caf\xe9"), "café");
        assert_eq!(Charset::named(Some("x-klingon")).encode("hi"), None);
    }

    #[test]
    fn set_header_replaces_only_the_named_one() {
        let block = b"Content-Type: Text/plain\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(
            set_header(block, "content-length", "12"),
            b"Content-Type: Text/plain\r\nContent-Length: 12\r\n\r\n"
        );
    }
}
