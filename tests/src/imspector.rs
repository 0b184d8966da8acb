//! The imspector binary of this workspace, running in a namespace.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use imspector::filter::testing::Logged;
use nix::sys::signal::Signal;

use crate::netns::Netns;
use crate::process::Process;
use crate::wait;

/// The daemon binary built from this workspace, checked once to be newer
/// than its sources.
pub fn binary() -> PathBuf {
    let path = workspace_binary("imspector");
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| assert_newer_than_sources(&path, &["proxy/src", "protocols/src"]));
    path
}

/// `cargo test` rebuilds the test crates, not the binaries they run: a daemon
/// older than a source file would test old code and pass or fail for nothing.
fn assert_newer_than_sources(binary: &Path, dirs: &[&str]) {
    let modified = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH)
    };
    let built = modified(binary);
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut pending: Vec<PathBuf> = dirs.iter().map(|dir| workspace.join(dir)).collect();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if modified(&path) > built {
                panic!(
                    "{} is older than {}: build the binaries again first (cargo build --workspace --bins)",
                    binary.display(),
                    path.display()
                );
            }
        }
    }
}

/// A binary of this workspace, next to the test binary's directory
/// (target/<profile>/NAME).
pub fn workspace_binary(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace's binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// target/<profile>: where a test binary's directory (deps) is, or where a
/// binary of the e2e crate itself (the demo) is.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().expect("target/<profile>");
    match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().expect("target/<profile>").to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

pub struct Imspector {
    pub process: Process,
    pub log_dir: PathBuf,
    pub config: PathBuf,
}

impl Imspector {
    /// Run `imspector -d -c CONFIG` in `ns`. The config gets
    /// `file_logging_dir` pointing into `dir` unless it sets one itself.
    pub fn start(ns: &Netns, dir: &Path, config_text: &str) -> anyhow::Result<Self> {
        let log_dir = dir.join("logs");
        let config = dir.join("imspector.conf");
        std::fs::write(&config, with_log_dir(config_text, &log_dir))?;
        let mut command = ns.command(binary().to_str().expect("utf-8 path"));
        command.arg("-d").arg("-c").arg(&config);
        Self::spawn(command, dir, log_dir, config)
    }

    /// Run `imspector -d` with no configuration file, in `dir`: the embedded
    /// default logs under `dir/imspector-logs`.
    pub fn start_embedded(ns: &Netns, dir: &Path) -> anyhow::Result<Self> {
        let mut command = ns.command(binary().to_str().expect("utf-8 path"));
        command.arg("-d").current_dir(dir);
        Self::spawn(command, dir, dir.join("imspector-logs"), PathBuf::new())
    }

    fn spawn(
        command: std::process::Command,
        dir: &Path,
        log_dir: PathBuf,
        config: PathBuf,
    ) -> anyhow::Result<Self> {
        let process = Process::spawn("imspector", command, dir.join("imspector.out"))?;
        let ims = Imspector {
            process,
            log_dir,
            config,
        };
        ims.wait_output("listening on")?;
        Ok(ims)
    }

    /// Wait until the daemon's diagnostics contain `text`.
    pub fn wait_output(&self, text: &str) -> anyhow::Result<()> {
        wait::until(&format!("imspector to print {text:?}"), || {
            self.process.output().contains(text).then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}; imspector printed:\n{}", self.process.output()))
    }

    /// Replace the configuration file with `config` (and the same log
    /// directory) and reload with SIGHUP. Fails with the daemon's complaint
    /// when it rejects the new configuration.
    pub fn reload(&self, config: &str) -> anyhow::Result<()> {
        std::fs::write(&self.config, with_log_dir(config, &self.log_dir))?;
        let reloads = || self.process.output().matches("SIGHUP:").count();
        let before = reloads();
        self.process.signal(Signal::SIGHUP)?;
        wait::until("the reload", || (reloads() > before).then_some(()))?;
        let output = self.process.output();
        match output.rsplit("SIGHUP:").next() {
            Some(last) if last.starts_with(" configuration reloaded") => Ok(()),
            Some(last) => anyhow::bail!("{}", last.lines().next().unwrap_or_default()),
            None => anyhow::bail!("no reload line"),
        }
    }

    /// Wait for the `n`th line (from 1) of a conversation's log and read it as
    /// the filters decided it.
    pub fn wait_logged(
        &self,
        protocol: &str,
        local: &str,
        remote: &str,
        n: usize,
    ) -> anyhow::Result<Logged> {
        let lines = self.wait_log(protocol, local, remote, n)?;
        let line = &lines[n - 1];
        line.logged()
            .ok_or_else(|| anyhow::anyhow!("unreadable log line {line:?}"))
    }

    /// Today's log file of one conversation, as in the original's layout.
    pub fn log_file(&self, protocol: &str, local: &str, remote: &str) -> PathBuf {
        let date = chrono::Local::now().format("%Y-%m-%d").to_string();
        self.log_dir
            .join(protocol)
            .join(local)
            .join(remote)
            .join(date)
    }

    /// Wait until that log has at least `count` lines and return them.
    pub fn wait_log(
        &self,
        protocol: &str,
        local: &str,
        remote: &str,
        count: usize,
    ) -> anyhow::Result<Vec<LogLine>> {
        let path = self.log_file(protocol, local, remote);
        wait::until(&format!("{count} lines in {}", path.display()), || {
            let lines: Vec<LogLine> = wait::read(&path).lines().map(LogLine::parse).collect();
            (lines.len() >= count).then_some(lines)
        })
        .map_err(|e| {
            anyhow::anyhow!(
                "{e}; log has:\n{}\nimspector printed:\n{}",
                wait::read(&path),
                self.process.output()
            )
        })
    }
}

/// One line of the file log: `client,timestamp,outgoing,type,filtered,categories,data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub client: String,
    pub timestamp: i64,
    /// `outgoing,type,filtered,categories,data`: the part a test can predict.
    pub rest: String,
}

impl LogLine {
    pub fn parse(line: &str) -> Self {
        let mut parts = line.splitn(3, ',');
        let client = parts.next().unwrap_or_default().to_string();
        let timestamp = parts.next().unwrap_or_default().parse().unwrap_or(-1);
        LogLine {
            client,
            timestamp,
            rest: parts.next().unwrap_or_default().to_string(),
        }
    }

    /// The outgoing flag, type, filtered flag, categories and data.
    pub fn logged(&self) -> Option<Logged> {
        Logged::from_file_line(&format!("{},{},{}", self.client, self.timestamp, self.rest))
    }

    /// The client address without the port.
    pub fn client_ip(&self) -> &str {
        match self.client.rsplit_once(':') {
            Some((ip, _)) => ip.trim_start_matches('[').trim_end_matches(']'),
            None => &self.client,
        }
    }
}

/// A configuration with `file_logging_dir` pointing at `log_dir` unless it sets one itself.
fn with_log_dir(config: &str, log_dir: &Path) -> String {
    let mut text = config.to_string();
    if !text.contains("file_logging_dir") {
        text.push_str(&format!("\nfile_logging_dir={}\n", log_dir.display()));
    }
    text
}

/// The current UNIX time, to bracket the timestamps of logged lines.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Every line came from `client_ip`, from one connection, at a plausible time
/// (since `since`), and the predictable part of the lines is `expected`.
pub fn assert_lines(lines: &[LogLine], client_ip: &str, since: i64, expected: &[&str]) {
    let rest: Vec<&str> = lines.iter().map(|l| l.rest.as_str()).collect();
    assert_eq!(rest, expected);
    for line in lines {
        assert_eq!(line.client_ip(), client_ip, "{line:?}");
        assert_eq!(line.client, lines[0].client, "one connection");
        assert!(
            line.timestamp >= since && line.timestamp <= now(),
            "{line:?}"
        );
    }
}
