//! `sqlite_file`: the `messages` table in an SQLite database file.

use std::ffi::{c_int, CStr};
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{ffi, params, Connection, OptionalExtension};

use super::spool::Entry;
use super::spooled::{Backend, Progress};
use super::sql::{values, Dialect, Layout, Value};
use super::{private, SinkError};

const D: Dialect = Dialect::Sqlite;

/// Most rows of one `INSERT`: executing a statement costs about as much as
/// binding and inserting a few rows, so a batch goes in statements of this
/// many rows, and its tail in statements of fewer (powers of two, so that only
/// a handful of statements are ever prepared).
const ROWS_PER_INSERT: usize = 64;

pub struct SqliteBackend {
    path: PathBuf,
    open: Option<Open>,
}

struct Open {
    /// Dropped first: stopped before the writing connection closes.
    checkpointer: Checkpointer,
    /// The `INSERT` of `1 << i` rows at `i`, up to [`ROWS_PER_INSERT`];
    /// finalized before the connection closes.
    inserts: Vec<Insert>,
    conn: Connection,
    layout: Layout,
}

/// Rows of the next `INSERT` when `left` rows remain.
fn statement_rows(left: usize) -> usize {
    ROWS_PER_INSERT.min(1 << left.ilog2())
}

impl SqliteBackend {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteBackend {
            path: path.into(),
            open: None,
        }
    }

    fn err(&self, e: rusqlite::Error) -> SinkError {
        use rusqlite::ErrorCode::{ConstraintViolation, TooBig, TypeMismatch};
        let text = format!("{}: {e}", self.path.display());
        match e.sqlite_error_code() {
            Some(ConstraintViolation | TooBig | TypeMismatch) => SinkError::Rejected(text),
            _ => SinkError::Other(text),
        }
    }
}

impl Backend for SqliteBackend {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn connect(&mut self, spool: &str) -> Result<Progress, SinkError> {
        // SQLite gives its -wal and -shm files the database file's mode.
        private::touch(&self.path).map_err(|source| SinkError::Io {
            path: self.path.display().to_string(),
            source,
        })?;
        let (conn, columns, checkpoints) =
            (|| -> rusqlite::Result<(Connection, Vec<String>, Connection)> {
                let conn = Connection::open(&self.path)?;
                // Other programs may read the file while we write.
                conn.busy_timeout(Duration::from_secs(5))?;
                // WAL lets readers work during our writes, and a commit needs no
                // fsync of its own (six times the events per second here). A crash of
                // imspector loses nothing; after a power loss the last commits may
                // be rolled back, with their progress, and are written again from
                // the spool as far as it reached the disk.
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn.pragma_update(None, "synchronous", "NORMAL")?;
                // The checkpointer's thread copies the WAL into the file instead.
                conn.pragma_update(None, "wal_autocheckpoint", 0)?;
                conn.execute_batch(&format!(
                    "{}; {};",
                    D.create_messages(),
                    D.create_progress()
                ))?;
                let probe = conn.prepare(D.probe_messages())?;
                let columns = probe.column_names().iter().map(|c| c.to_string()).collect();
                drop(probe);
                let checkpoints = Connection::open(&self.path)?;
                checkpoints.pragma_update(None, "synchronous", "NORMAL")?;
                // How long a restarting checkpoint waits for the writer and readers.
                checkpoints.busy_timeout(Duration::from_millis(100))?;
                Ok((conn, columns, checkpoints))
            })()
            .map_err(|e| self.err(e))?;
        let layout = Layout::detect(&columns)?;
        let progress = (|| -> rusqlite::Result<Progress> {
            let seq = conn
                .query_row(&D.select_progress(), [spool], |r| r.get::<_, i64>(0))
                .optional()?;
            let any = conn.query_row(D.any_message(), [], |_| Ok(())).optional()?;
            Ok(Progress {
                committed: seq.map(|s| s as u64),
                has_rows: any.is_some(),
                transactional: true,
            })
        })()
        .map_err(|e| self.err(e))?;
        let inserts = (0..=ROWS_PER_INSERT.ilog2())
            .map(|i| Insert::prepare(&conn, &D.insert_messages(layout, 1 << i)))
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))?;
        let checkpointer = Checkpointer::start(checkpoints).map_err(|e| {
            SinkError::Other(format!("sqlite sink: starting its checkpoint thread: {e}"))
        })?;
        self.open = Some(Open {
            checkpointer,
            conn,
            layout,
            inserts,
        });
        Ok(progress)
    }

    fn write(&mut self, spool: &str, entries: &[Entry], last: u64) -> Result<(), SinkError> {
        let open = self.open.as_mut().expect("connected");
        let result = (|| {
            let tx = open.conn.transaction()?;
            {
                let mut rest = entries;
                while !rest.is_empty() {
                    let rows = statement_rows(rest.len());
                    let (these, after) = rest.split_at(rows);
                    let values = these.iter().flat_map(|e| values(&e.event, open.layout));
                    open.inserts[rows.ilog2() as usize].run(&tx, values)?;
                    rest = after;
                }
                tx.execute(&D.upsert_progress(), params![spool, last as i64])?;
            }
            tx.commit()
        })();
        if result.is_ok() {
            open.checkpointer.committed(entries.len());
        }
        result.map_err(|e| self.err(e))
    }

    fn delete_before(&mut self, before: i64, batch: usize) -> Result<u64, SinkError> {
        let open = self.open.as_mut().expect("connected");
        let deleted = open.conn.execute(&D.delete_before(batch), [before]);
        deleted.map(|n| n as u64).map_err(|e| self.err(e))
    }

    fn disconnect(&mut self) {
        self.open = None;
    }
}

/// A prepared `INSERT` that SQLite reads each text value of where it is
/// (`SQLITE_STATIC`), where rusqlite's binding has it copy the value first
/// (`SQLITE_TRANSIENT`: a copy and an allocation per value).
struct Insert(NonNull<ffi::sqlite3_stmt>);

// SAFETY: a statement may move between threads with its connection (rusqlite
// opens connections in SQLite's multi-thread mode); `Open` keeps both together.
unsafe impl Send for Insert {}

impl Insert {
    fn prepare(conn: &Connection, sql: &str) -> rusqlite::Result<Insert> {
        let mut stmt = std::ptr::null_mut();
        // SAFETY: the handle is valid while `conn` lives, and `Open` finalizes
        // its statements before it closes the connection.
        let rc = unsafe {
            let (text, len) = (sql.as_ptr().cast(), sql.len() as c_int);
            ffi::sqlite3_prepare_v2(conn.handle(), text, len, &mut stmt, std::ptr::null_mut())
        };
        match NonNull::new(stmt) {
            Some(stmt) if rc == ffi::SQLITE_OK => Ok(Insert(stmt)),
            _ => Err(failure(conn, rc)),
        }
    }

    /// Insert the rows whose parameters are `values`, one for each of the
    /// statement's. SQLite keeps the pointers to the text after this returns,
    /// but only reads them in a step, and a step is only taken once every
    /// parameter is bound anew (so they are not cleared: that cost as much as
    /// a tenth of the binding).
    fn run<'a>(
        &mut self,
        conn: &Connection,
        values: impl Iterator<Item = Value<'a>>,
    ) -> rusqlite::Result<()> {
        let stmt = self.0.as_ptr();
        let mut rc = ffi::SQLITE_OK;
        let mut bound = 0;
        for (at, value) in (1..).zip(values) {
            // SAFETY: `stmt` is a live statement of `conn`; the text outlives
            // the step below, the only place SQLite reads it.
            rc = unsafe {
                match value {
                    Value::Time(t) => ffi::sqlite3_bind_int64(stmt, at, t),
                    Value::Int(i) => ffi::sqlite3_bind_int(stmt, at, i),
                    // Text, so that sqlite3 and other readers show it as such.
                    Value::Text(t) | Value::Data(t) => ffi::sqlite3_bind_text64(
                        stmt,
                        at,
                        t.as_ptr().cast(),
                        t.len() as u64,
                        ffi::SQLITE_STATIC(),
                        ffi::SQLITE_UTF8 as u8,
                    ),
                }
            };
            if rc != ffi::SQLITE_OK {
                break;
            }
            bound = at;
        }
        // SAFETY: as above.
        let parameters = unsafe { ffi::sqlite3_bind_parameter_count(stmt) };
        if rc == ffi::SQLITE_OK && bound != parameters {
            let message = format!("{bound} values for an INSERT of {parameters} parameters");
            return Err(rusqlite::Error::SqliteFailure(
                ffi::Error::new(ffi::SQLITE_RANGE),
                Some(message),
            ));
        }
        if rc == ffi::SQLITE_OK {
            // SAFETY: as above.
            rc = unsafe { ffi::sqlite3_step(stmt) };
        }
        // SQLite's message is taken before the reset.
        let done = (rc == ffi::SQLITE_DONE)
            .then_some(())
            .ok_or_else(|| failure(conn, rc));
        // SAFETY: as above.
        unsafe { ffi::sqlite3_reset(stmt) };
        done
    }
}

impl Drop for Insert {
    fn drop(&mut self) {
        // SAFETY: the statement is live and never used again.
        unsafe { ffi::sqlite3_finalize(self.0.as_ptr()) };
    }
}

/// The error `rc` of a call on `conn`, with SQLite's message.
fn failure(conn: &Connection, rc: c_int) -> rusqlite::Error {
    // SAFETY: the handle is valid while `conn` lives; the message is copied
    // before any other call on it.
    let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(conn.handle())) };
    let message = message.to_string_lossy().into_owned();
    rusqlite::Error::SqliteFailure(ffi::Error::new(rc), Some(message))
}

/// A checkpoint after this many rows (some 700 pages of chat) or this many
/// transactions (each writes 3 or 4 pages besides its rows), as SQLite's own
/// after each 1,000 pages. Each checkpoint waits for two fsyncs and copies
/// again the pages every transaction changes, so more often costs more (every
/// 4,096 rows: 0.57 against 0.50 us of CPU per row).
const CHECKPOINT_ROWS: u64 = 16_384;
const CHECKPOINT_COMMITS: u64 = 250;
/// Pages the WAL may reach before a checkpoint also makes the next
/// transaction write it from its start again (32 MiB at 4 KiB a page).
const WAL_PAGES: i64 = 8192;

/// Copies the pages committed to the WAL into the database file, on a thread
/// and connection of its own: the writing thread spent a sixth of its time on
/// it. Readers and the writer go on meanwhile (a passive checkpoint), except
/// when the WAL has grown past [`WAL_PAGES`]: the WAL only starts again from
/// its beginning at a transaction that finds every page of it copied, which a
/// writer that never pauses does not, so the checkpointer then holds the
/// writer back while it copies the last pages (a restarting checkpoint).
struct Checkpointer {
    shared: Arc<(Mutex<Copies>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Copies {
    /// Rows and transactions committed since the last checkpoint began.
    rows: u64,
    commits: u64,
    stop: bool,
}

impl Copies {
    fn due(&self) -> bool {
        self.rows >= CHECKPOINT_ROWS || self.commits >= CHECKPOINT_COMMITS
    }
}

impl Checkpointer {
    /// Checkpoints through `conn`, a second connection to the database.
    fn start(conn: Connection) -> std::io::Result<Checkpointer> {
        let shared = Arc::new((Mutex::new(Copies::default()), Condvar::new()));
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("imspector-wal".into())
            .spawn(move || checkpoints(&conn, &state))?;
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }

    /// The writer committed `rows` rows.
    fn committed(&self, rows: usize) {
        let (copies, cond) = &*self.shared;
        let mut copies = copies.lock().expect("checkpoint lock");
        copies.rows += rows as u64;
        copies.commits += 1;
        if copies.due() {
            cond.notify_one();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (copies, cond) = &*self.shared;
        copies.lock().expect("checkpoint lock").stop = true;
        cond.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The checkpointer's thread: a checkpoint each time one is due.
fn checkpoints(conn: &Connection, shared: &(Mutex<Copies>, Condvar)) {
    let (copies, cond) = shared;
    let (mut restart, mut failing) = (false, false);
    loop {
        {
            let idle = |c: &mut Copies| !c.stop && !c.due();
            let mut copies = cond
                .wait_while(copies.lock().expect("checkpoint lock"), idle)
                .expect("checkpoint lock");
            if copies.stop {
                return;
            }
            (copies.rows, copies.commits) = (0, 0);
        }
        let mode = if restart { "RESTART" } else { "PASSIVE" };
        // Busy (another checkpoint ran, or readers kept the WAL), pages in the WAL.
        let done = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        });
        match done {
            Ok((busy, pages)) => {
                // A restart is seen at the next transaction: the next
                // checkpoint is a passive one, which reports the WAL anew.
                restart = !restart && busy == 0 && pages > WAL_PAGES;
                failing = false;
            }
            // The writer's commits do not depend on it; the next one tries again.
            Err(e) if !failing => {
                log::warn!("sqlite sink: copying the WAL into the database: {e}");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::tests::event;
    use std::time::Instant;

    /// The rows reach the database file itself while the sink goes on
    /// writing, not only when it closes (the writing connection copies no
    /// page from the WAL itself).
    #[test]
    fn committed_rows_are_copied_into_the_file_while_the_sink_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imspector.db");
        let mut backend = SqliteBackend::new(&path);
        backend.connect("journal").unwrap();
        // Only the header so far: the tables are in the WAL.
        let empty = std::fs::metadata(&path).unwrap().len();
        for seq in 1..=CHECKPOINT_COMMITS {
            let hello = event("hello");
            let entry = Entry {
                seq,
                event: (&hello).into(),
            };
            backend.write("journal", &[entry], seq).unwrap();
        }
        let start = Instant::now();
        while std::fs::metadata(&path).unwrap().len() == empty {
            assert!(start.elapsed() < Duration::from_secs(10), "nothing copied");
            std::thread::sleep(Duration::from_millis(10));
        }
        let rows: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, CHECKPOINT_COMMITS as i64);
    }

    /// Bindings are not cleared after a step, so a step with a parameter
    /// left unbound would read the text of an earlier one: it is refused.
    #[test]
    fn an_insert_is_not_run_with_fewer_values_than_parameters() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a text, b text)")
            .unwrap();
        let mut insert = Insert::prepare(&conn, "INSERT INTO t VALUES (?, ?)").unwrap();
        let both = [Value::Text("one"), Value::Text("two")];
        insert.run(&conn, both.into_iter()).unwrap();
        let err = insert.run(&conn, [Value::Text("three")].into_iter());
        assert!(err
            .unwrap_err()
            .to_string()
            .contains("1 values for an INSERT of 2"));
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1);
    }

    /// A refused row ends the whole transaction (`INSERT OR ROLLBACK`): none
    /// of the batch nor its progress is in, and the next write goes in.
    #[test]
    fn a_refused_row_leaves_nothing_of_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imspector.db");
        let create = D.create_messages().replace(
            "eventdata blob NOT NULL",
            "eventdata blob NOT NULL CHECK (eventdata != 'refused')",
        );
        Connection::open(&path)
            .unwrap()
            .execute(&create, [])
            .unwrap();
        let mut backend = SqliteBackend::new(&path);
        backend.connect("journal").unwrap();
        let events = [event("one"), event("refused"), event("three")];
        let entries: Vec<Entry> = (1..)
            .zip(&events)
            .map(|(seq, e)| Entry {
                seq,
                event: e.into(),
            })
            .collect();
        let refused = backend.write("journal", &entries, 3);
        assert!(
            matches!(refused, Err(SinkError::Rejected(_))),
            "{refused:?}"
        );
        let count = |backend: &SqliteBackend| -> (i64, i64) {
            let conn = &backend.open.as_ref().unwrap().conn;
            let rows = conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0));
            let progress = conn.query_row("SELECT count(*) FROM imspector_spool", [], |r| r.get(0));
            (rows.unwrap(), progress.unwrap())
        };
        assert_eq!(count(&backend), (0, 0));
        backend.write("journal", &entries[..1], 1).unwrap();
        assert_eq!(count(&backend), (1, 1));
    }
}
