//! `retention_days`: events dated in the past are deleted from the file logs
//! (whole day files), the SQL tables of real SQLite, MariaDB and PostgreSQL
//! databases (in batches) and the journals' dead-letter files, with one line
//! that counts them; the daemon does it at start.

use std::path::Path;

use chrono::TimeZone;
use imspector::config::{Config, Settings};
use imspector::event::LogEvent;
use imspector::retention::{days, Retention, BATCH};
use imspector_e2e::databases::{self, Mariadb, Postgres};
use imspector_e2e::{Imspector, Rig};

const DAY: i64 = 24 * 60 * 60;

/// A message from `local` to `remote` at `timestamp`.
fn at(n: usize, timestamp: i64, local: &str, remote: &str) -> LogEvent {
    LogEvent {
        timestamp,
        local_id: local.into(),
        remote_id: remote.into(),
        protocol: "IRC".into(),
        ..databases::event(n)
    }
}

/// The events of a site that keeps 30 days: more than a batch of rows 40
/// days old, a conversation that ended 35 days ago, and recent ones.
fn history(now: i64) -> Vec<LogEvent> {
    let mut events: Vec<LogEvent> = (0..BATCH * 2 + 500)
        .map(|n| at(n, now - 40 * DAY, "alice", "bob"))
        .collect();
    events.push(at(1, now - 35 * DAY, "alice", "carol"));
    events.push(at(2, now - 29 * DAY, "alice", "bob"));
    events.push(at(3, now, "alice", "bob"));
    events
}

fn log_through_config(config_text: &str, events: &[LogEvent]) -> Config {
    let config = Config::from_settings(Settings::parse("test.conf", config_text).unwrap()).unwrap();
    databases::log_through(imspector::build_sinks(&config).unwrap(), events);
    config
}

/// What the daemon logs for a pass at `now`.
fn expected_line(days: i64, now: i64, counts: &str) -> String {
    let before = chrono::Local.timestamp_opt(now - days * DAY, 0).unwrap();
    format!(
        "retention ({days} days): deleted events before {}: {counts}",
        before.format("%Y-%m-%d %H:%M")
    )
}

fn day_file(dir: &Path, remote: &str, when: i64) -> std::path::PathBuf {
    let date = chrono::Local
        .timestamp_opt(when, 0)
        .unwrap()
        .format("%Y-%m-%d");
    dir.join("IRC/alice").join(remote).join(date.to_string())
}

fn dead_letter(seq: u64, timestamp: i64) -> String {
    format!("{seq}\t{timestamp}\t192.168.0.4:40000\tIRC\t1\t1\talice\tbob\t0\t\trefused\n")
}

#[test]
fn old_day_files_rows_and_dead_letters_go_and_recent_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, db, spool) = (
        dir.path().join("logs"),
        dir.path().join("im.db"),
        dir.path().join("spool"),
    );
    let now = chrono::Utc::now().timestamp();
    let config = log_through_config(
        &format!(
            "file_logging_dir={}\nsqlite_file={}\nspool_dir={}\nretention_days=30\n",
            logs.display(),
            db.display(),
            spool.display()
        ),
        &history(now),
    );
    let letters = spool.join("sqlite/dead-letters");
    std::fs::write(
        &letters,
        [
            dead_letter(7, now - 31 * DAY),
            dead_letter(9, now - 40 * DAY),
            dead_letter(12, now - DAY),
        ]
        .concat(),
    )
    .unwrap();

    let mut retention = Retention::new(
        days(&config.settings).unwrap(),
        &config.settings,
        Some(&logs),
    )
    .unwrap()
    .unwrap();
    let (_, line) = retention.pass(now);
    assert_eq!(
        line,
        expected_line(
            30,
            now,
            "file logs 2 day files (2501 events); sqlite 2501 rows; dead letters 2"
        )
    );
    assert!(!day_file(&logs, "bob", now - 40 * DAY).exists());
    assert!(day_file(&logs, "bob", now - 29 * DAY).exists());
    assert!(day_file(&logs, "bob", now).exists());
    // A conversation with no day left is gone as a whole.
    assert!(!logs.join("IRC/alice/carol").exists());

    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut kept = conn
        .prepare("SELECT timestamp FROM messages ORDER BY id")
        .unwrap();
    let kept: Vec<i64> = kept
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(kept, [now - 29 * DAY, now]);
    assert_eq!(
        std::fs::read_to_string(&letters).unwrap(),
        dead_letter(12, now - DAY)
    );

    let (_, again) = retention.pass(now);
    assert_eq!(
        again,
        expected_line(
            30,
            now,
            "file logs 0 day files (0 events); sqlite 0 rows; dead letters 0"
        )
    );
}

/// Old rows of a real server are deleted in batches; the recent ones stay.
fn server_keeps_only_recent_rows(config: &str, sink: &str, timestamps: impl Fn() -> String) {
    let dir = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now().timestamp();
    let config = log_through_config(
        &format!(
            "{config}spool_dir={}\nretention_days=30\n",
            dir.path().display()
        ),
        &history(now),
    );
    let mut retention = Retention::new(days(&config.settings).unwrap(), &config.settings, None)
        .unwrap()
        .unwrap();
    let (_, line) = retention.pass(now);
    assert_eq!(
        line,
        expected_line(30, now, &format!("{sink} 2501 rows; dead letters 0"))
    );
    assert_eq!(
        timestamps(),
        format!("{}\n{now}\n", now - 29 * DAY),
        "rows left in {sink}"
    );
}

#[test]
fn mariadb_old_rows_are_deleted_in_batches() {
    let db = Mariadb::start();
    server_keeps_only_recent_rows(&db.config(), "mysql", || {
        db.sql(&format!(
            "SELECT `timestamp` FROM {}.messages ORDER BY id",
            databases::DB_NAME
        ))
    });
}

#[test]
fn postgres_old_rows_are_deleted_in_batches() {
    let db = Postgres::start();
    server_keeps_only_recent_rows(
        &format!("pgsql_connect={}\n", db.connect_string()),
        "postgres",
        || db.sql("SELECT extract(epoch FROM timestamp)::bigint FROM messages ORDER BY id"),
    );
}

#[test]
fn the_daemon_deletes_old_day_files_at_start() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    let dir = rig.subdir("ims")?;
    let logs = dir.join("logs");
    let now = chrono::Utc::now().timestamp();
    let old = day_file(&logs, "bob", now - 10 * DAY);
    let recent = day_file(&logs, "bob", now - 2 * DAY);
    std::fs::create_dir_all(old.parent().unwrap())?;
    std::fs::write(
        &old,
        "192.168.0.4:1,1,1,1,0,,one\n192.168.0.4:1,1,1,1,0,,two\n",
    )?;
    std::fs::write(&recent, "192.168.0.4:1,1,1,1,0,,three\n")?;
    let ims = Imspector::start(&rig.gateway, &dir, "irc_protocol=on\nretention_days=7\n")?;
    ims.wait_output("retention (7 days)")?;
    let output = ims.process.output();
    let line = output
        .lines()
        .find(|l| l.contains("retention (7 days)"))
        .unwrap();
    assert!(
        line.ends_with(": file logs 1 day files (2 events)"),
        "{line}"
    );
    assert!(!old.exists());
    assert_eq!(
        std::fs::read_to_string(&recent)?,
        "192.168.0.4:1,1,1,1,0,,three\n"
    );
    Ok(())
}
