//! What the SQL sinks share: the original's `messages` table, the progress
//! table of the spool, and the statements, written once for the three dialects.

use super::spool::Event;
use super::SinkError;

/// The columns imspector fills, in the table's order (`id` comes first and is
/// generated). `categories` is missing from tables made by IMSpector 0.5.
pub const COLUMNS: [&str; 10] = [
    "timestamp",
    "clientaddress",
    "protocolname",
    "outgoing",
    "type",
    "localid",
    "remoteid",
    "filtered",
    "categories",
    "eventdata",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Mysql,
    Postgres,
}

impl Dialect {
    /// The original's table, created when missing.
    pub fn create_messages(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "CREATE TABLE IF NOT EXISTS messages (
                    id integer PRIMARY KEY AUTOINCREMENT,
                    timestamp integer NOT NULL,
                    clientaddress text NOT NULL,
                    protocolname text NOT NULL,
                    outgoing integer NOT NULL,
                    type integer NOT NULL,
                    localid text NOT NULL,
                    remoteid text NOT NULL,
                    filtered integer NOT NULL,
                    categories text NOT NULL,
                    eventdata blob NOT NULL)"
            }
            Dialect::Mysql => {
                "CREATE TABLE IF NOT EXISTS messages (
                    id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
                    timestamp int NOT NULL,
                    clientaddress text NOT NULL,
                    protocolname text NOT NULL,
                    outgoing int NOT NULL,
                    type int NOT NULL,
                    localid text NOT NULL,
                    remoteid text NOT NULL,
                    filtered int NOT NULL,
                    categories text NOT NULL,
                    eventdata mediumblob NOT NULL
                ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
            }
            Dialect::Postgres => {
                "CREATE TABLE IF NOT EXISTS messages (
                    id serial PRIMARY KEY,
                    timestamp timestamp with time zone NOT NULL DEFAULT now(),
                    clientaddress text NOT NULL,
                    protocolname text NOT NULL,
                    outgoing integer NOT NULL,
                    type integer NOT NULL,
                    localid text NOT NULL,
                    remoteid text NOT NULL,
                    filtered integer NOT NULL,
                    categories text NOT NULL,
                    eventdata text NOT NULL)"
            }
        }
    }

    /// Where each journal's committed sequence number is kept (see `spooled.rs`).
    pub fn create_progress(self) -> &'static str {
        match self {
            Dialect::Mysql => {
                "CREATE TABLE IF NOT EXISTS imspector_spool (
                    spool varchar(64) NOT NULL PRIMARY KEY,
                    seq bigint NOT NULL) ENGINE=InnoDB"
            }
            Dialect::Sqlite | Dialect::Postgres => {
                "CREATE TABLE IF NOT EXISTS imspector_spool (
                    spool varchar(64) NOT NULL PRIMARY KEY,
                    seq bigint NOT NULL)"
            }
        }
    }

    /// One row when `messages` has any.
    pub fn any_message(self) -> &'static str {
        "SELECT 1 FROM messages LIMIT 1"
    }

    /// Selects no row; its column names tell which layout the table has.
    pub fn probe_messages(self) -> &'static str {
        "SELECT * FROM messages WHERE 1 = 0"
    }

    pub fn select_progress(self) -> String {
        format!(
            "SELECT seq FROM imspector_spool WHERE spool = {}",
            self.p(1)
        )
    }

    /// Set the progress of journal `$1` to `$2`, creating its row if needed.
    pub fn upsert_progress(self) -> String {
        let insert = format!(
            "INSERT INTO imspector_spool (spool, seq) VALUES ({}, {})",
            self.p(1),
            self.p(2)
        );
        match self {
            Dialect::Mysql => format!("{insert} ON DUPLICATE KEY UPDATE seq = VALUES(seq)"),
            Dialect::Sqlite | Dialect::Postgres => {
                format!("{insert} ON CONFLICT (spool) DO UPDATE SET seq = excluded.seq")
            }
        }
    }

    /// Delete up to `batch` of the oldest rows with a `timestamp` before `$1`
    /// (UNIX seconds), in a statement of its own: retention deletes in such
    /// short steps so that no lock is held long.
    pub fn delete_before(self, batch: usize) -> String {
        let ts = self.quote("timestamp");
        match self {
            Dialect::Mysql => {
                format!("DELETE FROM messages WHERE {ts} < ? ORDER BY id LIMIT {batch}")
            }
            Dialect::Sqlite => format!(
                "DELETE FROM messages WHERE id IN \
                 (SELECT id FROM messages WHERE {ts} < ? ORDER BY id LIMIT {batch})"
            ),
            Dialect::Postgres => format!(
                "DELETE FROM messages WHERE id IN \
                 (SELECT id FROM messages WHERE {ts} < to_timestamp($1) ORDER BY id LIMIT {batch})"
            ),
        }
    }

    /// One row of `layout`; parameters in the order of [`values`].
    pub fn insert_message(self, layout: Layout) -> String {
        self.insert_messages(layout, 1)
    }

    /// `rows` rows of `layout` in one statement; parameters in the order of
    /// [`values`], row after row.
    pub fn insert_messages(self, layout: Layout, rows: usize) -> String {
        let columns: Vec<&str> = COLUMNS
            .iter()
            .copied()
            .filter(|c| layout == Layout::WithCategories || *c != "categories")
            .collect();
        let row = |first: usize| {
            let values: Vec<String> = (first..first + columns.len())
                .map(|i| match self {
                    // The event's time, not the time of the insert (a replayed
                    // event keeps when it happened).
                    Dialect::Postgres if i == first => format!("to_timestamp({})", self.p(i)),
                    _ => self.p(i),
                })
                .collect();
            format!("({})", values.join(", "))
        };
        let rows: Vec<String> = (0..rows).map(|r| row(1 + r * columns.len())).collect();
        let quoted: Vec<String> = columns.iter().map(|c| self.quote(c)).collect();
        // A row SQLite refuses ends the whole transaction, which the sink
        // then rolls back anyway: so no statement journal is kept to undo
        // just the statement.
        let insert = match self {
            Dialect::Sqlite => "INSERT OR ROLLBACK",
            Dialect::Mysql | Dialect::Postgres => "INSERT",
        };
        format!(
            "{insert} INTO messages ({}) VALUES {}",
            quoted.join(", "),
            rows.join(", ")
        )
    }

    /// Placeholder number `i` (from 1).
    fn p(self, i: usize) -> String {
        match self {
            Dialect::Postgres => format!("${i}"),
            Dialect::Sqlite | Dialect::Mysql => "?".to_string(),
        }
    }

    /// `timestamp` and `type` are keywords in some dialects.
    fn quote(self, column: &str) -> String {
        match self {
            Dialect::Mysql => format!("`{column}`"),
            Dialect::Sqlite | Dialect::Postgres => format!("\"{column}\""),
        }
    }
}

/// Which of the original's tables is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// IMSpector 0.9 and this program.
    WithCategories,
    /// IMSpector 0.5.
    WithoutCategories,
}

impl Layout {
    /// The layout of a table with these columns, or why it cannot be used.
    pub fn detect<S: AsRef<str>>(columns: &[S]) -> Result<Layout, SinkError> {
        let has = |name: &str| {
            columns
                .iter()
                .any(|c| c.as_ref().eq_ignore_ascii_case(name))
        };
        let missing: Vec<&str> = COLUMNS
            .iter()
            .copied()
            .filter(|c| *c != "categories" && !has(c))
            .collect();
        if !missing.is_empty() {
            return Err(SinkError::Other(format!(
                "table messages exists but lacks the columns {}",
                missing.join(", ")
            )));
        }
        Ok(if has("categories") {
            Layout::WithCategories
        } else {
            Layout::WithoutCategories
        })
    }
}

/// A column value, as each backend binds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// UNIX seconds (PostgreSQL binds it as a time).
    Time(i64),
    Int(i32),
    Text(&'a str),
    /// `eventdata`: a blob in MySQL and SQLite, holding the UTF-8 text.
    Data(&'a str),
}

/// One event as the values of [`Dialect::insert_message`], in [`COLUMNS`] order.
pub fn values<'a>(e: &'a Event<'_>, layout: Layout) -> Values<'a> {
    let categories = (layout == Layout::WithCategories).then_some(Value::Text(&e.categories));
    Values([
        Some(Value::Time(e.timestamp)),
        Some(Value::Text(&e.client)),
        Some(Value::Text(&e.protocol)),
        Some(Value::Int(e.outgoing.into())),
        Some(Value::Int(e.kind.code().into())),
        Some(Value::Text(&e.local_id)),
        Some(Value::Text(&e.remote_id)),
        Some(Value::Int(e.filtered.into())),
        categories,
        Some(Value::Data(&e.data)),
    ])
}

/// The values of one row, kept on the stack (a row's values are bound
/// millions of times a minute: no vector each).
pub struct Values<'a>([Option<Value<'a>>; 10]);

impl<'a> IntoIterator for Values<'a> {
    type Item = Value<'a>;
    type IntoIter = std::iter::Flatten<std::array::IntoIter<Option<Value<'a>>, 10>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_statements_per_dialect_and_layout() {
        assert_eq!(
            Dialect::Postgres.insert_message(Layout::WithCategories),
            "INSERT INTO messages (\"timestamp\", \"clientaddress\", \"protocolname\", \
             \"outgoing\", \"type\", \"localid\", \"remoteid\", \"filtered\", \"categories\", \
             \"eventdata\") VALUES (to_timestamp($1), $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        assert_eq!(
            Dialect::Mysql.insert_message(Layout::WithoutCategories),
            "INSERT INTO messages (`timestamp`, `clientaddress`, `protocolname`, `outgoing`, \
             `type`, `localid`, `remoteid`, `filtered`, `eventdata`) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
        assert_eq!(
            Dialect::Postgres.insert_messages(Layout::WithoutCategories, 2),
            "INSERT INTO messages (\"timestamp\", \"clientaddress\", \"protocolname\", \
             \"outgoing\", \"type\", \"localid\", \"remoteid\", \"filtered\", \"eventdata\") \
             VALUES (to_timestamp($1), $2, $3, $4, $5, $6, $7, $8, $9), \
             (to_timestamp($10), $11, $12, $13, $14, $15, $16, $17, $18)"
        );
        assert_eq!(
            Dialect::Sqlite.insert_messages(Layout::WithCategories, 2),
            "INSERT OR ROLLBACK INTO messages (\"timestamp\", \"clientaddress\", \"protocolname\", \
             \"outgoing\", \"type\", \"localid\", \"remoteid\", \"filtered\", \"categories\", \
             \"eventdata\") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
    }

    #[test]
    fn layouts_are_told_apart_and_foreign_tables_refused() {
        let v09 = [
            "id",
            "timestamp",
            "clientaddress",
            "protocolname",
            "outgoing",
            "type",
        ];
        let rest = ["localid", "remoteid", "filtered", "eventdata"];
        let old: Vec<&str> = v09.iter().chain(rest.iter()).copied().collect();
        assert_eq!(Layout::detect(&old).unwrap(), Layout::WithoutCategories);
        let mut new = old.clone();
        new.insert(9, "categories");
        assert_eq!(Layout::detect(&new).unwrap(), Layout::WithCategories);
        let e = Layout::detect(&["id", "text"]).unwrap_err();
        assert!(e
            .to_string()
            .contains("lacks the columns timestamp, clientaddress"));
    }
}
