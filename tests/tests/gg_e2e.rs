//! Gadu-Gadu end to end: real libgadu clients in GG 8.0 and GG 11 mode, our
//! test server, real iptables REDIRECT rules, the imspector binary in the
//! gateway namespace.

use imspector_e2e::gadugadu::{Generation, GgClient, GgServer};
use imspector_e2e::imspector::LogLine;
use imspector_e2e::{wait, Imspector, Rig};

const ALICE: u32 = 1001;
const BOB: u32 = 1002;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Every line came from `client_ip`, from one connection, at a plausible time,
/// and the predictable part of the lines is `expected`.
fn assert_lines(lines: &[LogLine], client_ip: &str, since: i64, expected: &[&str]) {
    let rest: Vec<&str> = lines.iter().map(|l| l.rest.as_str()).collect();
    assert_eq!(rest, expected);
    for line in lines {
        assert_eq!(line.client_ip(), client_ip, "{line:?}");
        assert_eq!(line.client, lines[0].client, "one connection");
        assert!(
            line.timestamp >= since && line.timestamp <= now(),
            "{line:?}"
        );
    }
}

/// Alice (local, through the proxy) and bob (next to the server), logged in.
struct GgScene {
    alice: GgClient,
    bob: GgClient,
    server: GgServer,
    ims: Imspector,
    rig: Rig,
}

fn scene(generation: Generation, config: &str) -> anyhow::Result<GgScene> {
    let rig = Rig::new()?;
    rig.redirect(&[8074], 16667)?;
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, config)?;
    let server = GgServer::start(&rig.server)?;
    let dir = rig.subdir("clients")?;
    let bob = GgClient::start(&rig.server, &dir, BOB, "127.0.0.1".parse()?, generation)?;
    let alice = GgClient::start(&rig.client, &dir, ALICE, rig.server_ip, generation)?;
    Ok(GgScene {
        alice,
        bob,
        server,
        ims,
        rig,
    })
}

impl GgScene {
    /// Wait until `client` received `text` from `from`, or say what happened.
    fn wait_message(&self, to: &GgClient, from: u32, text: &str) -> anyhow::Result<()> {
        wait::until(&format!("{} to get {text:?} from {from}", to.uin), || {
            to.messages_from(from)
                .iter()
                .any(|t| t == text)
                .then_some(())
        })
        .map_err(|e| {
            anyhow::anyhow!(
                "{e}; it printed:\n{}\nthe server did:\n{}\nimspector printed:\n{}",
                to.process.output(),
                self.server.journal(),
                self.ims.process.output()
            )
        })
    }
}

fn chat_is_relayed_unchanged_and_logged(generation: Generation) -> anyhow::Result<()> {
    let since = now();
    let mut s = scene(generation, "gg_protocol=on\nlog_typing_events=on\n")?;
    let polish = "zażółć gęślą jaźń, ZAŻÓŁĆ GĘŚLĄ JAŹŃ";
    s.alice.send(BOB, polish)?;
    s.wait_message(&s.bob, ALICE, polish)?;
    s.bob.send(ALICE, "dzięki, <b>bold</b> & more")?;
    s.wait_message(&s.alice, BOB, "dzięki, <b>bold</b> & more")?;

    s.alice.typing(BOB, 7)?;
    s.bob.wait_line(&format!("typing {ALICE} 7"))?;
    // Stopping is no event of its own.
    s.alice.typing(BOB, 0)?;
    s.bob.wait_line(&format!("typing {ALICE} 0"))?;

    let file = s.rig.subdir("files")?.join("raport.pdf");
    std::fs::write(&file, vec![b'x'; 12345])?;
    s.alice.offer_file(BOB, &file)?;
    s.bob.wait_line(&format!("file {ALICE} raport.pdf 12345"))?;

    assert!(
        s.server
            .journal()
            .contains(&format!("{ALICE} logged in ({generation:?})")),
        "{}",
        s.server.journal()
    );
    let lines = s.ims.wait_log("Gadu-Gadu", "1001", "1002", 4)?;
    assert_lines(
        &lines,
        &s.rig.client_ip.to_string(),
        since,
        &[
            &format!("1,1,0,,{polish}"),
            "0,1,0,,dzięki, <b>bold</b> & more",
            "1,3,0,,",
            "1,2,0,,raport.pdf 12345 bytes",
        ],
    );
    assert!(
        !s.alice.lines().iter().any(|l| l.starts_with("failed")),
        "{:?}",
        s.alice.lines()
    );
    Ok(())
}

#[test]
fn gg80_chat_typing_and_file_offer_are_relayed_and_logged() -> anyhow::Result<()> {
    chat_is_relayed_unchanged_and_logged(Generation::Gg80)
}

#[test]
fn gg11_chat_typing_and_file_offer_are_relayed_and_logged() -> anyhow::Result<()> {
    chat_is_relayed_unchanged_and_logged(Generation::Gg11)
}
