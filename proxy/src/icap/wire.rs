//! ICAP/1.0 request framing (RFC 3507), sans-IO and bounded.
//!
//! A request is a head (request line and headers, like HTTP's), then the
//! encapsulated HTTP header sections whose sizes the `Encapsulated` header
//! gives as offsets, then at most one body in HTTP/1.1 chunked coding. A body
//! may start as a preview: its last chunk is `0; ieof` when the whole body fit,
//! or plain `0` when the client waits for `100 Continue` (or for a final answer)
//! before sending the rest.
//!
//! [`Reader`] takes bytes from the caller's buffer and returns one [`Item`] at a
//! time. It never buffers on its own: body data is handed out as soon as it
//! arrives, so memory is the caller's read buffer plus at most [`MAX_HEAD`] and
//! [`MAX_HTTP_HEADS`] for the heads. Whether an [`Error`] leaves the connection
//! usable is up to the caller: every error here means the framing is lost.

use bytes::{Buf, Bytes, BytesMut};

/// Largest ICAP head (request line and headers).
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest total size of the encapsulated HTTP header sections.
pub const MAX_HTTP_HEADS: usize = 64 * 1024;
/// Most ICAP headers in one request.
const MAX_HEADERS: usize = 64;
/// Longest chunk-size line (size and extensions).
const MAX_CHUNK_LINE: usize = 1024;
/// Largest preview a client may announce.
const MAX_PREVIEW: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Options,
    Reqmod,
    Respmod,
    /// Framed like the others; answered 501.
    Other(String),
}

/// Which encapsulated body follows the header sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Request,
    Response,
    Options,
}

/// A parsed request head with its encapsulated HTTP header sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: String,
    /// The URI's path, which names the service (`/reqmod`).
    pub service: String,
    /// ICAP headers in order, as sent.
    pub headers: Vec<(String, String)>,
    /// Bytes of body the client sends before waiting for `100 Continue`.
    pub preview: Option<usize>,
    /// The client accepts `204 No Content` outside a preview.
    pub allow_204: bool,
    pub req_hdr: Option<Bytes>,
    pub res_hdr: Option<Bytes>,
    /// `None` for `null-body`.
    pub body: Option<BodyKind>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the reader found next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Request(Request),
    /// Body bytes, with the chunked coding removed.
    Data(Bytes),
    /// The last chunk. `preview` is true when it ended a preview that did not
    /// hold the whole body: the client now waits for `100 Continue` or an answer.
    End {
        preview: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("request head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("malformed request line")]
    RequestLine,
    #[error("ICAP version {0:?} is not supported")]
    Version(String),
    #[error("malformed header: {0}")]
    Header(String),
    #[error("no Encapsulated header")]
    NoEncapsulated,
    #[error("bad Encapsulated header: {0}")]
    Encapsulated(String),
    #[error("bad Preview header {0:?}")]
    Preview(String),
    #[error("encapsulated {0} does not end with an empty line (wrong offsets?)")]
    Section(&'static str),
    #[error("bad chunk: {0}")]
    Chunk(String),
    #[error("preview longer than the {0} bytes announced")]
    PreviewTooLong(usize),
}

impl Error {
    /// The ICAP status line for this error.
    pub fn status(&self) -> &'static str {
        match self {
            Error::Version(_) => "505 ICAP Version Not Supported",
            _ => "400 Bad Request",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Waiting for a chunk-size line.
    Size,
    /// This many data bytes of the current chunk are still to come.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// The empty line after the last chunk; `ieof` as its size line said.
    Last { ieof: bool },
}

/// What one step of chunk decoding did.
enum Step {
    Item(Item),
    /// Changed state; try again.
    Again,
    /// Needs more bytes.
    More,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Head,
    /// The head is parsed; its header sections (`len` bytes) are awaited.
    Sections {
        request: Box<Request>,
        offsets: Offsets,
    },
    Body(Chunk),
    /// A preview ended; the caller decides with [`Reader::continue_body`] or
    /// [`Reader::finish`].
    AfterPreview,
}

#[derive(Debug)]
pub struct Reader {
    state: State,
    /// The current body is still a preview of this many bytes.
    preview: Option<usize>,
    /// Body bytes of the preview so far.
    preview_seen: usize,
}

impl Default for Reader {
    fn default() -> Self {
        Reader {
            state: State::Head,
            preview: None,
            preview_seen: 0,
        }
    }
}

impl Reader {
    /// True between requests: a clean place for the connection to end.
    pub fn at_boundary(&self) -> bool {
        self.state == State::Head
    }

    /// True while the reader waits for the caller after a preview.
    pub fn after_preview(&self) -> bool {
        self.state == State::AfterPreview
    }

    /// After a preview: the server sent `100 Continue`; the rest of the body follows.
    pub fn continue_body(&mut self) {
        debug_assert_eq!(self.state, State::AfterPreview);
        self.state = State::Body(Chunk::Size);
        self.preview = None;
    }

    /// After a preview: the server answered; the next request follows.
    pub fn finish(&mut self) {
        debug_assert_eq!(self.state, State::AfterPreview);
        self.state = State::Head;
        self.preview = None;
    }

    /// The next item from the front of `buf`, or `None` when more bytes are
    /// needed (or the reader waits after a preview).
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, Error> {
        loop {
            match &mut self.state {
                State::Head => {
                    // Tolerate blank lines between requests.
                    while buf.starts_with(b"\r\n") {
                        buf.advance(2);
                    }
                    let Some((request, offsets, len)) = parse_head(buf)? else {
                        return Ok(None);
                    };
                    buf.advance(len);
                    self.state = State::Sections {
                        request: Box::new(request),
                        offsets,
                    };
                }
                State::Sections { request, offsets } => {
                    if buf.len() < offsets.body {
                        return Ok(None);
                    }
                    let sections = buf.split_to(offsets.body).freeze();
                    let mut request = std::mem::replace(request, Box::new(empty_request()));
                    request.req_hdr = offsets
                        .req_hdr
                        .map(|r| section(&sections, r, "req-hdr"))
                        .transpose()?;
                    request.res_hdr = offsets
                        .res_hdr
                        .map(|r| section(&sections, r, "res-hdr"))
                        .transpose()?;
                    self.state = match request.body {
                        Some(_) => State::Body(Chunk::Size),
                        None => State::Head,
                    };
                    self.preview = request.body.and(request.preview);
                    self.preview_seen = 0;
                    return Ok(Some(Item::Request(*request)));
                }
                State::Body(_) => match self.chunk_step(buf)? {
                    Step::Item(item) => return Ok(Some(item)),
                    Step::Again => {}
                    Step::More => return Ok(None),
                },
                State::AfterPreview => return Ok(None),
            }
        }
    }

    /// One step of chunk decoding.
    fn chunk_step(&mut self, buf: &mut BytesMut) -> Result<Step, Error> {
        let State::Body(chunk) = self.state else {
            return Ok(Step::More);
        };
        match chunk {
            Chunk::Size => {
                let Some(end) = find_crlf(buf, MAX_CHUNK_LINE)? else {
                    return Ok(Step::More);
                };
                let line = buf.split_to(end + 2);
                let (size, ieof) = parse_size_line(&line[..end])?;
                self.state = State::Body(if size == 0 {
                    Chunk::Last { ieof }
                } else {
                    if let Some(limit) = self.preview {
                        let seen = self.preview_seen as u64 + size;
                        if seen > limit as u64 {
                            return Err(Error::PreviewTooLong(limit));
                        }
                        self.preview_seen = seen as usize;
                    }
                    Chunk::Data(size)
                });
                Ok(Step::Again)
            }
            Chunk::Data(left) => {
                if buf.is_empty() {
                    return Ok(Step::More);
                }
                let n = (buf.len() as u64).min(left) as usize;
                let data = buf.split_to(n).freeze();
                self.state = State::Body(if n as u64 == left {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left - n as u64)
                });
                Ok(Step::Item(Item::Data(data)))
            }
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    return Ok(Step::More);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(Error::Chunk(
                        "chunk data longer than its size line says".into(),
                    ));
                }
                buf.advance(2);
                self.state = State::Body(Chunk::Size);
                Ok(Step::Again)
            }
            Chunk::Last { ieof } => {
                if buf.len() < 2 {
                    return Ok(Step::More);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(Error::Chunk("no empty line after the last chunk".into()));
                }
                buf.advance(2);
                let waiting = self.preview.is_some() && !ieof;
                self.state = if waiting {
                    State::AfterPreview
                } else {
                    State::Head
                };
                self.preview = None;
                Ok(Step::Item(Item::End { preview: waiting }))
            }
        }
    }
}

/// Position of the first CRLF within `limit` bytes, or an error when the line
/// is longer.
fn find_crlf(buf: &[u8], limit: usize) -> Result<Option<usize>, Error> {
    match buf.windows(2).take(limit).position(|w| w == b"\r\n") {
        Some(end) => Ok(Some(end)),
        None if buf.len() > limit => Err(Error::Chunk(format!(
            "chunk-size line longer than {limit} bytes"
        ))),
        None => Ok(None),
    }
}

/// `hex-size [; ext...]`: the size and whether `ieof` is among the extensions.
fn parse_size_line(line: &[u8]) -> Result<(u64, bool), Error> {
    let text =
        std::str::from_utf8(line).map_err(|_| Error::Chunk("size line is not text".into()))?;
    let mut parts = text.split(';');
    let size = parts.next().unwrap_or_default().trim();
    if size.is_empty() || size.len() > 15 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Chunk(format!("chunk size {size:?} is not hex")));
    }
    let size = u64::from_str_radix(size, 16).map_err(|e| Error::Chunk(e.to_string()))?;
    let ieof = parts.any(|ext| ext.trim().eq_ignore_ascii_case("ieof"));
    Ok((size, ieof))
}

/// Where each header section and the body start.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Offsets {
    /// Start and end of each header section.
    req_hdr: Option<(usize, usize)>,
    res_hdr: Option<(usize, usize)>,
    /// Where the body starts: the total size of the sections.
    body: usize,
}

fn empty_request() -> Request {
    Request {
        method: Method::Options,
        uri: String::new(),
        service: String::new(),
        headers: Vec::new(),
        preview: None,
        allow_204: false,
        req_hdr: None,
        res_hdr: None,
        body: None,
    }
}

fn section(all: &Bytes, (start, end): (usize, usize), name: &'static str) -> Result<Bytes, Error> {
    let bytes = all.slice(start..end);
    if !bytes.ends_with(b"\r\n\r\n") {
        return Err(Error::Section(name));
    }
    Ok(bytes)
}

/// Parse the request head at the front of `buf`: the request, where its
/// sections are, and the head's length.
fn parse_head(buf: &[u8]) -> Result<Option<(Request, Offsets, usize)>, Error> {
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let Some(line_end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= MAX_HEAD {
            Err(Error::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    let line = std::str::from_utf8(&window[..line_end]).map_err(|_| Error::RequestLine)?;
    let mut words = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(Error::RequestLine);
    };
    if method.is_empty() || uri.is_empty() {
        return Err(Error::RequestLine);
    }
    if version != "ICAP/1.0" {
        return Err(Error::Version(version.to_string()));
    }
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (len, parsed) = match httparse::parse_headers(&window[line_end + 2..], &mut slots) {
        Ok(httparse::Status::Complete((n, parsed))) => (line_end + 2 + n, parsed),
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(Error::HeadTooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Error::Header(e.to_string())),
    };
    let mut headers = Vec::with_capacity(parsed.len());
    for h in parsed.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| Error::Header(format!("{} is not text", h.name)))?;
        headers.push((h.name.to_string(), value.trim().to_string()));
    }
    let method = match method {
        "OPTIONS" => Method::Options,
        "REQMOD" => Method::Reqmod,
        "RESPMOD" => Method::Respmod,
        other => Method::Other(other.to_string()),
    };
    let mut request = Request {
        service: service_path(uri),
        uri: uri.to_string(),
        method,
        headers,
        ..empty_request()
    };
    let encapsulated = request.header("Encapsulated").map(str::to_string);
    let offsets = match encapsulated {
        Some(value) => parse_encapsulated(&value, &request.method, &mut request.body)?,
        None if request.method == Method::Options => Offsets {
            req_hdr: None,
            res_hdr: None,
            body: 0,
        },
        None => return Err(Error::NoEncapsulated),
    };
    request.preview = match request.header("Preview") {
        None => None,
        Some(v) => Some(
            v.parse::<usize>()
                .ok()
                .filter(|n| *n <= MAX_PREVIEW)
                .ok_or_else(|| Error::Preview(v.to_string()))?,
        ),
    };
    request.allow_204 = request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Allow"))
        .flat_map(|(_, v)| v.split(','))
        .any(|code| code.trim() == "204");
    Ok(Some((request, offsets, len)))
}

/// `icap://host:port/reqmod?x` -> `/reqmod`.
fn service_path(uri: &str) -> String {
    let rest = uri
        .strip_prefix("icap://")
        .map_or(uri, |r| r.find('/').map_or("", |i| &r[i..]));
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    if path.is_empty() {
        "/".to_string()
    } else {
        path.to_string()
    }
}

/// `req-hdr=0, res-hdr=412, res-body=905`: the sections must be in order
/// (request before response), start at 0, and end with exactly one body
/// entry that fits the method.
fn parse_encapsulated(
    value: &str,
    method: &Method,
    body: &mut Option<BodyKind>,
) -> Result<Offsets, Error> {
    let bad = |why: String| Error::Encapsulated(why);
    let mut entries = Vec::new();
    for part in value.split(',') {
        let (name, offset) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| bad(format!("{:?} is not name=offset", part.trim())))?;
        let offset = offset
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|o| *o <= MAX_HTTP_HEADS)
            .ok_or_else(|| {
                bad(format!(
                    "offset {offset:?} is not a number up to {MAX_HTTP_HEADS}"
                ))
            })?;
        entries.push((name.trim(), offset));
    }
    let rank = |name: &str| match name {
        "req-hdr" => Some(0),
        "res-hdr" => Some(1),
        "req-body" | "res-body" | "null-body" | "opt-body" => Some(2),
        _ => None,
    };
    let mut last_rank = -1;
    let mut last_offset = None;
    let mut offsets = Offsets {
        req_hdr: None,
        res_hdr: None,
        body: 0,
    };
    let mut body_name = None;
    for (i, &(name, offset)) in entries.iter().enumerate() {
        let r = rank(name).ok_or_else(|| bad(format!("unknown section {name:?}")))?;
        if r <= last_rank {
            return Err(bad(format!("{name} out of order or repeated")));
        }
        last_rank = r;
        match last_offset {
            None if offset != 0 => return Err(bad("the first section must start at 0".into())),
            Some(prev) if offset <= prev => {
                return Err(bad(format!("offset of {name} does not grow")))
            }
            _ => {}
        }
        last_offset = Some(offset);
        let end = entries.get(i + 1).map(|e| e.1);
        match name {
            "req-hdr" | "res-hdr" => {
                let end = end.ok_or_else(|| bad("no body entry after the headers".into()))?;
                let range = Some((offset, end));
                if name == "req-hdr" {
                    offsets.req_hdr = range;
                } else {
                    offsets.res_hdr = range;
                }
            }
            _ => {
                offsets.body = offset;
                body_name = Some(name);
            }
        }
    }
    let body_name = body_name.ok_or_else(|| bad("no body entry".into()))?;
    let fits = match (method, body_name) {
        (_, "null-body") => true,
        (Method::Options, "opt-body") => true,
        (Method::Reqmod, "req-body") => offsets.res_hdr.is_none(),
        (Method::Respmod, "res-body") => true,
        (Method::Other(_), _) => true,
        _ => false,
    };
    if !fits || (*method == Method::Reqmod && offsets.res_hdr.is_some()) {
        return Err(bad(format!("{body_name} does not fit this method")));
    }
    *body = match body_name {
        "req-body" => Some(BodyKind::Request),
        "res-body" => Some(BodyKind::Response),
        "opt-body" => Some(BodyKind::Options),
        _ => None,
    };
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` in pieces of `step` bytes; collect items until the input
    /// is used up (continuing after every preview).
    fn read_all(input: &[u8], step: usize) -> Result<Vec<Item>, Error> {
        let mut reader = Reader::default();
        let mut buf = BytesMut::new();
        let mut items = Vec::new();
        for piece in input.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            while let Some(item) = reader.next(&mut buf)? {
                items.push(item);
                if reader.after_preview() {
                    reader.continue_body();
                }
            }
        }
        assert!(buf.is_empty() || !reader.at_boundary() || buf.len() < MAX_HEAD);
        Ok(merge_data(items))
    }

    /// Consecutive data items as one, so splits do not matter.
    fn merge_data(items: Vec<Item>) -> Vec<Item> {
        let mut out: Vec<Item> = Vec::new();
        for item in items {
            match (out.last_mut(), item) {
                (Some(Item::Data(prev)), Item::Data(more)) => {
                    *prev = [prev.as_ref(), more.as_ref()].concat().into()
                }
                (_, item) => out.push(item),
            }
        }
        out
    }

    const REQMOD: &[u8] = b"REQMOD icap://127.0.0.1:1344/reqmod ICAP/1.0\r\n\
        Host: 127.0.0.1:1344\r\nAllow: 204\r\nPreview: 4\r\n\
        Encapsulated: req-hdr=0, req-body=47\r\n\r\n\
        PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\n\
        4\r\nhell\r\n0\r\n\r\n5\r\no you\r\n0\r\n\r\n";

    #[test]
    fn a_request_with_a_preview_at_every_split() {
        for step in [1, 2, 3, 7, 50, REQMOD.len()] {
            let items = read_all(REQMOD, step).unwrap();
            let Item::Request(req) = &items[0] else {
                panic!("{items:?}")
            };
            assert_eq!(req.method, Method::Reqmod);
            assert_eq!(req.service, "/reqmod");
            assert_eq!(req.preview, Some(4));
            assert!(req.allow_204);
            assert_eq!(
                req.req_hdr.as_deref(),
                Some(&b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\n"[..])
            );
            assert_eq!(req.body, Some(BodyKind::Request));
            assert_eq!(
                items[1..],
                [
                    Item::Data("hell".into()),
                    Item::End { preview: true },
                    Item::Data("o you".into()),
                    Item::End { preview: false },
                ]
            );
        }
    }

    #[test]
    fn ieof_ends_a_preview_that_holds_the_whole_body() {
        let input = b"RESPMOD icap://h/respmod ICAP/1.0\r\nPreview: 10\r\n\
            Encapsulated: res-hdr=0, res-body=19\r\n\r\n\
            HTTP/1.1 200 OK\r\n\r\n2\r\n{}\r\n0; ieof\r\n\r\n\
            OPTIONS icap://h/respmod ICAP/1.0\r\n\r\n";
        let items = read_all(input, 5).unwrap();
        assert_eq!(
            items[1..3],
            [Item::Data("{}".into()), Item::End { preview: false }]
        );
        let Item::Request(options) = &items[3] else {
            panic!("{items:?}")
        };
        assert_eq!(options.method, Method::Options);
        assert_eq!(options.body, None);
    }

    #[test]
    fn null_body_and_persistent_connections() {
        let one =
            b"REQMOD icap://h/reqmod ICAP/1.0\r\nEncapsulated: req-hdr=0, null-body=18\r\n\r\n\
            GET / HTTP/1.1\r\n\r\n";
        let input = [&one[..], &one[..]].concat();
        let items = read_all(&input, 3).unwrap();
        assert_eq!(items.len(), 2);
        assert!(items
            .iter()
            .all(|i| matches!(i, Item::Request(r) if r.body.is_none())));
    }

    fn error_of(input: &[u8]) -> Error {
        read_all(input, input.len()).unwrap_err()
    }

    #[test]
    fn malformed_requests_are_errors_with_a_reason() {
        let head = |enc: &str| {
            format!("REQMOD icap://h/reqmod ICAP/1.0\r\nEncapsulated: {enc}\r\n\r\nGET / HTTP/1.1\r\n\r\n")
        };
        let cases: &[(String, &str)] = &[
            (
                head("req-hdr=5, null-body=18"),
                "bad Encapsulated header: the first section must start at 0",
            ),
            (
                head("req-hdr=0, null-body=0"),
                "bad Encapsulated header: offset of null-body does not grow",
            ),
            (
                head("null-body=0, req-hdr=0"),
                "bad Encapsulated header: req-hdr out of order or repeated",
            ),
            (
                head("req-hdr=0"),
                "bad Encapsulated header: no body entry after the headers",
            ),
            (
                head("req-hdr=0, res-body=18"),
                "bad Encapsulated header: res-body does not fit this method",
            ),
            (
                head("req-hdr=0, foo=18"),
                "bad Encapsulated header: unknown section \"foo\"",
            ),
            (
                head("req-hdr=0, null-body=99999999"),
                "bad Encapsulated header: offset \"99999999\" is not a number up to 65536",
            ),
            (
                head("req-hdr=0, null-body=10"),
                "encapsulated req-hdr does not end with an empty line (wrong offsets?)",
            ),
            (
                "REQMOD icap://h/reqmod ICAP/1.0\r\n\r\n".into(),
                "no Encapsulated header",
            ),
            (
                "REQMOD icap://h/reqmod HTTP/1.1\r\n\r\n".into(),
                "ICAP version \"HTTP/1.1\" is not supported",
            ),
            ("REQMOD  ICAP/1.0\r\n\r\n".into(), "malformed request line"),
            (
                "OPTIONS icap://h/ ICAP/1.0\r\nBad Header\r\n\r\n".into(),
                "malformed header: invalid header name",
            ),
            (
                "OPTIONS icap://h/ ICAP/1.0\r\nPreview: -1\r\n\r\n".into(),
                "bad Preview header \"-1\"",
            ),
        ];
        for (input, why) in cases {
            assert_eq!(error_of(input.as_bytes()).to_string(), *why, "{input:?}");
        }
    }

    fn with_body(body: &str, preview: Option<usize>) -> Vec<u8> {
        let preview = preview.map_or(String::new(), |n| format!("Preview: {n}\r\n"));
        format!("REQMOD icap://h/reqmod ICAP/1.0\r\n{preview}Encapsulated: req-hdr=0, req-body=18\r\n\r\nPUT / HTTP/1.1\r\n\r\n{body}").into_bytes()
    }

    #[test]
    fn chunk_sizes_that_lie_are_errors() {
        let cases = [
            (
                "3\r\nabcdef\r\n0\r\n\r\n",
                "bad chunk: chunk data longer than its size line says",
            ),
            ("x\r\n", "bad chunk: chunk size \"x\" is not hex"),
            ("\r\n", "bad chunk: chunk size \"\" is not hex"),
            (
                "ffffffffffffffffff\r\n",
                "bad chunk: chunk size \"ffffffffffffffffff\" is not hex",
            ),
            (
                "0\r\nTrailer: x\r\n\r\n",
                "bad chunk: no empty line after the last chunk",
            ),
        ];
        for (body, why) in cases {
            assert_eq!(
                error_of(&with_body(body, None)).to_string(),
                why,
                "{body:?}"
            );
        }
        let long_line = format!("1;{}", "x".repeat(2000));
        assert_eq!(
            error_of(&with_body(&long_line, None)).to_string(),
            "bad chunk: chunk-size line longer than 1024 bytes"
        );
    }

    #[test]
    fn a_preview_that_never_ends_is_cut_at_its_size() {
        let body = "4\r\nabcd\r\n4\r\nefgh\r\n";
        assert_eq!(
            error_of(&with_body(body, Some(6))).to_string(),
            "preview longer than the 6 bytes announced"
        );
    }

    #[test]
    fn a_head_without_end_is_refused_at_the_bound() {
        let mut input = b"OPTIONS icap://h/ ICAP/1.0\r\n".to_vec();
        while input.len() <= MAX_HEAD {
            input.extend_from_slice(
                b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        let err = read_all(&input, 4096).unwrap_err();
        assert!(
            matches!(err, Error::HeadTooLarge | Error::Header(_)),
            "{err}"
        );
        let mut endless_line = b"OPTIONS ".to_vec();
        endless_line.resize(MAX_HEAD + 10, b'a');
        assert_eq!(
            read_all(&endless_line, 4096).unwrap_err(),
            Error::HeadTooLarge
        );
    }

    #[test]
    fn service_paths() {
        assert_eq!(service_path("icap://127.0.0.1:1344/reqmod"), "/reqmod");
        assert_eq!(service_path("icap://h/respmod?x=1"), "/respmod");
        assert_eq!(service_path("icap://h"), "/");
        assert_eq!(service_path("/reqmod"), "/reqmod");
    }

    /// Mutated and randomly split requests never panic, and the reader never
    /// lets the caller's buffer grow past its bounds.
    #[test]
    fn mutations_at_random_splits_stay_bounded() {
        let seeds: [&[u8]; 2] = [REQMOD, b"RESPMOD icap://h/respmod ICAP/1.0\r\nPreview: 0\r\nEncapsulated: req-hdr=0, res-hdr=18, res-body=37\r\n\r\nGET / HTTP/1.1\r\n\r\nHTTP/1.1 200 OK\r\n\r\n0\r\n\r\n5\r\nhello\r\n0\r\n\r\n"];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..3000 {
            let mut input = seeds[round % seeds.len()].repeat(1 + (next() % 3) as usize);
            for _ in 0..(next() % 6) {
                let at = (next() as usize) % input.len();
                match next() % 3 {
                    0 => input[at] = next() as u8,
                    1 => input.truncate(at.max(1)),
                    _ => input.insert(at, b"0123456789abcdef\r\n;"[(next() % 19) as usize]),
                }
            }
            let mut reader = Reader::default();
            let mut buf = BytesMut::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let n = 1 + (next() as usize) % 64;
                let (piece, tail) = rest.split_at(n.min(rest.len()));
                rest = tail;
                buf.extend_from_slice(piece);
                loop {
                    match reader.next(&mut buf) {
                        Ok(Some(_)) if reader.after_preview() => reader.continue_body(),
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => {
                            rest = &[];
                            break;
                        }
                    }
                }
                assert!(buf.len() <= MAX_HEAD + MAX_HTTP_HEADS + 64, "{}", buf.len());
            }
        }
    }
}
