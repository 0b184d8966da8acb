//! Who read what: one record for every login, view, search and export.
//!
//! The file (`web_audit_filename`) holds one line a record,
//! `timestamp,user,client,action,what` (UNIX seconds; `what` is the rest of
//! the line, newlines written as `\n`). With an SQLite source the records also
//! go to its table `imspector_audit`, next to `messages`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

pub struct Audit {
    path: PathBuf,
    file: Mutex<File>,
    sql: Option<Mutex<rusqlite::Connection>>,
}

const CREATE: &str = "CREATE TABLE IF NOT EXISTS imspector_audit (
    id integer PRIMARY KEY AUTOINCREMENT,
    timestamp integer NOT NULL,
    username text NOT NULL,
    clientaddress text NOT NULL,
    action text NOT NULL,
    target text NOT NULL)";

impl Audit {
    pub fn open(path: &Path, sqlite: Option<&Path>) -> anyhow::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| anyhow::anyhow!("{}: {e}", parent.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("audit log {}: {e}", path.display()))?;
        let sql = match sqlite {
            None => None,
            Some(db) => {
                let conn = rusqlite::Connection::open(db)?;
                conn.busy_timeout(std::time::Duration::from_secs(5))?;
                conn.execute_batch(CREATE)
                    .map_err(|e| anyhow::anyhow!("{}: imspector_audit: {e}", db.display()))?;
                Some(Mutex::new(conn))
            }
        };
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
        if let Some(sql) = &self.sql {
            sql.lock().expect("audit lock").execute(
                "INSERT INTO imspector_audit (timestamp, username, clientaddress, action, target)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![r.timestamp, r.user, r.client, r.action, r.what],
            )?;
        }
        Ok(())
    }

    /// The newest `n` records of the file, newest first.
    pub fn newest(&self, n: usize) -> anyhow::Result<Vec<Record>> {
        let file = File::open(&self.path)?;
        let mut all: Vec<Record> = BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| Record::parse(&l))
            .collect();
        all.reverse();
        all.truncate(n);
        Ok(all)
    }
}
