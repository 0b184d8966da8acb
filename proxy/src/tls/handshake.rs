//! The two handshakes of an interception: read the client's ClientHello, open
//! a verified TLS connection to the server for the name the client wants, then
//! answer the client with a certificate for that name.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::server::{Acceptor, ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Interceptor, Records};

/// Most bytes of a ClientHello we wait for (they are a few hundred; post-quantum
/// key shares make them a little over 1 KiB).
const MAX_HELLO: usize = 16 * 1024;
/// How long a handshake may take, each side.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Both sides of an intercepted session, handshakes done.
pub struct Intercepted {
    pub client: TcpStream,
    pub client_tls: Records,
    pub server: TcpStream,
    pub server_tls: Records,
    /// The name the certificates were checked and made for.
    pub name: String,
}

impl Interceptor {
    /// Intercept the TLS the client starts now on `client` (`initial`: bytes of
    /// it already read). `name_hint` is the server name the protocol named (the
    /// XMPP stream's `to`); else the client's SNI; else `dst_ip`.
    /// The error says what failed, for the log; the caller closes both sides.
    pub async fn intercept(
        &self,
        client: TcpStream,
        server: TcpStream,
        initial: &[u8],
        name_hint: Option<&str>,
        dst_ip: IpAddr,
        who: &str,
    ) -> Result<Intercepted, String> {
        // Boxed: the handshake's state is some 9 kB, and the task of every
        // connection, plain ones too, is as large as its largest await point.
        Box::pin(self.handshake(client, server, initial, name_hint, dst_ip, who)).await
    }

    async fn handshake(
        &self,
        mut client: TcpStream,
        mut server: TcpStream,
        initial: &[u8],
        name_hint: Option<&str>,
        dst_ip: IpAddr,
        who: &str,
    ) -> Result<Intercepted, String> {
        let accepted = timed(read_client_hello(&mut client, initial))
            .await
            .map_err(|e| format!("client TLS: {e}"))?;
        let hello = accepted.client_hello();
        let sni = hello.server_name().map(str::to_string);
        let alpn: Vec<Vec<u8>> = hello
            .alpn()
            .map(|offer| offer.map(<[u8]>::to_vec).collect())
            .unwrap_or_default();
        let name = match (name_hint, &sni) {
            (Some(hint), _) => hint.to_string(),
            (None, Some(sni)) => sni.clone(),
            (None, None) => {
                let ip = crate::net::plain_ip(dst_ip).to_string();
                log::info!(
                    "{who}: TLS ClientHello without a server name (SNI); the certificate names the destination {ip}"
                );
                ip
            }
        };
        let server_name = ServerName::try_from(name.clone())
            .map_err(|_| format!("{name:?} is not a server name"))?;
        let mut upstream = (*self.upstream).clone();
        upstream.alpn_protocols = alpn;
        let mut server_tls: rustls::Connection =
            rustls::ClientConnection::new(Arc::new(upstream), server_name)
                .map_err(|e| format!("server TLS: {e}"))?
                .into();
        timed(complete(&mut server, &mut server_tls))
            .await
            .map_err(|e| format!("server TLS with {name}: {e}"))?;

        let leaf = self.leaves.for_name(&name)?;
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Leaf(leaf)));
        // The client gets what the server chose, so both agree on the protocol.
        config.alpn_protocols = server_tls
            .alpn_protocol()
            .map(<[u8]>::to_vec)
            .into_iter()
            .collect();
        let mut client_tls: rustls::Connection = accepted
            .into_connection(Arc::new(config))
            .map_err(|(e, _)| format!("client TLS: {e}"))?
            .into();
        timed(complete(&mut client, &mut client_tls))
            .await
            .map_err(|e| format!("client TLS for {name}: {e}"))?;
        Ok(Intercepted {
            client,
            client_tls: Records::new(client_tls),
            server,
            server_tls: Records::new(server_tls),
            name,
        })
    }
}

/// The client's SNI, read from its ClientHello without taking it off the
/// socket (for the log when TLS is relayed untouched). `None` when the hello
/// has no name, is not TLS, or does not come in time.
pub async fn peek_server_name(client: &TcpStream, initial: &[u8]) -> Option<String> {
    let mut buf = vec![0u8; MAX_HELLO];
    let look = async {
        loop {
            client.readable().await.ok()?;
            let n = match client.peek(&mut buf).await {
                Ok(0) => return None,
                Ok(n) => n,
                Err(_) => return None,
            };
            let mut acceptor = Acceptor::default();
            let mut data = [initial, &buf[..n]].concat();
            let mut rest = &data[..];
            while !rest.is_empty() {
                acceptor.read_tls(&mut rest).ok()?;
            }
            match acceptor.accept() {
                Ok(Some(accepted)) => {
                    return accepted.client_hello().server_name().map(str::to_string)
                }
                Ok(None) if n < buf.len() => {
                    data.clear();
                    // Wait for more of the hello than what is there now.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                _ => return None,
            }
        }
    };
    // Boxed, as the handshake: see `intercept`.
    Box::pin(tokio::time::timeout(HANDSHAKE_TIMEOUT, look))
        .await
        .ok()
        .flatten()
}

async fn read_client_hello(
    client: &mut TcpStream,
    initial: &[u8],
) -> io::Result<rustls::server::Accepted> {
    let mut acceptor = Acceptor::default();
    let mut rest = initial;
    while !rest.is_empty() {
        acceptor.read_tls(&mut rest)?;
    }
    let mut chunk = vec![0u8; 4096];
    let mut total = initial.len();
    loop {
        match acceptor.accept() {
            Ok(Some(accepted)) => return Ok(accepted),
            Ok(None) => {}
            Err((e, mut alert)) => {
                let mut out = Vec::new();
                let _ = alert.write(&mut out);
                let _ = client.write_all(&out).await;
                return Err(invalid(format!("not a TLS ClientHello: {e}")));
            }
        }
        if total > MAX_HELLO {
            return Err(invalid("ClientHello too large"));
        }
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Err(closed());
        }
        total += n;
        let mut data = &chunk[..n];
        while !data.is_empty() {
            acceptor.read_tls(&mut data)?;
        }
    }
}

/// Run a handshake to its end on `sock`.
async fn complete(sock: &mut TcpStream, conn: &mut rustls::Connection) -> io::Result<()> {
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        flush(sock, conn).await?;
        if !conn.is_handshaking() {
            return Ok(());
        }
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Err(closed());
        }
        let mut data = &chunk[..n];
        while !data.is_empty() {
            conn.read_tls(&mut data)?;
            if let Err(e) = conn.process_new_packets() {
                // Tell the peer why (the alert rustls queued), then give up.
                let _ = flush(sock, conn).await;
                return Err(invalid(e.to_string()));
            }
        }
    }
}

async fn flush(sock: &mut TcpStream, conn: &mut rustls::Connection) -> io::Result<()> {
    while conn.wants_write() {
        let mut out = Vec::new();
        conn.write_tls(&mut out)?;
        sock.write_all(&out).await?;
    }
    Ok(())
}

async fn timed<T>(f: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, f)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no handshake in time"))?
}

fn invalid(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the handshake")
}

/// The one certificate an intercepted session presents.
#[derive(Debug)]
struct Leaf(Arc<CertifiedKey>);

impl ResolvesServerCert for Leaf {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}
