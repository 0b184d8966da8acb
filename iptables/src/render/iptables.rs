//! What the shell and restore formats share: chain names and rule arguments
//! in iptables syntax.

use crate::model::{ChainKind, Family, Rule};

/// Where one of our chains lives in iptables.
pub struct Placement {
    pub table: &'static str,
    /// Our chain.
    pub chain: &'static str,
    /// The built-in chain that jumps to ours.
    pub hook: &'static str,
}

pub fn placement(kind: ChainKind) -> Placement {
    match kind {
        ChainKind::Incoming => Placement {
            table: "nat",
            chain: "IMSPECTOR",
            hook: "PREROUTING",
        },
        ChainKind::Local => Placement {
            table: "nat",
            chain: "IMSPECTOR_OUTPUT",
            hook: "OUTPUT",
        },
        ChainKind::Transparent => Placement {
            table: "mangle",
            chain: "IMSPECTOR",
            hook: "PREROUTING",
        },
    }
}

/// The `iptables` or `ip6tables` command of a family.
pub fn command(family: Family) -> &'static str {
    match family {
        Family::V4 => "iptables",
        Family::V6 => "ip6tables",
    }
}

/// The most ports one `-m multiport` match takes.
const MULTIPORT_MAX: usize = 15;

/// The arguments after `-A CHAIN` of the iptables rules for one model rule.
pub fn rule_args(rule: &Rule, family: Family) -> Vec<String> {
    match rule {
        Rule::SkipPrivate => family
            .private_nets()
            .iter()
            .map(|net| format!("-d {net} -j RETURN"))
            .collect(),
        Rule::SkipOwner(owner) => vec![format!("-m owner --uid-owner {owner} -j RETURN")],
        Rule::SkipMark(mark) => vec![format!("-m mark --mark {mark} -j RETURN")],
        Rule::Redirect {
            in_interface,
            owner,
            ports,
            to_port,
        } => {
            let mut matches = interface(in_interface.as_deref());
            matches.push_str("-p tcp ");
            if let Some(owner) = owner {
                matches.push_str(&format!("-m owner --uid-owner {owner} "));
            }
            port_matches(ports)
                .map(|ports| format!("{matches}{ports} -j REDIRECT --to-ports {to_port}"))
                .collect()
        }
        Rule::Tproxy {
            in_interface,
            ports,
            on_port,
            mark,
        } => {
            let matches = interface(in_interface.as_deref());
            port_matches(ports)
                .map(|ports| {
                    format!(
                        "{matches}-p tcp {ports} -j TPROXY --on-port {on_port} --tproxy-mark {mark}"
                    )
                })
                .collect()
        }
    }
}

fn interface(name: Option<&str>) -> String {
    name.map(|n| format!("-i {n} ")).unwrap_or_default()
}

fn port_matches(ports: &[u16]) -> impl Iterator<Item = String> + '_ {
    ports.chunks(MULTIPORT_MAX).map(|chunk| match chunk {
        [port] => format!("--dport {port}"),
        many => format!("-m multiport --dports {}", super::join(many, ",")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::owner;

    #[test]
    fn redirect_of_squid_connections() {
        let rule = Rule::Redirect {
            in_interface: None,
            owner: Some(owner("proxy", 13)),
            ports: vec![6667, 1863],
            to_port: 16667,
        };
        assert_eq!(
            rule_args(&rule, Family::V4),
            vec!["-p tcp -m owner --uid-owner proxy -m multiport --dports 6667,1863 -j REDIRECT --to-ports 16667"]
        );
    }

    #[test]
    fn more_than_fifteen_ports_take_several_rules() {
        let rule = Rule::Tproxy {
            in_interface: Some("eth1".into()),
            ports: (1..=16).collect(),
            on_port: 16667,
            mark: 1,
        };
        assert_eq!(
            rule_args(&rule, Family::V6),
            vec![
                "-i eth1 -p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 -j TPROXY --on-port 16667 --tproxy-mark 1",
                "-i eth1 -p tcp --dport 16 -j TPROXY --on-port 16667 --tproxy-mark 1",
            ]
        );
    }

    #[test]
    fn private_destinations_per_family() {
        assert_eq!(
            rule_args(&Rule::SkipPrivate, Family::V6),
            vec![
                "-d fc00::/7 -j RETURN",
                "-d ::1/128 -j RETURN",
                "-d fe80::/10 -j RETURN"
            ]
        );
        assert_eq!(rule_args(&Rule::SkipPrivate, Family::V4).len(), 5);
    }
}
