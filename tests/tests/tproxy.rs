//! TPROXY instead of REDIRECT: the rules imspector-rules generates for
//! `--mode tproxy`, applied for real, and the daemon's transparent listener.

use std::net::IpAddr;

use imspector_e2e::irc::{Ii, Ngircd};
use imspector_e2e::{Imspector, Rig};

#[test]
fn tproxy_rules_and_the_transparent_listener_carry_ipv4_and_ipv6_chat() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    rig.apply_generated_rules(&["--protocols", "irc", "--mode", "tproxy"])?;
    let ims = Imspector::start(
        &rig.gateway,
        &rig.subdir("ims")?,
        "irc_protocol=on\ntproxy=on\n",
    )?;
    let _server = Ngircd::start(&rig.server, &rig.subdir("ngircd")?)?;
    let dir = rig.subdir("clients")?;
    let bob = Ii::remote(&rig, &dir, "bob")?;
    let alice = Ii::local(&rig, &dir, IpAddr::V4(rig.server_ip), "alice")?;
    let carol = Ii::local(&rig, &dir, IpAddr::V6(rig.server_ip6), "carol")?;
    alice.msg("bob", "transparently over ipv4")?;
    carol.msg("bob", "transparently over ipv6")?;
    bob.wait_received("alice", "alice", "transparently over ipv4")?;
    bob.wait_received("carol", "carol", "transparently over ipv6")?;
    let v4 = ims.wait_log("IRC", "alice", "bob", 1)?;
    assert_eq!(v4[0].client_ip(), rig.client_ip.to_string());
    assert_eq!(v4[0].rest, "1,1,0,,transparently over ipv4");
    let v6 = ims.wait_log("IRC", "carol", "bob", 1)?;
    assert_eq!(v6[0].client_ip(), rig.client_ip6.to_string());
    assert_eq!(v6[0].rest, "1,1,0,,transparently over ipv6");
    Ok(())
}
