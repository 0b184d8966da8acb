//! `syslog_logging=on`: one line per event for rsyslog or a SIEM, to the local
//! `/dev/log` or to `syslog_server=udp://host:port` / `tcp://host:port`.
//!
//! The line is RFC 3164 (`<PRI>Mmm dd hh:mm:ss host imspector[pid]: ...`, no
//! host for the local socket) with the event as `key=value` pairs:
//! `protocol=IRC client=10.0.0.4:5012 direction=out type=message local="alice"
//! remote="#chan" filtered=0 categories="" data="hello"`. Text values are
//! quoted; `"`, `\` and control characters in them are escaped (`\"`, `\\`,
//! `\n`, `\r`, `\t`, `\xNN`). Over TCP lines end with LF (RFC 6587).
//!
//! The line and its transport are our own, not the `syslog` crate's (which
//! carries the daemon's diagnostics, `diag.rs`): its RFC 3164 formatter (7.0)
//! stamps the time of sending in UTC with a zero-padded day (`Dec 02`), where
//! this line carries the event's own local time (`Dec  2`); and its TCP
//! backend ends no line, so two events sent to a TCP receiver arrive as one
//! line (tried with two messages). Reconnecting after a failure and counting
//! what was not sent are ours either way.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use chrono::TimeZone;

use super::{Sink, SinkError};
use crate::event::LogEvent;

const DEV_LOG: &str = "/dev/log";
const TIMEOUT: Duration = Duration::from_secs(2);
/// After a failure, events are not sent (and counted) for this long.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// `syslog_max_size` unless set: the longest line sent as one datagram
/// (rsyslog's default message size).
pub const DEFAULT_MAX_SIZE: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Local,
    Udp(String),
    Tcp(String),
}

impl Target {
    /// `udp://host:port` or `tcp://host:port` (port 514 when left out).
    pub fn parse(text: &str) -> Result<Target, String> {
        let with_port = |rest: &str| {
            if rest.is_empty() {
                Err(format!("{text:?} has no host"))
            } else if rest
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            {
                Ok(rest.to_string())
            } else {
                Ok(format!("{rest}:514"))
            }
        };
        if let Some(rest) = text.strip_prefix("udp://") {
            with_port(rest).map(Target::Udp)
        } else if let Some(rest) = text.strip_prefix("tcp://") {
            with_port(rest).map(Target::Tcp)
        } else {
            Err(format!(
                "{text:?} is not udp://host:port or tcp://host:port"
            ))
        }
    }
}

/// The facility code of a name (`local0`...).
pub fn facility(name: &str) -> Option<u8> {
    const NAMES: [&str; 24] = [
        "kern",
        "user",
        "mail",
        "daemon",
        "auth",
        "syslog",
        "lpr",
        "news",
        "uucp",
        "cron",
        "authpriv",
        "ftp",
        "ntp",
        "security",
        "console",
        "solaris-cron",
        "local0",
        "local1",
        "local2",
        "local3",
        "local4",
        "local5",
        "local6",
        "local7",
    ];
    NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name))
        .map(|i| i as u8)
}

enum Connection {
    Local(UnixDatagram),
    Udp(UdpSocket),
    Tcp(TcpStream),
}

pub struct SyslogSink {
    target: Target,
    facility: u8,
    hostname: String,
    connection: Option<Connection>,
    /// Longest datagram (UDP and /dev/log); longer lines are cut with a marker.
    max_size: usize,
    /// While the target is failing: when to try again, events not sent.
    down: Option<(Instant, usize)>,
}

impl SyslogSink {
    pub fn new(target: Target, facility: u8, max_size: usize) -> Self {
        SyslogSink {
            max_size,
            target,
            facility,
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "-".to_string()),
            connection: None,
            down: None,
        }
    }

    fn connect(&self) -> std::io::Result<Connection> {
        Ok(match &self.target {
            Target::Local => {
                let socket = UnixDatagram::unbound()?;
                socket.connect(DEV_LOG)?;
                Connection::Local(socket)
            }
            Target::Udp(addr) => {
                let to = resolve(addr)?;
                let socket = UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
                socket.connect(to)?;
                Connection::Udp(socket)
            }
            Target::Tcp(addr) => {
                let stream = TcpStream::connect_timeout(&resolve(addr)?, TIMEOUT)?;
                stream.set_write_timeout(Some(TIMEOUT))?;
                Connection::Tcp(stream)
            }
        })
    }

    fn send_all(&mut self, events: &[LogEvent]) -> std::io::Result<()> {
        if self.connection.is_none() {
            self.connection = Some(self.connect()?);
        }
        let local = self.target == Target::Local;
        let host = (!local).then_some(self.hostname.as_str());
        for e in events {
            let line = format_line(self.facility, host, e);
            let datagram = || match super::cut_to(&line, self.max_size) {
                Some(cut) => {
                    log::warn!(
                        "syslog sink: an event of {} bytes cut to {} (syslog_max_size)",
                        line.len(),
                        cut.len()
                    );
                    cut
                }
                None => line.clone(),
            };
            match self.connection.as_mut().expect("connected above") {
                Connection::Local(s) => s.send(datagram().as_bytes()).map(drop)?,
                Connection::Udp(s) => s.send(datagram().as_bytes()).map(drop)?,
                Connection::Tcp(s) => s.write_all(format!("{line}\n").as_bytes())?,
            }
        }
        Ok(())
    }

    fn describe_target(&self) -> String {
        match &self.target {
            Target::Local => DEV_LOG.to_string(),
            Target::Udp(a) => format!("udp://{a}"),
            Target::Tcp(a) => format!("tcp://{a}"),
        }
    }
}

fn resolve(addr: &str) -> std::io::Result<std::net::SocketAddr> {
    addr.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, format!("{addr}: no address"))
    })
}

impl Sink for SyslogSink {
    fn name(&self) -> &str {
        "syslog"
    }

    fn healthy(&self) -> bool {
        self.down.is_none()
    }

    fn write(&mut self, events: &[LogEvent]) -> Result<(), SinkError> {
        if let Some((retry_at, missed)) = &mut self.down {
            if Instant::now() < *retry_at {
                *missed += events.len();
                return Ok(());
            }
        }
        match self.send_all(events) {
            Ok(()) => {
                if let Some((_, missed)) = self.down.take() {
                    log::info!(
                        "syslog sink {} is back; {missed} events were not sent to it",
                        self.describe_target()
                    );
                }
                Ok(())
            }
            Err(e) => {
                self.connection = None;
                let first = self.down.is_none();
                let missed = self.down.map_or(0, |(_, m)| m);
                self.down = Some((Instant::now() + RETRY_AFTER, missed + events.len()));
                if first {
                    return Err(SinkError::Io {
                        path: self.describe_target(),
                        source: e,
                    });
                }
                Ok(())
            }
        }
    }
}

/// One syslog line, without framing.
pub fn format_line(facility: u8, hostname: Option<&str>, e: &LogEvent) -> String {
    let time = chrono::Local
        .timestamp_opt(e.timestamp, 0)
        .single()
        .map(|t| t.format("%b %e %H:%M:%S").to_string())
        .unwrap_or_else(|| "Jan  1 00:00:00".to_string());
    // Severity 6, informational.
    let pri = u16::from(facility) * 8 + 6;
    let host = hostname.map(|h| format!("{h} ")).unwrap_or_default();
    let kind = e.kind.name();
    format!(
        "<{pri}>{time} {host}imspector[{}]: protocol={} client={} direction={} type={kind} \
         local={} remote={} filtered={} categories={} data={}",
        std::process::id(),
        e.protocol,
        e.client,
        if e.outgoing { "out" } else { "in" },
        quoted(&e.local_id),
        quoted(&e.remote_id),
        u8::from(e.filtered),
        quoted(&e.categories),
        quoted(&e.data),
    )
}

fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::tests::event;

    #[test]
    fn targets_and_facilities() {
        assert_eq!(
            Target::parse("udp://127.0.0.1"),
            Ok(Target::Udp("127.0.0.1:514".into()))
        );
        assert_eq!(
            Target::parse("tcp://[::1]:1514"),
            Ok(Target::Tcp("[::1]:1514".into()))
        );
        assert!(Target::parse("127.0.0.1:514").is_err());
        assert_eq!(facility("local0"), Some(16));
        assert_eq!(facility("LOCAL7"), Some(23));
        assert_eq!(facility("local8"), None);
    }

    #[test]
    fn one_escaped_line_per_event_over_udp() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = Target::parse(&format!("udp://{}", receiver.local_addr().unwrap())).unwrap();
        let mut sink = SyslogSink::new(target, 16, DEFAULT_MAX_SIZE);
        let mut e = event("say \"hi\"\nback\\slash\u{7} 😀");
        e.categories = "1 badwords;".into();
        sink.write(&[e.clone()]).unwrap();
        let mut buf = [0u8; 2048];
        let n = receiver.recv(&mut buf).unwrap();
        let line = std::str::from_utf8(&buf[..n]).unwrap();
        let time = chrono::Local
            .timestamp_opt(e.timestamp, 0)
            .unwrap()
            .format("%b %e %H:%M:%S");
        assert_eq!(
            line,
            format!(
                "<134>{time} {} imspector[{}]: protocol=IRC client=192.168.0.4:62013 \
                 direction=out type=message local=\"alice\" remote=\"#chan\" filtered=0 \
                 categories=\"1 badwords;\" data=\"say \\\"hi\\\"\\nback\\\\slash\\x07 😀\"",
                sink.hostname,
                std::process::id()
            )
        );
    }

    #[test]
    fn an_event_longer_than_a_datagram_is_cut_with_a_marker() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = Target::parse(&format!("udp://{}", receiver.local_addr().unwrap())).unwrap();
        let mut sink = SyslogSink::new(target, 16, 1000);
        sink.write(&[event(&"é".repeat(100_000)), event("next")])
            .unwrap();
        let mut buf = vec![0u8; 65536];
        let n = receiver.recv(&mut buf).unwrap();
        let line = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(
            n <= 1000 && line.ends_with("ééé [cut by imspector]"),
            "{line}"
        );
        let n = receiver.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n])
            .unwrap()
            .ends_with("data=\"next\""));
    }
}
