//! The rule model: which chains exist and which rules they hold, independent of
//! the firewall that will run them. Everything here is a pure function of [`Plan`].

use std::fmt;

/// An IP family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// Destinations that `--skip-private` leaves alone: private (RFC 1918, ULA),
    /// loopback and link-local networks.
    pub fn private_nets(self) -> &'static [&'static str] {
        match self {
            Family::V4 => &[
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "127.0.0.0/8",
                "169.254.0.0/16",
            ],
            Family::V6 => &["fc00::/7", "::1/128", "fe80::/10"],
        }
    }

    /// The address every local route of this family covers.
    pub fn any_net(self) -> &'static str {
        match self {
            Family::V4 => "0.0.0.0/0",
            Family::V6 => "::/0",
        }
    }
}

/// A local user, as given on the command line or in imspector.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The name or number as given; rules carry it unchanged so that they stay
    /// portable (iptables and nft resolve names when they load the rules).
    pub given: String,
    /// The uid on this machine, when known.
    pub uid: Option<u32>,
}

impl Owner {
    /// Whether both name the same account.
    pub fn same_as(&self, other: &Owner) -> bool {
        match (self.uid, other.uid) {
            (Some(a), Some(b)) => a == b,
            _ => self.given == other.given,
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.given)
    }
}

/// An enabled protocol and the destination ports that select it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: &'static str,
    pub ports: Vec<u16>,
}

/// How intercepted connections reach imspector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// nat REDIRECT to imspector's port; it reads the original destination back.
    Redirect,
    /// mangle TPROXY to a transparent listener, with policy routing: packets
    /// marked `mark` are delivered locally through routing table `table`.
    Tproxy { mark: u32, table: u32 },
}

/// Everything the rules depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// imspector's listening port.
    pub port: u16,
    pub services: Vec<Service>,
    pub in_interface: Option<String>,
    pub skip_private: bool,
    /// Squid's user: its own connections to IM ports are redirected too.
    pub squid_user: Option<Owner>,
    /// imspector's user: its connections are never redirected.
    pub daemon_user: Option<Owner>,
    /// imspector's `upstream_mark`: packets with it are never redirected.
    pub mark: Option<u32>,
    pub mode: Mode,
}

/// A combination of settings that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("no protocol is enabled: there is nothing to redirect")]
    NoProtocols,
    #[error("port {0} is imspector's own port and also an IM port: connections would loop")]
    PortIsImPort(u16),
    #[error("--squid-user needs --mode redirect: TPROXY cannot take connections that this host makes itself")]
    SquidInTproxyMode,
    #[error("Squid and imspector run as the same user ({0}): their connections cannot be told apart; run imspector as its own user, or set upstream_mark (--mark)")]
    SameUser(String),
    #[error("the upstream mark {0} equals the TPROXY mark: imspector's own connections would be routed back to it")]
    MarkClash(u32),
}

impl Plan {
    /// Checks the combination of settings.
    pub fn check(&self) -> Result<(), PlanError> {
        let ports = self.ports();
        if ports.is_empty() {
            return Err(PlanError::NoProtocols);
        }
        if ports.contains(&self.port) {
            return Err(PlanError::PortIsImPort(self.port));
        }
        if let Mode::Tproxy { mark, .. } = self.mode {
            if self.squid_user.is_some() {
                return Err(PlanError::SquidInTproxyMode);
            }
            if self.mark == Some(mark) {
                return Err(PlanError::MarkClash(mark));
            }
        }
        if let (Some(squid), Some(daemon)) = (&self.squid_user, &self.daemon_user) {
            if squid.same_as(daemon) && self.mark.is_none() {
                return Err(PlanError::SameUser(squid.given.clone()));
            }
        }
        Ok(())
    }

    /// Every IM port once, in protocol order.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = Vec::new();
        for port in self.services.iter().flat_map(|s| &s.ports) {
            if !ports.contains(port) {
                ports.push(*port);
            }
        }
        ports
    }

    /// imspector's user, when its connections must be skipped by owner. When it
    /// is also Squid's user the mark alone tells them apart ([`Plan::check`]).
    fn daemon_user_to_skip(&self) -> Option<&Owner> {
        let daemon = self.daemon_user.as_ref()?;
        match &self.squid_user {
            Some(squid) if squid.same_as(daemon) => None,
            _ => Some(daemon),
        }
    }
}

/// The chains this program owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainKind {
    /// nat, from PREROUTING: client traffic passing through the gateway.
    Incoming,
    /// nat, from OUTPUT: connections this host makes (Squid's).
    Local,
    /// mangle, from PREROUTING: client traffic for the transparent listener.
    Transparent,
}

/// A rule in one of our chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Leave private, loopback and link-local destinations alone.
    SkipPrivate,
    /// Leave this user's connections alone (imspector's own).
    SkipOwner(Owner),
    /// Leave packets with this mark alone (imspector's upstream connections).
    SkipMark(u32),
    /// Send TCP to these ports to imspector's port.
    Redirect {
        in_interface: Option<String>,
        owner: Option<Owner>,
        ports: Vec<u16>,
        to_port: u16,
    },
    /// Deliver TCP to these ports to the transparent listener, marked for local routing.
    Tproxy {
        in_interface: Option<String>,
        ports: Vec<u16>,
        on_port: u16,
        mark: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub kind: ChainKind,
    pub rules: Vec<Rule>,
}

/// The chains of a plan, each with its rules in order.
pub fn chains(plan: &Plan) -> Vec<Chain> {
    let skip_private = plan.skip_private.then_some(Rule::SkipPrivate);
    match plan.mode {
        Mode::Redirect => {
            let incoming = Chain {
                kind: ChainKind::Incoming,
                rules: skip_private
                    .clone()
                    .into_iter()
                    .chain([Rule::Redirect {
                        in_interface: plan.in_interface.clone(),
                        owner: None,
                        ports: plan.ports(),
                        to_port: plan.port,
                    }])
                    .collect(),
            };
            let local = plan.squid_user.as_ref().map(|squid| Chain {
                kind: ChainKind::Local,
                rules: plan
                    .daemon_user_to_skip()
                    .map(|d| Rule::SkipOwner(d.clone()))
                    .into_iter()
                    .chain(plan.mark.map(Rule::SkipMark))
                    .chain(skip_private)
                    .chain([Rule::Redirect {
                        in_interface: None,
                        owner: Some(squid.clone()),
                        ports: plan.ports(),
                        to_port: plan.port,
                    }])
                    .collect(),
            });
            [incoming].into_iter().chain(local).collect()
        }
        Mode::Tproxy { mark, .. } => vec![Chain {
            kind: ChainKind::Transparent,
            rules: skip_private
                .into_iter()
                .chain([Rule::Tproxy {
                    in_interface: plan.in_interface.clone(),
                    ports: plan.ports(),
                    on_port: plan.port,
                    mark,
                }])
                .collect(),
        }],
    }
}

/// The policy routing that TPROXY needs: marked packets are local.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routing {
    pub mark: u32,
    pub table: u32,
}

pub fn routing(plan: &Plan) -> Option<Routing> {
    match plan.mode {
        Mode::Redirect => None,
        Mode::Tproxy { mark, table } => Some(Routing { mark, table }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn owner(given: &str, uid: u32) -> Owner {
        Owner {
            given: given.to_string(),
            uid: Some(uid),
        }
    }

    pub fn irc_plan() -> Plan {
        Plan {
            port: 16667,
            services: vec![
                Service {
                    name: "IRC",
                    ports: vec![6667, 6697],
                },
                Service {
                    name: "MSN",
                    ports: vec![1863],
                },
            ],
            in_interface: None,
            skip_private: false,
            squid_user: None,
            daemon_user: None,
            mark: None,
            mode: Mode::Redirect,
        }
    }

    fn redirect(owner: Option<Owner>) -> Rule {
        Rule::Redirect {
            in_interface: None,
            owner,
            ports: vec![6667, 6697, 1863],
            to_port: 16667,
        }
    }

    #[test]
    fn plain_redirect_is_one_chain_with_one_rule() {
        assert_eq!(
            chains(&irc_plan()),
            vec![Chain {
                kind: ChainKind::Incoming,
                rules: vec![redirect(None)],
            }]
        );
        assert_eq!(routing(&irc_plan()), None);
    }

    #[test]
    fn skips_come_before_the_redirect_and_imspector_is_skipped_first() {
        let plan = Plan {
            skip_private: true,
            in_interface: Some("eth1".into()),
            squid_user: Some(owner("proxy", 13)),
            daemon_user: Some(owner("imspector", 120)),
            mark: Some(7),
            ..irc_plan()
        };
        let chains = chains(&plan);
        assert_eq!(chains.len(), 2);
        assert_eq!(chains[0].kind, ChainKind::Incoming);
        assert_eq!(
            chains[0].rules,
            vec![
                Rule::SkipPrivate,
                Rule::Redirect {
                    in_interface: Some("eth1".into()),
                    owner: None,
                    ports: vec![6667, 6697, 1863],
                    to_port: 16667,
                }
            ]
        );
        assert_eq!(chains[1].kind, ChainKind::Local);
        assert_eq!(
            chains[1].rules,
            vec![
                Rule::SkipOwner(owner("imspector", 120)),
                Rule::SkipMark(7),
                Rule::SkipPrivate,
                redirect(Some(owner("proxy", 13))),
            ]
        );
    }

    #[test]
    fn daemon_user_and_mark_only_matter_for_squid_connections() {
        let plan = Plan {
            daemon_user: Some(owner("imspector", 120)),
            mark: Some(7),
            ..irc_plan()
        };
        assert_eq!(chains(&plan), chains(&irc_plan()));
    }

    #[test]
    fn same_user_for_squid_and_imspector_needs_the_mark() {
        let mut plan = Plan {
            squid_user: Some(owner("proxy", 13)),
            daemon_user: Some(owner("13", 13)),
            ..irc_plan()
        };
        assert_eq!(plan.check(), Err(PlanError::SameUser("proxy".into())));
        plan.mark = Some(9);
        assert_eq!(plan.check(), Ok(()));
        assert_eq!(
            chains(&plan)[1].rules,
            vec![Rule::SkipMark(9), redirect(Some(owner("proxy", 13)))]
        );
    }

    #[test]
    fn unresolved_names_compare_by_name() {
        let a = Owner {
            given: "squid".into(),
            uid: None,
        };
        assert!(a.same_as(&a.clone()));
        assert!(!a.same_as(&owner("proxy", 13)));
    }

    #[test]
    fn tproxy_uses_one_mangle_chain_and_policy_routing() {
        let plan = Plan {
            mode: Mode::Tproxy {
                mark: 1,
                table: 100,
            },
            skip_private: true,
            mark: Some(7),
            ..irc_plan()
        };
        assert_eq!(plan.check(), Ok(()));
        assert_eq!(
            chains(&plan),
            vec![Chain {
                kind: ChainKind::Transparent,
                rules: vec![
                    Rule::SkipPrivate,
                    Rule::Tproxy {
                        in_interface: None,
                        ports: vec![6667, 6697, 1863],
                        on_port: 16667,
                        mark: 1,
                    }
                ],
            }]
        );
        assert_eq!(
            routing(&plan),
            Some(Routing {
                mark: 1,
                table: 100
            })
        );
    }

    #[test]
    fn impossible_combinations_are_refused() {
        let tproxy = Mode::Tproxy {
            mark: 1,
            table: 100,
        };
        let cases = [
            (
                Plan {
                    services: vec![],
                    ..irc_plan()
                },
                PlanError::NoProtocols,
            ),
            (
                Plan {
                    port: 6697,
                    ..irc_plan()
                },
                PlanError::PortIsImPort(6697),
            ),
            (
                Plan {
                    mode: tproxy,
                    squid_user: Some(owner("proxy", 13)),
                    ..irc_plan()
                },
                PlanError::SquidInTproxyMode,
            ),
            (
                Plan {
                    mode: tproxy,
                    mark: Some(1),
                    ..irc_plan()
                },
                PlanError::MarkClash(1),
            ),
        ];
        for (plan, error) in cases {
            assert_eq!(plan.check(), Err(error));
        }
    }

    #[test]
    fn ports_are_listed_once() {
        let mut plan = irc_plan();
        plan.services.push(Service {
            name: "IRC",
            ports: vec![6667],
        });
        assert_eq!(plan.ports(), vec![6667, 6697, 1863]);
    }
}
