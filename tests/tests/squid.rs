//! imspector next to a real Squid in the gateway: clients use Squid as their
//! proxy and CONNECT to a real IRC server. Once with the owner-uid rules that
//! imspector-rules generates, applied for real; once with Squid chaining to
//! imspector's CONNECT listener as a parent. And imspector's own upstream
//! connections are never sent back into it.

use std::net::{IpAddr, SocketAddr};

use imspector_e2e::imspector::LogLine;
use imspector_e2e::irc::{chat_through_http_proxy, Ii, Ngircd};
use imspector_e2e::squid::{Squid, SQUID_PORT};
use imspector_e2e::{Imspector, Rig};

/// imspector with `config` and Squid with these snippets in the gateway, ngircd
/// and bob on the server side; `nick` in the client namespace says `text` to
/// bob with Squid as its proxy. Returns imspector's log of that conversation
/// and Squid's access log, once bob has the text.
fn chat_through_squid(
    rig: &Rig,
    config: &str,
    snippets: &[&str],
    nick: &'static str,
    text: &'static str,
) -> anyhow::Result<(Vec<LogLine>, String)> {
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, config)?;
    let client_net = format!("{}/24", rig.client_ip);
    let squid = Squid::start(&rig.gateway, &rig.subdir("squid")?, &client_net, snippets)?;
    let _server = Ngircd::start(&rig.server, &rig.subdir("ngircd")?)?;
    let bob = Ii::remote(rig, &rig.subdir("clients")?, "bob")?;
    let proxy = SocketAddr::from((rig.gateway_ip_towards_client(), SQUID_PORT));
    let server = SocketAddr::from((rig.server_ip, 6667));
    let status = rig
        .client
        .run(move || chat_through_http_proxy(proxy, server, nick, "bob", text))??;
    assert_eq!(status, "HTTP/1.1 200 Connection established\r\n");
    bob.wait_received(nick, nick, text)?;
    let lines = ims.wait_log("IRC", nick, "bob", 1)?;
    assert!(squid.access_log().contains(&format!("CONNECT {server}")));
    Ok((lines, squid.access_log()))
}

#[test]
fn squid_egress_is_redirected_by_the_generated_owner_rules() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    // imspector runs as its own user; its connections are skipped by owner.
    rig.apply_generated_rules(&[
        "--protocols",
        "irc",
        "--squid-user",
        "proxy",
        "--daemon-user",
        "nobody",
    ])?;
    let (lines, _) = chat_through_squid(
        &rig,
        "irc_protocol=on\nuser=nobody\ngroup=nogroup\n",
        &["allow-im-connect.conf", "owner-redirect.conf"],
        "dana",
        "via squid, redirected",
    )?;
    assert_eq!(lines[0].rest, "1,1,0,,via squid, redirected");
    // Squid's connection came from the gateway itself.
    assert!(
        ["127.0.0.1", &rig.gateway_ip_towards_server().to_string()].contains(&lines[0].client_ip()),
        "{lines:?}"
    );
    Ok(())
}

#[test]
fn squid_chains_to_the_connect_listener_as_a_parent() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    let (lines, access_log) = chat_through_squid(
        &rig,
        "irc_protocol=on\nhttp_port=16668\n",
        &["allow-im-connect.conf", "cache-peer.conf"],
        "erin",
        "via squid, chained",
    )?;
    assert_eq!(lines[0].rest, "1,1,0,,via squid, chained");
    assert_eq!(lines[0].client_ip(), "127.0.0.1");
    assert!(
        access_log.contains("FIRSTUP_PARENT/127.0.0.1"),
        "{access_log}"
    );
    Ok(())
}

#[test]
fn the_upstream_mark_keeps_imspector_out_of_its_own_redirect() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    // The worst case: the redirected user is the one imspector runs as (root
    // here), so only the mark tells imspector's own connections apart.
    rig.apply_generated_rules(&[
        "--protocols",
        "irc",
        "--squid-user",
        "root",
        "--mark",
        "16667",
    ])?;
    let ims = Imspector::start(
        &rig.gateway,
        &rig.subdir("ims")?,
        "irc_protocol=on\nupstream_mark=16667\n",
    )?;
    let _server = Ngircd::start(&rig.server, &rig.subdir("ngircd")?)?;
    let dir = rig.subdir("clients")?;
    let bob = Ii::remote(&rig, &dir, "bob")?;
    // A local root process (ii) on the gateway is redirected to imspector...
    let local = Ii::start(
        &rig.gateway,
        &dir,
        IpAddr::V4(rig.server_ip),
        "root-user",
        None,
    )?;
    local.msg("bob", "no loop")?;
    // ...and imspector's marked connection reaches the real server.
    bob.wait_received("root-user", "root-user", "no loop")?;
    let lines = ims.wait_log("IRC", "root-user", "bob", 1)?;
    assert_eq!(lines[0].rest, "1,1,0,,no loop");
    assert!(!ims.process.output().contains("would loop"));
    Ok(())
}
