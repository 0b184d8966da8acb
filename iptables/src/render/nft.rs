//! `--format nft`: a script for `nft -f` that owns `table inet imspector`
//! (`ip` or `ip6` for one family). It creates the table if missing, deletes it
//! and builds it again, so loading it twice leaves one copy.

use super::join;
use crate::model::{self, ChainKind, Family, Plan, Rule};

pub fn render(plan: &Plan, families: &[Family], remove: bool) -> String {
    let family = match families {
        [Family::V4] => "ip",
        [Family::V6] => "ip6",
        _ => "inet",
    };
    let table = format!("table {family} imspector");
    // `delete` fails on a missing table, so declare it first.
    let mut out = format!("{table}\ndelete {table}\n");
    if remove {
        return out;
    }
    out.push_str(&format!("{table} {{\n"));
    for chain in model::chains(plan) {
        let (name, base) = base_chain(chain.kind);
        out.push_str(&format!("\tchain {name} {{\n\t\t{base}\n"));
        for rule in &chain.rules {
            for line in rule_lines(rule, families) {
                out.push_str(&format!("\t\t{line}\n"));
            }
        }
        out.push_str("\t}\n");
    }
    out.push_str("}\n");
    out
}

fn base_chain(kind: ChainKind) -> (&'static str, &'static str) {
    match kind {
        ChainKind::Incoming => (
            "prerouting",
            "type nat hook prerouting priority dstnat; policy accept;",
        ),
        ChainKind::Local => (
            "output",
            "type nat hook output priority -100; policy accept;",
        ),
        ChainKind::Transparent => (
            "prerouting",
            "type filter hook prerouting priority mangle; policy accept;",
        ),
    }
}

fn rule_lines(rule: &Rule, families: &[Family]) -> Vec<String> {
    match rule {
        Rule::SkipPrivate => families
            .iter()
            .map(|family| {
                let selector = match family {
                    Family::V4 => "ip daddr",
                    Family::V6 => "ip6 daddr",
                };
                format!(
                    "{selector} {{ {} }} return",
                    family.private_nets().join(", ")
                )
            })
            .collect(),
        Rule::SkipOwner(owner) => vec![format!("meta skuid {owner} return")],
        Rule::SkipMark(mark) => vec![format!("meta mark {mark} return")],
        Rule::Redirect {
            in_interface,
            owner,
            ports,
            to_port,
        } => {
            let owner = owner
                .as_ref()
                .map(|o| format!("meta skuid {o} "))
                .unwrap_or_default();
            vec![format!(
                "{}{owner}tcp dport {} redirect to :{to_port}",
                interface(in_interface.as_deref()),
                port_set(ports)
            )]
        }
        Rule::Tproxy {
            in_interface,
            ports,
            on_port,
            mark,
        } => vec![format!(
            "{}tcp dport {} tproxy to :{on_port} meta mark set {mark} accept",
            interface(in_interface.as_deref()),
            port_set(ports)
        )],
    }
}

fn interface(name: Option<&str>) -> String {
    name.map(|n| format!("iifname \"{n}\" "))
        .unwrap_or_default()
}

fn port_set(ports: &[u16]) -> String {
    match ports {
        [port] => port.to_string(),
        many => format!("{{ {} }}", join(many, ", ")),
    }
}
