//! prosody (Debian) as the XMPP server of the rig, and slixmpp (PyPI, in the
//! test virtualenv) as its clients.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::netns::Netns;
use crate::process::Process;
use crate::tls::ServerCert;
use crate::wait;

/// The XMPP domain of the test server.
pub const DOMAIN: &str = "test.local";

/// prosody in `ns`: STARTTLS on 5222 (required when `require_tls`), direct
/// TLS on 5223, with `cert` for test.local.
pub struct Prosody {
    pub process: Process,
    config: PathBuf,
}

impl Prosody {
    pub fn start(
        ns: &Netns,
        dir: &Path,
        cert: &ServerCert,
        require_tls: bool,
    ) -> anyhow::Result<Self> {
        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        let prosody = nix::unistd::User::from_name("prosody")?
            .ok_or_else(|| anyhow::anyhow!("no user prosody: apt-get install prosody"))?;
        nix::unistd::chown(&data, Some(prosody.uid), Some(prosody.gid))?;
        for file in [&cert.cert, &cert.key] {
            std::fs::set_permissions(file, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        }
        let config = dir.join("prosody.cfg.lua");
        let ssl = format!(
            "{{ key = \"{}\"; certificate = \"{}\" }}",
            cert.key.display(),
            cert.cert.display()
        );
        std::fs::write(
            &config,
            format!(
                "pidfile = \"{dir}/prosody.pid\"\ndata_path = \"{data}\"\n\
                 interfaces = {{ \"*\" }}\nc2s_ports = {{ 5222 }}\n\
                 c2s_direct_tls_ports = {{ 5223 }}\nc2s_direct_tls_ssl = {ssl}\n\
                 s2s_ports = {{}}\nmodules_disabled = {{ \"s2s\" }}\n\
                 modules_enabled = {{ \"roster\"; \"saslauth\"; \"tls\"; \"disco\"; \"ping\" }}\n\
                 authentication = \"internal_plain\"\nallow_unencrypted_plain_auth = true\n\
                 c2s_require_encryption = {require_tls}\nssl = {ssl}\n\
                 log = {{ info = \"*console\" }}\n\
                 VirtualHost \"{DOMAIN}\"\n  ssl = {ssl}\n",
                dir = dir.display(),
                data = data.display(),
            ),
        )?;
        let mut command = ns.command("runuser");
        command
            .args(["-u", "prosody", "--", "prosody", "-F", "--config"])
            .arg(&config);
        let process = Process::spawn("prosody", command, dir.join("prosody.out"))?;
        let server = Prosody { process, config };
        wait::until("prosody to listen", || {
            ns.exec("ss", &["-ltnH", "sport = :5223"])
                .ok()
                .filter(|out| out.contains("5223"))
        })
        .map_err(|e| anyhow::anyhow!("{e}; prosody printed:\n{}", server.process.output()))?;
        Ok(server)
    }

    pub fn register(&self, ns: &Netns, user: &str, password: &str) -> anyhow::Result<()> {
        ns.exec(
            "runuser",
            &[
                "-u",
                "prosody",
                "--",
                "prosodyctl",
                "--config",
                self.config.to_str().expect("utf-8 path"),
                "register",
                user,
                DOMAIN,
                password,
            ],
        )?;
        Ok(())
    }
}

/// How a client reaches the server.
#[derive(Clone, Copy)]
pub enum Transport {
    /// Port 5222, STARTTLS.
    StartTls,
    /// Port 5223, TLS from the first byte (XEP-0368).
    DirectTls,
}

/// One slixmpp client: logs in as `user`, sends `text` to `to` once its
/// session starts (if given), prints every message it receives
/// (`got <from> <body>`), answers a message with `reply` (if given).
pub struct Slixmpp {
    pub process: Process,
}

const CLIENT: &str = r#"
import asyncio, ssl, sys
import slixmpp

jid, password, host, port, transport, ca, to, text, reply = sys.argv[1:10]

class Client(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(jid, password)
        self.enable_direct_tls = transport == "direct"
        self.enable_starttls = transport == "starttls"
        self.enable_plaintext = False
        self.ca_certs = ca
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("message", self.message)

    async def start(self, _):
        self.send_presence()
        await self.get_roster()
        print("session started", flush=True)
        if to:
            self.send_message(mto=to, mbody=text, mtype="chat")

    def message(self, msg):
        if msg["type"] in ("chat", "normal") and msg["body"]:
            print(f"got {msg['from'].bare} {msg['body']}", flush=True)
            if reply:
                msg.reply(reply).send()

client = Client()
client.connect(host, int(port))
asyncio.get_event_loop().run_forever()
"#;

impl Slixmpp {
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        ns: &Netns,
        dir: &Path,
        user: &str,
        server: IpAddr,
        transport: Transport,
        ca: &Path,
        send: Option<(&str, &str)>,
        reply: Option<&str>,
    ) -> anyhow::Result<Self> {
        let script = dir.join("slixmpp_client.py");
        std::fs::write(&script, CLIENT)?;
        let (mode, port) = match transport {
            Transport::StartTls => ("starttls", "5222"),
            Transport::DirectTls => ("direct", "5223"),
        };
        let (to, text) = send.unwrap_or(("", ""));
        let mut command = ns.command(crate::python::bin("python3").to_str().expect("utf-8"));
        command
            .arg(&script)
            .arg(format!("{user}@{DOMAIN}"))
            .arg("pw")
            .arg(server.to_string())
            .arg(port)
            .arg(mode)
            .arg(ca)
            .arg(to)
            .arg(text)
            .arg(reply.unwrap_or(""));
        let process = Process::spawn("slixmpp", command, dir.join(format!("slixmpp-{user}.out")))?;
        let client = Slixmpp { process };
        client.wait_output("session started")?;
        Ok(client)
    }

    pub fn wait_output(&self, text: &str) -> anyhow::Result<()> {
        wait::until(&format!("slixmpp to print {text:?}"), || {
            self.process.output().contains(text).then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}; slixmpp printed:\n{}", self.process.output()))
    }
}
