//! Real IRC software: the ngircd server and the ii client (both from Debian).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use crate::netns::Netns;
use crate::process::Process;
use crate::rig::Rig;
use crate::wait;

/// ngircd on port 6667 (IPv4 and IPv6) in `ns`.
pub struct Ngircd {
    pub process: Process,
}

impl Ngircd {
    pub fn start(ns: &Netns, dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(ns, dir, "")
    }

    /// ngircd that also serves TLS on 6697 with `cert` (see [`crate::tls`]).
    pub fn start_tls(
        ns: &Netns,
        dir: &Path,
        cert: &crate::tls::ServerCert,
    ) -> anyhow::Result<Self> {
        let ssl = format!(
            "[SSL]\nCertFile = {}\nKeyFile = {}\nPorts = 6697\n",
            cert.cert.display(),
            cert.key.display()
        );
        Self::start_with(ns, dir, &ssl)
    }

    fn start_with(ns: &Netns, dir: &Path, extra: &str) -> anyhow::Result<Self> {
        let config = dir.join("ngircd.conf");
        std::fs::write(
            &config,
            format!(
                "[Global]\nName = irc.test\nInfo = test server\nListen = 0.0.0.0,::\n\
                 Ports = 6667\nServerUID = nobody\nServerGID = nogroup\n\
                 PidFile = {}/ngircd.pid\nMotdPhrase = welcome to the test\n\
                 [Limits]\nMaxConnectionsIP = 0\nMaxNickLength = 30\n\
                 [Options]\nPAM = no\nDNS = no\nIdent = no\n{extra}",
                dir.display()
            ),
        )?;
        let mut command = ns.command("ngircd");
        command.arg("-n").arg("-f").arg(&config);
        let process = Process::spawn("ngircd", command, dir.join("ngircd.out"))?;
        wait::until("ngircd to listen", || {
            process.output().contains("ready").then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}; ngircd printed:\n{}", process.output()))?;
        Ok(Ngircd { process })
    }
}

/// InspIRCd on port 6667 in `ns`: a second server, which reads a line with a
/// bare CR differently from ngircd (it drops the CR; ngircd ends the line).
pub struct Inspircd {
    pub process: Process,
}

impl Inspircd {
    pub fn start(ns: &Netns, dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(ns, dir, "")
    }

    /// InspIRCd that also offers STARTTLS on 6667 with `cert` (its GnuTLS
    /// module, see [`crate::tls`]).
    pub fn start_starttls(
        ns: &Netns,
        dir: &Path,
        cert: &crate::tls::ServerCert,
    ) -> anyhow::Result<Self> {
        let tls = format!(
            "<module name=\"ssl_gnutls\">\n<module name=\"starttls\">\n\
             <sslprofile name=\"main\" provider=\"gnutls\" certfile=\"{}\" keyfile=\"{}\" \
             dhfile=\"\" hash=\"sha256\" requestclientcert=\"no\">\n",
            cert.cert.display(),
            cert.key.display()
        );
        Self::start_with(ns, dir, &tls)
    }

    fn start_with(ns: &Netns, dir: &Path, extra: &str) -> anyhow::Result<Self> {
        let config = dir.join("inspircd.conf");
        let motd = dir.join("motd.txt");
        std::fs::write(&motd, "welcome to the test\n")?;
        std::fs::write(
            &config,
            format!(
                "<server name=\"irc.test\" description=\"test server\" network=\"test\">\n\
                 <admin name=\"a\" nick=\"a\" email=\"a@irc.test\">\n\
                 <bind address=\"\" port=\"6667\" type=\"clients\">\n\
                 <connect allow=\"*\" localmax=\"1000\" globalmax=\"1000\" timeout=\"60\" \
                 pingfreq=\"120\" recvq=\"8K\" threshold=\"1000\" commandrate=\"100000\" fakelag=\"off\">\n\
                 <pid file=\"{dir}/inspircd.pid\">\n<files motd=\"{motd}\">\n\
                 <dns timeout=\"1\">\n<options>\n<security>\n<performance>\n{extra}",
                dir = dir.display(),
                motd = motd.display()
            ),
        )?;
        let mut command = ns.command("inspircd");
        command
            .args(["--nofork", "--runasroot"])
            .arg(format!("--config={}", config.display()));
        let process = Process::spawn("inspircd", command, dir.join("inspircd.out"))?;
        wait::until("inspircd to listen", || {
            process.output().contains("is now running").then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}; inspircd printed:\n{}", process.output()))?;
        Ok(Inspircd { process })
    }
}

/// The ii client, driven through its FIFOs.
pub struct Ii {
    pub nick: String,
    /// ii's directory for this server: `in`, `out`, and one directory per chat.
    pub server_dir: PathBuf,
    pub process: Process,
}

impl Ii {
    /// Connect as `nick` to `server`:6667 from `ns`. `as_uid` runs it as that user.
    pub fn start(
        ns: &Netns,
        dir: &Path,
        server: IpAddr,
        nick: &str,
        as_uid: Option<u32>,
    ) -> anyhow::Result<Self> {
        Self::start_at(ns, dir, server, 6667, nick, as_uid)
    }

    /// Connect as `nick` to `server`:`port` from `ns`.
    pub fn start_at(
        ns: &Netns,
        dir: &Path,
        server: IpAddr,
        port: u16,
        nick: &str,
        as_uid: Option<u32>,
    ) -> anyhow::Result<Self> {
        let base = dir.join(format!("ii-{nick}"));
        std::fs::create_dir_all(&base)?;
        let mut command = match as_uid {
            None => ns.command("ii"),
            Some(uid) => {
                nix::unistd::chown(&base, Some(uid.into()), Some(uid.into()))?;
                let mut c = ns.command("setpriv");
                c.args([
                    &format!("--reuid={uid}"),
                    &format!("--regid={uid}"),
                    "--clear-groups",
                    "ii",
                ]);
                c
            }
        };
        command.args([
            "-s",
            &server.to_string(),
            "-p",
            &port.to_string(),
            "-n",
            nick,
            "-i",
        ]);
        command.arg(&base);
        let process = Process::spawn("ii", command, dir.join(format!("ii-{nick}.out")))?;
        let ii = Ii {
            nick: nick.to_string(),
            server_dir: base.join(server.to_string()),
            process,
        };
        wait::until(&format!("{nick} to be registered"), || {
            wait::read(&ii.server_dir.join("out"))
                .contains("welcome to the test")
                .then_some(())
        })
        .map_err(|e| {
            anyhow::anyhow!(
                "{e}; ii printed:\n{}\nserver said:\n{}",
                ii.process.output(),
                wait::read(&ii.server_dir.join("out"))
            )
        })?;
        Ok(ii)
    }

    /// The remote user: `nick` next to the server, in its namespace.
    pub fn remote(rig: &Rig, dir: &Path, nick: &str) -> anyhow::Result<Self> {
        Self::start(&rig.server, dir, Ipv4Addr::LOCALHOST.into(), nick, None)
    }

    /// A local user: `nick` in the client namespace, connecting to `server`
    /// through the gateway.
    pub fn local(rig: &Rig, dir: &Path, server: IpAddr, nick: &str) -> anyhow::Result<Self> {
        Self::start(&rig.client, dir, server, nick, None)
    }

    fn write(&self, fifo: &Path, line: &str) -> anyhow::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).open(fifo)?;
        f.write_all(format!("{line}\n").as_bytes())?;
        Ok(())
    }

    /// Send a line to the server window: a command such as `/j #chan`, or a raw
    /// IRC command such as `/PRIVMSG a,b :text`.
    pub fn command(&self, line: &str) -> anyhow::Result<()> {
        self.write(&self.server_dir.join("in"), line)
    }

    /// A private message (`/j nick text` opens the query and sends).
    pub fn msg(&self, nick: &str, text: &str) -> anyhow::Result<()> {
        self.command(&format!("/j {nick} {text}"))
    }

    /// Join a channel and wait until the server confirmed it.
    pub fn join(&self, channel: &str) -> anyhow::Result<()> {
        self.command(&format!("/j {channel}"))?;
        let out = self.server_dir.join(channel).join("out");
        let me = format!("{}(", self.nick);
        wait::until(&format!("{} to join {channel}", self.nick), || {
            wait::read(&out).contains(&me).then_some(())
        })
    }

    /// Say something in a joined channel.
    pub fn say(&self, channel: &str, text: &str) -> anyhow::Result<()> {
        self.write(&self.server_dir.join(channel).join("in"), text)
    }

    /// Wait until the window `chat` (a nick or channel) shows `<from> text`.
    pub fn wait_received(&self, chat: &str, from: &str, text: &str) -> anyhow::Result<()> {
        let out = self.server_dir.join(chat.to_lowercase()).join("out");
        let want = format!("<{from}> {text}");
        wait::until(&format!("{} to receive {want:?}", self.nick), || {
            wait::read(&out)
                .lines()
                .any(|l| l.ends_with(&want))
                .then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}; {} has:\n{}", out.display(), wait::read(&out)))
    }

    /// Everything the window `chat` shows.
    pub fn window(&self, chat: &str) -> String {
        wait::read(&self.server_dir.join(chat.to_lowercase()).join("out"))
    }
}

/// A minimal IRC user behind an HTTP proxy: `CONNECT server` through `proxy`,
/// register as `nick`, say `text` to `to`, quit. Returns the proxy's status
/// line. Call it on a thread inside the client's namespace.
pub fn chat_through_http_proxy(
    proxy: std::net::SocketAddr,
    server: std::net::SocketAddr,
    nick: &str,
    to: &str,
    text: &str,
) -> std::io::Result<String> {
    use std::io::{BufRead, BufReader, Read};
    let mut conn = std::net::TcpStream::connect(proxy)?;
    conn.set_read_timeout(Some(wait::DEADLINE))?;
    conn.write_all(format!("CONNECT {server} HTTP/1.1\r\nHost: {server}\r\n\r\n").as_bytes())?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut status = String::new();
    reader.read_line(&mut status)?;
    let mut header = String::new();
    while reader.read_line(&mut header)? > 0 && header != "\r\n" {
        header.clear();
    }
    if !status.contains(" 200 ") {
        return Ok(status);
    }
    conn.write_all(format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n").as_bytes())?;
    let mut line = String::new();
    while !line.contains(" 001 ") {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("closed before registration"));
        }
    }
    conn.write_all(format!("PRIVMSG {to} :{text}\r\nQUIT\r\n").as_bytes())?;
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    Ok(status)
}
