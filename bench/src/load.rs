//! The client side of each workload. Blocking sockets, one thread per
//! connection; the sink answers at end of stream, so every figure is taken
//! when the last byte has reached the server side.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use socket2::{Domain, Socket, Type};

use crate::lab::SinkPort;
use crate::measure::monotonic_ns;
use crate::sink::{BUFFER, STAMP};
use crate::targets::Target;

pub fn connect(source: Ipv4Addr, to: SocketAddr) -> anyhow::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(source.into(), 0).into())?;
    socket
        .connect(&to.into())
        .with_context(|| format!("connecting {source} -> {to}"))?;
    Ok(socket.into())
}

/// The result of one bulk run.
pub struct Bulk {
    pub bytes: u64,
    pub seconds: f64,
}

/// `conns` connections each send `block` `repeat` times to `port`, as fast as
/// they can. The time runs from the first write to the last sink answer.
pub fn bulk(
    target: &Target,
    port: SinkPort,
    conns: usize,
    block: &Arc<Vec<u8>>,
    repeat: usize,
) -> anyhow::Result<Bulk> {
    let (source, to) = target.route(port);
    let streams = (0..conns)
        .map(|_| connect(source, to))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let per_conn = (block.len() * repeat) as u64;
    let barrier = Arc::new(Barrier::new(conns + 1));
    let threads: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let block = block.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || -> anyhow::Result<u64> {
                barrier.wait();
                for _ in 0..repeat {
                    for chunk in block.chunks(BUFFER) {
                        stream.write_all(chunk)?;
                    }
                }
                stream.shutdown(Shutdown::Write)?;
                let mut answer = String::new();
                stream.read_to_string(&mut answer)?;
                answer
                    .trim()
                    .parse::<u64>()
                    .with_context(|| format!("sink answered {answer:?}"))
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut bytes = 0;
    for t in threads {
        let got = t.join().expect("client thread")?;
        if got != per_conn {
            bail!("{}: the sink got {got} bytes of {per_conn}", target.kind);
        }
        bytes += got;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(Bulk { bytes, seconds })
}

/// One connection sends `count` chat lines at `rate` per second; returns the
/// one-way latency of each (ns), as the sink measured it.
pub fn latency(target: &Target, rate: u32, count: usize) -> anyhow::Result<Vec<u64>> {
    let (source, to) = target.route(SinkPort::IrcLatency);
    let mut stream = connect(source, to)?;
    stream.set_nodelay(true)?;
    let period = Duration::from_secs(1) / rate;
    let start = Instant::now();
    for i in 0..count {
        let due = start + period * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        // About 100 bytes, the size of a typical chat line.
        let line = format!(
            "PRIVMSG #latency :{STAMP}{} see you at the meeting tomorrow, bring the notes\r\n",
            monotonic_ns()
        );
        stream.write_all(line.as_bytes())?;
    }
    stream.shutdown(Shutdown::Write)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let mut found: Vec<u64> = answer.lines().filter_map(|l| l.parse().ok()).collect();
    if found.len() != count {
        bail!(
            "{}: the sink saw {} of {count} probe lines",
            target.kind,
            found.len()
        );
    }
    found.sort_unstable();
    Ok(found)
}

/// Open `n` connections through the relay, each set up end to end (one line
/// echoed back), and keep them open while `measure` runs.
pub fn idle<T>(target: &Target, n: usize, measure: impl FnOnce() -> T) -> anyhow::Result<T> {
    let (source, to) = target.route(SinkPort::IrcEcho);
    let probe = b"PING :idle\r\n";
    let mut open = Vec::with_capacity(n);
    for i in 0..n {
        let mut stream =
            connect(source, to).with_context(|| format!("connection {} of {n}", i + 1))?;
        stream.write_all(probe)?;
        let mut back = [0u8; 12];
        stream.read_exact(&mut back)?;
        open.push(stream);
    }
    Ok(measure())
}

/// Where the imspector target logs its events.
#[derive(Debug, Clone)]
pub enum EventStore {
    /// `file_logging_dir`: one line per event.
    Files(PathBuf),
    /// `sqlite_file`: one row per event in `messages`.
    Sqlite(PathBuf),
}

/// Counts the events a target has logged so far.
#[derive(Default)]
pub struct EventCount {
    /// Bytes of each log file already counted.
    offsets: HashMap<PathBuf, u64>,
    /// The database, kept open from one poll to the next.
    db: Option<rusqlite::Connection>,
    pub events: u64,
}

impl EventCount {
    pub fn update(&mut self, store: &EventStore) -> anyhow::Result<()> {
        match store {
            EventStore::Files(dir) => self.update_files(dir),
            EventStore::Sqlite(db) => {
                self.events = self.sqlite_rows(db);
                Ok(())
            }
        }
    }

    fn update_files(&mut self, dir: &Path) -> anyhow::Result<()> {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for entry in entries {
                let path = entry?.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let offset = self.offsets.entry(path.clone()).or_insert(0);
                let mut file = std::fs::File::open(&path)?;
                std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(*offset))?;
                let mut new = Vec::new();
                file.read_to_end(&mut new)?;
                *offset += new.len() as u64;
                self.events += count_lines(&new);
            }
        }
        Ok(())
    }

    /// Rows in `messages` (none before the table exists): its last id, as
    /// the bench's rows are numbered from 1 without a gap. A `count(*)` would
    /// read the whole table at every poll, on the cores the relay needs.
    fn sqlite_rows(&mut self, db: &Path) -> u64 {
        if self.db.is_none() {
            let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
            self.db = rusqlite::Connection::open_with_flags(db, flags).ok();
        }
        let Some(conn) = &self.db else { return 0 };
        conn.query_row("SELECT coalesce(max(id), 0) FROM messages", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_or(0, |n| n as u64)
    }

    /// Wait until the store holds `events` events in total.
    pub fn wait_for(&mut self, store: &EventStore, events: u64) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            self.update(store)?;
            if self.events >= events {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("{store:?} holds {} events of {events}", self.events);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn count_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}
