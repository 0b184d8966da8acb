//! `mysql_server` and friends: the `messages` table in MySQL or MariaDB.

use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder, TxOpts};

use super::spool::Entry;
use super::spooled::Backend;
use super::sql::{values, Dialect, Layout, Value};
use super::SinkError;

const D: Dialect = Dialect::Mysql;
/// Connecting, reading and writing give up after this long, so that a
/// vanished server is noticed.
const TIMEOUT: Duration = Duration::from_secs(10);

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

pub struct MysqlBackend {
    target: MysqlTarget,
    open: Option<(Conn, Layout)>,
}

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
        SinkError::Other(format!("mysql {place} database {}: {e}", t.database))
    }

    fn open(&self, spool: &str) -> Result<(Conn, Layout, u64), SinkError> {
        let t = &self.target;
        let opts = OptsBuilder::new()
            .ip_or_hostname(Some(t.server.clone()))
            .tcp_port(t.port.unwrap_or(3306))
            .socket(t.socket.clone())
            .prefer_socket(false)
            .db_name(Some(t.database.clone()))
            .user(Some(t.username.clone()))
            .pass(Some(t.password.clone()))
            .tcp_connect_timeout(Some(TIMEOUT))
            .read_timeout(Some(TIMEOUT))
            .write_timeout(Some(TIMEOUT));
        let mut conn = Conn::new(opts).map_err(|e| self.err(e))?;
        let columns = (|| -> mysql::Result<Vec<String>> {
            conn.query_drop("SET NAMES utf8mb4")?;
            conn.query_drop(D.create_messages())?;
            conn.query_drop(D.create_progress())?;
            let probe = conn.prep(D.probe_messages())?;
            let columns = probe.columns();
            Ok(columns.iter().map(|c| c.name_str().into_owned()).collect())
        })()
        .map_err(|e| self.err(e))?;
        let layout = Layout::detect(&columns)?;
        let seq = (|| -> mysql::Result<u64> {
            let seq: Option<u64> = conn.exec_first(D.select_progress(), (spool,))?;
            if seq.is_none() {
                conn.exec_drop(D.insert_progress(), (spool,))?;
            }
            Ok(seq.unwrap_or(0))
        })()
        .map_err(|e| self.err(e))?;
        Ok((conn, layout, seq))
    }
}

impl Backend for MysqlBackend {
    fn name(&self) -> &'static str {
        "mysql"
    }

    fn connect(&mut self, spool: &str) -> Result<u64, SinkError> {
        let (conn, layout, seq) = self.open(spool)?;
        self.open = Some((conn, layout));
        Ok(seq)
    }

    fn write(&mut self, spool: &str, entries: &[Entry]) -> Result<(), SinkError> {
        let (conn, layout) = self.open.as_mut().expect("connected");
        let layout = *layout;
        let result = (|| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            let insert = tx.prep(D.insert_message(layout))?;
            let rows = entries.iter().map(|entry| {
                let params: Vec<mysql::Value> = values(&entry.event, layout)
                    .into_iter()
                    .map(|v| match v {
                        Value::Time(t) => t.into(),
                        Value::Int(i) => i.into(),
                        Value::Text(t) => t.into(),
                        Value::Data(t) => t.as_bytes().into(),
                    })
                    .collect();
                mysql::Params::Positional(params)
            });
            tx.exec_batch(&insert, rows)?;
            let last = entries.last().map_or(0, |e| e.seq);
            tx.exec_drop(D.update_progress(), (last, spool))?;
            tx.commit()
        })();
        result.map_err(|e| self.err(e))
    }

    fn disconnect(&mut self) {
        self.open = None;
    }
}
