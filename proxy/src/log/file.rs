//! The original's file log:
//! `{dir}/{protocol}/{local id}/{remote id}/{YYYY-MM-DD}` (local date), one line per
//! event: `client,timestamp,outgoing,type,filtered,categories,eventdata`
//! (the 0.9 layout; eventdata is the rest of the line, newlines written as `\n`).

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use ahash::AHashMap as HashMap;
use chrono::TimeZone;

use super::{private, Sink, SinkError};
use crate::event::LogEvent;
use imspector_protocols::words::{HIGH, ONES};

/// How many log files stay open between batches (one per active conversation).
const MAX_OPEN_FILES: usize = 1024;
/// Events kept in memory while the directory cannot be written (full disk);
/// past this the oldest are dropped, and counted.
const MAX_WAITING: usize = 200_000;

/// An open log file: where, which inode it is (to notice it was deleted or
/// moved), its length (to take back lines cut short), when it was last used.
struct Open {
    path: PathBuf,
    file: File,
    inode: (u64, u64),
    len: u64,
    used: u64,
}

pub struct FileSink {
    dir: PathBuf,
    /// Open files by [`file_key`], so that the least recently used one is
    /// closed when too many are open.
    open: HashMap<Box<str>, Open>,
    /// The key of the file looked up, reused.
    key: String,
    writes: u64,
    /// The local date of the last timestamp seen: most events share a second.
    date: (i64, String),
    /// Events not written yet because the directory could not be written, oldest first.
    waiting: Vec<LogEvent>,
    /// Events dropped because `waiting` was full, since the failure began.
    dropped: usize,
    /// The lines of one file in one batch, formatted here before one write.
    lines: String,
}

/// The events of a batch that go to one file, in order.
struct FileBatch {
    /// Index into the batch's dates.
    date: usize,
    events: Vec<usize>,
}

/// Which events of a batch are not written, in order, and why.
struct Unwritten {
    left: Vec<usize>,
    error: SinkError,
}

impl FileSink {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileSink {
            dir: dir.into(),
            open: HashMap::new(),
            key: String::new(),
            writes: 0,
            date: (i64::MIN, String::new()),
            waiting: Vec::new(),
            dropped: 0,
            lines: String::new(),
        }
    }

    /// The local date of `timestamp`, as the file name has it.
    fn date_of(&mut self, timestamp: i64) -> &str {
        if self.date.0 != timestamp {
            let date = chrono::Local
                .timestamp_opt(timestamp, 0)
                .single()
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_else(|| "1970-01-01".to_string());
            self.date = (timestamp, date);
        }
        &self.date.1
    }

    fn path_for(&self, e: &LogEvent, date: &str) -> PathBuf {
        self.dir
            .join(&*e.protocol)
            .join(safe_component(&e.local_id))
            .join(safe_component(&e.remote_id))
            .join(date)
    }

    /// The events of a batch grouped by the file they go to (conversation
    /// and date), files in the order of their first event; and the dates.
    fn by_file(&mut self, events: &[LogEvent]) -> (Vec<String>, Vec<FileBatch>) {
        let mut dates: Vec<String> = Vec::new();
        let mut last_second = None;
        let mut files: Vec<FileBatch> = Vec::new();
        let mut index: HashMap<(&str, &str, &str, usize), usize> = HashMap::new();
        for (n, e) in events.iter().enumerate() {
            let date = match last_second {
                Some((second, date)) if second == e.timestamp => date,
                _ => {
                    let name = self.date_of(e.timestamp);
                    let date = match dates.iter().position(|d| d == name) {
                        Some(at) => at,
                        None => {
                            dates.push(name.to_string());
                            dates.len() - 1
                        }
                    };
                    last_second = Some((e.timestamp, date));
                    date
                }
            };
            let key = (&*e.protocol, &*e.local_id, &*e.remote_id, date);
            let at = *index.entry(key).or_insert_with(|| {
                files.push(FileBatch {
                    date,
                    events: Vec::new(),
                });
                files.len() - 1
            });
            files[at].events.push(n);
        }
        (dates, files)
    }

    /// The open file of `e`'s conversation on `date`, opened (made) if it
    /// is not open or no longer there (its log directory deleted or rotated
    /// away).
    fn file(&mut self, e: &LogEvent, date: &str) -> std::io::Result<&mut Open> {
        self.writes += 1;
        file_key(&mut self.key, e, date);
        let moved = self.open.get(self.key.as_str()).is_some_and(|open| {
            let here = std::fs::metadata(&open.path).map(|m| (m.dev(), m.ino()));
            here.ok() != Some(open.inode)
        });
        if moved {
            self.open.remove(self.key.as_str());
        }
        if !self.open.contains_key(self.key.as_str()) {
            if self.open.len() >= MAX_OPEN_FILES {
                let oldest = self
                    .open
                    .iter()
                    .min_by_key(|(_, open)| open.used)
                    .map(|(key, _)| key.clone());
                if let Some(oldest) = oldest {
                    self.open.remove(&oldest);
                }
            }
            let path = self.path_for(e, date);
            if let Some(parent) = path.parent() {
                private::create_dir_all(parent)?;
            }
            let file = private::open_append(&path)?;
            let meta = file.metadata()?;
            let open = Open {
                path,
                file,
                inode: (meta.dev(), meta.ino()),
                len: meta.len(),
                used: 0,
            };
            self.open.insert(self.key.as_str().into(), open);
        }
        let open = self
            .open
            .get_mut(self.key.as_str())
            .expect("inserted above");
        open.used = self.writes;
        Ok(open)
    }

    /// Append the formatted lines to `e`'s file on `date` whole, or nothing of them.
    fn append_lines(&mut self, e: &LogEvent, date: &str) -> std::io::Result<()> {
        let lines = std::mem::take(&mut self.lines);
        let result = self.append(e, date, lines.as_bytes());
        self.lines = lines;
        result
    }

    fn append(&mut self, e: &LogEvent, date: &str, bytes: &[u8]) -> std::io::Result<()> {
        let open = self.file(e, date)?;
        let Err(e) = open.file.write_all(bytes) else {
            open.len += bytes.len() as u64;
            return Ok(());
        };
        // Take back a part that went in (a full disk): no torn line.
        let cut = open.file.set_len(open.len);
        self.open.remove(self.key.as_str());
        cut.and(Err(e))
    }

    /// Write `events`, each file's lines with one write (each file is
    /// checked once for having moved). On the first file that fails, that
    /// file's events and those of the files after it are left.
    fn write_events(&mut self, events: &[LogEvent]) -> Result<(), Unwritten> {
        let (dates, files) = self.by_file(events);
        for (n, batch) in files.iter().enumerate() {
            let (first, date) = (&events[batch.events[0]], &dates[batch.date]);
            self.lines.clear();
            for (k, &i) in batch.events.iter().enumerate() {
                if let Some(&ahead) = batch.events.get(k + PREFETCH_AHEAD) {
                    prefetch(events[ahead].data.as_ptr());
                }
                write_line(&mut self.lines, &events[i]);
            }
            if let Err(source) = self.append_lines(first, date) {
                let mut left: Vec<usize> = files[n..]
                    .iter()
                    .flat_map(|f| f.events.iter().copied())
                    .collect();
                left.sort_unstable();
                let error = SinkError::Io {
                    path: self.path_for(first, date).display().to_string(),
                    source,
                };
                return Err(Unwritten { left, error });
            }
        }
        Ok(())
    }

    /// Write the waiting events; keep those that could not be written.
    fn write_waiting(&mut self) -> Result<(), SinkError> {
        let mut waiting = std::mem::take(&mut self.waiting);
        let result = self.write_events(&waiting);
        if let Err(unwritten) = result {
            let mut keep = vec![false; waiting.len()];
            for i in unwritten.left {
                keep[i] = true;
            }
            let mut keep = keep.into_iter();
            waiting.retain(|_| keep.next() == Some(true));
            self.waiting = waiting;
            return Err(unwritten.error);
        }
        Ok(())
    }

    /// Drop the oldest waiting events past [`MAX_WAITING`], counted.
    fn bound_waiting(&mut self) {
        let over = self.waiting.len().saturating_sub(MAX_WAITING);
        if over > 0 {
            self.waiting.drain(..over);
            if self.dropped == 0 {
                log::error!(
                    "file sink: more than {MAX_WAITING} events wait for {}: the oldest are LOST",
                    self.dir.display()
                );
            }
            self.dropped += over;
        }
    }

    /// Say once when writing starts failing and once when it works again.
    fn report(&mut self, waited_before: usize, result: Result<(), SinkError>) {
        let failing = waited_before > 0;
        match result {
            Ok(()) if failing => log::info!(
                "file sink: {} writable again; {waited_before} waiting events written{}",
                self.dir.display(),
                match std::mem::take(&mut self.dropped) {
                    0 => String::new(),
                    n => format!(", {n} LOST (more than {MAX_WAITING} waited)"),
                }
            ),
            Err(e) if !failing => log::error!(
                "file sink: cannot write: {e}; events wait in memory (up to {MAX_WAITING}) until it can"
            ),
            _ => {}
        }
    }
}

impl Sink for FileSink {
    fn name(&self) -> &str {
        "file"
    }

    fn write(&mut self, events: &[LogEvent]) -> Result<(), SinkError> {
        let waited_before = self.waiting.len();
        let result = if waited_before == 0 {
            // The usual case: straight from the batch, nothing copied.
            self.write_events(events).map_err(|unwritten| {
                let left = unwritten.left.iter().map(|&i| events[i].clone());
                self.waiting.extend(left);
                unwritten.error
            })
        } else {
            self.waiting.extend(events.iter().cloned());
            self.write_waiting()
        };
        self.bound_waiting();
        self.report(waited_before, result);
        Ok(())
    }

    fn tick(&mut self) -> Result<(), SinkError> {
        let waited_before = self.waiting.len();
        if waited_before > 0 {
            let result = self.write_waiting();
            self.report(waited_before, result);
        }
        Ok(())
    }

    fn healthy(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// Where [`FileSink`] keeps the open file of `e`'s conversation on `date`:
/// each part after its length, so that no two files share a key.
fn file_key(key: &mut String, e: &LogEvent, date: &str) {
    key.clear();
    for part in [&*e.protocol, &*e.local_id, &*e.remote_id, date] {
        key.push_str(itoa::Buffer::new().format(part.len()));
        key.push(':');
        key.push_str(part);
    }
}

/// How many events ahead a text is fetched into the cache while a line is
/// formatted: another core wrote it, and its first read was the writer's
/// costliest step.
const PREFETCH_AHEAD: usize = 2;

/// A hint to fetch `at`'s cache line before it is read.
#[inline]
fn prefetch(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing into the program and cannot fault,
    // whatever the address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(at.cast());
    }
}

/// One log line, newline included.
pub fn format_line(e: &LogEvent) -> String {
    let mut line = String::new();
    write_line(&mut line, e);
    line
}

/// Append [`format_line`]'s line to `out` (the file sink reuses one buffer).
pub fn write_line(out: &mut String, e: &LogEvent) {
    let mut number = itoa::Buffer::new();
    out.push_str(&e.client);
    out.push(',');
    out.push_str(number.format(e.timestamp));
    out.push_str(if e.outgoing { ",1," } else { ",0," });
    out.push_str(number.format(e.kind.code()));
    out.push_str(if e.filtered { ",1," } else { ",0," });
    out.push_str(&e.categories);
    out.push(',');
    escape_into(out, &e.data);
    out.push('\n');
}

/// Text as one line a terminal or viewer shows as it is: line ends as `\n`
/// (as the original wrote them), and every other character that moves the
/// cursor, clears, recolours or reorders what a reader sees as `\xHH` (C0
/// controls but tab, DEL, C1 controls such as NEL) or `\u{XXXX}` (the line and
/// paragraph separators, bidirectional embeddings, overrides and isolates).
pub fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

/// Append [`escape_text`]'s text to `out`.
pub fn escape_into(out: &mut String, text: &str) {
    // Printable ASCII and tab, the common case, is copied as it is.
    if is_plain(text.as_bytes()) {
        out.push_str(text);
        return;
    }
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if chars.peek() == Some(&'\n') => {}
            '\r' | '\n' => out.push_str("\\n"),
            c if is_unsafe_to_show(c) && u32::from(c) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if is_unsafe_to_show(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// Whether `text` is all printable ASCII and tabs: checked eight bytes at
/// a time, each word by three tests without a branch per byte (any byte
/// below a space, any DEL, any byte with its high bit set); a word they flag
/// (a tab, or a byte that is odd) is looked at byte by byte.
fn is_plain(text: &[u8]) -> bool {
    let odd = |b: &u8| (b.wrapping_sub(b' ') >= 0x7f - b' ') & (*b != b'\t');
    let flagged = |w: u64| {
        let below_space = w.wrapping_sub(ONES * 0x20) & !w;
        let not_del = w ^ (ONES * 0x7f);
        let del = not_del.wrapping_sub(ONES) & !not_del;
        (below_space | del | w) & HIGH != 0
    };
    let mut words = text.chunks_exact(8);
    let words_plain = words.all(|word| {
        let w = u64::from_ne_bytes(word.try_into().expect("eight bytes"));
        !flagged(w) || !word.iter().any(odd)
    });
    words_plain && !words.remainder().iter().any(odd)
}

fn is_unsafe_to_show(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Longest directory name made from an id; longer ids are shortened with a hash.
const MAX_NAME: usize = 200;
/// How much of a long id's encoding its shortened name keeps.
const KEPT_OF_LONG: usize = 160;

/// An id as one directory name, so that ids that differ never share a file:
/// an ordinary id is itself (the original's layout); `/`, `\`, `%` and the
/// characters [`escape_text`] escapes are written `%XX` (the bytes of their
/// UTF-8); `.` and `..` are `%2E` and `%2E%2E`, the empty id `%`. An
/// encoding longer than 200 bytes keeps its first 160 bytes, then `%%` and
/// 32 hex digits of the SHA-256 of the id (`%%` occurs in no other name).
pub fn safe_component(id: &str) -> String {
    match id {
        "" => return "%".to_string(),
        "." => return "%2E".to_string(),
        ".." => return "%2E%2E".to_string(),
        _ => {}
    }
    let mut name = String::with_capacity(id.len());
    let mut kept = None;
    for c in id.chars() {
        if name.len() <= KEPT_OF_LONG {
            kept = Some(name.len());
        }
        if matches!(c, '/' | '\\' | '%') || is_unsafe_to_show(c) {
            for byte in c.to_string().bytes() {
                name.push_str(&format!("%{byte:02X}"));
            }
        } else {
            name.push(c);
        }
    }
    if name.len() <= MAX_NAME {
        return name;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(id.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    name.truncate(kept.unwrap_or(0));
    format!("{name}%%{hex}")
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
    fn one_odd_byte_anywhere_is_found() {
        for len in 0..100 {
            let plain = vec![b'a'; len];
            assert!(is_plain(&plain), "{len}");
            for at in 0..len {
                for odd in [b'\n', 0x7f, 0x80, 0, 0x1b, 0x1f, 0xff] {
                    let mut text = plain.clone();
                    text[at] = odd;
                    assert!(!is_plain(&text), "{len} {at} {odd}");
                }
                let mut tab = plain.clone();
                tab[at] = b'\t';
                assert!(is_plain(&tab));
            }
        }
    }

    #[test]
    fn every_byte_is_judged_as_its_own_test_says_wherever_it_stands() {
        let odd = |b: u8| !(b' '..0x7f).contains(&b) && b != b'\t';
        for b in 0..=255u8 {
            for at in 0..20 {
                let mut text = vec![b'~'; 20];
                text[at] = b;
                assert_eq!(is_plain(&text), !odd(b), "{b:#x} at {at}");
            }
        }
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(
            escape_text("a\x1b[2Jb\0c\x0bd\x0ce\u{85}f\u{2028}g\u{202e}h\ti\r\nj\rk"),
            "a\\x1b[2Jb\\x00c\\x0bd\\x0ce\\x85f\\u{2028}g\\u{202e}h\ti\\nj\\nk"
        );
        assert_eq!(escape_text("ünïcödé 😀"), "ünïcödé 😀");
    }

    #[test]
    fn ids_cannot_escape_the_directory() {
        assert_eq!(safe_component("../../etc"), "..%2F..%2Fetc");
        assert_eq!(safe_component(".."), "%2E%2E");
        assert_eq!(safe_component("."), "%2E");
        assert_eq!(safe_component(""), "%");
        assert_eq!(safe_component("a\0b/c"), "a%00b%2Fc");
    }

    #[test]
    fn ordinary_ids_are_their_own_names() {
        for id in [
            "alice",
            "bob@example.com",
            "#chan",
            "12345",
            "chat-42",
            "a_b",
            "ünï cödé",
        ] {
            assert_eq!(safe_component(id), id);
        }
    }

    #[test]
    fn ids_that_differ_never_share_a_name() {
        let long = |tail: &str| format!("{}{tail}", "x".repeat(300));
        let ids = [
            "a/b".to_string(),
            "a_b".into(),
            "a\\b".into(),
            "a%2Fb".into(),
            "a%5Cb".into(),
            "a\x1bb".into(),
            "".into(),
            "%".into(),
            ".".into(),
            "%2E".into(),
            long("1"),
            long("2"),
            format!("{}%%", "x".repeat(158)),
        ];
        let names: std::collections::HashSet<String> =
            ids.iter().map(|id| safe_component(id)).collect();
        assert_eq!(names.len(), ids.len(), "{names:?}");
        for name in &names {
            assert!(name.len() <= MAX_NAME && !name.contains('/') && name != "." && name != "..");
        }
        assert!(safe_component(&long("1")).starts_with(&"x".repeat(160)));
        // A multi-byte character is never cut in half.
        assert!(safe_component(&"é".repeat(150)).is_char_boundary(160));
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
            remote_id: format!("peer{n}").into(),
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
