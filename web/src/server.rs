//! The HTTP side: accepting (plain or TLS), reading requests, and turning the
//! responses of [`crate::pages`] into hyper's.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use percent_encoding::percent_decode_str;

use crate::config::WebConfig;
use crate::pages::{App, Reply};

/// The largest form a browser may send (a login or a logout).
const MAX_BODY: usize = 16 * 1024;
/// A client gets this long for a TLS handshake and for each request's
/// headers, so that idle or slow connections do not pile up.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once (live views hold theirs); more wait to be
/// accepted.
const MAX_CONNECTIONS: usize = 256;

pub type Body = BoxBody<Bytes, Infallible>;

/// A request as the pages see it: decoded, bounded, no hyper types.
#[derive(Debug)]
pub struct Req {
    pub post: bool,
    /// The path's segments, percent-decoded; `None` when one is not UTF-8.
    pub segments: Option<Vec<String>>,
    pub query: HashMap<String, String>,
    pub cookies: HashMap<String, String>,
    pub form: HashMap<String, String>,
    pub client: SocketAddr,
    /// The path and query as sent, for the audit log.
    pub target: String,
}

impl Req {
    pub fn ip(&self) -> IpAddr {
        self.client.ip()
    }
}

fn pairs(s: &str) -> HashMap<String, String> {
    form_urlencoded::parse(s.as_bytes()).into_owned().collect()
}

fn cookies(req: &Request<Incoming>) -> HashMap<String, String> {
    req.headers()
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn read(req: Request<Incoming>, client: SocketAddr) -> Result<Req, StatusCode> {
    let uri = req.uri().clone();
    let segments = uri
        .path()
        .split('/')
        .skip(1)
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .ok()
        })
        .collect();
    let post = req.method() == Method::POST;
    if !post && req.method() != Method::GET {
        return Err(StatusCode::METHOD_NOT_ALLOWED);
    }
    let cookies = cookies(&req);
    let form = if post {
        let form_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !form_type {
            return Err(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
        let body = Limited::new(req.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|_| StatusCode::PAYLOAD_TOO_LARGE)?
            .to_bytes();
        pairs(&String::from_utf8_lossy(&body))
    } else {
        HashMap::new()
    };
    Ok(Req {
        post,
        segments,
        query: pairs(uri.query().unwrap_or("")),
        cookies,
        form,
        client,
        target: uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.to_string()),
    })
}

/// A body fed by a channel: the live view's event stream.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// Headers every response gets: no script but ours, no framing, no caching
/// of private pages, no referrer leaking ids to other sites.
fn harden(response: &mut Response<Body>) {
    let h = response.headers_mut();
    let set = |h: &mut hyper::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    set(h, "cache-control", "no-store");
}

fn to_hyper(reply: Reply) -> Response<Body> {
    let (status, headers, body) = match reply {
        Reply::Full {
            status,
            headers,
            body,
        } => (status, headers, Full::new(Bytes::from(body)).boxed()),
        Reply::Stream { headers, rx } => (StatusCode::OK, headers, ChannelBody(rx).boxed()),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            response.headers_mut().append(k, v);
        }
    }
    harden(&mut response);
    response
}

async fn handle(
    app: Arc<App>,
    client: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let reply = match read(req, client).await {
        Err(status) => Reply::text(status, status.canonical_reason().unwrap_or("refused")),
        Ok(req) => app.respond(req).await,
    };
    Ok(to_hyper(reply))
}

/// Serve until the process is stopped. `bound` gets the address once the
/// listener is up (port 0 in the config picks a free one).
pub async fn run(
    config: WebConfig,
    app: App,
    bound: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let tls = match &config.tls {
        Some((cert, key)) => Some(crate::tls::acceptor(cert, key)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("web_listen {}", config.listen))?;
    let addr = listener.local_addr()?;
    log::info!(
        "serving the log viewer on {}://{addr}",
        if tls.is_some() { "https" } else { "http" }
    );
    bound(addr);
    let app = Arc::new(app);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = slots.clone().acquire_owned().await?;
        let (stream, client) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                log::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req| handle(app.clone(), client, req));
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT);
            let result = match tls {
                None => http.serve_connection(TokioIo::new(stream), service).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            http.serve_connection(TokioIo::new(stream), service).await
                        }
                        Ok(Err(e)) => {
                            log::debug!("{client}: TLS handshake: {e}");
                            return;
                        }
                        Err(_) => {
                            log::debug!("{client}: no TLS handshake within {HANDSHAKE_TIMEOUT:?}");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = result {
                log::debug!("{client}: {e}");
            }
        });
    }
}
