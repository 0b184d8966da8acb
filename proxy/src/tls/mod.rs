//! TLS interception (`ssl=on`): the proxy ends the client's TLS with a
//! certificate for the server's name and opens its own, verified, TLS to the
//! server, so the protocol cores see plaintext. Without `ssl=on`, TLS is relayed
//! untouched and each such session is logged once ([`encrypted_event`]).

pub mod ca;
mod handshake;
mod leaf;
mod records;
pub(crate) mod upstream;

use std::sync::Arc;

pub use handshake::{peek_server_name, Intercepted};
pub use records::Records;
pub use upstream::VerifyMode;

use crate::config::{ConfigError, Settings};
use leaf::Leaves;

/// Everything an interception needs, built once at startup.
pub struct Interceptor {
    leaves: Leaves,
    /// Upstream connections; the client's ALPN offer is copied in per connection.
    upstream: Arc<rustls::ClientConfig>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    pub verify: VerifyMode,
    /// What it trusts, for the startup log.
    pub summary: String,
}

impl Interceptor {
    /// `ssl_cert_dir`, which the daemon's user must be able to write.
    pub fn cert_dir(&self) -> Option<&std::path::Path> {
        self.leaves.cert_dir()
    }

    /// The interceptor `ssl=on` asks for, or `None` with `ssl` off.
    pub fn from_settings(settings: &Settings) -> Result<Option<Self>, ConfigError> {
        if !settings.flag("ssl")?.unwrap_or(false) {
            return Ok(None);
        }
        let leaves = match (settings.path("ssl_cert"), settings.path("ssl_ca_cert")) {
            (Some(cert), _) => {
                let key = settings
                    .path("ssl_key")
                    .ok_or_else(|| settings.bad("ssl_cert", "ssl_key must name its key"))?;
                Leaves::fixed(&cert, &key).map_err(|why| settings.bad("ssl_cert", why))?
            }
            (None, Some(cert)) => {
                let key = settings.path("ssl_ca_key").ok_or_else(|| {
                    settings.bad("ssl_ca_cert", "ssl_ca_key must name the CA's key")
                })?;
                let ca = ca::Authority::load(&cert, &key)
                    .map_err(|why| settings.bad("ssl_ca_cert", why))?;
                let dir = settings.path("ssl_cert_dir");
                if let Some(dir) = &dir {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| settings.bad("ssl_cert_dir", format!("{}: {e}", dir.display())))?;
                }
                Leaves::signed(ca, dir)
            }
            (None, None) => {
                return Err(settings.bad(
                    "ssl",
                    "ssl=on needs ssl_ca_cert and ssl_ca_key (a certificate per server, see `imspector ca create`) or ssl_cert and ssl_key (one for all)",
                ))
            }
        };
        let verify = match settings.get("ssl_verify") {
            None | Some("block") => VerifyMode::Block,
            Some("selfsigned") => VerifyMode::SelfSigned,
            Some(other) => {
                return Err(settings.bad(
                    "ssl_verify",
                    format!("{other:?} is not block or selfsigned"),
                ))
            }
        };
        let extra = settings.path("ssl_verify_dir");
        let (roots, system, added) =
            upstream::roots(extra.as_deref()).map_err(|why| settings.bad("ssl_verify_dir", why))?;
        let summary = format!(
            "TLS interception on: servers verified against {system} system CAs and {added} from ssl_verify_dir (ssl_verify={})",
            match verify {
                VerifyMode::Block => "block",
                VerifyMode::SelfSigned => "selfsigned",
            }
        );
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = upstream::verifier(roots, verify, provider.clone())
            .map_err(|why| settings.bad("ssl_verify_dir", why))?;
        let upstream = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| settings.bad("ssl", e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Some(Interceptor {
            leaves,
            upstream: Arc::new(upstream),
            provider,
            verify,
            summary,
        }))
    }
}

/// The one event logged for a TLS session that is relayed untouched, in the
/// conversation between the client's address and the server (its name when
/// the SNI or the protocol gave one, else its address). `how` is `TLS` or
/// `STARTTLS` (or `HTTPS tunnel`).
pub fn encrypted_event(
    client: &str,
    protocol: std::borrow::Cow<'static, str>,
    dst: std::net::SocketAddr,
    server_name: Option<&str>,
    how: &str,
) -> crate::event::LogEvent {
    let client_ip = client
        .rsplit_once(':')
        .map_or(client, |(ip, _)| ip)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let server = server_name.map_or_else(
        || crate::net::plain_ip(dst.ip()).to_string(),
        str::to_lowercase,
    );
    crate::event::LogEvent {
        timestamp: chrono::Utc::now().timestamp(),
        client: client.into(),
        protocol,
        outgoing: true,
        kind: imspector_protocols::EventType::Message,
        local_id: client_ip.into(),
        remote_id: server.as_str().into(),
        filtered: false,
        categories: String::new(),
        data: format!(
            "encrypted session ({how}) with {server}:{}, not inspected",
            dst.port()
        ),
    }
}
