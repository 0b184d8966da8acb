//! The daemon's own diagnostics: to stderr with `-d`, else to the local
//! syslog (facility daemon) through the `syslog` crate.

use std::io::Write;
use std::sync::{Mutex, PoisonError};

use log::{Level, LevelFilter, Log, Metadata, Record};
use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

type Syslog = Logger<LoggerBackend, Formatter3164>;

const DEV_LOG: &str = "/dev/log";

enum Output {
    Stderr,
    /// The connection to /dev/log, once made.
    Syslog(Mutex<Option<Syslog>>),
}

struct Diagnostics {
    output: Output,
}

impl Log for Diagnostics {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        // Dependencies' chatter stays out of an admin's syslog.
        if !record.target().starts_with("imspector") {
            return;
        }
        let text = record.args().to_string();
        match &self.output {
            Output::Stderr => {
                let _ = writeln!(std::io::stderr(), "imspector: {}: {text}", record.level());
            }
            Output::Syslog(slot) => {
                let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
                send(&mut slot, DEV_LOG, record.level(), text);
            }
        }
    }

    fn flush(&self) {}
}

/// Send one line, connecting when first needed and after a failure (syslogd
/// may start after us or restart). After the fork the connection stays and
/// the tag names the daemon's pid.
fn send(slot: &mut Option<Syslog>, socket: &str, level: Level, text: String) {
    let pid = std::process::id();
    if slot.is_none() {
        let formatter = Formatter3164 {
            facility: Facility::LOG_DAEMON,
            hostname: None,
            process: "imspector".into(),
            pid,
        };
        *slot = syslog::unix_custom(formatter, socket).ok();
    }
    let Some(logger) = slot.as_mut() else {
        return;
    };
    logger.formatter.pid = pid;
    // A NUL would end the line early on a stream socket.
    let text = text.replace('\0', " ");
    let sent = match level {
        Level::Error => logger.err(text),
        Level::Warn => logger.warning(text),
        Level::Info => logger.info(text),
        Level::Debug | Level::Trace => logger.debug(text),
    };
    if sent.is_err() {
        *slot = None;
    }
}

/// Install the logger once, at start-up.
pub fn init(debug: bool) {
    let (output, level) = if debug {
        (Output::Stderr, LevelFilter::Debug)
    } else {
        (Output::Syslog(Mutex::new(None)), LevelFilter::Info)
    };
    if log::set_boxed_logger(Box::new(Diagnostics { output })).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn a_line_per_record_and_a_new_connection_after_syslogd_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let socket = path.to_str().unwrap();
        let mut slot = None;
        // No syslogd yet: the line is lost, nothing fails.
        send(&mut slot, socket, Level::Info, "early".into());
        assert!(slot.is_none());
        let receive = |syslogd: &UnixDatagram| {
            let mut buf = [0u8; 512];
            let n = syslogd.recv(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        let syslogd = UnixDatagram::bind(&path).unwrap();
        send(&mut slot, socket, Level::Warn, "cannot raise\0it".into());
        let line = receive(&syslogd);
        let pid = std::process::id();
        // <daemon.warning>, the time, then the tag without a host (local socket).
        assert!(line.starts_with("<28>"), "{line}");
        assert!(
            line.ends_with(&format!(" imspector[{pid}]: cannot raise it")),
            "{line}"
        );
        // syslogd restarts: the first send fails and drops the connection,
        // the next one reaches the new socket.
        drop(syslogd);
        std::fs::remove_file(&path).unwrap();
        let syslogd = UnixDatagram::bind(&path).unwrap();
        send(&mut slot, socket, Level::Error, "lost".into());
        send(&mut slot, socket, Level::Error, "after the restart".into());
        let line = receive(&syslogd);
        assert!(
            line.starts_with("<27>") && line.ends_with("]: after the restart"),
            "{line}"
        );
    }
}
