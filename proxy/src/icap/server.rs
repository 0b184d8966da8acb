//! One task per ICAP connection: read a transaction with [`wire::Reader`], let
//! the first handler that wants the exchange read its body, answer, log.
//!
//! Memory per connection is the read buffer and the heads (each bounded in
//! `wire`), plus the body of a message a handler reads, never more than
//! `icap_max_body`: a larger body is passed on unread (204, or streamed back
//! chunk by chunk as it arrives when the client does not accept 204).
//! A request whose framing is lost gets a 400 with the reason and the
//! connection is closed; other refusals (unknown service or method, a bad
//! encapsulated HTTP head) keep it open.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::handler::{Exchange, Judge, Mode, Verdict};
use super::http::{response_head, with_content_length, HttpRequest, HttpResponse};
use super::response::{self, Section, CONTINUE, LAST_CHUNK};
use super::wire::{self, Item, Method, Reader};
use super::Service;
use crate::net::display_addr;
use crate::session::{unix_now, Stop};

/// Bytes read at once.
const READ_CHUNK: usize = 16 * 1024;
/// How long an idle persistent connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a request's head may take once its first byte arrived (slowloris).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a body may pause between two reads.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a connection ends.
#[derive(Debug)]
enum End {
    /// Closed by the client between requests, or the daemon stops.
    Quiet,
    Io(std::io::Error),
    Timeout(&'static str),
    /// The framing is lost: answered with 400, then closed.
    Wire(wire::Error),
}

impl From<std::io::Error> for End {
    fn from(e: std::io::Error) -> Self {
        End::Io(e)
    }
}

struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    reader: Reader,
    /// The ICAP client, for diagnostics.
    name: String,
    peer: SocketAddr,
}

/// Serve one ICAP client to the end.
pub async fn serve(stream: TcpStream, peer: SocketAddr, service: Arc<Service>, mut stop: Stop) {
    let name = display_addr(peer);
    if !service.config.clients.iter().any(|n| n.contains(peer.ip())) {
        log::info!("{name}: ICAP client not in icap_clients; closed");
        return;
    }
    let Ok(_permit) = service.connections.clone().try_acquire_owned() else {
        log::warn!("{name}: ICAP connection over Max-Connections; refused");
        let mut stream = stream;
        let answer = response::error(
            "503 Service Unavailable",
            "too many connections",
            &service.istag(),
            true,
        );
        let _ = stream.write_all(&answer).await;
        return;
    };
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        buf: BytesMut::new(),
        reader: Reader::default(),
        name,
        peer,
    };
    loop {
        match conn.transaction(&service, &mut stop).await {
            Ok(()) => {}
            Err(End::Quiet) => break,
            Err(End::Wire(e)) => {
                log::info!("{}: bad ICAP request: {e}; closed", conn.name);
                let answer = response::error(e.status(), &e.to_string(), &service.istag(), true);
                let _ = conn.stream.write_all(&answer).await;
                conn.linger().await;
                break;
            }
            Err(End::Timeout(what)) => {
                log::info!("{}: ICAP {what} timed out; closed", conn.name);
                let why = format!("{what} timed out");
                let answer = response::error("408 Request Timeout", &why, &service.istag(), true);
                let _ = conn.stream.write_all(&answer).await;
                conn.linger().await;
                break;
            }
            Err(End::Io(e)) => {
                log::debug!("{}: ICAP connection ended: {e}", conn.name);
                break;
            }
        }
    }
    let _ = conn.stream.shutdown().await;
}

/// What a closing connection still reads, so the answer is not lost to a reset.
const LINGER_BYTES: usize = 256 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(1);

impl Conn {
    /// Close after an error answer: stop sending, then read (and drop) what
    /// the client still sends for a moment, because closing with unread bytes
    /// makes the kernel reset the connection, and the client may lose the answer.
    async fn linger(&mut self) {
        let _ = self.stream.shutdown().await;
        let mut drained = 0;
        let mut scratch = [0u8; 8192];
        let deadline = Instant::now() + LINGER_TIME;
        while drained < LINGER_BYTES {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut scratch)).await {
                Ok(Ok(n)) if n > 0 => drained += n,
                _ => break,
            }
        }
    }

    /// The next item; waits at most until `deadline` for each read.
    async fn item(&mut self, deadline: Instant, what: &'static str) -> Result<Item, End> {
        loop {
            if let Some(item) = self.reader.next(&mut self.buf).map_err(End::Wire)? {
                return Ok(item);
            }
            self.buf.reserve(READ_CHUNK);
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf));
            match read.await.map_err(|_| End::Timeout(what))?? {
                0 if self.reader.at_boundary() && self.buf.is_empty() => return Err(End::Quiet),
                0 => return Err(End::Io(std::io::ErrorKind::UnexpectedEof.into())),
                _ => {}
            }
        }
    }

    /// Wait for the next request: idle at first, then bounded once it starts.
    async fn request(&mut self, stop: &mut Stop) -> Result<wire::Request, End> {
        if self.buf.is_empty() {
            self.buf = BytesMut::new(); // an idle connection holds no buffer
            tokio::select! {
                ready = tokio::time::timeout(IDLE_TIMEOUT, self.stream.readable()) => match ready {
                    Ok(r) => r?,
                    Err(_) => return Err(End::Quiet),
                },
                _ = stop.wait_for(|stopping| *stopping) => return Err(End::Quiet),
            }
        }
        match self
            .item(Instant::now() + HEAD_TIMEOUT, "request head")
            .await?
        {
            Item::Request(r) => Ok(r),
            other => unreachable!("a reader at a boundary returns a request, not {other:?}"),
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), End> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// The next body item.
    async fn body_item(&mut self) -> Result<Item, End> {
        self.item(Instant::now() + BODY_TIMEOUT, "body").await
    }

    async fn transaction(&mut self, service: &Service, stop: &mut Stop) -> Result<(), End> {
        let request = self.request(stop).await?;
        let istag = service.istag();
        let mode = match (&request.method, request.service.as_str()) {
            (Method::Options, "/reqmod" | "/respmod") => {
                self.discard_body().await?;
                let method = if request.service == "/reqmod" {
                    "REQMOD"
                } else {
                    "RESPMOD"
                };
                let answer = response::options(&response::Options {
                    method,
                    istag: &istag,
                    max_connections: service.config.max_connections,
                    preview: super::PREVIEW,
                    ttl_secs: super::OPTIONS_TTL_SECS,
                });
                return self.send(&answer).await;
            }
            (Method::Reqmod, "/reqmod") => Mode::Reqmod,
            (Method::Respmod, "/respmod") => Mode::Respmod,
            (Method::Other(m), _) => {
                let why = format!("method {m} is not implemented");
                return self
                    .refuse(request.body.is_some(), "501 Not Implemented", &why, &istag)
                    .await;
            }
            (_, path) => {
                let why = format!("no such service {path:?} for this method");
                return self
                    .refuse(
                        request.body.is_some(),
                        "404 Service Not Found",
                        &why,
                        &istag,
                    )
                    .await;
            }
        };
        let exchange = match exchange_of(&request, mode) {
            Ok(e) => e,
            Err(why) => {
                return self
                    .refuse(request.body.is_some(), "400 Bad Request", &why, &istag)
                    .await
            }
        };
        let handler = service
            .handlers()
            .iter()
            .find(|h| h.wants(&exchange))
            .cloned();
        let mut in_preview = request.preview.is_some();
        let Some(handler) = handler else {
            return self
                .pass_unread(&request, mode, Vec::new(), in_preview, &istag)
                .await;
        };
        // A message without a body is inspected too: the MSN gateway follows
        // its session through empty answers.
        let mut body = Vec::new();
        while request.body.is_some() {
            match self.body_item().await? {
                Item::Data(data) if body.len() + data.len() > service.config.max_body => {
                    log::info!(
                        "{}: {} body over icap_max_body ({} bytes); passed on unread",
                        self.name,
                        request_line(&exchange),
                        service.config.max_body
                    );
                    body.extend_from_slice(&data);
                    return self
                        .pass_unread(&request, mode, body, in_preview, &istag)
                        .await;
                }
                Item::Data(data) => body.extend_from_slice(&data),
                Item::End { preview: true } => {
                    self.send(CONTINUE).await?;
                    self.reader.continue_body();
                    in_preview = false;
                }
                Item::End { preview: false } => break,
                Item::Request(_) => unreachable!("a request inside a body"),
            }
        }
        // Without Squid's word on the client, every user would share the
        // proxy's address: no max_new_conversations then.
        let http_client = http_client(&request);
        let client = http_client.unwrap_or(self.peer);
        let logger = &service.shared.logger;
        let mut judge = Judge {
            filters: service
                .shared
                .filters
                .read()
                .expect("filter lock poisoned")
                .clone(),
            config: &service.shared.config,
            client: display_addr(client),
            conversations: http_client.map(|c| (&service.shared.new_conversations, c.ip())),
            now: unix_now(),
            unlogged: service.shared.config.block_unlogged && !logger.storing(),
            records: Vec::new(),
        };
        let verdict = handler.inspect(&exchange, &body, &mut judge);
        let records = std::mem::take(&mut judge.records);
        let answer = answer(&request, mode, verdict, &body, in_preview, &istag);
        // As in the relay: the events are queued before the answer lets the
        // chat through, and with log_failure=block written first.
        if !records.is_empty() {
            logger.log_all(records).await;
            if service.shared.config.block_unlogged {
                logger.written().await;
            }
        }
        self.send(&answer).await?;
        Ok(())
    }

    /// Read what is left of the body without keeping it.
    async fn discard_body(&mut self) -> Result<(), End> {
        if self.reader.at_boundary() {
            return Ok(());
        }
        loop {
            match self.body_item().await? {
                Item::Data(_) => {}
                Item::End { preview: true } => {
                    self.reader.finish();
                    return Ok(());
                }
                Item::End { preview: false } => return Ok(()),
                Item::Request(_) => unreachable!("a request inside a body"),
            }
        }
    }

    /// Answer an error after reading the body past, so the connection stays usable.
    async fn refuse(
        &mut self,
        has_body: bool,
        status: &str,
        why: &str,
        istag: &str,
    ) -> Result<(), End> {
        if has_body {
            self.discard_body().await?;
        }
        log::info!("{}: ICAP request refused: {status}: {why}", self.name);
        self.send(&response::error(status, why, istag, false)).await
    }

    /// Let the message through without reading the rest of its body: 204 when
    /// the client allows it (always within a preview), else the message streamed
    /// back as it arrives, starting with `read`, what was read of it already.
    async fn pass_unread(
        &mut self,
        request: &wire::Request,
        mode: Mode,
        read: Vec<u8>,
        in_preview: bool,
        istag: &str,
    ) -> Result<(), End> {
        if in_preview || request.allow_204 {
            self.discard_body().await?;
            return self.send(&response::no_content(istag)).await;
        }
        let (section, head) = echo_section(request, mode);
        let Some(head) = head else {
            self.discard_body().await?;
            return self
                .send(&response::error(
                    "400 Bad Request",
                    "no HTTP head to pass on",
                    istag,
                    false,
                ))
                .await;
        };
        let has_body = request.body.is_some();
        let mut out = response::message_head(istag, section, &head, has_body);
        if !has_body {
            return self.send(&out).await;
        }
        response::chunk(&mut out, &read);
        self.send(&out).await?;
        if self.reader.at_boundary() {
            return self.send(LAST_CHUNK).await;
        }
        loop {
            match self.body_item().await? {
                Item::Data(data) => {
                    let mut out = Vec::with_capacity(data.len() + 16);
                    response::chunk(&mut out, &data);
                    self.send(&out).await?;
                }
                Item::End { preview: true } => {
                    // Only reached without Allow: 204 and after a preview: ask for the rest.
                    self.send(CONTINUE).await?;
                    self.reader.continue_body();
                }
                Item::End { preview: false } => return self.send(LAST_CHUNK).await,
                Item::Request(_) => unreachable!("a request inside a body"),
            }
        }
    }
}

/// The HTTP head a 200 passing the message on carries.
fn echo_section(request: &wire::Request, mode: Mode) -> (Section, Option<Bytes>) {
    match mode {
        Mode::Reqmod => (Section::Request, request.req_hdr.clone()),
        Mode::Respmod => (Section::Response, request.res_hdr.clone()),
    }
}

/// The ICAP answer for a handler's verdict on a complete body.
fn answer(
    request: &wire::Request,
    mode: Mode,
    verdict: Verdict,
    body: &[u8],
    in_preview: bool,
    istag: &str,
) -> Vec<u8> {
    let (section, head) = echo_section(request, mode);
    match (verdict, head) {
        (Verdict::Unchanged, _) if in_preview || request.allow_204 => response::no_content(istag),
        (Verdict::Unchanged, Some(head)) => {
            let body = request.body.is_some().then_some(body);
            response::message(istag, section, &head, body)
        }
        (Verdict::Body(new), Some(head)) => response::message(
            istag,
            section,
            &with_content_length(&head, new.len()),
            Some(&new),
        ),
        (
            Verdict::Refuse {
                status,
                content_type,
                body,
            },
            _,
        ) => response::message(
            istag,
            Section::Response,
            &response_head(status, content_type, body.len()),
            Some(&body),
        ),
        (_, None) => response::no_content(istag),
    }
}

/// The encapsulated heads, parsed.
fn exchange_of(request: &wire::Request, mode: Mode) -> Result<Exchange, String> {
    let http_request = request
        .req_hdr
        .clone()
        .map(HttpRequest::parse)
        .transpose()?;
    let response = match mode {
        Mode::Reqmod => None,
        Mode::Respmod => request
            .res_hdr
            .clone()
            .map(HttpResponse::parse)
            .transpose()?,
    };
    if mode == Mode::Reqmod && http_request.is_none() {
        return Err("REQMOD without req-hdr".into());
    }
    Ok(Exchange {
        mode,
        request: http_request,
        response,
    })
}

/// `PUT host/path`, for diagnostics.
fn request_line(exchange: &Exchange) -> String {
    exchange.request.as_ref().map_or_else(
        || "response".to_string(),
        |r| format!("{} {}{}", r.method, r.host(), r.path()),
    )
}

/// The HTTP client's address: Squid's `X-Client-IP` (with
/// `adaptation_send_client_ip on`) and `X-Client-Port` (from `adaptation_meta`),
/// port 0 when it is not sent. The log shows the ICAP client's own address
/// without them.
fn http_client(request: &wire::Request) -> Option<SocketAddr> {
    let ip = request
        .header("X-Client-IP")
        .and_then(|ip| ip.trim().parse::<IpAddr>().ok())?;
    let port = request
        .header("X-Client-Port")
        .and_then(|p| p.trim().parse::<u16>().ok())
        .unwrap_or(0);
    Some(SocketAddr::new(crate::net::plain_ip(ip), port))
}
