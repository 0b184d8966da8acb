//! A network namespace that is deleted when dropped.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A number unique among the rigs of this process, for names and subnets.
pub fn unique() -> u32 {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: String) -> anyhow::Result<Self> {
        // A namespace left over by a crashed run with the same pid is stale.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run("ip", &["netns", "add", &name])?;
        let ns = Netns { name };
        ns.exec("ip", &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Run a command inside the namespace; fail with its stderr.
    pub fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        stdout_of(self.command(program).args(args), program, args)
            .with_context(|| format!("in namespace {}", self.name))
    }

    /// Run `f` on a thread that has entered this namespace (for sockets the
    /// test opens itself).
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let path = format!("/run/netns/{}", self.name);
        let file = std::fs::File::open(&path).with_context(|| path.clone())?;
        let handle = std::thread::spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("entering the namespace");
            f()
        });
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("thread in {} panicked", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill what still runs inside, then remove the namespace.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).output();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Run a command in the root namespace; fail with its stderr.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    stdout_of(Command::new(program).args(args), program, args)
}

/// What `command` (`program args`) printed, or its stderr as the error.
fn stdout_of(command: &mut Command, program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = command
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
