//! The daemon as the packaged unit runs it: started as an unprivileged user,
//! with an empty capability bounding set and no_new_privs, in the background
//! with its pid file. It serves and logs a chat, and every system call it
//! makes is one that the unit's `SystemCallFilter=` allows (strace counts
//! them, systemd-analyze expands the groups), so the filter never turns a call
//! of the daemon into EPERM.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::Command;

use imspector_e2e::irc::{Ii, Ngircd};
use imspector_e2e::process::Process;
use imspector_e2e::{imspector, wait, Rig};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{Group, Pid, User};

const PORT: u16 = 16667;

/// The system calls the unit's `SystemCallFilter=` lines allow.
fn allowed_by_unit() -> BTreeSet<String> {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/imspector.service"),
    )
    .unwrap();
    let filters: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
        .collect();
    assert_eq!(filters, ["@system-service"], "the test knows this filter");
    let out = Command::new("systemd-analyze")
        .args(["syscall-filter", "--no-pager"])
        .output()
        .expect("systemd-analyze is needed for this test (apt-get install systemd)");
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(group) = line.strip_prefix('@') {
            current = Some(format!("@{group}"));
        } else if !line.starts_with(' ') {
            current = None;
        } else if let Some(group) = &current {
            let item = line.trim();
            if !item.starts_with('#') {
                groups.entry(group.clone()).or_default().push(item.into());
            }
        }
    }
    let mut allowed = BTreeSet::new();
    let mut todo = vec!["@system-service".to_string()];
    while let Some(group) = todo.pop() {
        for item in &groups[&group] {
            if item.starts_with('@') {
                todo.push(item.clone());
            } else {
                allowed.insert(item.clone());
            }
        }
    }
    allowed
}

/// The system calls in an `strace -c` summary.
fn traced(summary: &str) -> BTreeSet<String> {
    summary
        .lines()
        .skip_while(|l| !l.starts_with("------"))
        .skip(1)
        .take_while(|l| !l.starts_with("------"))
        .filter_map(|l| l.split_whitespace().last())
        .map(str::to_string)
        .collect()
}

/// `dir/logs` and `dir/run`, which nobody may write, and `dir/imspector.conf`
/// with `options` and that log directory.
fn config_for_nobody(dir: &Path, options: &str) -> anyhow::Result<PathBuf> {
    let nobody = User::from_name("nobody")?.expect("user nobody");
    let nogroup = Group::from_name("nogroup")?.expect("group nogroup");
    for sub in ["logs", "run"] {
        std::fs::create_dir(dir.join(sub))?;
        chown(
            dir.join(sub),
            Some(nobody.uid.as_raw()),
            Some(nogroup.gid.as_raw()),
        )?;
    }
    let config = dir.join("imspector.conf");
    let logs = dir.join("logs");
    std::fs::write(
        &config,
        format!("{options}file_logging_dir={}\n", logs.display()),
    )?;
    Ok(config)
}

/// `setpriv` in the gateway, as nobody with no groups, the capability flags
/// `caps` and no_new_privs, ready for the program to run.
fn as_nobody(rig: &Rig, caps: &[&str]) -> anyhow::Result<Command> {
    let nobody = User::from_name("nobody")?.expect("user nobody");
    let nogroup = Group::from_name("nogroup")?.expect("group nogroup");
    let mut command = rig.gateway.command("setpriv");
    command
        .arg(format!("--reuid={}", nobody.uid))
        .arg(format!("--regid={}", nogroup.gid))
        .arg("--clear-groups")
        .args(caps)
        .arg("--no-new-privs");
    Ok(command)
}

#[test]
fn unprivileged_from_the_start_the_daemon_logs_within_the_units_system_call_filter(
) -> anyhow::Result<()> {
    let allowed = allowed_by_unit();
    let rig = Rig::new()?;
    rig.redirect(&[6667], PORT)?;
    let _server = Ngircd::start(&rig.server, &rig.subdir("ngircd")?)?;
    let dir = rig.subdir("ims")?;
    let pid_file = dir.join("run/imspector.pid");
    let options = format!("irc_protocol=on\npidfilename={}\n", pid_file.display());
    let config = config_for_nobody(&dir, &options)?;
    let summary = dir.join("syscalls");
    let mut command = as_nobody(&rig, &["--inh-caps=-all", "--bounding-set=-all"])?;
    command
        .args(["strace", "-f", "-c", "-o"])
        .arg(&summary)
        .arg(imspector::binary())
        .arg("-c")
        .arg(&config);
    let mut strace = Process::spawn("strace", command, dir.join("strace.out"))?;
    let pid: i32 = wait::until("the pid file", || wait::read(&pid_file).trim().parse().ok())
        .map_err(|e| anyhow::anyhow!("{e}: {}", strace.output()))?;

    let clients = rig.subdir("clients")?;
    let bob = Ii::remote(&rig, &clients, "bob")?;
    let alice = Ii::local(&rig, &clients, IpAddr::V4(rig.server_ip), "alice")?;
    alice.msg("bob", "inside the sandbox")?;
    bob.wait_received("alice", "alice", "inside the sandbox")?;
    let date = chrono::Local::now().format("%Y-%m-%d").to_string();
    let log = dir.join("logs/IRC/alice/bob").join(date);
    wait::until("the logged line", || {
        wait::read(&log)
            .ends_with(",1,1,0,,inside the sandbox\n")
            .then_some(())
    })?;

    kill(Pid::from_raw(pid), Signal::SIGTERM)?;
    assert_eq!(strace.wait_exit()?, Some(0), "{}", strace.output());
    let used = traced(&wait::read(&summary));
    assert!(
        used.contains("accept4") && used.contains("setsid"),
        "{used:?}"
    );
    let outside: Vec<&String> = used.difference(&allowed).collect();
    assert!(
        outside.is_empty(),
        "system calls outside SystemCallFilter=@system-service: {outside:?}"
    );
    Ok(())
}

/// `upstream_mark` under the unit with the package's net-admin.conf drop-in:
/// CAP_NET_ADMIN alone (bounding, inheritable and ambient) is enough for the
/// marked upstream connection, and without it the connection is refused.
#[test]
fn with_upstream_mark_the_drop_ins_one_capability_is_enough() -> anyhow::Result<()> {
    let drop_in = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/net-admin.conf"),
    )?;
    assert!(
        drop_in.contains("\nCapabilityBoundingSet=CAP_NET_ADMIN\n")
            && drop_in.contains("\nAmbientCapabilities=CAP_NET_ADMIN\n"),
        "the test grants what the drop-in grants: {drop_in}"
    );
    let rig = Rig::new()?;
    rig.redirect(&[6667], PORT)?;
    // Count the marked packets that leave the gateway towards the server.
    rig.gateway.exec(
        "iptables",
        &[
            "-t", "mangle", "-A", "OUTPUT", "-p", "tcp", "--dport", "6667", "-m", "mark", "--mark",
            "16667",
        ],
    )?;
    let marked = || -> anyhow::Result<u64> {
        let table = rig
            .gateway
            .exec("iptables", &["-t", "mangle", "-nvx", "-L", "OUTPUT"])?;
        let rule = table.lines().nth(2).expect("the counting rule");
        Ok(rule.split_whitespace().next().unwrap_or("0").parse()?)
    };
    let _server = Ngircd::start(&rig.server, &rig.subdir("ngircd")?)?;
    let clients = rig.subdir("clients")?;
    let bob = Ii::remote(&rig, &clients, "bob")?;

    let run = |name: &str, caps: &[&str]| -> anyhow::Result<Process> {
        let dir = rig.subdir(name)?;
        let config = config_for_nobody(&dir, "irc_protocol=on\nupstream_mark=16667\n")?;
        let mut command = as_nobody(&rig, caps)?;
        command
            .arg(imspector::binary())
            .args(["-d", "-c"])
            .arg(&config);
        let daemon = Process::spawn("imspector", command, dir.join("imspector.out"))?;
        wait::until("imspector to listen", || {
            daemon.output().contains("listening on").then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}: {}", daemon.output()))?;
        Ok(daemon)
    };

    // Without the capability, SO_MARK is refused and nothing reaches the server.
    let daemon = run("without", &["--inh-caps=-all", "--bounding-set=-all"])?;
    // A client connects (it is never registered: the daemon cannot go on).
    let _connect = rig
        .client
        .command("bash")
        .args([
            "-c",
            &format!("exec 3<>/dev/tcp/{}/6667; sleep 1", rig.server_ip),
        ])
        .output()?;
    let refused = format!(
        "connection to {}:6667 failed: Operation not permitted",
        rig.server_ip
    );
    wait::until("the refused upstream connection", || {
        daemon.output().contains(&refused).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}: {}", daemon.output()))?;
    assert_eq!(marked()?, 0);
    drop(daemon);

    let daemon = run(
        "with",
        &[
            "--inh-caps=-all,+net_admin",
            "--ambient-caps=+net_admin",
            "--bounding-set=-all,+net_admin",
        ],
    )?;
    let carol = Ii::local(&rig, &clients, IpAddr::V4(rig.server_ip), "carol")?;
    carol.msg("bob", "marked on the way out")?;
    bob.wait_received("carol", "carol", "marked on the way out")?;
    assert!(marked()? > 0, "no marked packet left the gateway");
    drop(daemon);
    Ok(())
}
