//! The HTTP request and response heads that ICAP encapsulates, parsed with
//! httparse, and the small edits an answer needs (a new Content-Length).

use bytes::Bytes;

/// Most headers in one encapsulated HTTP head.
const MAX_HEADERS: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    /// As sent: origin form (`/path?q`) or, through a proxy, absolute form.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub raw: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub raw: Bytes,
}

fn collect(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect()
}

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl HttpRequest {
    pub fn parse(raw: Bytes) -> Result<Self, String> {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut slots);
        match req.parse(&raw) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err("HTTP request head is incomplete".into()),
            Err(e) => return Err(format!("HTTP request head: {e}")),
        }
        Ok(HttpRequest {
            method: req.method.unwrap_or_default().to_string(),
            target: req.path.unwrap_or_default().to_string(),
            headers: collect(req.headers),
            raw: raw.clone(),
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    /// The target without scheme and authority: `/path?query`.
    fn origin_form(&self) -> &str {
        match self.target.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
            None => &self.target,
        }
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.origin_form().split(['?', '#']).next().unwrap_or("/")
    }

    /// A query parameter's raw value.
    pub fn query(&self, name: &str) -> Option<&str> {
        let (_, query) = self.origin_form().split_once('?')?;
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// The host the request is for, lower-cased, without the port.
    pub fn host(&self) -> String {
        let authority = match self.target.split_once("://") {
            Some((_, rest)) => rest.split('/').next().unwrap_or_default(),
            None => self.header("Host").unwrap_or_default(),
        };
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority.split(':').next().unwrap_or_default(),
        };
        host.to_ascii_lowercase()
    }
}

impl HttpResponse {
    pub fn parse(raw: Bytes) -> Result<Self, String> {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut slots);
        match res.parse(&raw) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err("HTTP response head is incomplete".into()),
            Err(e) => return Err(format!("HTTP response head: {e}")),
        }
        Ok(HttpResponse {
            status: res.code.unwrap_or_default(),
            headers: collect(res.headers),
            raw: raw.clone(),
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }
}

/// True when a head's Content-Type is JSON and its body is not compressed.
pub fn is_plain_json(headers: &[(String, String)]) -> bool {
    let json = find(headers, "Content-Type").is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t.starts_with("application/json") || t.contains("+json")
    });
    let encoded =
        find(headers, "Content-Encoding").is_some_and(|e| !e.eq_ignore_ascii_case("identity"));
    json && !encoded
}

/// `raw` with every Content-Length header set to `len` (added when the head
/// has none and does not use chunked transfer coding).
pub fn with_content_length(raw: &[u8], len: usize) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw);
    let head = text.trim_end_matches("\r\n");
    let mut lines: Vec<String> = Vec::new();
    let mut found = false;
    let mut chunked = false;
    for line in head.split("\r\n") {
        let name = line.split(':').next().unwrap_or_default().trim();
        if name.eq_ignore_ascii_case("Content-Length") {
            found = true;
            lines.push(format!("Content-Length: {len}"));
        } else {
            if name.eq_ignore_ascii_case("Transfer-Encoding") {
                chunked = true;
            }
            lines.push(line.to_string());
        }
    }
    if !found && !chunked {
        lines.push(format!("Content-Length: {len}"));
    }
    let mut out = lines.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// A complete HTTP/1.1 response head.
pub fn response_head(status: &str, content_type: &str, len: usize) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\
         Cache-Control: no-store\r\n\r\n"
    )
    .into_bytes()
}

/// Percent-decoding of a path segment (`%21room%3Aserver` -> `!room:server`).
pub fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_targets() {
        let r = HttpRequest::parse(Bytes::from_static(
            b"PUT http://Matrix.Test:8008/_matrix/client/v3/rooms/x?access_token=t&a=b HTTP/1.1\r\nHost: matrix.test:8008\r\n\r\n",
        ))
        .unwrap();
        assert_eq!(r.path(), "/_matrix/client/v3/rooms/x");
        assert_eq!(r.query("access_token"), Some("t"));
        assert_eq!(r.host(), "matrix.test");
        let r = HttpRequest::parse(Bytes::from_static(
            b"GET /a HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
        ))
        .unwrap();
        assert_eq!((r.path(), r.host().as_str()), ("/a", "::1"));
    }

    #[test]
    fn content_length_is_replaced_or_added() {
        assert_eq!(
            with_content_length(b"PUT / HTTP/1.1\r\ncontent-length: 5\r\nX: y\r\n\r\n", 12),
            b"PUT / HTTP/1.1\r\nContent-Length: 12\r\nX: y\r\n\r\n"
        );
        assert_eq!(
            with_content_length(b"HTTP/1.1 200 OK\r\n\r\n", 3),
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
        );
        assert_eq!(
            with_content_length(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 3),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("%21abc%3Atest.local"), "!abc:test.local");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
