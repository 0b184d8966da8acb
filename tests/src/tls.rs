//! TLS for the end-to-end tests: a test CA that signs the real servers'
//! certificates (rcgen), the interception CA made by `imspector ca create`,
//! and socat as the TLS client side of a real IRC client.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};

use crate::netns::Netns;
use crate::process::Process;
use crate::wait;

/// A CA standing for a public one: it signs the test servers' certificates;
/// imspector trusts it through `ssl_verify_dir`.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    /// A directory with only this CA's certificate (`ca.pem`) in it.
    pub dir: PathBuf,
}

/// A server certificate and its key, as files.
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        // Named after its directory: two test CAs never share a name (a
        // verifier would take one for the other and find a bad signature).
        let name = dir.file_name().map_or("".into(), |n| n.to_string_lossy());
        params
            .distinguished_name
            .push(DnType::CommonName, format!("test {name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let cert = params.self_signed(&key)?;
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("ca.pem"), cert.pem())?;
        Ok(TestCa {
            cert,
            key,
            dir: dir.to_path_buf(),
        })
    }

    pub fn cert_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `name` and `ip` in `dir`; `expired` makes one whose
    /// validity ended yesterday.
    pub fn server_cert(
        &self,
        dir: &Path,
        name: &str,
        ip: IpAddr,
        expired: bool,
    ) -> anyhow::Result<ServerCert> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![name.to_string()])?;
        params.subject_alt_names.push(SanType::IpAddress(ip));
        params.distinguished_name.push(DnType::CommonName, name);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            let yesterday = chrono::Utc::now().date_naive() - chrono::Days::new(1);
            params.not_after = rcgen::date_time_ymd(
                chrono::Datelike::year(&yesterday),
                chrono::Datelike::month(&yesterday) as u8,
                chrono::Datelike::day(&yesterday) as u8,
            );
        }
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        let files = ServerCert {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, cert.pem())?;
        std::fs::write(&files.key, key.serialize_pem())?;
        Ok(files)
    }
}

/// The interception CA that `imspector ca create DIR` writes, and what it printed.
pub struct InterceptionCa {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub printed: String,
}

impl InterceptionCa {
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        let out = std::process::Command::new(crate::imspector::binary())
            .args(["ca", "create"])
            .arg(dir)
            .output()?;
        anyhow::ensure!(out.status.success(), "imspector ca create: {out:?}");
        Ok(InterceptionCa {
            cert: dir.join("imspector-ca.pem"),
            key: dir.join("imspector-ca.key"),
            printed: String::from_utf8(out.stdout)?,
        })
    }

    /// The options that make imspector intercept with this CA, trusting `servers`.
    pub fn config(&self, cert_dir: &Path, servers: &TestCa) -> String {
        format!(
            "ssl=on\nssl_ca_cert={}\nssl_ca_key={}\nssl_cert_dir={}\nssl_verify_dir={}\n",
            self.cert.display(),
            self.key.display(),
            cert_dir.display(),
            servers.dir.display()
        )
    }
}

/// socat in `ns`: a plain listener on 127.0.0.1:`port` whose connections go
/// on to `target` over TLS, verified against `ca`, the SNI `sni` (none when
/// `None`), the certificate checked for `name`. A plain IRC client connects
/// to the listener.
pub struct TlsTunnel {
    pub process: Process,
    pub port: u16,
}

impl TlsTunnel {
    pub fn start(
        ns: &Netns,
        dir: &Path,
        port: u16,
        target: SocketAddr,
        ca: &Path,
        sni: Option<&str>,
        name: &str,
    ) -> anyhow::Result<Self> {
        let sni = match sni {
            Some(host) => format!("snihost={host}"),
            None => "no-sni=1".to_string(),
        };
        let upstream = format!(
            "OPENSSL:{target},cafile={},verify=1,{sni},commonname={name}",
            ca.display()
        );
        let mut command = ns.command("socat");
        command.args([
            "-d",
            "-d",
            &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"),
            &upstream,
        ]);
        let out = dir.join(format!("socat-{port}.out"));
        let process = Process::spawn("socat", command, out)?;
        wait::until("socat to listen", || {
            process.output().contains("listening on").then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}; socat printed:\n{}", process.output()))?;
        Ok(TlsTunnel { process, port })
    }
}

/// irssi in tmux in `ns`, reaching the server by the name `host` (an
/// /etc/hosts of the namespace's own, which `ip netns exec` mounts), so that
/// it verifies the certificate for that name against `ca`.
pub struct Irssi {
    socket: PathBuf,
    hosts_dir: PathBuf,
    ns: String,
}

impl Irssi {
    pub fn start(
        ns: &Netns,
        dir: &Path,
        nick: &str,
        host: &str,
        ip: IpAddr,
    ) -> anyhow::Result<Self> {
        let hosts_dir = PathBuf::from("/etc/netns").join(&ns.name);
        std::fs::create_dir_all(&hosts_dir)?;
        std::fs::write(
            hosts_dir.join("hosts"),
            format!("127.0.0.1 localhost\n{ip} {host}\n"),
        )?;
        let home = dir.join(format!("irssi-{nick}"));
        std::fs::create_dir_all(&home)?;
        let socket = dir.join(format!("tmux-{nick}"));
        let irssi = Irssi {
            socket,
            hosts_dir,
            ns: ns.name.clone(),
        };
        let status = ns
            .command("tmux")
            .arg("-S")
            .arg(&irssi.socket)
            .args(["new-session", "-d", "-x", "250", "-y", "50"])
            .arg(format!(
                "irssi --home={} -n {nick} --noconnect",
                home.display()
            ))
            .status()?;
        anyhow::ensure!(status.success(), "tmux: {status}");
        wait::until("irssi to start", || {
            irssi.screen().contains("Irssi v").then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}; the screen:\n{}", irssi.screen()))?;
        Ok(irssi)
    }

    fn tmux(&self) -> std::process::Command {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &self.ns, "tmux", "-S"])
            .arg(&self.socket);
        c
    }

    /// Type a line and Enter.
    pub fn type_line(&self, line: &str) -> anyhow::Result<()> {
        let status = self.tmux().args(["send-keys", "-l", line]).status()?;
        anyhow::ensure!(status.success(), "tmux send-keys: {status}");
        let status = self.tmux().args(["send-keys", "Enter"]).status()?;
        anyhow::ensure!(status.success(), "tmux send-keys: {status}");
        Ok(())
    }

    /// What the window shows now, with the scrollback.
    pub fn screen(&self) -> String {
        self.tmux()
            .args(["capture-pane", "-p", "-J", "-S", "-500"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Wait until the screen shows `text`.
    pub fn wait_screen(&self, text: &str) -> anyhow::Result<()> {
        wait::until(&format!("irssi to show {text:?}"), || {
            self.screen().contains(text).then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}; the screen:\n{}", self.screen()))
    }
}

impl Drop for Irssi {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").status();
        let _ = std::fs::remove_dir_all(&self.hosts_dir);
    }
}
