//! `sqlite_file`: the `messages` table in an SQLite database file.

use std::path::PathBuf;
use std::time::Duration;

use rusqlite::types::ToSqlOutput;
use rusqlite::{params, Connection, OptionalExtension};

use super::spool::Entry;
use super::spooled::Backend;
use super::sql::{values, Dialect, Layout, Value};
use super::SinkError;

const D: Dialect = Dialect::Sqlite;

pub struct SqliteBackend {
    path: PathBuf,
    open: Option<(Connection, Layout)>,
}

impl SqliteBackend {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteBackend {
            path: path.into(),
            open: None,
        }
    }

    fn err(&self, e: rusqlite::Error) -> SinkError {
        SinkError::Other(format!("{}: {e}", self.path.display()))
    }
}

impl Backend for SqliteBackend {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn connect(&mut self, spool: &str) -> Result<u64, SinkError> {
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
        let seq = (|| -> rusqlite::Result<u64> {
            let seq = conn
                .query_row(&D.select_progress(), [spool], |r| r.get::<_, i64>(0))
                .optional()?;
            if seq.is_none() {
                conn.execute(&D.insert_progress(), [spool])?;
            }
            Ok(seq.unwrap_or(0) as u64)
        })()
        .map_err(|e| self.err(e))?;
        self.open = Some((conn, layout));
        Ok(seq)
    }

    fn write(&mut self, spool: &str, entries: &[Entry]) -> Result<(), SinkError> {
        let (conn, layout) = self.open.as_mut().expect("connected");
        let layout = *layout;
        let result = (|| {
            let tx = conn.transaction()?;
            {
                let mut insert = tx.prepare_cached(&D.insert_message(layout))?;
                for entry in entries {
                    let values: Vec<_> = values(&entry.event, layout)
                        .into_iter()
                        .map(|v| match v {
                            Value::Time(t) => ToSqlOutput::from(t),
                            Value::Int(i) => ToSqlOutput::from(i),
                            // Text, so that sqlite3 and other readers show it as such.
                            Value::Text(t) | Value::Data(t) => ToSqlOutput::from(t),
                        })
                        .collect();
                    insert.execute(rusqlite::params_from_iter(values))?;
                }
                let last = entries.last().map_or(0, |e| e.seq) as i64;
                tx.execute(&D.update_progress(), params![last, spool])?;
            }
            tx.commit()
        })();
        result.map_err(|e| self.err(e))
    }

    fn disconnect(&mut self) {
        self.open = None;
    }
}
