//! A real Gadu-Gadu client: `peers/gg_client.c` on Debian's libgadu, compiled
//! once per test binary and driven over its standard input and output.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command};
use std::sync::OnceLock;

use super::Generation;
use crate::netns::Netns;
use crate::process::Process;
use crate::wait;

/// The compiled client, built with `cc` next to the workspace's binaries.
pub fn binary() -> anyhow::Result<PathBuf> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| compile().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn compile() -> anyhow::Result<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/gg_client.c");
    let dir = crate::imspector::target_dir().join("peers");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("gg_client");
    // Test binaries run in parallel: build privately, then rename into place.
    let private = dir.join(format!("gg_client.{}", std::process::id()));
    let out = Command::new("cc")
        .args(["-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&private)
        .arg(&source)
        .arg("-lgadu")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "compiling {} (needs gcc and libgadu-dev): {}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&private, &path)?;
    Ok(path)
}

/// One logged-in user.
pub struct GgClient {
    pub uin: u32,
    input: ChildStdin,
    pub process: Process,
}

impl GgClient {
    /// Log in as `uin` to `server`:8074 from `ns` and wait for the server's OK.
    pub fn start(
        ns: &Netns,
        dir: &Path,
        uin: u32,
        server: Ipv4Addr,
        generation: Generation,
    ) -> anyhow::Result<Self> {
        let mut command = ns.command(binary()?.to_str().expect("utf-8 path"));
        command.args([
            uin.to_string(),
            "secret".into(),
            server.to_string(),
            super::server::PORT.to_string(),
        ]);
        if generation == Generation::Gg80 {
            command.arg("0x2e");
        }
        let output = dir.join(format!("gg-{uin}.out"));
        let (process, input) = Process::spawn_with_input("gg_client", command, output)?;
        let client = GgClient {
            uin,
            input,
            process,
        };
        client.wait_line("connected")?;
        Ok(client)
    }

    fn command(&mut self, line: &str) -> anyhow::Result<()> {
        self.input.write_all(format!("{line}\n").as_bytes())?;
        Ok(())
    }

    pub fn send(&mut self, to: u32, text: &str) -> anyhow::Result<()> {
        self.command(&format!("send {to} {text}"))
    }

    /// A typing notification; length 0 means "stopped typing".
    pub fn typing(&mut self, to: u32, length: u16) -> anyhow::Result<()> {
        self.command(&format!("typing {to} {length}"))
    }

    /// Offer the file at `path` (DCC7).
    pub fn offer_file(&mut self, to: u32, path: &Path) -> anyhow::Result<()> {
        self.command(&format!("file {to} {}", path.display()))
    }

    pub fn ping(&mut self) -> anyhow::Result<()> {
        self.command("ping")
    }

    /// Everything the client printed, line by line.
    pub fn lines(&self) -> Vec<String> {
        self.process.output().lines().map(str::to_string).collect()
    }

    /// The texts of the messages received from `from`, in order.
    pub fn messages_from(&self, from: u32) -> Vec<String> {
        let prefix = format!("msg {from} ");
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
            .collect()
    }

    /// How many times the client printed exactly `line`.
    pub fn count(&self, line: &str) -> usize {
        self.lines().iter().filter(|l| *l == line).count()
    }

    /// Wait until the client printed `line` at least `n` times.
    pub fn wait_count(&self, line: &str, n: usize) -> anyhow::Result<()> {
        wait::until(&format!("{} to print {line:?} {n} times", self.uin), || {
            (self.count(line) >= n).then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}; it printed:\n{}", self.process.output()))
    }

    /// Wait until the client printed `line`.
    pub fn wait_line(&self, line: &str) -> anyhow::Result<()> {
        self.wait_count(line, 1)
    }
}
