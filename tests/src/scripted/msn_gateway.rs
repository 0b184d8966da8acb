//! The MSN HTTP gateway played at both ends, as the MSN protocol documentation
//! describes it (no public recording exists): the client POSTs
//! `/gateway/gateway.dll` through an HTTP proxy (Squid), the first time with
//! `?Action=open&Server=SB&IP=host`, then with the `SessionID` the last
//! response's `X-MSN-Messenger: SessionID=...; GW-IP=...` named, to the GW-IP
//! address; `?Action=poll&SessionID=...` with an empty body fetches what
//! waits. The bodies are MSN switchboard commands, made and strictly decoded
//! by [`super::msn`]: a command the proxy rewrote with a wrong length fails the
//! test. The HTTP heads are read with httparse, and must be what the gateway
//! sends (status 200, Content-Type, the session header, Content-Length).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;

use anyhow::{bail, ensure, Context};

use super::msn::Msn;
use super::{Decoded, Frame, ScriptedProtocol};
use crate::netns::Netns;
use crate::replay::Sender;
use crate::wait::DEADLINE;

/// The gateway's name; an HTTP proxy finds it (a test's Squid by its hosts_file).
pub const GATEWAY_HOST: &str = "gateway.messenger.hotmail.com";
pub const GATEWAY_PORT: u16 = 80;
const PATH: &str = "/gateway/gateway.dll";
const CONTENT_TYPE: &str = "application/x-msn-messenger";
/// Heads and bodies larger than this are malformed here.
const MAX_MESSAGE: usize = 64 * 1024;

type Headers = Vec<(String, String)>;

/// One HTTP request or response as read off the wire.
#[derive(Debug, Clone)]
pub struct HttpMessage {
    /// The request target, or the response's status code.
    pub start: String,
    headers: Headers,
    pub body: Vec<u8>,
}

impl HttpMessage {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Read one HTTP message from `stream` (`buf` keeps what follows it): a
/// complete head, then exactly Content-Length body bytes. Anything else (no
/// length, chunked, oversized) is an error.
fn read_message(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    request: bool,
) -> anyhow::Result<Option<HttpMessage>> {
    let (head_len, start, headers) = loop {
        if let Some(head) = parse_head(buf, request)? {
            break head;
        }
        ensure!(
            buf.len() < MAX_MESSAGE,
            "HTTP head over {MAX_MESSAGE} bytes"
        );
        if !fill(stream, buf)? {
            ensure!(buf.is_empty(), "closed inside an HTTP head: {buf:?}");
            return Ok(None);
        }
    };
    let mut message = HttpMessage {
        start,
        headers,
        body: Vec::new(),
    };
    ensure!(
        message.header("Transfer-Encoding").is_none(),
        "a gateway message is sent with Content-Length, not {message:?}"
    );
    let len: usize = message
        .header("Content-Length")
        .with_context(|| format!("no Content-Length in {message:?}"))?
        .trim()
        .parse()?;
    ensure!(len <= MAX_MESSAGE, "body of {len} bytes");
    while buf.len() < head_len + len {
        ensure!(fill(stream, buf)?, "closed inside a body of {len} bytes");
    }
    message.body = buf[head_len..head_len + len].to_vec();
    buf.drain(..head_len + len);
    Ok(Some(message))
}

/// A complete head in `buf`: its length, the request target or status code, the headers.
fn parse_head(buf: &[u8], request: bool) -> anyhow::Result<Option<(usize, String, Headers)>> {
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let (status, start, headers) = if request {
        let mut r = httparse::Request::new(&mut fields);
        let status = r.parse(buf)?;
        (status, r.path.unwrap_or_default().to_string(), r.headers)
    } else {
        let mut r = httparse::Response::new(&mut fields);
        let status = r.parse(buf)?;
        (status, r.code.unwrap_or_default().to_string(), r.headers)
    };
    let httparse::Status::Complete(len) = status else {
        return Ok(None);
    };
    let headers = headers
        .iter()
        .map(|h| {
            let value = std::str::from_utf8(h.value).context("header value")?;
            Ok((h.name.to_string(), value.to_string()))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Some((len, start, headers)))
}

/// Read more into `buf`; false at the end of the stream.
fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<bool> {
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk).context("reading HTTP")?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

/// Decode every command in a body; a command cut short is an error too.
fn decode_body(body: &[u8], decode: impl Fn(&[u8]) -> Decoded) -> anyhow::Result<Vec<Frame>> {
    let mut frames = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        match decode(rest) {
            Ok(Some((len, item))) => {
                frames.push(Frame {
                    raw: rest[..len].to_vec(),
                    item,
                });
                rest = &rest[len..];
            }
            Ok(None) => bail!(
                "a body ends inside a command: {:?}",
                String::from_utf8_lossy(rest)
            ),
            Err(e) => bail!(
                "a malformed command: {e}; body: {:?}",
                String::from_utf8_lossy(body)
            ),
        }
    }
    Ok(frames)
}

/// A request the gateway received, waiting for its answer.
pub struct Received {
    pub request: HttpMessage,
    answer: mpsc::Sender<Vec<u8>>,
}

/// The gateway server: every request on every connection (Squid opens and
/// reuses them as it likes) is handed to the test, which answers it.
pub struct GatewayServer {
    pub addr: SocketAddr,
    requests: mpsc::Receiver<anyhow::Result<Received>>,
}

impl GatewayServer {
    /// Listen in `ns` on `ip`, port 80.
    pub fn start(ns: &Netns, ip: Ipv4Addr) -> anyhow::Result<Self> {
        let addr = SocketAddr::from((ip, GATEWAY_PORT));
        let listener = ns.run(move || TcpListener::bind(addr))??;
        let (sender, requests) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let sender = sender.clone();
                std::thread::spawn(move || serve_connection(stream, &sender));
            }
        });
        Ok(GatewayServer { addr, requests })
    }

    /// The next request, however it came.
    pub fn next(&self) -> anyhow::Result<Received> {
        self.requests
            .recv_timeout(DEADLINE)
            .context("waiting for a gateway request")?
    }
}

fn serve_connection(mut stream: TcpStream, requests: &mpsc::Sender<anyhow::Result<Received>>) {
    let mut buf = Vec::new();
    loop {
        let request = match read_message(&mut stream, &mut buf, true) {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(e) => {
                let _ = requests.send(Err(e.context("the gateway reading a request")));
                return;
            }
        };
        let (answer, answered) = mpsc::channel();
        if requests.send(Ok(Received { request, answer })).is_err() {
            return;
        }
        let Ok(response) = answered.recv() else {
            return;
        };
        if stream.write_all(&response).is_err() {
            return;
        }
    }
}

/// A gateway response: 200 with the session header and the commands.
fn gateway_response(session: &str, gw_ip: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nServer: Microsoft-IIS/5.0\r\nX-MSN-Messenger: SessionID={session}; GW-IP={gw_ip}\r\n\
         Content-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// What one request's round trip delivered at each end, strictly decoded.
#[derive(Debug)]
pub struct Round {
    pub at_server: Vec<Frame>,
    pub at_client: Vec<Frame>,
}

/// An MSN switchboard session over the gateway: alice's client behind the
/// proxy, the gateway server, and the session id the server hands out next.
pub struct GatewaySession {
    pub msn: Msn,
    pub server: GatewayServer,
    proxy: TcpStream,
    buf: Vec<u8>,
    /// The SessionID the client uses next (none before the open).
    session: Option<String>,
    issued: u32,
}

impl GatewaySession {
    /// Connect from `client_ns` to the HTTP proxy at `proxy` and play the
    /// switchboard login: the open carries the first command, the call the second.
    pub fn open(
        client_ns: &Netns,
        proxy: SocketAddr,
        server: GatewayServer,
    ) -> anyhow::Result<Self> {
        let stream = client_ns.run(move || TcpStream::connect(proxy))??;
        stream.set_read_timeout(Some(DEADLINE))?;
        let mut session = GatewaySession {
            msn: Msn::new(),
            server,
            proxy: stream,
            buf: Vec::new(),
            session: None,
            issued: 0,
        };
        let login = session.msn.login();
        for pair in login.chunks(2) {
            let [(Sender::Client, sent), (Sender::Server, answer)] = pair else {
                bail!("the MSN login alternates client and server");
            };
            let round = session.round(sent, answer)?;
            ensure!(
                raw(&round.at_server) == *sent && raw(&round.at_client) == *answer,
                "the login arrived changed: {round:?}"
            );
        }
        Ok(session)
    }

    /// The client sends `body` (`?SessionID=`, or the open), the server
    /// answers `answer` under a new SessionID.
    pub fn round(&mut self, body: &[u8], answer: &[u8]) -> anyhow::Result<Round> {
        let query = match &self.session {
            Some(id) => format!("SessionID={id}"),
            None => format!("Action=open&Server=SB&IP={}", self.server.addr.ip()),
        };
        self.post(&query, body, answer)
    }

    /// The client polls (`?Action=poll`, empty body); the server answers `answer`.
    pub fn poll(&mut self, answer: &[u8]) -> anyhow::Result<Round> {
        let id = self.session.clone().context("a poll before the open")?;
        self.post(&format!("Action=poll&SessionID={id}"), b"", answer)
    }

    fn post(&mut self, query: &str, body: &[u8], answer: &[u8]) -> anyhow::Result<Round> {
        // The open goes to the gateway's name, the rest to the GW-IP it named.
        let host = match self.session {
            Some(_) => self.server.addr.ip().to_string(),
            None => GATEWAY_HOST.to_string(),
        };
        let mut request = format!(
            "POST http://{host}{PATH}?{query} HTTP/1.1\r\nAccept: */*\r\nUser-Agent: MSMSGS\r\n\
             Host: {host}\r\nProxy-Connection: Keep-Alive\r\nConnection: Keep-Alive\r\n\
             Pragma: no-cache\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        self.proxy
            .write_all(&request)
            .context("posting to the proxy")?;

        let received = self.server.next()?;
        let at_server = self.check_request(&received.request, query)?;
        self.issued += 1;
        let next = format!("40000000.{}", self.issued);
        let gw_ip = self.server.addr.ip().to_string();
        received
            .answer
            .send(gateway_response(&next, &gw_ip, answer))
            .context("the gateway connection ended")?;

        let response = read_message(&mut self.proxy, &mut self.buf, false)?
            .context("the proxy closed the client's connection")?;
        ensure!(response.start == "200", "the client got {response:?}");
        ensure!(
            response.header("Content-Type") == Some(CONTENT_TYPE),
            "{response:?}"
        );
        let expected = format!("SessionID={next}; GW-IP={gw_ip}");
        ensure!(
            response.header("X-MSN-Messenger") == Some(expected.as_str()),
            "{response:?}"
        );
        self.session = Some(next);
        let msn = &self.msn;
        let at_client = decode_body(&response.body, |b| msn.decode_at_client(b))?;
        Ok(Round {
            at_server,
            at_client,
        })
    }

    /// The request as the gateway got it: its target and type, and the commands.
    fn check_request(&self, request: &HttpMessage, query: &str) -> anyhow::Result<Vec<Frame>> {
        ensure!(
            request.start == format!("{PATH}?{query}"),
            "the gateway got {request:?}, not {PATH}?{query}"
        );
        ensure!(
            request.header("Content-Type") == Some(CONTENT_TYPE),
            "{request:?}"
        );
        let msn = &self.msn;
        decode_body(&request.body, |b| msn.decode_at_server(b))
    }
}

/// The bytes of decoded frames, joined.
fn raw(frames: &[Frame]) -> Vec<u8> {
    frames.iter().flat_map(|f| f.raw.iter().copied()).collect()
}
