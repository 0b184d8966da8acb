//! The event pipeline: sessions send [`LogEvent`]s into a bounded channel; one
//! writer thread owns every sink and writes batches to each.
//!
//! The channel is bounded so that a slow sink slows the chat down rather than
//! growing memory without limit; nothing is dropped. The database sinks are
//! [`spooled::Spooled`]: the writer only appends to their journals on disk, and
//! each has its own thread that talks to its database, so one database that is
//! slow or away never holds up the others.

pub mod build;
pub mod cats;
pub mod file;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod spool;
pub mod spooled;
pub mod sql;
pub mod sqlite;
pub mod syslog;

use std::thread::JoinHandle;
use std::time::Duration;

use crate::event::LogEvent;

/// How many events may wait for the writer.
const CHANNEL_CAPACITY: usize = 4096;
/// Most events written in one batch (one transaction for SQL sinks).
pub const MAX_BATCH: usize = 512;
/// How often sinks get a [`Sink::tick`] while no event comes.
const TICK: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// A place events are stored.
pub trait Sink: Send {
    /// Short name for diagnostics, e.g. `file`, `sqlite`.
    fn name(&self) -> &str;
    /// Store `events` in order. On error none or some may have been stored;
    /// the caller decides whether to retry.
    fn write(&mut self, events: &[LogEvent]) -> Result<(), SinkError>;
    /// Called about once a [`TICK`] while idle, to retry what failed.
    fn tick(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

enum Command {
    Event(LogEvent),
    Flush(std::sync::mpsc::Sender<()>),
}

/// The sending side, cloned into every session.
#[derive(Clone)]
pub struct Logger {
    tx: tokio::sync::mpsc::Sender<Command>,
}

impl Logger {
    /// Queue an event; waits while the writer is behind.
    pub async fn log(&self, event: LogEvent) {
        if self.tx.send(Command::Event(event)).await.is_err() {
            log::error!("event writer has stopped; event lost");
        }
    }

    /// Wait until every event queued before this call has been written.
    pub fn flush_blocking(&self) {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        if self.tx.blocking_send(Command::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv();
        }
    }

    /// Async variant of [`Logger::flush_blocking`].
    pub async fn flush(&self) {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        if self.tx.send(Command::Flush(done_tx)).await.is_ok() {
            let _ = tokio::task::spawn_blocking(move || done_rx.recv()).await;
        }
    }
}

/// Start the writer thread. It ends, after writing everything queued, when the
/// last [`Logger`] clone is dropped.
pub fn spawn_writer(sinks: Vec<Box<dyn Sink>>, echo: bool) -> (Logger, JoinHandle<()>) {
    let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL_CAPACITY);
    let handle = std::thread::Builder::new()
        .name("imspector-writer".into())
        .spawn(move || writer_loop(rx, sinks, echo))
        .expect("spawning the writer thread");
    (Logger { tx }, handle)
}

fn writer_loop(
    mut rx: tokio::sync::mpsc::Receiver<Command>,
    mut sinks: Vec<Box<dyn Sink>>,
    echo: bool,
) {
    // Only for the receive timeout.
    let clock = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("building the writer's timer");
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut flushes = Vec::new();
    loop {
        let received = clock.block_on(async { tokio::time::timeout(TICK, rx.recv()).await });
        let first = match received {
            Ok(Some(command)) => command,
            Ok(None) => break,
            Err(_) => {
                for sink in sinks.iter_mut() {
                    if let Err(e) = sink.tick() {
                        log::error!("{} sink: {e}", sink.name());
                    }
                }
                continue;
            }
        };
        let mut next = Some(first);
        while let Some(command) = next {
            match command {
                Command::Event(e) => batch.push(e),
                Command::Flush(done) => flushes.push(done),
            }
            next = if batch.len() < MAX_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if echo {
            for e in &batch {
                eprintln!("{}", describe(e));
            }
        }
        for sink in sinks.iter_mut() {
            if let Err(e) = sink.write(&batch) {
                log::error!(
                    "{} sink: {} events not written: {e}",
                    sink.name(),
                    batch.len()
                );
            }
        }
        batch.clear();
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
    // Dropping the sinks stops their threads after they wrote what they can.
    drop(sinks);
}

/// One line for the debug output.
fn describe(e: &LogEvent) -> String {
    format!(
        "event: {} {} {} {} {}: type {} filtered {} [{}] {}",
        e.protocol,
        e.client,
        e.local_id,
        if e.outgoing { "->" } else { "<-" },
        e.remote_id,
        e.kind.code(),
        u8::from(e.filtered),
        e.categories,
        e.data
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use imspector_protocols::EventType;

    /// An outgoing IRC message from alice to #chan.
    pub fn event(data: &str) -> LogEvent {
        LogEvent {
            timestamp: 1160853407,
            client: "192.168.0.4:62013".into(),
            protocol: "IRC".into(),
            outgoing: true,
            kind: EventType::Message,
            local_id: "alice".into(),
            remote_id: "#chan".into(),
            filtered: false,
            categories: String::new(),
            data: data.into(),
        }
    }
}
