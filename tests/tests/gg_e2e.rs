//! Gadu-Gadu end to end: real libgadu clients in GG 8.0 and GG 11 mode, our
//! test server, real iptables REDIRECT rules, the imspector binary in the
//! gateway namespace.

use imspector::filter::testing::{self, FilterRig, Outcome, Seen};
use imspector_e2e::gadugadu::bitlbee::Bitlbee;
use imspector_e2e::gadugadu::{Generation, GgClient, GgServer};
use imspector_e2e::imspector::{assert_lines, now};
use imspector_e2e::{wait, Imspector, Rig};

const ALICE: u32 = 1001;
const BOB: u32 = 1002;

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

/// The filter scenarios through the libgadu clients: alice sends to bob, then
/// a "stopped typing" notification (no chat event, so no filter touches it)
/// that reaches bob after the message if the message went through at all, and
/// a ping whose answer reaches alice after any notice the proxy injected.
struct GgFilterRig {
    scene: GgScene,
    base_config: String,
    /// Messages sent so far, so each `send` finds its own log line.
    sent: usize,
    /// Messages bob already got from alice, notices alice already got.
    seen: Seen,
}

impl GgFilterRig {
    fn new(generation: Generation) -> anyhow::Result<Self> {
        let base_config = "gg_protocol=on\n".to_string();
        Ok(GgFilterRig {
            scene: scene(generation, &base_config)?,
            base_config,
            sent: 0,
            seen: Seen::default(),
        })
    }

    fn send_and_sync(&mut self, text: &str) -> anyhow::Result<()> {
        let s = &mut self.scene;
        let stopped = format!("typing {ALICE} 0");
        let (syncs, pongs) = (s.bob.count(&stopped), s.alice.count("pong"));
        s.alice.send(BOB, text)?;
        s.alice.typing(BOB, 0)?;
        s.alice.ping()?;
        s.bob.wait_count(&stopped, syncs + 1)?;
        s.alice.wait_count("pong", pongs + 1)
    }
}

impl FilterRig for GgFilterRig {
    fn ids(&self) -> (String, String) {
        (ALICE.to_string(), BOB.to_string())
    }

    fn configure(&mut self, conf: &str) -> Result<(), String> {
        self.scene
            .ims
            .reload(&format!("{}{conf}", self.base_config))
            .map_err(|e| e.to_string())
    }

    fn send(&mut self, text: &str) -> Result<Outcome, String> {
        let e = |e: anyhow::Error| e.to_string();
        self.send_and_sync(text).map_err(e)?;
        self.sent += 1;
        let s = &self.scene;
        let logged = s
            .ims
            .wait_logged("Gadu-Gadu", "1001", "1002", self.sent)
            .map_err(e)?;
        // Bob never writes to alice here: all she gets from him are notices.
        self.seen.outcome(
            &s.bob.messages_from(ALICE),
            &s.alice.messages_from(BOB),
            logged,
        )
    }
}

fn filter_scenarios(generation: Generation) -> anyhow::Result<()> {
    let mut rig = GgFilterRig::new(generation)?;
    let dir = rig.scene.rig.subdir("scenarios")?;
    testing::run_all(&mut rig, &dir);
    Ok(())
}

#[test]
fn gg80_filter_scenarios_through_libgadu() -> anyhow::Result<()> {
    filter_scenarios(Generation::Gg80)
}

#[test]
fn gg11_filter_scenarios_through_libgadu() -> anyhow::Result<()> {
    filter_scenarios(Generation::Gg11)
}

/// libpurple (GG 11) as the local user, driven through bitlbee's IRC side;
/// a libgadu client as the remote one.
#[test]
fn libpurple_through_bitlbee_is_relayed_and_logged() -> anyhow::Result<()> {
    let since = now();
    let rig = Rig::new()?;
    rig.redirect(&[8074], 16667)?;
    let ims = Imspector::start(
        &rig.gateway,
        &rig.subdir("ims")?,
        "gg_protocol=on\nlog_typing_events=on\n",
    )?;
    let server = GgServer::start(&rig.server)?;
    let mut bob = GgClient::start(
        &rig.server,
        &rig.subdir("clients")?,
        BOB,
        "127.0.0.1".parse()?,
        Generation::Gg11,
    )?;
    let mut purple = Bitlbee::start(&rig.client, &rig.subdir("bitlbee")?)?;
    purple.login_gg(ALICE, rig.server_ip, BOB, "bob")?;

    let text = "zażółć gęślą jaźń, from libpurple";
    purple.msg("bob", text)?;
    wait::until("bob to get the message", || {
        bob.messages_from(ALICE)
            .iter()
            .any(|t| t == text)
            .then_some(())
    })
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}; bob printed:\n{}\nthe server did:\n{}\nbitlbee said:\n{}",
            bob.process.output(),
            server.journal(),
            purple.transcript()
        )
    })?;
    bob.send(ALICE, "odpowiedź dla libpurple")?;
    purple.wait_msg("bob", "odpowiedź dla libpurple")?;
    // libpurple sends no real length, just some non-zero number.
    purple.typing("bob")?;
    let typing = format!("typing {ALICE} ");
    wait::until("bob to see alice typing", || {
        bob.lines()
            .iter()
            .any(|l| l.starts_with(&typing) && !l.ends_with(" 0"))
            .then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}; bob printed:\n{}", bob.process.output()))?;

    assert!(
        server
            .journal()
            .contains(&format!("{ALICE} logged in (Gg11)")),
        "{}",
        server.journal()
    );
    let lines = ims.wait_log("Gadu-Gadu", "1001", "1002", 3)?;
    assert_lines(
        &lines,
        &rig.client_ip.to_string(),
        since,
        &[
            &format!("1,1,0,,{text}"),
            "0,1,0,,odpowiedź dla libpurple",
            "1,3,0,,",
        ],
    );
    Ok(())
}
