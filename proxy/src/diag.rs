//! The daemon's own diagnostics: to stderr with `-d`, else to syslog (daemon facility).

use std::ffi::CString;
use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Diagnostics {
    to_syslog: bool,
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
        if self.to_syslog {
            let priority = match record.level() {
                Level::Error => libc::LOG_ERR,
                Level::Warn => libc::LOG_WARNING,
                Level::Info => libc::LOG_INFO,
                Level::Debug | Level::Trace => libc::LOG_DEBUG,
            };
            let message = CString::new(text.replace('\0', " ")).expect("NULs removed");
            // SAFETY: both pointers are valid NUL-terminated strings; "%s" makes
            // syslog treat the message as data, not as a format.
            unsafe { libc::syslog(priority, c"%s".as_ptr(), message.as_ptr()) };
        } else {
            let _ = writeln!(std::io::stderr(), "imspector: {}: {text}", record.level());
        }
    }

    fn flush(&self) {}
}

/// Install the logger once, at start-up.
pub fn init(debug: bool) {
    if !debug {
        // SAFETY: the identity is a static NUL-terminated string that outlives the process.
        unsafe { libc::openlog(c"imspector".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
    }
    let level = if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    if log::set_boxed_logger(Box::new(Diagnostics { to_syslog: !debug })).is_ok() {
        log::set_max_level(level);
    }
}
