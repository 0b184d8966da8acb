//! slixmpp (PyPI, the test virtualenv) as an XMPP client, driven through
//! `client.py`: commands in, one JSON event a line out.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ChildStdin;

use anyhow::Context;
use serde_json::{json, Value};

use super::DOMAIN;
use crate::netns::Netns;
use crate::process::Process;
use crate::{python, wait};

/// How a client reaches the server, and what its TLS trusts.
#[derive(Clone, Copy)]
pub enum Transport<'a> {
    /// No TLS; PLAIN authentication over the bare connection.
    Plain,
    /// STARTTLS, the certificate verified against `ca` only.
    StartTls { ca: &'a Path },
    /// TLS from the first byte (XEP-0368), verified against `ca` only.
    DirectTls { ca: &'a Path },
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
        transport: Transport,
    ) -> anyhow::Result<Self> {
        let (mode, ca) = match transport {
            Transport::Plain => ("plain", Path::new("")),
            Transport::StartTls { ca } => ("starttls", ca),
            Transport::DirectTls { ca } => ("direct", ca),
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/xmpp/client.py");
        let mut command = ns.command(python::bin("python3").to_str().context("utf-8 path")?);
        command
            .arg(script)
            .arg(format!("{user}@{DOMAIN}/{user}-pc"))
            .arg(password)
            .arg(server.ip().to_string())
            .arg(server.port().to_string())
            .arg(mode)
            .arg(ca);
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
