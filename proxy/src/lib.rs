//! IMSpector: a transparent proxy that logs and filters instant-messenger traffic.
//!
//! `main.rs` parses the command line, binds, daemonizes and drops privileges;
//! [`run`] is everything after that, so tests can drive it in process.

pub mod config;
pub mod daemon;
pub mod diag;
pub mod event;
pub mod filter;
pub mod log;
pub mod net;
pub mod session;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
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
        ::log::warn!("no logging is configured: events are not stored anywhere");
    }
    Ok(sinks)
}

/// Serve until SIGTERM or SIGINT, then flush every event and return.
/// `config_path` is re-read on SIGHUP; `echo` prints events to stderr.
pub async fn run(
    listener: std::net::TcpListener,
    config: Config,
    config_path: Option<PathBuf>,
    echo: bool,
) -> anyhow::Result<()> {
    let sinks = build_sinks(&config)?;
    let filters = filter::build(&config.settings)?;
    let (logger, writer) = log::spawn_writer(sinks, echo);
    let listener = tokio::net::TcpListener::from_std(listener).context("listener")?;
    let shared = Arc::new(Shared {
        upstream: net::Upstream {
            interface: config.interface.clone(),
            mark: config.upstream_mark,
            timeout: config.connect_timeout,
        },
        config,
        filters: RwLock::new(Arc::new(filters)),
        logger,
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut sessions = JoinSet::new();
    ::log::info!("listening on {}", listener.local_addr()?);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
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
            Some(_) = sessions.join_next() => {}
            _ = hangup.recv() => reload(&shared, config_path.as_deref()),
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    ::log::info!("stopping: {} open connections", sessions.len());
    drop(listener);
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
    tokio::task::spawn_blocking(move || writer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("event writer panicked"))?;
    ::log::info!("stopped; every event written");
    Ok(())
}

/// SIGHUP: re-read the configuration and swap in new filters. Open connections
/// stay; a bad file keeps the rules in force.
fn reload(shared: &Shared, path: Option<&std::path::Path>) {
    let settings = match path {
        Some(path) => Settings::load(path),
        None => Ok(Settings::embedded()),
    };
    let result = settings
        .map_err(anyhow::Error::from)
        .and_then(|s| filter::build(&s).map_err(anyhow::Error::from));
    match result {
        Ok(chain) => {
            *shared.filters.write().expect("filter lock poisoned") = Arc::new(chain);
            ::log::info!("SIGHUP: configuration reloaded");
        }
        Err(e) => ::log::error!("SIGHUP: reload failed, previous rules stay in force: {e}"),
    }
}
