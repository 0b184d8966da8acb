//! Who read what: one record for every login, view, search and export.
//!
//! The file (`web_audit_filename`) holds one line a record,
//! `timestamp,user,client,action,what` (UNIX seconds; `what` is the rest of
//! the line, newlines written as `\n`). With a database source (SQLite, MySQL
//! or PostgreSQL) the records also go to its table `imspector_audit`, next to
//! `messages`, through a connection of their own.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use imspector::log::sql::Dialect;

use crate::store::db::{Arg, Link};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub timestamp: i64,
    pub user: String,
    pub client: String,
    pub action: String,
    pub what: String,
}

impl Record {
    fn line(&self) -> String {
        let clean = |s: &str| s.replace(['\r', '\n'], "\\n");
        format!(
            "{},{},{},{},{}\n",
            self.timestamp,
            clean(&self.user).replace(',', "_"),
            clean(&self.client),
            clean(&self.action),
            clean(&self.what)
        )
    }

    fn parse(line: &str) -> Option<Record> {
        let mut f = line.splitn(5, ',');
        Some(Record {
            timestamp: f.next()?.parse().ok()?,
            user: f.next()?.to_string(),
            client: f.next()?.to_string(),
            action: f.next()?.to_string(),
            what: f.next()?.to_string(),
        })
    }
}

/// How much of the file's end [`Audit::newest`] reads first.
const TAIL_CHUNK: u64 = 256 * 1024;

pub struct Audit {
    path: PathBuf,
    file: Mutex<File>,
    sql: Option<Link>,
}

fn create(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite => {
            "CREATE TABLE IF NOT EXISTS imspector_audit (
                id integer PRIMARY KEY AUTOINCREMENT,
                timestamp integer NOT NULL,
                username text NOT NULL,
                clientaddress text NOT NULL,
                action text NOT NULL,
                target text NOT NULL)"
        }
        Dialect::Mysql => {
            "CREATE TABLE IF NOT EXISTS imspector_audit (
                id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
                timestamp int NOT NULL,
                username text NOT NULL,
                clientaddress text NOT NULL,
                action text NOT NULL,
                target text NOT NULL
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        }
        // Times as in its messages table.
        Dialect::Postgres => {
            "CREATE TABLE IF NOT EXISTS imspector_audit (
                id serial PRIMARY KEY,
                timestamp timestamp with time zone NOT NULL,
                username text NOT NULL,
                clientaddress text NOT NULL,
                action text NOT NULL,
                target text NOT NULL)"
        }
    }
}

fn insert(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite | Dialect::Mysql => {
            "INSERT INTO imspector_audit (timestamp, username, clientaddress, action, target)
             VALUES (?, ?, ?, ?, ?)"
        }
        Dialect::Postgres => {
            "INSERT INTO imspector_audit (timestamp, username, clientaddress, action, target)
             VALUES (to_timestamp($1::bigint), $2, $3, $4, $5)"
        }
    }
}

impl Audit {
    /// The audit file at `path`, and the table `imspector_audit` in the
    /// database of `sql` when the viewer reads one.
    pub fn open(path: &Path, sql: Option<Link>) -> anyhow::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| anyhow::anyhow!("{}: {e}", parent.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("audit log {}: {e}", path.display()))?;
        if let Some(link) = &sql {
            link.query(create(link.dialect), &[])
                .map_err(|e| anyhow::anyhow!("imspector_audit: {e:#}"))?;
        }
        Ok(Audit {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            sql,
        })
    }

    /// Record one access. A record that cannot be written is an error the
    /// caller must not serve past: an unaudited read is refused.
    pub fn record(&self, r: Record) -> anyhow::Result<()> {
        self.file
            .lock()
            .expect("audit lock")
            .write_all(r.line().as_bytes())
            .map_err(|e| anyhow::anyhow!("audit log {}: {e}", self.path.display()))?;
        if let Some(link) = &self.sql {
            let args = [
                Arg::Int(r.timestamp),
                Arg::Text(r.user),
                Arg::Text(r.client),
                Arg::Text(r.action),
                Arg::Text(r.what),
            ];
            link.query(insert(link.dialect), &args)
                .map_err(|e| anyhow::anyhow!("imspector_audit: {e:#}"))?;
        }
        Ok(())
    }

    /// The newest `n` records of the file, newest first. Only the file's end
    /// is read, however long the log has grown.
    pub fn newest(&self, n: usize) -> anyhow::Result<Vec<Record>> {
        let mut file = File::open(&self.path)?;
        let len = file.metadata()?.len();
        let mut chunk = TAIL_CHUNK;
        loop {
            let start = len.saturating_sub(chunk);
            file.seek(SeekFrom::Start(start))?;
            let mut bytes = Vec::new();
            (&mut file).take(len - start).read_to_end(&mut bytes)?;
            let text = String::from_utf8_lossy(&bytes);
            let mut lines: Vec<&str> = text.lines().collect();
            // The first line of a chunk may be the end of a longer one.
            if start > 0 && !lines.is_empty() {
                lines.remove(0);
            }
            if lines.len() >= n || start == 0 {
                return Ok(lines
                    .iter()
                    .rev()
                    .filter_map(|l| Record::parse(l))
                    .take(n)
                    .collect());
            }
            chunk *= 4;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize) -> Record {
        Record {
            timestamp: i as i64,
            user: format!("user{i}"),
            client: "127.0.0.1:1".into(),
            action: "search".into(),
            what: format!("text=\"{}\"", "x".repeat(i % 1000)),
        }
    }

    #[test]
    fn newest_reads_the_end_of_a_long_log() {
        let dir = tempfile::tempdir().unwrap();
        let audit = Audit::open(&dir.path().join("audit.log"), None).unwrap();
        let all: Vec<Record> = (0..3000).map(record).collect();
        for r in &all {
            audit.record(r.clone()).unwrap();
        }
        assert!(
            std::fs::metadata(dir.path().join("audit.log"))
                .unwrap()
                .len()
                > 4 * TAIL_CHUNK
        );
        for n in [1, 500, 2500, 5000] {
            let want: Vec<Record> = all.iter().rev().take(n).cloned().collect();
            assert_eq!(audit.newest(n).unwrap(), want, "{n}");
        }
    }
}
