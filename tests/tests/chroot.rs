//! `chroot_dir` for a site without systemd: the daemon, started as root,
//! changes its root directory once it has read its configuration, and from
//! then on logs, reads its lists and re-reads its configuration inside it.

use std::net::IpAddr;
use std::path::Path;

use imspector_e2e::irc::{Ii, Ngircd};
use imspector_e2e::{Imspector, Rig};

const PORT: u16 = 16667;

/// The line of `name` in the host's passwd or group file.
fn entry(file: &str, name: &str) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let line = text
        .lines()
        .find(|l| l.split(':').next() == Some(name))
        .unwrap_or_else(|| panic!("{name} is not in {file}"));
    format!("{line}\n")
}

#[test]
fn a_chrooted_daemon_logs_and_reloads_inside_its_directory() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    rig.redirect(&[6667], PORT)?;
    let _server = Ngircd::start(&rig.server, &rig.subdir("ngircd")?)?;
    let dir = rig.subdir("ims")?;
    let jail = std::fs::canonicalize(rig.subdir("jail")?)?;
    std::fs::create_dir_all(jail.join("etc"))?;
    std::fs::write(jail.join("etc/passwd"), entry("/etc/passwd", "nobody"))?;
    std::fs::write(jail.join("etc/group"), entry("/etc/group", "nogroup"))?;
    std::fs::write(jail.join("badwords.txt"), "rack\n")?;
    let config = format!(
        "irc_protocol=on\nuser=nobody\ngroup=nogroup\nchroot_dir={}\n\
         file_logging_dir=/logs\nbadwords_filename=/badwords.txt\n",
        jail.display()
    );
    let mut ims = Imspector::start(&rig.gateway, &dir, &config)?;
    ims.log_dir = jail.join("logs");
    let pid = ims.process.pid();
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/root"))?, jail);

    let clients = rig.subdir("clients")?;
    let bob = Ii::remote(&rig, &clients, "bob")?;
    let alice = Ii::local(&rig, &clients, IpAddr::V4(rig.server_ip), "alice")?;
    alice.msg("bob", "the smoothie is in the rack")?;
    bob.wait_received("alice", "alice", "the smoothie is in the ****")?;
    let logged = ims.wait_logged("IRC", "alice", "bob", 1)?;
    assert_eq!(
        (logged.data.as_str(), logged.categories.as_str()),
        ("the smoothie is in the rack", "1 badwords;")
    );
    let host_side = Path::new("/logs/IRC/alice/bob");
    assert!(!host_side.exists(), "logged outside the chroot");

    // SIGHUP re-reads the configuration at the same path, inside the chroot.
    let inside = jail.join(dir.strip_prefix("/")?);
    std::fs::create_dir_all(&inside)?;
    let reloaded = config.replace("badwords_filename=/badwords.txt\n", "");
    std::fs::write(inside.join("imspector.conf"), &reloaded)?;
    ims.process.signal(nix::sys::signal::Signal::SIGHUP)?;
    ims.wait_output("SIGHUP: configuration reloaded")?;
    alice.msg("bob", "back to the rack")?;
    bob.wait_received("alice", "alice", "back to the rack")?;
    Ok(())
}
