//! Child processes that are killed when the test is done with them.

use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};

/// A running program whose output goes to a file; killed on drop.
pub struct Process {
    pub name: String,
    pub child: Child,
    pub output: PathBuf,
}

impl Process {
    /// Start `command` with stdout and stderr into `output`.
    pub fn spawn(name: &str, command: Command, output: PathBuf) -> anyhow::Result<Self> {
        Self::start(name, command, output, Stdio::null())
    }

    /// Like [`Process::spawn`], with a pipe to the program's standard input.
    pub fn spawn_with_input(
        name: &str,
        command: Command,
        output: PathBuf,
    ) -> anyhow::Result<(Self, ChildStdin)> {
        let mut process = Self::start(name, command, output, Stdio::piped())?;
        let input = process.child.stdin.take().expect("a piped stdin");
        Ok((process, input))
    }

    fn start(
        name: &str,
        mut command: Command,
        output: PathBuf,
        stdin: Stdio,
    ) -> anyhow::Result<Self> {
        let log = std::fs::File::create(&output)?;
        let child = command
            .stdin(stdin)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {name}: {e}"))?;
        Ok(Process {
            name: name.to_string(),
            child,
            output,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// What the program printed so far.
    pub fn output(&self) -> String {
        crate::wait::read(&self.output)
    }

    /// Send a signal.
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> anyhow::Result<()> {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal)?;
        Ok(())
    }

    /// Wait for the exit and return its code (`None` when killed by a signal).
    pub fn wait_exit(&mut self) -> anyhow::Result<Option<i32>> {
        let status = crate::wait::until(&format!("{} to exit", self.name), || {
            self.child.try_wait().ok().flatten()
        })?;
        Ok(status.code())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
