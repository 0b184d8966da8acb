//! The `http_port` listener: an HTTP CONNECT proxy that only tunnels to the
//! enabled IM ports, only for the client networks in `http_clients` (loopback by
//! default), so Squid can hand IM CONNECTs to imspector as a parent proxy.
//! Refusals are answered as HTTP with the reason. With `https_protocol=on` it
//! also tunnels port 443, untouched, with one event per tunnel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::net::{display_addr, plain_ip};
use crate::session::{relay_inspected, Shared, Stop};
use crate::tls;

/// Largest request head we read.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The port `https_protocol=on` tunnels.
const HTTPS_PORT: u16 = 443;

/// A refusal: status line and reason.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: &'static str,
    pub reason: String,
}

impl Refusal {
    fn new(status: &'static str, reason: impl Into<String>) -> Self {
        Refusal {
            status,
            reason: reason.into(),
        }
    }

    fn response(&self) -> String {
        format!(
            "HTTP/1.1 {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\nimspector: {}\n",
            self.status,
            self.reason.len() + 12,
            self.reason
        )
    }
}

/// The target of a `CONNECT host:port HTTP/1.x` request head.
pub fn parse_connect(head: &[u8]) -> Result<(String, u16), Refusal> {
    let text = std::str::from_utf8(head)
        .map_err(|_| Refusal::new("400 Bad Request", "request is not text"))?;
    let line = text.lines().next().unwrap_or_default();
    let mut words = line.split(' ');
    let (method, target, version) = (words.next(), words.next(), words.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return Err(Refusal::new("400 Bad Request", "malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Refusal::new("400 Bad Request", "not an HTTP/1 request"));
    }
    if method != "CONNECT" {
        return Err(Refusal::new(
            "405 Method Not Allowed",
            format!("only CONNECT is served here, not {method}"),
        ));
    }
    let (host, port) = target
        .rsplit_once(':')
        .ok_or_else(|| Refusal::new("400 Bad Request", "CONNECT target has no port"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| Refusal::new("400 Bad Request", format!("bad port in {target:?}")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(Refusal::new(
            "400 Bad Request",
            "CONNECT target has no host",
        ));
    }
    Ok((host.to_string(), port))
}

/// Serve one client of the CONNECT listener.
pub async fn serve(mut client: TcpStream, peer: SocketAddr, shared: Arc<Shared>, stop: Stop) {
    let client_name = display_addr(peer);
    match handshake(&mut client, peer, &shared).await {
        Ok(tunnel) => {
            let established = b"HTTP/1.1 200 Connection established\r\n\r\n";
            if client.write_all(established).await.is_err() {
                return;
            }
            let Tunnel {
                server,
                kind,
                rest,
                host,
            } = tunnel;
            match kind {
                Some(kind) => relay_inspected(client, server, kind, peer, shared, stop, rest).await,
                None => https_tunnel(client, server, rest, &host, client_name, &shared).await,
            }
        }
        Err(refusal) => {
            log::info!(
                "{client_name}: CONNECT refused: {}: {}",
                refusal.status,
                refusal.reason
            );
            let _ = client.write_all(refusal.response().as_bytes()).await;
            let _ = client.shutdown().await;
        }
    }
}

/// An accepted CONNECT.
struct Tunnel {
    server: TcpStream,
    /// The IM protocol of the port; `None` for an HTTPS tunnel.
    kind: Option<imspector_protocols::ProtocolKind>,
    /// Bytes the client sent after the request head.
    rest: BytesMut,
    host: String,
}

/// An HTTPS tunnel: relayed untouched; one event says it took place.
async fn https_tunnel(
    mut client: TcpStream,
    mut server: TcpStream,
    rest: BytesMut,
    host: &str,
    client_name: String,
    shared: &Shared,
) {
    let Ok(dst) = server.peer_addr() else {
        return;
    };
    log::info!("{client_name}: HTTPS tunnel to {host}:{HTTPS_PORT} ({dst}), relayed untouched");
    let event = tls::encrypted_event(
        &client_name,
        "HTTPS".into(),
        dst,
        Some(host),
        "HTTPS tunnel",
    );
    shared.logger.log(event).await;
    if server.write_all(&rest).await.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}

/// Check the client, read and check the request, connect upstream.
async fn handshake(
    client: &mut TcpStream,
    peer: SocketAddr,
    shared: &Shared,
) -> Result<Tunnel, Refusal> {
    let config = &shared.config;
    if !config
        .http_clients
        .iter()
        .any(|net| net.contains(peer.ip()))
    {
        return Err(Refusal::new(
            "403 Forbidden",
            format!("client {} is not in http_clients", plain_ip(peer.ip())),
        ));
    }
    let mut buf = BytesMut::with_capacity(1024);
    let head_len = tokio::time::timeout(HEAD_TIMEOUT, async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(end + 4);
            }
            if buf.len() > MAX_HEAD {
                return Err(Refusal::new(
                    "431 Request Header Fields Too Large",
                    "request too long",
                ));
            }
            match client.read_buf(&mut buf).await {
                Ok(0) | Err(_) => {
                    return Err(Refusal::new("400 Bad Request", "request incomplete"))
                }
                Ok(_) => {}
            }
        }
    })
    .await
    .map_err(|_| Refusal::new("408 Request Timeout", "no complete request in time"))??;
    let head = buf.split_to(head_len);
    let (host, port) = parse_connect(&head)?;
    let routes = shared.routes();
    let kind = match routes.protocol_for_port(port) {
        Some(kind) => Some(kind),
        None if port == HTTPS_PORT && routes.https => None,
        None => {
            return Err(Refusal::new(
                "403 Forbidden",
                format!("port {port} is not an enabled IM protocol"),
            ))
        }
    };
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| Refusal::new("502 Bad Gateway", format!("cannot resolve {host}")))?;
    let server = shared.upstream.connect(addr).await.map_err(|e| {
        let status = if e.kind() == std::io::ErrorKind::TimedOut {
            "504 Gateway Timeout"
        } else {
            "502 Bad Gateway"
        };
        Refusal::new(status, format!("cannot connect to {addr}: {e}"))
    })?;
    Ok(Tunnel {
        server,
        kind,
        rest: buf,
        host,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_requests() {
        assert_eq!(
            parse_connect(b"CONNECT irc.example.org:6667 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(("irc.example.org".to_string(), 6667))
        );
        assert_eq!(
            parse_connect(b"CONNECT [2001:db8::1]:5222 HTTP/1.0\r\n\r\n"),
            Ok(("2001:db8::1".to_string(), 5222))
        );
        assert_eq!(
            parse_connect(b"GET http://x/ HTTP/1.1\r\n\r\n")
                .unwrap_err()
                .status,
            "405 Method Not Allowed"
        );
        assert_eq!(
            parse_connect(b"CONNECT host HTTP/1.1\r\n\r\n")
                .unwrap_err()
                .reason,
            "CONNECT target has no port"
        );
        assert_eq!(
            parse_connect(b"CONNECT host:99999 HTTP/1.1\r\n\r\n")
                .unwrap_err()
                .status,
            "400 Bad Request"
        );
    }

    #[test]
    fn refusals_are_complete_http_responses() {
        let r = Refusal::new("403 Forbidden", "port 80 is not an enabled IM protocol");
        let text = r.response();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert_eq!(body, "imspector: port 80 is not an enabled IM protocol\n");
    }
}
