//! IMSpector: a transparent proxy that logs and filters instant-messenger traffic.
//!
//! `main.rs` parses the command line, binds, daemonizes and drops privileges;
//! [`run`] is everything after that, so tests can drive it in process.

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
pub mod metrics;
pub mod net;
pub mod new_conversations;
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

use crate::config::{Config, Settings};
use crate::session::Shared;

/// How long open connections get to reach a quiet point after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The sinks the configuration asks for.
pub fn build_sinks(config: &Config) -> anyhow::Result<Vec<Box<dyn log::Sink>>> {
    let sinks = log::build::build(config)?;
    if sinks.is_empty() {
        if config.block_unlogged {
            anyhow::bail!(
                "log_failure=block and no logging is configured: every chat would be blocked"
            );
        }
        ::log::warn!("no logging is configured: events are not stored anywhere");
    }
    Ok(sinks)
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
    let (logger, writer) = log::spawn_writer(sinks, echo);
    let file_dir = config.file_logging_dir.as_deref();
    if let Some(retention) = retention::Retention::new(&config.settings, file_dir)? {
        retention.spawn().context("starting the retention thread")?;
    }
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
    let mut reloads = 0;
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
                reloads += 1;
                reload(&shared, icap.as_ref().map(|(_, s)| &**s), reloads, config_path.as_deref());
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    ::log::info!("stopping: {} open connections", sessions.len());
    drop(listener);
    drop(http_listener);
    drop(icap);
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

/// SIGHUP: re-read the configuration and swap in new filters (and the ICAP
/// handlers, under a new ISTag). Open connections stay; a bad file keeps the
/// rules in force.
fn reload(
    shared: &Shared,
    icap: Option<&icap::Service>,
    generation: u64,
    path: Option<&std::path::Path>,
) {
    let reloaded = reload_filters(shared, path).and_then(|settings| match icap {
        Some(icap) => Ok(icap.reload(&settings, generation)?),
        None => Ok(()),
    });
    match reloaded {
        Ok(()) => ::log::info!("SIGHUP: configuration reloaded"),
        Err(e) => ::log::error!("SIGHUP: reload failed, previous rules stay in force: {e}"),
    }
}

/// Build the filters from the file as it is now and put them in force; on an
/// error the filters in force stay. Returns the settings read.
fn reload_filters(shared: &Shared, path: Option<&std::path::Path>) -> anyhow::Result<Settings> {
    let settings = match path {
        Some(path) => Settings::load(path)?,
        None => Settings::embedded(),
    };
    let chain = filter::build(&settings)?;
    *shared.filters.write().expect("filter lock poisoned") = Arc::new(chain);
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::testing::event_between;

    fn blocked(shared: &Shared, local: &str, remote: &str) -> bool {
        let mut e = event_between(local, remote, "hello");
        shared.filters.read().unwrap().apply(&mut e);
        e.blocked
    }

    #[test]
    fn reload_with_a_bad_file_keeps_the_rules_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let acl = dir.path().join("acl.txt");
        let conf = dir.path().join("imspector.conf");
        std::fs::write(&acl, "deny alice bob\n").unwrap();
        std::fs::write(&conf, format!("acl_filename={}\n", acl.display())).unwrap();
        let config = Config::from_settings(Settings::load(&conf).unwrap()).unwrap();
        let filters = filter::build(&config.settings).unwrap();
        let logger = log::spawn_writer(Vec::new(), false).0;
        let shared = Shared::new(config, filters, logger, None);
        assert!(blocked(&shared, "alice", "bob"));

        std::fs::write(&acl, "allow alice carol\npermit alice bob\n").unwrap();
        let e = reload_filters(&shared, Some(&conf)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}:2: a rule starts with allow or deny, not \"permit\"",
                acl.display()
            )
        );
        assert!(blocked(&shared, "alice", "bob"));

        std::fs::write(&acl, "deny alice carol\n").unwrap();
        reload_filters(&shared, Some(&conf)).unwrap();
        assert!(!blocked(&shared, "alice", "bob"));
        assert!(blocked(&shared, "alice", "carol"));
    }
}
