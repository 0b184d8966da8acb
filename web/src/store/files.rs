//! The daemon's file logs: `{dir}/{protocol}/{local id}/{remote id}/{YYYY-MM-DD}`,
//! one `client,timestamp,outgoing,type,filtered,categories,eventdata` line per event.
//!
//! A name from a URL is never joined to a directory as it is: it must be one
//! plain path component and the name of an entry that the directory listing
//! shows, of the expected kind (a directory for ids, a file for days), so no
//! `..`, separator or symbolic link leads anywhere else.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{
    day_of, is_day, Bounds, Conversation, Cursor, Day, Hit, Hits, Line, Query, Result, Store,
    StoreError, MAX_DAY_LINES,
};

/// The longest log file a page reads whole; later bytes are not shown.
const MAX_FILE: u64 = 64 * 1024 * 1024;

pub struct FileStore {
    dir: PathBuf,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Dir,
    File,
}

impl FileStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileStore { dir: dir.into() }
    }

    fn conversation_dir(&self, c: &Conversation) -> Result<PathBuf> {
        let p = child(&self.dir, &c.protocol, Kind::Dir)?;
        let l = child(&p, &c.local, Kind::Dir)?;
        child(&l, &c.remote, Kind::Dir)
    }

    /// The file of one day; `None` when that day has no file yet.
    fn day_file(&self, c: &Conversation, day: &str) -> Result<Option<PathBuf>> {
        let dir = self.conversation_dir(c)?;
        match child(&dir, day, Kind::File) {
            Ok(path) => Ok(Some(path)),
            Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The entries of `dir` of one kind, sorted.
fn entries(dir: &Path, kind: Kind) -> Result<Vec<String>> {
    let read = match fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(failed(dir, e)),
    };
    let mut names = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| failed(dir, e))?;
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        let wanted = match kind {
            Kind::Dir => file_type.is_dir(),
            Kind::File => file_type.is_file(),
        };
        // The daemon writes UTF-8 names only; anything else is not ours.
        if let (true, Ok(name)) = (wanted, entry.file_name().into_string()) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// `dir/name`, when `name` is an entry of `dir` of that kind.
fn child(dir: &Path, name: &str, kind: Kind) -> Result<PathBuf> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
        && (kind == Kind::Dir || is_day(name));
    if plain && entries(dir, kind)?.iter().any(|n| n == name) {
        Ok(dir.join(name))
    } else {
        Err(StoreError::NotFound)
    }
}

fn failed(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Failed(format!("{}: {e}", path.display()))
}

/// One line of a file log; `None` for a line that is not one.
pub fn parse_line(text: &str) -> Option<Line> {
    let mut f = text.splitn(7, ',');
    let client = f.next()?.to_string();
    let timestamp = f.next()?.parse().ok()?;
    let outgoing = f.next()? == "1";
    let kind = f.next()?.parse().ok()?;
    let filtered = f.next()? == "1";
    let categories = f.next()?.to_string();
    let data = f.next()?.to_string();
    Some(Line {
        timestamp,
        client,
        outgoing,
        kind,
        filtered,
        categories,
        data,
    })
}

/// The complete lines of `path` from byte `from` (at most MAX_FILE bytes),
/// where they end, and whether the file goes on past that.
fn read_from(path: &Path, from: u64) -> Result<(Vec<Line>, u64, bool)> {
    let mut file = File::open(path).map_err(|e| failed(path, e))?;
    let len = file.metadata().map_err(|e| failed(path, e))?.len();
    // A file that shrank was replaced: read the new one from its start.
    let from = if from > len { 0 } else { from };
    file.seek(SeekFrom::Start(from))
        .map_err(|e| failed(path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE)
        .read_to_end(&mut bytes)
        .map_err(|e| failed(path, e))?;
    // A line the daemon is still writing is read next time.
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let text = String::from_utf8_lossy(&bytes[..complete]);
    let lines = text.lines().filter_map(parse_line).collect();
    // A line still being written is not a cut; bytes past MAX_FILE are.
    let cut = from + (bytes.len() as u64) < len;
    Ok((lines, from + complete as u64, cut))
}

/// The id a directory name stands for, as docs/logging.md says to read it
/// back: `%` alone is the empty id, each `%XX` a byte; a shortened name (with
/// `%%` and a hash) cannot be read back and stands for itself.
pub fn id_of_name(name: &str) -> String {
    if name == "%" {
        return String::new();
    }
    if name.contains("%%") || !name.contains('%') {
        return name.to_string();
    }
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(name).collect();
    String::from_utf8(bytes).unwrap_or_else(|_| name.to_string())
}

fn today() -> String {
    day_of(chrono::Utc::now().timestamp())
}

fn cursor(day: &str, offset: u64) -> Cursor {
    Cursor(format!("{day}:{offset}"))
}

impl Store for FileStore {
    fn id_of(&self, name: &str) -> String {
        id_of_name(name)
    }

    fn protocols(&self) -> Result<Vec<String>> {
        entries(&self.dir, Kind::Dir)
    }

    fn local_ids(&self, protocol: &str) -> Result<Vec<String>> {
        entries(&child(&self.dir, protocol, Kind::Dir)?, Kind::Dir)
    }

    fn remote_ids(&self, protocol: &str, local: &str) -> Result<Vec<String>> {
        let p = child(&self.dir, protocol, Kind::Dir)?;
        entries(&child(&p, local, Kind::Dir)?, Kind::Dir)
    }

    fn days(&self, c: &Conversation) -> Result<Vec<String>> {
        let mut days = entries(&self.conversation_dir(c)?, Kind::File)?;
        days.retain(|d| is_day(d));
        Ok(days)
    }

    fn lines(&self, c: &Conversation, day: &str) -> Result<Day> {
        let path = self.day_file(c, day)?.ok_or(StoreError::NotFound)?;
        let (mut lines, _, mut cut) = read_from(&path, 0)?;
        if lines.len() > MAX_DAY_LINES {
            lines.truncate(MAX_DAY_LINES);
            cut = true;
        }
        Ok(Day { lines, cut })
    }

    fn end(&self, c: &Conversation) -> Result<Cursor> {
        let day = today();
        let len = match self.day_file(c, &day)? {
            Some(path) => fs::metadata(&path).map_err(|e| failed(&path, e))?.len(),
            None => 0,
        };
        Ok(cursor(&day, len))
    }

    fn after(&self, c: &Conversation, at: &Cursor) -> Result<(Vec<Line>, Cursor)> {
        let (day, offset) =
            at.0.split_once(':')
                .and_then(|(d, o)| Some((d.to_string(), o.parse::<u64>().ok()?)))
                .filter(|(d, _)| is_day(d))
                .ok_or(StoreError::NotFound)?;
        let (mut lines, mut end) = match self.day_file(c, &day)? {
            Some(path) => {
                let (lines, end, _) = read_from(&path, offset)?;
                (lines, end)
            }
            None => (Vec::new(), offset),
        };
        let mut day = day;
        // After midnight the daemon writes a new file.
        let now = today();
        if now > day {
            if let Some(path) = self.day_file(c, &now)? {
                let (more, new_end, _) = read_from(&path, 0)?;
                lines.extend(more);
                end = new_end;
            } else {
                end = 0;
            }
            day = now;
        }
        Ok((lines, cursor(&day, end)))
    }

    fn search(&self, q: &Query, allowed: &dyn Fn(&str) -> bool, bounds: Bounds) -> Result<Hits> {
        let deadline = bounds.deadline();
        let mut found = Hits::default();
        for protocol in self.protocols()? {
            for local in self.local_ids(&protocol)? {
                if !allowed(&id_of_name(&local)) {
                    continue;
                }
                for remote in self.remote_ids(&protocol, &local)? {
                    let c = Conversation {
                        protocol: protocol.clone(),
                        local: local.clone(),
                        remote,
                    };
                    let ids = Conversation {
                        protocol: protocol.clone(),
                        local: id_of_name(&c.local),
                        remote: id_of_name(&c.remote),
                    };
                    if !q.matches_ids(&ids) {
                        continue;
                    }
                    for day in self.days(&c)? {
                        if !q.matches_day(&day) {
                            continue;
                        }
                        // Checked before each file: a file is read whole,
                        // at most MAX_FILE bytes.
                        if Instant::now() >= deadline {
                            found.incomplete = Some(format!(
                                "the search stopped after {} s; narrow it down to see everything",
                                bounds.max_time.as_secs()
                            ));
                            return Ok(found);
                        }
                        for line in self.lines(&c, &day)?.lines {
                            if !q.matches_line(&line) {
                                continue;
                            }
                            if found.hits.len() == bounds.max_hits {
                                found.incomplete = Some(format!(
                                    "only the first {} hits are shown",
                                    bounds.max_hits
                                ));
                                return Ok(found);
                            }
                            found.hits.push(Hit {
                                conversation: c.clone(),
                                day: day.clone(),
                                line,
                            });
                        }
                    }
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, FileStore) {
        let dir = tempfile::tempdir().unwrap();
        let conv = dir.path().join("IRC/alice/#chan");
        fs::create_dir_all(&conv).unwrap();
        fs::write(
            conv.join("2026-01-02"),
            "10.0.0.1:4000,1767312000,1,1,0,,hello, world\n10.0.0.1:4000,1767312001,0,1,1,1 badwords;,***\npartial",
        )
        .unwrap();
        fs::write(dir.path().join("IRC/secret"), "not a directory").unwrap();
        let store = FileStore::new(dir.path());
        (dir, store)
    }

    fn chan() -> Conversation {
        Conversation {
            protocol: "IRC".into(),
            local: "alice".into(),
            remote: "#chan".into(),
        }
    }

    #[test]
    fn reads_the_tree_and_complete_lines() {
        let (_dir, s) = store();
        assert_eq!(s.protocols().unwrap(), ["IRC"]);
        assert_eq!(s.local_ids("IRC").unwrap(), ["alice"]);
        assert_eq!(s.days(&chan()).unwrap(), ["2026-01-02"]);
        let Day { lines, cut } = s.lines(&chan(), "2026-01-02").unwrap();
        assert!(!cut);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].data, "hello, world");
        assert!(lines[1].filtered && !lines[1].outgoing);
        assert_eq!(lines[1].categories, "1 badwords;");
    }

    #[test]
    fn names_are_read_back_as_the_daemon_wrote_them() {
        use imspector::log::file::safe_component;
        for id in [
            "alice",
            "a/b",
            "../../etc",
            "",
            ".",
            "..",
            "50%",
            "a\0b\x1b",
            "<b>x</b>",
        ] {
            assert_eq!(id_of_name(&safe_component(id)), id, "{id:?}");
        }
        let long = "x/".repeat(150);
        let name = safe_component(&long);
        assert_eq!(
            id_of_name(&name),
            name,
            "a shortened name stands for itself"
        );
    }

    #[test]
    fn names_outside_the_listing_are_not_found() {
        let (_dir, s) = store();
        for bad in ["..", ".", "", "../IRC", "alice/#chan", "secret", "alice\0"] {
            assert!(
                matches!(s.remote_ids("IRC", bad), Err(StoreError::NotFound)),
                "{bad:?}"
            );
        }
        let mut c = chan();
        c.remote = "../alice".into();
        assert!(matches!(s.days(&c), Err(StoreError::NotFound)));
        assert!(matches!(
            s.lines(&chan(), "../../x"),
            Err(StoreError::NotFound)
        ));
    }

    #[test]
    fn search_stops_at_its_time_bound_and_says_so() {
        let (_dir, s) = store();
        let q = Query {
            text: "HELLO".into(),
            ..Query::default()
        };
        let bounds = |secs| Bounds {
            max_hits: 10,
            max_time: std::time::Duration::from_secs(secs),
        };
        let found = s.search(&q, &|_| true, bounds(5)).unwrap();
        assert_eq!(found.hits.len(), 1);
        assert_eq!(found.incomplete, None);
        let stopped = s.search(&q, &|_| true, bounds(0)).unwrap();
        assert!(stopped.hits.is_empty());
        assert_eq!(
            stopped.incomplete.as_deref(),
            Some("the search stopped after 0 s; narrow it down to see everything")
        );
    }

    #[test]
    fn a_day_longer_than_a_page_shows_is_cut_and_says_so() {
        let (dir, s) = store();
        let mut text = String::new();
        for i in 0..MAX_DAY_LINES + 5 {
            text.push_str(&format!("10.0.0.1:4000,1767312000,1,1,0,,line {i}\n"));
        }
        fs::write(dir.path().join("IRC/alice/#chan/2026-01-03"), text).unwrap();
        let day = s.lines(&chan(), "2026-01-03").unwrap();
        assert!(day.cut);
        assert_eq!(day.lines.len(), MAX_DAY_LINES);
        assert_eq!(
            day.lines.last().unwrap().data,
            format!("line {}", MAX_DAY_LINES - 1)
        );
    }
}
