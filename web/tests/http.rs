//! The viewer over HTTP, as its binary serves it: who may read what, what the
//! pages show of hostile text, CSRF, the login limit, and the audit log.

use std::fs;
use std::path::{Path, PathBuf};

use imspector_e2e::web::{add_user, encode, Client, Web};

const BIN: &str = env!("CARGO_BIN_EXE_imspector-web");
const SCRIPT: &str = "<script>alert(1)</script>";
const BREAKER: &str = "\" onmouseover=\"alert(2)\" x='";

struct Scene {
    _dir: tempfile::TempDir,
    logs: PathBuf,
    day: String,
    web: Web,
}

fn today() -> (String, i64) {
    let now = chrono::Utc::now().timestamp();
    (imspector_web::store::day_of(now), now)
}

fn write_log(logs: &Path, protocol: &str, local: &str, remote: &str, lines: &[String]) {
    let (day, _) = today();
    let dir = logs.join(protocol).join(local).join(remote);
    fs::create_dir_all(&dir).unwrap();
    let mut text = String::new();
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    fs::write(dir.join(day), text).unwrap();
}

fn line(t: i64, outgoing: u8, filtered: u8, categories: &str, data: &str) -> String {
    format!("10.1.2.3:40000,{t},{outgoing},1,{filtered},{categories},{data}")
}

/// File logs with alice's private chat, a class's chat, hostile ids and text;
/// users `admin` (everything, audit log) and `teacher` (class7-* only).
fn scene() -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let (day, t) = today();
    write_log(
        &logs,
        "IRC",
        "alice",
        "bob",
        &[
            line(t, 1, 0, "", "alice's private words"),
            line(t, 0, 0, "", SCRIPT),
            line(t, 1, 0, "", BREAKER),
            line(t, 1, 1, "2 badwords;", "a blocked line"),
        ],
    );
    write_log(
        &logs,
        "IRC",
        "class7-ann",
        "#class",
        &[line(t, 1, 0, "", "homework, page 4")],
    );
    // Id limits apply to the id a directory name stands for.
    let odd = imspector::log::file::safe_component("class7-x/y\u{1b}");
    write_log(&logs, "IRC", &odd, "#class", &[line(t, 1, 0, "", "odd id")]);
    // What the daemon makes of ids `../../etc` and `<b>x</b>`.
    let traversal = imspector::log::file::safe_component("../../etc");
    write_log(
        &logs,
        "IRC",
        "alice",
        &traversal,
        &[line(t, 1, 0, "", "dots")],
    );
    let markup = imspector::log::file::safe_component("<b>x</b>");
    write_log(
        &logs,
        "IRC",
        "alice",
        &markup,
        &[line(t, 1, 0, "", "markup id")],
    );
    fs::write(dir.path().join("secret.txt"), "outside the logs").unwrap();
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
    let web = Web::start(
        Path::new(BIN),
        dir.path(),
        &format!("file_logging_dir={}", logs.display()),
        &users,
    )
    .unwrap();
    Scene {
        _dir: dir,
        logs,
        day,
        web,
    }
}

fn logged_in(s: &Scene, user: &str) -> Client {
    let mut c = s.web.client();
    let r = c.login(user, &format!("{user} pw")).unwrap();
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some("/"));
    c
}

fn alice_pages(day: &str) -> Vec<String> {
    vec![
        "/p/IRC/alice".to_string(),
        "/p/IRC/alice/bob".to_string(),
        format!("/p/IRC/alice/bob/{day}"),
        format!("/export/csv/IRC/alice/bob/{day}"),
        format!("/export/json/IRC/alice/bob/{day}"),
        "/live/IRC/alice/bob".to_string(),
        "/events/IRC/alice/bob?after=0".to_string(),
    ]
}

#[test]
fn every_page_refuses_anonymous_requests() {
    let s = scene();
    let mut anon = s.web.client();
    let mut pages = vec![
        "/".to_string(),
        "/p/IRC".to_string(),
        "/search".to_string(),
        "/audit".to_string(),
    ];
    pages.extend(alice_pages(&s.day));
    pages.push(format!("/search?text={}", encode("private")));
    for page in &pages {
        let r = anon.get(page).unwrap();
        assert_eq!(r.status, 303, "{page}: {}", r.body);
        assert_eq!(r.header("location"), Some("/login"), "{page}");
        assert!(
            !r.body.contains("private") && !r.body.contains("alice"),
            "{page}"
        );
    }
    let r = anon.post("/logout", &[("csrf", "x")]).unwrap();
    assert_eq!(r.status, 303);
    // A made-up session cookie is no session.
    anon.cookies
        .insert("imspector_session".into(), "0".repeat(64));
    assert_eq!(anon.get("/p/IRC/alice/bob").unwrap().status, 303);
    // The login page itself is public, and sets only its form's cookie.
    let r = anon.get("/login").unwrap();
    assert_eq!(r.status, 200);
    let cookie = r.header("set-cookie").unwrap();
    assert!(cookie.starts_with("imspector_login="), "{cookie}");
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let refused = s.web.audit_records();
    assert_eq!(refused.len(), pages.len() + 2, "{refused:?}");
    assert!(refused
        .iter()
        .all(|(user, action, _)| user == "-" && action == "refused"));
}

#[test]
fn a_limited_user_cannot_read_other_ids_by_changing_the_url() {
    let s = scene();
    let mut teacher = logged_in(&s, "teacher");
    let listing = teacher.get("/p/IRC").unwrap();
    assert_eq!(listing.status, 200);
    assert!(listing.body.contains("class7-ann"));
    assert!(
        listing
            .body
            .contains(r#"<a href="/p/IRC/class7-x%252Fy%251B">class7-x/y\x1b</a>"#),
        "{}",
        listing.body
    );
    assert!(!listing.body.contains("alice"), "{}", listing.body);
    let class = teacher
        .get(&format!("/p/IRC/class7-ann/%23class/{}", s.day))
        .unwrap();
    assert_eq!(class.status, 200);
    assert!(class.body.contains("homework, page 4"));
    let mut tries = alice_pages(&s.day);
    tries.push("/p/IRC/ALICE/bob".into());
    tries.push(format!("/p/IRC/class7-ann/..%2F..%2Falice%2Fbob/{}", s.day));
    for page in &tries {
        let r = teacher.get(page).unwrap();
        assert_eq!(r.status, 404, "{page}: {}", r.body);
        assert!(!r.body.contains("private words"), "{page}");
    }
    // Search does not find what the user may not see.
    let csrf = teacher.get("/search").unwrap().input_value("csrf").unwrap();
    let r = teacher
        .get(&format!("/search?csrf={csrf}&text=private"))
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("0 hits") && !r.body.contains("private words"),
        "{}",
        r.body
    );
    let r = teacher
        .get(&format!("/search?csrf={csrf}&text=homework"))
        .unwrap();
    assert!(
        r.body.contains("1 hits") && r.body.contains("homework, page 4"),
        "{}",
        r.body
    );
    assert_eq!(teacher.get("/audit").unwrap().status, 403);
    let denied = s
        .web
        .audit_records()
        .into_iter()
        .filter(|(u, a, _)| u == "teacher" && a == "denied")
        .count();
    assert_eq!(
        denied,
        tries.len() - 1 + 1,
        "every refused id and the audit page"
    );
}

#[test]
fn hostile_text_and_ids_are_shown_inert() {
    let s = scene();
    let mut admin = logged_in(&s, "admin");
    let r = admin.get(&format!("/p/IRC/alice/bob/{}", s.day)).unwrap();
    assert_eq!(r.status, 200);
    assert!(
        !r.body.contains(SCRIPT) && !r.body.contains(BREAKER),
        "{}",
        r.body
    );
    assert!(r.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(r
        .body
        .contains("&quot; onmouseover=&quot;alert(2)&quot; x=&#39;"));
    assert!(r
        .body
        .contains(r#"<span class="mark">filtered</span> 2 badwords;"#));
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    // Ids are escaped as text and percent-encoded in links.
    let remotes = admin.get("/p/IRC/alice").unwrap().body;
    assert!(
        remotes.contains(r#"<a href="/p/IRC/alice/%3Cb%3Ex%3C%252Fb%3E">&lt;b&gt;x&lt;/b&gt;</a>"#),
        "{remotes}"
    );
    assert!(
        remotes.contains(r#"<a href="/p/IRC/alice/..%252F..%252Fetc">../../etc</a>"#),
        "{remotes}"
    );
    assert!(!remotes.contains("<b>x"));
    let markup = admin
        .get(&format!("/p/IRC/alice/%3Cb%3Ex%3C%252Fb%3E/{}", s.day))
        .unwrap();
    assert!(markup.body.contains("markup id"), "{}", markup.body);
    // `../` in any part of a path leads nowhere.
    for path in [
        "/p/..".to_string(),
        "/p/IRC/..".to_string(),
        "/p/IRC/alice/..%2F..%2F..%2Fsecret.txt".to_string(),
        "/p/IRC/alice/bob/..%2F..%2F..%2F..%2Fsecret.txt".to_string(),
        format!("/p/IRC/%2E%2E/alice/{}", s.day),
        format!("/export/json/IRC/alice/..%2Fbob/{}", s.day),
        "/p/IRC/alice/bob/2026-01-0%2F".to_string(),
    ] {
        let r = admin.get(&path).unwrap();
        assert_eq!(r.status, 404, "{path}");
        assert!(!r.body.contains("outside the logs"));
    }
    assert!(s.logs.join("IRC/alice/..%2F..%2Fetc").is_dir());
}

#[test]
fn forms_without_their_csrf_token_are_refused() {
    let s = scene();
    let mut admin = logged_in(&s, "admin");
    let page = admin.get("/").unwrap();
    let csrf = page.input_value("csrf").expect("the logout form's token");
    for form in [vec![], vec![("csrf", "0000")]] {
        let r = admin.post("/logout", &form).unwrap();
        assert_eq!(r.status, 403, "{form:?}");
    }
    assert_eq!(admin.get("/").unwrap().status, 200, "still logged in");
    let r = admin.get("/search?text=private").unwrap();
    assert_eq!(r.status, 403);
    assert!(!r.body.contains("private words"));
    // A login form not handed out by the viewer: no session.
    let mut forger = s.web.client();
    forger
        .cookies
        .insert("imspector_login".into(), "f".repeat(64));
    let r = forger
        .post(
            "/login",
            &[
                ("csrf", &"f".repeat(64)),
                ("user", "admin"),
                ("password", "admin pw"),
            ],
        )
        .unwrap();
    assert_eq!(r.status, 403);
    assert!(!forger.cookies.contains_key("imspector_session"));
    // With the tokens, both work.
    let r = admin.post("/logout", &[("csrf", &csrf)]).unwrap();
    assert_eq!(r.status, 303);
    assert_eq!(admin.get("/").unwrap().status, 303, "logged out");
}

#[test]
fn logins_are_rate_limited() {
    let s = scene();
    let mut c = s.web.client();
    for _ in 0..imspector_web::auth::MAX_FAILURES {
        let r = c.login("admin", "wrong").unwrap();
        assert_eq!(r.status, 403);
        assert!(r.body.contains("Wrong user or password"));
    }
    let r = c.login("admin", "admin pw").unwrap();
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(!c.cookies.contains_key("imspector_session"));
    let records = s.web.audit_records();
    let failed = records
        .iter()
        .filter(|(_, a, _)| a == "login-failed")
        .count();
    assert_eq!(failed, imspector_web::auth::MAX_FAILURES);
    assert!(records
        .iter()
        .any(|(u, a, w)| u == "admin" && a == "login-refused" && w == "too many failed logins"));
}

#[test]
fn exports_live_events_and_the_audit_log() {
    let s = scene();
    let mut admin = logged_in(&s, "admin");
    let day = &s.day;
    let csv = admin
        .get(&format!("/export/csv/IRC/alice/bob/{day}"))
        .unwrap();
    assert_eq!(csv.status, 200);
    assert!(csv
        .header("content-disposition")
        .unwrap()
        .contains(&format!("IRC_alice_bob_{day}.csv")));
    let rows: Vec<&str> = csv.body.lines().collect();
    assert_eq!(rows.len(), 5);
    assert!(
        rows[3].ends_with(r#","out","message","0","",""" onmouseover=""alert(2)"" x='""#),
        "{}",
        rows[3]
    );
    let json = admin
        .get(&format!("/export/json/IRC/alice/bob/{day}"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(v["events"][1]["text"], SCRIPT);
    assert_eq!(v["events"][3]["filtered"], true);
    assert_eq!(v["events"][3]["categories"], "2 badwords;");

    // The live view starts at the end and streams what is appended.
    let live = admin.get("/live/IRC/alice/bob").unwrap();
    assert!(live.body.contains("alice&#39;s private words"));
    let start = live
        .body
        .split("data-events=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let mut events = admin.events(&start.replace("&amp;", "&")).unwrap();
    assert_eq!(events.status, 200);
    assert_eq!(
        events
            .headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .unwrap()
            .1,
        "text/event-stream"
    );
    events.wait_for(": following").unwrap();
    let file = s.logs.join("IRC/alice/bob").join(day);
    let mut text = fs::read_to_string(&file).unwrap();
    text.push_str(&line(today().1, 0, 0, "", "a new <i>line</i>"));
    text.push('\n');
    fs::write(&file, text).unwrap();
    let seen = events.wait_for("a new <i>line</i>").unwrap();
    assert!(seen.contains("event: line\ndata: {"), "{seen}");
    assert!(!seen.contains("private words"), "only new lines: {seen}");

    let csrf = admin.get("/search").unwrap().input_value("csrf").unwrap();
    let hits = admin
        .get(&format!(
            "/search?csrf={csrf}&text=BLOCKED&protocol=IRC&from={day}&to={day}"
        ))
        .unwrap();
    assert!(
        hits.body.contains("1 hits") && hits.body.contains("a blocked line"),
        "{}",
        hits.body
    );

    let audit = admin.get("/audit").unwrap();
    assert_eq!(audit.status, 200);
    let expected: Vec<(&str, String)> = vec![
        ("login", String::new()),
        ("export", format!("/IRC/alice/bob/{day} csv")),
        ("export", format!("/IRC/alice/bob/{day} json")),
        ("live", "/IRC/alice/bob".to_string()),
        ("live", "/events/IRC/alice/bob".to_string()),
        ("view", "/search".to_string()),
        (
            "search",
            format!("text=\"BLOCKED\" user=\"\" protocol=\"IRC\" from=\"{day}\" to=\"{day}\""),
        ),
        ("audit", String::new()),
    ];
    let records = s.web.audit_records();
    let got: Vec<(&str, &str)> = records
        .iter()
        .map(|(_, a, w)| (a.as_str(), w.as_str()))
        .collect();
    let want: Vec<(&str, &str)> = expected.iter().map(|(a, w)| (*a, w.as_str())).collect();
    assert_eq!(got, want);
    assert!(records.iter().all(|(u, _, _)| u == "admin"));
    assert!(audit.body.contains("<td>search</td>") && audit.body.contains("BLOCKED"));
}

/// The `href`s of a page that stay on the viewer.
fn links(body: &str) -> Vec<String> {
    body.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|l| l.starts_with('/'))
        .map(|l| l.replace("&amp;", "&"))
        .collect()
}

#[test]
fn pages_work_without_javascript_except_the_live_view() {
    let s = scene();
    let mut admin = logged_in(&s, "admin");
    // Every page reachable by plain links from the start page, as a browser
    // without JavaScript follows them.
    let mut seen: Vec<String> = Vec::new();
    let mut queue = vec!["/".to_string()];
    while let Some(page) = queue.pop() {
        if seen.contains(&page) || page.starts_with("/static/") {
            continue;
        }
        assert!(seen.len() < 100, "more pages than the scene has: {seen:?}");
        let r = admin.get(&page).unwrap();
        assert_eq!(r.status, 200, "{page}");
        let is_live = page.starts_with("/live/");
        if !page.starts_with("/export/") {
            let scripts = r.body.matches("<script").count();
            assert_eq!(scripts, usize::from(is_live), "{page}: {}", r.body);
        }
        if is_live {
            assert!(r
                .body
                .contains(r#"<script src="/static/live.js"></script>"#));
        }
        queue.extend(links(&r.body));
        seen.push(page);
    }
    let day = &s.day;
    for reached in [
        format!("/p/IRC/alice/bob/{day}"),
        format!("/p/IRC/class7-ann/%23class/{day}"),
        format!("/export/csv/IRC/alice/bob/{day}"),
        "/live/IRC/alice/bob".to_string(),
        "/search".to_string(),
        "/audit".to_string(),
    ] {
        assert!(seen.contains(&reached), "{reached} not linked: {seen:?}");
    }
    // The search form is a plain GET form; a search by user and protocol.
    let form = admin.get("/search").unwrap();
    assert!(form
        .body
        .contains(r#"<form class="search" method="get" action="/search">"#));
    let csrf = form.input_value("csrf").unwrap();
    let hits = admin
        .get(&format!("/search?csrf={csrf}&user=BOB&protocol=IRC"))
        .unwrap()
        .body;
    assert!(hits.contains("4 hits"), "{hits}");
    assert!(!hits.contains("homework"), "{hits}");
}

/// Read until the server closes; `false` when it did not within `limit`.
fn closed_within(stream: &mut std::net::TcpStream, limit: std::time::Duration) -> bool {
    use std::io::Read;
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).is_ok()
}

#[test]
fn idle_and_slow_clients_are_cut_off() {
    use imspector_web::server::HANDSHAKE_TIMEOUT;
    use std::io::Write;
    let s = scene();
    let started = std::time::Instant::now();
    let mut idle = std::net::TcpStream::connect(s.web.addr).unwrap();
    let mut slow = std::net::TcpStream::connect(s.web.addr).unwrap();
    slow.write_all(b"GET /login HTTP/1.1\r\nHost: viewer\r\n")
        .unwrap();
    // Others are served meanwhile.
    assert_eq!(s.web.client().get("/login").unwrap().status, 200);
    for stream in [&mut slow, &mut idle] {
        assert!(closed_within(stream, HANDSHAKE_TIMEOUT * 3));
    }
    assert!(started.elapsed() >= HANDSHAKE_TIMEOUT);
}
