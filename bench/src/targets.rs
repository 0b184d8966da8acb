//! What the load goes through: nothing (the ceiling), imspector, haproxy in
//! TCP mode, socat forking per connection. All relay with 64 KiB buffers.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::lab::{
    SinkPort, IMSPECTOR_PORT, INSPECTED_PORTS, IPERF_IP, PLAIN_CLIENT_IP, PROXY_IP,
    REDIRECTED_CLIENT_IP, SINK_IP,
};
use crate::load::EventStore;
use crate::measure;

/// Where the imspector target logs its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogTo {
    Files,
    Sqlite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Direct,
    Imspector,
    Haproxy,
    Socat,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Direct => "direct",
            Kind::Imspector => "imspector",
            Kind::Haproxy => "haproxy",
            Kind::Socat => "socat",
        })
    }
}

/// haproxy listens on this plus the sink port, socat on [`SOCAT_BASE`] plus it.
const HAPROXY_BASE: u16 = 20000;
const SOCAT_BASE: u16 = 30000;
/// haproxy listens on this plus an inspected port for the iperf3 servers.
const HAPROXY_IPERF_BASE: u16 = 11000;

/// A running relay (or none, for the direct connection).
pub struct Target {
    pub kind: Kind,
    /// Processes whose CPU and memory count as the relay's.
    pids: Vec<i32>,
    children: Vec<Child>,
    /// Where imspector logs its events.
    pub events: Option<EventStore>,
    _dir: tempfile::TempDir,
}

impl Target {
    pub fn start(kind: Kind, imspector: &Path, log_to: LogTo) -> anyhow::Result<Self> {
        Self::start_with(kind, imspector, log_to, "")
    }

    /// [`Target::start`], with `extra` options for imspector.
    pub fn start_with(
        kind: Kind,
        imspector: &Path,
        log_to: LogTo,
        extra: &str,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("imspector-bench-{kind}"))
            .tempdir()?;
        let path = dir.path().to_path_buf();
        let mut target = Target {
            kind,
            pids: Vec::new(),
            children: Vec::new(),
            events: None,
            _dir: dir,
        };
        match kind {
            Kind::Direct => {}
            Kind::Imspector => {
                let (store, logging) = match log_to {
                    LogTo::Files => {
                        let dir = path.join("logs");
                        let line = format!("file_logging_dir={}\n", dir.display());
                        (EventStore::Files(dir), line)
                    }
                    LogTo::Sqlite => {
                        let db = path.join("events.db");
                        let line = format!(
                            "sqlite_file={}\nspool_dir={}\n",
                            db.display(),
                            path.join("spool").display()
                        );
                        (EventStore::Sqlite(db), line)
                    }
                };
                let pid_file = path.join("imspector.pid");
                let config = path.join("imspector.conf");
                // max_connections: the idle workload holds 9,980 connections, and
                // the default keeps 256 descriptors spare (9,872 under a limit of 20,000).
                std::fs::write(
                    &config,
                    format!(
                        "port={IMSPECTOR_PORT}\nlistenaddr={PROXY_IP}\npidfilename={}\nmax_connections=9990\n\
                         yahoo_protocol=on\nyahoo_ports={}\n\
                         irc_protocol=on\nirc_ports={},{},{}\n\
                         msn_protocol=on\ngg_protocol=on\nicq_protocol=on\njabber_protocol=on\n{logging}{extra}",
                        pid_file.display(),
                        SinkPort::Plain.port(),
                        SinkPort::Irc.port(),
                        SinkPort::IrcLatency.port(),
                        SinkPort::IrcEcho.port(),
                    ),
                )?;
                // Without -d: as in production (daemon, no event echo on stderr).
                let status = Command::new(imspector)
                    .arg("-c")
                    .arg(&config)
                    .status()
                    .with_context(|| imspector.display().to_string())?;
                if !status.success() {
                    bail!(
                        "{} -c {} failed: {status}",
                        imspector.display(),
                        config.display()
                    );
                }
                let pid = poll("imspector's pid file", || {
                    std::fs::read_to_string(&pid_file)
                        .ok()
                        .and_then(|t| t.trim().parse::<i32>().ok())
                })?;
                target.pids.push(pid);
                target.events = Some(store);
                wait_listening(IMSPECTOR_PORT, Path::new("/dev/null"))?;
            }
            Kind::Haproxy => {
                let config = path.join("haproxy.cfg");
                let mut text = String::from(
                    "global\n  maxconn 9985\n  nbthread 2\n  tune.bufsize 65536\n\
                     defaults\n  mode tcp\n  maxconn 9985\n  timeout connect 5s\n\
                     timeout client 1h\n  timeout server 1h\n",
                );
                for port in SinkPort::ALL {
                    text.push_str(&format!(
                        "listen p{0}\n  bind {PROXY_IP}:{1}\n  server sink {SINK_IP}:{0}\n",
                        port.port(),
                        HAPROXY_BASE + port.port()
                    ));
                }
                for port in INSPECTED_PORTS {
                    text.push_str(&format!(
                        "listen iperf{port}\n  bind {PROXY_IP}:{}\n  server iperf {IPERF_IP}:{port}\n",
                        HAPROXY_IPERF_BASE + port
                    ));
                }
                std::fs::write(&config, text)?;
                let child = spawn(
                    Command::new("haproxy").arg("-db").arg("-f").arg(&config),
                    &path.join("haproxy.out"),
                )?;
                target.add(child);
                for port in SinkPort::ALL {
                    wait_listening(HAPROXY_BASE + port.port(), &path.join("haproxy.out"))?;
                }
            }
            Kind::Socat => {
                for port in SinkPort::ALL {
                    let child = spawn(
                        Command::new("socat").args([
                            "-b65536",
                            // Wait this long for the other direction after a half-close.
                            "-t5",
                            &format!(
                                "TCP-LISTEN:{},bind={PROXY_IP},fork,reuseaddr,backlog=4096",
                                SOCAT_BASE + port.port()
                            ),
                            &format!("TCP:{}", port.addr()),
                        ]),
                        &path.join(format!("socat-{}.out", port.port())),
                    )?;
                    target.add(child);
                    let out = path.join(format!("socat-{}.out", port.port()));
                    wait_listening(SOCAT_BASE + port.port(), &out)?;
                }
            }
        }
        Ok(target)
    }

    /// Pin every thread of the relay's processes to `cpus` (`taskset -c`).
    pub fn pin(&self, cpus: &str) -> anyhow::Result<()> {
        for pid in &self.pids {
            let status = Command::new("taskset")
                .args(["-a", "-p", "-c", cpus, &pid.to_string()])
                .stdout(Stdio::null())
                .status()
                .context("taskset (util-linux)")?;
            if !status.success() {
                bail!("taskset -a -p -c {cpus} {pid}: {status}");
            }
        }
        Ok(())
    }

    fn add(&mut self, child: Child) {
        self.pids.push(child.id() as i32);
        self.children.push(child);
    }

    /// The source address a client binds and the address it connects to.
    pub fn route(&self, port: SinkPort) -> (Ipv4Addr, SocketAddr) {
        let via = |base: u16| SocketAddr::new(IpAddr::V4(PROXY_IP), base + port.port());
        match self.kind {
            Kind::Direct => (PLAIN_CLIENT_IP, port.addr()),
            // The client connects to the server; the REDIRECT rule does the rest.
            Kind::Imspector => (REDIRECTED_CLIENT_IP, port.addr()),
            Kind::Haproxy => (PLAIN_CLIENT_IP, via(HAPROXY_BASE)),
            Kind::Socat => (PLAIN_CLIENT_IP, via(SOCAT_BASE)),
        }
    }

    /// The source address and destination of an iperf3 client whose server
    /// listens on `port`; `None` where this target does not relay it.
    pub fn iperf_route(&self, port: u16) -> Option<(Ipv4Addr, SocketAddr)> {
        let server = SocketAddr::new(IpAddr::V4(IPERF_IP), port);
        match self.kind {
            Kind::Direct => Some((PLAIN_CLIENT_IP, server)),
            Kind::Imspector => Some((REDIRECTED_CLIENT_IP, server)),
            Kind::Haproxy => Some((
                PLAIN_CLIENT_IP,
                SocketAddr::new(IpAddr::V4(PROXY_IP), HAPROXY_IPERF_BASE + port),
            )),
            Kind::Socat => None,
        }
    }

    /// CPU seconds used so far by the relay's processes (0 for direct).
    pub fn cpu_seconds(&self) -> f64 {
        self.pids.iter().map(|&p| measure::cpu_seconds(p)).sum()
    }

    /// Memory of the relay's processes and their children, KiB.
    pub fn memory_kib(&self) -> u64 {
        self.pids.iter().map(|&p| measure::memory_kib(p)).sum()
    }

    pub fn is_relay(&self) -> bool {
        self.kind != Kind::Direct
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        for &pid in &self.pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        for child in &mut self.children {
            let _ = kill(Pid::from_raw(-(child.id() as i32)), Signal::SIGTERM);
            let _ = child.wait();
        }
        if self.kind == Kind::Imspector {
            // A daemon is not our child: wait for it to be gone (or a zombie).
            for &pid in &self.pids {
                let _ = poll("imspector to stop", || {
                    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
                    match stat {
                        Ok(s) if !s.contains(") Z") => None,
                        _ => Some(()),
                    }
                });
            }
        }
    }
}

fn spawn(command: &mut Command, output: &Path) -> anyhow::Result<Child> {
    let out = std::fs::File::create(output)?;
    command
        // Its own process group, so that stopping it stops its forks too.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("{command:?}"))
}

/// Wait until something listens on TCP `port` in this namespace; on failure
/// show what the program printed to `output`.
fn wait_listening(port: u16, output: &Path) -> anyhow::Result<()> {
    let needle = format!(":{port:04X} 00000000:0000 0A");
    poll(&format!("a listener on port {port}"), || {
        std::fs::read_to_string("/proc/net/tcp")
            .ok()
            .filter(|t| t.contains(&needle))
            .map(|_| ())
    })
    .with_context(|| std::fs::read_to_string(output).unwrap_or_default())
}

fn poll<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Some(v) = check() {
            return Ok(v);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("timed out waiting for {what}")
}
