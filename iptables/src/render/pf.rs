//! `--format pf`: rdr rules for an anchor, as BSD gateways (pfSense) used.
//! rdr sees incoming traffic only, so imspector's own connections can never
//! be caught; Squid's cannot be either.

use super::{join, RenderError};
use crate::model::{self, Family, Mode, Plan, Rule};

/// The anchor the rules are loaded into, so that they can be emptied alone.
const ANCHOR: &str = "imspector";

pub fn render(plan: &Plan, families: &[Family], remove: bool) -> Result<String, RenderError> {
    if plan.mode != Mode::Redirect {
        return Err(RenderError::PfTproxy);
    }
    if plan.squid_user.is_some() {
        return Err(RenderError::PfSquidUser);
    }
    if remove {
        return Ok(format!("pfctl -a {ANCHOR} -F nat\n"));
    }
    let mut out = String::new();
    for chain in model::chains(plan) {
        for rule in &chain.rules {
            for family in families {
                if let Some(line) = rule_line(rule, *family) {
                    out.push_str(&line);
                    out.push('\n');
                }
            }
        }
    }
    Ok(out)
}

fn rule_line(rule: &Rule, family: Family) -> Option<String> {
    let (af, loopback) = match family {
        Family::V4 => ("inet", "127.0.0.1"),
        Family::V6 => ("inet6", "::1"),
    };
    match rule {
        Rule::SkipPrivate => Some(format!(
            "no rdr {af} proto tcp from any to {{ {} }}",
            family.private_nets().join(", ")
        )),
        Rule::Redirect {
            in_interface,
            ports,
            to_port,
            ..
        } => {
            let on = in_interface
                .as_ref()
                .map(|i| format!("on {i} "))
                .unwrap_or_default();
            let ports = match ports.as_slice() {
                [port] => port.to_string(),
                many => format!("{{ {} }}", join(many, ", ")),
            };
            Some(format!(
                "rdr pass {on}{af} proto tcp from any to any port {ports} -> {loopback} port {to_port}"
            ))
        }
        // Only the rules of incoming traffic exist in pf.
        Rule::SkipOwner(_) | Rule::SkipMark(_) | Rule::Tproxy { .. } => None,
    }
}
