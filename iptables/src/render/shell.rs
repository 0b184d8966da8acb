//! `--format shell`: iptables/ip6tables commands. Our chains are created or
//! emptied and refilled, and each jump is added only when missing, so running
//! the script again changes nothing.

use super::iptables::{command, placement, rule_args};
use super::{routing_commands, Target};
use crate::model::{self, Plan};

pub fn render(plan: &Plan, target: &Target) -> String {
    let chains = model::chains(plan);
    let mut out = String::new();
    if !target.remove {
        out.push_str("set -e\n");
    }
    for family in &target.families {
        out.push('\n');
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        for chain in &chains {
            let p = placement(chain.kind);
            let (table, name, hook) = (p.table, p.chain, p.hook);
            let ipt = format!("{} -t {table}", command(*family));
            if target.remove {
                line(format!(
                    "while {ipt} -D {hook} -j {name} 2>/dev/null; do :; done"
                ));
                line(format!("{ipt} -F {name} 2>/dev/null || true"));
                line(format!("{ipt} -X {name} 2>/dev/null || true"));
            } else {
                line(format!("{ipt} -N {name} 2>/dev/null || {ipt} -F {name}"));
                for rule in &chain.rules {
                    for args in rule_args(rule, *family) {
                        line(format!("{ipt} -A {name} {args}"));
                    }
                }
                line(format!(
                    "{ipt} -C {hook} -j {name} 2>/dev/null || {ipt} -A {hook} -j {name}"
                ));
            }
        }
        if let Some(routing) = model::routing(plan) {
            for command in routing_commands(routing, *family, target.remove) {
                line(command);
            }
        }
    }
    out
}
