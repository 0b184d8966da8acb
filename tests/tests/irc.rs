//! IRC end to end: real ngircd, real ii clients, real iptables REDIRECT rules,
//! the imspector binary in the gateway namespace.

use std::net::IpAddr;

use imspector_e2e::imspector::{assert_lines, now};
use imspector_e2e::irc::{Ii, Ngircd};
use imspector_e2e::{wait, Imspector, Rig};

const PORT: u16 = 16667;

struct IrcScene {
    rig: Rig,
    _server: Ngircd,
    ims: Imspector,
}

fn scene(config: &str) -> anyhow::Result<IrcScene> {
    let rig = Rig::new()?;
    rig.redirect(&[6667], PORT)?;
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, config)?;
    let server = Ngircd::start(&rig.server, &rig.subdir("ngircd")?)?;
    Ok(IrcScene {
        rig,
        _server: server,
        ims,
    })
}

#[test]
fn private_and_channel_chat_is_relayed_unchanged_and_logged() -> anyhow::Result<()> {
    let since = now();
    let s = scene("irc_protocol=on\n")?;
    let dir = s.rig.subdir("clients")?;
    let bob = Ii::remote(&s.rig, &dir, "bob")?;
    let alice = Ii::local(&s.rig, &dir, IpAddr::V4(s.rig.server_ip), "Alice")?;

    alice.msg("bob", "hello bob, from alice: ünïcödé, commas, and 😀")?;
    bob.wait_received(
        "Alice",
        "Alice",
        "hello bob, from alice: ünïcödé, commas, and 😀",
    )?;
    bob.msg("Alice", "hi alice")?;
    alice.wait_received("bob", "bob", "hi alice")?;
    alice.command("/NOTICE bob :a notice")?;
    alice.command("/PRIVMSG bob :\u{1}ACTION waves\u{1}")?;
    alice.command("/PRIVMSG bob :\u{1}DCC SEND report.pdf 167772162 5000 123456\u{1}")?;

    alice.join("#test")?;
    bob.join("#test")?;
    alice.say("#test", "hello channel")?;
    bob.wait_received("#test", "Alice", "hello channel")?;
    bob.say("#test", "hello alice")?;
    alice.wait_received("#test", "bob", "hello alice")?;
    alice.command("/PRIVMSG bob,#test :to both")?;
    bob.wait_received("#test", "Alice", "to both")?;

    let client = s.rig.client_ip.to_string();
    let private = s.ims.wait_log("IRC", "alice", "bob", 6)?;
    assert_lines(
        &private,
        &client,
        since,
        &[
            "1,1,0,,hello bob, from alice: ünïcödé, commas, and 😀",
            "0,1,0,,hi alice",
            "1,1,0,,a notice",
            "1,1,0,,/me waves",
            "1,2,0,,report.pdf 123456 bytes",
            "1,1,0,,to both",
        ],
    );
    let channel = s.ims.wait_log("IRC", "alice", "#test", 3)?;
    assert_lines(
        &channel,
        &client,
        since,
        &[
            "1,1,0,,hello channel",
            "0,1,0,,bob: hello alice",
            "1,1,0,,to both",
        ],
    );
    Ok(())
}

#[test]
fn local_id_follows_nick_changes() -> anyhow::Result<()> {
    let since = now();
    let s = scene("irc_protocol=on\n")?;
    let dir = s.rig.subdir("clients")?;
    let bob = Ii::remote(&s.rig, &dir, "bob")?;
    let alice = Ii::local(&s.rig, &dir, IpAddr::V4(s.rig.server_ip), "alice")?;
    alice.msg("bob", "before")?;
    bob.wait_received("alice", "alice", "before")?;
    alice.command("/n carol")?;
    // Bob can write to carol once the server has renamed alice.
    wait::until("the server to rename alice", || {
        wait::read(&alice.server_dir.join("out"))
            .contains("changed nick to \"carol\"")
            .then_some(())
    })?;
    bob.msg("carol", "after")?;
    alice.wait_received("bob", "bob", "after")?;
    let client = s.rig.client_ip.to_string();
    assert_lines(
        &s.ims.wait_log("IRC", "alice", "bob", 1)?,
        &client,
        since,
        &["1,1,0,,before"],
    );
    assert_lines(
        &s.ims.wait_log("IRC", "carol", "bob", 1)?,
        &client,
        since,
        &["0,1,0,,after"],
    );
    Ok(())
}

#[test]
fn ipv6_clients_are_redirected_and_logged_with_brackets() -> anyhow::Result<()> {
    let since = now();
    let s = scene("irc_protocol=on\n")?;
    let dir = s.rig.subdir("clients")?;
    let bob = Ii::remote(&s.rig, &dir, "bob")?;
    let alice = Ii::local(&s.rig, &dir, IpAddr::V6(s.rig.server_ip6), "alice")?;
    alice.msg("bob", "over ipv6")?;
    bob.wait_received("alice", "alice", "over ipv6")?;
    let lines = s.ims.wait_log("IRC", "alice", "bob", 1)?;
    assert!(
        lines[0]
            .client
            .starts_with(&format!("[{}]:", s.rig.client_ip6)),
        "{lines:?}"
    );
    assert_lines(
        &lines,
        &s.rig.client_ip6.to_string(),
        since,
        &["1,1,0,,over ipv6"],
    );
    Ok(())
}

#[test]
fn squid_style_owner_redirect_of_a_local_process() -> anyhow::Result<()> {
    let since = now();
    let rig = Rig::new()?;
    // A local user on the gateway (as Squid would be), caught by the OUTPUT rule.
    let uid = nix::unistd::User::from_name("nobody")?
        .expect("user nobody")
        .uid
        .as_raw();
    rig.redirect_owner(uid, &[6667], PORT)?;
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, "irc_protocol=on\n")?;
    let _server = Ngircd::start(&rig.server, &rig.subdir("ngircd")?)?;
    let dir = rig.subdir("clients")?;
    let bob = Ii::remote(&rig, &dir, "bob")?;
    let local = Ii::start(
        &rig.gateway,
        &dir,
        IpAddr::V4(rig.server_ip),
        "proxied",
        Some(uid),
    )?;
    local.msg("bob", "through the owner rule")?;
    bob.wait_received("proxied", "proxied", "through the owner rule")?;
    let lines = ims.wait_log("IRC", "proxied", "bob", 1)?;
    // The client is the gateway itself, on its server-side address.
    assert_lines(
        &lines,
        &rig.server_ip.to_string().replace(".2", ".1"),
        since,
        &["1,1,0,,through the owner rule"],
    );
    Ok(())
}
