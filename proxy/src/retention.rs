//! `retention_days`: events older than that are deleted from the file logs
//! (whole day files), the SQL tables and the journals' dead-letter files, at
//! start and then once a day, by a thread of its own so chat never waits for it.
//! Each pass logs one line with what it deleted.
//!
//! The tables are cleaned through connections of their own, in statements of
//! [`BATCH`] rows each ([`crate::log::sql::Dialect::delete_before`]), so no
//! lock is held long and the sinks' inserts go on between them. A backlog in
//! a journal (events no database has yet) is kept: it is stored nowhere else,
//! and the pass after it reaches the database deletes it there.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use chrono::{Local, NaiveDate, TimeZone};

use crate::config::{ConfigError, Settings};
use crate::log::spooled::{Backend, DEAD_LETTERS};
use crate::log::{build, private};

/// Rows deleted per statement.
pub const BATCH: usize = 1000;
/// Time between two passes.
const PASS_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
const DAY_SECS: i64 = 24 * 60 * 60;

/// What retention needs from the configuration.
pub struct Retention {
    days: u32,
    file_dir: Option<PathBuf>,
    /// The journal directory of each database sink.
    spool_dirs: Vec<PathBuf>,
    backends: Vec<Box<dyn Backend>>,
}

/// `retention_days`, checked: `None` when unset (events are kept for ever).
pub fn days(s: &Settings) -> Result<Option<u32>, ConfigError> {
    match s.parsed::<u32>("retention_days")? {
        Some(0) => Err(s.bad(
            "retention_days",
            "must be at least 1 (leave it unset to keep events for ever)",
        )),
        other => Ok(other),
    }
}

impl Retention {
    /// Keep `days` (none: `None`) of what the sinks of `sinks` store;
    /// `file_dir` is the file logs' directory as the daemon uses it (absolute).
    pub fn new(
        days: Option<u32>,
        sinks: &Settings,
        file_dir: Option<&Path>,
    ) -> Result<Option<Self>, ConfigError> {
        let Some(days) = days else {
            return Ok(None);
        };
        let backends = build::backends(sinks)?;
        let spool_dir = build::spool_dir(sinks);
        Ok(Some(Retention {
            days,
            file_dir: file_dir.map(Path::to_path_buf),
            spool_dirs: backends
                .iter()
                .map(|b| build::spool_of(&spool_dir, b.name()))
                .collect(),
            backends,
        }))
    }

    /// Delete what is older than `retention_days` before `now` (UNIX
    /// seconds); the line that says what went.
    pub fn pass(&mut self, now: i64) -> (Swept, String) {
        let before = now - i64::from(self.days) * DAY_SECS;
        let mut swept = Swept::default();
        if let Some(dir) = &self.file_dir {
            swept.files = Some(delete_day_files(dir, local_date(before)));
        }
        for backend in &mut self.backends {
            let deleted = delete_rows(backend.as_mut(), before);
            swept.tables.push((backend.name(), deleted));
        }
        for dir in &self.spool_dirs {
            match prune_dead_letters(&dir.join(DEAD_LETTERS), before) {
                Ok(n) => swept.dead_letters += n,
                Err(e) => swept.errors.push(format!("{}: {e}", dir.display())),
            }
        }
        let line = swept.describe(self.days, before);
        (swept, line)
    }

    /// Run a pass now and then every day, on a thread of its own. A new
    /// `Retention` sent on the returned channel replaces this one (and runs
    /// a pass); `None` stops retention.
    pub fn spawn(self) -> std::io::Result<mpsc::Sender<Option<Retention>>> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("imspector-retention".into())
            .spawn(move || {
                let mut current = self;
                loop {
                    let (swept, line) = current.pass(chrono::Utc::now().timestamp());
                    if swept.failed() {
                        log::warn!("{line}");
                    } else {
                        log::info!("{line}");
                    }
                    match rx.recv_timeout(PASS_INTERVAL) {
                        Ok(Some(next)) => current = next,
                        Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                    }
                }
            })?;
        Ok(tx)
    }
}

/// What one pass deleted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Day files and the events in them, when there are file logs.
    pub files: Option<(u64, u64)>,
    /// Rows per database sink, or why it failed.
    pub tables: Vec<(&'static str, Result<u64, String>)>,
    pub dead_letters: u64,
    pub errors: Vec<String>,
}

impl Swept {
    fn failed(&self) -> bool {
        !self.errors.is_empty() || self.tables.iter().any(|(_, r)| r.is_err())
    }

    fn describe(&self, days: u32, before: i64) -> String {
        let when = Local.timestamp_opt(before, 0).single().map_or_else(
            || before.to_string(),
            |t| t.format("%Y-%m-%d %H:%M").to_string(),
        );
        let mut parts = Vec::new();
        if let Some((files, events)) = self.files {
            parts.push(format!("file logs {files} day files ({events} events)"));
        }
        for (name, rows) in &self.tables {
            parts.push(match rows {
                Ok(n) => format!("{name} {n} rows"),
                Err(e) => format!("{name} FAILED: {e}"),
            });
        }
        if !self.tables.is_empty() {
            parts.push(format!("dead letters {}", self.dead_letters));
        }
        parts.extend(self.errors.iter().map(|e| format!("FAILED: {e}")));
        format!(
            "retention ({days} days): deleted events before {when}: {}",
            parts.join("; ")
        )
    }
}

/// The local date of `when`, as the file logs name their day files.
fn local_date(when: i64) -> NaiveDate {
    Local
        .timestamp_opt(when, 0)
        .single()
        .map_or(NaiveDate::MIN, |t| t.date_naive())
}

/// Delete the day files `{dir}/{protocol}/{local}/{remote}/{YYYY-MM-DD}`
/// dated before `first_kept`, and the conversation directories that leaves
/// empty. Returns the files and the events (lines) they held.
fn delete_day_files(dir: &Path, first_kept: NaiveDate) -> (u64, u64) {
    let mut deleted = (0, 0);
    for protocol in subdirs(dir) {
        for local in subdirs(&protocol) {
            for remote in subdirs(&local) {
                for day in entries(&remote) {
                    let old = day
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| NaiveDate::parse_from_str(n, "%Y-%m-%d").ok())
                        .is_some_and(|date| date < first_kept);
                    if !old || !day.is_file() {
                        continue;
                    }
                    let lines = count_lines(&day);
                    match std::fs::remove_file(&day) {
                        Ok(()) => deleted = (deleted.0 + 1, deleted.1 + lines),
                        Err(e) => log::warn!("retention: {}: {e}", day.display()),
                    }
                }
                // Fails, as meant, while the conversation has newer days.
                let _ = std::fs::remove_dir(&remote);
            }
            let _ = std::fs::remove_dir(&local);
        }
    }
    deleted
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default()
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    entries(dir).into_iter().filter(|p| p.is_dir()).collect()
}

fn count_lines(path: &Path) -> u64 {
    let Ok(mut file) = std::fs::File::open(path) else {
        return 0;
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut lines = 0;
    while let Ok(n) = file.read(&mut buf) {
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
    lines
}

/// Delete the rows before `before` in batches until none is left.
fn delete_rows(backend: &mut dyn Backend, before: i64) -> Result<u64, String> {
    // Connecting as the sinks do (tables made if missing) under a journal
    // name of its own, which has no progress row.
    let deleted = backend.connect("retention").and_then(|_| {
        let mut total = 0;
        loop {
            let n = backend.delete_before(before, BATCH)?;
            total += n;
            if n < BATCH as u64 {
                return Ok(total);
            }
        }
    });
    backend.disconnect();
    deleted.map_err(|e| e.to_string())
}

/// Drop the dead letters dated before `before`. The file is moved aside
/// first, so a letter the sink adds meanwhile goes to a new file; the kept
/// letters are appended to that one.
fn prune_dead_letters(path: &Path, before: i64) -> std::io::Result<u64> {
    let aside = path.with_extension("retention");
    // One left aside by a pass that was cut short is done first.
    if !aside.exists() {
        match std::fs::rename(path, &aside) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            other => other?,
        }
    }
    let mut kept = Vec::new();
    let mut dropped = 0;
    for line in BufReader::new(std::fs::File::open(&aside)?).split(b'\n') {
        let line = line?;
        match crate::log::spool::timestamp_of(&line) {
            Some(t) if t < before => dropped += 1,
            _ => {
                kept.extend_from_slice(&line);
                kept.push(b'\n');
            }
        }
    }
    if !kept.is_empty() {
        private::open_append(path)?.write_all(&kept)?;
    }
    std::fs::remove_file(&aside)?;
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_days_is_refused_with_its_line() {
        let s = Settings::parse("t.conf", "\nretention_days=0\n").unwrap();
        assert_eq!(
            days(&s).unwrap_err().to_string(),
            "t.conf:2: retention_days: must be at least 1 (leave it unset to keep events for ever)"
        );
        let s = Settings::parse("t.conf", "retention_days=30\n").unwrap();
        assert_eq!(days(&s).unwrap(), Some(30));
    }
}
