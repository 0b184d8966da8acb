//! XMPP end to end: a real prosody (plain streams, a MUC service, HTTP file
//! sharing), real slixmpp clients and sendxmpp, iptables REDIRECT, the
//! imspector binary in the gateway namespace.

use imspector_e2e::imspector::{assert_lines, now};
use imspector_e2e::xmpp::{
    sendxmpp, Encryption, Prosody, Slixmpp, Transport, DOMAIN, ROOMS, UPLOAD,
};
use imspector_e2e::{Imspector, Rig};

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
