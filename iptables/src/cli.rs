//! The command line: turns flags and imspector.conf into a [`Plan`] and a
//! [`Target`], and runs the subcommands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use imspector::config::{Config, ConfigError, Settings, DEFAULT_CONFIG_PATH};
use imspector_protocols::ProtocolKind;

use crate::model::{Family, Mode, Owner, Plan, PlanError, Service};
use crate::render::{self, Format, RenderError, Target};
use crate::snippets;

/// Bad input: a flag, a configuration value or a combination that cannot work.
const EXIT_BAD_INPUT: u8 = 2;
/// The output could not be written.
const EXIT_IO: u8 = 1;

/// imspector's port when neither the config nor --port names one.
const DEFAULT_PORT: u16 = 16667;

/// Generates the firewall rules that send instant-messenger traffic to imspector.
#[derive(Parser)]
#[command(name = "imspector-rules", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the rules (or with --remove their teardown) on stdout
    Generate(GenerateArgs),
    /// Write the ready-made snippets into DIR (iptables/snippets in the source tree)
    Snippets {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Args)]
struct GenerateArgs {
    /// imspector.conf to take the port, the enabled protocols with their ports
    /// (<proto>_ports), `user` (as --daemon-user) and `upstream_mark` (as
    /// --mark) from [default: /etc/imspector/imspector.conf, unless --protocols]
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Protocols to redirect, with their default ports, instead of reading
    /// imspector.conf: a comma-separated list of irc, msn, icq, yahoo, gg,
    /// jabber, or `all`
    #[arg(long, value_name = "LIST", conflicts_with = "config")]
    protocols: Option<String>,

    /// imspector's listening port [default: `port` of imspector.conf, or 16667]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,

    /// Output format
    #[arg(long, value_enum, default_value = "shell")]
    format: Format,

    /// IP families to cover; --format restore needs ipv4 or ipv6
    #[arg(long, value_enum, default_value = "both")]
    family: FamilyArg,

    /// How intercepted connections reach imspector
    #[arg(long, value_enum, default_value = "redirect")]
    mode: ModeArg,

    /// Only catch client connections arriving on this interface
    #[arg(long, value_name = "IF")]
    in_interface: Option<String>,

    /// Leave connections to private (RFC 1918, ULA), loopback and link-local
    /// destinations alone
    #[arg(long)]
    skip_private: bool,

    /// Also redirect the connections Squid itself makes to IM ports (nat
    /// OUTPUT, owner match on this user)
    #[arg(long, value_name = "NAME|UID")]
    squid_user: Option<String>,

    /// The user imspector runs as: its own connections are never redirected
    /// [default: `user` of imspector.conf]
    #[arg(long, value_name = "NAME|UID")]
    daemon_user: Option<String>,

    /// The firewall mark imspector sets on its upstream connections: packets
    /// with it are never redirected [default: `upstream_mark` of imspector.conf]
    #[arg(long, value_name = "N", value_parser = imspector::config::parse_mark)]
    mark: Option<u32>,

    /// Mark for intercepted packets under --mode tproxy, used by the policy routing
    #[arg(long, value_name = "N", value_parser = imspector::config::parse_mark, default_value = "1")]
    tproxy_mark: u32,

    /// Routing table that delivers marked packets locally under --mode tproxy
    #[arg(long, value_name = "N", value_parser = parse_table, default_value = "100")]
    route_table: u32,

    /// Print the teardown of what the same command without --remove sets up
    #[arg(long)]
    remove: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum FamilyArg {
    /// IPv4 only (iptables)
    Ipv4,
    /// IPv6 only (ip6tables)
    Ipv6,
    /// IPv4 and IPv6
    Both,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    /// nat REDIRECT to imspector's port
    Redirect,
    /// mangle TPROXY to imspector's transparent listener (imspector must run
    /// with tproxy=on), with policy routing
    Tproxy,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Usage(#[from] clap::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("--protocols: unknown protocol {0:?}; known: irc, msn, icq, yahoo, gg, jabber, all")]
    UnknownProtocol(String),
    #[error("{option}: {value:?} is not a user name or uid")]
    BadUser { option: &'static str, value: String },
    #[error("--in-interface: {0:?} is not an interface name")]
    BadInterface(String),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("{path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// The command-line definition, for the man page and the shell completions.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// Runs the program with `args` (the first is the program name).
pub fn run(args: Vec<String>) -> ExitCode {
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with status 0, mistakes to stderr with 2.
            let _ = e.print();
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    let result = match cli.command {
        Command::Generate(generate_args) => {
            let invocation = invocation(&args[1..]);
            generate(generate_args, invocation).map(|text| print!("{text}"))
        }
        Command::Snippets { dir } => snippets::write_all(&dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imspector-rules: error: {e}");
            match e {
                CliError::Write { .. } => ExitCode::from(EXIT_IO),
                _ => ExitCode::from(EXIT_BAD_INPUT),
            }
        }
    }
}

/// The output of `imspector-rules generate ARGS`.
pub fn generate_with(args: &[&str]) -> Result<String, CliError> {
    let argv: Vec<&str> = ["imspector-rules", "generate"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    let invocation = invocation(&argv[1..]);
    let parsed = GenerateOnly::try_parse_from(argv.iter().skip(1))?;
    generate(parsed.args, invocation)
}

/// `generate` on its own, for callers that only generate.
#[derive(Parser)]
#[command(name = "generate")]
struct GenerateOnly {
    #[command(flatten)]
    args: GenerateArgs,
}

fn generate(args: GenerateArgs, invocation: String) -> Result<String, CliError> {
    let defaults = match &args.protocols {
        Some(list) => Defaults::from_protocols(list)?,
        None => Defaults::from_config(args.config.as_deref())?,
    };
    let families = match args.family {
        FamilyArg::Ipv4 => vec![Family::V4],
        FamilyArg::Ipv6 => vec![Family::V6],
        FamilyArg::Both => vec![Family::V4, Family::V6],
    };
    if let Some(name) = &args.in_interface {
        if !is_interface_name(name) {
            return Err(CliError::BadInterface(name.clone()));
        }
    }
    let daemon_user = match args.daemon_user {
        Some(given) => Some(owner("--daemon-user", &given)?),
        None => defaults.daemon_user,
    };
    let plan = Plan {
        port: args.port.unwrap_or(defaults.port),
        services: defaults.services,
        in_interface: args.in_interface,
        skip_private: args.skip_private,
        squid_user: args
            .squid_user
            .map(|given| owner("--squid-user", &given))
            .transpose()?,
        daemon_user,
        mark: args.mark.or(defaults.mark),
        mode: match args.mode {
            ModeArg::Redirect => Mode::Redirect,
            ModeArg::Tproxy => Mode::Tproxy {
                mark: args.tproxy_mark,
                table: args.route_table,
            },
        },
    };
    plan.check()?;
    let target = Target {
        format: args.format,
        families,
        remove: args.remove,
        invocation,
    };
    Ok(render::render(&plan, &target)?)
}

/// What the rules take from imspector.conf, or from --protocols.
struct Defaults {
    port: u16,
    services: Vec<Service>,
    daemon_user: Option<Owner>,
    mark: Option<u32>,
}

impl Defaults {
    fn from_protocols(list: &str) -> Result<Self, CliError> {
        let mut kinds = Vec::new();
        for name in list.split(',').map(str::trim) {
            match name {
                "all" => kinds.extend(ProtocolKind::ALL),
                _ => kinds.push(
                    ProtocolKind::from_config_prefix(name)
                        .ok_or_else(|| CliError::UnknownProtocol(name.to_string()))?,
                ),
            }
        }
        Ok(Defaults {
            port: DEFAULT_PORT,
            services: ProtocolKind::ALL
                .into_iter()
                .filter(|kind| kinds.contains(kind))
                .map(|kind| service(kind, kind.default_ports().to_vec()))
                .collect(),
            daemon_user: None,
            mark: None,
        })
    }

    fn from_config(path: Option<&Path>) -> Result<Self, CliError> {
        let path = path.unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
        let settings = Settings::load(path)?;
        for warning in &settings.warnings {
            eprintln!("imspector-rules: warning: {warning}");
        }
        let config = Config::from_settings(settings)?;
        let daemon_user = match &config.user {
            Some(given) => Some(
                parse_owner(given)
                    .ok_or_else(|| config.settings.bad("user", "not a user name or uid"))?,
            ),
            None => None,
        };
        Ok(Defaults {
            port: config.port,
            services: config
                .routes
                .protocols
                .iter()
                .map(|(kind, ports)| service(*kind, ports.clone()))
                .collect(),
            daemon_user,
            mark: config.upstream_mark,
        })
    }
}

fn service(kind: ProtocolKind, ports: Vec<u16>) -> Service {
    Service {
        name: kind.log_name(),
        ports,
    }
}

fn owner(option: &'static str, given: &str) -> Result<Owner, CliError> {
    parse_owner(given).ok_or_else(|| CliError::BadUser {
        option,
        value: given.to_string(),
    })
}

/// A uid, or a user name (looked up here when the account exists).
fn parse_owner(given: &str) -> Option<Owner> {
    if let Ok(uid) = given.parse::<u32>() {
        return Some(Owner {
            given: given.to_string(),
            uid: Some(uid),
        });
    }
    let mut chars = given.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !(first_ok && rest_ok && given.len() <= 32) {
        return None;
    }
    let uid = nix::unistd::User::from_name(given)
        .ok()
        .flatten()
        .map(|user| user.uid.as_raw());
    Some(Owner {
        given: given.to_string(),
        uid,
    })
}

/// Linux interface names: 1 to 15 characters, none that a shell or nft would
/// treat specially.
fn is_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// A routing table number that is not one of the kernel's own.
fn parse_table(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(0 | 253..=255) => Err("0, 253, 254 and 255 are reserved tables".to_string()),
        Ok(table) => Ok(table),
        Err(_) => Err("not a number".to_string()),
    }
}

/// The command line as a shell would take it back.
fn invocation<S: AsRef<str>>(args: &[S]) -> String {
    let quoted: Vec<String> = args
        .iter()
        .map(|arg| {
            let arg = arg.as_ref();
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.,/=:+".contains(c));
            if plain {
                arg.to_string()
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect();
    format!("imspector-rules {}", quoted.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_and_tables() {
        assert_eq!(parse_table("100"), Ok(100));
        assert!(parse_table("254").is_err());
    }

    #[test]
    fn users_are_names_or_uids() {
        assert_eq!(parse_owner("13").unwrap().uid, Some(13));
        assert_eq!(parse_owner("root").unwrap().uid, Some(0));
        assert_eq!(parse_owner("no-such-user-here").unwrap().uid, None);
        assert!(parse_owner("bad name").is_none());
        assert!(parse_owner("-x").is_none());
        assert!(parse_owner("").is_none());
    }

    #[test]
    fn interface_names() {
        assert!(is_interface_name("eth0.10"));
        assert!(!is_interface_name("eth0\"; flush"));
        assert!(!is_interface_name("a-very-long-interface"));
    }

    #[test]
    fn invocation_is_quoted_for_a_shell() {
        assert_eq!(
            invocation(&["generate", "-c", "/etc/my conf"]),
            "imspector-rules generate -c '/etc/my conf'"
        );
    }
}
