//! The sinks the logging options ask for.

use std::path::{Path, PathBuf};

use super::cats::CatsSink;
use super::file::FileSink;
use super::private;
use super::spool::SyncMode;
use super::spool_lock::SpoolLock;
use super::spooled::{Backend, Spooled};
use super::sqlite::SqliteBackend;
use super::syslog::{self, SyslogSink, Target};
use super::Sink;
use crate::config::{Config, ConfigError, Settings};

/// Where database sinks keep their journals unless `spool_dir` says otherwise.
pub const DEFAULT_SPOOL_DIR: &str = "/var/spool/imspector";
/// The same for the embedded default (no configuration file).
pub const EMBEDDED_SPOOL_DIR: &str = "imspector-spool";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Sink(#[from] super::SinkError),
}

pub fn build(config: &Config) -> Result<Vec<Box<dyn Sink>>, BuildError> {
    let s = &config.settings;
    private::set_group(log_group(s)?);
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if let Some(dir) = &config.file_logging_dir {
        sinks.push(Box::new(FileSink::new(dir)));
    }
    if let Some(path) = s.path("cats_logging_filename") {
        sinks.push(Box::new(CatsSink::new(path)));
    }
    if let Some(sink) = syslog(s)? {
        sinks.push(Box::new(sink));
    }
    let sync = sync_mode(s)?;
    let backends = backends(s)?;
    if !backends.is_empty() {
        let spool_dir = spool_dir(s);
        let lock = SpoolLock::acquire(&spool_dir)?;
        for backend in backends {
            let dir = spool_of(&spool_dir, backend.name());
            sinks.push(Box::new(Spooled::start(backend, &dir, sync, lock.clone())?));
        }
    }
    Ok(sinks)
}

/// Every logging option checked as [`build`] would, without opening, creating
/// or connecting to anything: what `--check-config` runs. Returns how many
/// sinks [`build`] would make.
pub fn check(config: &Config) -> Result<usize, ConfigError> {
    let s = &config.settings;
    log_group(s)?;
    let syslog = syslog(s)?.is_some();
    sync_mode(s)?;
    let files = [
        config.file_logging_dir.is_some(),
        s.path("cats_logging_filename").is_some(),
        syslog,
    ];
    Ok(files.iter().filter(|on| **on).count() + backends(s)?.len())
}

fn sync_mode(s: &Settings) -> Result<SyncMode, ConfigError> {
    match s.get("spool_sync") {
        None => Ok(SyncMode::default()),
        Some(v) => SyncMode::parse(v)
            .ok_or_else(|| s.bad("spool_sync", format!("{v:?} is not group, always or off"))),
    }
}

pub(crate) fn spool_dir(s: &Settings) -> PathBuf {
    s.path("spool_dir").unwrap_or_else(|| {
        PathBuf::from(if s.is_embedded() {
            EMBEDDED_SPOOL_DIR
        } else {
            DEFAULT_SPOOL_DIR
        })
    })
}

/// The gid of `log_group`, which gets what imspector stores.
pub fn log_group(s: &Settings) -> Result<Option<u32>, ConfigError> {
    let Some(name) = s.get("log_group").filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    match nix::unistd::Group::from_name(name) {
        Ok(Some(group)) => Ok(Some(group.gid.as_raw())),
        _ => Err(s.bad("log_group", format!("no group {name:?}"))),
    }
}

/// Run as root before privileges are dropped: create, with their modes, the
/// places the daemon's user must then write (the file log directory, the
/// spool directory, the categories file). Returns them, to be handed over.
pub fn prepare(config: &Config) -> Result<Vec<PathBuf>, BuildError> {
    let s = &config.settings;
    private::set_group(log_group(s)?);
    let io_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| BuildError::Sink(super::SinkError::Io { path, source })
    };
    let mut made = Vec::new();
    if let Some(dir) = &config.file_logging_dir {
        private::create_dir_all(dir).map_err(io_err(dir))?;
        made.push(dir.clone());
    }
    if !backends(s)?.is_empty() {
        let dir = spool_dir(s);
        private::create_dir_all(&dir).map_err(io_err(&dir))?;
        made.push(dir);
    }
    if let Some(path) = s.path("cats_logging_filename") {
        private::touch(&path).map_err(io_err(&path))?;
        made.push(path);
    }
    Ok(made)
}

/// The syslog sink the options ask for, if any; SIGHUP may replace it, as
/// it needs nothing created before privileges are dropped.
pub fn syslog(s: &Settings) -> Result<Option<SyslogSink>, ConfigError> {
    if !s.flag("syslog_logging")?.unwrap_or(false) {
        return Ok(None);
    }
    syslog_sink(s).map(Some)
}

fn syslog_sink(s: &Settings) -> Result<SyslogSink, ConfigError> {
    let facility = match s.get("syslog_facility") {
        None => syslog::facility("local0").expect("a facility name"),
        Some(name) => syslog::facility(name)
            .ok_or_else(|| s.bad("syslog_facility", format!("{name:?} is not a facility")))?,
    };
    let target = match s.get("syslog_server").filter(|v| !v.is_empty()) {
        None => Target::Local,
        Some(v) => Target::parse(v).map_err(|why| s.bad("syslog_server", why))?,
    };
    let max_size = match s.parsed::<usize>("syslog_max_size")? {
        Some(n) if n < 480 => {
            return Err(s.bad("syslog_max_size", "must be at least 480 (RFC 5426)"))
        }
        other => other.unwrap_or(syslog::DEFAULT_MAX_SIZE),
    };
    Ok(SyslogSink::new(target, facility, max_size))
}

pub(crate) fn backends(s: &Settings) -> Result<Vec<Box<dyn Backend>>, ConfigError> {
    let mut found: Vec<Box<dyn Backend>> = Vec::new();
    if let Some(path) = s.path("sqlite_file") {
        found.push(Box::new(SqliteBackend::new(path)));
    }
    if s.get("mysql_server").is_some() || s.get("mysql_socket").is_some() {
        found.push(mysql_backend(s)?);
    }
    if let Some(connect) = s.get("pgsql_connect").filter(|v| !v.is_empty()) {
        found.push(postgres_backend(s, connect)?);
    }
    Ok(found)
}

#[cfg(feature = "mysql")]
fn mysql_backend(s: &Settings) -> Result<Box<dyn Backend>, ConfigError> {
    Ok(Box::new(super::mysql::MysqlBackend::new(mysql_target(s)?)))
}

/// Where the `mysql_*` options point (the log viewer reads there too).
#[cfg(feature = "mysql")]
pub fn mysql_target(s: &Settings) -> Result<super::mysql::MysqlTarget, ConfigError> {
    // A missing option is reported on the line of the one that needs it.
    let needed_by = if s.get("mysql_server").is_some() {
        "mysql_server"
    } else {
        "mysql_socket"
    };
    let required = |key: &str| match s.get(key).filter(|v| !v.is_empty()) {
        Some(v) => Ok(v.to_string()),
        None => Err(s.bad(needed_by, format!("MySQL logging needs {key} too"))),
    };
    Ok(super::mysql::MysqlTarget {
        server: s.get("mysql_server").unwrap_or("localhost").to_string(),
        port: s.parsed("mysql_port")?,
        socket: s.path("mysql_socket").map(|p| p.display().to_string()),
        database: required("mysql_database")?,
        username: required("mysql_username")?,
        password: s.get("mysql_password").unwrap_or_default().to_string(),
    })
}

#[cfg(not(feature = "mysql"))]
fn mysql_backend(s: &Settings) -> Result<Box<dyn Backend>, ConfigError> {
    Err(s.bad("mysql_server", "this build has no MySQL support"))
}

#[cfg(feature = "postgres")]
fn postgres_backend(s: &Settings, connect: &str) -> Result<Box<dyn Backend>, ConfigError> {
    let backend = super::postgres::PostgresBackend::new(connect)
        .map_err(|why| s.bad("pgsql_connect", why))?;
    Ok(Box::new(backend))
}

#[cfg(not(feature = "postgres"))]
fn postgres_backend(s: &Settings, _: &str) -> Result<Box<dyn Backend>, ConfigError> {
    Err(s.bad("pgsql_connect", "this build has no PostgreSQL support"))
}

/// The journal directory of one backend under `spool_dir`.
pub fn spool_of(spool_dir: &Path, backend: &str) -> PathBuf {
    spool_dir.join(backend)
}
