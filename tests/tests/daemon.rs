//! The daemon as an admin runs it: in the background with a pid file and a
//! lower-privileged user, the embedded default, signals.

use std::net::IpAddr;

use imspector_e2e::irc::{Ii, Ngircd};
use imspector_e2e::{imspector, wait, Imspector, Rig};
use nix::sys::signal::Signal;

const PORT: u16 = 16667;

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// The real uid of a process, from /proc.
fn uid_of(pid: i32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn background_daemon_with_pid_file_user_drop_and_signals() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    rig.redirect(&[6667], PORT)?;
    let _server = Ngircd::start(&rig.server, &rig.subdir("ngircd")?)?;
    let dir = rig.subdir("ims")?;
    let pid_file = dir.join("imspector.pid");
    let log_dir = dir.join("logs");
    let config = dir.join("imspector.conf");
    std::fs::write(
        &config,
        format!(
            "irc_protocol=on\nuser=nobody\ngroup=nogroup\npidfilename={}\nfile_logging_dir={}\n",
            pid_file.display(),
            log_dir.display()
        ),
    )?;
    let start = || {
        rig.gateway
            .command(imspector::binary().to_str().unwrap())
            .arg("-c")
            .arg(&config)
            .output()
    };
    // The foreground process returns at once; the daemon lives on.
    let first = start()?;
    assert!(first.status.success(), "{first:?}");
    let pid: i32 = wait::until("the pid file", || wait::read(&pid_file).trim().parse().ok())?;
    assert!(alive(pid));
    let nobody = nix::unistd::User::from_name("nobody")?
        .unwrap()
        .uid
        .as_raw();
    wait::until("the daemon to drop to nobody", || {
        (uid_of(pid) == nobody).then_some(())
    })?;

    // A second start is refused while the first runs.
    let second = start()?;
    assert_eq!(second.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!("already running as pid {pid}")),
        "{stderr}"
    );

    let clients = rig.subdir("clients")?;
    let bob = Ii::remote(&rig, &clients, "bob")?;
    let alice = Ii::local(&rig, &clients, IpAddr::V4(rig.server_ip), "alice")?;
    alice.msg("bob", "before the reload")?;
    bob.wait_received("alice", "alice", "before the reload")?;

    // SIGHUP reloads without dropping the open connection.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGHUP)?;
    alice.msg("bob", "after the reload")?;
    bob.wait_received("alice", "alice", "after the reload")?;
    assert!(alive(pid));

    // SIGTERM: every event is written, then the daemon exits.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM)?;
    wait::until("the daemon to exit", || (!alive(pid)).then_some(()))?;
    let date = chrono::Local::now().format("%Y-%m-%d").to_string();
    let log = wait::read(&log_dir.join("IRC/alice/bob").join(date));
    let rest: Vec<&str> = log
        .lines()
        .map(|l| l.splitn(3, ',').nth(2).unwrap())
        .collect();
    assert_eq!(
        rest,
        ["1,1,0,,before the reload", "1,1,0,,after the reload"]
    );
    Ok(())
}

#[test]
fn embedded_default_needs_no_config_and_sigterm_exits_zero() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    rig.redirect(&[6667], PORT)?;
    let _server = Ngircd::start(&rig.server, &rig.subdir("ngircd")?)?;
    let mut ims = Imspector::start_embedded(&rig.gateway, &rig.subdir("ims")?)?;
    ims.wait_output("using the embedded default")?;
    let clients = rig.subdir("clients")?;
    let bob = Ii::remote(&rig, &clients, "bob")?;
    let alice = Ii::local(&rig, &clients, IpAddr::V4(rig.server_ip), "alice")?;
    alice.msg("bob", "no config needed")?;
    bob.wait_received("alice", "alice", "no config needed")?;
    let lines = ims.wait_log("IRC", "alice", "bob", 1)?;
    assert_eq!(lines[0].rest, "1,1,0,,no config needed");
    // With -d, events are echoed to stderr too.
    ims.wait_output("alice -> bob: type 1 filtered 0 [] no config needed")?;
    ims.process.signal(Signal::SIGTERM)?;
    assert_eq!(ims.process.wait_exit()?, Some(0));
    assert!(ims
        .process
        .output()
        .contains("stopped; every event written"));
    Ok(())
}

#[test]
fn a_daemon_that_fails_after_the_fork_fails_the_command_that_started_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("imspector.conf");
    // The user is looked up only when privileges are dropped, after the fork.
    std::fs::write(
        &config,
        format!(
            "irc_protocol=on\nport=0\nuser=no-such-user-imspector\npidfilename={}\n",
            dir.path().join("imspector.pid").display()
        ),
    )?;
    let out = std::process::Command::new(imspector::binary())
        .arg("-c")
        .arg(&config)
        .output()?;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    Ok(())
}

/// A new IRC connection from the client through the gateway: whether the
/// gateway closes it rather than relay the server's welcome.
fn closed_at_once(rig: &Rig) -> anyhow::Result<bool> {
    use std::io::{Read, Write};
    let server = std::net::SocketAddr::from((rig.server_ip, 6667));
    let closed = rig.client.run(move || -> std::io::Result<bool> {
        let mut stream = std::net::TcpStream::connect(server)?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(20)))?;
        // Refused at once, the write may already fail; the read says it.
        let _ = stream.write_all(b"NICK probe\r\nUSER probe 0 * :probe\r\n");
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => Ok(true),
            Ok(_) => Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(true),
            Err(e) => Err(e),
        }
    })??;
    Ok(closed)
}

#[test]
fn sighup_applies_protocols_and_retention_and_names_what_needs_a_restart() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    rig.redirect(&[6667], PORT)?;
    let _server = Ngircd::start(&rig.server, &rig.subdir("ngircd")?)?;
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, "irc_protocol=on\n")?;
    let clients = rig.subdir("clients")?;
    let bob = Ii::remote(&rig, &clients, "bob")?;
    let alice = Ii::local(&rig, &clients, IpAddr::V4(rig.server_ip), "alice")?;
    alice.msg("bob", "before the reload")?;
    bob.wait_received("alice", "alice", "before the reload")?;

    // A bad value anywhere refuses the whole file, naming its line.
    let refused = ims.reload("irc_protocol=off\nport=abc\n").unwrap_err();
    assert!(
        refused
            .to_string()
            .contains(&format!("{}:2: port: \"abc\"", ims.config.display())),
        "{refused}"
    );
    assert!(!closed_at_once(&rig)?, "IRC must still be inspected");

    ims.reload("irc_protocol=off\nport=16668\nretention_days=30\n")?;
    let conf = ims.config.display();
    for line in [
        format!("reload: {conf}:1: irc_protocol changed; in force now"),
        format!("reload: {conf}:2: port changed; takes effect after a restart"),
        format!("reload: {conf}:3: retention_days changed; in force now"),
        "retention (30 days): deleted events before".to_string(),
    ] {
        ims.wait_output(&line)?;
    }
    // The open connection goes on; a new one to a protocol now off is closed.
    alice.msg("bob", "after the reload")?;
    bob.wait_received("alice", "alice", "after the reload")?;
    assert!(closed_at_once(&rig)?);
    ims.wait_output("port 6667 is not an enabled protocol; closed")?;
    let lines = ims.wait_log("IRC", "alice", "bob", 2)?;
    assert_eq!(lines[1].rest, "1,1,0,,after the reload");
    Ok(())
}

#[test]
fn sighup_turns_the_syslog_sink_on_without_a_restart() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    rig.redirect(&[6667], PORT)?;
    let _server = Ngircd::start(&rig.server, &rig.subdir("ngircd")?)?;
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, "irc_protocol=on\n")?;
    let loghost = rig
        .gateway
        .run(|| std::net::UdpSocket::bind("127.0.0.1:0"))??;
    loghost.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let port = loghost.local_addr()?.port();
    ims.reload(&format!(
        "irc_protocol=on\nsyslog_logging=on\nsyslog_server=udp://127.0.0.1:{port}\n"
    ))?;
    let conf = ims.config.display();
    ims.wait_output(&format!(
        "reload: {conf}:2: syslog_logging changed; in force now"
    ))?;

    let clients = rig.subdir("clients")?;
    let bob = Ii::remote(&rig, &clients, "bob")?;
    let alice = Ii::local(&rig, &clients, IpAddr::V4(rig.server_ip), "alice")?;
    alice.msg("bob", "now also to syslog")?;
    bob.wait_received("alice", "alice", "now also to syslog")?;
    let mut datagram = [0u8; 2048];
    let n = loghost.recv(&mut datagram)?;
    let line = String::from_utf8_lossy(&datagram[..n]);
    assert!(
        line.contains("protocol=IRC") && line.contains("now also to syslog"),
        "{line}"
    );
    // The file log goes on as before.
    let lines = ims.wait_log("IRC", "alice", "bob", 1)?;
    assert_eq!(lines[0].rest, "1,1,0,,now also to syslog");
    Ok(())
}
