//! Packet captures inside a namespace (dumpcap), read back by tshark: an
//! independent decoder for what scripted peers and the proxy put on the wire.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use serde_json::{Map, Value};

use crate::netns::Netns;
use crate::process::Process;
use crate::wait;

/// dumpcap capturing the TCP traffic of every interface of a namespace.
pub struct Capture {
    process: Process,
    file: PathBuf,
}

impl Capture {
    /// Start capturing into `dir/NAME.pcapng`; returns once dumpcap captures.
    pub fn start(ns: &Netns, dir: &Path, name: &str) -> anyhow::Result<Self> {
        let file = dir.join(format!("{name}.pcapng"));
        let mut command = ns.command("dumpcap");
        command
            .args(["-q", "-i", "any", "-f", "tcp", "-w"])
            .arg(&file);
        let process = Process::spawn("dumpcap", command, dir.join(format!("{name}.dumpcap.out")))?;
        wait::until("dumpcap to start capturing", || {
            process.output().contains("Capturing on").then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}; dumpcap printed: {}", process.output()))?;
        Ok(Capture { process, file })
    }

    /// Stop capturing; the complete capture file.
    pub fn finish(mut self) -> anyhow::Result<PathBuf> {
        self.process.signal(Signal::SIGINT)?;
        let code = self.process.wait_exit()?;
        if code != Some(0) {
            bail!("dumpcap exited with {code:?}: {}", self.process.output());
        }
        Ok(self.file.clone())
    }
}

/// The frames of `file` that match the display `filter`, each as its fields
/// (name to the values in the frame, in order), as tshark decodes them.
pub fn frames(
    file: &Path,
    filter: &str,
    fields: &[&str],
) -> anyhow::Result<Vec<Map<String, Value>>> {
    let mut command = std::process::Command::new("tshark");
    command
        .arg("-r")
        .arg(file)
        .args(["-Y", filter, "-T", "json", "--no-duplicate-keys"]);
    for field in fields {
        command.args(["-e", field]);
    }
    let out = command.output().context("running tshark")?;
    if !out.status.success() {
        bail!("tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let json: Value = serde_json::from_slice(&out.stdout).context("tshark's JSON")?;
    let frames = json.as_array().context("tshark's JSON is no array")?;
    frames
        .iter()
        .map(|f| {
            f["_source"]["layers"]
                .as_object()
                .cloned()
                .context("a frame without layers")
        })
        .collect()
}

/// The values of `field` in a frame from [`frames`].
pub fn values(frame: &Map<String, Value>, field: &str) -> Vec<String> {
    frame
        .get(field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}
