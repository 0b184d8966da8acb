//! `sqlite_file`: the `messages` table in an SQLite database file.

use std::path::PathBuf;
use std::time::Duration;

use rusqlite::types::ToSqlOutput;
use rusqlite::{params, Connection, OptionalExtension};

use super::spool::Entry;
use super::spooled::{Backend, Progress};
use super::sql::{values, Dialect, Layout, Value};
use super::{private, SinkError};

const D: Dialect = Dialect::Sqlite;

/// Most rows of one `INSERT`: executing a statement costs about as much as
/// binding and inserting a few rows, so a batch goes in statements of this
/// many rows, and its tail in statements of fewer (powers of two, so that only
/// a handful of statements are ever prepared).
const ROWS_PER_INSERT: usize = 32;

pub struct SqliteBackend {
    path: PathBuf,
    open: Option<Open>,
}

struct Open {
    conn: Connection,
    layout: Layout,
    /// The `INSERT` of `1 << i` rows at `i`, up to [`ROWS_PER_INSERT`].
    inserts: Vec<String>,
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
        let (conn, columns) = (|| -> rusqlite::Result<(Connection, Vec<String>)> {
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
            conn.execute_batch(&format!(
                "{}; {};",
                D.create_messages(),
                D.create_progress()
            ))?;
            let probe = conn.prepare(D.probe_messages())?;
            let columns = probe.column_names().iter().map(|c| c.to_string()).collect();
            drop(probe);
            Ok((conn, columns))
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
            .map(|i| D.insert_messages(layout, 1 << i))
            .collect();
        self.open = Some(Open {
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
                    let sql = &open.inserts[rows.ilog2() as usize];
                    let mut insert = tx.prepare_cached(sql)?;
                    let values = these.iter().flat_map(|e| values(&e.event, open.layout));
                    // Bound in place: no list of parameters made per row.
                    for (at, value) in values.enumerate() {
                        let value = match value {
                            Value::Time(t) => ToSqlOutput::from(t),
                            Value::Int(i) => ToSqlOutput::from(i),
                            // Text, so that sqlite3 and other readers show it as such.
                            Value::Text(t) | Value::Data(t) => ToSqlOutput::from(t),
                        };
                        insert.raw_bind_parameter(at + 1, value)?;
                    }
                    insert.raw_execute()?;
                    rest = after;
                }
                tx.execute(&D.upsert_progress(), params![spool, last as i64])?;
            }
            tx.commit()
        })();
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
