//! `mysql_server` and friends: the `messages` table in MySQL or MariaDB.

use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder, TxOpts};

use super::spool::Entry;
use super::spooled::{Backend, Progress};
use super::sql::{values, Dialect, Layout, Value, COLUMNS};
use super::{cut_to, SinkError};

const D: Dialect = Dialect::Mysql;
/// Connecting, reading and writing give up after this long, so that a
/// vanished server is noticed (longer than the statement timeout).
const TIMEOUT: Duration = Duration::from_secs(30);
/// A statement waiting for a lock gives up after this long (seconds).
const LOCK_WAIT_SECS: u32 = 10;

/// Where and as whom to connect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MysqlTarget {
    pub server: String,
    pub port: Option<u16>,
    /// A unix socket; used instead of `server` and `port`.
    pub socket: Option<String>,
    pub database: String,
    pub username: String,
    pub password: String,
}

impl MysqlTarget {
    /// How to connect: the socket if there is one, else server and port,
    /// with the I/O timeouts of every statement.
    pub fn opts(&self) -> OptsBuilder {
        OptsBuilder::new()
            .ip_or_hostname(Some(self.server.clone()))
            .tcp_port(self.port.unwrap_or(3306))
            .socket(self.socket.clone())
            .prefer_socket(false)
            .db_name(Some(self.database.clone()))
            .user(Some(self.username.clone()))
            .pass(Some(self.password.clone()))
            .tcp_connect_timeout(Some(TIMEOUT))
            .read_timeout(Some(TIMEOUT))
            .write_timeout(Some(TIMEOUT))
    }
}

/// The columns of `messages`, whether its engine has transactions, and the
/// size in bytes of each column (`None` when unbounded or not text).
type Described = (Vec<String>, bool, Vec<(String, Option<u64>)>);

/// What the worker learnt of `messages` when it connected.
struct Table {
    layout: Layout,
    transactional: bool,
    /// The size in bytes of each bounded column, in [`COLUMNS`] order.
    limits: Vec<Option<usize>>,
}

pub struct MysqlBackend {
    target: MysqlTarget,
    open: Option<(Conn, Table)>,
}

/// Server errors about the rows themselves (data too long, bad string,
/// out of range, NULL, packet too large, constraint): anything else
/// (timeouts, lost tables, permissions) is the database being unusable.
const REJECTING: [u16; 10] = [1048, 1062, 1153, 1264, 1265, 1292, 1300, 1366, 1406, 4025];

impl MysqlBackend {
    pub fn new(target: MysqlTarget) -> Self {
        MysqlBackend { target, open: None }
    }

    fn err(&self, e: mysql::Error) -> SinkError {
        let t = &self.target;
        let place = match &t.socket {
            Some(socket) => socket.clone(),
            None => format!("{}:{}", t.server, t.port.unwrap_or(3306)),
        };
        let rejected = matches!(&e, mysql::Error::MySqlError(s) if REJECTING.contains(&s.code));
        let text = format!("mysql {place} database {}: {e}", t.database);
        if rejected {
            SinkError::Rejected(text)
        } else {
            SinkError::Other(text)
        }
    }

    fn open(&self, spool: &str) -> Result<(Conn, Table, Progress), SinkError> {
        let t = &self.target;
        let mut conn = Conn::new(t.opts()).map_err(|e| self.err(e))?;
        let described = (|| -> mysql::Result<Described> {
            conn.query_drop("SET NAMES utf8mb4")?;
            conn.query_drop(format!(
                "SET SESSION lock_wait_timeout = {LOCK_WAIT_SECS}, innodb_lock_wait_timeout = {LOCK_WAIT_SECS}"
            ))?;
            conn.query_drop(D.create_messages())?;
            conn.query_drop(D.create_progress())?;
            let probe = conn.prep(D.probe_messages())?;
            let columns = probe.columns();
            let names = columns.iter().map(|c| c.name_str().into_owned()).collect();
            let transactions: Option<String> = conn.query_first(
                "SELECT e.TRANSACTIONS FROM information_schema.TABLES t \
                 JOIN information_schema.ENGINES e ON e.ENGINE = t.ENGINE \
                 WHERE t.TABLE_SCHEMA = DATABASE() AND t.TABLE_NAME = 'messages'",
            )?;
            let sizes = conn.query(
                "SELECT COLUMN_NAME, CHARACTER_OCTET_LENGTH FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'messages'",
            )?;
            Ok((names, transactions.as_deref() != Some("NO"), sizes))
        })()
        .map_err(|e| self.err(e))?;
        let (names, transactional, sizes) = described;
        let layout = Layout::detect(&names)?;
        let limits = COLUMNS
            .iter()
            .filter(|c| layout == Layout::WithCategories || **c != "categories")
            .map(|c| {
                sizes
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(c))
                    .and_then(|(_, size)| size.map(|s| s as usize))
            })
            .collect();
        let progress = (|| -> mysql::Result<Progress> {
            let seq: Option<u64> = conn.exec_first(D.select_progress(), (spool,))?;
            let any: Option<u8> = conn.query_first(D.any_message())?;
            Ok(Progress {
                committed: seq,
                has_rows: any.is_some(),
                transactional,
            })
        })()
        .map_err(|e| self.err(e))?;
        let table = Table {
            layout,
            transactional,
            limits,
        };
        Ok((conn, table, progress))
    }
}

/// The parameters of one row, each text cut to its column's size (logged).
fn row_params(entry: &Entry, table: &Table) -> mysql::Params {
    let params = values(&entry.event, table.layout)
        .into_iter()
        .zip(&table.limits)
        .zip(COLUMNS.iter().filter(|c| {
            table.layout == Layout::WithCategories || **c != "categories"
        }))
        .map(|((v, limit), column)| {
            let text = |t: &str| match limit.and_then(|l| cut_to(t, l)) {
                Some(cut) => {
                    log::warn!(
                        "mysql sink: event {}: {column} of {} bytes cut to {}, the size of its column",
                        entry.seq,
                        t.len(),
                        cut.len()
                    );
                    cut
                }
                None => t.to_string(),
            };
            match v {
                Value::Time(t) => t.into(),
                Value::Int(i) => i.into(),
                Value::Text(t) => text(t).into(),
                Value::Data(t) => text(t).into_bytes().into(),
            }
        })
        .collect();
    mysql::Params::Positional(params)
}

impl Backend for MysqlBackend {
    fn name(&self) -> &'static str {
        "mysql"
    }

    fn connect(&mut self, spool: &str) -> Result<Progress, SinkError> {
        let (conn, table, progress) = self.open(spool)?;
        self.open = Some((conn, table));
        Ok(progress)
    }

    fn write(&mut self, spool: &str, entries: &[Entry], last: u64) -> Result<(), SinkError> {
        let (conn, table) = self.open.as_mut().expect("connected");
        let result = if table.transactional {
            (|| {
                let mut tx = conn.start_transaction(TxOpts::default())?;
                let insert = tx.prep(D.insert_message(table.layout))?;
                tx.exec_batch(&insert, entries.iter().map(|e| row_params(e, table)))?;
                tx.exec_drop(D.upsert_progress(), (spool, last))?;
                tx.commit()
            })()
        } else {
            // No transactions: each row, then its progress, so that a crash
            // between the two repeats one row at most.
            (|| {
                let insert = conn.prep(D.insert_message(table.layout))?;
                for entry in entries {
                    conn.exec_drop(&insert, row_params(entry, table))?;
                    conn.exec_drop(D.upsert_progress(), (spool, entry.seq))?;
                }
                conn.exec_drop(D.upsert_progress(), (spool, last))
            })()
        };
        result.map_err(|e| self.err(e))
    }

    fn delete_before(&mut self, before: i64, batch: usize) -> Result<u64, SinkError> {
        let (conn, _) = self.open.as_mut().expect("connected");
        let deleted = conn
            .exec_iter(D.delete_before(batch), (before,))
            .map(|result| result.affected_rows());
        deleted.map_err(|e| self.err(e))
    }

    fn disconnect(&mut self) {
        self.open = None;
    }
}
