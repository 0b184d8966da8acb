//! A database sink that never loses or delays events: [`Spooled`] appends each
//! batch to the sink's on-disk journal ([`Spool`]) and returns; a worker thread
//! of its own writes the journal to the database, in order, reconnecting with
//! backoff while the database is away. A slow or dead database therefore only
//! holds up its own worker, never the writer thread or the other sinks.
//!
//! Exactly once: the database keeps, in a table `imspector_spool`, the last
//! sequence number committed from each journal, updated in the same transaction
//! as the rows. After a reconnect or a restart the worker asks for it and skips
//! what is already there, so a crash at any point neither loses nor repeats an
//! event (as long as the spool directory and the database both survive).

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::spool::{Cursor, Entry, Spool};
use super::{Sink, SinkError};
use crate::event::LogEvent;

/// Most events written to a database in one transaction. A commit costs the
/// same for one row as for thousands (its fsyncs), so a backlog goes in big
/// transactions.
const DATABASE_BATCH: usize = 8192;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A database as the worker uses it.
pub trait Backend: Send + 'static {
    /// `sqlite`, `mysql`, `postgres`: names the sink in log lines.
    fn name(&self) -> &'static str;
    /// Connect if not connected and create missing tables; the last sequence
    /// number committed from journal `spool` (0 if none).
    fn connect(&mut self, spool: &str) -> Result<u64, SinkError>;
    /// In one transaction: insert `entries` and record the last one's seq as
    /// committed from `spool`.
    fn write(&mut self, spool: &str, entries: &[Entry]) -> Result<(), SinkError>;
    /// Forget the connection after an error, so the next `connect` starts anew.
    fn disconnect(&mut self);
}

pub struct Spooled {
    name: &'static str,
    shared: Arc<Shared>,
    /// Events the journal could not take (disk full...), oldest first.
    memory: Vec<LogEvent>,
    spool_failing: bool,
    worker: Option<JoinHandle<()>>,
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
    /// Open the journal in `spool_dir` and start the worker for `backend`.
    pub fn start(
        backend: Box<dyn Backend>,
        spool_dir: &std::path::Path,
    ) -> Result<Spooled, SinkError> {
        let name = backend.name();
        let shared = Arc::new(Shared {
            spool: Spool::open(spool_dir)?,
            wake: Mutex::default(),
            cond: Condvar::new(),
        });
        let worker_shared = shared.clone();
        let worker = std::thread::Builder::new()
            .name(format!("imspector-{name}"))
            .spawn(move || Worker::new(backend, worker_shared).run())
            .map_err(|e| SinkError::Other(format!("{name} sink: starting its thread: {e}")))?;
        Ok(Spooled {
            name,
            shared,
            memory: Vec::new(),
            spool_failing: false,
            worker: Some(worker),
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
                    self.spool_failing = false;
                }
                self.memory.clear();
                self.shared.wake.lock().expect("wake lock").appended = true;
                self.shared.cond.notify_one();
            }
            Err(e) => {
                if !self.spool_failing {
                    log::error!(
                        "{} sink: cannot write its spool: {e}; events are held in memory until it can",
                        self.name
                    );
                    self.spool_failing = true;
                }
            }
        }
    }
}

impl Sink for Spooled {
    fn name(&self) -> &str {
        self.name
    }

    fn write(&mut self, events: &[LogEvent]) -> Result<(), SinkError> {
        self.memory.extend_from_slice(events);
        self.save();
        Ok(())
    }

    fn tick(&mut self) -> Result<(), SinkError> {
        self.save();
        Ok(())
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
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
        if let Some(worker) = self.worker.take() {
            if worker.join().is_err() {
                log::error!("{} sink: its thread panicked", self.name);
            }
        }
    }
}

/// The worker thread's state.
struct Worker {
    backend: Box<dyn Backend>,
    shared: Arc<Shared>,
    /// Last seq in the database, once connected.
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

    fn connect(&mut self) {
        let spool = &self.shared.spool;
        match self.backend.connect(spool.id()) {
            Ok(committed) => {
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
                }
            }
            Err(e) => self.went_down(e),
        }
    }

    /// Write the next batch from the journal; false when there was nothing to
    /// write or the database failed.
    fn write_some(&mut self) -> bool {
        let committed = self.committed.expect("connected");
        let spool = &self.shared.spool;
        let cursor = match self.cursor {
            Some(c) => c,
            None => match spool.start() {
                Ok(c) => c,
                Err(e) => return self.spool_failed(e),
            },
        };
        let (entries, next) = match spool.read(cursor, committed, DATABASE_BATCH) {
            Ok(read) => read,
            Err(e) => return self.spool_failed(e),
        };
        if entries.is_empty() {
            self.cursor = Some(next);
            self.caught_up(committed);
            return false;
        }
        match self.backend.write(spool.id(), &entries) {
            Ok(()) => {
                self.committed = entries.last().map(|e| e.seq);
                self.cursor = Some(next);
                true
            }
            Err(e) => {
                self.went_down(e);
                false
            }
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
        log::error!("{} sink: reading its spool: {e}", self.name());
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
