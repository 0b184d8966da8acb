//! BarnOwl, a real AIM client (libfaim), in tmux in the client namespace.
//!
//! BarnOwl always logs in to login.oscar.aol.com:5190: it runs in a private
//! mount namespace whose /etc/hosts names the test server so. On Debian 12's
//! GLib it aborts in g_main_context_check once it has two AIM connections,
//! unless its poll fds are re-added in fd order: the LD_PRELOAD shim
//! `peers/glib_poll_order.c`, compiled here, does that.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context};

use crate::netns::Netns;
use crate::wait;

pub struct BarnOwl {
    socket: PathBuf,
    dir: PathBuf,
}

fn compile_shim() -> anyhow::Result<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/glib_poll_order.c");
    let dir = crate::imspector::target_dir().join("peers");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("glib_poll_order.so");
    // Test binaries run in parallel: build privately, then rename into place.
    let private = dir.join(format!("glib_poll_order.{}.so", std::process::id()));
    let out = Command::new("cc")
        .args(["-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-o"])
        .arg(&private)
        .arg(&source)
        .arg("-ldl")
        .output()?;
    ensure!(
        out.status.success(),
        "compiling {} (needs gcc): {}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&private, &path)?;
    Ok(path)
}

impl BarnOwl {
    /// Start BarnOwl in `ns`, with login.oscar.aol.com at `server`.
    pub fn start(ns: &Netns, dir: &Path, server: Ipv4Addr) -> anyhow::Result<Self> {
        let shim = compile_shim()?;
        let hosts = dir.join("hosts");
        std::fs::write(
            &hosts,
            format!("127.0.0.1 localhost\n{server} login.oscar.aol.com\n"),
        )?;
        let home = dir.join("home");
        std::fs::create_dir_all(home.join(".owl"))?;
        let socket = dir.join("tmux.sock");
        let script = format!(
            "mount --bind {hosts} /etc/hosts && exec tmux -S {socket} new-session -d -x 160 -y 48 \
             'HOME={home} LD_PRELOAD={shim} barnowl -n -s {home}/.owl 2>{dir}/barnowl.err'",
            hosts = hosts.display(),
            socket = socket.display(),
            home = home.display(),
            shim = shim.display(),
            dir = dir.display(),
        );
        let status = ns
            .command("unshare")
            .args(["-m", "sh", "-c", &script])
            .status()
            .context("starting tmux")?;
        ensure!(status.success(), "tmux did not start: {status}");
        let owl = BarnOwl {
            socket,
            dir: dir.to_path_buf(),
        };
        owl.wait_screen("BarnOwl")?;
        Ok(owl)
    }

    fn tmux(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()?;
        ensure!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// What the terminal shows now.
    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p"]).unwrap_or_default()
    }

    /// Run a BarnOwl command (`aimlogin alice pw`), typed after `:`.
    pub fn command(&self, command: &str) -> anyhow::Result<()> {
        self.tmux(&["send-keys", ":"])?;
        self.tmux(&["send-keys", "-l", command])?;
        self.tmux(&["send-keys", "Enter"])?;
        Ok(())
    }

    pub fn wait_screen(&self, text: &str) -> anyhow::Result<()> {
        wait::until(&format!("BarnOwl to show {text:?}"), || {
            self.screen().contains(text).then_some(())
        })
        .map_err(|e| {
            let err = std::fs::read_to_string(self.dir.join("barnowl.err")).unwrap_or_default();
            anyhow::anyhow!("{e}; the screen:\n{}\nstderr:\n{err}", self.screen())
        })
    }
}

impl Drop for BarnOwl {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}
