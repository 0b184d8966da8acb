//! The MIME-style header blocks of MSG payloads and MSNP21 SDG payloads, and
//! the text charsets they declare.

use memchr::memmem;

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

/// The charsets a text body can be rewritten in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    Utf8,
    /// ISO-8859-1 and the Windows code page 1252 that old clients sent
    /// (decoded as ISO-8859-1: the few 0x80..0x9F glyphs come out as controls).
    Latin1,
    /// Anything else: logged as UTF-8 where valid, else as Latin-1; not rewritten.
    Other,
}

impl Charset {
    fn named(name: Option<&str>) -> Self {
        let Some(name) = name else {
            // MSN clients from 5.0 on always sent UTF-8; a body without charset
            // is decoded as UTF-8 where valid.
            return Charset::Utf8;
        };
        match name.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Charset::Utf8,
            "iso-8859-1" | "latin1" | "iso8859-1" | "windows-1252" | "cp1252" | "us-ascii" => {
                Charset::Latin1
            }
            _ => Charset::Other,
        }
    }

    pub fn decode(self, bytes: &[u8]) -> String {
        match self {
            Charset::Latin1 => latin1(bytes),
            Charset::Utf8 | Charset::Other => match std::str::from_utf8(bytes) {
                Ok(text) => text.to_string(),
                Err(_) => latin1(bytes),
            },
        }
    }

    /// `None` when text in this charset cannot be re-encoded faithfully.
    pub fn encode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Charset::Utf8 => Some(text.as_bytes().to_vec()),
            Charset::Latin1 => Some(
                text.chars()
                    .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                    .collect(),
            ),
            Charset::Other => None,
        }
    }
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_body() {
        let data = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nhi";
        let (h, body) = split_headers(data).unwrap();
        assert_eq!(h.media_type(), "text/plain");
        assert_eq!(h.charset(), Charset::Utf8);
        assert_eq!(h.get("mime-version"), Some("1.0"));
        assert_eq!(&data[body..], b"hi");
    }

    #[test]
    fn latin1_round_trips() {
        let cs = Charset::named(Some("ISO-8859-1"));
        assert_eq!(cs.decode(b"caf\xe9"), "café");
        assert_eq!(cs.encode("café €").unwrap(), b"caf\xe9 ?");
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
