//! libpurple's Gadu-Gadu support, through bitlbee-libpurple (Debian): bitlbee
//! runs in a namespace and the test drives its IRC side over a local socket.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;

use crate::netns::Netns;
use crate::process::Process;
use crate::wait;

const PORT: u16 = 6667;
const NICK: &str = "tester";
const CONTROL: &str = "&bitlbee";

pub struct Bitlbee {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// Every line bitlbee sent, for waiting and for failure messages.
    transcript: Vec<String>,
    /// A line still being read.
    partial: String,
    pub process: Process,
}

impl Bitlbee {
    /// Start bitlbee in `ns` (listening on its loopback) and register on its
    /// IRC side.
    pub fn start(ns: &Netns, dir: &Path) -> anyhow::Result<Self> {
        let config = dir.join("bitlbee.conf");
        std::fs::write(
            &config,
            format!(
                "[settings]\nRunMode = ForkDaemon\nUser = bitlbee\nDaemonInterface = 127.0.0.1\n\
                 DaemonPort = {PORT}\nAuthMode = Open\nConfigDir = {}\n",
                dir.display()
            ),
        )?;
        let mut command = ns.command("bitlbee");
        command
            .args(["-F", "-n", "-v", "-c"])
            .arg(&config)
            .env("HOME", dir);
        let process = Process::spawn("bitlbee", command, dir.join("bitlbee.out"))?;
        let stream = wait::until("bitlbee to listen", || {
            ns.run(|| TcpStream::connect((Ipv4Addr::LOCALHOST, PORT)))
                .ok()?
                .ok()
        })
        .map_err(|e| anyhow::anyhow!("{e}; bitlbee printed:\n{}", process.output()))?;
        stream.set_read_timeout(Some(std::time::Duration::from_millis(200)))?;
        let mut bitlbee = Bitlbee {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            transcript: Vec::new(),
            partial: String::new(),
            process,
        };
        bitlbee.send(&format!("NICK {NICK}"))?;
        bitlbee.send(&format!("USER {NICK} 0 * :{NICK}"))?;
        bitlbee.wait_for("the IRC welcome", |l| l.contains(" 001 "))?;
        Ok(bitlbee)
    }

    fn send(&mut self, line: &str) -> anyhow::Result<()> {
        self.writer.write_all(format!("{line}\r\n").as_bytes())?;
        Ok(())
    }

    /// Read lines until one satisfies `wanted` (earlier ones included).
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> anyhow::Result<String> {
        let mut checked = 0;
        let found = wait::until(what, || {
            while self
                .reader
                .read_line(&mut self.partial)
                .is_ok_and(|n| n > 0)
            {
                if self.partial.ends_with('\n') {
                    self.transcript.push(self.partial.trim_end().to_string());
                    self.partial.clear();
                }
            }
            let found = self.transcript[checked..]
                .iter()
                .find(|l| wanted(l))
                .cloned();
            checked = self.transcript.len();
            found
        });
        found.map_err(|e| {
            anyhow::anyhow!(
                "{e}; bitlbee said:\n{}\nand printed:\n{}",
                self.transcript.join("\n"),
                self.process.output()
            )
        })
    }

    /// A command in the control channel; waits for a reply containing `reply`.
    pub fn control(&mut self, command: &str, reply: &str) -> anyhow::Result<()> {
        self.send(&format!("PRIVMSG {CONTROL} :{command}"))?;
        self.wait_for(&format!("{reply:?} after {command:?}"), |l| {
            l.contains(CONTROL) && l.contains(reply)
        })?;
        Ok(())
    }

    /// Log in to Gadu-Gadu as `uin` on `server` (port 8074, the only one
    /// libpurple uses) and add `buddy` as the contact `nick`.
    pub fn login_gg(
        &mut self,
        uin: u32,
        server: Ipv4Addr,
        buddy: u32,
        nick: &str,
    ) -> anyhow::Result<()> {
        self.control(
            &format!("account add gg {uin} secret"),
            "Account successfully added",
        )?;
        self.control(&format!("account gg set gg_server {server}"), "gg_server")?;
        self.control("account gg on", "Logged in")?;
        self.control(&format!("add gg {buddy} {nick}"), "to contact list")?;
        Ok(())
    }

    /// Everything bitlbee said so far.
    pub fn transcript(&self) -> String {
        self.transcript.join("\n")
    }

    /// A private message to a contact.
    pub fn msg(&mut self, nick: &str, text: &str) -> anyhow::Result<()> {
        self.send(&format!("PRIVMSG {nick} :{text}"))
    }

    /// Tell a contact we are typing (bitlbee passes the CTCP on to libpurple
    /// once typing notices are on).
    pub fn typing(&mut self, nick: &str) -> anyhow::Result<()> {
        self.control("set typing_notice true", "typing_notice")?;
        self.send(&format!("PRIVMSG {nick} :\u{1}TYPING 1\u{1}"))
    }

    /// Wait until `from` wrote `text` to us.
    pub fn wait_msg(&mut self, from: &str, text: &str) -> anyhow::Result<()> {
        let want = format!("PRIVMSG {NICK} :{text}");
        let prefix = format!(":{from}!");
        self.wait_for(&format!("{text:?} from {from}"), |l| {
            l.starts_with(&prefix) && l.ends_with(&want)
        })?;
        Ok(())
    }
}
