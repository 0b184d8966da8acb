//! The viewer's options, read from the daemon's imspector.conf: where the
//! logs are (`file_logging_dir`, `sqlite_file`) and its own `web_*` options.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use imspector::config::Settings;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_USERS: &str = "/etc/imspector/web-users";
pub const DEFAULT_AUDIT: &str = "/var/log/imspector/web-audit.log";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Files(PathBuf),
    Sqlite(PathBuf),
}

#[derive(Debug, Clone)]
pub struct WebConfig {
    pub listen: SocketAddr,
    /// Certificate chain and key (PEM) for HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub users: PathBuf,
    pub audit: PathBuf,
    pub source: Source,
}

impl WebConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let settings = Settings::load(path)?;
        for w in &settings.warnings {
            log::warn!("{w}");
        }
        Self::from_settings(&settings)
    }

    pub fn from_settings(s: &Settings) -> anyhow::Result<Self> {
        let listen: SocketAddr = s
            .parsed("web_listen")?
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default address"));
        let tls = match (s.path("web_cert"), s.path("web_key")) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => return Err(s.bad("web_cert", "needs web_key too").into()),
            (None, Some(_)) => return Err(s.bad("web_key", "needs web_cert too").into()),
        };
        if tls.is_none() && !listen.ip().is_loopback() {
            return Err(s
                .bad(
                    "web_listen",
                    "a non-loopback address needs HTTPS (web_cert and web_key): the pages hold private chats and passwords",
                )
                .into());
        }
        let files = s.path("file_logging_dir");
        let sqlite = s.path("sqlite_file");
        let source = match s.get("web_source") {
            None => match (files, sqlite) {
                (Some(dir), _) => Source::Files(dir),
                (None, Some(db)) => Source::Sqlite(db),
                (None, None) => {
                    anyhow::bail!(
                        "{}: neither file_logging_dir nor sqlite_file is set: there are no logs to show",
                        s.source
                    )
                }
            },
            Some("files") => Source::Files(
                files
                    .ok_or_else(|| s.bad("web_source", "files, but file_logging_dir is not set"))?,
            ),
            Some("sqlite") => Source::Sqlite(
                sqlite.ok_or_else(|| s.bad("web_source", "sqlite, but sqlite_file is not set"))?,
            ),
            Some(other) => {
                return Err(s
                    .bad(
                        "web_source",
                        format!("{other:?} is neither files nor sqlite"),
                    )
                    .into())
            }
        };
        Ok(WebConfig {
            listen,
            tls,
            users: s
                .path("web_users_filename")
                .unwrap_or_else(|| DEFAULT_USERS.into()),
            audit: s
                .path("web_audit_filename")
                .unwrap_or_else(|| DEFAULT_AUDIT.into()),
            source,
        })
    }
}
