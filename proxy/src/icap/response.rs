//! ICAP/1.0 responses: OPTIONS, 100 Continue, 204, errors, and a 200 that
//! carries an HTTP message (modified, echoed, or an answer instead of a request).

/// Which encapsulated message a 200 carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// A (modified) HTTP request: REQMOD only.
    Request,
    /// An HTTP response: the answer to RESPMOD, or to REQMOD instead of the request.
    Response,
}

pub const CONTINUE: &[u8] = b"ICAP/1.0 100 Continue\r\n\r\n";
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// What OPTIONS advertises for one service.
pub struct Options<'a> {
    pub method: &'a str,
    pub istag: &'a str,
    pub max_connections: usize,
    pub preview: usize,
    pub ttl_secs: u32,
}

pub fn options(o: &Options<'_>) -> Vec<u8> {
    format!(
        "ICAP/1.0 200 OK\r\nMethods: {}\r\nService: IMSpector chat inspection\r\n\
         ISTag: \"{}\"\r\nMax-Connections: {}\r\nOptions-TTL: {}\r\nAllow: 204\r\n\
         Preview: {}\r\nTransfer-Preview: *\r\nTransfer-Ignore: {}\r\n\
         Encapsulated: null-body=0\r\n\r\n",
        o.method,
        o.istag,
        o.max_connections,
        o.ttl_secs,
        o.preview,
        super::TRANSFER_IGNORE.join(", ")
    )
    .into_bytes()
}

pub fn no_content(istag: &str) -> Vec<u8> {
    format!("ICAP/1.0 204 No Content\r\nISTag: \"{istag}\"\r\nEncapsulated: null-body=0\r\n\r\n")
        .into_bytes()
}

/// An error; the reason is the status line's phrase, so every client shows it.
pub fn error(status: &str, reason: &str, istag: &str, close: bool) -> Vec<u8> {
    let code = status.split(' ').next().unwrap_or("500");
    let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!(
        "ICAP/1.0 {code} {reason}\r\nISTag: \"{istag}\"\r\n{connection}Encapsulated: null-body=0\r\n\r\n"
    )
    .into_bytes()
}

/// The head of a 200 carrying `http_head`, with or without a body to follow
/// in chunks.
pub fn message_head(istag: &str, section: Section, http_head: &[u8], has_body: bool) -> Vec<u8> {
    let (hdr, body) = match section {
        Section::Request => ("req-hdr", "req-body"),
        Section::Response => ("res-hdr", "res-body"),
    };
    let body = if has_body { body } else { "null-body" };
    let mut out = format!(
        "ICAP/1.0 200 OK\r\nISTag: \"{istag}\"\r\nEncapsulated: {hdr}=0, {body}={}\r\n\r\n",
        http_head.len()
    )
    .into_bytes();
    out.extend_from_slice(http_head);
    out
}

/// One chunk of body (nothing for empty data: an empty chunk would end the body).
pub fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    if !data.is_empty() {
        out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
}

/// A complete 200 with `http_head` and `body` (`None`: no body).
pub fn message(istag: &str, section: Section, http_head: &[u8], body: Option<&[u8]>) -> Vec<u8> {
    let mut out = message_head(istag, section, http_head, body.is_some());
    if let Some(body) = body {
        chunk(&mut out, body);
        out.extend_from_slice(LAST_CHUNK);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_frames_its_sections() {
        let out = message(
            "t1",
            Section::Response,
            b"HTTP/1.1 403 Forbidden\r\n\r\n",
            Some(b"{}"),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ICAP/1.0 200 OK\r\nISTag: \"t1\"\r\nEncapsulated: res-hdr=0, res-body=26\r\n\r\n\
             HTTP/1.1 403 Forbidden\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
        );
        let out = message("t1", Section::Request, b"GET / HTTP/1.1\r\n\r\n", None);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("Encapsulated: req-hdr=0, null-body=18\r\n"));
    }

    #[test]
    fn errors_carry_their_reason() {
        let out = error("400 Bad Request", "bad chunk: x\r\ny", "t", true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ICAP/1.0 400 bad chunk: xy\r\nISTag: \"t\"\r\nConnection: close\r\nEncapsulated: null-body=0\r\n\r\n"
        );
    }
}
