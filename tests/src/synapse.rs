//! A real Matrix homeserver: matrix-synapse from PyPI (the test virtualenv),
//! SQLite, no federation, users registered with the shared secret; and a
//! small client-server API client built on curl, which can go through an
//! HTTP proxy (Squid) or straight to the server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{json, Value};

use crate::netns::Netns;
use crate::process::Process;
use crate::python;
use crate::tls::ServerCert;
use crate::wait;

pub const SERVER_NAME: &str = "test.local";
const SHARED_SECRET: &str = "imspector-test-secret";

pub struct Synapse {
    pub process: Process,
    pub addr: SocketAddr,
    /// Where `register` talks plain HTTP to the server.
    admin: SocketAddr,
    config: PathBuf,
}

impl Synapse {
    /// Run synapse in `ns` on `addr` (plain HTTP), with everything it writes in `dir`.
    pub fn start(ns: &Netns, dir: &Path, addr: SocketAddr) -> anyhow::Result<Self> {
        Self::start_with(ns, dir, addr, None)
    }

    /// Like [`Synapse::start`], serving HTTPS with `tls` when given.
    pub fn start_with(
        ns: &Netns,
        dir: &Path,
        addr: SocketAddr,
        tls: Option<&ServerCert>,
    ) -> anyhow::Result<Self> {
        let d = dir.display();
        let config = dir.join("homeserver.yaml");
        // Rate limits high enough for a test that sends in bursts.
        let limit = "{per_second: 1000, burst_count: 1000}";
        let yaml = format!(
            "server_name: \"{SERVER_NAME}\"\n\
             pid_file: {d}/homeserver.pid\n\
             {tls_files}\
             listeners:\n  - port: {port}\n    bind_addresses: ['{ip}']\n    type: http\n    tls: {tls_on}\n    x_forwarded: false\n    resources:\n      - names: [client]\n        compress: false\n\
             {admin_listener}\
             database:\n  name: sqlite3\n  args:\n    database: {d}/homeserver.db\n\
             log_config: {d}/log.yaml\n\
             media_store_path: {d}/media\n\
             signing_key_path: {d}/signing.key\n\
             registration_shared_secret: \"{SHARED_SECRET}\"\n\
             enable_registration: false\n\
             report_stats: false\n\
             trusted_key_servers: []\n\
             suppress_key_server_warning: true\n\
             federation_domain_whitelist: []\n\
             presence:\n  enabled: false\n\
             rc_message: {limit}\n\
             rc_login:\n  address: {limit}\n  account: {limit}\n  failed_attempts: {limit}\n\
             rc_joins:\n  local: {limit}\n  remote: {limit}\n\
             rc_registration: {limit}\n",
            port = addr.port(),
            ip = addr.ip(),
            tls_on = tls.is_some(),
            // Registration uses plain HTTP on the next port when the API is HTTPS.
            admin_listener = if tls.is_some() {
                format!(
                    "  - port: {}\n    bind_addresses: ['{}']\n    type: http\n    resources:\n      - names: [client]\n",
                    addr.port() + 1,
                    addr.ip()
                )
            } else {
                String::new()
            },
            tls_files = tls.map_or(String::new(), |t| format!(
                "tls_certificate_path: {}\ntls_private_key_path: {}\n",
                t.cert.display(),
                t.key.display()
            )),
        );
        std::fs::write(&config, yaml)?;
        std::fs::write(
            dir.join("log.yaml"),
            format!(
                "version: 1\nformatters:\n  plain:\n    format: '%(asctime)s %(levelname)s %(name)s %(message)s'\n\
                 handlers:\n  file:\n    class: logging.FileHandler\n    filename: {d}/homeserver.log\n    formatter: plain\n\
                 root:\n  level: INFO\n  handlers: [file]\ndisable_existing_loggers: false\n"
            ),
        )?;
        let python = python::bin("python3");
        let keys = std::process::Command::new(&python)
            .args(["-m", "synapse.app.homeserver", "--generate-keys", "-c"])
            .arg(&config)
            .output()
            .context("synapse --generate-keys")?;
        anyhow::ensure!(
            keys.status.success(),
            "synapse --generate-keys: {}",
            String::from_utf8_lossy(&keys.stderr)
        );
        let mut command = ns.command(python.to_str().expect("utf-8 path"));
        command
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(&config);
        let process = Process::spawn("synapse", command, dir.join("synapse.out"))?;
        let synapse = Synapse {
            process,
            addr,
            admin: match tls {
                Some(_) => SocketAddr::new(addr.ip(), addr.port() + 1),
                None => addr,
            },
            config,
        };
        let log = dir.join("homeserver.log");
        let listening = || {
            wait::read(&log)
                .contains("Synapse now listening")
                .then_some(())
        };
        // Synapse takes a while to import and set up its database: allow
        // three of the usual deadlines.
        let started = (0..3).any(|_| wait::until("synapse to listen", listening).is_ok());
        anyhow::ensure!(
            started,
            "synapse did not start; it printed:\n{}\nlog:\n{}",
            synapse.process.output(),
            wait::read(&log)
        );
        Ok(synapse)
    }

    /// Register a user with the shared secret (from `ns`, which reaches the server).
    pub fn register(&self, ns: &Netns, user: &str, password: &str) -> anyhow::Result<()> {
        let program = python::bin("register_new_matrix_user");
        let url = format!("http://{}", self.admin);
        ns.exec(
            program.to_str().expect("utf-8 path"),
            &[
                "-c",
                self.config.to_str().expect("utf-8 path"),
                "-u",
                user,
                "-p",
                password,
                "--no-admin",
                &url,
            ],
        )?;
        Ok(())
    }
}

/// What an API call answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// A client-server API user, with curl run in a namespace, optionally through a proxy.
pub struct MatrixUser<'a> {
    ns: &'a Netns,
    base: String,
    proxy: Option<SocketAddr>,
    /// More curl options (`--cacert FILE` for HTTPS).
    curl_options: Vec<String>,
    pub token: String,
    pub user_id: String,
    txn: std::cell::Cell<u32>,
}

impl<'a> MatrixUser<'a> {
    /// Log in with the password to `http://server` (through `proxy` when given).
    pub fn login(
        ns: &'a Netns,
        server: SocketAddr,
        proxy: Option<SocketAddr>,
        user: &str,
        password: &str,
    ) -> anyhow::Result<Self> {
        Self::login_to(ns, &format!("http://{server}"), proxy, &[], user, password)
    }

    /// Log in to the homeserver at `base` (`https://...`), with more curl options.
    pub fn login_to(
        ns: &'a Netns,
        base: &str,
        proxy: Option<SocketAddr>,
        curl_options: &[&str],
        user: &str,
        password: &str,
    ) -> anyhow::Result<Self> {
        let mut me = MatrixUser {
            ns,
            base: format!("{base}/_matrix/client/v3"),
            proxy,
            curl_options: curl_options.iter().map(|o| o.to_string()).collect(),
            token: String::new(),
            user_id: String::new(),
            txn: std::cell::Cell::new(0),
        };
        let body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        });
        let answer = me.call("POST", "/login", Some(&body))?;
        anyhow::ensure!(answer.status == 200, "login {user}: {answer:?}");
        me.token = answer.body["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        me.user_id = answer.body["user_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Ok(me)
    }

    /// One API call with curl; the answer's status and JSON body.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Answer> {
        let url = format!("{}{path}", self.base);
        let mut args: Vec<String> = vec![
            "-sS".into(),
            "--max-time".into(),
            "20".into(),
            "-X".into(),
            method.into(),
            "-w".into(),
            "\n%{http_code}".into(),
            "-H".into(),
            "Content-Type: application/json".into(),
        ];
        if !self.token.is_empty() {
            args.extend(["-H".into(), format!("Authorization: Bearer {}", self.token)]);
        }
        match self.proxy {
            Some(proxy) => args.extend(["-x".into(), format!("http://{proxy}")]),
            None => args.push("--noproxy".into()),
        }
        if self.proxy.is_none() {
            args.push("*".into());
        }
        args.extend(self.curl_options.iter().cloned());
        if let Some(body) = body {
            args.extend(["--data-binary".into(), body.to_string()]);
        }
        args.push(url);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.ns.exec("curl", &refs)?;
        let (body, status) = out.rsplit_once('\n').unwrap_or(("", &out));
        Ok(Answer {
            status: status.trim().parse().unwrap_or(0),
            body: serde_json::from_str(body).unwrap_or(Value::Null),
        })
    }

    pub fn create_room(&self) -> anyhow::Result<String> {
        let answer = self.call(
            "POST",
            "/createRoom",
            Some(&json!({"preset": "public_chat"})),
        )?;
        answer.body["room_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("createRoom: {answer:?}"))
    }

    pub fn join(&self, room: &str) -> anyhow::Result<()> {
        let answer = self.call("POST", &format!("/join/{}", encode(room)), Some(&json!({})))?;
        anyhow::ensure!(answer.status == 200, "join: {answer:?}");
        Ok(())
    }

    /// Send an event of `event_type` into `room`; the answer as it came.
    pub fn send_event(
        &self,
        room: &str,
        event_type: &str,
        content: &Value,
    ) -> anyhow::Result<Answer> {
        let txn = self.txn.get() + 1;
        self.txn.set(txn);
        let path = format!("/rooms/{}/send/{event_type}/t{txn}", encode(room));
        self.call("PUT", &path, Some(content))
    }

    pub fn say(&self, room: &str, text: &str) -> anyhow::Result<Answer> {
        self.send_event(
            room,
            "m.room.message",
            &json!({"msgtype": "m.text", "body": text}),
        )
    }

    /// `/sync` since `since` (None: an initial sync); the answer's body.
    pub fn sync(&self, since: Option<&str>) -> anyhow::Result<Value> {
        let path = match since {
            Some(s) => format!("/sync?timeout=0&since={}", encode(s)),
            None => "/sync?timeout=0".to_string(),
        };
        let answer = self.call("GET", &path, None)?;
        anyhow::ensure!(answer.status == 200, "sync: {answer:?}");
        Ok(answer.body)
    }

    /// The bodies of the room's latest text messages, oldest first.
    pub fn texts(&self, room: &str) -> anyhow::Result<Vec<String>> {
        let answer = self.call(
            "GET",
            &format!("/rooms/{}/messages?dir=b&limit=50", encode(room)),
            None,
        )?;
        let mut texts: Vec<String> = answer.body["chunk"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["type"] == "m.room.message")
            .filter_map(|e| e["content"]["body"].as_str().map(str::to_string))
            .collect();
        texts.reverse();
        Ok(texts)
    }
}

/// Percent-encoding for a path segment or query value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
