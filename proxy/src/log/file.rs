//! The original's file log:
//! `{dir}/{protocol}/{local id}/{remote id}/{YYYY-MM-DD}` (local date), one line per
//! event: `client,timestamp,outgoing,type,filtered,categories,eventdata`
//! (the 0.9 layout; eventdata is the rest of the line, newlines written as `\n`).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::TimeZone;

use super::{Sink, SinkError};
use crate::event::LogEvent;

/// How many log files stay open between batches (one per active conversation).
const MAX_OPEN_FILES: usize = 1024;

pub struct FileSink {
    dir: PathBuf,
    /// Open files and when each was last written (a counter), so that the
    /// least recently used one is closed when too many are open.
    open: HashMap<PathBuf, (File, u64)>,
    writes: u64,
    /// The local date of the last timestamp seen: most events share a second.
    date: (i64, String),
}

impl FileSink {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileSink {
            dir: dir.into(),
            open: HashMap::new(),
            writes: 0,
            date: (i64::MIN, String::new()),
        }
    }

    fn path_for(&mut self, e: &LogEvent) -> PathBuf {
        if self.date.0 != e.timestamp {
            let date = chrono::Local
                .timestamp_opt(e.timestamp, 0)
                .single()
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_else(|| "1970-01-01".to_string());
            self.date = (e.timestamp, date);
        }
        let date = &self.date.1;
        self.dir
            .join(&*e.protocol)
            .join(safe_component(&e.local_id))
            .join(safe_component(&e.remote_id))
            .join(date)
    }

    fn file(&mut self, path: &Path) -> Result<&mut File, SinkError> {
        self.writes += 1;
        if !self.open.contains_key(path) {
            if self.open.len() >= MAX_OPEN_FILES {
                let oldest = self
                    .open
                    .iter()
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(p, _)| p.clone());
                if let Some(oldest) = oldest {
                    self.open.remove(&oldest);
                }
            }
            let io_err = |source| SinkError::Io {
                path: path.display().to_string(),
                source,
            };
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io_err)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(io_err)?;
            self.open.insert(path.to_path_buf(), (file, 0));
        }
        let (file, used) = self.open.get_mut(path).expect("inserted above");
        *used = self.writes;
        Ok(file)
    }
}

impl Sink for FileSink {
    fn name(&self) -> &str {
        "file"
    }

    fn write(&mut self, events: &[LogEvent]) -> Result<(), SinkError> {
        for e in events {
            let path = self.path_for(e);
            let line = format_line(e);
            let result = self.file(&path)?.write_all(line.as_bytes());
            if let Err(source) = result {
                // The file may have been removed or rotated: reopen once.
                self.open.remove(&path);
                self.file(&path)?
                    .write_all(line.as_bytes())
                    .map_err(|_| SinkError::Io {
                        path: path.display().to_string(),
                        source,
                    })?;
            }
        }
        Ok(())
    }
}

/// One log line, newline included.
pub fn format_line(e: &LogEvent) -> String {
    format!(
        "{},{},{},{},{},{},{}\n",
        e.client,
        e.timestamp,
        u8::from(e.outgoing),
        e.kind.code(),
        u8::from(e.filtered),
        e.categories,
        escape_newlines(&e.data)
    )
}

fn escape_newlines(text: &str) -> String {
    text.replace("\r\n", "\\n").replace(['\n', '\r'], "\\n")
}

/// Make an id usable as one directory name: no separators, no `.`/`..`, no NUL,
/// never empty, bounded in length.
pub fn safe_component(id: &str) -> String {
    let mut s: String = id
        .chars()
        .map(|c| {
            if matches!(c, '/' | '\\' | '\0') {
                '_'
            } else {
                c
            }
        })
        .collect();
    if s.is_empty() {
        s = "unknown".to_string();
    }
    if s == "." || s == ".." {
        s = format!("_{s}");
    }
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::tests::event;

    #[test]
    fn line_format_and_newline_escaping() {
        assert_eq!(
            format_line(&event("smoothie, should be\nin the other rack")),
            "192.168.0.4:62013,1160853407,1,1,0,,smoothie, should be\\nin the other rack\n"
        );
    }

    #[test]
    fn ids_cannot_escape_the_directory() {
        assert_eq!(safe_component("../../etc"), ".._.._etc");
        assert_eq!(safe_component(".."), "_..");
        assert_eq!(safe_component(""), "unknown");
        assert_eq!(safe_component("a\0b/c"), "a_b_c");
    }

    #[test]
    fn writes_into_the_original_layout() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::new(dir.path());
        sink.write(&[event("one"), event("two")]).unwrap();
        let date = chrono::Local
            .timestamp_opt(1160853407, 0)
            .unwrap()
            .format("%Y-%m-%d")
            .to_string();
        let path = dir.path().join("IRC/alice/#chan").join(date);
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(
            text,
            "192.168.0.4:62013,1160853407,1,1,0,,one\n192.168.0.4:62013,1160853407,1,1,0,,two\n"
        );
    }

    #[test]
    fn more_conversations_than_open_files_lose_no_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::new(dir.path());
        let to = |n: usize| LogEvent {
            remote_id: format!("peer{n}"),
            ..event("hi")
        };
        let many: Vec<LogEvent> = (0..MAX_OPEN_FILES + 10).map(to).collect();
        sink.write(&many).unwrap();
        sink.write(&[to(0)]).unwrap();
        assert!(sink.open.len() <= MAX_OPEN_FILES);
        let date = sink.date.1.clone();
        let lines = |n: usize| {
            let path = dir.path().join(format!("IRC/alice/peer{n}")).join(&date);
            std::fs::read_to_string(path).unwrap().lines().count()
        };
        assert_eq!(lines(0), 2);
        assert_eq!(lines(MAX_OPEN_FILES + 9), 1);
    }
}
