//! The daemon as the packaged unit runs it: started as an unprivileged user,
//! with an empty capability bounding set and no_new_privs, in the background
//! with its pid file. It serves and logs a chat, and every system call it
//! makes is one that the unit's `SystemCallFilter=` allows (strace counts
//! them, systemd-analyze expands the groups), so the filter never turns a call
//! of the daemon into EPERM.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::os::unix::fs::chown;
use std::path::Path;
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

#[test]
fn unprivileged_from_the_start_the_daemon_logs_within_the_units_system_call_filter(
) -> anyhow::Result<()> {
    let allowed = allowed_by_unit();
    let rig = Rig::new()?;
    rig.redirect(&[6667], PORT)?;
    let _server = Ngircd::start(&rig.server, &rig.subdir("ngircd")?)?;
    let dir = rig.subdir("ims")?;
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
    std::fs::write(
        &config,
        format!(
            "irc_protocol=on\npidfilename={}\nfile_logging_dir={}\n",
            dir.join("run/imspector.pid").display(),
            dir.join("logs").display()
        ),
    )?;
    let summary = dir.join("syscalls");
    let mut command = rig.gateway.command("setpriv");
    command
        .arg(format!("--reuid={}", nobody.uid))
        .arg(format!("--regid={}", nogroup.gid))
        .args(["--clear-groups", "--inh-caps=-all", "--bounding-set=-all"])
        .args(["--no-new-privs", "strace", "-f", "-c", "-o"])
        .arg(&summary)
        .arg(imspector::binary())
        .arg("-c")
        .arg(&config);
    let mut strace = Process::spawn("strace", command, dir.join("strace.out"))?;
    let pid_file = dir.join("run/imspector.pid");
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
