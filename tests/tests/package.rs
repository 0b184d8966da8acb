//! The Debian package as an admin meets it, on this machine (as root):
//! `scripts/package` builds it, `dpkg -i` installs it, the system user and
//! its directories exist, `man imspector` shows the page, the daemon checks
//! the shipped configuration as the unit's ExecStartPre does, systemd accepts
//! the sandboxed unit and rates it as docs/security.md says, and `dpkg -r`
//! removes the programs but leaves the logs. Then the machine is put back.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use imspector_e2e::imspector::target_dir;

const UNIT: &str = "/lib/systemd/system/imspector.service";
const DIRS: [&str; 3] = [
    "/var/log/imspector",
    "/var/spool/imspector",
    "/var/lib/imspector",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Run a command, failing the test with its output unless it succeeds.
fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed for this test: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "imspector"])
        .output()
        .is_ok_and(|o| stdout(&o).contains("ok installed"))
}

/// What was on the machine before, so that the test removes only its own.
struct Restore {
    had_user: bool,
    had_dirs: Vec<bool>,
}

impl Restore {
    fn take() -> Self {
        Restore {
            had_user: nix::unistd::User::from_name("imspector")
                .ok()
                .flatten()
                .is_some(),
            had_dirs: DIRS.iter().map(|d| Path::new(d).exists()).collect(),
        }
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "imspector"]).output();
        if !self.had_user {
            let _ = Command::new("deluser")
                .args(["--system", "imspector"])
                .output();
            let _ = Command::new("delgroup")
                .args(["--system", "imspector"])
                .output();
        }
        for (dir, had) in DIRS.iter().zip(&self.had_dirs) {
            if !had {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// Build the package from the binaries this test run has (no release build).
fn build_package(out: &Path) -> PathBuf {
    let dir = target_dir();
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(other) => other.to_string(),
        None => panic!("no profile in {}", dir.display()),
    };
    let script = workspace().join("scripts/package");
    let out_arg = out.to_str().expect("utf-8 path");
    run(
        "bash",
        &[
            script.to_str().expect("utf-8 path"),
            "--profile",
            &profile,
            "--no-build",
            "--fast",
            "-o",
            out_arg,
        ],
    );
    let deb = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("scripts/package made no .deb");
    deb
}

#[test]
fn the_package_installs_checks_its_configuration_and_leaves_the_logs_when_removed() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "installing a package needs root"
    );
    if installed() {
        // Left by an earlier run that was killed before it could clean up.
        run("dpkg", &["--purge", "imspector"]);
    }
    assert!(
        !Path::new("/etc/imspector/imspector.conf").exists(),
        "/etc/imspector/imspector.conf exists and belongs to no package: the test would replace it"
    );
    let restore = Restore::take();
    let out = tempfile::tempdir().unwrap();
    let deb = build_package(out.path());
    run("dpkg", &["-i", deb.to_str().unwrap()]);

    // The system user and its directories.
    let user = nix::unistd::User::from_name("imspector")
        .unwrap()
        .expect("the user imspector is made on install");
    assert!(user.uid.as_raw() < 1000, "not a system user: {user:?}");
    assert_eq!(user.shell, Path::new("/usr/sbin/nologin"));
    for dir in DIRS {
        let meta = std::fs::metadata(dir).unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert_eq!(
            (meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777),
            (user.uid.as_raw(), user.gid.as_raw(), 0o750),
            "{dir}"
        );
    }
    // The configuration (it may hold passwords) is readable by imspector's group only.
    let conf = std::fs::metadata("/etc/imspector/imspector.conf").unwrap();
    assert_eq!(
        (conf.uid(), conf.gid(), conf.permissions().mode() & 0o777),
        (0, user.gid.as_raw(), 0o640)
    );
    let conffiles = stdout(&run("dpkg-query", &["-W", "-f=${Conffiles}", "imspector"]));
    for name in [
        "imspector.conf",
        "badwords.txt",
        "acl.txt",
        "webchat-rules.txt",
    ] {
        assert!(
            conffiles.contains(&format!(" /etc/imspector/{name} ")),
            "{name} is not a conffile: {conffiles}"
        );
    }

    // Enabled, not started: there is no pid file until the admin starts it.
    let wants = Path::new("/etc/systemd/system/multi-user.target.wants/imspector.service");
    assert_eq!(
        std::fs::read_link(wants).expect("the unit is enabled"),
        Path::new(UNIT)
    );
    assert!(!Path::new("/run/imspector/imspector.pid").exists());

    // The pages and the completions.
    let page = |args: &[&str]| {
        let out = Command::new("man")
            .args(args)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .expect("man is needed for this test (apt-get install man-db)");
        assert!(out.status.success(), "man {args:?}: {out:?}");
        stdout(&out)
    };
    let daemon = page(&["imspector"]);
    assert!(
        daemon.contains("Transparent proxy that logs and filters instant-messenger traffic")
            && daemon.contains("--check-config")
            && daemon.contains("imspector-ca(8)"),
        "{daemon}"
    );
    let conf_page = page(&["5", "imspector.conf"]);
    assert!(
        conf_page.contains("file_logging_dir") && conf_page.contains("Default: 16667."),
        "{conf_page}"
    );
    assert!(page(&["imspector-rules-generate"]).contains("--squid-user"));
    let completion = run(
        "bash",
        &[
            "-c",
            "source /usr/share/bash-completion/completions/imspector-rules && complete -p imspector-rules",
        ],
    );
    assert!(stdout(&completion).contains("imspector-rules"));

    // The shipped configuration passes, checked as the unit checks it.
    let check = run(
        "runuser",
        &[
            "-u",
            "imspector",
            "--",
            "/usr/sbin/imspector",
            "-c",
            "/etc/imspector/imspector.conf",
            "--check-config",
        ],
    );
    assert_eq!(
        stdout(&check),
        "/etc/imspector/imspector.conf: configuration OK\n"
    );

    // systemd accepts the unit, and rates its sandbox as docs/security.md says.
    let verify = run("systemd-analyze", &["verify", UNIT]);
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        !complaints.contains("imspector.service"),
        "systemd-analyze verify: {complaints}"
    );
    let security = run("systemd-analyze", &["security", "--offline=true", UNIT]);
    let rating = stdout(&security);
    let figure = rating
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for imspector.service: ")
                .nth(1)
        })
        .expect("an exposure figure")
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let exposure: f64 = figure.parse().unwrap();
    assert!(exposure < 2.0, "exposure {exposure}:\n{rating}");
    let docs = std::fs::read_to_string(workspace().join("docs/security.md")).unwrap();
    assert!(
        docs.contains(&format!("exposure level of **{figure}**")),
        "docs/security.md does not give the measured exposure {figure}"
    );

    // A day of logs, then removal: the programs go, the logs stay.
    let day = Path::new("/var/log/imspector/IRC/alice/#chan/2026-12-01");
    std::fs::create_dir_all(day.parent().unwrap()).unwrap();
    std::fs::write(day, "10.0.0.4:5012,1764547200,1,1,0,,hello\n").unwrap();
    run("dpkg", &["-r", "imspector"]);
    assert!(!Path::new("/usr/sbin/imspector").exists());
    assert!(!Path::new("/usr/share/man/man8/imspector.8.gz").exists());
    assert_eq!(
        std::fs::read_to_string(day).unwrap(),
        "10.0.0.4:5012,1764547200,1,1,0,,hello\n"
    );
    // Removal keeps the configuration, as Debian does until a purge.
    assert!(Path::new("/etc/imspector/imspector.conf").exists());
    drop(restore);
    assert!(!installed());
    assert!(!Path::new("/etc/imspector/imspector.conf").exists());
}
