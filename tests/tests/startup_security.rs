//! Start-up as root, attacked by the daemon's own user (nobody) that may write
//! the directory holding the pid file or the logs: nothing root does there can
//! be redirected onto another file; after the drop the daemon keeps no
//! capability it does not need and cannot regain any.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

use imspector_e2e::{imspector, wait, Rig};
use nix::sys::signal::Signal;

fn nobody() -> u32 {
    nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .uid
        .as_raw()
}

/// Run `ln -s target link` as nobody, as the attacker would.
fn plant_link(target: &Path, link: &Path) {
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={}", nobody()),
            &format!("--regid={}", nobody()),
            "--clear-groups",
            "ln",
            "-s",
        ])
        .arg(target)
        .arg(link)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// A directory the daemon's user owns, like a pid or log directory handed to it.
fn writable_by_nobody(rig: &Rig, name: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = rig.subdir(name)?;
    nix::unistd::chown(&dir, Some(nobody().into()), None)?;
    Ok(dir)
}

fn start(rig: &Rig, config: &Path) -> std::io::Result<Output> {
    rig.gateway
        .command(imspector::binary().to_str().unwrap())
        .arg("-c")
        .arg(config)
        .output()
}

fn status_field(pid: i32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line[field.len()..].trim().to_string()
}

#[test]
fn a_planted_pid_file_link_is_refused_not_followed() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    let dir = rig.subdir("root")?;
    let victim = dir.join("victim");
    std::fs::write(&victim, "root's secret\n")?;
    let run = writable_by_nobody(&rig, "run")?;
    let pid_file = run.join("imspector.pid");
    plant_link(&victim, &pid_file);
    let config = dir.join("imspector.conf");
    std::fs::write(
        &config,
        format!(
            "irc_protocol=on\nuser=nobody\ngroup=nogroup\npidfilename={}\nfile_logging_dir={}\n",
            pid_file.display(),
            dir.join("logs").display()
        ),
    )?;
    let out = start(&rig, &config)?;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(std::fs::read_to_string(&victim)?, "root's secret\n");
    assert!(std::fs::symlink_metadata(&pid_file)?
        .file_type()
        .is_symlink());
    Ok(())
}

#[test]
fn a_planted_log_directory_link_is_refused_not_chowned() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    let dir = rig.subdir("root")?;
    let root_dir = dir.join("etc-like");
    std::fs::create_dir(&root_dir)?;
    let logs_parent = writable_by_nobody(&rig, "var-log")?;
    let logs = logs_parent.join("imspector");
    plant_link(&root_dir, &logs);
    let config = dir.join("imspector.conf");
    std::fs::write(
        &config,
        format!(
            "irc_protocol=on\nuser=nobody\ngroup=nogroup\npidfilename={}\nfile_logging_dir={}\n",
            dir.join("imspector.pid").display(),
            logs.display()
        ),
    )?;
    let out = start(&rig, &config)?;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}: a symbolic link", logs.display())),
        "{stderr}"
    );
    assert_eq!(std::fs::metadata(&root_dir)?.uid(), 0);
    Ok(())
}

#[test]
fn the_dropped_daemon_keeps_only_the_capability_it_needs_and_removes_its_pid_file(
) -> anyhow::Result<()> {
    let rig = Rig::new()?;
    let dir = rig.subdir("ims")?;
    let pid_file = dir.join("imspector.pid");
    let config = dir.join("imspector.conf");
    std::fs::write(
        &config,
        format!(
            "irc_protocol=on\nuser=nobody\ngroup=nogroup\nupstream_mark=7\npidfilename={}\nfile_logging_dir={}\n",
            pid_file.display(),
            dir.join("logs").display()
        ),
    )?;
    let out = start(&rig, &config)?;
    assert!(out.status.success(), "{out:?}");
    let pid: i32 = wait::until("the pid file", || wait::read(&pid_file).trim().parse().ok())?;
    wait::until("the drop", || {
        (status_field(pid, "Uid:").split_whitespace().next() == Some(&nobody().to_string()))
            .then_some(())
    })?;
    // CAP_NET_ADMIN (bit 12) for SO_MARK, and nothing else, ever.
    assert_eq!(status_field(pid, "CapEff:"), "0000000000001000");
    assert_eq!(status_field(pid, "CapBnd:"), "0000000000001000");
    assert_eq!(status_field(pid, "NoNewPrivs:"), "1");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM)?;
    wait::until("the pid file to go", || (!pid_file.exists()).then_some(()))?;
    Ok(())
}

#[test]
fn check_config_warns_about_a_password_others_can_read() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("imspector.conf");
    std::fs::write(
        &config,
        "mysql_server=127.0.0.1\nmysql_database=imspector\nmysql_username=ims\nmysql_password=secret\n",
    )?;
    let check = || {
        Command::new(imspector::binary())
            .arg("--check-config")
            .arg("-c")
            .arg(&config)
            .output()
    };
    let warning = format!(
        "{} holds a database password and every user may read it (mode 644)",
        config.display()
    );
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    let out = check()?;
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&warning),
        "{out:?}"
    );
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o640))?;
    let out = check()?;
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("password"),
        "{out:?}"
    );
    Ok(())
}
