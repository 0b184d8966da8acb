//! The event pipeline: sessions send [`LogEvent`]s, all those of one read at
//! once, into a channel; one writer thread owns every sink and writes batches
//! to each.
//!
//! At most [`CAPACITY`] events wait, so that a slow sink slows the chat down
//! rather than growing memory without limit; nothing is dropped. The database sinks are
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
pub mod private;
pub mod spool;
pub mod spool_lock;
pub mod spooled;
pub mod sql;
pub mod sqlite;
pub mod syslog;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::event::LogEvent;

/// How many events may wait for the writer (a larger batch of one read
/// waits for all of them).
const CAPACITY: usize = 16 * 1024;
/// Most events handed to the sinks at once (for a database sink: one append
/// to its journal; its own thread then writes up to 8,192 per transaction).
pub const MAX_BATCH: usize = 8192;
/// How often sinks get a [`Sink::tick`] while no event comes (the journals'
/// group commit needs it this often).
const TICK: Duration = spool::GROUP_COMMIT;
/// How long the writer lets events gather after a batch that did not fill:
/// a busy relay's events then reach each file in fewer, larger writes (and
/// the writer is woken less often), while a quiet one's wait unnoticed.
const GATHER: Duration = Duration::from_millis(1);

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The database answered and refused these rows (not a lost connection).
    #[error("{0}")]
    Rejected(String),
    /// Another imspector uses this spool directory.
    #[error("{dir} is in use by imspector pid {pid}: one imspector per spool_dir")]
    Busy { dir: String, pid: String },
    #[error("{0}")]
    Other(String),
}

/// Appended to a text cut to fit a column or a datagram.
pub const CUT_MARKER: &str = " [cut by imspector]";

/// `text` cut (at a character boundary, with [`CUT_MARKER`]) to at most
/// `limit` bytes, or `None` when it fits.
pub fn cut_to(text: &str, limit: usize) -> Option<String> {
    if text.len() <= limit {
        return None;
    }
    let mut end = limit.saturating_sub(CUT_MARKER.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(format!("{}{CUT_MARKER}", &text[..end]))
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
    /// Whether the sink can take events now (`log_failure=block` asks).
    fn healthy(&self) -> bool {
        true
    }
    /// Stop, writing what can be written within a bound; what still waits
    /// and where, for the last line the daemon logs.
    fn finish(&mut self) -> Option<String> {
        None
    }
}

enum Command {
    /// In order; their room in the queue is given back once written.
    Events(Vec<LogEvent>),
    Flush(std::sync::mpsc::Sender<()>),
    /// Answered once what came before is written (in the journals).
    Written(tokio::sync::oneshot::Sender<()>),
    /// SIGHUP: the sinks called `name` give way to `sink`, after what came before.
    Replace {
        name: &'static str,
        sink: Option<Box<dyn Sink>>,
    },
}

/// The sending side, cloned into every session.
#[derive(Clone)]
pub struct Logger {
    tx: tokio::sync::mpsc::UnboundedSender<Command>,
    /// Room for [`CAPACITY`] events: a permit per queued event.
    room: Arc<tokio::sync::Semaphore>,
    /// Whether some sink took the last batch (`log_failure=block` asks).
    storing: Arc<AtomicBool>,
    /// Sees every event on its way in (keyword alerts).
    alerts: Option<Arc<crate::alert::Alerter>>,
}

impl Logger {
    /// This logger, with every event also offered to `alerts`.
    pub fn with_alerts(self, alerts: Arc<crate::alert::Alerter>) -> Logger {
        Logger {
            alerts: Some(alerts),
            ..self
        }
    }

    /// Queue an event; waits while the writer is behind.
    pub async fn log(&self, event: LogEvent) {
        self.log_all(vec![event]).await;
    }

    /// Queue events in their order, with one hand-off to the writer; waits
    /// while the writer is behind.
    pub async fn log_all(&self, events: Vec<LogEvent>) {
        if events.is_empty() {
            return;
        }
        if let Some(alerts) = &self.alerts {
            for event in &events {
                alerts.offer(event);
            }
        }
        let lost = events.len();
        if let Ok(permits) = self.room.acquire_many(room_for(lost)).await {
            permits.forget();
        }
        if self.tx.send(Command::Events(events)).is_err() {
            log::error!("event writer has stopped; {lost} events lost");
        }
    }

    /// Put `sink` in the place of the sinks called `name` (none: remove
    /// them), once the events queued before are written to them.
    pub fn replace_sink(&self, name: &'static str, sink: Option<Box<dyn Sink>>) {
        if self.tx.send(Command::Replace { name, sink }).is_err() {
            log::error!("event writer has stopped; the {name} sink was not replaced");
        }
    }

    /// Whether some sink can store events now: false while every sink fails
    /// (or none is configured).
    pub fn storing(&self) -> bool {
        self.storing.load(Ordering::Relaxed)
    }

    /// Wait until the events queued before this call are written (in the
    /// journals, for database sinks).
    pub async fn written(&self) {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Command::Written(done_tx)).is_ok() {
            let _ = done_rx.await;
        }
    }

    /// Wait until every event queued before this call has been written.
    pub fn flush_blocking(&self) {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        if self.tx.send(Command::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv();
        }
    }

    /// Async variant of [`Logger::flush_blocking`].
    pub async fn flush(&self) {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        if self.tx.send(Command::Flush(done_tx)).is_ok() {
            let _ = tokio::task::spawn_blocking(move || done_rx.recv()).await;
        }
    }
}

/// Start the writer thread. It ends, after writing everything queued, when the
/// last [`Logger`] clone is dropped, and returns what still waits in journals
/// (empty when every event is written).
pub fn spawn_writer(sinks: Vec<Box<dyn Sink>>, echo: bool) -> (Logger, JoinHandle<Vec<String>>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let room = Arc::new(tokio::sync::Semaphore::new(CAPACITY));
    let storing = Arc::new(AtomicBool::new(!sinks.is_empty()));
    let health = storing.clone();
    let freed = room.clone();
    let handle = std::thread::Builder::new()
        .name("imspector-writer".into())
        .spawn(move || writer_loop(rx, &freed, sinks, echo, &health))
        .expect("spawning the writer thread");
    (
        Logger {
            tx,
            room,
            storing,
            alerts: None,
        },
        handle,
    )
}

/// The permits a batch of `events` takes (a batch larger than the queue takes it all).
fn room_for(events: usize) -> u32 {
    events.min(CAPACITY) as u32
}

fn writer_loop(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Command>,
    room: &tokio::sync::Semaphore,
    mut sinks: Vec<Box<dyn Sink>>,
    echo: bool,
    storing: &AtomicBool,
) -> Vec<String> {
    let update_health = |sinks: &[Box<dyn Sink>]| {
        storing.store(sinks.iter().any(|s| s.healthy()), Ordering::Relaxed)
    };
    // Only for the receive timeout.
    let clock = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("building the writer's timer");
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut flushes = Vec::new();
    let mut written = Vec::new();
    let mut permits = 0;
    let mut replacements = Vec::new();
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
                update_health(&sinks);
                continue;
            }
        };
        let mut next = Some(first);
        while let Some(command) = next {
            match command {
                Command::Events(events) => {
                    permits += room_for(events.len()) as usize;
                    if batch.is_empty() {
                        // The hand-off's vector is the batch: no event moved.
                        batch = events;
                    } else {
                        batch.extend(events);
                    }
                }
                Command::Flush(done) => flushes.push(done),
                Command::Written(done) => written.push(done),
                Command::Replace { name, sink } => replacements.push((name, sink)),
            }
            // What comes after a replacement goes to the new sink.
            next = if batch.len() < MAX_BATCH && replacements.is_empty() {
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
            let written = sink.write(&batch);
            crate::metrics::sink_written(sink.name(), written.is_ok());
            if let Err(e) = written {
                log::error!(
                    "{} sink: {} events not written: {e}",
                    sink.name(),
                    batch.len()
                );
            }
        }
        // Only a batch of events that did not fill: a flush alone gains nothing.
        let gather = !batch.is_empty() && batch.len() < MAX_BATCH;
        batch.clear();
        room.add_permits(std::mem::take(&mut permits));
        for (name, sink) in replacements.drain(..) {
            for mut old in sinks.extract_if(.., |s| s.name() == name) {
                old.finish();
            }
            sinks.extend(sink);
        }
        update_health(&sinks);
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
        for done in written.drain(..) {
            let _ = done.send(());
        }
        if gather {
            std::thread::sleep(GATHER);
        }
    }
    sinks.iter_mut().filter_map(|sink| sink.finish()).collect()
}

/// One line for the debug output.
fn describe(e: &LogEvent) -> String {
    format!(
        "event: {} {} {} {} {}: type {} filtered {} [{}] {}",
        e.protocol,
        e.client,
        file::escape_text(&e.local_id),
        if e.outgoing { "->" } else { "<-" },
        file::escape_text(&e.remote_id),
        e.kind.code(),
        u8::from(e.filtered),
        e.categories,
        file::escape_text(&e.data)
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use imspector_protocols::EventType;

    #[test]
    fn text_is_cut_at_a_character_boundary_with_a_marker() {
        assert_eq!(cut_to("short", 100), None);
        let cut = cut_to(&"é".repeat(100), 50).unwrap();
        assert!(cut.len() <= 50 && cut.ends_with(CUT_MARKER), "{cut}");
        assert!(cut.starts_with("ééé"));
    }

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

    /// Keeps the text of every event it is given.
    struct Recorder(Arc<std::sync::Mutex<Vec<String>>>);

    impl Sink for Recorder {
        fn name(&self) -> &str {
            "recorder"
        }
        fn write(&mut self, events: &[LogEvent]) -> Result<(), SinkError> {
            let mut seen = self.0.lock().unwrap();
            seen.extend(events.iter().map(|e| e.data.clone()));
            Ok(())
        }
    }

    #[test]
    fn a_batch_larger_than_the_queue_is_written_whole_and_in_order() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (logger, writer) = spawn_writer(vec![Box::new(Recorder(seen.clone()))], false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let texts: Vec<String> = (0..CAPACITY + 10).map(|n| n.to_string()).collect();
        let logging = async {
            logger
                .log_all(texts.iter().map(|t| event(t)).collect())
                .await;
            // Waits for room: the first batch's permits must come back.
            logger.log(event("last")).await;
            logger.flush().await;
        };
        let logged = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(60), logging).await });
        assert!(logged.is_ok(), "the logger waited for room that never came");
        drop(logger);
        assert!(writer.join().unwrap().is_empty());
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), texts.len() + 1);
        assert_eq!(seen[..texts.len()], texts[..]);
        assert_eq!(seen.last().map(String::as_str), Some("last"));
    }

    #[test]
    fn the_echo_shows_control_characters_escaped() {
        let mut e = event("\x1b]0;owned\x07 next\nline");
        e.remote_id = "#c\rforged".into();
        assert_eq!(
            describe(&e),
            "event: IRC 192.168.0.4:62013 alice -> #c\\nforged: type 1 filtered 0 [] \\x1b]0;owned\\x07 next\\nline"
        );
    }
}
