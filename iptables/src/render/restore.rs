//! `--format restore`: input for `iptables-restore --noflush` of one family.
//! Declaring our chain empties it; the jump from the built-in chain is added
//! once, so the teardown must run before loading again.

use super::iptables::{placement, rule_args, Placement};
use crate::model::{self, Family, Plan};

pub fn render(plan: &Plan, family: Family, remove: bool) -> String {
    let chains = model::chains(plan);
    let mut out = String::new();
    for table in ["nat", "mangle"] {
        let in_table: Vec<_> = chains
            .iter()
            .filter(|c| placement(c.kind).table == table)
            .collect();
        if in_table.is_empty() {
            continue;
        }
        let placements: Vec<Placement> = in_table.iter().map(|c| placement(c.kind)).collect();
        let mut lines = vec![format!("*{table}")];
        if remove {
            lines.extend(
                placements
                    .iter()
                    .map(|p| format!("-D {} -j {}", p.hook, p.chain)),
            );
            lines.extend(placements.iter().map(|p| format!("-F {}", p.chain)));
            lines.extend(placements.iter().map(|p| format!("-X {}", p.chain)));
        } else {
            lines.extend(placements.iter().map(|p| format!(":{} - [0:0]", p.chain)));
            for (chain, p) in in_table.iter().zip(&placements) {
                for rule in &chain.rules {
                    lines.extend(
                        rule_args(rule, family)
                            .into_iter()
                            .map(|args| format!("-A {} {args}", p.chain)),
                    );
                }
            }
            lines.extend(
                placements
                    .iter()
                    .map(|p| format!("-A {} -j {}", p.hook, p.chain)),
            );
        }
        lines.push("COMMIT".to_string());
        for line in lines {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}
