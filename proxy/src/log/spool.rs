//! The on-disk journal of one sink: every event the sink is given is appended
//! here first, with a sequence number, and the sink's worker reads it back in
//! order and writes it to the database.
//!
//! Layout of a spool directory:
//! - `id`: a random name for this journal; the database remembers, under this
//!   name, the last sequence number it committed (see `spooled.rs`).
//! - `<first seq, 20 digits>.spool`: segments, one event per line, appended
//!   only by the writer. The newest segment is never deleted so the sequence
//!   survives restarts; older ones are deleted once fully committed.
//!
//! A line is `seq TAB timestamp TAB client TAB protocol TAB outgoing TAB type TAB
//! local TAB remote TAB filtered TAB categories TAB data LF`, each text field
//! escaped (`\\`, `\t`, `\n`, `\r`). A line without its LF is a write cut short
//! by a crash: it is cut off when the spool is opened.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use imspector_protocols::EventType;

use super::SinkError;
use crate::event::LogEvent;

/// A segment is closed once it is this big; the worker then deletes it when
/// everything in it is committed.
const SEGMENT_BYTES: u64 = 1 << 20;
/// Most bytes read from a segment at once.
const READ_CHUNK: usize = 1 << 20;

/// An event with its place in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub event: LogEvent,
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
    writer: Mutex<Writer>,
}

struct Writer {
    /// First sequence number of the segment being appended to.
    active: u64,
    file: File,
    len: u64,
    next_seq: u64,
    /// A failed append left bytes that could not be cut off: start a new segment.
    must_rotate: bool,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SinkError + '_ {
    move |source| SinkError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Spool {
    /// Open (or create) the journal in `dir`.
    pub fn open(dir: &Path) -> Result<Spool, SinkError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let id = read_or_create_id(dir)?;
        let segments = segments(dir)?;
        let (active, mut next_seq) = match segments.last() {
            Some(&first) => (first, first),
            None => (1, 1),
        };
        let path = segment_path(dir, active);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(io_err(&path))?;
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < text.len() {
            log::warn!(
                "{}: cutting off {} bytes of an event half written before a crash",
                path.display(),
                text.len() - complete
            );
            file.set_len(complete as u64).map_err(io_err(&path))?;
        }
        if let Some(last) = text[..complete].split(|&b| b == b'\n').rev().nth(1) {
            next_seq = parse_seq(last).map_or(next_seq, |seq| seq + 1);
        }
        Ok(Spool {
            dir: dir.to_path_buf(),
            id,
            writer: Mutex::new(Writer {
                active,
                file,
                len: complete as u64,
                next_seq,
                must_rotate: false,
            }),
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

    /// Append `events` in order. On error nothing of them is in the journal.
    pub fn append(&self, events: &[LogEvent]) -> Result<(), SinkError> {
        let mut w = self.writer.lock().expect("spool lock");
        if w.must_rotate || w.len >= SEGMENT_BYTES {
            let start = w.next_seq;
            let path = segment_path(&self.dir, start);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io_err(&path))?;
            *w = Writer {
                active: start,
                file,
                len: 0,
                next_seq: start,
                must_rotate: false,
            };
        }
        let mut text = Vec::with_capacity(events.len() * 128);
        for (i, e) in events.iter().enumerate() {
            encode(&mut text, w.next_seq + i as u64, e);
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
    /// one segment, and the cursor past them. A closed segment the cursor has
    /// reached the end of is deleted: pass a cursor only past entries that are
    /// committed.
    pub fn read(
        &self,
        mut cursor: Cursor,
        after: u64,
        max: usize,
    ) -> Result<(Vec<Entry>, Cursor), SinkError> {
        loop {
            let path = segment_path(&self.dir, cursor.segment);
            let active = self.writer.lock().expect("spool lock").active;
            let (entries, next) = read_segment(&path, cursor, after, max)?;
            if !entries.is_empty() || cursor.segment == active {
                return Ok((entries, next));
            }
            // A closed segment is complete: read to its end, all committed.
            let at_end = next.offset == std::fs::metadata(&path).map_err(io_err(&path))?.len();
            if !at_end {
                cursor = next;
                continue;
            }
            std::fs::remove_file(&path).map_err(io_err(&path))?;
            let later = segments(&self.dir)?
                .into_iter()
                .find(|&s| s > cursor.segment)
                .unwrap_or(active);
            cursor = Cursor {
                segment: later,
                offset: 0,
            };
        }
    }
}

fn read_segment(
    path: &Path,
    cursor: Cursor,
    after: u64,
    max: usize,
) -> Result<(Vec<Entry>, Cursor), SinkError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), cursor)),
        Err(e) => return Err(io_err(path)(e)),
    };
    file.seek(SeekFrom::Start(cursor.offset))
        .map_err(io_err(path))?;
    let mut chunk = Vec::new();
    file.take(READ_CHUNK as u64)
        .read_to_end(&mut chunk)
        .map_err(io_err(path))?;
    let mut entries = Vec::new();
    let mut consumed = 0;
    for line in chunk.split_inclusive(|&b| b == b'\n') {
        if entries.len() == max || !line.ends_with(b"\n") {
            break;
        }
        consumed += line.len();
        match decode(&line[..line.len() - 1]) {
            Some(entry) if entry.seq > after => entries.push(entry),
            Some(_) => {}
            None => log::error!(
                "{}: byte {}: unreadable spooled event skipped",
                path.display(),
                cursor.offset as usize + consumed - line.len()
            ),
        }
    }
    let next = Cursor {
        segment: cursor.segment,
        offset: cursor.offset + consumed as u64,
    };
    Ok((entries, next))
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
    std::fs::write(&path, format!("{id}\n")).map_err(io_err(&path))?;
    Ok(id)
}

fn encode(out: &mut Vec<u8>, seq: u64, e: &LogEvent) {
    let numbers = format!("{seq}\t{}\t", e.timestamp);
    out.extend_from_slice(numbers.as_bytes());
    let fields: [&str; 9] = [
        &e.client,
        &e.protocol,
        if e.outgoing { "1" } else { "0" },
        &e.kind.code().to_string(),
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
        for &b in field.as_bytes() {
            match b {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                _ => out.push(b),
            }
        }
    }
    out.push(b'\n');
}

fn parse_seq(line: &[u8]) -> Option<u64> {
    let end = line.iter().position(|&b| b == b'\t')?;
    std::str::from_utf8(&line[..end]).ok()?.parse().ok()
}

fn unescape(field: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(field.len());
    let mut bytes = field.iter();
    while let Some(&b) = bytes.next() {
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
    String::from_utf8(out).ok()
}

fn decode(line: &[u8]) -> Option<Entry> {
    let fields: Vec<String> = line
        .split(|&b| b == b'\t')
        .map(unescape)
        .collect::<Option<_>>()?;
    let [seq, timestamp, client, protocol, outgoing, kind, local_id, remote_id, filtered, categories, data] =
        <[String; 11]>::try_from(fields).ok()?;
    Some(Entry {
        seq: seq.parse().ok()?,
        event: LogEvent {
            timestamp: timestamp.parse().ok()?,
            client,
            protocol: protocol.into(),
            outgoing: outgoing == "1",
            kind: event_type(kind.parse().ok()?)?,
            local_id,
            remote_id,
            filtered: filtered == "1",
            categories,
            data,
        },
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

    fn all(spool: &Spool, after: u64) -> Vec<Entry> {
        let mut cursor = spool.start().unwrap();
        let mut out = Vec::new();
        loop {
            let (entries, next) = spool.read(cursor, after, 7).unwrap();
            if entries.is_empty() {
                return out;
            }
            out.extend(entries);
            cursor = next;
        }
    }

    #[test]
    fn events_come_back_unchanged_with_their_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let tricky = event("tab\there\\n not a newline\nreal one\r\n 😀 \u{1} end");
        spool.append(&[event("one"), tricky.clone()]).unwrap();
        let got = all(&spool, 0);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].seq, got[0].event.data.as_str()), (1, "one"));
        assert_eq!((got[1].seq, &got[1].event), (2, &tricky));
        assert_eq!(all(&spool, 1).len(), 1);
    }

    #[test]
    fn sequence_and_id_survive_a_restart_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        spool.append(&[event("a"), event("b")]).unwrap();
        let id = spool.id().to_string();
        drop(spool);
        let segment = segment_path(dir.path(), 1);
        let mut f = OpenOptions::new().append(true).open(&segment).unwrap();
        f.write_all(b"3\t1160853407\thalf a li").unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.id(), id);
        assert_eq!(spool.last_seq(), 2);
        spool.append(&[event("c")]).unwrap();
        let seqs: Vec<_> = all(&spool, 0)
            .iter()
            .map(|e| (e.seq, e.event.data.clone()))
            .collect();
        assert_eq!(seqs, [(1, "a".into()), (2, "b".into()), (3, "c".into())]);
    }

    #[test]
    fn committed_closed_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let big = event(&"x".repeat(300_000));
        for _ in 0..5 {
            spool.append(std::slice::from_ref(&big)).unwrap();
        }
        assert!(segments(dir.path()).unwrap().len() >= 2);
        assert_eq!(all(&spool, 0).len(), 5);
        assert_eq!(all(&spool, 5).len(), 0);
        assert_eq!(segments(dir.path()).unwrap(), [5]);
        spool.append(&[event("after")]).unwrap();
        assert_eq!(all(&spool, 5)[0].seq, 6);
    }
}
