//! Real XMPP software: the prosody server (Debian) with a MUC service and
//! HTTP file sharing, slixmpp clients (PyPI, the test virtualenv) driven
//! through `client.py`, and sendxmpp (Debian). Plain streams: the server does
//! not require encryption and has no certificate, so no STARTTLS is offered.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ChildStdin;

use anyhow::Context;
use serde_json::{json, Value};

use crate::netns::Netns;
use crate::process::Process;
use crate::{python, wait};

pub const DOMAIN: &str = "test.local";
pub const ROOMS: &str = "conference.test.local";
pub const UPLOAD: &str = "upload.test.local";

/// prosody on `ip`:5222 in a namespace, with everything it writes in its directory.
pub struct Prosody {
    pub process: Process,
    config: PathBuf,
    pub addr: SocketAddr,
}

impl Prosody {
    pub fn start(ns: &Netns, dir: &Path, ip: IpAddr) -> anyhow::Result<Self> {
        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        let d = dir.display();
        let config = dir.join("prosody.cfg.lua");
        std::fs::write(
            &config,
            format!(
                "pidfile = \"{d}/prosody.pid\"\n\
                 data_path = \"{data}\"\n\
                 interfaces = {{ \"{ip}\" }}\n\
                 c2s_ports = {{ 5222 }}\n\
                 c2s_direct_tls_ports = {{ }}\n\
                 s2s_ports = {{ }}\n\
                 http_ports = {{ 5280 }}\n\
                 http_interfaces = {{ \"{ip}\" }}\n\
                 https_ports = {{ }}\n\
                 modules_enabled = {{ \"roster\"; \"saslauth\"; \"disco\"; \"carbons\"; \"ping\"; \"posix\" }}\n\
                 modules_disabled = {{ \"s2s\"; \"tls\" }}\n\
                 allow_unencrypted_plain_auth = true\n\
                 authentication = \"internal_plain\"\n\
                 c2s_require_encryption = false\n\
                 s2s_require_encryption = false\n\
                 log = {{ debug = \"{d}/prosody.log\" }}\n\
                 VirtualHost \"{DOMAIN}\"\n\
                 Component \"{ROOMS}\" \"muc\"\n\
                 muc_room_locking = false\n\
                 Component \"{UPLOAD}\" \"http_file_share\"\n\
                 http_file_share_size_limit = 10485760\n",
                data = data.display(),
            ),
        )?;
        crate::netns::run("chown", &["-R", "prosody:prosody", &d.to_string()])?;
        // setpriv execs prosody itself, so killing the process ends the server.
        let mut command = ns.command("setpriv");
        command
            .args(["--reuid=prosody", "--regid=prosody", "--init-groups", "--"])
            .args(["prosody", "-F", "--config"])
            .arg(&config);
        let process = Process::spawn("prosody", command, dir.join("prosody.out"))?;
        let log = dir.join("prosody.log");
        wait::until("prosody to listen on 5222", || {
            wait::read(&log)
                .contains("Activated service 'c2s' on")
                .then_some(())
        })
        .map_err(|e| {
            anyhow::anyhow!(
                "{e}; prosody printed:\n{}\nlog:\n{}",
                process.output(),
                wait::read(&log)
            )
        })?;
        Ok(Prosody {
            process,
            config,
            addr: SocketAddr::new(ip, 5222),
        })
    }

    /// Create the account `user@test.local`.
    pub fn register(&self, user: &str, password: &str) -> anyhow::Result<()> {
        crate::netns::run(
            "runuser",
            &[
                "-u",
                "prosody",
                "--",
                "prosodyctl",
                "--config",
                self.config.to_str().context("utf-8 path")?,
                "register",
                user,
                DOMAIN,
                password,
            ],
        )?;
        Ok(())
    }
}

/// A slixmpp client logged in as `user@test.local`, driven by commands.
pub struct Slixmpp {
    pub process: Process,
    input: ChildStdin,
    /// The full JID the server bound.
    pub jid: String,
    pings: usize,
}

impl Slixmpp {
    /// Log in from `ns` to `server` (through the proxy when `ns` is the rig's
    /// client namespace).
    pub fn start(
        ns: &Netns,
        dir: &Path,
        user: &str,
        password: &str,
        server: SocketAddr,
    ) -> anyhow::Result<Self> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/xmpp/client.py");
        let mut command = ns.command(python::bin("python3").to_str().context("utf-8 path")?);
        command
            .arg(script)
            .arg(format!("{user}@{DOMAIN}/{user}-pc"))
            .arg(password)
            .arg(server.ip().to_string())
            .arg(server.port().to_string());
        let (process, input) = Process::spawn_with_input(
            &format!("slixmpp {user}"),
            command,
            dir.join(format!("slixmpp-{user}.out")),
        )?;
        let mut client = Slixmpp {
            process,
            input,
            jid: String::new(),
            pings: 0,
        };
        let ready = client.wait_event("ready", |_| true)?;
        client.jid = ready["jid"].as_str().unwrap_or_default().to_string();
        Ok(client)
    }

    fn command(&mut self, command: Value) -> anyhow::Result<()> {
        writeln!(self.input, "{command}")?;
        self.input.flush()?;
        Ok(())
    }

    /// Everything the client reported so far.
    pub fn events(&self) -> Vec<Value> {
        self.process
            .output()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Wait for an event of `kind` that `matches`; fail early on an error event.
    pub fn wait_event(
        &self,
        kind: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        wait::until(&format!("{}: a {kind} event", self.process.name), || {
            self.events()
                .into_iter()
                .find(|e| e["event"] == kind && matches(e))
        })
        .map_err(|e| anyhow::anyhow!("{e}; it printed:\n{}", self.process.output()))
    }

    pub fn chat(&mut self, to: &str, body: &str) -> anyhow::Result<()> {
        self.command(json!({"do": "chat", "to": to, "body": body}))
    }

    pub fn groupchat(&mut self, room: &str, body: &str) -> anyhow::Result<()> {
        self.command(json!({"do": "chat", "to": room, "body": body, "type": "groupchat"}))
    }

    pub fn composing(&mut self, to: &str) -> anyhow::Result<()> {
        self.command(json!({"do": "composing", "to": to}))
    }

    /// Send a stanza as it is written.
    pub fn raw(&mut self, xml: &str) -> anyhow::Result<()> {
        self.command(json!({"do": "raw", "xml": xml}))
    }

    pub fn join(&mut self, room: &str, nick: &str) -> anyhow::Result<()> {
        self.command(json!({"do": "join", "room": room, "nick": nick}))?;
        self.wait_event("joined", |e| e["room"] == room)?;
        Ok(())
    }

    /// Ask the server's upload service for a slot; returns the GET URL.
    pub fn upload_slot(&mut self, filename: &str, size: u64) -> anyhow::Result<String> {
        self.command(json!({"do": "slot", "filename": filename, "size": size,
                            "content_type": "image/png"}))?;
        let slot = self.wait_event("slot", |_| true)?;
        Ok(slot["get"].as_str().unwrap_or_default().to_string())
    }

    /// Ping `to` and wait for the answer: everything sent before it has
    /// reached `to` by then (no chat event: nothing is logged).
    pub fn ping(&mut self, to: &str) -> anyhow::Result<()> {
        self.pings += 1;
        let id = self.pings;
        self.command(json!({"do": "ping", "to": to, "id": id}))?;
        self.wait_event("pong", |e| e["id"] == id)?;
        Ok(())
    }

    /// The bodies of the messages received from `sender` (a bare JID, or a
    /// room occupant `room/nick`), in order.
    pub fn received_from(&self, sender: &str) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == "message")
            .filter(|e| {
                let from = e["sender"].as_str().unwrap_or_default();
                from == sender || from.split('/').next() == Some(sender)
            })
            .filter_map(|e| e["body"].as_str().map(str::to_string))
            .collect()
    }

    pub fn wait_received(&self, sender: &str, body: &str) -> anyhow::Result<()> {
        wait::until(
            &format!("{} to receive {body:?} from {sender}", self.process.name),
            || {
                self.received_from(sender)
                    .iter()
                    .any(|b| b == body)
                    .then_some(())
            },
        )
        .map_err(|e| anyhow::anyhow!("{e}; it printed:\n{}", self.process.output()))
    }
}

/// Send one chat message with sendxmpp (its own connection) from `ns`.
pub fn sendxmpp(
    ns: &Netns,
    server: SocketAddr,
    user: &str,
    password: &str,
    to: &str,
    text: &str,
) -> anyhow::Result<()> {
    let mut command = ns.command("sendxmpp");
    command
        .args(["-u", user, "-p", password, "-j"])
        .arg(server.to_string())
        .args(["-o", DOMAIN, "--message-type=chat", to])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().context("starting sendxmpp")?;
    child
        .stdin
        .take()
        .context("sendxmpp's stdin")?
        .write_all(text.as_bytes())?;
    let output = child.wait_with_output()?;
    anyhow::ensure!(
        output.status.success(),
        "sendxmpp failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
