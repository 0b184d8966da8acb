//! Three namespaces: client -- gateway -- server, each link a veth pair with
//! IPv4 and IPv6 addresses. The gateway forwards; the client and the server
//! route through it, so a REDIRECT rule there catches the client's connections.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::netns::{run, unique, Netns};

pub struct Rig {
    pub client: Netns,
    pub gateway: Netns,
    pub server: Netns,
    pub client_ip: Ipv4Addr,
    pub server_ip: Ipv4Addr,
    pub client_ip6: Ipv6Addr,
    pub server_ip6: Ipv6Addr,
    /// Scratch space for configs, logs and client directories.
    pub dir: tempfile::TempDir,
}

impl Rig {
    pub fn new() -> anyhow::Result<Self> {
        anyhow::ensure!(
            nix::unistd::Uid::effective().is_root(),
            "the end-to-end rig needs root (network namespaces and iptables)"
        );
        let pid = std::process::id();
        let k = unique();
        let prefix = format!("ims{}x{k}", pid % 100_000);
        // Subnets unique per rig: 10.A.(2k).0/24 client side, 10.A.(2k+1).0/24 server side.
        let a = (100 + pid % 100) as u8;
        let (c, s) = ((2 * k % 256) as u8, (2 * k % 256 + 1) as u8);
        let rig = Rig {
            client: Netns::new(format!("{prefix}c"))?,
            gateway: Netns::new(format!("{prefix}g"))?,
            server: Netns::new(format!("{prefix}s"))?,
            client_ip: Ipv4Addr::new(10, a, c, 2),
            server_ip: Ipv4Addr::new(10, a, s, 2),
            client_ip6: format!("fd77:{a:x}:{c:x}::2").parse()?,
            server_ip6: format!("fd77:{a:x}:{s:x}::2").parse()?,
            dir: tempfile::Builder::new().prefix("imspector-rig").tempdir()?,
        };
        std::fs::set_permissions(
            rig.dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        rig.link(
            &rig.client,
            &format!("{prefix}c0"),
            &format!("{prefix}g0"),
            a,
            c,
        )?;
        rig.link(
            &rig.server,
            &format!("{prefix}s0"),
            &format!("{prefix}g1"),
            a,
            s,
        )?;
        rig.gateway
            .exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        rig.gateway
            .exec("sysctl", &["-qw", "net.ipv6.conf.all.forwarding=1"])?;
        Ok(rig)
    }

    /// A veth pair between `ns` (host .2 / ::2) and the gateway (.1 / ::1),
    /// with `ns` routing through the gateway.
    fn link(&self, ns: &Netns, inner: &str, outer: &str, a: u8, net: u8) -> anyhow::Result<()> {
        run(
            "ip",
            &["link", "add", inner, "type", "veth", "peer", "name", outer],
        )?;
        run("ip", &["link", "set", inner, "netns", &ns.name])?;
        run("ip", &["link", "set", outer, "netns", &self.gateway.name])?;
        let v4 = |host: u8| format!("10.{a}.{net}.{host}");
        let v6 = |host: u8| format!("fd77:{a:x}:{net:x}::{host}");
        ns.exec(
            "ip",
            &["addr", "add", &format!("{}/24", v4(2)), "dev", inner],
        )?;
        ns.exec(
            "ip",
            &[
                "-6",
                "addr",
                "add",
                &format!("{}/64", v6(2)),
                "dev",
                inner,
                "nodad",
            ],
        )?;
        ns.exec("ip", &["link", "set", inner, "up"])?;
        ns.exec("ip", &["route", "add", "default", "via", &v4(1)])?;
        ns.exec("ip", &["-6", "route", "add", "default", "via", &v6(1)])?;
        let gw = &self.gateway;
        gw.exec(
            "ip",
            &["addr", "add", &format!("{}/24", v4(1)), "dev", outer],
        )?;
        gw.exec(
            "ip",
            &[
                "-6",
                "addr",
                "add",
                &format!("{}/64", v6(1)),
                "dev",
                outer,
                "nodad",
            ],
        )?;
        gw.exec("ip", &["link", "set", outer, "up"])?;
        Ok(())
    }

    /// The classic rules: REDIRECT the client's connections to these ports to
    /// imspector's port, for IPv4 and IPv6.
    pub fn redirect(&self, ports: &[u16], to: u16) -> anyhow::Result<()> {
        for tool in ["iptables", "ip6tables"] {
            for port in ports {
                self.gateway.exec(
                    tool,
                    &[
                        "-t",
                        "nat",
                        "-A",
                        "PREROUTING",
                        "-p",
                        "tcp",
                        "--dport",
                        &port.to_string(),
                        "-j",
                        "REDIRECT",
                        "--to-ports",
                        &to.to_string(),
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// The Squid-style rule: REDIRECT connections of local processes of `uid`.
    pub fn redirect_owner(&self, uid: u32, ports: &[u16], to: u16) -> anyhow::Result<()> {
        for port in ports {
            self.gateway.exec(
                "iptables",
                &[
                    "-t",
                    "nat",
                    "-A",
                    "OUTPUT",
                    "-p",
                    "tcp",
                    "--dport",
                    &port.to_string(),
                    "-m",
                    "owner",
                    "--uid-owner",
                    &uid.to_string(),
                    "-j",
                    "REDIRECT",
                    "--to-ports",
                    &to.to_string(),
                ],
            )?;
        }
        Ok(())
    }

    /// The gateway's address on the client's link.
    pub fn gateway_ip_towards_client(&self) -> Ipv4Addr {
        let [a, b, c, _] = self.client_ip.octets();
        Ipv4Addr::new(a, b, c, 1)
    }

    /// The gateway's address on the server's link.
    pub fn gateway_ip_towards_server(&self) -> Ipv4Addr {
        let [a, b, c, _] = self.server_ip.octets();
        Ipv4Addr::new(a, b, c, 1)
    }

    /// Generate rules with the workspace's imspector-rules and apply them in the
    /// gateway, as an admin's firewall script would. Returns the script.
    pub fn apply_generated_rules(&self, args: &[&str]) -> anyhow::Result<String> {
        let rules =
            std::process::Command::new(crate::imspector::workspace_binary("imspector-rules"))
                .arg("generate")
                .args(args)
                .output()?;
        anyhow::ensure!(
            rules.status.success(),
            "imspector-rules {args:?}: {rules:?}"
        );
        let script = self.dir.path().join("rules.sh");
        std::fs::write(&script, &rules.stdout)?;
        self.gateway
            .exec("sh", &[script.to_str().expect("utf-8 path")])?;
        Ok(String::from_utf8(rules.stdout)?)
    }

    /// A fresh directory inside the rig's scratch space, writable by anyone
    /// (clients may run as other users).
    pub fn subdir(&self, name: &str) -> anyhow::Result<std::path::PathBuf> {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path)?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
        Ok(path)
    }
}
