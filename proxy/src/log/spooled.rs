//! A database sink that never loses or delays events: [`Spooled`] appends each
//! batch to the sink's on-disk journal ([`Spool`]) and returns; a worker thread
//! of its own writes the journal to the database, in order, reconnecting with
//! backoff while the database is away. A slow or dead database therefore only
//! holds up its own worker, never the writer thread or the other sinks.
//!
//! Exactly once: the database keeps, in a table `imspector_spool`, the last
//! sequence number committed from each journal, updated in the same transaction
//! as the rows; the journal keeps its own copy (`committed`), which the
//! database's row only moves on. After a reconnect or a restart the worker
//! starts after the larger of the two, so a crash at any point neither loses
//! nor repeats an event, and a new, emptied or replaced database gets only the
//! events no database of this sink has committed.
//!
//! A row the database refuses (not a lost connection: the database answered)
//! goes to the dead-letter file `dead-letters` in the journal's directory, one
//! journal line per event, and the sink goes on.

use std::io::Write;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::spool::{Cursor, Entry, Spool, SyncMode};
use super::spool_lock::SpoolLock;
use super::{private, Sink, SinkError};
use crate::event::LogEvent;

/// Most events written to a database in one transaction. A commit costs the
/// same for one row as for thousands (its fsyncs), so a backlog goes in big
/// transactions.
const DATABASE_BATCH: usize = 8192;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a stopping sink may go on writing to its database; what is left
/// stays in the journal for the next start.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(15);
/// The dead-letter file in the journal's directory.
pub const DEAD_LETTERS: &str = "dead-letters";

/// What a database knows of a journal when the worker connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Its `imspector_spool` row, if it has one.
    pub committed: Option<u64>,
    /// Whether `messages` has any row.
    pub has_rows: bool,
    /// False for a table without transactions (MyISAM): rows are written one
    /// per statement, each followed by its progress.
    pub transactional: bool,
}

/// A database as the worker uses it.
pub trait Backend: Send + 'static {
    /// `sqlite`, `mysql`, `postgres`: names the sink in log lines.
    fn name(&self) -> &'static str;
    /// Connect if not connected and create missing tables; what the database
    /// has of journal `spool`.
    fn connect(&mut self, spool: &str) -> Result<Progress, SinkError>;
    /// In one transaction (or, without transactions, one statement per row
    /// each followed by its progress): insert `entries` and record `last`
    /// (at least the last entry's seq) as committed from `spool`. An error
    /// the database gave about the rows themselves is [`SinkError::Rejected`].
    fn write(&mut self, spool: &str, entries: &[Entry], last: u64) -> Result<(), SinkError>;
    /// Once connected: delete up to `batch` of the oldest rows from before
    /// `before` (UNIX seconds) in one short statement; how many went (retention).
    fn delete_before(&mut self, before: i64, batch: usize) -> Result<u64, SinkError>;
    /// Forget the connection after an error, so the next `connect` starts anew.
    fn disconnect(&mut self);
}

pub struct Spooled {
    name: &'static str,
    shared: Arc<Shared>,
    /// Events the journal could not take (disk full...), oldest first.
    memory: Vec<LogEvent>,
    spool_failing: bool,
    worker: Option<(JoinHandle<()>, mpsc::Receiver<()>)>,
    _lock: SpoolLock,
}

struct Shared {
    spool: Spool,
    wake: Mutex<Wake>,
    cond: Condvar,
}

#[derive(Default)]
struct Wake {
    appended: bool,
    stop: bool,
}

impl Spooled {
    /// Open the journal in `spool_dir` (under `lock`) and start the worker for `backend`.
    pub fn start(
        backend: Box<dyn Backend>,
        spool_dir: &std::path::Path,
        sync: SyncMode,
        lock: SpoolLock,
    ) -> Result<Spooled, SinkError> {
        let name = backend.name();
        let shared = Arc::new(Shared {
            spool: Spool::open(spool_dir, sync)?,
            wake: Mutex::default(),
            cond: Condvar::new(),
        });
        let worker_shared = shared.clone();
        let (done_tx, done_rx) = mpsc::channel();
        let worker = std::thread::Builder::new()
            .name(format!("imspector-{name}"))
            .spawn(move || {
                Worker::new(backend, worker_shared).run();
                let _ = done_tx.send(());
            })
            .map_err(|e| SinkError::Other(format!("{name} sink: starting its thread: {e}")))?;
        Ok(Spooled {
            name,
            shared,
            memory: Vec::new(),
            spool_failing: false,
            worker: Some((worker, done_rx)),
            _lock: lock,
        })
    }

    /// Move the events kept in memory into the journal; on failure they stay
    /// in memory and the failure is reported once until it clears.
    fn save(&mut self) {
        if self.memory.is_empty() {
            return;
        }
        match self.shared.spool.append(&self.memory) {
            Ok(()) => {
                if self.spool_failing {
                    log::info!(
                        "{} sink: spool writable again; {} events held in memory saved",
                        self.name,
                        self.memory.len()
                    );
                }
                self.memory.clear();
                self.appended();
            }
            Err(e) => self.spool_failed(&e),
        }
    }

    /// Events reached the journal: the worker may go on.
    fn appended(&mut self) {
        self.spool_failing = false;
        self.shared.wake.lock().expect("wake lock").appended = true;
        self.shared.cond.notify_one();
    }

    /// Said once until the journal takes events again.
    fn spool_failed(&mut self, e: &SinkError) {
        if !self.spool_failing {
            log::error!(
                "{} sink: cannot write its spool: {e}; events are held in memory until it can",
                self.name
            );
            self.spool_failing = true;
        }
    }
}

impl Sink for Spooled {
    fn name(&self) -> &str {
        self.name
    }

    fn write(&mut self, events: &[LogEvent]) -> Result<(), SinkError> {
        if self.memory.is_empty() {
            // The usual case: straight from the batch, nothing copied.
            match self.shared.spool.append(events) {
                Ok(()) => self.appended(),
                Err(e) => {
                    self.memory.extend_from_slice(events);
                    self.spool_failed(&e);
                }
            }
        } else {
            self.memory.extend_from_slice(events);
            self.save();
        }
        Ok(())
    }

    fn tick(&mut self) -> Result<(), SinkError> {
        self.save();
        self.shared.spool.sync_due()
    }

    fn healthy(&self) -> bool {
        !self.spool_failing
    }

    fn finish(&mut self) -> Option<String> {
        let (worker, done) = self.worker.take()?;
        self.save();
        if !self.memory.is_empty() {
            log::error!(
                "{} sink: stopping with {} events that could not be spooled: they are LOST",
                self.name,
                self.memory.len()
            );
        }
        self.shared.wake.lock().expect("wake lock").stop = true;
        self.shared.cond.notify_one();
        match done.recv_timeout(SHUTDOWN_BOUND) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                if worker.join().is_err() {
                    log::error!("{} sink: its thread panicked", self.name);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => log::warn!(
                "{} sink: still writing to its database after {} s of shutdown; stopping anyway",
                self.name,
                SHUTDOWN_BOUND.as_secs()
            ),
        }
        let spool = &self.shared.spool;
        let waiting = spool.last_seq().saturating_sub(spool.committed());
        (waiting > 0).then(|| {
            format!(
                "{waiting} events wait in {} for the {} database (written when imspector next starts)",
                spool.dir().display(),
                self.name
            )
        })
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        if let Some(waiting) = self.finish() {
            log::warn!("{} sink stopped: {waiting}", self.name);
        }
    }
}

/// The worker thread's state.
struct Worker {
    backend: Box<dyn Backend>,
    shared: Arc<Shared>,
    /// Last seq written, once connected.
    committed: Option<u64>,
    cursor: Option<Cursor>,
    /// Set while the database is away: when to try again and the next wait.
    retry: Option<(Instant, Duration)>,
    /// After an outage: `committed` when the connection came back.
    replay_from: Option<u64>,
    down_reported: bool,
    /// The journal's last seq when this worker started: what a previous run
    /// left for it, unless already committed.
    before_start: Option<u64>,
    /// After the database refused a batch: entries up to this seq are written
    /// one at a time, to find the ones it refuses.
    one_by_one_until: Option<u64>,
    /// Whether the table lacks transactions (told once).
    non_transactional_told: bool,
    /// The last `committed` known, for the backlog metric while down.
    known_committed: u64,
    /// The journal's bytes of the batch being written (kept: one read after
    /// another reuses it).
    buffer: Vec<u8>,
}

impl Worker {
    fn new(backend: Box<dyn Backend>, shared: Arc<Shared>) -> Worker {
        Worker {
            backend,
            before_start: Some(shared.spool.last_seq()),
            shared,
            committed: None,
            cursor: None,
            retry: None,
            replay_from: None,
            down_reported: false,
            one_by_one_until: None,
            non_transactional_told: false,
            known_committed: 0,
            buffer: Vec::new(),
        }
    }

    fn run(mut self) {
        loop {
            let stopping = self.shared.wake.lock().expect("wake lock").stop;
            let due = !matches!(self.retry, Some((at, _)) if Instant::now() < at);
            if self.committed.is_none() && (due || stopping) {
                self.connect();
            }
            let progressed = self.committed.is_some() && self.write_some();
            self.report();
            if progressed {
                continue;
            }
            if stopping {
                return;
            }
            self.wait();
        }
    }

    fn name(&self) -> &'static str {
        self.backend.name()
    }

    fn report(&mut self) {
        if let Some(c) = self.committed {
            self.known_committed = c;
        }
        let backlog = self
            .shared
            .spool
            .last_seq()
            .saturating_sub(self.known_committed);
        crate::metrics::database(self.name(), self.committed.is_some(), backlog);
    }

    fn connect(&mut self) {
        let shared = self.shared.clone();
        let spool = &shared.spool;
        match self.backend.connect(spool.id()) {
            Ok(progress) => {
                let committed = self.resume_after(progress);
                self.committed = Some(committed);
                self.retry = None;
                if self.down_reported {
                    self.replay_from = Some(committed);
                }
                let left = self.before_start.take().unwrap_or(0);
                if left > committed {
                    log::info!(
                        "{} sink: writing {} events spooled before imspector restarted",
                        self.name(),
                        left - committed
                    );
                    if !progress.transactional {
                        log::warn!(
                            "{} sink: if imspector was killed between the row of event {} of {} and its progress, that event is written again (its row then appears twice)",
                            self.name(),
                            committed + 1,
                            spool.dir().display()
                        );
                    }
                }
            }
            Err(e) => self.went_down(e),
        }
    }

    /// Where to go on in the journal, from what the database and the journal
    /// each say was committed; says what does not fit.
    fn resume_after(&mut self, db: Progress) -> u64 {
        let spool = &self.shared.spool;
        let name = self.backend.name();
        let (journal, last) = (spool.committed(), spool.last_seq());
        let dir = spool.dir().display();
        if !db.transactional && !self.non_transactional_told {
            log::warn!(
                "{name} sink: table messages has no transactions (MyISAM?): each row is its own statement followed by its progress, so a crash can repeat at most one row (the log names it); ALTER TABLE messages ENGINE=InnoDB makes it exact"
            );
            self.non_transactional_told = true;
        }
        let start = match db.committed {
            None if !db.has_rows => {
                if journal > 0 {
                    log::info!(
                        "{name} sink: a new or emptied database: it gets the events after {journal}, the last one a database of this sink committed from {dir}"
                    );
                }
                journal
            }
            None => {
                log::warn!(
                    "{name} sink: the database has rows but no imspector_spool row for journal {}: was it deleted? writing the events after {journal}, the last committed from {dir}",
                    spool.id()
                );
                journal
            }
            Some(db_seq) if db_seq > last => {
                log::error!(
                    "{name} sink: the database has events up to {db_seq} of journal {}, but {dir} reaches only {last}: its segments were deleted or replaced; writing the events after {journal}",
                    spool.id()
                );
                journal
            }
            Some(db_seq) if db_seq < journal => {
                log::warn!(
                    "{name} sink: the database has events of journal {} only up to {db_seq}; events {} to {journal} went to another database of this sink (replaced?) and are not written again",
                    spool.id(),
                    db_seq + 1
                );
                journal
            }
            Some(db_seq) => db_seq,
        };
        if let Err(e) = spool.set_committed(start) {
            log::error!("{name} sink: {e}");
        }
        start
    }

    /// Write the next batch from the journal; false when there was nothing to
    /// write or the database failed.
    fn write_some(&mut self) -> bool {
        // The batch borrows the buffer while the worker's state changes.
        let mut buffer = std::mem::take(&mut self.buffer);
        let progressed = self.write_batch(&mut buffer);
        self.buffer = buffer;
        progressed
    }

    fn write_batch(&mut self, buffer: &mut Vec<u8>) -> bool {
        let committed = self.committed.expect("connected");
        let spool = &self.shared.spool;
        let cursor = match self.cursor {
            Some(c) => c,
            None => match spool.start() {
                Ok(c) => c,
                Err(e) => return self.spool_failed(e),
            },
        };
        let max = match self.one_by_one_until {
            Some(until) if committed < until => 1,
            _ => DATABASE_BATCH,
        };
        let (entries, next) = match spool.read(cursor, committed, max, buffer) {
            Ok(read) => read,
            Err(e) => return self.spool_failed(e),
        };
        let Some(last) = entries.last().map(|e| e.seq) else {
            self.cursor = Some(next);
            self.caught_up(committed);
            return false;
        };
        match self.backend.write(spool.id(), &entries, last) {
            Ok(()) => self.written(last, next),
            Err(SinkError::Rejected(why)) if entries.len() == 1 => {
                self.dead_letter(&entries[0], &why);
                // Past it: the database has the progress, or the next connect says where.
                match self.backend.write(spool.id(), &[], last) {
                    Ok(()) => self.written(last, next),
                    Err(e) => {
                        self.went_down(e);
                        false
                    }
                }
            }
            Err(SinkError::Rejected(why)) => {
                log::warn!(
                    "{} sink: the database refused a batch of {} events ({why}); writing them one at a time to find the ones it refuses",
                    self.name(),
                    entries.len()
                );
                self.one_by_one_until = Some(last);
                // Without transactions part of the batch may be in: ask again.
                self.backend.disconnect();
                self.committed = None;
                self.cursor = None;
                true
            }
            Err(e) => {
                self.went_down(e);
                false
            }
        }
    }

    fn written(&mut self, last: u64, next: Cursor) -> bool {
        self.committed = Some(last);
        self.cursor = Some(next);
        if let Err(e) = self.shared.spool.set_committed(last) {
            log::error!("{} sink: {e}", self.name());
        }
        true
    }

    /// Keep an event the database refused, one journal line in the dead-letter file.
    fn dead_letter(&self, entry: &Entry, why: &str) {
        let path = self.shared.spool.dir().join(DEAD_LETTERS);
        let mut line = Vec::new();
        super::spool::encode(&mut line, entry.seq, &entry.event);
        let saved = private::open_append(&path).and_then(|mut f| {
            f.write_all(&line)?;
            let text = std::fs::read(&path)?;
            Ok(text.iter().filter(|&&b| b == b'\n').count())
        });
        match saved {
            Ok(count) => log::error!(
                "{} sink: the database refused event {} ({why}); it is in {} ({count} {} there)",
                self.name(),
                entry.seq,
                path.display(),
                if count == 1 { "event" } else { "events" }
            ),
            Err(e) => log::error!(
                "{} sink: the database refused event {} ({why}) and it could not be kept in {}: {e}; it is LOST",
                self.name(),
                entry.seq,
                path.display()
            ),
        }
    }

    fn caught_up(&mut self, committed: u64) {
        if let Some(from) = self.replay_from.take() {
            log::info!(
                "{} sink is back: {} spooled events replayed",
                self.name(),
                committed - from
            );
            self.down_reported = false;
        }
    }

    fn went_down(&mut self, e: SinkError) {
        self.backend.disconnect();
        self.committed = None;
        if !self.down_reported {
            log::warn!(
                "{} sink is down: {e}; its events are spooled in {} until it is back",
                self.name(),
                self.shared.spool.dir().display()
            );
            self.down_reported = true;
        }
        let wait = self
            .retry
            .map_or(FIRST_BACKOFF, |(_, w)| (w * 2).min(MAX_BACKOFF));
        self.retry = Some((Instant::now() + wait, wait));
    }

    fn spool_failed(&mut self, e: SinkError) -> bool {
        log::error!(
            "{} sink: reading its spool: {e}; no event after this point reaches the database until the journal is repaired",
            self.name()
        );
        let wait = MAX_BACKOFF;
        self.retry = Some((Instant::now() + wait, wait));
        self.committed = None;
        self.backend.disconnect();
        false
    }

    /// Sleep until new events are appended, the next retry is due, or stop.
    fn wait(&mut self) {
        let mut wake = self.shared.wake.lock().expect("wake lock");
        while !wake.appended && !wake.stop {
            match self.retry {
                None => wake = self.shared.cond.wait(wake).expect("wake lock"),
                Some((at, _)) => {
                    let now = Instant::now();
                    if now >= at {
                        break;
                    }
                    wake = self
                        .shared
                        .cond
                        .wait_timeout(wake, at - now)
                        .expect("wake lock")
                        .0;
                }
            }
        }
        wake.appended = false;
    }
}
