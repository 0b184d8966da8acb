//! The viewer's options, read from the daemon's imspector.conf: where the
//! logs are (`file_logging_dir`, `sqlite_file`, `mysql_*`, `pgsql_connect`)
//! and its own `web_*` options.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use imspector::config::{ConfigError, Settings};
use imspector::log::build::mysql_target;
use imspector::log::mysql::MysqlTarget;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_USERS: &str = "/etc/imspector/web-users";
pub const DEFAULT_AUDIT: &str = "/var/log/imspector/web-audit.log";

/// Where the daemon's events are read (`web_source`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Files(PathBuf),
    Sqlite(PathBuf),
    Mysql(MysqlTarget),
    /// `pgsql_connect`: a libpq `key=value` string or a URL.
    Postgres(String),
}

impl Source {
    /// The first logs configured, in the order of `web_source`'s names.
    fn default_for(s: &Settings) -> Result<Option<Source>, ConfigError> {
        let set = |key: &str| s.path(key).is_some();
        let name = if set("file_logging_dir") {
            "files"
        } else if set("sqlite_file") {
            "sqlite"
        } else if s.get("mysql_server").is_some() || s.get("mysql_socket").is_some() {
            "mysql"
        } else if set("pgsql_connect") {
            "pgsql"
        } else {
            return Ok(None);
        };
        Source::named(s, name).map(Some)
    }

    /// The logs `web_source=name` asks for, or why there are none.
    fn named(s: &Settings, name: &str) -> Result<Source, ConfigError> {
        let unset = |key: &str| s.bad("web_source", format!("{name}, but {key} is not set"));
        match name {
            "files" => s
                .path("file_logging_dir")
                .map(Source::Files)
                .ok_or_else(|| unset("file_logging_dir")),
            "sqlite" => s
                .path("sqlite_file")
                .map(Source::Sqlite)
                .ok_or_else(|| unset("sqlite_file")),
            "mysql" if s.get("mysql_server").is_none() && s.get("mysql_socket").is_none() => {
                Err(unset("mysql_server or mysql_socket"))
            }
            "mysql" => Ok(Source::Mysql(mysql_target(s)?)),
            "pgsql" => {
                let connect = s
                    .get("pgsql_connect")
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| unset("pgsql_connect"))?;
                connect
                    .parse::<postgres::Config>()
                    .map_err(|e| s.bad("pgsql_connect", e))?;
                Ok(Source::Postgres(connect.to_string()))
            }
            other => Err(s.bad(
                "web_source",
                format!("{other:?} is none of files, sqlite, mysql or pgsql"),
            )),
        }
    }
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
        let source = match s.get("web_source") {
            None => Source::default_for(s)?.ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: none of file_logging_dir, sqlite_file, mysql_server, mysql_socket or pgsql_connect is set: there are no logs to show",
                    s.source
                )
            })?,
            Some(name) => Source::named(s, name)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<WebConfig, String> {
        let settings = Settings::parse("imspector.conf", text).map_err(|e| e.to_string())?;
        WebConfig::from_settings(&settings).map_err(|e| e.to_string())
    }

    #[test]
    fn web_source_picks_the_first_logs_configured_or_the_one_named() {
        let mysql = "mysql_socket=/run/mysqld/mysqld.sock\nmysql_database=ims\nmysql_username=u\n";
        let pgsql = "pgsql_connect=host=/run/postgresql dbname=ims\n";
        let source = |text: &str| config(text).map(|c| c.source);
        assert_eq!(
            source(&format!("sqlite_file=/var/lib/ims.db\n{mysql}")),
            Ok(Source::Sqlite("/var/lib/ims.db".into()))
        );
        let Ok(Source::Mysql(target)) = source(&format!("{mysql}{pgsql}")) else {
            panic!("{:?}", source(&format!("{mysql}{pgsql}")));
        };
        assert_eq!(
            (target.socket.as_deref(), target.database.as_str()),
            (Some("/run/mysqld/mysqld.sock"), "ims")
        );
        assert_eq!(
            source(&format!("{mysql}{pgsql}web_source=pgsql\n")),
            Ok(Source::Postgres("host=/run/postgresql dbname=ims".into()))
        );
    }

    #[test]
    fn web_source_errors_name_the_file_the_line_and_the_option() {
        assert_eq!(
            config("file_logging_dir=/var/log/imspector\nweb_source=mysql\n").err(),
            Some(
                "imspector.conf:2: web_source: mysql, but mysql_server or mysql_socket is not set"
                    .into()
            )
        );
        assert_eq!(
            config("mysql_server=db.example\nmysql_username=u\n").err(),
            Some("imspector.conf:1: mysql_server: MySQL logging needs mysql_database too".into())
        );
        let bad = config("\npgsql_connect=host='unclosed\n").unwrap_err();
        assert!(
            bad.starts_with("imspector.conf:2: pgsql_connect: "),
            "{bad}"
        );
        assert_eq!(
            config("sqlite_file=/x.db\nweb_source=oracle\n").err(),
            Some(
                "imspector.conf:2: web_source: \"oracle\" is none of files, sqlite, mysql or pgsql"
                    .into()
            )
        );
        assert!(config("web_listen=127.0.0.1:8080\n")
            .unwrap_err()
            .contains("there are no logs to show"));
    }
}
