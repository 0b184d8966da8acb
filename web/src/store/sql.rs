//! The daemon's `messages` table, in SQLite (`sqlite_file`), MySQL/MariaDB
//! (`mysql_*`) or PostgreSQL (`pgsql_connect`): one viewer can serve the
//! central database of many gateways.
//!
//! The statements are written once for the three dialects. The viewer adds
//! indexes when the database lets it: on conversation and time (the pages),
//! on time (searches by date), and in PostgreSQL a trigram index (pg_trgm)
//! that searches for text and ids use.

use std::time::{Duration, Instant};

use chrono::TimeZone;
use imspector::log::sql::{Dialect, Layout};

use super::db::{Arg, Cell, Link};
use super::{
    day_of, is_day, Bounds, Conversation, Cursor, Day, Hit, Hits, Line, Query, Result, Store,
    StoreError, MAX_DAY_LINES,
};

/// How a search walks the table: in windows of ids, so that one statement
/// reads a bounded number of rows even where no index helps (text in SQLite
/// and MySQL) and the search's time bound holds; each window in pages.
#[derive(Debug, Clone, Copy)]
struct Walk {
    /// Ids one statement covers.
    window: i64,
    /// Rows read at once, before the user's id limits are applied.
    page: usize,
}

const WALK: Walk = Walk {
    window: 100_000,
    page: 1000,
};

/// A statement with its placeholders numbered as its arguments are added.
struct Sql {
    d: Dialect,
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    fn new(d: Dialect, text: &str) -> Sql {
        Sql {
            d,
            text: text.to_string(),
            args: Vec::new(),
        }
    }

    /// Append `before`, then a placeholder for `arg`.
    fn arg(mut self, before: &str, arg: Arg) -> Sql {
        self.text.push_str(before);
        let i = self.args.len() + 1;
        let placeholder = match (self.d, &arg) {
            // PostgreSQL infers a parameter's type from its use; say it.
            (Dialect::Postgres, Arg::Int(_)) => format!("${i}::bigint"),
            (Dialect::Postgres, Arg::Text(_)) => format!("${i}::text"),
            (Dialect::Sqlite | Dialect::Mysql, _) => "?".to_string(),
        };
        self.text.push_str(&placeholder);
        self.args.push(arg);
        self
    }

    fn push(mut self, text: &str) -> Sql {
        self.text.push_str(text);
        self
    }

    /// `AND timestamp <op> t`, `t` in UNIX seconds.
    fn time(self, op: &str, t: i64) -> Sql {
        match self.d {
            Dialect::Postgres => self
                .arg(
                    &format!(" AND \"timestamp\" {op} to_timestamp("),
                    Arg::Int(t),
                )
                .push(")"),
            d => self.arg(&format!(" AND {} {op} ", time_column(d)), Arg::Int(t)),
        }
    }

    /// `AND` the days of `q`, when it has any.
    fn days(mut self, q: &Query) -> Result<Sql> {
        if !q.from.is_empty() {
            self = self.time(">=", day_bounds(&q.from)?.0);
        }
        if !q.to.is_empty() {
            self = self.time("<", day_bounds(&q.to)?.1);
        }
        Ok(self)
    }

    /// ` column LIKE pattern` (escaped by `!`), without regard to case.
    fn like(self, column: &str, pattern: String) -> Sql {
        let like = if self.d == Dialect::Postgres {
            "ILIKE"
        } else {
            "LIKE"
        };
        self.arg(&format!(" {column} {like} "), Arg::Text(pattern))
            .push(" ESCAPE '!'")
    }

    /// ` column LIKE %text%`.
    fn contains(self, column: &str, text: &str) -> Sql {
        self.like(column, format!("%{}%", escape_like(text)))
    }

    /// `AND` a local id that one of `patterns` may match.
    fn locals(self, patterns: &[String]) -> Sql {
        if patterns.is_empty() {
            return self;
        }
        let mut sql = self.push(" AND (");
        for (i, p) in patterns.iter().enumerate() {
            if i > 0 {
                sql = sql.push(" OR");
            }
            // `?` is one byte of the id, which SQL cannot say: any run.
            let like = escape_like(p).replace(['*', '?'], "%");
            sql = sql.like("localid", like);
        }
        sql.push(")")
    }
}

/// `text` with the wildcards of LIKE escaped by `!`.
fn escape_like(text: &str) -> String {
    text.replace('!', "!!")
        .replace('%', "!%")
        .replace('_', "!_")
}

/// `timestamp` is a keyword in some dialects.
fn time_column(d: Dialect) -> &'static str {
    match d {
        Dialect::Mysql => "`timestamp`",
        Dialect::Sqlite | Dialect::Postgres => "\"timestamp\"",
    }
}

/// `timestamp` as UNIX seconds (PostgreSQL's is a timestamptz).
fn unix_time(d: Dialect) -> &'static str {
    match d {
        Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM \"timestamp\") AS bigint)",
        d => time_column(d),
    }
}

/// `eventdata` as text (a blob in SQLite and MySQL).
fn event_text(d: Dialect) -> &'static str {
    match d {
        Dialect::Postgres => "eventdata",
        Dialect::Mysql => "CAST(eventdata AS CHAR)",
        Dialect::Sqlite => "CAST(eventdata AS TEXT)",
    }
}

/// What [`row`] reads, in its order.
fn columns(d: Dialect, layout: Layout) -> String {
    let int = if d == Dialect::Mysql {
        "signed"
    } else {
        "bigint"
    };
    let kind = if d == Dialect::Mysql {
        "`type`"
    } else {
        "\"type\""
    };
    let categories = match layout {
        Layout::WithCategories => "categories",
        // IMSpector 0.5 had none.
        Layout::WithoutCategories => "''",
    };
    format!(
        "CAST(id AS {int}), {time}, clientaddress, CAST(outgoing AS {int}), CAST({kind} AS {int}),
         CAST(filtered AS {int}), {categories}, {data}, protocolname, localid, remoteid",
        time = unix_time(d),
        data = event_text(d),
    )
}

/// The indexes the viewer adds: name, columns (or the whole statement's tail).
fn indexes(d: Dialect) -> Vec<(&'static str, String)> {
    let t = time_column(d);
    let mut all = vec![
        (
            "messages_by_conversation",
            match d {
                // MySQL indexes text columns by a prefix.
                Dialect::Mysql => format!("(protocolname(32), localid(64), remoteid(64), {t})"),
                _ => format!("(protocolname, localid, remoteid, {t})"),
            },
        ),
        ("messages_by_time", format!("({t})")),
    ];
    if d == Dialect::Postgres {
        all.push((
            "messages_by_words",
            "USING gin (eventdata gin_trgm_ops, localid gin_trgm_ops, remoteid gin_trgm_ops)"
                .to_string(),
        ));
    }
    all
}

/// Add the indexes that are missing, on a connection of their own while the
/// viewer serves (the first time, on a large table, takes a while); one that
/// cannot be added only makes pages and searches slower.
fn add_indexes_meanwhile(link: &Link) {
    match link.another() {
        Ok(own) => {
            std::thread::spawn(move || add_indexes(&own));
        }
        Err(e) => log::warn!("cannot add the viewer's indexes ({e:#}); the viewer will be slower"),
    }
}

fn add_indexes(link: &Link) {
    let d = link.dialect;
    if d == Dialect::Postgres {
        if let Err(e) = link.query("CREATE EXTENSION IF NOT EXISTS pg_trgm", &[]) {
            log::warn!("cannot add pg_trgm ({e:#}); searches for text read the whole table");
        }
    }
    for (name, how) in indexes(d) {
        let started = Instant::now();
        let made = match d {
            // MySQL has no CREATE INDEX IF NOT EXISTS.
            Dialect::Mysql => link
                .query(
                    "SELECT 1 FROM information_schema.statistics
                     WHERE table_schema = DATABASE() AND table_name = 'messages'
                       AND index_name = ?",
                    &[Arg::Text(name.into())],
                )
                .and_then(|found| {
                    if found.is_empty() {
                        link.query(&format!("CREATE INDEX {name} ON messages {how}"), &[])?;
                    }
                    Ok(())
                }),
            // Concurrently: the daemon keeps inserting while it is built.
            Dialect::Postgres => link
                .query(
                    &format!("CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON messages {how}"),
                    &[],
                )
                .map(drop),
            Dialect::Sqlite => link
                .query(
                    &format!("CREATE INDEX IF NOT EXISTS {name} ON messages {how}"),
                    &[],
                )
                .map(drop),
        };
        match made {
            Err(e) => log::warn!("cannot add the index {name} ({e:#}); the viewer will be slower"),
            Ok(()) if started.elapsed() > Duration::from_secs(1) => log::info!(
                "{}: index {name} added in {} s",
                link.shown,
                started.elapsed().as_secs()
            ),
            Ok(()) => {}
        }
    }
}

type Row = (i64, Hit);

fn row(cells: Vec<Cell>) -> Row {
    let mut c = cells.into_iter();
    let mut next = || c.next().unwrap_or(Cell::Null);
    let id = next().int();
    let timestamp = next().int();
    let line = Line {
        timestamp,
        client: next().text(),
        outgoing: next().int() != 0,
        kind: next().int().clamp(0, 255) as u8,
        filtered: next().int() != 0,
        categories: next().text(),
        data: next().text(),
    };
    let conversation = Conversation {
        protocol: next().text(),
        local: next().text(),
        remote: next().text(),
    };
    (
        id,
        Hit {
            conversation,
            day: day_of(timestamp),
            line,
        },
    )
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

/// A listing with nothing in it is a name that does not exist.
fn non_empty<T>(v: Vec<T>) -> Result<Vec<T>> {
    if v.is_empty() {
        Err(StoreError::NotFound)
    } else {
        Ok(v)
    }
}

pub struct SqlStore {
    link: Link,
    layout: Layout,
    walk: Walk,
}

impl SqlStore {
    /// The store on `link`'s `messages` table; the viewer's indexes follow.
    pub fn new(link: Link) -> anyhow::Result<Self> {
        let usable =
            |columns: &str| link.query(&format!("SELECT {columns} FROM messages WHERE 1 = 0"), &[]);
        let layout = match usable("categories") {
            Ok(_) => Layout::WithCategories,
            Err(_) => match usable("id, protocolname, localid, remoteid, eventdata") {
                Ok(_) => Layout::WithoutCategories,
                Err(e) => anyhow::bail!("no usable messages table: {e:#}"),
            },
        };
        add_indexes_meanwhile(&link);
        Ok(SqlStore {
            link,
            layout,
            walk: WALK,
        })
    }

    fn run(&self, sql: Sql) -> Result<Vec<Vec<Cell>>> {
        self.link
            .query(&sql.text, &sql.args)
            .map_err(|e| StoreError::Failed(format!("{e:#}")))
    }

    fn strings(&self, sql: Sql) -> Result<Vec<String>> {
        Ok(self
            .run(sql)?
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .map(Cell::text)
            .collect())
    }

    fn rows(&self, sql: Sql) -> Result<Vec<Row>> {
        Ok(self.run(sql)?.into_iter().map(row).collect())
    }

    fn select(&self) -> String {
        format!(
            "SELECT {} FROM messages WHERE ",
            columns(self.link.dialect, self.layout)
        )
    }

    /// `SELECT what ... WHERE` the conversation `c`, then more conditions.
    fn of(&self, c: &Conversation, what: &str) -> Sql {
        Sql::new(self.link.dialect, what)
            .arg("protocolname = ", Arg::Text(c.protocol.clone()))
            .arg(" AND localid = ", Arg::Text(c.local.clone()))
            .arg(" AND remoteid = ", Arg::Text(c.remote.clone()))
    }

    /// One page of a search: rows after `last_id`, up to `until`, that
    /// match `q`.
    fn search_page(&self, q: &Query, last_id: i64, until: i64) -> Result<Sql> {
        let mut sql = Sql::new(self.link.dialect, &self.select())
            .arg("id > ", Arg::Int(last_id))
            .arg(" AND id <= ", Arg::Int(until));
        sql = sql.days(q)?.locals(&q.locals);
        if !q.protocol.is_empty() {
            sql = sql.arg(" AND protocolname = ", Arg::Text(q.protocol.clone()));
        }
        if !q.user.is_empty() {
            sql = sql
                .push(" AND (")
                .contains("localid", &q.user)
                .push(" OR")
                .contains("remoteid", &q.user)
                .push(")");
        }
        if !q.text.is_empty() {
            sql = sql
                .push(" AND")
                .contains(event_text(self.link.dialect), &q.text);
        }
        Ok(sql.push(&format!(" ORDER BY id LIMIT {}", self.walk.page)))
    }
}

impl Store for SqlStore {
    fn protocols(&self) -> Result<Vec<String>> {
        self.strings(Sql::new(
            self.link.dialect,
            "SELECT DISTINCT protocolname FROM messages ORDER BY 1",
        ))
    }

    fn local_ids(&self, protocol: &str) -> Result<Vec<String>> {
        let sql = Sql::new(
            self.link.dialect,
            "SELECT DISTINCT localid FROM messages WHERE ",
        )
        .arg("protocolname = ", Arg::Text(protocol.into()))
        .push(" ORDER BY 1");
        non_empty(self.strings(sql)?)
    }

    fn remote_ids(&self, protocol: &str, local: &str) -> Result<Vec<String>> {
        let sql = Sql::new(
            self.link.dialect,
            "SELECT DISTINCT remoteid FROM messages WHERE ",
        )
        .arg("protocolname = ", Arg::Text(protocol.into()))
        .arg(" AND localid = ", Arg::Text(local.into()))
        .push(" ORDER BY 1");
        non_empty(self.strings(sql)?)
    }

    fn days(&self, c: &Conversation) -> Result<Vec<String>> {
        let what = format!(
            "SELECT DISTINCT {} FROM messages WHERE ",
            unix_time(self.link.dialect)
        );
        let mut days: Vec<String> = self
            .run(self.of(c, &what))?
            .into_iter()
            .filter_map(|r| r.first().map(Cell::int))
            .map(day_of)
            .collect();
        days.sort();
        days.dedup();
        non_empty(days)
    }

    fn lines(&self, c: &Conversation, day: &str) -> Result<Day> {
        if !is_day(day) {
            return Err(StoreError::NotFound);
        }
        let (start, end) = day_bounds(day)?;
        // One more than is shown tells that the day was cut.
        let order = format!(
            " ORDER BY {}, id LIMIT {}",
            time_column(self.link.dialect),
            MAX_DAY_LINES + 1
        );
        let sql = self
            .of(c, &self.select())
            .time(">=", start)
            .time("<", end)
            .push(&order);
        let mut lines = non_empty(self.rows(sql)?.into_iter().map(|(_, h)| h.line).collect())?;
        let cut = lines.len() > MAX_DAY_LINES;
        lines.truncate(MAX_DAY_LINES);
        Ok(Day { lines, cut })
    }

    fn end(&self, c: &Conversation) -> Result<Cursor> {
        let last = self.run(self.of(c, "SELECT max(id) FROM messages WHERE "))?;
        let id = last
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .map_or(0, |c| c.int());
        Ok(Cursor(id.to_string()))
    }

    fn after(&self, c: &Conversation, at: &Cursor) -> Result<(Vec<Line>, Cursor)> {
        let from: i64 = at.0.parse().map_err(|_| StoreError::NotFound)?;
        let sql = self
            .of(c, &self.select())
            .arg(" AND id > ", Arg::Int(from))
            // A cursor far behind catches up a page a poll.
            .push(&format!(" ORDER BY id LIMIT {}", self.walk.page));
        let rows = self.rows(sql)?;
        let last = rows.iter().map(|(id, _)| *id).max().unwrap_or(from);
        Ok((
            rows.into_iter().map(|(_, h)| h.line).collect(),
            Cursor(last.to_string()),
        ))
    }

    fn search(&self, q: &Query, allowed: &dyn Fn(&str) -> bool, bounds: Bounds) -> Result<Hits> {
        let deadline = bounds.deadline();
        // The ids of the days searched (through the index on time): a search
        // of a few days walks only their windows.
        let span = Sql::new(
            self.link.dialect,
            "SELECT min(id), max(id) FROM messages WHERE 1 = 1",
        );
        let span = self
            .run(span.days(q)?)?
            .into_iter()
            .next()
            .unwrap_or_default();
        let (oldest, newest) = match &span[..] {
            [Cell::Null, ..] | [] => return Ok(Hits::default()),
            [first, last, ..] => (first.int(), last.int()),
            [_] => unreachable!("two columns"),
        };
        let mut found = Hits::default();
        let mut last_id = oldest - 1;
        while last_id < newest {
            let until = last_id.saturating_add(self.walk.window).min(newest);
            let page = self.rows(self.search_page(q, last_id, until)?)?;
            let full = page.len() == self.walk.page;
            for (id, hit) in page {
                last_id = id;
                if !allowed(&hit.conversation.local) {
                    continue;
                }
                if found.hits.len() == bounds.max_hits {
                    found.incomplete =
                        Some(format!("only the first {} hits are shown", bounds.max_hits));
                    return Ok(found);
                }
                found.hits.push(hit);
            }
            if !full {
                last_id = until;
            }
            if last_id < newest && Instant::now() >= deadline {
                found.incomplete = Some(format!(
                    "the search stopped after {} s; narrow it down to see everything",
                    bounds.max_time.as_secs()
                ));
                return Ok(found);
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;

    const FIRST_DAY: i64 = 1_767_312_000;

    /// A table of `n` rows whose text is `row i`, 25 a day, and a store on it
    /// that walks in windows of 7 ids and pages of 3 rows.
    fn table(dir: &std::path::Path, n: usize) -> SqlStore {
        let path = dir.join("messages.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(Dialect::Sqlite.create_messages())
            .unwrap();
        for i in 0..n {
            conn.execute(
                "INSERT INTO messages (timestamp, clientaddress, protocolname, outgoing, type,
                 localid, remoteid, filtered, categories, eventdata)
                 VALUES (?1, '10.0.0.1:1', 'IRC', 1, 1, ?2, 'bob', 0, '', ?3)",
                rusqlite::params![
                    FIRST_DAY + (i as i64 / 25) * 86_400,
                    format!("user{}", i % 2),
                    format!("row {i}")
                ],
            )
            .unwrap();
        }
        let link = Link::open(&Source::Sqlite(path)).unwrap().unwrap();
        let mut store = SqlStore::new(link).unwrap();
        store.walk = Walk { window: 7, page: 3 };
        store
    }

    fn texts(hits: &Hits) -> Vec<String> {
        hits.hits.iter().map(|h| h.line.data.clone()).collect()
    }

    fn bounds(secs: u64) -> Bounds {
        Bounds {
            max_hits: 100,
            max_time: Duration::from_secs(secs),
        }
    }

    #[test]
    fn a_search_walks_every_window_and_page_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = table(dir.path(), 50);
        let q = Query {
            text: "ROW".into(),
            ..Query::default()
        };
        // Only user1's rows: every window and page boundary is crossed.
        let found = store
            .search(&q, &|local| local == "user1", bounds(5))
            .unwrap();
        let want: Vec<String> = (0..50)
            .filter(|i| i % 2 == 1)
            .map(|i| format!("row {i}"))
            .collect();
        assert_eq!(texts(&found), want);
        assert_eq!(found.incomplete, None);
        let q = Query {
            text: "row 4".into(),
            ..Query::default()
        };
        let found = store.search(&q, &|_| true, bounds(5)).unwrap();
        let want: Vec<String> = std::iter::once(4)
            .chain(40..50)
            .map(|i| format!("row {i}"))
            .collect();
        assert_eq!(texts(&found), want);
    }

    #[test]
    fn a_search_reads_only_the_local_ids_of_the_users_patterns() {
        let dir = tempfile::tempdir().unwrap();
        let store = table(dir.path(), 10);
        let search = |locals: &[&str]| {
            let q = Query {
                locals: locals.iter().map(|p| p.to_string()).collect(),
                ..Query::default()
            };
            texts(&store.search(&q, &|_| true, bounds(5)).unwrap())
        };
        assert_eq!(
            search(&["us*1"]),
            ["row 1", "row 3", "row 5", "row 7", "row 9"]
        );
        assert_eq!(search(&["nobody", "user?"]).len(), 10);
        // LIKE's wildcards in a pattern are plain characters.
        assert!(search(&["user_"]).is_empty());
        assert!(search(&["%"]).is_empty());
    }

    #[test]
    fn a_day_longer_than_a_page_shows_is_cut_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = table(dir.path(), 3);
        let c = Conversation {
            protocol: "IRC".into(),
            local: "user0".into(),
            remote: "bob".into(),
        };
        let day = day_of(FIRST_DAY);
        let whole = store.lines(&c, &day).unwrap();
        assert_eq!((whole.lines.len(), whole.cut), (2, false));
        let mut conn = rusqlite::Connection::open(dir.path().join("messages.db")).unwrap();
        let tx = conn.transaction().unwrap();
        for i in 0..MAX_DAY_LINES {
            tx.execute(
                "INSERT INTO messages (timestamp, clientaddress, protocolname, outgoing, type,
                 localid, remoteid, filtered, categories, eventdata)
                 VALUES (?1, '10.0.0.1:1', 'IRC', 1, 1, 'user0', 'bob', 0, '', 'more')",
                [FIRST_DAY + 1 + (i as i64 % 3600)],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        let cut = store.lines(&c, &day).unwrap();
        assert!(cut.cut);
        assert_eq!(cut.lines.len(), MAX_DAY_LINES);
        assert_eq!(cut.lines[0].data, "row 0");
    }

    #[test]
    fn the_live_view_catches_up_a_page_a_poll() {
        let dir = tempfile::tempdir().unwrap();
        let store = table(dir.path(), 10);
        let c = Conversation {
            protocol: "IRC".into(),
            local: "user1".into(),
            remote: "bob".into(),
        };
        let (first, at) = store.after(&c, &Cursor("0".into())).unwrap();
        let (second, at) = store.after(&c, &at).unwrap();
        let (third, end) = store.after(&c, &at).unwrap();
        let data = |lines: &[Line]| lines.iter().map(|l| l.data.clone()).collect::<Vec<_>>();
        assert_eq!(data(&first), ["row 1", "row 3", "row 5"]);
        assert_eq!(data(&second), ["row 7", "row 9"]);
        assert!(third.is_empty());
        assert_eq!(at, Cursor("10".into()));
        assert_eq!(end, store.end(&c).unwrap());
    }

    #[test]
    fn a_search_stops_at_its_time_bound_after_one_window() {
        let dir = tempfile::tempdir().unwrap();
        let store = table(dir.path(), 50);
        let found = store
            .search(&Query::default(), &|_| true, bounds(0))
            .unwrap();
        assert_eq!(texts(&found), ["row 0", "row 1", "row 2"]);
        assert_eq!(
            found.incomplete.as_deref(),
            Some("the search stopped after 0 s; narrow it down to see everything")
        );
        // A search of one day starts at that day's first id.
        let second = day_of(FIRST_DAY + 86_400);
        let q = Query {
            from: second.clone(),
            to: second,
            ..Query::default()
        };
        let found = store.search(&q, &|_| true, bounds(0)).unwrap();
        assert_eq!(texts(&found), ["row 25", "row 26", "row 27"]);
        let other = tempfile::tempdir().unwrap();
        let empty = table(other.path(), 0);
        let none = empty
            .search(&Query::default(), &|_| true, bounds(0))
            .unwrap();
        assert!(none.hits.is_empty() && none.incomplete.is_none());
    }
}
