//! The ICAP service (RFC 3507) for Squid: `icap://HOST:PORT/reqmod` sees the
//! clients' requests, `icap://HOST:PORT/respmod` the servers' responses. Chat
//! APIs over HTTP(S) (Matrix, the MSN HTTP gateway, web-chat rules) are read by
//! one handler each; their events go through the relay's filter chain and
//! logger ([`crate::session::judge_event`]). docs/icap.md has the details.
//!
//! - `wire`: the ICAP framing, sans-IO and bounded (fuzzed).
//! - `http`: the encapsulated HTTP heads (httparse).
//! - `response`: ICAP answers.
//! - `server`: the connection loop.
//! - `handler`: what a chat handler implements; `matrix`, `gateway` (MSN),
//!   `webchat`: the handlers.

pub mod gateway;
pub mod handler;
pub mod http;
pub mod matrix;
pub mod response;
pub mod server;
#[cfg(test)]
mod testing;
pub mod webchat;
pub mod wire;

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use crate::config::{ConfigError, Settings, DEFAULT_HTTP_CLIENTS};
use crate::net::cidr::{self, Cidr};
use crate::session::{unix_now, Shared};

use handler::Handler;

/// The port `icap_port=on` means: ICAP's registered port.
pub const DEFAULT_PORT: u16 = 1344;
/// Where the service listens unless `icap_listen` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1";
/// Body bytes a handler reads at most unless `icap_max_body` says otherwise.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// Preview size advertised: a chat message's body fits, so most need no
/// `100 Continue` round trip, and an uninteresting upload is answered after it.
pub const PREVIEW: usize = 4096;
/// How long Squid may keep our OPTIONS answer.
pub const OPTIONS_TTL_SECS: u32 = 300;
/// URL endings Squid need not send us (`Transfer-Ignore`): the static files a
/// chat web app loads from its chat host, never a chat API call.
pub const TRANSFER_IGNORE: &[&str] = &[
    "js", "css", "png", "jpg", "jpeg", "gif", "svg", "ico", "webp", "woff", "woff2", "ttf", "map",
];
/// Connections served at once (advertised as Max-Connections).
pub const MAX_CONNECTIONS: usize = 1000;

/// The ICAP options.
#[derive(Debug, Clone)]
pub struct IcapConfig {
    pub port: u16,
    pub listen: IpAddr,
    pub clients: Vec<Cidr>,
    pub max_body: usize,
    pub max_connections: usize,
}

impl IcapConfig {
    /// `None` when the service is off (`icap_port` unset, `off` or 0).
    pub fn from_settings(settings: &Settings) -> Result<Option<Self>, ConfigError> {
        let port = match settings.get("icap_port") {
            None => return Ok(None),
            Some(v) if v.eq_ignore_ascii_case("on") => DEFAULT_PORT,
            Some(v) if v.eq_ignore_ascii_case("off") => return Ok(None),
            Some(_) => match settings.parsed::<u16>("icap_port")? {
                Some(0) | None => return Ok(None),
                Some(p) => p,
            },
        };
        let listen = settings
            .parsed("icap_listen")?
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default address"));
        let clients =
            cidr::parse_list(settings.get("icap_clients").unwrap_or(DEFAULT_HTTP_CLIENTS))
                .map_err(|why| settings.bad("icap_clients", why))?;
        let max_body = match settings.parsed::<usize>("icap_max_body")? {
            Some(0) => return Err(settings.bad("icap_max_body", "must be at least 1")),
            other => other.unwrap_or(DEFAULT_MAX_BODY),
        };
        Ok(Some(IcapConfig {
            port,
            listen,
            clients,
            max_body,
            max_connections: MAX_CONNECTIONS,
        }))
    }
}

/// Check the ICAP options and the web-chat rules file (for `--check-config`).
pub fn check(settings: &Settings) -> Result<(), ConfigError> {
    IcapConfig::from_settings(settings)?;
    if let Some(path) = settings.path("webchat_rules_filename") {
        webchat::WebChat::load(&path)?;
    }
    Ok(())
}

/// The running service: its options, handlers and ISTag.
pub struct Service {
    pub config: IcapConfig,
    pub shared: Arc<Shared>,
    handlers: RwLock<Arc<Vec<Arc<dyn Handler>>>>,
    /// Kept across reloads: the users and sessions they follow stay known.
    matrix: Arc<matrix::Matrix>,
    gateway: Arc<gateway::Gateway>,
    /// Changes on every reload, so Squid drops what it cached from us.
    istag: RwLock<String>,
    connections: Arc<tokio::sync::Semaphore>,
}

impl Service {
    pub fn new(config: IcapConfig, shared: Arc<Shared>) -> Result<Self, ConfigError> {
        let service = Service {
            connections: Arc::new(tokio::sync::Semaphore::new(config.max_connections)),
            config,
            matrix: Arc::new(matrix::Matrix::default()),
            gateway: Arc::new(gateway::Gateway::default()),
            handlers: RwLock::new(Arc::new(Vec::new())),
            istag: RwLock::new(String::new()),
            shared,
        };
        let settings = service.shared.config.settings.clone();
        service.reload(&settings, 0)?;
        Ok(service)
    }

    /// Rebuild the handlers from `settings`; a bad file keeps the ones in force.
    pub fn reload(&self, settings: &Settings, generation: u64) -> Result<(), ConfigError> {
        let mut handlers: Vec<Arc<dyn Handler>> = vec![self.matrix.clone(), self.gateway.clone()];
        if let Some(path) = settings.path("webchat_rules_filename") {
            handlers.push(Arc::new(webchat::WebChat::load(&path)?));
        }
        *self.handlers.write().expect("handlers lock poisoned") = Arc::new(handlers);
        *self.istag.write().expect("istag lock poisoned") =
            format!("ims-{}-{generation}", unix_now());
        Ok(())
    }

    pub fn handlers(&self) -> Arc<Vec<Arc<dyn Handler>>> {
        self.handlers
            .read()
            .expect("handlers lock poisoned")
            .clone()
    }

    pub fn istag(&self) -> String {
        self.istag.read().expect("istag lock poisoned").clone()
    }
}
