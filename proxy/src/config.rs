//! `imspector.conf`: `key=value` lines and `#` comments, as the original read them.
//!
//! [`Settings`] keeps every line with its position so that each part of the
//! program reads its own options and reports a bad value as `file:line: key: why`.
//! [`Config`] holds the options of the core (listener, protocols, daemon).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use imspector_protocols::ProtocolKind;

use crate::net::cidr::{self, Cidr};
use crate::net::Interception;

/// Where the original looked for its configuration.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/imspector/imspector.conf";

/// Who may use the CONNECT listener unless `http_clients` says otherwise.
pub const DEFAULT_HTTP_CLIENTS: &str = "127.0.0.0/8,::1/128";

/// Seconds of silence after which a connection of a protocol with keep-alives
/// is closed: well above the longest keep-alive interval of any client.
pub const DEFAULT_IDLE_TIMEOUT: u64 = 900;

/// Directory for file logs in the embedded default (no config file at all).
pub const EMBEDDED_LOG_DIR: &str = "imspector-logs";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}{}: {key}: {why}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    BadValue {
        path: String,
        /// `None` for an option the file does not set (its default is at fault).
        line: Option<usize>,
        key: String,
        why: String,
    },
    #[error("{path}:{line}: line is not key=value: {text:?}")]
    Syntax {
        path: String,
        line: usize,
        text: String,
    },
    /// A filter's list, rule or database file.
    #[error(transparent)]
    List(#[from] crate::filter::ListError),
}

/// How far an option is supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    Supported,
    /// Accepted for compatibility and has no effect by design.
    Ignored,
    /// A feature of the original that this build does not have yet.
    NotYet,
}

/// Every option name this program knows, with its support.
/// Options of the original keep their names; new ones are marked (new).
pub const KNOWN_OPTIONS: &[(&str, Support)] = &[
    ("port", Support::Supported),
    ("listenaddr", Support::Supported),
    // (new) on: connections arrive by TPROXY instead of REDIRECT
    ("tproxy", Support::Supported),
    ("http_port", Support::Supported),
    // (new) client networks the http_port listener serves
    ("http_clients", Support::Supported),
    // (new) the ICAP service for Squid (docs/icap.md): port (on = 1344, off by
    // default), listen address, client networks, largest body read
    ("icap_port", Support::Supported),
    ("icap_listen", Support::Supported),
    ("icap_clients", Support::Supported),
    ("icap_max_body", Support::Supported),
    // (new) chat APIs described in a file for the ICAP service (examples/webchat-rules.txt)
    ("webchat_rules_filename", Support::Supported),
    ("interface", Support::Supported),
    ("plugin_dir", Support::Ignored),
    ("user", Support::Supported),
    ("group", Support::Supported),
    ("pidfilename", Support::Supported),
    // (new) the root directory the daemon changes to once it has read this file
    ("chroot_dir", Support::Supported),
    ("log_typing_events", Support::Supported),
    ("hide_eventdata", Support::Supported),
    ("msn_protocol", Support::Supported),
    ("icq_protocol", Support::Supported),
    ("yahoo_protocol", Support::Supported),
    ("irc_protocol", Support::Supported),
    ("gg_protocol", Support::Supported),
    ("jabber_protocol", Support::Supported),
    ("https_protocol", Support::Supported),
    // (new) ports per protocol, e.g. irc_ports=6667,6697
    ("msn_ports", Support::Supported),
    ("icq_ports", Support::Supported),
    ("yahoo_ports", Support::Supported),
    ("irc_ports", Support::Supported),
    ("gg_ports", Support::Supported),
    ("jabber_ports", Support::Supported),
    // (new) ports where the connection starts with TLS (IRC over TLS, XMPP XEP-0368)
    ("irc_tls_ports", Support::Supported),
    ("jabber_tls_ports", Support::Supported),
    // (new) seconds to wait for the upstream connection
    ("connect_timeout", Support::Supported),
    // (new) most connections relayed at once (default: what the open-files limit allows)
    ("max_connections", Support::Supported),
    // (new) seconds without a byte after which a connection of a protocol with keep-alives is closed
    ("idle_timeout", Support::Supported),
    // (new) milliseconds a core may hold the start of a PDU before it is forwarded
    ("hold_timeout_ms", Support::Supported),
    // (new) bytes all connections' partial messages may hold at once
    ("max_buffered_bytes", Support::Supported),
    // (new) relay or close a connection once a PDU is too large to inspect
    ("uninspectable", Support::Supported),
    // (new) conversations one client address may start a minute
    ("max_new_conversations", Support::Supported),
    // (new) SO_MARK on upstream connections, so firewall rules can skip them
    ("upstream_mark", Support::Supported),
    ("file_logging_dir", Support::Supported),
    // (new) days events are kept in the file logs, SQL tables and journals
    ("retention_days", Support::Supported),
    ("cats_logging_filename", Support::Supported),
    ("mysql_server", Support::Supported),
    ("mysql_database", Support::Supported),
    ("mysql_username", Support::Supported),
    ("mysql_password", Support::Supported),
    // (new) MySQL port, or a unix socket instead of server and port
    ("mysql_port", Support::Supported),
    ("mysql_socket", Support::Supported),
    ("pgsql_connect", Support::Supported),
    ("sqlite_file", Support::Supported),
    // (new) where database sinks journal their events
    ("spool_dir", Support::Supported),
    // (new) when journal appends are fsync'ed: group, always, off
    ("spool_sync", Support::Supported),
    // (new) group that owns the logs, journals and databases imspector creates
    ("log_group", Support::Supported),
    // (new) relay or block chat while no sink can store events
    ("log_failure", Support::Supported),
    // (new) one line per event to syslog
    ("syslog_logging", Support::Supported),
    ("syslog_facility", Support::Supported),
    ("syslog_server", Support::Supported),
    // (new) longest syslog line over UDP or /dev/log; longer ones are cut
    ("syslog_max_size", Support::Supported),
    ("badwords_filename", Support::Supported),
    ("badwords_replace_character", Support::Supported),
    ("badwords_block_count", Support::Supported),
    ("whitelist_filename", Support::Supported),
    ("blacklist_filename", Support::Supported),
    ("block_unlisted", Support::Supported),
    ("acl_filename", Support::Supported),
    ("db_filter_filename", Support::Supported),
    ("block_files", Support::Supported),
    ("block_webcams", Support::Supported),
    // (new) block end-to-end encrypted messages
    ("block_encrypted", Support::Supported),
    // (new) `pattern => replacement` rules applied to messages
    ("regex_filename", Support::Supported),
    ("responder_filename", Support::Supported),
    ("notice_days", Support::Supported),
    ("notice_response", Support::Supported),
    ("filtered_mins", Support::Supported),
    ("filtered_response", Support::Supported),
    ("response_prefix", Support::Supported),
    ("response_postfix", Support::Supported),
    ("ssl", Support::Supported),
    ("ssl_key", Support::Supported),
    ("ssl_cert", Support::Supported),
    ("ssl_ca_cert", Support::Supported),
    ("ssl_ca_key", Support::Supported),
    ("ssl_cert_dir", Support::Supported),
    ("ssl_verify_dir", Support::Supported),
    ("ssl_verify", Support::Supported),
    // (new) keyword alerts: rules, where alerts go, minutes between two per conversation
    ("alert_filename", Support::Supported),
    ("alert_webhook", Support::Supported),
    ("alert_command", Support::Supported),
    ("alert_mins", Support::Supported),
    // (new) address of the Prometheus /metrics endpoint (off when unset)
    ("metrics_listen", Support::Supported),
    // (new) the log viewer, imspector-web (docs/web.md); the daemon ignores them
    ("web_listen", Support::Ignored),
    ("web_cert", Support::Ignored),
    ("web_key", Support::Ignored),
    ("web_users_filename", Support::Ignored),
    ("web_audit_filename", Support::Ignored),
    ("web_source", Support::Ignored),
    ("icq_ssl", Support::NotYet),
];

pub fn support_of(key: &str) -> Option<Support> {
    KNOWN_OPTIONS
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, s)| *s)
}

#[derive(Debug, Clone)]
struct Setting {
    value: String,
    line: usize,
}

/// The raw options of one configuration file, with their line numbers.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Shown in messages; `<embedded default>` when there is no file.
    pub source: String,
    values: HashMap<String, Setting>,
    /// Warnings found while reading (unknown keys, repeated keys).
    pub warnings: Vec<String>,
}

impl Settings {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    pub fn parse(source: &str, text: &str) -> Result<Self, ConfigError> {
        let mut settings = Settings {
            source: source.to_string(),
            ..Default::default()
        };
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let Some((key, value)) = trimmed.split_once('=') else {
                return Err(ConfigError::Syntax {
                    path: source.to_string(),
                    line,
                    text: trimmed.to_string(),
                });
            };
            let key = key.trim().to_string();
            let value = value.trim().to_string();
            if support_of(&key).is_none() {
                settings
                    .warnings
                    .push(format!("{source}:{line}: unknown option {key:?} ignored"));
                continue;
            }
            if let Some(previous) = settings.values.get(&key) {
                settings.warnings.push(format!(
                    "{source}:{line}: {key} set again (first on line {}); the last value wins",
                    previous.line
                ));
            }
            settings.values.insert(key, Setting { value, line });
        }
        Ok(settings)
    }

    /// The embedded default: no file.
    pub fn embedded() -> Self {
        Settings {
            source: "<embedded default>".to_string(),
            ..Default::default()
        }
    }

    /// True for the embedded default (no configuration file).
    pub fn is_embedded(&self) -> bool {
        self.values.is_empty() && self.source.starts_with('<')
    }

    /// Options that are set but that this build cannot honour yet.
    pub fn unsupported(&self) -> Vec<String> {
        let mut found: Vec<_> = self
            .values
            .iter()
            .filter(|(key, _)| support_of(key) == Some(Support::NotYet))
            .map(|(key, s)| {
                format!(
                    "{}:{}: option {key} is not implemented yet and has NO EFFECT",
                    self.source, s.line
                )
            })
            .collect();
        found.sort();
        found
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|s| s.value.as_str())
    }

    /// The line `key` is set on.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.values.get(key).map(|s| s.line)
    }

    /// An error about `key` that names file and line.
    pub fn bad(&self, key: &str, why: impl fmt::Display) -> ConfigError {
        ConfigError::BadValue {
            path: self.source.clone(),
            line: self.line_of(key),
            key: key.to_string(),
            why: why.to_string(),
        }
    }

    /// Parse a value with `FromStr`, or `None` when unset.
    pub fn parsed<T>(&self, key: &str) -> Result<Option<T>, ConfigError>
    where
        T: std::str::FromStr,
        T::Err: fmt::Display,
    {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|e| self.bad(key, format!("{v:?}: {e}"))),
        }
    }

    /// `on`/`off` (also yes/no, true/false, 1/0), or `None` when unset.
    pub fn flag(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "on" | "yes" | "true" | "1" => Ok(Some(true)),
                "off" | "no" | "false" | "0" => Ok(Some(false)),
                _ => Err(self.bad(key, format!("{v:?} is not on or off"))),
            },
        }
    }

    pub fn path(&self, key: &str) -> Option<PathBuf> {
        self.get(key).filter(|v| !v.is_empty()).map(PathBuf::from)
    }
}

/// `uninspectable`: after a PDU too large to inspect, the rest of the
/// connection is relayed unlogged (`relay`, the default) or it is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uninspectable {
    Relay,
    Close,
}

/// The core's options.
#[derive(Debug, Clone)]
pub struct Config {
    pub settings: Settings,
    pub port: u16,
    pub listen_addr: Option<IpAddr>,
    pub interception: Interception,
    /// The CONNECT listener's port, if any.
    pub http_port: Option<u16>,
    /// Who may use the CONNECT listener.
    pub http_clients: Vec<Cidr>,
    pub interface: Option<String>,
    pub upstream_mark: Option<u32>,
    pub connect_timeout: Duration,
    /// How long bytes may wait in a core for the rest of their PDU.
    pub hold_timeout: Duration,
    /// Most connections at once; `None`: from the open-files limit at start.
    pub max_connections: Option<usize>,
    /// Silence after which a connection of a protocol with keep-alives is
    /// closed; `None` for never.
    pub idle_timeout: Option<Duration>,
    /// What becomes of a connection once a PDU is too large to inspect.
    pub uninspectable: Uninspectable,
    /// The bytes all cores may hold at once in partial PDUs.
    pub max_buffered_bytes: usize,
    /// Conversations one client address may start a minute; 0: no limit.
    pub max_new_conversations: usize,
    pub user: Option<String>,
    pub group: Option<String>,
    pub pid_file: PathBuf,
    pub log_typing_events: bool,
    pub hide_eventdata: bool,
    /// `log_failure=block`: while no sink can store events, chat is not
    /// delivered, and an event is journaled before its bytes go out.
    pub block_unlogged: bool,
    /// Which destination ports select which protocol.
    pub routes: Routes,
    pub file_logging_dir: Option<PathBuf>,
}

/// The enabled protocols and their ports: what SIGHUP may change for the
/// connections that come after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    /// Enabled protocols and the destination ports that select them.
    pub protocols: BTreeMap<ProtocolKind, Vec<u16>>,
    /// Ports of enabled protocols where the connection starts with TLS.
    pub tls_ports: BTreeMap<ProtocolKind, Vec<u16>>,
    /// `https_protocol`: the CONNECT listener also tunnels port 443, untouched.
    pub https: bool,
}

impl Config {
    pub fn from_settings(settings: Settings) -> Result<Self, ConfigError> {
        let embedded = settings.is_embedded();
        let mut protocols = BTreeMap::new();
        let mut tls_ports = BTreeMap::new();
        for kind in ProtocolKind::ALL {
            let prefix = kind.config_prefix();
            let enabled = settings
                .flag(&format!("{prefix}_protocol"))?
                .unwrap_or(embedded);
            if !enabled {
                continue;
            }
            let ports_key = format!("{prefix}_ports");
            let ports = match settings.get(&ports_key) {
                None => kind.default_ports().to_vec(),
                Some(list) => parse_ports(list).map_err(|why| settings.bad(&ports_key, why))?,
            };
            protocols.insert(kind, ports);
            if let Some(default) = default_tls_ports(kind) {
                let key = format!("{prefix}_tls_ports");
                let ports = match settings.get(&key) {
                    None => default.to_vec(),
                    Some(list) => parse_ports(list).map_err(|why| settings.bad(&key, why))?,
                };
                tls_ports.insert(kind, ports);
            }
        }
        let config = Config {
            port: settings.parsed("port")?.unwrap_or(16667),
            listen_addr: settings.parsed("listenaddr")?,
            interception: if settings.flag("tproxy")?.unwrap_or(false) {
                Interception::Tproxy
            } else {
                Interception::Redirect
            },
            http_port: settings.parsed("http_port")?.filter(|p| *p != 0),
            http_clients: cidr::parse_list(
                settings.get("http_clients").unwrap_or(DEFAULT_HTTP_CLIENTS),
            )
            .map_err(|why| settings.bad("http_clients", why))?,
            interface: settings.get("interface").map(str::to_string),
            upstream_mark: match settings.get("upstream_mark") {
                None => None,
                Some(v) => Some(parse_mark(v).map_err(|why| settings.bad("upstream_mark", why))?),
            },
            connect_timeout: Duration::from_secs(settings.parsed("connect_timeout")?.unwrap_or(10)),
            hold_timeout: Duration::from_millis(match settings.parsed("hold_timeout_ms")? {
                Some(0) => return Err(settings.bad("hold_timeout_ms", "must be at least 1")),
                other => other.unwrap_or(1000),
            }),
            max_connections: match settings.parsed("max_connections")? {
                Some(0) => return Err(settings.bad("max_connections", "must be at least 1")),
                other => other,
            },
            idle_timeout: match settings
                .parsed::<u64>("idle_timeout")?
                .unwrap_or(DEFAULT_IDLE_TIMEOUT)
            {
                0 => None,
                secs => Some(Duration::from_secs(secs)),
            },
            max_buffered_bytes: match settings.parsed("max_buffered_bytes")? {
                Some(0) => return Err(settings.bad("max_buffered_bytes", "must be at least 1")),
                other => other.unwrap_or(crate::budget::DEFAULT_MAX_BUFFERED),
            },
            max_new_conversations: settings
                .parsed("max_new_conversations")?
                .unwrap_or(crate::new_conversations::DEFAULT_MAX_NEW_CONVERSATIONS),
            uninspectable: match settings.get("uninspectable") {
                None | Some("relay") => Uninspectable::Relay,
                Some("close") => Uninspectable::Close,
                Some(other) => {
                    return Err(
                        settings.bad("uninspectable", format!("{other:?} is not relay or close"))
                    )
                }
            },
            user: settings.get("user").map(str::to_string),
            group: settings.get("group").map(str::to_string),
            pid_file: settings
                .path("pidfilename")
                .unwrap_or_else(|| PathBuf::from("/var/run/imspector.pid")),
            log_typing_events: settings.flag("log_typing_events")?.unwrap_or(false),
            hide_eventdata: settings.flag("hide_eventdata")?.unwrap_or(false),
            block_unlogged: match settings.get("log_failure") {
                None | Some("relay") => false,
                Some("block") => true,
                Some(v) => {
                    return Err(settings.bad("log_failure", format!("{v:?} is not relay or block")))
                }
            },
            file_logging_dir: if embedded {
                Some(PathBuf::from(EMBEDDED_LOG_DIR))
            } else {
                settings.path("file_logging_dir")
            },
            routes: Routes {
                protocols,
                tls_ports,
                https: settings.flag("https_protocol")?.unwrap_or(false),
            },
            settings,
        };
        config.routes.check_port_clashes(&config.settings)?;
        Ok(config)
    }
}

impl Routes {
    fn check_port_clashes(&self, settings: &Settings) -> Result<(), ConfigError> {
        let mut seen: HashMap<u16, ProtocolKind> = HashMap::new();
        let lists = self.protocols.iter().map(|(k, p)| (k, p, "ports"));
        let tls = self.tls_ports.iter().map(|(k, p)| (k, p, "tls_ports"));
        for (kind, ports, option) in lists.chain(tls) {
            for port in ports {
                if let Some(other) = seen.insert(*port, *kind).filter(|other| other != kind) {
                    let key = format!("{}_{option}", kind.config_prefix());
                    return Err(settings.bad(
                        &key,
                        format!("port {port} is already used by {}", other.log_name()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The protocol an original destination port selects.
    pub fn protocol_for_port(&self, port: u16) -> Option<ProtocolKind> {
        self.protocols
            .iter()
            .chain(&self.tls_ports)
            .find(|(_, ports)| ports.contains(&port))
            .map(|(kind, _)| *kind)
    }

    /// True when connections to `port` start with TLS.
    pub fn is_tls_port(&self, port: u16) -> bool {
        self.tls_ports.values().any(|ports| ports.contains(&port))
    }
}

/// The protocols with a port of their own for TLS from the first byte, and
/// that port's usual numbers: IRC over TLS, XMPP's direct TLS (XEP-0368).
fn default_tls_ports(kind: ProtocolKind) -> Option<&'static [u16]> {
    match kind {
        ProtocolKind::Irc => Some(&[6697]),
        ProtocolKind::Jabber => Some(&[5223]),
        _ => None,
    }
}

/// A firewall mark, decimal or `0x` hex, as `imspector-rules --mark` takes it.
/// 0 is refused: a rule matching mark 0 matches every unmarked packet.
pub fn parse_mark(text: &str) -> Result<u32, String> {
    let value = match text.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse(),
    };
    match value {
        Ok(0) => Err("0 matches every unmarked packet; use a mark from 1".to_string()),
        Ok(mark) => Ok(mark),
        Err(_) => Err(format!("{text:?} is not a number (decimal or 0x hex)")),
    }
}

fn parse_ports(list: &str) -> Result<Vec<u16>, String> {
    let ports: Result<Vec<u16>, String> = list
        .split([',', ' '])
        .filter(|p| !p.is_empty())
        .map(|p| match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("{p:?} is not a port number")),
            Ok(n) => Ok(n),
        })
        .collect();
    match ports {
        Ok(p) if p.is_empty() => Err("empty port list".to_string()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<Config, ConfigError> {
        Config::from_settings(Settings::parse("test.conf", text)?)
    }

    #[test]
    fn marks_are_decimal_or_hex_and_never_zero() {
        assert_eq!(parse_mark("16667"), Ok(16667));
        assert_eq!(parse_mark("0x10"), Ok(16));
        assert!(parse_mark("0").is_err());
        assert!(parse_mark("x").is_err());
        assert_eq!(
            config("upstream_mark=0x411b\n").unwrap().upstream_mark,
            Some(0x411b)
        );
        let err = config("\nupstream_mark=0\n").unwrap_err().to_string();
        assert_eq!(
            err,
            "test.conf:2: upstream_mark: 0 matches every unmarked packet; use a mark from 1"
        );
    }

    #[test]
    fn original_syntax_and_defaults() {
        let c = config("# comment\nport=16668\nirc_protocol=on\nmsn_protocol = off\n").unwrap();
        assert_eq!(c.port, 16668);
        assert_eq!(c.routes.protocols.len(), 1);
        assert_eq!(c.routes.protocol_for_port(6667), Some(ProtocolKind::Irc));
        assert_eq!(c.routes.protocol_for_port(1863), None);
        assert_eq!(c.file_logging_dir, None);
    }

    #[test]
    fn ports_per_protocol() {
        let c = config("irc_protocol=on\nirc_ports=6667,6697, 7000\n").unwrap();
        assert_eq!(
            c.routes.protocols[&ProtocolKind::Irc],
            vec![6667, 6697, 7000]
        );
        let e = config("irc_protocol=on\nirc_ports=6667,x\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "test.conf:2: irc_ports: \"x\" is not a port number"
        );
    }

    #[test]
    fn bad_values_name_file_line_and_key() {
        let e = config("\nport=abc\n").unwrap_err();
        assert!(
            e.to_string().starts_with("test.conf:2: port: \"abc\""),
            "{e}"
        );
        let e = config("irc_protocol=maybe\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "test.conf:1: irc_protocol: \"maybe\" is not on or off"
        );
        let e = config("just words\n").unwrap_err();
        assert!(e
            .to_string()
            .starts_with("test.conf:1: line is not key=value"));
    }

    #[test]
    fn an_option_not_in_the_file_is_named_without_a_line() {
        let s = Settings::parse("t.conf", "port=1\n").unwrap();
        assert_eq!(
            s.bad("spool_dir", "cannot be created").to_string(),
            "t.conf: spool_dir: cannot be created"
        );
        assert_eq!(
            s.bad("port", "in use").to_string(),
            "t.conf:1: port: in use"
        );
    }

    #[test]
    fn unknown_keys_warn_and_unimplemented_ones_are_reported() {
        let s = Settings::parse("t.conf", "colour=blue\nicq_ssl=on\n").unwrap();
        assert_eq!(
            s.warnings,
            vec!["t.conf:1: unknown option \"colour\" ignored"]
        );
        assert_eq!(
            s.unsupported(),
            vec!["t.conf:2: option icq_ssl is not implemented yet and has NO EFFECT"]
        );
    }

    #[test]
    fn embedded_default_enables_everything_and_logs_to_files() {
        let c = Config::from_settings(Settings::embedded()).unwrap();
        assert_eq!(c.port, 16667);
        assert_eq!(c.routes.protocols.len(), ProtocolKind::ALL.len());
        assert_eq!(c.file_logging_dir, Some(PathBuf::from(EMBEDDED_LOG_DIR)));
    }

    #[test]
    fn clashing_ports_are_an_error() {
        let e = config("irc_protocol=on\nmsn_protocol=on\nmsn_ports=6667\n").unwrap_err();
        assert!(
            e.to_string().contains("port 6667 is already used by"),
            "{e}"
        );
    }
}
