//! prosody (Debian) as the XMPP server of the rig: a MUC service, HTTP file
//! sharing, and, with a certificate, STARTTLS on 5222 (optional or required)
//! and direct TLS on 5223 (XEP-0368).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{DOMAIN, ROOMS, UPLOAD};
use crate::netns::Netns;
use crate::process::Process;
use crate::tls::ServerCert;
use crate::wait;

/// What the server offers on the wire.
#[derive(Clone, Copy)]
pub enum Encryption<'a> {
    /// No certificate: no STARTTLS offered, no direct TLS port.
    Plain,
    /// STARTTLS offered, plain sessions allowed; direct TLS on 5223.
    Optional(&'a ServerCert),
    /// STARTTLS required before authentication; direct TLS on 5223.
    Required(&'a ServerCert),
}

/// The largest stanza prosody takes from a logged-in client here: above the
/// proxy's bound, so that a test can send one the proxy must not inspect.
const STANZA_LIMIT: usize = 1 << 20;

/// prosody in a namespace, with everything it writes in its directory.
pub struct Prosody {
    pub process: Process,
    config: PathBuf,
    /// Where clients reach its STARTTLS (or plain) port.
    pub addr: SocketAddr,
}

impl Prosody {
    pub fn start(
        ns: &Netns,
        dir: &Path,
        ip: IpAddr,
        encryption: Encryption,
    ) -> anyhow::Result<Self> {
        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        let d = dir.display();
        let tls = match encryption {
            Encryption::Plain => None,
            Encryption::Optional(cert) => Some((cert, false)),
            Encryption::Required(cert) => Some((cert, true)),
        };
        let tls_lines = match tls {
            None => "c2s_direct_tls_ports = { }\nmodules_disabled = { \"s2s\"; \"tls\" }\n\
                     c2s_require_encryption = false\n"
                .to_string(),
            Some((cert, require)) => {
                // prosody reads them as its own user.
                for file in [&cert.cert, &cert.key] {
                    std::fs::set_permissions(
                        file,
                        std::os::unix::fs::PermissionsExt::from_mode(0o644),
                    )?;
                }
                let ssl = format!(
                    "{{ key = \"{}\"; certificate = \"{}\" }}",
                    cert.key.display(),
                    cert.cert.display()
                );
                format!(
                    "c2s_direct_tls_ports = {{ 5223 }}\nc2s_direct_tls_ssl = {ssl}\nssl = {ssl}\n\
                     modules_disabled = {{ \"s2s\" }}\nc2s_require_encryption = {require}\n"
                )
            }
        };
        let config = dir.join("prosody.cfg.lua");
        std::fs::write(
            &config,
            format!(
                "pidfile = \"{d}/prosody.pid\"\n\
                 data_path = \"{data}\"\n\
                 interfaces = {{ \"*\" }}\n\
                 c2s_ports = {{ 5222 }}\n\
                 s2s_ports = {{ }}\n\
                 http_ports = {{ 5280 }}\n\
                 http_interfaces = {{ \"{ip}\" }}\n\
                 https_ports = {{ }}\n\
                 modules_enabled = {{ \"roster\"; \"saslauth\"; \"tls\"; \"disco\"; \"carbons\"; \"ping\"; \"posix\" }}\n\
                 {tls_lines}\
                 c2s_stanza_size_limit = {STANZA_LIMIT}\n\
                 allow_unencrypted_plain_auth = true\n\
                 authentication = \"internal_plain\"\n\
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
        let ports: &[&str] = if tls.is_some() {
            &[":5222 ", ":5223 "]
        } else {
            &[":5222 "]
        };
        let log = dir.join("prosody.log");
        wait::until("prosody to listen", || {
            let listening = ns.exec("ss", &["-ltnH"]).ok()?;
            ports
                .iter()
                .all(|port| listening.contains(port))
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

    /// Where clients reach its direct TLS port.
    pub fn direct_tls_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr.ip(), 5223)
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
