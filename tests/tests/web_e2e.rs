//! The log viewer and the metrics end to end: IRC through the rig (ngircd, ii,
//! REDIRECT, the daemon), imspector-web reading the daemon's file logs, and
//! Debian's headless Chromium logging in and following the conversation live.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;

use imspector_e2e::chromium::Chromium;
use imspector_e2e::imspector::{target_dir, workspace_binary};
use imspector_e2e::irc::{Ii, Ngircd};
use imspector_e2e::web::{add_user, Client, Web};
use imspector_e2e::{prometheus, wait, Imspector, Rig};

const PORT: u16 = 16667;
const METRICS: &str = "127.0.0.1:9167";

struct Scene {
    rig: Rig,
    _server: Ngircd,
    ims: Imspector,
    alice: Ii,
    bob: Ii,
}

/// The daemon with metrics in the gateway, ngircd, alice (local) and bob;
/// `extra_config` gets the daemon's directory.
fn scene(extra_config: impl FnOnce(&Path) -> String) -> anyhow::Result<Scene> {
    let rig = Rig::new()?;
    rig.redirect(&[6667, 1863], PORT)?;
    // An SQLite sink too, for the database metrics.
    let dir = rig.subdir("ims")?;
    let extra_config = extra_config(&dir);
    let ims = Imspector::start(
        &rig.gateway,
        &dir,
        &format!(
            "irc_protocol=on\nmetrics_listen={METRICS}\n{extra_config}\
             sqlite_file={}\nspool_dir={}\n",
            dir.join("messages.db").display(),
            dir.join("spool").display()
        ),
    )?;
    ims.wait_output("metrics on http://")?;
    let server = Ngircd::start(&rig.server, &rig.subdir("ngircd")?)?;
    let dir = rig.subdir("clients")?;
    let bob = Ii::remote(&rig, &dir, "bob")?;
    let alice = Ii::local(&rig, &dir, IpAddr::V4(rig.server_ip), "alice")?;
    Ok(Scene {
        rig,
        _server: server,
        ims,
        alice,
        bob,
    })
}

fn today() -> String {
    chrono::Local::now().format("%Y-%m-%d").to_string()
}

#[test]
fn chromium_logs_in_reads_a_conversation_and_sees_a_new_line_live() -> anyhow::Result<()> {
    let s = scene(|_| String::new())?;
    let first = "hello bob, <b>from</b> alice";
    s.alice.msg("bob", first)?;
    s.bob.wait_received("alice", "alice", first)?;
    s.bob.msg("alice", "hi alice")?;
    s.alice.wait_received("bob", "bob", "hi alice")?;
    s.ims.wait_log("IRC", "alice", "bob", 2)?;

    let dir = s.rig.subdir("web")?;
    let bin = workspace_binary("imspector-web");
    let users = dir.join("users");
    add_user(&bin, &users, "admin", "correct horse", &["--admin"])?;
    let config = format!("file_logging_dir={}", s.ims.log_dir.display());
    let web = Web::start(&bin, &dir, &config, &users)?;
    let base = format!("http://{}", web.addr);
    let shots = target_dir().join("web-e2e");
    std::fs::create_dir_all(&shots)?;

    let mut browser = Chromium::start(&dir)?;
    browser.open(&format!("{base}/p/IRC"), "/login")?;
    browser.eval(
        "document.querySelector('input[name=user]').value = 'admin';\
         document.querySelector('input[name=password]').value = 'correct horse';",
    )?;
    browser.screenshot(&shots.join("login.png"))?;
    browser.eval("document.querySelector('form[action=\"/login\"]').submit()")?;
    browser.wait_page("/")?;
    assert!(browser.text()?.contains("IRC"));

    let day = today();
    browser.open(
        &format!("{base}/p/IRC/alice/bob/{day}"),
        &format!("/p/IRC/alice/bob/{day}"),
    )?;
    // The markup the chat carried is shown as text.
    let text = browser.wait_text(first)?;
    assert!(
        text.contains("alice → bob") && text.contains("alice ← bob"),
        "{text}"
    );
    assert!(
        text.contains("hi alice") && text.contains("2 events"),
        "{text}"
    );
    let bold = browser.eval("document.querySelectorAll('#lines b').length")?;
    assert_eq!(bold, 0);
    browser.screenshot(&shots.join("conversation.png"))?;

    browser.open(&format!("{base}/live/IRC/alice/bob"), "/live/IRC/alice/bob")?;
    browser.wait_text("following new events")?;
    let rows = "document.querySelectorAll('#lines tbody tr').length";
    assert_eq!(browser.eval(rows)?, 2);
    let live = "this line arrives while the page is open";
    s.alice.msg("bob", live)?;
    s.bob.wait_received("alice", "alice", live)?;
    let text = browser.wait_text(live)?;
    assert_eq!(browser.eval(rows)?, 3, "{text}");
    browser.screenshot(&shots.join("live.png"))?;

    browser.open(&format!("{base}/search"), "/search")?;
    browser.eval(
        "document.querySelector('input[name=text]').value = 'alice';\
         document.querySelector('form.search').submit()",
    )?;
    let hits = browser.wait_text("hits")?;
    assert!(hits.contains("2 hits"), "{hits}");
    browser.screenshot(&shots.join("search.png"))?;
    browser.open(&format!("{base}/audit"), "/audit")?;
    browser.wait_text("Audit log")?;
    browser.screenshot(&shots.join("audit.png"))?;

    let actions: Vec<(String, String)> = web
        .audit_records()
        .into_iter()
        .map(|(user, action, what)| (format!("{user} {action}"), what))
        .collect();
    let has = |who: &str, what: &str| actions.iter().any(|(a, w)| a == who && w == what);
    assert!(has("- refused", "/p/IRC"), "{actions:?}");
    assert!(has("admin login", ""));
    assert!(has("admin view", &format!("/IRC/alice/bob/{day}")));
    assert!(has("admin live", "/IRC/alice/bob"));
    assert!(has("admin live", "/events/IRC/alice/bob"));
    assert!(has("admin audit", ""));
    for shot in ["login", "conversation", "live", "search", "audit"] {
        let png = std::fs::read(shots.join(format!("{shot}.png")))?;
        assert!(png.len() > 1000, "{shot}.png is {} bytes", png.len());
    }
    Ok(())
}

/// `/metrics` of the daemon in the gateway, read from inside its namespace.
fn metrics(rig: &Rig) -> anyhow::Result<prometheus::Exposition> {
    let addr: SocketAddr = METRICS.parse()?;
    let response = rig.gateway.run(move || {
        let mut client = Client {
            addr,
            cookies: Default::default(),
        };
        client.get("/metrics")
    })??;
    anyhow::ensure!(response.status == 200, "{response:?}");
    let content_type = response.header("content-type").unwrap_or_default();
    anyhow::ensure!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    prometheus::parse(&response.body)
}

#[test]
fn metrics_count_known_irc_traffic() -> anyhow::Result<()> {
    // The file offer below is blocked, and counted as filtered; alice is
    // told once that she is logged and once that the offer was blocked.
    let s = scene(|dir| {
        format!(
            "block_files=on\nmsn_protocol=on\nresponder_filename={}\nnotice_days=7\nfiltered_mins=15\n",
            dir.join("responder.db").display()
        )
    })?;
    for text in ["one", "two"] {
        s.alice.msg("bob", text)?;
        s.bob.wait_received("alice", "alice", text)?;
    }
    s.bob.msg("alice", "three")?;
    s.alice.wait_received("bob", "bob", "three")?;
    s.alice
        .command("/PRIVMSG bob :\u{1}DCC SEND report.pdf 167772162 5000 123456\u{1}")?;
    s.ims.wait_log("IRC", "alice", "bob", 4)?;

    // Every event the daemon logged, by direction and type, from its files.
    let mut logged = std::collections::HashMap::<(String, String), f64>::new();
    let irc = s.ims.log_dir.join("IRC");
    for local in std::fs::read_dir(&irc)? {
        for remote in std::fs::read_dir(local?.path())? {
            for day in std::fs::read_dir(remote?.path())? {
                for line in wait::read(&day?.path()).lines() {
                    let f: Vec<&str> = line.splitn(5, ',').collect();
                    *logged
                        .entry((f[2].to_string(), f[3].to_string()))
                        .or_default() += 1.0;
                }
            }
        }
    }
    let sqlite = [("sink", "sqlite")];
    let m = wait::until("the metrics to count every event, committed", || {
        let m = metrics(&s.rig).ok()?;
        let out = m.value(
            "imspector_events_total",
            &[
                ("protocol", "IRC"),
                ("type", "message"),
                ("direction", "out"),
            ],
        );
        let committed = m.value("imspector_journal_backlog_events", &sqlite) == Some(0.0);
        (committed && out == logged.get(&("1".into(), "1".into())).copied()).then_some(m)
    })?;
    assert_eq!(m.value("imspector_database_up", &sqlite), Some(1.0));
    assert_eq!(m.value("imspector_sink_up", &sqlite), Some(1.0));
    let events = |dir: &str, kind: &str| {
        m.value(
            "imspector_events_total",
            &[("protocol", "IRC"), ("type", kind), ("direction", dir)],
        )
    };
    assert_eq!(
        logged.get(&("1".into(), "1".into())),
        Some(&2.0),
        "{logged:?}"
    );
    assert_eq!(events("out", "message"), Some(2.0));
    assert_eq!(
        events("in", "message"),
        logged.get(&("0".into(), "1".into())).copied()
    );
    assert_eq!(events("out", "file"), Some(1.0));
    let irc_label = [("protocol", "IRC")];
    assert_eq!(
        m.value("imspector_connections_total", &irc_label),
        Some(1.0)
    );
    assert_eq!(m.value("imspector_connections_open", &irc_label), Some(1.0));
    let blocked = wait::read(&s.ims.log_file("IRC", "alice", "bob"));
    assert!(
        blocked.contains(",1,2,1,,report.pdf 123456 bytes"),
        "{blocked}"
    );
    assert_eq!(
        m.value("imspector_events_filtered_total", &irc_label),
        Some(1.0)
    );
    assert_eq!(m.value("imspector_sink_up", &[("sink", "file")]), Some(1.0));
    let sent = m
        .value(
            "imspector_bytes_relayed_total",
            &[("protocol", "IRC"), ("direction", "out")],
        )
        .unwrap_or_default();
    assert!(sent > "PRIVMSG bob :one\r\n".len() as f64 * 2.0, "{sent}");
    for family in [
        "imspector_connections",
        "imspector_events",
        "imspector_bytes_relayed",
    ] {
        assert_eq!(
            m.types.get(family).map(String::as_str),
            Some("counter"),
            "{family}"
        );
    }
    assert_eq!(
        m.types
            .get("imspector_connections_open")
            .map(String::as_str),
        Some("gauge")
    );

    // Notices: as many as alice's client shows.
    let told = |text: &str| {
        ["bob", ""]
            .iter()
            .map(|w| s.alice.window(w).matches(text).count())
            .sum::<usize>()
    };
    assert_eq!(told("Your activities are being logged"), 1);
    assert_eq!(told("The message or action was blocked"), 1);
    assert_eq!(
        m.value("imspector_notices_sent_total", &irc_label),
        Some(2.0)
    );

    // Bytes that are not MSN, to the MSN port: relayed plainly, one stop.
    let listener = s.rig.server.run(|| TcpListener::bind("0.0.0.0:1863"))??;
    let server = SocketAddr::from((s.rig.server_ip, 1863));
    let mut not_msn = s.rig.client.run(move || TcpStream::connect(server))??;
    const NOT_MSN: &[u8] = b"\x00\x01binary, not an MSN command";
    not_msn.write_all(NOT_MSN)?;
    listener.set_nonblocking(true)?;
    let (mut relayed, _) = wait::until("the relayed connection", || listener.accept().ok())?;
    relayed.set_nonblocking(false)?;
    relayed.set_read_timeout(Some(wait::DEADLINE))?;
    let mut got = vec![0u8; NOT_MSN.len()];
    std::io::Read::read_exact(&mut relayed, &mut got)?;
    assert_eq!(got, NOT_MSN);
    let stop = [("protocol", "MSN"), ("reason", "not_this_protocol")];
    let m = wait::until("the parser stop to be counted", || {
        let m = metrics(&s.rig).ok()?;
        m.value("imspector_parser_stops_total", &stop)
            .is_some()
            .then_some(m)
    })?;
    assert_eq!(m.value("imspector_parser_stops_total", &stop), Some(1.0));

    // The connection closed: open drops to 0, the total stays.
    drop(s.alice);
    let m = wait::until("the connection to be counted closed", || {
        let m = metrics(&s.rig).ok()?;
        (m.value("imspector_connections_open", &irc_label) == Some(0.0)).then_some(m)
    })?;
    assert_eq!(
        m.value("imspector_connections_total", &irc_label),
        Some(1.0)
    );
    Ok(())
}
