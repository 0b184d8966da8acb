//! The SQL sinks against real servers: every field read back, tables of the
//! original reused, and no event lost or repeated when the database goes away
//! while imspector runs and restarts.

use std::path::Path;
use std::process::Command;

use imspector::config::{Config, Settings};
use imspector::event::LogEvent;
use imspector::log;
use imspector_e2e::databases::{self, event, log_through, send, Mariadb, Postgres};

/// A row as every backend gives it back: the `messages` columns after `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    timestamp: i64,
    client: String,
    protocol: String,
    outgoing: i64,
    kind: i64,
    local_id: String,
    remote_id: String,
    filtered: i64,
    /// `None` in a table without the column.
    categories: Option<String>,
    data: String,
}

fn expected(e: &LogEvent, with_categories: bool) -> Row {
    Row {
        timestamp: e.timestamp,
        client: e.client.to_string(),
        protocol: e.protocol.to_string(),
        outgoing: e.outgoing.into(),
        kind: e.kind.code().into(),
        local_id: e.local_id.to_string(),
        remote_id: e.remote_id.to_string(),
        filtered: e.filtered.into(),
        categories: with_categories.then(|| e.categories.clone()),
        data: e.data.clone(),
    }
}

const ORIGINAL_COLUMNS: [&str; 11] = [
    "id",
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

/// Start the sinks of a configuration, write `events` through the writer
/// thread, and stop (which waits until the databases have them).
fn log_through_config(config_text: &str, events: &[LogEvent]) {
    let settings = Settings::parse("test.conf", config_text).unwrap();
    let config = Config::from_settings(settings).unwrap();
    let sinks = imspector::build_sinks(&config).unwrap();
    log_through(sinks, events);
}

/// The writer thread with the sinks of a configuration, running.
fn start_writer(config_text: &str) -> (log::Logger, std::thread::JoinHandle<Vec<String>>) {
    let config = Config::from_settings(Settings::parse("test.conf", config_text).unwrap()).unwrap();
    log::spawn_writer(imspector::build_sinks(&config).unwrap(), false)
}

/// Wait for the line saying that the `sink` with its journal under `spool`
/// went down (this test's own: other tests log meanwhile) and return it.
fn wait_down_line(spool: &Path, sink: &str) -> String {
    let journal = spool.join(sink).display().to_string();
    let prefix = format!("WARN {sink} sink is down");
    let ours = || {
        databases::log_lines(&prefix)
            .into_iter()
            .find(|l| l.contains(&journal))
    };
    databases::eventually(&format!("the {sink} sink to go down"), || ours().is_some());
    ours().unwrap()
}

/// A database server a test can stop and read back.
trait Database {
    fn stop(&mut self);
    fn resume(&mut self);
    /// Rows so far; 0 while the server or the table is not there.
    fn count(&self) -> usize;
    fn rows(&self) -> Vec<Row>;
}

/// The outage scenario for a database server: stopped while events stream in,
/// the writer restarted (as imspector would be) while it is down, then brought
/// back. Every event is stored exactly once, in order, and the sink said when
/// it went down and when it was back.
fn outage_loses_and_repeats_nothing(db: &mut dyn Database, config: &str, sink: &str) {
    databases::capture_log();
    let events: Vec<LogEvent> = (0..600).map(event).collect();
    let cfg = Config::from_settings(Settings::parse("test.conf", config).unwrap()).unwrap();

    let (logger, writer) = log::spawn_writer(imspector::build_sinks(&cfg).unwrap(), false);
    send(&logger, &events[..200]);
    databases::eventually("the first events in the database", || db.count() > 0);
    db.stop();
    send(&logger, &events[200..300]);
    // imspector restarts while the server is still down.
    drop(logger);
    writer.join().unwrap();
    let (logger, writer) = log::spawn_writer(imspector::build_sinks(&cfg).unwrap(), false);
    send(&logger, &events[300..400]);
    db.resume();
    send(&logger, &events[400..]);
    databases::eventually("every event in the database", || db.count() >= events.len());
    drop(logger);
    writer.join().unwrap();

    let want: Vec<Row> = events.iter().map(|e| expected(e, true)).collect();
    assert_eq!(db.rows(), want);
    let down = databases::log_lines(&format!("WARN {sink} sink is down"));
    assert!(!down.is_empty(), "no line said the sink went down");
    let back = databases::log_lines(&format!("INFO {sink} sink is back: "));
    assert!(!back.is_empty(), "no line said the sink is back");
}

/// Events whose text stresses the storage: emoji, quotes, control characters.
fn tricky_events() -> Vec<LogEvent> {
    let mut events: Vec<LogEvent> = (0..20).map(event).collect();
    events[1].data = "emoji 😀🎉 and CJK 漢字, quote ' \" backslash \\".into();
    events[2].data = (1u8..32)
        .chain(127..128)
        .map(char::from)
        .chain("\u{80}\u{ff}\u{fffd}\u{10ffff}".chars())
        .collect();
    events[3].local_id = "émile@exämple.org".into();
    events[4].data = "x".repeat(60_000);
    events
}

// ---------------------------------------------------------------- SQLite

fn sqlite_rows(path: &Path) -> Vec<Row> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let with_categories = sqlite_columns(path).contains(&"categories".to_string());
    let sql = if with_categories {
        "SELECT timestamp, clientaddress, protocolname, outgoing, type, localid, remoteid, \
         filtered, categories, CAST(eventdata AS TEXT) FROM messages ORDER BY id"
    } else {
        "SELECT timestamp, clientaddress, protocolname, outgoing, type, localid, remoteid, \
         filtered, NULL, CAST(eventdata AS TEXT) FROM messages ORDER BY id"
    };
    let mut stmt = conn.prepare(sql).unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok(Row {
                timestamp: r.get(0)?,
                client: r.get(1)?,
                protocol: r.get(2)?,
                outgoing: r.get(3)?,
                kind: r.get(4)?,
                local_id: r.get(5)?,
                remote_id: r.get(6)?,
                filtered: r.get(7)?,
                categories: r.get(8)?,
                data: r.get(9)?,
            })
        })
        .unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

/// Rows so far; 0 while the table does not exist yet.
fn sqlite_count(path: &Path) -> usize {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap_or(0)
}

fn sqlite_columns(path: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let stmt = conn.prepare("SELECT * FROM messages").unwrap();
    let names = stmt.column_names().iter().map(|c| c.to_string()).collect();
    names
}

/// The lines for an SQLite sink at `db` with its journal in `spool`.
fn sqlite_config(db: &Path, spool: &Path) -> String {
    format!(
        "sqlite_file={}\nspool_dir={}\n",
        db.display(),
        spool.display()
    )
}

#[test]
fn sqlite_stores_every_field_in_the_original_table() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("imspector.db");
    let events = tricky_events();
    log_through_config(&sqlite_config(&db, &dir.path().join("spool")), &events);
    assert_eq!(sqlite_columns(&db), ORIGINAL_COLUMNS);
    let want: Vec<Row> = events.iter().map(|e| expected(e, true)).collect();
    assert_eq!(sqlite_rows(&db), want);
}

#[test]
fn sqlite_reuses_a_table_of_imspector_0_5() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE messages (id integer PRIMARY KEY AUTOINCREMENT, timestamp integer,
             clientaddress text, protocolname text, outgoing integer, type integer,
             localid text, remoteid text, filtered integer, eventdata blob);
             INSERT INTO messages VALUES (NULL, 1160853407, '10.0.0.1:1', 'MSN', 1, 1,
             'a@b', 'c@d', 0, 'from the original');",
        )
        .unwrap();
    let events: Vec<LogEvent> = (0..5).map(event).collect();
    log_through_config(&sqlite_config(&db, &dir.path().join("spool")), &events);
    let rows = sqlite_rows(&db);
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[0].data, "from the original");
    let want: Vec<Row> = events.iter().map(|e| expected(e, false)).collect();
    assert_eq!(rows[1..], want);
}

/// `syslog_server=udp://...` with `syslog_max_size=600`: an event longer than
/// that arrives as one datagram of at most 600 bytes ending in the marker, the
/// cut is logged, and the next event arrives whole.
#[test]
fn syslog_over_udp_cuts_a_long_event_at_syslog_max_size() {
    databases::capture_log();
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut events: Vec<LogEvent> = (0..2).map(event).collect();
    events[0].data = "é".repeat(5000);
    log_through_config(
        &format!(
            "syslog_logging=on\nsyslog_server=udp://{}\nsyslog_max_size=600\n",
            receiver.local_addr().unwrap()
        ),
        &events,
    );
    let mut buf = vec![0u8; 65536];
    let n = receiver.recv(&mut buf).unwrap();
    let cut = std::str::from_utf8(&buf[..n]).unwrap();
    assert!(
        n <= 600 && cut.contains(" data=\"éé") && cut.ends_with("éé [cut by imspector]"),
        "{cut}"
    );
    let told = databases::log_lines("WARN syslog sink: an event of ");
    assert!(
        told.iter()
            .any(|l| l.ends_with(&format!("bytes cut to {n} (syslog_max_size)"))),
        "{told:?}"
    );
    let n = receiver.recv(&mut buf).unwrap();
    let whole = std::str::from_utf8(&buf[..n]).unwrap();
    assert!(
        whole.ends_with(r#"data="message 1: héllo 😀, with \"quotes\" and\nnewline\ttab""#),
        "{whole}"
    );
}

/// Run a command of the namespace set-up; it must succeed.
fn must(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed");
}

#[test]
fn hide_eventdata_keeps_the_text_out_of_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hidden.db");
    let text = format!(
        "irc_protocol=on\nhide_eventdata=on\nsqlite_file={}\nspool_dir={}\n",
        db.display(),
        dir.path().join("spool").display()
    );
    let config = Config::from_settings(Settings::parse("test.conf", &text).unwrap()).unwrap();
    // A network namespace for this thread only, with a REDIRECT of IRC to the
    // proxy as on a gateway; the client, the proxy and the server live in it.
    let forwarded = std::thread::spawn(move || {
        // SAFETY: unshare has no memory effects; it moves this thread alone.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET) needs root: {}",
            std::io::Error::last_os_error()
        );
        must("ip", &["link", "set", "lo", "up"]);
        must(
            "iptables",
            &[
                "-t",
                "nat",
                "-A",
                "OUTPUT",
                "-p",
                "tcp",
                "-d",
                "127.0.0.1",
                "--dport",
                "6667",
                "-m",
                "mark",
                "!",
                "--mark",
                "1",
                "-j",
                "REDIRECT",
                "--to-ports",
                "16667",
            ],
        );
        relay_one_irc_message(config)
    })
    .join()
    .unwrap();
    assert!(
        forwarded.ends_with("PRIVMSG bob :the secret plan\r\n"),
        "{forwarded:?}"
    );
    let rows = sqlite_rows(&db);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (
            rows[0].protocol.as_str(),
            rows[0].local_id.as_str(),
            rows[0].remote_id.as_str()
        ),
        ("IRC", "alice", "bob")
    );
    assert_eq!(rows[0].data, "*HIDDEN*");
}

/// Client -> REDIRECT -> one proxy session -> server; returns what the server got.
fn relay_one_irc_message(config: Config) -> String {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (forwarded, writer) = rt.block_on(async move {
        let (logger, writer) = log::spawn_writer(imspector::build_sinks(&config).unwrap(), false);
        let filters = imspector::filter::build(&config.settings).unwrap();
        let mut shared = imspector::session::Shared::new(config, filters, logger, None);
        // The proxy's own connection to the server is not redirected.
        shared.upstream.mark = Some(1);
        let shared = Arc::new(shared);
        let server = TcpListener::bind("127.0.0.1:6667").await.unwrap();
        let proxy = TcpListener::bind("127.0.0.1:16667").await.unwrap();
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let session = tokio::spawn(async move {
            let (stream, peer) = proxy.accept().await.unwrap();
            imspector::session::serve(stream, peer, shared, stop_rx).await;
        });
        let mut client = TcpStream::connect("127.0.0.1:6667").await.unwrap();
        let (mut upstream, _) = server.accept().await.unwrap();
        client
            .write_all(b"NICK alice\r\nUSER a 0 * :A\r\nPRIVMSG bob :the secret plan\r\n")
            .await
            .unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        upstream.read_to_end(&mut got).await.unwrap();
        drop(upstream);
        session.await.unwrap();
        (String::from_utf8(got).unwrap(), writer)
    });
    writer.join().unwrap();
    forwarded
}

/// Makes a path unwritable even for root (the immutable attribute) until dropped.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(path: &Path) -> Immutable {
        chattr("+i", path);
        Immutable(path.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        chattr("-i", &self.0);
    }
}

fn chattr(change: &str, path: &Path) {
    let status = Command::new("chattr")
        .arg(change)
        .arg(path)
        .status()
        .expect("running chattr (package e2fsprogs)");
    assert!(
        status.success(),
        "chattr {change} {} failed: this test needs root and a file system with the \
         immutable attribute (ext4, xfs, btrfs, tmpfs)",
        path.display()
    );
}

#[test]
fn sqlite_unwritable_file_loses_and_repeats_nothing_across_a_restart() {
    databases::capture_log();
    let dir = tempfile::tempdir().unwrap();
    let db_dir = dir.path().join("db");
    std::fs::create_dir(&db_dir).unwrap();
    let db = db_dir.join("imspector.db");
    let config = sqlite_config(&db, &dir.path().join("spool"));
    let events: Vec<LogEvent> = (0..300).map(event).collect();
    let settings = Settings::parse("test.conf", &config).unwrap();
    let config = Config::from_settings(settings).unwrap();

    let (logger, writer) = log::spawn_writer(imspector::build_sinks(&config).unwrap(), false);
    send(&logger, &events[..100]);
    databases::eventually("the first events in the database", || sqlite_count(&db) > 0);
    // The database, its write-ahead log and its directory become unwritable
    // (not the -shm index: SQLite maps it, and a write to a mapped immutable
    // file is a SIGBUS, which no full disk or read-only mount causes).
    let files_locked: Vec<Immutable> = ["", "-wal"]
        .iter()
        .map(|suffix| db_dir.join(format!("imspector.db{suffix}")))
        .filter(|path| path.exists())
        .map(|path| Immutable::set(&path))
        .collect();
    let dir_locked = Immutable::set(&db_dir);
    send(&logger, &events[100..200]);
    drop(logger);
    writer.join().unwrap();
    let while_down = sqlite_rows(&db).len();
    assert!(while_down < 200, "the file was written while unwritable");

    // imspector restarts while the file is still unwritable.
    let (logger, writer) = log::spawn_writer(imspector::build_sinks(&config).unwrap(), false);
    send(&logger, &events[200..250]);
    drop(dir_locked);
    drop(files_locked);
    send(&logger, &events[250..]);
    databases::eventually("every event in the database", || {
        sqlite_count(&db) >= events.len()
    });
    drop(logger);
    writer.join().unwrap();

    let want: Vec<Row> = events.iter().map(|e| expected(e, true)).collect();
    assert_eq!(sqlite_rows(&db), want);
    let down = databases::log_lines("WARN sqlite sink is down");
    assert!(!down.is_empty(), "no line said the sink went down");
    assert!(down[0].contains("imspector.db"), "{down:?}");
    let back = databases::log_lines("INFO sqlite sink is back: ");
    assert!(
        back.iter().any(|l| l.ends_with(" spooled events replayed")),
        "no line said the sink is back: {back:?}"
    );
}

/// Do `change` to the SQLite file `db` (move it away, copy a backup over
/// it), its WAL files gone with the old file, as an admin would.
fn replace_sqlite_file(db: &Path, change: impl FnOnce(&Path)) {
    change(db);
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

/// Log `events` into the SQLite file `db`: they are its last rows, of `total`.
fn log_expecting_last_rows(config: &str, db: &Path, events: &[LogEvent], total: usize) {
    log_through_config(config, events);
    let rows = sqlite_rows(db);
    assert_eq!(rows.len(), total);
    let want: Vec<Row> = events.iter().map(|e| expected(e, true)).collect();
    assert_eq!(rows[total - events.len()..], want);
}

/// The issue's reproduction: two runs of 316 events, the SQLite file replaced
/// by a new one in between. The new file gets the second run's 316, not the
/// first run's again; a deleted progress row or deleted journal segments
/// are noticed and neither replay nor skip anything; a restored backup gets
/// only the events no database had, and the log names those it will not get.
#[test]
fn sqlite_a_replaced_file_gets_only_what_no_database_had() {
    databases::capture_log();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("imspector.db");
    let spool = dir.path().join("spool");
    let config = sqlite_config(&db, &spool);
    let first: Vec<LogEvent> = (0..316).map(event).collect();
    let second: Vec<LogEvent> = (316..632).map(event).collect();
    log_through_config(&config, &first);
    assert_eq!(sqlite_count(&db), 316);
    replace_sqlite_file(&db, |db| {
        std::fs::rename(db, dir.path().join("last-month.db")).unwrap();
    });
    log_through_config(&config, &second);
    let want: Vec<Row> = second.iter().map(|e| expected(e, true)).collect();
    assert_eq!(sqlite_rows(&db), want);
    let told = databases::log_lines("INFO sqlite sink: a new or emptied database");
    assert!(
        told.iter()
            .any(|l| l.contains("it gets the events after 316")),
        "{told:?}"
    );

    // The progress row deleted by hand: no replay of the journal.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("DELETE FROM imspector_spool", [])
        .unwrap();
    let third: Vec<LogEvent> = (632..642).map(event).collect();
    log_through_config(&config, &third);
    assert_eq!(sqlite_count(&db), 326);
    let told =
        databases::log_lines("WARN sqlite sink: the database has rows but no imspector_spool row");
    assert!(!told.is_empty(), "the deleted row went unnoticed");

    // The journal's segments deleted, its id kept: new events are numbered
    // after the committed ones, so the database does not skip them.
    let journal = spool.join("sqlite");
    for entry in std::fs::read_dir(&journal).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "spool") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let fourth: Vec<LogEvent> = (642..650).map(event).collect();
    log_expecting_last_rows(&config, &db, &fourth, 334);
    let told = databases::log_lines("WARN ");
    assert!(
        told.iter()
            .any(|l| l.contains("the journal's segments were deleted")),
        "{told:?}"
    );

    // A backup restored over a file that had moved on: the events only the
    // lost file had are named, not written again; the new ones are.
    let backup = dir.path().join("backup.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("VACUUM INTO ?1", [backup.display().to_string()])
        .unwrap();
    log_through_config(&config, &(650..655).map(event).collect::<Vec<_>>());
    assert_eq!(sqlite_count(&db), 339);
    replace_sqlite_file(&db, |db| {
        std::fs::copy(&backup, db).unwrap();
    });
    let last: Vec<LogEvent> = (655..658).map(event).collect();
    log_expecting_last_rows(&config, &db, &last, 337);
    let told = databases::log_lines("WARN sqlite sink: the database has events of journal ");
    assert!(
        told.iter().any(|l| l.contains(
            "only up to 650; events 651 to 655 went to another database of this sink (replaced?) and are not written again"
        )),
        "{told:?}"
    );
}

/// Another program holding SQLite's write lock: the busy timeout ends the
/// wait, SQLite's message is logged, and once the lock is gone every event is
/// written, in order.
#[test]
fn sqlite_a_locked_file_times_out_and_the_sink_goes_on() {
    databases::capture_log();
    let dir = tempfile::tempdir().unwrap();
    let (db, spool) = (dir.path().join("imspector.db"), dir.path().join("spool"));
    let config = sqlite_config(&db, &spool);
    let events: Vec<LogEvent> = (0..4).map(event).collect();
    log_through_config(&config, &events[..1]);
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (logger, writer) = start_writer(&config);
    send(&logger, &events[1..]);
    let down = wait_down_line(&spool, "sqlite");
    assert!(down.contains("database is locked"), "{down}");
    drop(locker);
    databases::eventually("the events after the lock", || sqlite_count(&db) == 4);
    drop(logger);
    assert_eq!(writer.join().unwrap(), Vec::<String>::new());
    let want: Vec<Row> = events.iter().map(|e| expected(e, true)).collect();
    assert_eq!(sqlite_rows(&db), want);
}

/// One MSN message at the core's payload bound (1 MiB) goes into every
/// database and the events after it too.
fn near_the_payload_bound() -> Vec<LogEvent> {
    let mut events: Vec<LogEvent> = (0..3).map(event).collect();
    events[1].protocol = "MSN".into();
    events[1].data = "big\tline\n".repeat((1 << 20) / 10);
    events
}

#[test]
fn sqlite_an_event_of_a_mebibyte_is_stored_and_the_sink_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("imspector.db");
    let events = near_the_payload_bound();
    log_through_config(&sqlite_config(&db, &dir.path().join("spool")), &events);
    let want: Vec<Row> = events.iter().map(|e| expected(e, true)).collect();
    assert_eq!(sqlite_rows(&db), want);
}

/// Event `seq`, the poison of [`with_poison`], was refused: it is the one
/// line of the sink's dead-letter file (0640), and the line that says so
/// has the database's own `message`.
fn assert_dead_letter(spool: &Path, sink: &str, seq: u64, message: &str) {
    let path = spool.join(sink).join("dead-letters");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let dead: Vec<&str> = text.lines().collect();
    assert!(
        dead.len() == 1
            && dead[0].starts_with(&format!("{seq}\t"))
            && dead[0].ends_with("\tpoison"),
        "{dead:?}"
    );
    let mode = std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(&path).unwrap());
    assert_eq!(mode & 0o7777, 0o640, "{} is {mode:o}", path.display());
    let told = databases::log_lines(&format!(
        "ERROR {sink} sink: the database refused event {seq} ("
    ));
    assert!(
        told.iter()
            .any(|l| l.contains(message)
                && l.ends_with(&format!("{} (1 event there)", path.display()))),
        "{told:?}"
    );
}

/// Five events, the third of which a CHECK constraint refuses.
fn with_poison() -> Vec<LogEvent> {
    let mut events: Vec<LogEvent> = (200..205).map(event).collect();
    events[2].data = "poison".into();
    events
}

/// A row SQLite refuses (a CHECK constraint) goes to the dead-letter file
/// with SQLite's own message, and the events after it are stored.
#[test]
fn sqlite_a_refused_row_goes_to_dead_letters_and_the_sink_goes_on() {
    databases::capture_log();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("imspector.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE messages (id integer PRIMARY KEY AUTOINCREMENT,
             timestamp integer NOT NULL, clientaddress text NOT NULL,
             protocolname text NOT NULL, outgoing integer NOT NULL, type integer NOT NULL,
             localid text NOT NULL, remoteid text NOT NULL, filtered integer NOT NULL,
             categories text NOT NULL,
             eventdata blob NOT NULL CONSTRAINT no_poison CHECK (CAST(eventdata AS text) <> 'poison'));",
        )
        .unwrap();
    let spool = dir.path().join("spool");
    let events = with_poison();
    log_through_config(&sqlite_config(&db, &spool), &events);
    let want: Vec<Row> = events
        .iter()
        .filter(|e| e.data != "poison")
        .map(|e| expected(e, true))
        .collect();
    assert_eq!(sqlite_rows(&db), want);
    assert_dead_letter(&spool, "sqlite", 3, "CHECK constraint failed: no_poison");
}

// ---------------------------------------------------------------- MariaDB

mod mariadb {
    use super::*;
    use mysql::prelude::Queryable;

    fn columns(db: &Mariadb) -> Vec<String> {
        db.sql(&format!(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = \
             '{}' AND table_name = 'messages' ORDER BY ordinal_position",
            databases::DB_NAME
        ))
        .lines()
        .map(str::to_string)
        .collect()
    }

    fn config(db: &Mariadb, spool: &Path) -> String {
        format!("{}spool_dir={}\n", db.config(), spool.display())
    }

    #[test]
    fn mariadb_stores_every_field_in_a_utf8mb4_table_and_reuses_an_original_one() {
        let db = Mariadb::start();
        let spool = tempfile::tempdir().unwrap();
        let events = tricky_events();
        log_through_config(&config(&db, spool.path()), &events);
        assert_eq!(columns(&db), ORIGINAL_COLUMNS);
        let create = db.sql(&format!(
            "SHOW CREATE TABLE {}.messages",
            databases::DB_NAME
        ));
        assert!(create.contains("CHARSET=utf8mb4"), "{create}");
        assert!(
            create.contains("`eventdata` mediumblob NOT NULL"),
            "{create}"
        );
        assert!(create.contains("`timestamp` int(11) NOT NULL"), "{create}");
        let want: Vec<Row> = events.iter().map(|e| expected(e, true)).collect();
        assert_eq!(db.rows(), want);

        // A table made by IMSpector 0.5 (no categories) is written as it is.
        db.sql(&format!(
            "USE {}; DROP TABLE messages;
             CREATE TABLE messages (id int NOT NULL auto_increment PRIMARY KEY,
             timestamp int NOT NULL default '0', clientaddress text NOT NULL,
             protocolname text NOT NULL, outgoing int NOT NULL default '0',
             type int NOT NULL default '0', localid text NOT NULL, remoteid text NOT NULL,
             filtered int NOT NULL default '0', eventdata blob NOT NULL) CHARSET=utf8mb4;",
            databases::DB_NAME
        ));
        let more: Vec<LogEvent> = (100..105).map(event).collect();
        log_through_config(&config(&db, spool.path()), &more);
        let want: Vec<Row> = more.iter().map(|e| expected(e, false)).collect();
        assert_eq!(db.rows(), want);
    }

    /// One row the database refuses goes to the dead-letter file with the
    /// database's own message, and the sink goes on; an event of a mebibyte
    /// fits our table (mediumblob).
    #[test]
    fn mariadb_refused_rows_go_to_dead_letters_and_big_events_fit() {
        databases::capture_log();
        let db = Mariadb::start();
        let spool = tempfile::tempdir().unwrap();
        let big = near_the_payload_bound();
        log_through_config(&config(&db, spool.path()), &big);
        let mut want: Vec<Row> = big.iter().map(|e| expected(e, true)).collect();
        assert_eq!(db.rows(), want);

        db.sql(&format!(
            "ALTER TABLE {}.messages ADD CONSTRAINT no_poison CHECK (eventdata <> 'poison')",
            databases::DB_NAME
        ));
        let events = with_poison();
        log_through_config(&config(&db, spool.path()), &events);
        want.extend(
            events
                .iter()
                .filter(|e| e.data != "poison")
                .map(|e| expected(e, true)),
        );
        assert_eq!(db.rows(), want);
        assert_dead_letter(spool.path(), "mysql", 6, "CONSTRAINT `no_poison` failed");
    }

    /// The original's MyISAM table: said at start, text longer than its blob
    /// cut with a marker and a line, never silently.
    #[test]
    fn mariadb_myisam_table_is_detected_and_long_text_is_cut_with_a_marker() {
        databases::capture_log();
        let db = Mariadb::start();
        let spool = tempfile::tempdir().unwrap();
        db.sql(&format!(
            "USE {}; CREATE TABLE messages (id int NOT NULL auto_increment PRIMARY KEY,
             timestamp int NOT NULL default '0', clientaddress text NOT NULL,
             protocolname text NOT NULL, outgoing int NOT NULL default '0',
             type int NOT NULL default '0', localid text NOT NULL, remoteid text NOT NULL,
             filtered int NOT NULL default '0', categories text NOT NULL,
             eventdata blob NOT NULL) ENGINE=MyISAM CHARSET=utf8mb4;",
            databases::DB_NAME
        ));
        let mut events: Vec<LogEvent> = (0..3).map(event).collect();
        events[1].data = "y".repeat(70_000);
        log_through_config(&config(&db, spool.path()), &events);
        let rows = db.rows();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0], expected(&events[0], true));
        assert_eq!(rows[2], expected(&events[2], true));
        assert_eq!(rows[1].data.len(), 65_535);
        assert!(
            rows[1].data.ends_with("y [cut by imspector]"),
            "{}",
            &rows[1].data[65_500..]
        );
        let told = databases::log_lines("WARN mysql sink: ");
        assert!(
            told.iter()
                .any(|l| l.contains("table messages has no transactions")),
            "{told:?}"
        );
        assert!(
            told.iter().any(|l| l.ends_with(
                "event 2: eventdata of 70000 bytes cut to 65535, the size of its column"
            )),
            "{told:?}"
        );
    }

    /// A table locked by another session: the statement times out, the
    /// database's message is logged, and the sink goes on once the lock is
    /// gone. A server that then hangs (stopped while it has a statement)
    /// holds the stop only for the shutdown bound, which is logged; the
    /// events wait in the journal and the stop says so.
    #[test]
    fn mariadb_a_locked_table_times_out_and_a_hung_server_bounds_the_stop() {
        databases::capture_log();
        let db = Mariadb::start();
        let spool = tempfile::tempdir().unwrap();
        let journal = spool.path().join("mysql");
        log_through_config(&config(&db, spool.path()), &[event(0)]);
        let mut locker = std::process::Command::new("mariadb")
            .arg(format!("--socket={}", db.socket().display()))
            .arg("--user=root")
            .arg("-e")
            .arg(format!(
                "LOCK TABLES {}.messages WRITE; SELECT SLEEP(600);",
                databases::DB_NAME
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        databases::eventually("the lock", || {
            db.sql("SHOW OPEN TABLES WHERE In_use > 0")
                .contains("messages")
        });
        let (logger, writer) = start_writer(&config(&db, spool.path()));
        send(&logger, &(1..4).map(event).collect::<Vec<_>>());
        let down = wait_down_line(spool.path(), "mysql");
        assert!(down.contains("Lock wait timeout exceeded"), "{down}");

        // The lock's session ends: the sink is back and writes what waited.
        let locker_id = db.sql(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(600)%'",
        );
        db.sql(&format!("KILL {}", locker_id.trim()));
        let _ = locker.wait();
        databases::eventually("the events after the lock", || db.count() == 4);

        db.freeze();
        send(&logger, &(4..6).map(event).collect::<Vec<_>>());
        // The sink's thread now waits for the frozen server's answer.
        std::thread::sleep(std::time::Duration::from_secs(1));
        let stopping = std::time::Instant::now();
        drop(logger);
        let waiting = writer.join().unwrap();
        let took = stopping.elapsed();
        db.thaw();
        assert!(
            took >= log::spooled::SHUTDOWN_BOUND
                && took < log::spooled::SHUTDOWN_BOUND + std::time::Duration::from_secs(5),
            "the stop took {took:?}"
        );
        assert_eq!(
            databases::log_lines(
                "WARN mysql sink: still writing to its database after 15 s of shutdown"
            )
            .len(),
            1
        );
        assert_eq!(
            waiting,
            [format!(
                "2 events wait in {} for the mysql database (written when imspector next starts)",
                journal.display()
            )]
        );
    }

    #[test]
    fn mariadb_outage_loses_and_repeats_nothing_across_a_restart() {
        let mut db = Mariadb::start();
        let spool = tempfile::tempdir().unwrap();
        let config = config(&db, spool.path());
        outage_loses_and_repeats_nothing(&mut db, &config, "mysql");
    }

    /// A connection as imspector's user.
    fn connect(db: &Mariadb) -> mysql::Result<mysql::Conn> {
        let opts = mysql::OptsBuilder::new()
            .socket(Some(db.socket().display().to_string()))
            .user(Some(databases::DB_USER))
            .pass(Some(databases::DB_PASSWORD))
            .db_name(Some(databases::DB_NAME));
        mysql::Conn::new(opts)
    }

    impl Database for Mariadb {
        fn stop(&mut self) {
            Mariadb::stop(self)
        }
        fn resume(&mut self) {
            Mariadb::resume(self)
        }
        fn count(&self) -> usize {
            connect(self)
                .and_then(|mut c| c.query_first::<usize, _>("SELECT count(*) FROM messages"))
                .ok()
                .flatten()
                .unwrap_or(0)
        }
        fn rows(&self) -> Vec<Row> {
            let mut conn = connect(self).unwrap();
            conn.query_drop("SET NAMES utf8mb4").unwrap();
            let with_categories = columns(self).contains(&"categories".to_string());
            let categories = if with_categories {
                "categories"
            } else {
                "NULL"
            };
            conn.query_map(
                format!(
                    "SELECT timestamp, clientaddress, protocolname, outgoing, type, localid, \
                     remoteid, filtered, {categories}, eventdata FROM messages ORDER BY id"
                ),
                |r: mysql::Row| {
                    let data: Vec<u8> = r.get(9).unwrap();
                    Row {
                        timestamp: r.get(0).unwrap(),
                        client: r.get(1).unwrap(),
                        protocol: r.get(2).unwrap(),
                        outgoing: r.get(3).unwrap(),
                        kind: r.get(4).unwrap(),
                        local_id: r.get(5).unwrap(),
                        remote_id: r.get(6).unwrap(),
                        filtered: r.get(7).unwrap(),
                        categories: r.get(8).unwrap(),
                        data: String::from_utf8(data).unwrap(),
                    }
                },
            )
            .unwrap()
        }
    }
}

// ---------------------------------------------------------------- PostgreSQL

mod postgresql {
    use super::*;

    fn client(db: &Postgres) -> postgres::Client {
        postgres::Client::connect(&db.connect_string(), postgres::NoTls).unwrap()
    }

    fn columns(db: &Postgres) -> Vec<String> {
        client(db)
            .query(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_name = 'messages' ORDER BY ordinal_position",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    fn config(db: &Postgres, spool: &Path) -> String {
        format!(
            "pgsql_connect={}\nspool_dir={}\n",
            db.connect_string(),
            spool.display()
        )
    }

    #[test]
    fn postgres_stores_every_field_and_reuses_an_original_table() {
        let db = Postgres::start();
        let spool = tempfile::tempdir().unwrap();
        let events = tricky_events();
        log_through_config(&config(&db, spool.path()), &events);
        assert_eq!(columns(&db), ORIGINAL_COLUMNS);
        let types = db.sql(
            "SELECT data_type FROM information_schema.columns WHERE table_name = 'messages' \
             AND column_name IN ('timestamp', 'eventdata') ORDER BY column_name",
        );
        assert_eq!(types, "text\ntimestamp with time zone\n");
        let want: Vec<Row> = events.iter().map(|e| expected(e, true)).collect();
        assert_eq!(db.rows(), want);

        db.sql(&format!(
            "DROP TABLE messages;
             CREATE TABLE messages (id serial PRIMARY KEY,
             timestamp timestamp with time zone NOT NULL DEFAULT now(),
             clientaddress text NOT NULL, protocolname text NOT NULL, outgoing integer NOT NULL,
             type integer NOT NULL, localid text NOT NULL, remoteid text NOT NULL,
             filtered integer NOT NULL, eventdata text NOT NULL);
             ALTER TABLE messages OWNER TO {};",
            databases::DB_USER
        ));
        let more: Vec<LogEvent> = (100..105).map(event).collect();
        log_through_config(&config(&db, spool.path()), &more);
        let want: Vec<Row> = more.iter().map(|e| expected(e, false)).collect();
        assert_eq!(db.rows(), want);
    }

    /// One row PostgreSQL refuses goes to the dead-letter file with its own
    /// message, and the sink goes on; an event of a mebibyte is stored.
    #[test]
    fn postgres_refused_rows_go_to_dead_letters_and_big_events_fit() {
        databases::capture_log();
        let db = Postgres::start();
        let spool = tempfile::tempdir().unwrap();
        let big = near_the_payload_bound();
        log_through_config(&config(&db, spool.path()), &big);
        let mut want: Vec<Row> = big.iter().map(|e| expected(e, true)).collect();
        assert_eq!(db.rows(), want);

        db.sql("ALTER TABLE messages ADD CONSTRAINT no_poison CHECK (eventdata <> 'poison')");
        let events = with_poison();
        log_through_config(&config(&db, spool.path()), &events);
        want.extend(
            events
                .iter()
                .filter(|e| e.data != "poison")
                .map(|e| expected(e, true)),
        );
        assert_eq!(db.rows(), want);
        assert_dead_letter(
            spool.path(),
            "postgres",
            6,
            "violates check constraint \"no_poison\"",
        );
    }

    /// A table locked by another session: PostgreSQL's lock timeout ends the
    /// wait, its message is logged, and once the lock is gone every event is
    /// written, in order.
    #[test]
    fn postgres_a_locked_table_times_out_and_the_sink_goes_on() {
        databases::capture_log();
        let db = Postgres::start();
        let spool = tempfile::tempdir().unwrap();
        log_through_config(&config(&db, spool.path()), &[event(0)]);
        let mut locker = Command::new("runuser")
            .args(["-u", "postgres", "--", "psql", "-h"])
            .arg(db.socket_dir())
            .args(["-d", databases::DB_NAME, "-c"])
            .arg("BEGIN; LOCK TABLE messages IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600);")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        databases::eventually("the lock", || {
            db.sql(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                 WHERE c.relname = 'messages' AND l.mode = 'AccessExclusiveLock' AND l.granted",
            )
            .trim()
                == "1"
        });
        let (logger, writer) = start_writer(&config(&db, spool.path()));
        let events: Vec<LogEvent> = (0..4).map(event).collect();
        send(&logger, &events[1..]);
        let down = wait_down_line(spool.path(), "postgres");
        // lock_timeout and statement_timeout are both 10 s: either may end it.
        assert!(
            ["lock timeout", "statement timeout"]
                .iter()
                .any(|t| down.contains(&format!("ERROR: canceling statement due to {t}"))),
            "{down}"
        );

        db.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE query LIKE '%pg_sleep(600)%' AND pid <> pg_backend_pid()",
        );
        let _ = locker.wait();
        databases::eventually("the events after the lock", || db.count() == 4);
        drop(logger);
        assert_eq!(writer.join().unwrap(), Vec::<String>::new());
        let want: Vec<Row> = events.iter().map(|e| expected(e, true)).collect();
        assert_eq!(db.rows(), want);
    }

    #[test]
    fn postgres_outage_loses_and_repeats_nothing_across_a_restart() {
        let mut db = Postgres::start();
        let spool = tempfile::tempdir().unwrap();
        let config = config(&db, spool.path());
        outage_loses_and_repeats_nothing(&mut db, &config, "postgres");
    }

    impl Database for Postgres {
        fn stop(&mut self) {
            Postgres::stop(self)
        }
        fn resume(&mut self) {
            Postgres::resume(self)
        }
        fn count(&self) -> usize {
            postgres::Client::connect(&self.connect_string(), postgres::NoTls)
                .and_then(|mut c| c.query_one("SELECT count(*) FROM messages", &[]))
                .map_or(0, |r| r.get::<_, i64>(0) as usize)
        }
        fn rows(&self) -> Vec<Row> {
            let with_categories = columns(self).contains(&"categories".to_string());
            let categories = if with_categories {
                "categories"
            } else {
                "NULL::text"
            };
            client(self)
                .query(
                    &format!(
                        "SELECT extract(epoch FROM timestamp)::bigint, clientaddress, protocolname, \
                         outgoing::bigint, type::bigint, localid, remoteid, filtered::bigint, \
                         {categories}, eventdata FROM messages ORDER BY id"
                    ),
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| Row {
                    timestamp: r.get(0),
                    client: r.get(1),
                    protocol: r.get(2),
                    outgoing: r.get(3),
                    kind: r.get(4),
                    local_id: r.get(5),
                    remote_id: r.get(6),
                    filtered: r.get(7),
                    categories: r.get(8),
                    data: r.get(9),
                })
                .collect()
        }
    }
}
