//! XMPP end to end: a real prosody (plain streams, a MUC service, HTTP file
//! sharing), real slixmpp clients and sendxmpp, iptables REDIRECT, the
//! imspector binary in the gateway namespace.

use imspector::filter::testing::{self, FilterRig, Logged, Outcome, Seen};
use imspector_e2e::imspector::{assert_lines, now};
use imspector_e2e::xmpp::{
    sendxmpp, Encryption, Prosody, Slixmpp, Transport, DOMAIN, ROOMS, UPLOAD,
};
use imspector_e2e::{Imspector, Rig};
use imspector_protocols::xmpp::MAX_STANZA;

const PORT: u16 = 16667;
const PASSWORD: &str = "secret";

struct XmppScene {
    rig: Rig,
    server: Prosody,
    ims: Imspector,
}

/// prosody with the accounts alice, bob and carol, and imspector with `config`.
fn scene(config: &str) -> anyhow::Result<XmppScene> {
    let rig = Rig::new()?;
    rig.redirect(&[5222], PORT)?;
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, config)?;
    let server = Prosody::start(
        &rig.server,
        &rig.subdir("prosody")?,
        rig.server_ip.into(),
        Encryption::Plain,
    )?;
    for user in ["alice", "bob", "carol"] {
        server.register(user, PASSWORD)?;
    }
    Ok(XmppScene { rig, server, ims })
}

impl XmppScene {
    /// alice logs in from the client namespace, through the proxy.
    fn local(&self, user: &str) -> anyhow::Result<Slixmpp> {
        Slixmpp::start(
            &self.rig.client,
            &self.rig.subdir("clients")?,
            user,
            PASSWORD,
            self.server.addr,
            Transport::Plain,
        )
    }

    /// The other party logs in from the server's namespace, not through the proxy.
    fn remote(&self, user: &str) -> anyhow::Result<Slixmpp> {
        Slixmpp::start(
            &self.rig.server,
            &self.rig.subdir("clients")?,
            user,
            PASSWORD,
            self.server.addr,
            Transport::Plain,
        )
    }
}

fn jid(user: &str) -> String {
    format!("{user}@{DOMAIN}")
}

/// An OMEMO message as Conversations sends it: key material, payload, and the
/// fallback body for clients without OMEMO.
fn omemo_message(to: &str) -> String {
    format!(
        "<message to='{to}' type='chat' id='omemo1'><encrypted xmlns='eu.siacs.conversations.axolotl'>\
         <header sid='12345'><key rid='67890'>MwohBbSqa3nlMF0sVU5JfbfA8gphO2Wq</key>\
         <iv>TI9Sda2ACnXgTMqZ</iv></header><payload>Jf1pIo4ySg==</payload></encrypted>\
         <encryption xmlns='urn:xmpp:eme:0' namespace='eu.siacs.conversations.axolotl' name='OMEMO'/>\
         <body>I sent you an OMEMO encrypted message but your client doesn't seem to support that.</body>\
         <store xmlns='urn:xmpp:hints'/></message>"
    )
}

#[test]
fn chat_rooms_typing_uploads_and_encrypted_messages_are_logged() -> anyhow::Result<()> {
    let since = now();
    let s = scene("jabber_protocol=on\nlog_typing_events=on\n")?;
    let mut bob = s.remote("bob")?;
    let mut alice = s.local("alice")?;
    let (alice_jid, bob_jid) = (jid("alice"), jid("bob"));

    alice.chat(&bob_jid, "hello bob: ünïcödé, <xml> & 'quotes', 😀")?;
    bob.wait_received(&alice_jid, "hello bob: ünïcödé, <xml> & 'quotes', 😀")?;
    bob.chat(&alice.jid, "hi alice")?;
    alice.wait_received(&bob_jid, "hi alice")?;
    alice.composing(&bob_jid)?;
    bob.wait_event("composing", |e| {
        e["sender"].as_str() == Some(alice.jid.as_str())
    })?;
    sendxmpp(
        &s.rig.client,
        s.server.addr,
        "alice",
        PASSWORD,
        &bob_jid,
        "from sendxmpp",
    )?;
    bob.wait_received(&alice_jid, "from sendxmpp")?;
    alice.raw(&omemo_message(&bob_jid))?;
    bob.wait_received(
        &alice_jid,
        "I sent you an OMEMO encrypted message but your client doesn't seem to support that.",
    )?;

    let room = format!("lounge@{ROOMS}");
    alice.join(&room, "Alice")?;
    bob.join(&room, "Bob")?;
    alice.groupchat(&room, "hello room")?;
    bob.wait_received(&format!("{room}/Alice"), "hello room")?;
    bob.groupchat(&room, "hello alice")?;
    alice.wait_received(&format!("{room}/Bob"), "hello alice")?;

    let url = alice.upload_slot("cat.png", 1234)?;
    assert!(url.ends_with("/cat.png"), "{url}");

    let client = s.rig.client_ip.to_string();
    let private = s.ims.wait_log("Jabber", &alice_jid, &bob_jid, 5)?;
    // sendxmpp's line comes from a connection of its own.
    let (sendxmpp_line, slixmpp_lines): (Vec<_>, Vec<_>) = private
        .into_iter()
        .partition(|l| l.rest == "1,1,0,,from sendxmpp");
    assert_eq!(sendxmpp_line.len(), 1);
    assert_eq!(sendxmpp_line[0].client_ip(), client);
    assert_lines(
        &slixmpp_lines,
        &client,
        since,
        &[
            "1,1,0,,hello bob: ünïcödé, <xml> & 'quotes', 😀",
            "0,1,0,,hi alice",
            "1,3,0,,",
            "1,1,0,,[OMEMO encrypted message]",
        ],
    );
    let room_lines = s.ims.wait_log("Jabber", &alice_jid, &room, 2)?;
    assert_lines(
        &room_lines,
        &client,
        since,
        &["1,1,0,,hello room", "0,1,0,,Bob: hello alice"],
    );
    let upload = s.ims.wait_log("Jabber", &alice_jid, UPLOAD, 1)?;
    assert_lines(&upload, &client, since, &["1,2,0,,cat.png 1234 bytes"]);
    Ok(())
}

/// The filter scenarios through slixmpp and prosody: alice's messages to bob
/// as bob's client parses them, the notices alice's client shows.
struct XmppFilterRig {
    scene: XmppScene,
    alice: Slixmpp,
    bob: Slixmpp,
    /// Messages sent so far, so each `send` finds its own log line.
    sent: usize,
    seen: Seen,
}

impl XmppFilterRig {
    fn new() -> anyhow::Result<Self> {
        let scene = scene("jabber_protocol=on\n")?;
        let bob = scene.remote("bob")?;
        let alice = scene.local("alice")?;
        Ok(XmppFilterRig {
            scene,
            alice,
            bob,
            sent: 0,
            seen: Seen::default(),
        })
    }

    /// Notices come as chat messages from bob's bare JID (bob's own client
    /// sends from its full JID).
    fn alice_notices(&self) -> Vec<String> {
        self.alice
            .events()
            .into_iter()
            .filter(|e| e["event"] == "message" && e["sender"] == jid("bob"))
            .filter(|e| e["type"] == "chat")
            .filter_map(|e| e["body"].as_str().map(str::to_string))
            .collect()
    }
}

impl FilterRig for XmppFilterRig {
    fn ids(&self) -> (String, String) {
        (jid("alice"), jid("bob"))
    }

    fn configure(&mut self, conf: &str) -> Result<(), String> {
        self.scene
            .ims
            .reload(&format!("jabber_protocol=on\n{conf}"))
            .map_err(|e| e.to_string())
    }

    fn send(&mut self, text: &str) -> Result<Outcome, String> {
        let e = |e: anyhow::Error| e.to_string();
        let bob_jid = jid("bob");
        self.alice.chat(&bob_jid, text).map_err(e)?;
        // The ping follows the message to bob's client: when it answers,
        // the message has arrived, if it went through at all.
        let bob_full = self.bob.jid.clone();
        self.alice.ping(&bob_full).map_err(e)?;
        self.sent += 1;
        let logged = self
            .scene
            .ims
            .wait_logged("Jabber", &jid("alice"), &bob_jid, self.sent)
            .map_err(e)?;
        let got = self.bob.received_from(&jid("alice"));
        self.seen.outcome(&got, &self.alice_notices(), logged)
    }
}

#[test]
fn filter_scenarios_through_prosody_and_slixmpp() -> anyhow::Result<()> {
    let mut rig = XmppFilterRig::new()?;
    let dir = rig.scene.rig.subdir("scenarios")?;
    testing::run_all(&mut rig, &dir);
    // A rewritten body is escaped again: bob's client reads the markup
    // characters as text.
    let words = dir.join("badwords.txt");
    std::fs::write(&words, "darn\n")?;
    rig.configure(&format!("badwords_filename={}\n", words.display()))
        .map_err(anyhow::Error::msg)?;
    let sent = "darn <b>bold</b> & 'q' \"d\" ]]> &amp;";
    let outcome = rig.send(sent).map_err(anyhow::Error::msg)?;
    assert_eq!(
        outcome.delivered.as_deref(),
        Some("**** <b>bold</b> & 'q' \"d\" ]]> &amp;")
    );
    assert_eq!(
        outcome.logged,
        Logged::outgoing_message(false, "1 badwords;", sent)
    );
    Ok(())
}

/// A message body that makes the stanza larger than the proxy holds.
fn oversized(tag: &str) -> String {
    format!("{tag} {}", "x".repeat(MAX_STANZA + 1024))
}

#[test]
fn an_oversized_stanza_is_relayed_or_closed_as_configured_and_a_dtd_stops_inspection(
) -> anyhow::Result<()> {
    let since = now();
    let mut s = scene("jabber_protocol=on\n")?;
    s.server.register("dave", PASSWORD)?;
    let mut bob = s.remote("bob")?;
    let mut alice = s.local("alice")?;
    let (alice_jid, bob_jid, carol_jid) = (jid("alice"), jid("bob"), jid("carol"));
    let client = s.rig.client_ip.to_string();

    // uninspectable=relay (the default): bob gets it all, nothing more of
    // this connection is logged.
    alice.chat(&bob_jid, "before")?;
    bob.wait_received(&alice_jid, "before")?;
    let big = oversized("big");
    alice.chat(&bob_jid, &big)?;
    bob.wait_received(&alice_jid, &big)?;
    alice.chat(&bob_jid, "after, not inspected")?;
    bob.wait_received(&alice_jid, "after, not inspected")?;
    bob.chat(&alice.jid, "not logged either")?;
    alice.wait_received(&bob_jid, "not logged either")?;
    s.ims.wait_output(
        "Jabber: a <message> stanza longer than 256 KiB (more than XMPP servers accept): \
         too large to inspect; the rest of the connection is relayed without inspection or logging",
    )?;
    let relayed = "[IMSpector: inspection stopped: a <message> stanza longer than 256 KiB \
                   (more than XMPP servers accept): too large to inspect; the rest of the \
                   connection is relayed without inspection or logging]";
    assert_lines(
        &s.ims.wait_log("Jabber", &alice_jid, &bob_jid, 2)?,
        &client,
        since,
        &["1,1,0,,before", &format!("1,1,0,uninspectable;,{relayed}")],
    );

    // An entity-expansion bomb: never expanded, the stream relayed untouched;
    // prosody refuses the DTD and ends dave's stream.
    let mut dave = s.local("dave")?;
    dave.raw(
        "<!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;'>\
         <!ENTITY lol2 '&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;'>]>\
         <message to='bob@test.local' type='chat'><body>&lol2;</body></message>",
    )?;
    dave.wait_event("disconnected", |_| true)?;
    s.ims.wait_output(
        "Jabber: a DTD (<!DOCTYPE>) in an XMPP stream, which XMPP forbids (an entity-expansion \
         bomb?): not inspected; relaying the rest of this connection untouched",
    )?;
    assert!(!s.ims.log_file("Jabber", &jid("dave"), &bob_jid).exists());
    assert_eq!(bob.received_from(&jid("dave")), Vec::<String>::new());
    // The daemon goes on: a new session is inspected and logged.
    let mut carol = s.local("carol")?;
    carol.chat(&bob_jid, "carol is logged")?;
    bob.wait_received(&carol_jid, "carol is logged")?;
    assert_lines(
        &s.ims.wait_log("Jabber", &carol_jid, &bob_jid, 1)?,
        &client,
        since,
        &["1,1,0,,carol is logged"],
    );
    assert_eq!(s.ims.wait_log("Jabber", &alice_jid, &bob_jid, 2)?.len(), 2);
    drop((alice, carol));

    // uninspectable=close (read at start): carol's connection ends, and bob
    // gets nothing of it.
    s.ims.process.signal(nix::sys::signal::Signal::SIGTERM)?;
    s.ims.process.wait_exit()?;
    s.ims = Imspector::start(
        &s.rig.gateway,
        &s.rig.subdir("ims-close")?,
        "jabber_protocol=on\nuninspectable=close\n",
    )?;
    let mut carol = s.local("carol")?;
    carol.chat(&bob_jid, &oversized("too big"))?;
    s.ims
        .wait_output("too large to inspect; the connection is closed")?;
    carol.wait_event("disconnected", |_| true)?;
    let closed = "[IMSpector: inspection stopped: a <message> stanza longer than 256 KiB \
                  (more than XMPP servers accept): too large to inspect; the connection is closed]";
    assert_lines(
        &s.ims.wait_log("Jabber", &carol_jid, &bob_jid, 1)?,
        &client,
        since,
        &[&format!("1,1,1,uninspectable;,{closed}")],
    );
    bob.ping(DOMAIN)?;
    assert_eq!(bob.received_from(&carol_jid), vec!["carol is logged"]);
    Ok(())
}
