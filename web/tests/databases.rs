//! The viewer on the daemon's table in each database (no file logs): SQLite
//! (`sqlite_file`), a real MariaDB (`mysql_*`) and a real PostgreSQL
//! (`pgsql_connect`), the rows written by the daemon's own sinks. The same
//! pages, id limits, search and live view everywhere; the audit records in
//! the table `imspector_audit` as well as in the file; the viewer's indexes.

use std::path::Path;

use imspector::config::{Config, Settings};
use imspector::event::LogEvent;
use imspector_e2e::databases::{Mariadb, Postgres, DB_NAME, DB_PASSWORD};
use imspector_e2e::web::{add_user, refused, Web};
use imspector_protocols::EventType;

const BIN: &str = env!("CARGO_BIN_EXE_imspector-web");

/// `(user, action, what)`, in the order written.
type AuditRows = Vec<(String, String, String)>;

fn event(local: &str, remote: &str, outgoing: bool, data: &str) -> LogEvent {
    LogEvent {
        timestamp: chrono::Utc::now().timestamp(),
        client: "10.1.2.3:40000".into(),
        protocol: "IRC".into(),
        outgoing,
        kind: EventType::Message,
        local_id: local.into(),
        remote_id: remote.into(),
        filtered: false,
        categories: String::new(),
        data: data.into(),
    }
}

/// Log `events` as the daemon does, through the sinks of `config`, and wait
/// until they are in the database.
fn log(config: &str, events: &[LogEvent]) {
    let settings = Settings::parse("imspector.conf", config).unwrap();
    let sinks = imspector::build_sinks(&Config::from_settings(settings).unwrap()).unwrap();
    let (logger, writer) = imspector::log::spawn_writer(sinks, false);
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async {
            for e in events {
                logger.log(e.clone()).await;
            }
        });
    drop(logger);
    writer.join().unwrap();
}

/// What a test reads of one database.
struct Database<'a> {
    /// The logging options that point the daemon and the viewer there.
    config: String,
    audit: &'a dyn Fn() -> AuditRows,
    /// Index names on `messages`.
    indexes: &'a dyn Fn() -> Vec<String>,
}

/// Browse, search, follow and check the audit, as an admin and as a teacher
/// limited to `class7-*`.
fn browse_search_follow_and_audit(dir: &Path, db: &Database<'_>) -> Web {
    log(
        &db.config,
        &[
            event("alice", "bob", true, "alice's private words"),
            event("alice", "bob", false, "<script>alert(1)</script>"),
            event("class7-ann", "#class", true, "homework, page 4"),
            event("alice", "../x/<b>", true, "an odd remote id"),
        ],
    );
    let users = dir.join("users");
    add_user(Path::new(BIN), &users, "admin", "admin pw", &["--admin"]).unwrap();
    add_user(
        Path::new(BIN),
        &users,
        "teacher",
        "teacher pw",
        &["--ids", "class7-*"],
    )
    .unwrap();
    let web = Web::start(Path::new(BIN), dir, &db.config, &users).unwrap();
    let day = imspector_web::store::day_of(chrono::Utc::now().timestamp());

    let mut admin = web.client();
    assert_eq!(admin.login("admin", "admin pw").unwrap().status, 303);
    let locals = admin.get("/p/IRC").unwrap().body;
    assert!(
        locals.contains(">alice<") && locals.contains(">class7-ann<"),
        "{locals}"
    );
    let page = admin.get(&format!("/p/IRC/alice/bob/{day}")).unwrap();
    assert_eq!(page.status, 200);
    assert!(page.body.contains("alice&#39;s private words"));
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.body.contains("<script>alert"));
    assert_eq!(admin.get("/p/IRC/alice/carol").unwrap().status, 404);
    // An id with `/`, `..` and markup is a plain id, shown and linked as one.
    let remotes = admin.get("/p/IRC/alice").unwrap().body;
    assert!(
        remotes.contains(r#"<a href="/p/IRC/alice/..%2Fx%2F%3Cb%3E">../x/&lt;b&gt;</a>"#),
        "{remotes}"
    );
    let odd = admin
        .get(&format!("/p/IRC/alice/..%2Fx%2F%3Cb%3E/{day}"))
        .unwrap();
    assert!(odd.body.contains("an odd remote id"), "{}", odd.body);
    assert!(!odd.body.contains("private words"), "{}", odd.body);
    assert_eq!(
        admin.get("/p/IRC/alice/bob/1999-01-01").unwrap().status,
        404
    );
    let csrf = admin.get("/search").unwrap().input_value("csrf").unwrap();
    let hits = admin
        .get(&format!(
            "/search?csrf={csrf}&text=PRIVATE&user=bob&protocol=IRC&from={day}&to={day}"
        ))
        .unwrap();
    assert!(
        hits.body.contains("1 hits") && hits.body.contains("alice&#39;s private words"),
        "{}",
        hits.body
    );
    // A wildcard of SQL is a plain character to the search.
    let none = admin
        .get(&format!("/search?csrf={csrf}&text=%25_%25"))
        .unwrap();
    assert!(none.body.contains("0 hits"), "{}", none.body);

    let live = admin.get("/live/IRC/alice/bob").unwrap().body;
    let start = live
        .split("data-events=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let mut events = admin.events(&start.replace("&amp;", "&")).unwrap();
    events.wait_for(": following").unwrap();
    log(&db.config, &[event("alice", "bob", true, "a new row")]);
    let seen = events.wait_for("a new row").unwrap();
    assert!(!seen.contains("private words"), "{seen}");

    let mut teacher = web.client();
    assert_eq!(teacher.login("teacher", "teacher pw").unwrap().status, 303);
    assert!(!teacher.get("/p/IRC").unwrap().body.contains("alice"));
    assert_eq!(
        teacher
            .get(&format!("/p/IRC/alice/bob/{day}"))
            .unwrap()
            .status,
        404
    );
    let csrf = teacher.get("/search").unwrap().input_value("csrf").unwrap();
    let hits = teacher
        .get(&format!("/search?csrf={csrf}&text=o"))
        .unwrap()
        .body;
    assert!(
        hits.contains("1 hits") && hits.contains("homework"),
        "{hits}"
    );

    // The table holds the same records as the file.
    let in_table = (db.audit)();
    assert_eq!(in_table, web.audit_records());
    assert!(in_table.contains(&(
        "teacher".into(),
        "denied".into(),
        format!("/p/IRC/alice/bob/{day}")
    )));
    assert!(in_table.contains(&(
        "admin".into(),
        "live".into(),
        "/events/IRC/alice/bob".into()
    )));

    let indexes = (db.indexes)();
    for name in ["messages_by_conversation", "messages_by_time"] {
        assert!(indexes.iter().any(|i| i == name), "{indexes:?}");
    }
    web
}

#[test]
fn sqlite_pages_search_live_view_and_audit_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("imspector.db");
    let open = || rusqlite::Connection::open(&file).unwrap();
    let strings = |sql: &str| -> Vec<Vec<String>> {
        let conn = open();
        let mut stmt = conn.prepare(sql).unwrap();
        let n = stmt.column_count();
        stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let audit = || {
        strings("SELECT username, action, target FROM imspector_audit ORDER BY id")
            .into_iter()
            .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
            .collect()
    };
    let indexes = || {
        strings("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages'")
            .into_iter()
            .map(|r| r[0].clone())
            .collect()
    };
    let db = Database {
        config: format!(
            "sqlite_file={}\nspool_dir={}\n",
            file.display(),
            dir.path().join("spool").display()
        ),
        audit: &audit,
        indexes: &indexes,
    };
    browse_search_follow_and_audit(dir.path(), &db);
}

#[test]
fn mariadb_pages_search_live_view_and_audit_in_the_database_across_a_restart() {
    let mut server = Mariadb::start();
    let dir = tempfile::tempdir().unwrap();
    let rows = |server: &Mariadb, sql: &str| -> Vec<Vec<String>> {
        server
            .sql(&format!("USE {DB_NAME}; {sql}"))
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect()
    };
    let audit = || {
        rows(
            &server,
            "SELECT username, action, target FROM imspector_audit ORDER BY id",
        )
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
        .collect()
    };
    let indexes = || {
        rows(
            &server,
            "SELECT DISTINCT index_name FROM information_schema.statistics
             WHERE table_schema = DATABASE() AND table_name = 'messages'",
        )
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
    };
    let db = Database {
        config: format!(
            "{}spool_dir={}\n",
            server.config(),
            dir.path().join("spool").display()
        ),
        audit: &audit,
        indexes: &indexes,
    };
    let web = browse_search_follow_and_audit(dir.path(), &db);
    drop(db);

    // The viewer reconnects to a restarted server, for pages and audit.
    server.stop();
    server.resume();
    let mut admin = web.client();
    assert_eq!(admin.login("admin", "admin pw").unwrap().status, 303);
    let page = admin.get("/p/IRC/alice").unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(">bob<"), "{}", page.body);
    let last = rows(
        &server,
        "SELECT username, action, target FROM imspector_audit ORDER BY id DESC LIMIT 1",
    );
    assert_eq!(last, [["admin", "view", "/IRC/alice"]]);

    // A wrong password stops the viewer at start with MariaDB's answer.
    let said = refused(
        Path::new(BIN),
        &dir.path().join("wrong.conf"),
        &format!(
            "{}web_listen=127.0.0.1:0\nweb_users_filename={}\nweb_audit_filename={}\n",
            server.config().replace(DB_PASSWORD, "wrong"),
            dir.path().join("users").display(),
            dir.path().join("audit.log").display()
        ),
    );
    assert!(
        said.contains("imspector-web: mysql ") && said.contains("Access denied for user 'ims'"),
        "{said}"
    );
}

#[test]
fn postgres_pages_search_live_view_and_audit_in_the_database_with_a_trigram_index() {
    let server = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let client = || postgres::Client::connect(&server.connect_string(), postgres::NoTls).unwrap();
    let audit = || {
        client()
            .query(
                "SELECT username, action, target FROM imspector_audit ORDER BY id",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    };
    let indexes = || {
        client()
            .query(
                "SELECT indexname::text FROM pg_indexes WHERE tablename = 'messages'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let db = Database {
        config: format!(
            "pgsql_connect={}\nspool_dir={}\n",
            server.connect_string(),
            dir.path().join("spool").display()
        ),
        audit: &audit,
        indexes: &indexes,
    };
    let _web = browse_search_follow_and_audit(dir.path(), &db);

    // The viewer's search for text is one the trigram index answers.
    let mut c = client();
    c.batch_execute("SET enable_seqscan = off").unwrap();
    let plan: Vec<String> = c
        .query(
            "EXPLAIN SELECT id FROM messages WHERE eventdata ILIKE $1::text ESCAPE '!'",
            &[&"%private%"],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        plan.iter()
            .any(|l| l.contains("Index Scan on messages_by_words")),
        "{plan:#?}"
    );
    // Its times are times, as in the daemon's messages table.
    let logged: i64 = c
        .query_one(
            "SELECT count(*) FROM imspector_audit WHERE timestamp > now() - interval '1 hour'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(logged > 5, "{logged}");
}
