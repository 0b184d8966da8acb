//! Notices to the local user (the 0.9 responder): that the conversation is
//! logged (`notice_days`), and that something they sent was blocked
//! (`filtered_mins`).
//!
//! Each kind of notice is sent at most once per period per conversation: per
//! protocol, local id and remote id. When each was last sent is kept in memory
//! and stored in the SQLite file `responder_filename` (table `notices`, created
//! if missing) by a background thread, so it survives restarts and `apply`
//! never waits on the disk.
//!
//! The logging notice is given on the first message or file transfer of a
//! conversation in either direction. The blocked notice is given only for what
//! the local user sent: telling them the text of a blocked incoming message
//! would undo the block.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

use imspector_protocols::{Direction, EventType};
use rusqlite::{params, Connection};

use super::listfile::ListError;
use super::{Filter, FilterEvent};
use crate::config::{ConfigError, Settings};

const DEFAULT_NOTICE: &str = "Your activities are being logged";
const DEFAULT_FILTERED: &str = "The message or action was blocked";
const DEFAULT_PREFIX: &str = "Message from IMSpector: -=";
const DEFAULT_POSTFIX: &str = "=-";

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS notices (
    protocolname text NOT NULL,
    localid text NOT NULL,
    remoteid text NOT NULL,
    type integer NOT NULL,
    timestamp integer NOT NULL,
    PRIMARY KEY (protocolname, localid, remoteid, type))";

/// The two kinds of notice, as stored in `notices.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Logged = 1,
    Blocked = 2,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    protocol: String,
    local: String,
    remote: String,
    kind: Kind,
}

/// One kind of notice: how often, and what it says.
struct Notice {
    period_secs: i64,
    text: String,
}

/// Unix seconds; replaceable in tests.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

enum Job {
    Store(Key, i64),
    #[cfg(test)]
    Sync(mpsc::Sender<()>),
}

pub struct Responder {
    logged: Option<Notice>,
    blocked: Option<Notice>,
    prefix: String,
    postfix: String,
    last_sent: Mutex<HashMap<Key, i64>>,
    jobs: mpsc::Sender<Job>,
    clock: Clock,
}

impl Responder {
    pub fn from_settings(settings: &Settings) -> Result<Option<Self>, ConfigError> {
        Self::with_clock(settings, Arc::new(unix_now))
    }

    fn with_clock(settings: &Settings, clock: Clock) -> Result<Option<Self>, ConfigError> {
        let text = |key, default: &str| settings.get(key).unwrap_or(default).to_string();
        let period = |key, unit_secs: i64| -> Result<Option<i64>, ConfigError> {
            Ok(settings
                .parsed::<u32>(key)?
                .filter(|n| *n > 0)
                .map(|n| i64::from(n) * unit_secs))
        };
        let logged = period("notice_days", 24 * 60 * 60)?.map(|period_secs| Notice {
            period_secs,
            text: text("notice_response", DEFAULT_NOTICE),
        });
        let blocked = period("filtered_mins", 60)?.map(|period_secs| Notice {
            period_secs,
            text: text("filtered_response", DEFAULT_FILTERED),
        });
        let Some(path) = settings.path("responder_filename") else {
            for key in ["notice_days", "filtered_mins"] {
                if period(key, 1)?.is_some() {
                    return Err(settings.bad(
                        key,
                        "needs responder_filename (the file that remembers who was told)",
                    ));
                }
            }
            return Ok(None);
        };
        if logged.is_none() && blocked.is_none() {
            return Ok(None);
        }
        let (last_sent, jobs) = open(&path)?;
        Ok(Some(Responder {
            logged,
            blocked,
            prefix: text("response_prefix", DEFAULT_PREFIX),
            postfix: text("response_postfix", DEFAULT_POSTFIX),
            last_sent: Mutex::new(last_sent),
            jobs,
            clock,
        }))
    }

    /// True (and remembered) when `kind` is due for this conversation.
    fn due(&self, event: &FilterEvent, kind: Kind, period_secs: i64) -> bool {
        let key = Key {
            protocol: event.protocol.to_string(),
            local: event.local_id.to_string(),
            remote: event.remote_id.to_string(),
            kind,
        };
        let now = (self.clock)();
        let mut last_sent = self.last_sent.lock().expect("responder lock poisoned");
        if last_sent
            .get(&key)
            .is_some_and(|last| now - last < period_secs)
        {
            return false;
        }
        last_sent.insert(key.clone(), now);
        let _ = self.jobs.send(Job::Store(key, now));
        true
    }

    fn wrap(&self, text: &str) -> String {
        format!("{}{text}{}", self.prefix, self.postfix)
    }

    #[cfg(test)]
    fn sync(&self) {
        let (reply, done) = mpsc::channel();
        self.jobs.send(Job::Sync(reply)).unwrap();
        done.recv().unwrap();
    }
}

impl Filter for Responder {
    fn apply(&self, event: &mut FilterEvent) {
        if !matches!(event.kind, EventType::Message | EventType::File) {
            return;
        }
        if let Some(notice) = &self.logged {
            if self.due(event, Kind::Logged, notice.period_secs) {
                event.notices.push(self.wrap(&notice.text));
            }
        }
        if let Some(notice) = &self.blocked {
            if event.blocked
                && event.direction == Direction::Outgoing
                && self.due(event, Kind::Blocked, notice.period_secs)
            {
                let text = format!("{} ({})", notice.text, event.text);
                event.notices.push(self.wrap(&text));
            }
        }
    }
}

/// What a blocked message's answer says where the protocol can answer with
/// text of its own (the ICAP service's HTTP refusals): `filtered_response`,
/// followed by the blocked text in parentheses, as the notice has it.
pub fn blocked_text(settings: &Settings, text: &str) -> String {
    let notice = settings
        .get("filtered_response")
        .unwrap_or(DEFAULT_FILTERED);
    format!("{notice} ({text})")
}

/// Open (and create) the store, read what was sent before, and start the writer.
fn open(path: &Path) -> Result<(HashMap<Key, i64>, mpsc::Sender<Job>), ListError> {
    let db_err = |e| ListError::database(path, e);
    let conn = Connection::open(path).map_err(db_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(2))
        .map_err(db_err)?;
    conn.execute_batch(CREATE_TABLE).map_err(db_err)?;
    let last_sent = load(&conn).map_err(db_err)?;
    let (jobs, queue) = mpsc::channel();
    let shown = path.display().to_string();
    std::thread::Builder::new()
        .name("responder".to_string())
        .spawn(move || write_loop(&conn, &shown, queue))
        .map_err(|e| ListError::whole(path, format!("cannot start its thread: {e}")))?;
    Ok((last_sent, jobs))
}

fn load(conn: &Connection) -> rusqlite::Result<HashMap<Key, i64>> {
    let mut stmt =
        conn.prepare("SELECT protocolname, localid, remoteid, type, timestamp FROM notices")?;
    let rows = stmt.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, i64>(3)?,
            row.get::<_, i64>(4)?,
        ))
    })?;
    let mut last_sent = HashMap::new();
    for row in rows {
        let (protocol, local, remote, kind, timestamp) = row?;
        let kind = match kind {
            1 => Kind::Logged,
            2 => Kind::Blocked,
            _ => continue,
        };
        let key = Key {
            protocol,
            local,
            remote,
            kind,
        };
        last_sent.insert(key, timestamp);
    }
    Ok(last_sent)
}

/// Store each notice sent; ends when the responder is dropped.
fn write_loop(conn: &Connection, shown: &str, queue: mpsc::Receiver<Job>) {
    for job in queue {
        match job {
            Job::Store(key, timestamp) => {
                let stored = conn.execute(
                    "INSERT OR REPLACE INTO notices
                     (protocolname, localid, remoteid, type, timestamp)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        key.protocol,
                        key.local,
                        key.remote,
                        key.kind as i64,
                        timestamp
                    ],
                );
                if let Err(e) = stored {
                    log::warn!("{shown}: cannot remember a notice: {e}");
                }
            }
            #[cfg(test)]
            Job::Sync(reply) => {
                let _ = reply.send(());
            }
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use crate::filter::testing::event_between;

    struct Fixture {
        dir: tempfile::TempDir,
        now: Arc<AtomicI64>,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                dir: tempfile::tempdir().unwrap(),
                now: Arc::new(AtomicI64::new(1_000_000)),
            }
        }

        fn responder(&self, extra: &str) -> Responder {
            let conf = format!(
                "responder_filename={}\n{extra}",
                self.dir.path().join("responder.db").display()
            );
            let now = self.now.clone();
            Responder::with_clock(
                &Settings::parse("t.conf", &conf).unwrap(),
                Arc::new(move || now.load(Ordering::SeqCst)),
            )
            .unwrap()
            .unwrap()
        }

        fn advance(&self, secs: i64) {
            self.now.fetch_add(secs, Ordering::SeqCst);
        }
    }

    fn notices(
        r: &Responder,
        dir: Direction,
        local: &str,
        remote: &str,
        blocked: bool,
    ) -> Vec<String> {
        let mut e = event_between(local, remote, "the text");
        e.direction = dir;
        e.blocked = blocked;
        r.apply(&mut e);
        e.notices
    }

    const OUT: Direction = Direction::Outgoing;
    const IN: Direction = Direction::Incoming;
    const LOGGED: &str = "Message from IMSpector: -=Your activities are being logged=-";

    #[test]
    fn logging_notice_once_per_period_per_conversation() {
        let fx = Fixture::new();
        let r = fx.responder("notice_days=7\n");
        assert_eq!(notices(&r, IN, "alice", "bob", false), vec![LOGGED]);
        assert!(notices(&r, OUT, "alice", "bob", false).is_empty());
        assert_eq!(notices(&r, OUT, "alice", "carol", false), vec![LOGGED]);
        fx.advance(7 * 24 * 3600 - 1);
        assert!(notices(&r, OUT, "alice", "bob", false).is_empty());
        fx.advance(1);
        assert_eq!(notices(&r, OUT, "alice", "bob", false), vec![LOGGED]);
    }

    #[test]
    fn remembered_across_restarts() {
        let fx = Fixture::new();
        let r = fx.responder("notice_days=1\n");
        assert_eq!(notices(&r, OUT, "alice", "bob", false), vec![LOGGED]);
        r.sync();
        drop(r);
        let r = fx.responder("notice_days=1\n");
        assert!(notices(&r, OUT, "alice", "bob", false).is_empty());
        fx.advance(24 * 3600);
        assert_eq!(notices(&r, OUT, "alice", "bob", false), vec![LOGGED]);
    }

    #[test]
    fn blocked_notice_for_what_the_local_user_sent() {
        let fx = Fixture::new();
        let r = fx.responder(
            "filtered_mins=15\nresponse_prefix=[\nresponse_postfix=]\nfiltered_response=Not sent\n",
        );
        assert!(notices(&r, OUT, "alice", "bob", false).is_empty());
        assert!(notices(&r, IN, "alice", "bob", true).is_empty());
        assert_eq!(
            notices(&r, OUT, "alice", "bob", true),
            vec!["[Not sent (the text)]"]
        );
        fx.advance(15 * 60 - 1);
        assert!(notices(&r, OUT, "alice", "bob", true).is_empty());
        fx.advance(1);
        assert_eq!(
            notices(&r, OUT, "alice", "bob", true),
            vec!["[Not sent (the text)]"]
        );
    }

    #[test]
    fn both_notices_on_one_event_and_typing_ignored() {
        let fx = Fixture::new();
        let r = fx.responder("notice_days=7\nfiltered_mins=15\nnotice_response=Logged\n");
        let mut typing = event_between("alice", "bob", "");
        typing.kind = EventType::Typing;
        r.apply(&mut typing);
        assert!(typing.notices.is_empty());
        assert_eq!(
            notices(&r, OUT, "alice", "bob", true),
            vec![
                "Message from IMSpector: -=Logged=-",
                "Message from IMSpector: -=The message or action was blocked (the text)=-"
            ]
        );
    }

    #[test]
    fn settings_that_cannot_work_are_errors() {
        let e = Responder::from_settings(&Settings::parse("t.conf", "\nnotice_days=7\n").unwrap())
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "t.conf:2: notice_days: needs responder_filename (the file that remembers who was told)"
        );
        let e = Responder::from_settings(
            &Settings::parse(
                "t.conf",
                "responder_filename=/tmp/x.db\nfiltered_mins=soon\n",
            )
            .unwrap(),
        )
        .err()
        .unwrap();
        assert!(
            e.to_string()
                .starts_with("t.conf:2: filtered_mins: \"soon\""),
            "{e}"
        );
        let off = Settings::parse("t.conf", "responder_filename=/nonexistent/r.db\n").unwrap();
        assert!(Responder::from_settings(&off).unwrap().is_none());
    }
}
