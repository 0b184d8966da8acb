//! The on-disk journal of one sink: every event the sink is given is appended
//! here first, with a sequence number, and the sink's worker reads it back in
//! order and writes it to the database.
//!
//! Layout of a spool directory:
//! - `id`: a random name for this journal; the database remembers, under this
//!   name, the last sequence number it committed (see `spooled.rs`).
//! - `committed`: the last sequence number any database of this sink
//!   committed. A database's own progress only moves it on, so a new, emptied
//!   or replaced database gets only what no database had before.
//! - `<first seq, 20 digits>.spool`: segments, one event per line, appended
//!   only by the writer. The newest segment is never deleted so the sequence
//!   survives restarts; older ones are deleted once fully committed.
//!
//! A line is `seq TAB timestamp TAB client TAB protocol TAB outgoing TAB type TAB
//! local TAB remote TAB filtered TAB categories TAB data LF`, each text field
//! escaped (`\\`, `\t`, `\n`, `\r`). A line without its LF is a write cut short
//! by a crash: it is cut off when the spool is opened.

use std::borrow::Cow;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use imspector_protocols::EventType;

use super::{private, SinkError};
use crate::event::LogEvent;
use imspector_protocols::words::{equal_bytes, word_at, HIGH, ONES};

/// A segment is closed once it is this big; the worker then deletes it when
/// everything in it is committed.
const SEGMENT_BYTES: u64 = 1 << 20;
/// A read takes this many bytes of the journal (more for an entry longer
/// than that).
const READ_CHUNK: usize = 1 << 20;
/// No entry the cores can produce comes near this (their largest payload is
/// 1 MiB, at most doubled by escaping): a longer line is a damaged journal.
const MAX_ENTRY: u64 = 64 << 20;
/// `spool_sync=group`: the longest appended data may wait for its fsync.
pub const GROUP_COMMIT: Duration = Duration::from_millis(100);

/// `spool_sync`: when appended events are forced to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// At most [`GROUP_COMMIT`] after the append (a power cut loses at most that).
    #[default]
    Group,
    /// Before the append returns.
    Always,
    /// When the kernel likes: an imspector crash loses nothing, a power cut may.
    Off,
}

impl SyncMode {
    pub fn parse(text: &str) -> Option<SyncMode> {
        match text {
            "group" => Some(SyncMode::Group),
            "always" => Some(SyncMode::Always),
            "off" => Some(SyncMode::Off),
            _ => None,
        }
    }
}

/// An event read back from the journal, with its place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub seq: u64,
    pub event: Event<'a>,
}

/// The fields of a [`LogEvent`] as the journal has them: read back, the text
/// is where the read put the journal's bytes (a field is copied only to undo
/// its escapes), so a read allocates nothing per event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    pub timestamp: i64,
    pub client: Cow<'a, str>,
    pub protocol: Cow<'a, str>,
    pub outgoing: bool,
    pub kind: EventType,
    pub local_id: Cow<'a, str>,
    pub remote_id: Cow<'a, str>,
    pub filtered: bool,
    pub categories: Cow<'a, str>,
    pub data: Cow<'a, str>,
}

impl<'a> From<&'a LogEvent> for Event<'a> {
    fn from(e: &'a LogEvent) -> Event<'a> {
        Event {
            timestamp: e.timestamp,
            client: Cow::Borrowed(&e.client),
            protocol: Cow::Borrowed(&e.protocol),
            outgoing: e.outgoing,
            kind: e.kind,
            local_id: Cow::Borrowed(&e.local_id),
            remote_id: Cow::Borrowed(&e.remote_id),
            filtered: e.filtered,
            categories: Cow::Borrowed(&e.categories),
            data: Cow::Borrowed(&e.data),
        }
    }
}

/// Where the worker is in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    segment: u64,
    offset: u64,
}

pub struct Spool {
    dir: PathBuf,
    id: String,
    sync: SyncMode,
    writer: Mutex<Writer>,
    /// The `committed` file and the number in it.
    committed: Mutex<(File, u64)>,
}

struct Writer {
    /// First sequence number of the segment being appended to.
    active: u64,
    file: File,
    len: u64,
    next_seq: u64,
    /// A failed append left bytes that could not be cut off: start a new segment.
    must_rotate: bool,
    /// Since when appended bytes wait for an fsync.
    unsynced_since: Option<Instant>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SinkError + '_ {
    move |source| SinkError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Spool {
    /// Open (or create) the journal in `dir`.
    pub fn open(dir: &Path, sync: SyncMode) -> Result<Spool, SinkError> {
        private::create_dir_all(dir).map_err(io_err(dir))?;
        let id = read_or_create_id(dir)?;
        let (committed_file, committed) = open_committed(dir)?;
        let segments = segments(dir)?;
        let (active, mut next_seq) = match segments.last() {
            Some(&first) => (first, first),
            None => (committed + 1, committed + 1),
        };
        if let Some(&first) = segments.first() {
            if first > committed + 1 {
                log::error!(
                    "{}: events {} to {} were deleted from the journal before any database committed them",
                    dir.display(),
                    committed + 1,
                    first - 1
                );
            }
        } else if committed > 0 {
            log::warn!(
                "{}: the journal's segments were deleted; events up to {committed} were committed, numbering goes on at {}",
                dir.display(),
                committed + 1
            );
        }
        let path = segment_path(dir, active);
        let mut file = private::open_append(&path).map_err(io_err(&path))?;
        let mut text = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut text))
            .map_err(io_err(&path))?;
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < text.len() {
            log::warn!(
                "{}: cutting off {} bytes of an event half written before a crash",
                path.display(),
                text.len() - complete
            );
            file.set_len(complete as u64).map_err(io_err(&path))?;
        }
        file.seek(SeekFrom::End(0)).map_err(io_err(&path))?;
        if let Some(last) = text[..complete].split(|&b| b == b'\n').rev().nth(1) {
            next_seq = parse_seq(last).map_or(next_seq, |seq| seq + 1);
        }
        // Segments deleted by hand must not make numbers committed before come again.
        next_seq = next_seq.max(committed + 1);
        Ok(Spool {
            dir: dir.to_path_buf(),
            id,
            sync,
            writer: Mutex::new(Writer {
                active,
                file,
                len: complete as u64,
                next_seq,
                must_rotate: false,
                unsynced_since: None,
            }),
            committed: Mutex::new((committed_file, committed)),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The journal's name, under which the database keeps its progress.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Sequence number of the last event appended (0 when none ever was).
    pub fn last_seq(&self) -> u64 {
        self.writer.lock().expect("spool lock").next_seq - 1
    }

    /// The last sequence number a database of this sink committed.
    pub fn committed(&self) -> u64 {
        self.committed.lock().expect("committed lock").1
    }

    /// Record that a database committed everything up to `seq`.
    pub fn set_committed(&self, seq: u64) -> Result<(), SinkError> {
        let mut c = self.committed.lock().expect("committed lock");
        if c.1 == seq {
            return Ok(());
        }
        let path = self.dir.join(COMMITTED);
        // Fixed width, written in place: one small write, never half a number.
        c.0.write_all_at(format!("{seq:020}\n").as_bytes(), 0)
            .map_err(io_err(&path))?;
        c.1 = seq;
        Ok(())
    }

    /// Append `events` in order. On error nothing of them is in the journal.
    pub fn append(&self, events: &[LogEvent]) -> Result<(), SinkError> {
        let mut w = self.writer.lock().expect("spool lock");
        if w.must_rotate || w.len >= SEGMENT_BYTES {
            let start = w.next_seq;
            let path = segment_path(&self.dir, start);
            let file = private::open_append(&path).map_err(io_err(&path))?;
            // The closed segment's data goes to the disk before it is left.
            if self.sync != SyncMode::Off {
                let closed = segment_path(&self.dir, w.active);
                w.file.sync_data().map_err(io_err(&closed))?;
            }
            *w = Writer {
                active: start,
                file,
                len: 0,
                next_seq: start,
                must_rotate: false,
                unsynced_since: None,
            };
        }
        let mut text = Vec::with_capacity(events.len() * 128);
        for (i, e) in events.iter().enumerate() {
            encode(&mut text, w.next_seq + i as u64, &e.into());
        }
        let path = segment_path(&self.dir, w.active);
        if let Err(source) = w.file.write_all(&text) {
            // Take back whatever part was written so no half batch stays.
            let len = w.len;
            if w.file.set_len(len).is_err() {
                w.must_rotate = true;
            }
            return Err(io_err(&path)(source));
        }
        w.len += text.len() as u64;
        w.next_seq += events.len() as u64;
        let since = *w.unsynced_since.get_or_insert_with(Instant::now);
        let due = match self.sync {
            SyncMode::Always => true,
            SyncMode::Group => since.elapsed() >= GROUP_COMMIT,
            SyncMode::Off => false,
        };
        if due {
            sync(&mut w, &path)?;
        }
        Ok(())
    }

    /// `spool_sync=group`: fsync what was appended if it has waited long
    /// enough (called on the writer's idle ticks).
    pub fn sync_due(&self) -> Result<(), SinkError> {
        let mut w = self.writer.lock().expect("spool lock");
        let waited = w
            .unsynced_since
            .is_some_and(|s| s.elapsed() >= GROUP_COMMIT);
        if self.sync == SyncMode::Group && waited {
            let path = segment_path(&self.dir, w.active);
            sync(&mut w, &path)?;
        }
        Ok(())
    }

    /// The start of the journal.
    pub fn start(&self) -> Result<Cursor, SinkError> {
        let first = segments(&self.dir)?.first().copied().unwrap_or(1);
        Ok(Cursor {
            segment: first,
            offset: 0,
        })
    }

    /// Up to `max` entries after `cursor` whose seq is above `after`, all from
    /// one segment, and the cursor past them; their text is in `buffer`. A
    /// closed segment the cursor has reached the end of is deleted: pass a
    /// cursor only past entries that are committed.
    pub fn read<'b>(
        &self,
        mut cursor: Cursor,
        after: u64,
        max: usize,
        buffer: &'b mut Vec<u8>,
    ) -> Result<(Vec<Entry<'b>>, Cursor), SinkError> {
        let (path, len) = loop {
            let path = segment_path(&self.dir, cursor.segment);
            let active = self.writer.lock().expect("spool lock").active;
            let closed = cursor.segment != active;
            let lines = read_lines(&path, cursor, closed, buffer)?;
            let last_seq = buffer[..lines.len].rsplit(|&b| b == b'\n').nth(1);
            if last_seq.and_then(parse_seq).is_some_and(|seq| seq <= after) {
                // All of them committed before.
                cursor.offset += lines.len as u64;
                continue;
            }
            if lines.len > 0 || !closed {
                break (path, lines.len);
            }
            // A closed segment is complete: read to its end, all committed.
            cursor.offset += lines.skipped;
            let at_end = cursor.offset >= std::fs::metadata(&path).map_or(0, |m| m.len());
            if !at_end {
                continue;
            }
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&path)(e)),
                _ => {}
            }
            let later = segments(&self.dir)?
                .into_iter()
                .find(|&s| s > cursor.segment)
                .unwrap_or(active);
            cursor = Cursor {
                segment: later,
                offset: 0,
            };
        };
        let buffer: &'b [u8] = buffer;
        // Chat lines are some 150 bytes: few reads grow it.
        let mut entries = Vec::with_capacity(max.min(len / 128 + 1));
        for line in Lines::new(&buffer[..len]) {
            if entries.len() == max {
                break;
            }
            match decode(&line) {
                Some(entry) if entry.seq > after => entries.push(entry),
                Some(_) => {}
                None => log::error!(
                    "{}: byte {}: unreadable spooled event skipped",
                    path.display(),
                    cursor.offset
                ),
            }
            cursor.offset += line.text.len() as u64 + 1;
        }
        Ok((entries, cursor))
    }
}

fn sync(w: &mut Writer, path: &Path) -> Result<(), SinkError> {
    w.file.sync_data().map_err(io_err(path))?;
    w.unsynced_since = None;
    Ok(())
}

const COMMITTED: &str = "committed";

fn open_committed(dir: &Path) -> Result<(File, u64), SinkError> {
    let path = dir.join(COMMITTED);
    let mut file = private::open_read_write(&path).map_err(io_err(&path))?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io_err(&path))?;
    let seq = match text.trim() {
        "" => 0,
        number => number.parse().map_err(|_| {
            SinkError::Other(format!(
                "{}: {number:?} is not a sequence number",
                path.display()
            ))
        })?,
    };
    Ok((file, seq))
}

/// What [`read_lines`] put in its buffer.
struct Chunk {
    /// Bytes of whole lines at the buffer's start (what follows them is
    /// not of this read).
    len: usize,
    /// Bytes after them to pass over: the last line of a closed segment
    /// that has no LF.
    skipped: u64,
}

/// Bytes of one segment from `cursor` into `buffer`: [`READ_CHUNK`] of them,
/// or more until the first LF. In a `closed` segment a last line without its
/// LF (an append that failed and could not be taken back) is to be skipped,
/// with a warning.
fn read_lines(
    path: &Path,
    cursor: Cursor,
    closed: bool,
    buffer: &mut Vec<u8>,
) -> Result<Chunk, SinkError> {
    // The buffer keeps its length from one read to the next (made anew, its
    // bytes would be zeroed each time), but not the size of a huge entry.
    if buffer.len() > READ_CHUNK {
        *buffer = Vec::new();
    }
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Chunk { len: 0, skipped: 0 })
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    let (mut want, mut got) = (READ_CHUNK, 0);
    let at_end = loop {
        if buffer.len() < want {
            buffer.resize(want, 0);
        }
        let start = got;
        while got < want {
            let n = file
                .read_at(&mut buffer[got..want], cursor.offset + got as u64)
                .map_err(io_err(path))?;
            if n == 0 {
                break;
            }
            got += n;
        }
        if got < want || buffer[start..got].contains(&b'\n') || want == MAX_ENTRY as usize {
            break got < want;
        }
        want = (want * 2).min(MAX_ENTRY as usize);
    };
    let read = &buffer[..got];
    let len = read.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if len == 0 && got == MAX_ENTRY as usize {
        return Err(SinkError::Other(format!(
            "{}: byte {}: an entry longer than {} MiB; the journal is damaged and cannot be read past it",
            path.display(),
            cursor.offset,
            MAX_ENTRY >> 20
        )));
    }
    let mut skipped = 0;
    if len == 0 && at_end && closed && got > 0 {
        log::warn!(
            "{}: byte {}: {got} bytes of an event whose append failed; skipped",
            path.display(),
            cursor.offset,
        );
        skipped = got as u64;
    }
    Ok(Chunk { len, skipped })
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.spool"))
}

/// First sequence numbers of the segments in `dir`, oldest first.
fn segments(dir: &Path) -> Result<Vec<u64>, SinkError> {
    let mut found: Vec<u64> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name();
            name.to_str()?.strip_suffix(".spool")?.parse().ok()
        })
        .collect();
    found.sort_unstable();
    Ok(found)
}

fn read_or_create_id(dir: &Path) -> Result<String, SinkError> {
    let path = dir.join("id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&path)(e)),
    }
    let mut random = [0u8; 8];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .map_err(io_err(Path::new("/dev/urandom")))?;
    let id: String = random.iter().map(|b| format!("{b:02x}")).collect();
    private::open_append(&path)
        .and_then(|mut f| f.write_all(format!("{id}\n").as_bytes()))
        .map_err(io_err(&path))?;
    Ok(id)
}

/// One journal line (LF included); also the dead-letter file's format.
pub(crate) fn encode(out: &mut Vec<u8>, seq: u64, e: &Event<'_>) {
    // Most events have nothing to escape: they are written as they are and
    // checked in one pass over the line (its only specials then are the tabs
    // between fields); the rare one that has is written again, escaped.
    let start = out.len();
    write_fields(out, seq, e, |out, field| out.extend_from_slice(field));
    if specials(&out[start..]) != FIELDS - 1 {
        out.truncate(start);
        write_fields(out, seq, e, escape_field);
    }
    out.push(b'\n');
}

/// The fields of a journal line, tab after tab, each written by `write`.
fn write_fields(out: &mut Vec<u8>, seq: u64, e: &Event<'_>, write: impl Fn(&mut Vec<u8>, &[u8])) {
    let mut number = itoa::Buffer::new();
    out.extend_from_slice(number.format(seq).as_bytes());
    out.push(b'\t');
    out.extend_from_slice(number.format(e.timestamp).as_bytes());
    out.push(b'\t');
    let fields: [&str; FIELDS - 2] = [
        &e.client,
        &e.protocol,
        if e.outgoing { "1" } else { "0" },
        number.format(e.kind.code()),
        &e.local_id,
        &e.remote_id,
        if e.filtered { "1" } else { "0" },
        &e.categories,
        &e.data,
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        write(out, field.as_bytes());
    }
}

/// How many bytes of `text` are tabs, LFs, CRs or backslashes, or other
/// control characters below 14 (rare: counted too, as that is cheaper),
/// looked at eight at a time.
fn specials(text: &[u8]) -> usize {
    let count = |word: u64| {
        let below_14 = !((word | HIGH) - ONES * 14) & !word & HIGH;
        (below_14 | equal_bytes(word, b'\\')).count_ones() as usize
    };
    let mut words = text.chunks_exact(8);
    let whole: usize = words
        .by_ref()
        .map(|word| count(u64::from_le_bytes(word.try_into().expect("eight bytes"))))
        .sum();
    whole + count(word_at(words.remainder(), 0))
}

/// Append `field` with `\`, tab, LF and CR escaped.
fn escape_field(out: &mut Vec<u8>, field: &[u8]) {
    for &b in field {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// The event time (UNIX seconds) of a journal or dead-letter line.
pub(crate) fn timestamp_of(line: &[u8]) -> Option<i64> {
    let mut fields = line.split(|&b| b == b'\t');
    fields.next()?;
    std::str::from_utf8(fields.next()?).ok()?.parse().ok()
}

fn parse_seq(line: &[u8]) -> Option<u64> {
    let end = line.iter().position(|&b| b == b'\t')?;
    std::str::from_utf8(&line[..end]).ok()?.parse().ok()
}

/// `field` with its escapes undone: itself when it has none.
fn unescape(field: &str) -> Option<Cow<'_, str>> {
    if !field.contains('\\') {
        return Some(Cow::Borrowed(field));
    }
    let mut out = Vec::with_capacity(field.len());
    let mut bytes = field.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        out.push(match bytes.next()? {
            b'\\' => b'\\',
            b't' => b'\t',
            b'n' => b'\n',
            b'r' => b'\r',
            _ => return None,
        });
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// Fields of a journal line.
const FIELDS: usize = 11;

/// A journal line cut at its tabs.
struct Line<'a> {
    /// Without its LF.
    text: &'a [u8],
    /// Where each of the first [`FIELDS`] fields ends in `text`.
    ends: [usize; FIELDS],
    /// How many fields the line has (other than [`FIELDS`]: it is damaged).
    fields: usize,
    /// Whether it has a backslash: an escape to undo.
    escaped: bool,
}

/// The lines of `text`, which ends with an LF, cut at their tabs in one pass.
struct Lines<'a> {
    text: &'a [u8],
    start: usize,
    specials: Specials<'a>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a [u8]) -> Lines<'a> {
        Lines {
            text,
            start: 0,
            specials: Specials {
                bytes: text,
                next_word: 0,
                found: 0,
            },
        }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        let (mut ends, mut fields, mut escaped) = ([0; FIELDS], 0, false);
        loop {
            let at = self.specials.next()?;
            let byte = self.text[at];
            if byte == b'\\' {
                escaped = true;
                continue;
            }
            if let Some(end) = ends.get_mut(fields) {
                *end = at - self.start;
            }
            fields += 1;
            if byte == b'\n' {
                let text = &self.text[self.start..at];
                self.start = at + 1;
                return Some(Line {
                    text,
                    ends,
                    fields,
                    escaped,
                });
            }
        }
    }
}

/// Where the tabs, LFs and backslashes of `bytes` are, in order. A word of
/// eight bytes is looked at at a time: most have none of them.
struct Specials<'a> {
    bytes: &'a [u8],
    next_word: usize,
    /// The high bit of each special byte of the last word read, as yet unreturned.
    found: u64,
}

impl Iterator for Specials<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.found == 0 {
            if self.next_word >= self.bytes.len() {
                return None;
            }
            let word = word_at(self.bytes, self.next_word);
            self.found =
                equal_bytes(word, b'\t') | equal_bytes(word, b'\n') | equal_bytes(word, b'\\');
            self.next_word += 8;
        }
        let bit = self.found.trailing_zeros() as usize;
        self.found &= self.found - 1;
        Some(self.next_word - 8 + bit / 8)
    }
}

/// A journal line as its entry, its text borrowed from the line's.
fn decode<'a>(line: &Line<'a>) -> Option<Entry<'a>> {
    if line.fields != FIELDS {
        return None;
    }
    // A line is checked for UTF-8 as a whole; tabs are ASCII, so each field is too.
    let text = std::str::from_utf8(line.text).ok()?;
    let mut fields: [Cow<'a, str>; FIELDS] = Default::default();
    let mut start = 0;
    for (field, &end) in fields.iter_mut().zip(&line.ends) {
        let text = text.get(start..end)?;
        *field = match line.escaped {
            true => unescape(text)?,
            false => Cow::Borrowed(text),
        };
        start = end + 1;
    }
    let [seq, timestamp, client, protocol, outgoing, kind, local_id, remote_id, filtered, categories, data] =
        fields;
    let event = Event {
        timestamp: timestamp.parse().ok()?,
        client,
        protocol,
        outgoing: outgoing == "1",
        kind: event_type(kind.parse().ok()?)?,
        local_id,
        remote_id,
        filtered: filtered == "1",
        categories,
        data,
    };
    Some(Entry {
        seq: seq.parse().ok()?,
        event,
    })
}

fn event_type(code: u8) -> Option<EventType> {
    [
        EventType::Message,
        EventType::File,
        EventType::Typing,
        EventType::Webcam,
    ]
    .into_iter()
    .find(|t| t.code() == code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::tests::event;

    /// Seq and event of each entry after `after`, read seven at a time.
    fn all(spool: &Spool, after: u64) -> Vec<(u64, LogEvent)> {
        let mut cursor = spool.start().unwrap();
        let mut buffer = Vec::new();
        let mut out = Vec::new();
        loop {
            let (entries, next) = spool.read(cursor, after, 7, &mut buffer).unwrap();
            if entries.is_empty() {
                return out;
            }
            out.extend(entries.iter().map(|e| (e.seq, owned(&e.event))));
            cursor = next;
        }
    }

    fn owned(e: &Event<'_>) -> LogEvent {
        LogEvent {
            timestamp: e.timestamp,
            client: e.client.as_ref().into(),
            protocol: e.protocol.to_string().into(),
            outgoing: e.outgoing,
            kind: e.kind,
            local_id: e.local_id.as_ref().into(),
            remote_id: e.remote_id.as_ref().into(),
            filtered: e.filtered,
            categories: e.categories.to_string(),
            data: e.data.to_string(),
        }
    }

    #[test]
    fn events_come_back_unchanged_with_their_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), SyncMode::Group).unwrap();
        let tricky = event("tab\there\\n not a newline\nreal one\r\n 😀 \u{1} end");
        spool.append(&[event("one"), tricky.clone()]).unwrap();
        let got = all(&spool, 0);
        assert_eq!(got, [(1, event("one")), (2, tricky)]);
        assert_eq!(all(&spool, 1).len(), 1);
    }

    #[test]
    fn text_without_escapes_is_read_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), SyncMode::Group).unwrap();
        spool.append(&[event("plain"), event("a\tb")]).unwrap();
        let mut buffer = Vec::new();
        let (entries, _) = spool
            .read(spool.start().unwrap(), 0, 10, &mut buffer)
            .unwrap();
        let [plain, escaped] = &entries[..] else {
            panic!("{entries:?}")
        };
        assert!(matches!(plain.event.data, Cow::Borrowed("plain")));
        assert!(matches!(&escaped.event.data, Cow::Owned(text) if text == "a\tb"));
        assert!(matches!(escaped.event.remote_id, Cow::Borrowed("#chan")));
    }

    #[test]
    fn unreadable_lines_are_skipped_and_the_rest_read() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), SyncMode::Off).unwrap();
        spool.append(&[event("before")]).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(segment_path(dir.path(), 1))
            .unwrap();
        let mut extra_field = Vec::new();
        encode(&mut extra_field, 3, &(&event("x")).into());
        extra_field.insert(extra_field.len() - 1, b'\t');
        f.write_all(b"2\t1160853407\tshort\n").unwrap();
        f.write_all(&extra_field).unwrap();
        f.write_all(b"4\t1160853407\t\xff\t\t0\t1\t\t\t0\t\t\n")
            .unwrap();
        drop(f);
        let spool = Spool::open(dir.path(), SyncMode::Off).unwrap();
        spool.append(&[event("after")]).unwrap();
        let got: Vec<_> = all(&spool, 0)
            .into_iter()
            .map(|(seq, e)| (seq, e.data))
            .collect();
        assert_eq!(got, [(1, "before".into()), (5, "after".into())]);
    }

    #[test]
    fn sequence_and_id_survive_a_restart_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), SyncMode::Group).unwrap();
        spool.append(&[event("a"), event("b")]).unwrap();
        let id = spool.id().to_string();
        drop(spool);
        let segment = segment_path(dir.path(), 1);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&segment)
            .unwrap();
        f.write_all(b"3\t1160853407\thalf a li").unwrap();
        let spool = Spool::open(dir.path(), SyncMode::Group).unwrap();
        assert_eq!(spool.id(), id);
        assert_eq!(spool.last_seq(), 2);
        spool.append(&[event("c")]).unwrap();
        let seqs: Vec<_> = all(&spool, 0)
            .into_iter()
            .map(|(seq, e)| (seq, e.data))
            .collect();
        assert_eq!(seqs, [(1, "a".into()), (2, "b".into()), (3, "c".into())]);
    }

    #[test]
    fn committed_closed_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), SyncMode::Group).unwrap();
        let big = event(&"x".repeat(300_000));
        for _ in 0..5 {
            spool.append(std::slice::from_ref(&big)).unwrap();
        }
        assert!(segments(dir.path()).unwrap().len() >= 2);
        assert_eq!(all(&spool, 0).len(), 5);
        assert_eq!(all(&spool, 5).len(), 0);
        assert_eq!(segments(dir.path()).unwrap(), [5]);
        spool.append(&[event("after")]).unwrap();
        assert_eq!(all(&spool, 5)[0].0, 6);
    }

    #[test]
    fn an_entry_larger_than_a_read_chunk_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), SyncMode::Off).unwrap();
        // Escaping doubles it: a journal line of 3 MiB.
        let huge = event(&"\n".repeat(3 << 19));
        spool
            .append(&[event("before"), huge.clone(), event("after")])
            .unwrap();
        let got = all(&spool, 0);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].1, huge);
        assert_eq!(got[2].1.data, "after");
    }

    #[test]
    fn a_damaged_entry_longer_than_any_event_stops_the_reader_saying_where() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), SyncMode::Off).unwrap();
        spool.append(&[event("before")]).unwrap();
        let segment = segment_path(dir.path(), 1);
        let damage_at = std::fs::metadata(&segment).unwrap().len();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&segment)
            .unwrap();
        f.write_all(&vec![b'x'; MAX_ENTRY as usize + 1]).unwrap();
        f.write_all(b"\n").unwrap();
        drop(f);
        let mut buffer = Vec::new();
        let (entries, cursor) = spool
            .read(spool.start().unwrap(), 0, 10, &mut buffer)
            .unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].event.data, "before");
        let err = spool
            .read(cursor, 1, 10, &mut buffer)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "{}: byte {damage_at}: an entry longer than 64 MiB; the journal is damaged and cannot be read past it",
                segment.display()
            )
        );
    }

    #[test]
    fn the_committed_position_survives_and_deleted_segments_keep_the_numbering() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), SyncMode::Always).unwrap();
        spool.append(&[event("a"), event("b"), event("c")]).unwrap();
        spool.set_committed(3).unwrap();
        drop(spool);
        let spool = Spool::open(dir.path(), SyncMode::Always).unwrap();
        assert_eq!(spool.committed(), 3);
        drop(spool);
        for s in segments(dir.path()).unwrap() {
            std::fs::remove_file(segment_path(dir.path(), s)).unwrap();
        }
        let spool = Spool::open(dir.path(), SyncMode::Always).unwrap();
        assert_eq!(spool.last_seq(), 3);
        spool.append(&[event("d")]).unwrap();
        let got = all(&spool, 3);
        assert_eq!((got[0].0, got[0].1.data.as_str()), (4, "d"));
    }
}
