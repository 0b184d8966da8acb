//! ICQ/AIM (OSCAR) end to end: our OSCAR server in the server namespace, a
//! scripted client for each user, the login on port 5190 and BOS on 5191
//! (both redirected to the daemon), real iptables rules in the gateway.

use imspector::filter::testing::{self, FilterRig, Outcome, Seen};
use imspector_e2e::imspector::{assert_lines, now};
use imspector_e2e::oscar::barnowl::BarnOwl;
use imspector_e2e::oscar::client::Received;
use imspector_e2e::oscar::wire::Charset;
use imspector_e2e::oscar::{OscarClient, OscarServer, BOS_PORT, CHAT_PORT, LOGIN_PORT};
use imspector_e2e::{wait, Imspector, Rig};

const ALICE: &str = "Alice Smith";
const ALICE_PASSWORD: &str = "alice-secret-pw";
const BOB: &str = "bob";
const CONFIG: &str = "icq_protocol=on\nicq_ports=5190,5191,5192\n";

/// Alice signed on through the proxy, bob beside the server.
struct Scene {
    alice: OscarClient,
    bob: OscarClient,
    server: OscarServer,
    ims: Imspector,
    rig: Rig,
}

fn scene(config: &str) -> anyhow::Result<Scene> {
    let rig = Rig::new()?;
    rig.redirect(&[LOGIN_PORT, BOS_PORT, CHAT_PORT], 16667)?;
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, config)?;
    let server = OscarServer::start(
        &rig.server,
        rig.server_ip,
        &[(ALICE, ALICE_PASSWORD), (BOB, "bob-pw")],
    )?;
    let bob = OscarClient::login(&rig.server, rig.server_ip, BOB, "bob-pw")?;
    let alice = OscarClient::login(&rig.client, rig.server_ip, ALICE, ALICE_PASSWORD)?;
    wait::until("both users on BOS", || {
        (server.is_online(ALICE) && server.is_online(BOB)).then_some(())
    })?;
    Ok(Scene {
        alice,
        bob,
        server,
        ims,
        rig,
    })
}

impl Scene {
    fn wait_message(&self, to: &OscarClient, from: &str, text: &str) -> anyhow::Result<()> {
        wait::until(&format!("{} to get {text:?} from {from}", to.name), || {
            to.messages_from(from)
                .iter()
                .any(|t| t == text)
                .then_some(())
        })
        .map_err(|e| {
            anyhow::anyhow!(
                "{e}; {} got {:?}\nthe server did:\n{}\nimspector printed:\n{}",
                to.name,
                to.received(),
                self.server.journal(),
                self.ims.process.output()
            )
        })
    }
}

#[test]
fn chat_typing_and_file_offers_are_relayed_and_logged() -> anyhow::Result<()> {
    let since = now();
    let mut s = scene(&format!("{CONFIG}log_typing_events=on\n"))?;
    // The first PDU of alice's BOS connection that names her is this message:
    // her id comes from the login connection, through the cookie.
    let polish = "zażółć gęślą jaźń ☺";
    s.alice.send(BOB, polish, Charset::Ucs2)?;
    s.wait_message(&s.bob, ALICE, polish)?;
    s.bob.send(ALICE, "café crème", Charset::Latin1)?;
    s.wait_message(&s.alice, BOB, "café crème")?;
    s.alice.send(
        BOB,
        "<HTML><BODY>plain <B>ascii</B></BODY></HTML>",
        Charset::Ascii,
    )?;
    s.wait_message(
        &s.bob,
        ALICE,
        "<HTML><BODY>plain <B>ascii</B></BODY></HTML>",
    )?;

    s.alice.typing(BOB, 2)?;
    s.alice.typing(BOB, 0)?;
    s.bob.wait_count("typing finished", 1, |r| {
        matches!(r, Received::Typing { state: 0, .. })
    })?;
    s.alice.offer_file(BOB, "holiday.jpg", 48213)?;
    s.bob
        .wait_count("the file offer", 1, |r| *r == Received::Other(0x04, 0x07))?;
    s.bob.send(ALICE, "thanks", Charset::Ascii)?;
    s.wait_message(&s.alice, BOB, "thanks")?;

    let lines = s.ims.wait_log("ICQ-AIM", "alicesmith", "bob", 6)?;
    assert_lines(
        &lines,
        &s.rig.client_ip.to_string(),
        since,
        &[
            &format!("1,1,0,,{polish}"),
            "0,1,0,,café crème",
            "1,1,0,,<HTML><BODY>plain <B>ascii</B></BODY></HTML>",
            "1,3,0,,",
            "1,2,0,,holiday.jpg 48213 bytes",
            "0,1,0,,thanks",
        ],
    );
    // Neither the password nor its digest shows in the daemon's output (-d).
    let output = s.ims.process.output();
    assert!(!output.contains(ALICE_PASSWORD), "{output}");
    assert!(s.server.journal().contains("Alice Smith signed on to BOS"));
    Ok(())
}

/// A chat room: its connection presents only the cookie BOS handed out in
/// 01/05, the room is the remote id, incoming lines carry the sender.
#[test]
fn chat_room_lines_are_logged_in_the_room() -> anyhow::Result<()> {
    let since = now();
    let mut s = scene(CONFIG)?;
    let mut bob_room = s.bob.join(&s.rig.server, "Lobby")?;
    let mut alice_room = s.alice.join(&s.rig.client, "Lobby")?;
    wait::until("both in the room", || {
        let journal = s.server.journal();
        (journal.contains("bob joined Lobby") && journal.contains("Alice Smith joined Lobby"))
            .then_some(())
    })?;
    alice_room.say("hello room, zażółć")?;
    wait::until("bob to hear alice", || {
        (bob_room.lines_from(ALICE) == ["hello room, zażółć"]).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}; the server did:\n{}", s.server.journal()))?;
    bob_room.say("hi alice")?;
    wait::until("alice to hear bob", || {
        (alice_room.lines_from(BOB) == ["hi alice"]).then_some(())
    })?;
    let lines = s.ims.wait_log("ICQ-AIM", "alicesmith", "lobby", 2)?;
    assert_lines(
        &lines,
        &s.rig.client_ip.to_string(),
        since,
        &["1,1,0,,hello room, zażółć", "0,1,0,,bob: hi alice"],
    );
    Ok(())
}

/// Bad input from the client: the server gets the bytes as they were sent,
/// the daemon says in one line why it stopped reading the connection, and
/// the chat goes on (relayed plainly).
#[test]
fn malformed_oscar_is_relayed_with_a_clear_log_line() -> anyhow::Result<()> {
    // An odd UCS-2 length, to a user who is offline (bob's strict reader
    // would refuse it): the message is logged, then inspection stops.
    let mut s = scene(CONFIG)?;
    let mut body = s.alice.icbm_start(1, "carol");
    // TLV 2: a capabilities fragment, then a UCS-2 text fragment of 3 bytes.
    body.extend_from_slice(&[0, 2, 0, 16, 5, 1, 0, 1, 1]);
    body.extend_from_slice(&[1, 1, 0, 7, 0, 2, 0, 0, 0, b'h', 0]);
    s.alice.send_snac(4, 6, &body)?;
    s.ims.wait_output(
        "ICQ-AIM: OSCAR: SNAC 04/06: ICBM message fragment of 3 bytes is not valid in its \
         charset 0x0002; relaying the rest of this connection untouched",
    )?;
    wait::until("the server to get it", || {
        s.server
            .journal()
            .contains("Alice Smith wrote to carol who is offline")
            .then_some(())
    })?;
    s.alice.send(BOB, "still delivered", Charset::Ascii)?;
    s.wait_message(&s.bob, ALICE, "still delivered")?;
    let lines = s.ims.wait_log("ICQ-AIM", "alicesmith", "carol", 1)?;
    assert_eq!(lines[0].rest, "1,1,0,,h\u{fffd}");

    // A TLV chain that overruns its SNAC.
    let mut s = scene(CONFIG)?;
    let mut body = s.alice.icbm_start(1, BOB);
    body.extend_from_slice(&[0, 2, 0, 40, 1, 1, 0, 4, 0, 0, 0, 0]);
    s.alice.send_snac(4, 6, &body)?;
    s.ims.wait_output(
        "ICQ-AIM: OSCAR: SNAC 04/06: ICBM: TLV 0x0002 of 40 bytes overruns its container \
         (8 bytes left); relaying the rest of this connection untouched",
    )?;
    wait::until("the server to get it", || {
        s.server
            .journal()
            .contains("malformed ICBM from Alice Smith")
            .then_some(())
    })?;
    s.alice.send(BOB, "still delivered", Charset::Ascii)?;
    s.wait_message(&s.bob, ALICE, "still delivered")?;

    // A FLAP whose length runs past what arrives: held, then forwarded.
    let mut s = scene(CONFIG)?;
    s.alice
        .send_raw(&[0x2a, 2, 0, 9, 0, 100, 0, 4, 0, 6, 0, 0, 0, 0, 0, 0])?;
    s.ims
        .wait_output("16 bytes waited 1000 ms for the rest of their PDU; forwarded")?;
    Ok(())
}

/// The filter scenarios through the scripted clients: alice sends to bob,
/// then "typing finished" (no event, so no filter touches it) that reaches
/// bob after the message if it went through at all, and a self-info request
/// whose answer reaches alice after any notice the proxy injected.
struct OscarFilterRig {
    scene: Scene,
    sent: usize,
    seen: Seen,
}

impl OscarFilterRig {
    fn send_and_sync(&mut self, text: &str) -> anyhow::Result<()> {
        let s = &mut self.scene;
        let finished = |r: &Received| matches!(r, Received::Typing { state: 0, .. });
        let pongs = |r: &Received| *r == Received::SelfInfo;
        let (syncs, pinged) = (
            s.bob.received().iter().filter(|r| finished(r)).count(),
            s.alice.received().iter().filter(|r| pongs(r)).count(),
        );
        s.alice.send(BOB, text, Charset::Ucs2)?;
        s.alice.typing(BOB, 0)?;
        s.alice.ping()?;
        s.bob.wait_count("typing finished", syncs + 1, finished)?;
        s.alice.wait_count("self info", pinged + 1, pongs)
    }
}

impl FilterRig for OscarFilterRig {
    fn ids(&self) -> (String, String) {
        ("alicesmith".into(), BOB.into())
    }

    fn configure(&mut self, conf: &str) -> Result<(), String> {
        self.scene
            .ims
            .reload(&format!("{CONFIG}{conf}"))
            .map_err(|e| e.to_string())
    }

    fn send(&mut self, text: &str) -> Result<Outcome, String> {
        let e = |e: anyhow::Error| format!("{e:#}");
        self.send_and_sync(text).map_err(e)?;
        self.sent += 1;
        let s = &self.scene;
        let logged = s
            .ims
            .wait_logged("ICQ-AIM", "alicesmith", BOB, self.sent)
            .map_err(e)?;
        // Bob never writes to alice here: all she gets from him are notices.
        self.seen.outcome(
            &s.bob.messages_from(ALICE),
            &s.alice.messages_from(BOB),
            logged,
        )
    }
}

#[test]
fn filter_scenarios_through_scripted_oscar_clients() -> anyhow::Result<()> {
    let mut rig = OscarFilterRig {
        scene: scene(CONFIG)?,
        sent: 0,
        seen: Seen::default(),
    };
    let dir = rig.scene.rig.subdir("scenarios")?;
    testing::run_all(&mut rig, &dir);
    Ok(())
}

/// BarnOwl as alice through the proxy, the scripted client as bob; a bad
/// word rewritten both ways, so BarnOwl's libfaim reads re-encoded FLAPs.
#[test]
fn barnowl_chats_through_the_proxy_and_is_logged() -> anyhow::Result<()> {
    let since = now();
    let rig = Rig::new()?;
    rig.redirect(&[LOGIN_PORT, BOS_PORT, CHAT_PORT], 16667)?;
    let dir = rig.subdir("ims")?;
    let badwords = dir.join("badwords.txt");
    std::fs::write(&badwords, "darn\n")?;
    let config = format!("{CONFIG}badwords_filename={}\n", badwords.display());
    let ims = Imspector::start(&rig.gateway, &dir, &config)?;
    let server = OscarServer::start(
        &rig.server,
        rig.server_ip,
        &[("alice", "owl-pw"), (BOB, "bob-pw")],
    )?;
    let mut bob = OscarClient::login(&rig.server, rig.server_ip, BOB, "bob-pw")?;
    let owl = BarnOwl::start(&rig.client, &rig.subdir("barnowl")?, rig.server_ip)?;
    owl.command("aimlogin alice owl-pw")?;
    owl.wait_screen("Logged in to AIM as alice")?;
    let trace = |e: anyhow::Error| {
        anyhow::anyhow!(
            "{e}\nthe server did:\n{}\nthe screen:\n{}\nimspector printed:\n{}",
            server.journal(),
            owl.screen(),
            ims.process.output()
        )
    };
    wait::until("alice on BOS", || server.is_online("alice").then_some(())).map_err(trace)?;

    owl.command("aimwrite bob -m hello from barnowl, darn it")?;
    wait::until("bob to get barnowl's message", || {
        (!bob.messages_from("alice").is_empty()).then_some(())
    })
    .map_err(trace)?;
    assert_eq!(bob.messages_from("alice"), ["hello from barnowl, **** it"]);
    bob.send("alice", "hi barnowl, café, darn", Charset::Latin1)?;
    owl.wait_screen("hi barnowl, café, ****").map_err(trace)?;

    let lines = ims.wait_log("ICQ-AIM", "alice", "bob", 2)?;
    assert_lines(
        &lines,
        &rig.client_ip.to_string(),
        since,
        &[
            "1,1,0,1 badwords;,hello from barnowl, darn it",
            "0,1,0,1 badwords;,hi barnowl, café, darn",
        ],
    );
    assert!(!ims.process.output().contains("owl-pw"));
    Ok(())
}
