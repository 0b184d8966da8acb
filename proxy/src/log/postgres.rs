//! `pgsql_connect`: the `messages` table in PostgreSQL.

use std::borrow::Cow;
use std::time::Duration;

use postgres::config::Host;
use postgres::types::ToSql;
use postgres::{Client, Config, NoTls};

use super::spool::Entry;
use super::spooled::{Backend, Progress};
use super::sql::{values, Dialect, Layout, Value};
use super::SinkError;

const D: Dialect = Dialect::Postgres;
/// Used when the connection string sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A statement (or its wait for a lock) gives up after this long.
const STATEMENT_TIMEOUT: &str = "10s";

pub struct PostgresBackend {
    config: Config,
    /// The connection string without its password, for messages.
    shown: String,
    open: Option<(Client, Layout)>,
}

impl PostgresBackend {
    /// `connect` is a libpq `key=value` string or a `postgresql://` URL.
    pub fn new(connect: &str) -> Result<Self, String> {
        let mut config: Config = connect.parse().map_err(|e| format!("{e}"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(dir) => dir.display().to_string(),
            })
            .collect();
        let shown = format!(
            "{} database {}",
            hosts.join(","),
            config.get_dbname().unwrap_or("(default)")
        );
        Ok(PostgresBackend {
            config,
            shown,
            open: None,
        })
    }

    fn err(&self, e: postgres::Error) -> SinkError {
        // Data exceptions (22), integrity constraints (23), limits (54): the
        // rows are refused; anything else is the database being unusable.
        let rejected = e.as_db_error().is_some_and(|d| {
            ["22", "23", "54"]
                .iter()
                .any(|c| d.code().code().starts_with(c))
        });
        let text = match e.as_db_error() {
            Some(d) => format!("postgres {}: {}: {}", self.shown, d.severity(), d.message()),
            None => format!("postgres {}: {e}", self.shown),
        };
        if rejected {
            SinkError::Rejected(text)
        } else {
            SinkError::Other(text)
        }
    }
}

impl Backend for PostgresBackend {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn connect(&mut self, spool: &str) -> Result<Progress, SinkError> {
        let mut client = self.config.connect(NoTls).map_err(|e| self.err(e))?;
        let columns = (|| -> Result<Vec<String>, postgres::Error> {
            client.batch_execute(&format!(
                "SET client_encoding = 'UTF8'; SET statement_timeout = '{STATEMENT_TIMEOUT}'; \
                 SET lock_timeout = '{STATEMENT_TIMEOUT}'; {}; {};",
                D.create_messages(),
                D.create_progress()
            ))?;
            let probe = client.prepare(D.probe_messages())?;
            Ok(probe
                .columns()
                .iter()
                .map(|c| c.name().to_string())
                .collect())
        })()
        .map_err(|e| self.err(e))?;
        let layout = Layout::detect(&columns)?;
        let progress = (|| -> Result<Progress, postgres::Error> {
            let seq = client.query_opt(&D.select_progress(), &[&spool])?;
            let any = client.query_opt(D.any_message(), &[])?;
            Ok(Progress {
                committed: seq.map(|row| row.get::<_, i64>(0) as u64),
                has_rows: any.is_some(),
                transactional: true,
            })
        })()
        .map_err(|e| self.err(e))?;
        self.open = Some((client, layout));
        Ok(progress)
    }

    fn write(&mut self, spool: &str, entries: &[Entry], last: u64) -> Result<(), SinkError> {
        let (client, layout) = self.open.as_mut().expect("connected");
        let layout = *layout;
        let result = (|| {
            let mut tx = client.transaction()?;
            let insert = tx.prepare(&D.insert_message(layout))?;
            for entry in entries {
                let params: Vec<Box<dyn ToSql + Sync + '_>> = values(&entry.event, layout)
                    .into_iter()
                    .map(|v| -> Box<dyn ToSql + Sync> {
                        match v {
                            Value::Time(t) => Box::new(t as f64),
                            Value::Int(i) => Box::new(i),
                            Value::Text(t) | Value::Data(t) => Box::new(without_nul(t)),
                        }
                    })
                    .collect();
                let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
                tx.execute(&insert, &refs)?;
            }
            tx.execute(&D.upsert_progress(), &[&spool, &(last as i64)])?;
            tx.commit()
        })();
        result.map_err(|e| self.err(e))
    }

    fn delete_before(&mut self, before: i64, batch: usize) -> Result<u64, SinkError> {
        let (client, _) = self.open.as_mut().expect("connected");
        let deleted = client.execute(&D.delete_before(batch), &[&(before as f64)]);
        deleted.map_err(|e| self.err(e))
    }

    fn disconnect(&mut self) {
        self.open = None;
    }
}

/// PostgreSQL text cannot hold NUL: it is stored as U+2400 SYMBOL FOR NULL
/// (otherwise the batch would fail for ever).
fn without_nul(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{2400}"))
    } else {
        Cow::Borrowed(text)
    }
}
