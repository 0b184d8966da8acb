//! The bench's own network namespace: everything runs over loopback inside a
//! namespace this process creates for itself (gone when the process ends), so
//! the machine's firewall and ports are never touched.
//!
//! Addresses on `lo`:
//! - 127.0.0.2: the sink (the "IM servers").
//! - 127.0.0.3: clients whose connections an OUTPUT REDIRECT rule sends to
//!   imspector, as a gateway's PREROUTING rule would.
//! - 127.0.0.4: clients of the direct connection, haproxy and socat (no rule).
//! - 127.0.0.5: iperf3 servers, one per inspected port.
//! - 127.0.0.1: the listeners of imspector, haproxy and socat.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;

use anyhow::{bail, Context};

pub const SINK_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
pub const REDIRECTED_CLIENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
pub const PLAIN_CLIENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
pub const PROXY_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
pub const IPERF_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
/// Every port a core inspects: the iperf3 workload runs through each.
pub const INSPECTED_PORTS: [u16; 7] = [6667, 1863, 8074, 5190, 5050, 5222, 5223];
/// imspector's listening port.
pub const IMSPECTOR_PORT: u16 = 16667;

/// The sink's ports, one per kind of traffic. imspector relays 5050 plainly
/// (the Yahoo parser sees no YMSG header in the first bytes and stops) and
/// parses the IRC ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkPort {
    /// Count bytes, answer the count at end of stream. Uninspected.
    Plain = 5050,
    /// Count bytes, answer the count. IRC, parsed.
    Irc = 6667,
    /// IRC lines carrying send timestamps; answer the one-way latencies.
    IrcLatency = 6668,
    /// Echo everything back (to know a connection is set up end to end).
    IrcEcho = 6669,
}

impl SinkPort {
    pub const ALL: [SinkPort; 4] = [
        SinkPort::Plain,
        SinkPort::Irc,
        SinkPort::IrcLatency,
        SinkPort::IrcEcho,
    ];

    pub fn port(self) -> u16 {
        self as u16
    }

    pub fn addr(self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(SINK_IP), self.port())
    }
}

/// Move this process into a new network namespace with `lo` up and the
/// REDIRECT rule in place. Must run before any thread is started: threads
/// created later, and child processes, inherit the namespace.
pub fn enter() -> anyhow::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .context("unshare(CLONE_NEWNET): the bench needs root")?;
    run("ip", &["link", "set", "lo", "up"])?;
    // Many short connections per run: let new ones reuse TIME_WAIT ports.
    run("sysctl", &["-qw", "net.ipv4.tcp_tw_reuse=1"])?;
    // Ephemeral ports above the relays' listening ports (up to 36669), or
    // tens of thousands of closed connections can hold a listener's port.
    run(
        "sysctl",
        &["-qw", "net.ipv4.ip_local_port_range=36700 60999"],
    )?;
    for server in [SINK_IP, IPERF_IP] {
        run(
            "iptables",
            &[
                "-t",
                "nat",
                "-A",
                "OUTPUT",
                "-p",
                "tcp",
                "-s",
                &REDIRECTED_CLIENT_IP.to_string(),
                "-d",
                &server.to_string(),
                "-j",
                "REDIRECT",
                "--to-ports",
                &IMSPECTOR_PORT.to_string(),
            ],
        )?;
    }
    Ok(())
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
