//! The daemon's `messages` table in SQLite (`sqlite_file`).
//!
//! The viewer adds one index, on conversation and time, so that pages and
//! searches limited to a protocol or an id do not read the whole table.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use chrono::TimeZone;
use rusqlite::{params_from_iter, Connection, OptionalExtension, Row};

use super::{
    day_of, is_day, Bounds, Conversation, Cursor, Hit, Hits, Line, Query, Result, Store, StoreError,
};

const INDEX: &str = "CREATE INDEX IF NOT EXISTS messages_by_conversation
    ON messages (protocolname, localid, remoteid, timestamp)";
const COLUMNS: &str = "id, timestamp, clientaddress, outgoing, type, filtered, categories,
    CAST(eventdata AS TEXT), protocolname, localid, remoteid";
/// Rows read at once by a search, before the user's id limits are applied.
const PAGE: usize = 1000;

pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn failed(e: rusqlite::Error) -> StoreError {
    StoreError::Failed(format!("sqlite: {e}"))
}

impl SqliteStore {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.prepare("SELECT categories FROM messages WHERE 1 = 0")
            .map_err(|e| anyhow::anyhow!("{}: no usable messages table: {e}", path.display()))?;
        if let Err(e) = conn.execute_batch(INDEX) {
            log::warn!(
                "{}: cannot add the index on conversations ({e}); pages will be slower",
                path.display()
            );
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn strings(&self, sql: &str, args: &[&str]) -> Result<Vec<String>> {
        let conn = self.conn.lock().expect("sqlite lock");
        let mut stmt = conn.prepare_cached(sql).map_err(failed)?;
        let rows = stmt
            .query_map(params_from_iter(args), |r| r.get::<_, String>(0))
            .map_err(failed)?;
        rows.collect::<rusqlite::Result<_>>().map_err(failed)
    }

    /// Rows of a conversation with `extra` conditions on `timestamp` or `id`.
    fn rows(&self, c: &Conversation, extra: &str, args: [i64; 2]) -> Result<Vec<(i64, Line)>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM messages
             WHERE protocolname = ?1 AND localid = ?2 AND remoteid = ?3 AND {extra}
             ORDER BY timestamp, id"
        );
        let conn = self.conn.lock().expect("sqlite lock");
        let mut stmt = conn.prepare_cached(&sql).map_err(failed)?;
        let rows = stmt
            .query_map(
                rusqlite::params![c.protocol, c.local, c.remote, args[0], args[1]],
                |r| Ok((r.get(0)?, line(r)?)),
            )
            .map_err(failed)?;
        rows.collect::<rusqlite::Result<_>>().map_err(failed)
    }
}

fn line(r: &Row<'_>) -> rusqlite::Result<Line> {
    Ok(Line {
        timestamp: r.get(1)?,
        client: r.get(2)?,
        outgoing: r.get::<_, i64>(3)? != 0,
        kind: r.get::<_, i64>(4)?.clamp(0, 255) as u8,
        filtered: r.get::<_, i64>(5)? != 0,
        categories: r.get(6)?,
        data: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
    })
}

/// The first second of a local day and of the next one.
fn day_bounds(day: &str) -> Result<(i64, i64)> {
    let date =
        chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").map_err(|_| StoreError::NotFound)?;
    let start = |d: chrono::NaiveDate| {
        chrono::Local
            .from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"))
            .earliest()
            .map(|t| t.timestamp())
            .ok_or(StoreError::NotFound)
    };
    let next = date.succ_opt().ok_or(StoreError::NotFound)?;
    Ok((start(date)?, start(next)?))
}

impl Store for SqliteStore {
    fn protocols(&self) -> Result<Vec<String>> {
        self.strings("SELECT DISTINCT protocolname FROM messages ORDER BY 1", &[])
    }

    fn local_ids(&self, protocol: &str) -> Result<Vec<String>> {
        let ids = self.strings(
            "SELECT DISTINCT localid FROM messages WHERE protocolname = ?1 ORDER BY 1",
            &[protocol],
        )?;
        non_empty(ids)
    }

    fn remote_ids(&self, protocol: &str, local: &str) -> Result<Vec<String>> {
        let ids = self.strings(
            "SELECT DISTINCT remoteid FROM messages WHERE protocolname = ?1 AND localid = ?2
             ORDER BY 1",
            &[protocol, local],
        )?;
        non_empty(ids)
    }

    fn days(&self, c: &Conversation) -> Result<Vec<String>> {
        let times = self.strings(
            "SELECT DISTINCT CAST(timestamp AS TEXT) FROM messages
             WHERE protocolname = ?1 AND localid = ?2 AND remoteid = ?3",
            &[&c.protocol, &c.local, &c.remote],
        )?;
        let mut days: Vec<String> = times
            .iter()
            .filter_map(|t| t.parse().ok())
            .map(day_of)
            .collect();
        days.sort();
        days.dedup();
        non_empty(days)
    }

    fn lines(&self, c: &Conversation, day: &str) -> Result<Vec<Line>> {
        if !is_day(day) {
            return Err(StoreError::NotFound);
        }
        let (start, end) = day_bounds(day)?;
        let rows = self.rows(c, "timestamp >= ?4 AND timestamp < ?5", [start, end])?;
        non_empty(rows.into_iter().map(|(_, l)| l).collect())
    }

    fn end(&self, c: &Conversation) -> Result<Cursor> {
        let conn = self.conn.lock().expect("sqlite lock");
        let id: Option<i64> = conn
            .query_row(
                "SELECT max(id) FROM messages
                 WHERE protocolname = ?1 AND localid = ?2 AND remoteid = ?3",
                rusqlite::params![c.protocol, c.local, c.remote],
                |r| r.get(0),
            )
            .optional()
            .map_err(failed)?
            .flatten();
        Ok(Cursor(id.unwrap_or(0).to_string()))
    }

    fn after(&self, c: &Conversation, at: &Cursor) -> Result<(Vec<Line>, Cursor)> {
        let from: i64 = at.0.parse().map_err(|_| StoreError::NotFound)?;
        let rows = self.rows(c, "id > ?4 AND ?5 = ?5", [from, 0])?;
        let last = rows.iter().map(|(id, _)| *id).max().unwrap_or(from);
        Ok((
            rows.into_iter().map(|(_, l)| l).collect(),
            Cursor(last.to_string()),
        ))
    }

    fn search(&self, q: &Query, allowed: &dyn Fn(&str) -> bool, bounds: Bounds) -> Result<Hits> {
        let deadline = bounds.deadline();
        let (from, to) = (
            if q.from.is_empty() {
                Ok((i64::MIN, 0))
            } else {
                day_bounds(&q.from)
            }?
            .0,
            if q.to.is_empty() {
                Ok((0, i64::MAX))
            } else {
                day_bounds(&q.to)
            }?
            .1,
        );
        let like = |s: &str| {
            let escaped = s
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM messages
             WHERE id > ?1 AND timestamp >= ?2 AND timestamp < ?3
               AND (?4 = '' OR protocolname = ?4)
               AND (?5 = '%%' OR localid LIKE ?5 ESCAPE '\\' OR remoteid LIKE ?5 ESCAPE '\\')
               AND (?6 = '%%' OR CAST(eventdata AS TEXT) LIKE ?6 ESCAPE '\\')
             ORDER BY id LIMIT {PAGE}"
        );
        let mut found = Hits::default();
        let mut last_id = 0i64;
        loop {
            let page: Vec<(i64, Hit)> = {
                let conn = self.conn.lock().expect("sqlite lock");
                let mut stmt = conn.prepare_cached(&sql).map_err(failed)?;
                let rows = stmt
                    .query_map(
                        rusqlite::params![
                            last_id,
                            from,
                            to,
                            q.protocol,
                            like(&q.user),
                            like(&q.text)
                        ],
                        |r| {
                            Ok((
                                r.get(0)?,
                                Hit {
                                    conversation: Conversation {
                                        protocol: r.get(8)?,
                                        local: r.get(9)?,
                                        remote: r.get(10)?,
                                    },
                                    day: String::new(),
                                    line: line(r)?,
                                },
                            ))
                        },
                    )
                    .map_err(failed)?;
                rows.collect::<rusqlite::Result<_>>().map_err(failed)?
            };
            let done = page.len() < PAGE;
            for (id, mut hit) in page {
                last_id = id;
                if !allowed(&hit.conversation.local) {
                    continue;
                }
                if found.hits.len() == bounds.max_hits {
                    found.incomplete =
                        Some(format!("only the first {} hits are shown", bounds.max_hits));
                    return Ok(found);
                }
                hit.day = day_of(hit.line.timestamp);
                found.hits.push(hit);
            }
            if done {
                return Ok(found);
            }
            if Instant::now() > deadline {
                found.incomplete = Some(format!(
                    "the search stopped after {} s; narrow it down to see everything",
                    bounds.max_time.as_secs()
                ));
                return Ok(found);
            }
        }
    }
}

/// A listing with nothing in it is a name that does not exist.
fn non_empty<T>(v: Vec<T>) -> Result<Vec<T>> {
    if v.is_empty() {
        Err(StoreError::NotFound)
    } else {
        Ok(v)
    }
}
