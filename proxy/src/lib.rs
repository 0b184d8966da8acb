//! IMSpector: a transparent proxy that logs and filters instant-messenger traffic.
//!
//! `main.rs` parses the command line, binds, daemonizes and drops privileges;
//! [`run`] is everything after that, so tests can drive it in process.

pub mod alert;
pub mod budget;
pub mod cli;
pub mod config;
pub mod connect;
pub mod daemon;
pub mod diag;
pub mod event;
pub mod filter;
pub mod icap;
pub mod log;
pub mod memory;
pub mod metrics;
pub mod net;
pub mod new_conversations;
pub mod reload;
pub mod retention;
pub mod session;
pub mod tls;
pub mod trusted_path;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;

use crate::config::{Config, ConfigError};
use crate::session::Shared;

/// How long open connections get to reach a quiet point after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The sinks the configuration asks for.
pub fn build_sinks(config: &Config) -> anyhow::Result<Vec<Box<dyn log::Sink>>> {
    let sinks = log::build::build(config)?;
    if sinks.is_empty() {
        ::log::warn!("no logging is configured: events are not stored anywhere");
    }
    Ok(sinks)
}

/// Everything a start needs of the configuration besides the core's options
/// ([`Config::from_settings`]) and the TLS keys, checked without binding,
/// connecting or starting anything: `--check-config` runs it, and so does a
/// start before it binds, so that every such error is exit 2 with its line.
pub fn check(config: &Config) -> Result<(), ConfigError> {
    let s = &config.settings;
    if log::build::check(config)? == 0 && config.block_unlogged {
        return Err(s.bad(
            "log_failure",
            "block, and no logging is configured: every chat would be blocked",
        ));
    }
    icap::check(s)?;
    filter::build(s)?;
    s.parsed::<std::net::SocketAddr>("metrics_listen")?;
    retention::days(s)?;
    alert::AlertConfig::from_settings(s)?;
    Ok(())
}

/// Serve until SIGTERM or SIGINT, then flush every event and return.
/// `config_path` is re-read on SIGHUP; `echo` prints events to stderr;
/// `serving` is called once the sinks and filters are up and connections are
/// accepted. The listeners and `tls` (its keys) are made before privileges
/// are dropped, hence the many arguments.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    listener: std::net::TcpListener,
    http_listener: Option<std::net::TcpListener>,
    icap_listener: Option<(std::net::TcpListener, icap::IcapConfig)>,
    config: Config,
    config_path: Option<PathBuf>,
    tls: Option<tls::Interceptor>,
    echo: bool,
    serving: impl FnOnce(),
) -> anyhow::Result<()> {
    let sinks = build_sinks(&config)?;
    let filters = filter::build(&config.settings)?;
    if let Some(tls) = &tls {
        ::log::info!("{}", tls.summary);
    }
    let (alerter, send_alerts) =
        alert::Alerter::new(alert::AlertConfig::from_settings(&config.settings)?);
    tokio::spawn(send_alerts);
    let (logger, writer) = log::spawn_writer(sinks, echo);
    let logger = logger.with_alerts(alerter.clone());
    let retention_days = retention::days(&config.settings)?;
    let file_dir = config.file_logging_dir.as_deref();
    let retention = match retention::Retention::new(retention_days, &config.settings, file_dir)? {
        Some(r) => Some(r.spawn().context("starting the retention thread")?),
        None => None,
    };
    let listener = tokio::net::TcpListener::from_std(listener).context("listener")?;
    let http_listener = match http_listener {
        Some(l) => Some(tokio::net::TcpListener::from_std(l).context("http listener")?),
        None => None,
    };
    let shared = Arc::new(Shared::new(config, filters, logger, tls));
    let icap = match icap_listener {
        Some((l, icap_config)) => Some((
            tokio::net::TcpListener::from_std(l).context("icap listener")?,
            Arc::new(icap::Service::new(icap_config, shared.clone())?),
        )),
        None => None,
    };
    let metrics_addr: Option<std::net::SocketAddr> =
        shared.config.settings.parsed("metrics_listen")?;
    if let Some(addr) = metrics_addr {
        let l = metrics::bind(addr).await?;
        ::log::info!("metrics on http://{}/metrics", l.local_addr()?);
        tokio::spawn(metrics::serve(l));
    }
    let mut live = reload::Live::new(
        icap.as_ref().map(|(_, s)| s.clone()),
        alerter,
        retention,
        &shared.config.settings,
    )?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut sessions = JoinSet::new();
    let max_connections = shared
        .config
        .max_connections
        .unwrap_or_else(default_max_connections);
    let mut refused = Refusals::default();
    ::log::info!(
        "listening on {} (at most {max_connections} connections)",
        listener.local_addr()?
    );
    serving();
    if let Some(l) = &http_listener {
        ::log::info!("CONNECT listener on {}", l.local_addr()?);
    }
    if let Some((l, _)) = &icap {
        ::log::info!(
            "ICAP service on icap://{}/reqmod and /respmod",
            l.local_addr()?
        );
    }
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((_, peer)) if sessions.len() >= max_connections => {
                    refused.note(peer, max_connections);
                }
                Ok((stream, peer)) => {
                    let shared = shared.clone();
                    let stop = stop_rx.clone();
                    sessions.spawn(session::serve(stream, peer, shared, stop));
                }
                Err(e) => {
                    ::log::warn!("accept: {e}");
                    // Out of descriptors: give the others a moment to close.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Ok((stream, peer)) = accept_http(http_listener.as_ref()) => {
                sessions.spawn(connect::serve(stream, peer, shared.clone(), stop_rx.clone()));
            }
            Some(ended) = sessions.join_next() => {
                if let Err(e) = ended {
                    if e.is_panic() {
                        ::log::error!("a connection ended on an internal error (reported above)");
                    }
                }
            }
            Ok((stream, peer)) = accept_icap(icap.as_ref()) => {
                let service = icap.as_ref().map(|(_, s)| s.clone()).expect("an ICAP listener has its service");
                sessions.spawn(icap::server::serve(stream, peer, service, stop_rx.clone()));
            }
            _ = hangup.recv() => {
                live.reload(&shared, config_path.as_deref());
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    ::log::info!("stopping: {} open connections", sessions.len());
    drop(listener);
    drop(http_listener);
    drop(icap);
    // It holds the ICAP service, and so a Logger.
    drop(live);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        sessions.abort_all();
        while sessions.join_next().await.is_some() {}
    }
    drop(shared);
    // The writer ends once the last Logger is gone, after writing everything queued.
    let waiting = tokio::task::spawn_blocking(move || writer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("event writer panicked"))?;
    if waiting.is_empty() {
        ::log::info!("stopped; every event written");
    } else {
        ::log::warn!("stopped; {}", waiting.join("; "));
    }
    Ok(())
}

/// Connections at once that the open-files limit allows: two descriptors each,
/// and some left for logs, journals and databases.
fn default_max_connections() -> usize {
    const RESERVED: u64 = 256;
    let soft = daemon::open_files_limit().map_or(1024, |l| l.rlim_cur);
    (soft.saturating_sub(RESERVED) / 2).max(1) as usize
}

/// Connections closed at once because `max_connections` were open: said
/// once, then counted at most every ten seconds, so a flood does not flood
/// the log too.
#[derive(Default)]
struct Refusals {
    since_said: u64,
    said_at: Option<std::time::Instant>,
}

impl Refusals {
    fn note(&mut self, peer: std::net::SocketAddr, max: usize) {
        self.since_said += 1;
        if self
            .said_at
            .is_some_and(|t| t.elapsed() < Duration::from_secs(10))
        {
            return;
        }
        ::log::warn!(
            "{}: closed: max_connections ({max}) are open ({} refused since the last such line)",
            net::display_addr(peer),
            self.since_said
        );
        self.since_said = 0;
        self.said_at = Some(std::time::Instant::now());
    }
}

/// Accept on the CONNECT listener, or never when there is none.
async fn accept_http(
    listener: Option<&tokio::net::TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Accept on the ICAP listener, or never when there is none.
async fn accept_icap(
    icap: Option<&(tokio::net::TcpListener, Arc<icap::Service>)>,
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match icap {
        Some((l, _)) => l.accept().await,
        None => std::future::pending().await,
    }
}
