//! The SQLite database filter (`db_filter_filename`), table `lists`:
//! `localid`, `remoteid` (NULL matches anything), `action` (1 ACCEPT, 2 BLOCK,
//! 3 AWL), `type` (1 MANUAL, 2 AUTO), `timestamp`.
//!
//! An ACCEPT match allows; else an outgoing event with an AWL match allows and
//! adds an ACCEPT/AUTO row for that pair (once); else a BLOCK match blocks; else
//! the event is allowed.
//!
//! Other programs may edit the table while the proxy runs. Events are judged
//! against an in-memory copy, never by a query: a background thread keeps one
//! connection, asks SQLite every 250 ms whether another connection changed the
//! file (`PRAGMA data_version`), and reloads the copy when it did. The same
//! thread writes the learned ACCEPT rows, so `apply` never waits on the disk.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, RwLock};
use std::time::Duration;

use imspector_protocols::Direction;
use rusqlite::{params, Connection};

use super::listfile::ListError;
use super::{Filter, FilterEvent};

const ACCEPT: i64 = 1;
const BLOCK: i64 = 2;
const AWL: i64 = 3;
const AUTO: i64 = 2;

/// How often the file is checked for changes by others.
const POLL: Duration = Duration::from_millis(250);

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS lists (
    id integer PRIMARY KEY AUTOINCREMENT,
    localid text,
    remoteid text,
    action integer NOT NULL,
    type integer NOT NULL,
    timestamp integer NOT NULL)";

#[derive(Debug)]
struct Row {
    local: Option<String>,
    remote: Option<String>,
    action: i64,
}

#[derive(Debug, Default)]
struct Snapshot {
    rows: Vec<Row>,
}

impl Snapshot {
    fn has(&self, action: i64, local: &str, remote: &str) -> bool {
        self.rows.iter().any(|row| {
            row.action == action
                && row.local.as_deref().is_none_or(|id| id == local)
                && row.remote.as_deref().is_none_or(|id| id == remote)
        })
    }
}

enum Job {
    /// Add an ACCEPT/AUTO row for this pair unless one is there.
    Accept { local: String, remote: String },
    /// Pick up changes by others now, then answer.
    #[cfg(test)]
    Sync(mpsc::Sender<()>),
}

pub struct DbFilter {
    snapshot: Arc<RwLock<Snapshot>>,
    jobs: mpsc::Sender<Job>,
}

impl DbFilter {
    /// Open (and create) the database and load the table. The background
    /// thread ends when the filter is dropped (e.g. replaced on SIGHUP).
    pub fn open(path: &Path) -> Result<Self, ListError> {
        let db_err = |e| ListError::database(path, e);
        let conn = Connection::open(path).map_err(db_err)?;
        conn.busy_timeout(Duration::from_secs(2)).map_err(db_err)?;
        conn.execute_batch(CREATE_TABLE).map_err(db_err)?;
        let snapshot = Arc::new(RwLock::new(load(&conn).map_err(db_err)?));
        let version = data_version(&conn).map_err(db_err)?;
        let (jobs, queue) = mpsc::channel();
        let worker = Worker {
            path: path.to_path_buf(),
            conn,
            version,
            snapshot: snapshot.clone(),
        };
        std::thread::Builder::new()
            .name("db-filter".to_string())
            .spawn(move || worker.run(queue))
            .map_err(|e| ListError::whole(path, format!("cannot start its thread: {e}")))?;
        Ok(DbFilter { snapshot, jobs })
    }

    /// Learn an AWL pair: accept it from now on, and store that.
    fn learn(&self, local: &str, remote: &str) {
        let mut snapshot = self.snapshot.write().expect("db filter lock poisoned");
        // Another thread may have learned it just now.
        if snapshot.has(ACCEPT, local, remote) {
            return;
        }
        snapshot.rows.push(Row {
            local: Some(local.to_string()),
            remote: Some(remote.to_string()),
            action: ACCEPT,
        });
        let _ = self.jobs.send(Job::Accept {
            local: local.to_string(),
            remote: remote.to_string(),
        });
    }

    /// Wait until the thread has seen every change made so far, by others and by us.
    #[cfg(test)]
    fn sync(&self) {
        let (reply, done) = mpsc::channel();
        self.jobs.send(Job::Sync(reply)).unwrap();
        done.recv().unwrap();
    }
}

impl Filter for DbFilter {
    fn apply(&self, event: &mut FilterEvent) {
        // Something else already said no: nothing to accept, nothing to learn.
        if event.blocked {
            return;
        }
        let (local, remote) = (&*event.local_id, &*event.remote_id);
        let snapshot = self.snapshot.read().expect("db filter lock poisoned");
        if snapshot.has(ACCEPT, local, remote) {
            return;
        }
        if event.direction == Direction::Outgoing && snapshot.has(AWL, local, remote) {
            drop(snapshot);
            self.learn(local, remote);
            return;
        }
        if snapshot.has(BLOCK, local, remote) {
            event.blocked = true;
        }
    }
}

struct Worker {
    path: PathBuf,
    conn: Connection,
    version: i64,
    snapshot: Arc<RwLock<Snapshot>>,
}

impl Worker {
    fn run(mut self, queue: mpsc::Receiver<Job>) {
        loop {
            let result = match queue.recv_timeout(POLL) {
                Ok(Job::Accept { local, remote }) => self.accept(&local, &remote),
                #[cfg(test)]
                Ok(Job::Sync(reply)) => {
                    let result = self.refresh();
                    let _ = reply.send(());
                    result
                }
                Err(mpsc::RecvTimeoutError::Timeout) => self.refresh(),
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            if let Err(e) = result {
                log::warn!("{}: database filter: {e}", self.path.display());
            }
        }
    }

    fn accept(&mut self, local: &str, remote: &str) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO lists (localid, remoteid, action, type, timestamp)
             SELECT ?1, ?2, ?3, ?4, strftime('%s', 'now')
             WHERE NOT EXISTS (SELECT 1 FROM lists
                               WHERE localid = ?1 AND remoteid = ?2 AND action = ?3)",
            params![local, remote, ACCEPT, AUTO],
        )?;
        Ok(())
    }

    /// Reload the copy when another connection changed the file.
    fn refresh(&mut self) -> rusqlite::Result<()> {
        let version = data_version(&self.conn)?;
        if version != self.version {
            let fresh = load(&self.conn)?;
            *self.snapshot.write().expect("db filter lock poisoned") = fresh;
            self.version = version;
        }
        Ok(())
    }
}

fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA data_version", [], |row| row.get(0))
}

fn load(conn: &Connection) -> rusqlite::Result<Snapshot> {
    let mut stmt = conn.prepare("SELECT localid, remoteid, action FROM lists")?;
    let rows = stmt
        .query_map([], |row| {
            let id = |i| -> rusqlite::Result<Option<String>> {
                Ok(row.get::<_, Option<String>>(i)?.map(|s| s.to_lowercase()))
            };
            Ok(Row {
                local: id(0)?,
                remote: id(1)?,
                action: row.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Snapshot { rows })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::testing::event_between;

    struct Fixture {
        _dir: tempfile::TempDir,
        path: PathBuf,
        other: Connection,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("filter.db");
        let other = Connection::open(&path).unwrap();
        other.execute_batch(CREATE_TABLE).unwrap();
        Fixture {
            _dir: dir,
            path,
            other,
        }
    }

    impl Fixture {
        fn add(&self, local: Option<&str>, remote: Option<&str>, action: i64) {
            self.other
                .execute(
                    "INSERT INTO lists (localid, remoteid, action, type, timestamp) VALUES (?1, ?2, ?3, 1, 0)",
                    params![local, remote, action],
                )
                .unwrap();
        }

        fn rows(&self) -> Vec<(Option<String>, Option<String>, i64, i64)> {
            let mut stmt = self
                .other
                .prepare("SELECT localid, remoteid, action, type FROM lists ORDER BY id")
                .unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        }
    }

    fn blocked(f: &DbFilter, dir: Direction, local: &str, remote: &str) -> bool {
        let mut e = event_between(local, remote, "hi");
        e.direction = dir;
        f.apply(&mut e);
        e.blocked
    }

    const OUT: Direction = Direction::Outgoing;
    const IN: Direction = Direction::Incoming;

    #[test]
    fn accept_before_block_and_null_matches_anything() {
        let fx = fixture();
        fx.add(Some("alice"), None, BLOCK);
        fx.add(Some("alice"), Some("Bob"), ACCEPT);
        let f = DbFilter::open(&fx.path).unwrap();
        assert!(!blocked(&f, OUT, "alice", "bob"));
        assert!(!blocked(&f, IN, "alice", "bob"));
        assert!(blocked(&f, OUT, "alice", "carol"));
        assert!(blocked(&f, IN, "alice", "carol"));
        assert!(!blocked(&f, OUT, "dave", "carol"));
    }

    #[test]
    fn awl_learns_an_outgoing_pair_once() {
        let fx = fixture();
        fx.add(None, None, BLOCK);
        fx.add(Some("alice"), None, AWL);
        let f = DbFilter::open(&fx.path).unwrap();
        // Incoming first: nobody accepted it, so the BLOCK row decides.
        assert!(blocked(&f, IN, "alice", "bob"));
        // Alice writes first: allowed and learned.
        assert!(!blocked(&f, OUT, "alice", "bob"));
        assert!(!blocked(&f, OUT, "alice", "bob"));
        assert!(!blocked(&f, IN, "alice", "bob"));
        // Others are not learned.
        assert!(blocked(&f, OUT, "carol", "bob"));
        f.sync();
        assert_eq!(
            fx.rows()[2..],
            [(
                Some("alice".to_string()),
                Some("bob".to_string()),
                ACCEPT,
                AUTO
            )]
        );
        // A new proxy (restart) finds the row and does not add it again.
        drop(f);
        let f = DbFilter::open(&fx.path).unwrap();
        assert!(!blocked(&f, IN, "alice", "bob"));
        assert!(!blocked(&f, OUT, "alice", "bob"));
        f.sync();
        assert_eq!(fx.rows().len(), 3);
    }

    #[test]
    fn an_event_blocked_before_is_not_learned() {
        let fx = fixture();
        fx.add(None, None, AWL);
        let f = DbFilter::open(&fx.path).unwrap();
        let mut e = event_between("alice", "bob", "hi");
        e.blocked = true;
        f.apply(&mut e);
        f.sync();
        assert_eq!(fx.rows().len(), 1);
    }

    #[test]
    fn edits_by_other_programs_take_effect_without_restart() {
        let fx = fixture();
        let f = DbFilter::open(&fx.path).unwrap();
        assert!(!blocked(&f, OUT, "alice", "mallory"));
        fx.add(Some("alice"), Some("mallory"), BLOCK);
        f.sync();
        assert!(blocked(&f, OUT, "alice", "mallory"));
        fx.other.execute("DELETE FROM lists", []).unwrap();
        f.sync();
        assert!(!blocked(&f, OUT, "alice", "mallory"));
    }

    #[test]
    fn the_background_poll_picks_up_edits_on_its_own() {
        let fx = fixture();
        let f = DbFilter::open(&fx.path).unwrap();
        fx.add(Some("alice"), Some("mallory"), BLOCK);
        // No sync: wait for the poll (every 250 ms), giving up after a long while.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !blocked(&f, OUT, "alice", "mallory") {
            assert!(std::time::Instant::now() < deadline, "edit never seen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn creates_the_table_and_reports_unusable_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        let f = DbFilter::open(&path).unwrap();
        assert!(!blocked(&f, OUT, "a", "b"));
        let rows: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM lists", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0);
        let e = DbFilter::open(&dir.path().join("no/such/dir.db"))
            .err()
            .unwrap();
        assert!(
            e.to_string().starts_with(&format!(
                "{}: database: ",
                dir.path().join("no/such/dir.db").display()
            )),
            "{e}"
        );
    }
}
