//! One connection to the daemon's database, whichever driver (rusqlite,
//! mysql or postgres) is behind [`Db`]; [`Link`] reconnects after the server
//! went away, so that a restarted database needs no restarted viewer.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use imspector::log::mysql::MysqlTarget;
use imspector::log::sql::Dialect;
use mysql::prelude::Queryable as _;

use crate::config::Source;

/// Connecting, reading and writing give up after this long.
const TIMEOUT: Duration = Duration::from_secs(30);
/// One statement gives up after this long: a search is bounded by the
/// viewer's own deadline, and a slow statement must not hold the connection.
const STATEMENT_SECS: u32 = 20;

/// A query parameter.
#[derive(Debug, Clone)]
pub enum Arg {
    Int(i64),
    Text(String),
}

/// A column value as read back.
#[derive(Debug, Clone)]
pub enum Cell {
    Int(i64),
    Text(String),
    Null,
}

impl Cell {
    pub fn int(&self) -> i64 {
        match self {
            Cell::Int(i) => *i,
            Cell::Text(t) => t.parse().unwrap_or(0),
            Cell::Null => 0,
        }
    }

    pub fn text(self) -> String {
        match self {
            Cell::Int(i) => i.to_string(),
            Cell::Text(t) => t,
            Cell::Null => String::new(),
        }
    }
}

/// Rows of cells, as a statement gives them.
pub type Rows = Vec<Vec<Cell>>;

/// One open database connection.
pub trait Db: Send {
    fn query(&mut self, sql: &str, args: &[Arg]) -> anyhow::Result<Rows>;
}

/// A connection opened on first use and again after a failure.
pub struct Link {
    source: Source,
    pub dialect: Dialect,
    /// The database, for messages (without a password).
    pub shown: String,
    db: Mutex<Option<Box<dyn Db>>>,
}

impl Link {
    /// A link to the database of `source`, connected now so that a wrong
    /// option is told at start; `None` for the file logs.
    pub fn open(source: &Source) -> anyhow::Result<Option<Link>> {
        let (dialect, shown) = match source {
            Source::Files(_) => return Ok(None),
            Source::Sqlite(path) => (Dialect::Sqlite, format!("sqlite {}", path.display())),
            Source::Mysql(t) => (
                Dialect::Mysql,
                format!(
                    "mysql {} database {}",
                    t.socket.clone().unwrap_or_else(|| format!(
                        "{}:{}",
                        t.server,
                        t.port.unwrap_or(3306)
                    )),
                    t.database
                ),
            ),
            Source::Postgres(connect) => (Dialect::Postgres, postgres_shown(connect)?),
        };
        let link = Link {
            source: source.clone(),
            dialect,
            shown,
            db: Mutex::new(None),
        };
        let db = link
            .connect()
            .map_err(|e| anyhow::anyhow!("{}: {e:#}", link.shown))?;
        *link.db.lock().expect("database lock") = Some(db);
        Ok(Some(link))
    }

    /// Another link to the same database, connected now.
    pub fn another(&self) -> anyhow::Result<Link> {
        Ok(Link::open(&self.source)?.expect("a database source"))
    }

    fn connect(&self) -> anyhow::Result<Box<dyn Db>> {
        let db: Box<dyn Db> = match &self.source {
            Source::Files(_) => unreachable!("file logs have no database"),
            Source::Sqlite(path) => Box::new(Sqlite::open(path)?),
            Source::Mysql(t) => Box::new(Mysql::connect(t)?),
            Source::Postgres(connect) => Box::new(Postgres::connect(connect)?),
        };
        Ok(db)
    }

    /// Run one statement; errors name the database. A connection that
    /// fails is replaced once at once (the server may have restarted since
    /// the last statement), and again by the next statement.
    pub fn query(&self, sql: &str, args: &[Arg]) -> anyhow::Result<Rows> {
        let mut db = self.db.lock().expect("database lock");
        let result = match db.take() {
            Some(mut open) => match open.query(sql, args) {
                Ok(rows) => Ok((open, rows)),
                Err(_) => self.fresh(sql, args),
            },
            None => self.fresh(sql, args),
        };
        match result {
            Ok((open, rows)) => {
                *db = Some(open);
                Ok(rows)
            }
            Err(e) => Err(anyhow::anyhow!("{}: {e:#}", self.shown)),
        }
    }

    fn fresh(&self, sql: &str, args: &[Arg]) -> anyhow::Result<(Box<dyn Db>, Rows)> {
        let mut db = self.connect()?;
        let rows = db.query(sql, args)?;
        Ok((db, rows))
    }
}

fn postgres_config(connect: &str) -> anyhow::Result<postgres::Config> {
    let mut config: postgres::Config = connect
        .parse()
        .map_err(|e| anyhow::anyhow!("pgsql_connect: {e}"))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(TIMEOUT);
    }
    Ok(config)
}

fn postgres_shown(connect: &str) -> anyhow::Result<String> {
    let config = postgres_config(connect)?;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(dir) => dir.display().to_string(),
        })
        .collect();
    Ok(format!(
        "postgres {} database {}",
        hosts.join(","),
        config.get_dbname().unwrap_or("(default)")
    ))
}

struct Sqlite(rusqlite::Connection);

impl Sqlite {
    fn open(path: &Path) -> anyhow::Result<Self> {
        // Never create an empty database where the daemon's should be.
        let conn = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE,
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(Sqlite(conn))
    }
}

impl Db for Sqlite {
    fn query(&mut self, sql: &str, args: &[Arg]) -> anyhow::Result<Rows> {
        use rusqlite::types::Value;
        let params = args.iter().map(|a| match a {
            Arg::Int(i) => Value::Integer(*i),
            Arg::Text(t) => Value::Text(t.clone()),
        });
        let mut stmt = self.0.prepare_cached(sql)?;
        let n = stmt.column_count();
        let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get::<_, Value>(i)? {
                        Value::Integer(v) => Cell::Int(v),
                        Value::Real(v) => Cell::Int(v as i64),
                        Value::Text(t) => Cell::Text(t),
                        Value::Blob(b) => Cell::Text(String::from_utf8_lossy(&b).into_owned()),
                        Value::Null => Cell::Null,
                    })
                })
                .collect()
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

struct Mysql(mysql::Conn);

impl Mysql {
    fn connect(t: &MysqlTarget) -> anyhow::Result<Self> {
        let opts = t.opts().init(vec!["SET NAMES utf8mb4"]);
        let mut conn = mysql::Conn::new(opts)?;
        // MariaDB's name, then MySQL's (in milliseconds).
        if conn
            .query_drop(format!("SET SESSION max_statement_time = {STATEMENT_SECS}"))
            .is_err()
        {
            conn.query_drop(format!(
                "SET SESSION max_execution_time = {}",
                STATEMENT_SECS * 1000
            ))?;
        }
        Ok(Mysql(conn))
    }
}

impl Db for Mysql {
    fn query(&mut self, sql: &str, args: &[Arg]) -> anyhow::Result<Rows> {
        let params = if args.is_empty() {
            mysql::Params::Empty
        } else {
            mysql::Params::Positional(
                args.iter()
                    .map(|a| match a {
                        Arg::Int(i) => mysql::Value::Int(*i),
                        Arg::Text(t) => mysql::Value::Bytes(t.as_bytes().to_vec()),
                    })
                    .collect(),
            )
        };
        let rows: Vec<mysql::Row> = self.0.exec(sql, params)?;
        rows.into_iter()
            .map(|row| {
                row.unwrap()
                    .into_iter()
                    .map(|v| match v {
                        mysql::Value::Int(i) => Ok(Cell::Int(i)),
                        mysql::Value::UInt(u) => Ok(Cell::Int(i64::try_from(u)?)),
                        mysql::Value::Bytes(b) => {
                            Ok(Cell::Text(String::from_utf8_lossy(&b).into_owned()))
                        }
                        mysql::Value::NULL => Ok(Cell::Null),
                        other => Err(anyhow::anyhow!("unexpected value {other:?}")),
                    })
                    .collect()
            })
            .collect()
    }
}

struct Postgres(postgres::Client);

impl Postgres {
    fn connect(connect: &str) -> anyhow::Result<Self> {
        let mut client = postgres_config(connect)?.connect(postgres::NoTls)?;
        client.batch_execute(&format!(
            "SET client_encoding = 'UTF8'; SET statement_timeout = '{STATEMENT_SECS}s'"
        ))?;
        Ok(Postgres(client))
    }
}

impl Db for Postgres {
    fn query(&mut self, sql: &str, args: &[Arg]) -> anyhow::Result<Rows> {
        use postgres::types::{ToSql, Type};
        let params: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|a| -> &(dyn ToSql + Sync) {
                match a {
                    Arg::Int(i) => i,
                    Arg::Text(t) => t,
                }
            })
            .collect();
        let rows = self.0.query(sql, &params)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut cells = Vec::with_capacity(row.len());
            for (i, column) in row.columns().iter().enumerate() {
                let cell = match *column.type_() {
                    Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Cell::Int),
                    Type::INT4 => row
                        .try_get::<_, Option<i32>>(i)?
                        .map(|v| Cell::Int(v.into())),
                    Type::INT2 => row
                        .try_get::<_, Option<i16>>(i)?
                        .map(|v| Cell::Int(v.into())),
                    _ => row.try_get::<_, Option<String>>(i)?.map(Cell::Text),
                };
                cells.push(cell.unwrap_or(Cell::Null));
            }
            out.push(cells);
        }
        Ok(out)
    }
}
