//! The viewer on the daemon's SQLite table (`sqlite_file`, no file logs): the
//! same pages, id limits, search and live view, and the audit records in the
//! table `imspector_audit` as well as in the file.

use std::path::Path;

use imspector::event::LogEvent;
use imspector::log::sql::{values, Dialect, Layout, Value};
use imspector_e2e::web::{add_user, Web};
use imspector_protocols::EventType;

const BIN: &str = env!("CARGO_BIN_EXE_imspector-web");

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

/// Insert as the daemon's SQLite sink does: its table and its statement.
fn insert(db: &Path, events: &[LogEvent]) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(Dialect::Sqlite.create_messages())
        .unwrap();
    let sql = Dialect::Sqlite.insert_message(Layout::WithCategories);
    for e in events {
        let params: Vec<rusqlite::types::Value> = values(e, Layout::WithCategories)
            .into_iter()
            .map(|v| match v {
                Value::Time(t) => t.into(),
                Value::Int(i) => i.into(),
                Value::Text(s) => s.to_string().into(),
                Value::Data(s) => s.as_bytes().to_vec().into(),
            })
            .collect();
        conn.execute(&sql, rusqlite::params_from_iter(params))
            .unwrap();
    }
}

#[test]
fn pages_search_live_view_and_audit_on_the_sqlite_table() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("imspector.db");
    insert(
        &db,
        &[
            event("alice", "bob", true, "alice's private words"),
            event("alice", "bob", false, "<script>alert(1)</script>"),
            event("class7-ann", "#class", true, "homework, page 4"),
        ],
    );
    let users = dir.path().join("users");
    add_user(Path::new(BIN), &users, "admin", "admin pw", &["--admin"]).unwrap();
    add_user(
        Path::new(BIN),
        &users,
        "teacher",
        "teacher pw",
        &["--ids", "class7-*"],
    )
    .unwrap();
    let config = format!("sqlite_file={}", db.display());
    let web = Web::start(Path::new(BIN), dir.path(), &config, &users).unwrap();
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
    assert_eq!(
        admin.get("/p/IRC/alice/bob/1999-01-01").unwrap().status,
        404
    );
    let csrf = admin.get("/search").unwrap().input_value("csrf").unwrap();
    let hits = admin
        .get(&format!(
            "/search?csrf={csrf}&text=PRIVATE&user=bob&from={day}&to={day}"
        ))
        .unwrap();
    assert!(hits.body.contains("1 hits"), "{}", hits.body);

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
    insert(&db, &[event("alice", "bob", true, "a new row")]);
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
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut stmt = conn
        .prepare("SELECT username, action, target FROM imspector_audit ORDER BY id")
        .unwrap();
    let in_table: Vec<(String, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
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
}
