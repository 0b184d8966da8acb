//! The `imspector` daemon: command line, configuration, binding, daemonizing and
//! dropping privileges happen here, before the async runtime exists.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use imspector::cli::{CaAction, Cli, Command};
use imspector::config::{Config, Settings, DEFAULT_CONFIG_PATH};
use imspector::icap::IcapConfig;
use imspector::{daemon, diag, net, tls};

/// jemalloc (see `imspector::memory`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit codes a firewall script can act on.
const EXIT_RUNTIME: u8 = 1;
const EXIT_CONFIG: u8 = 2;
const EXIT_STARTUP: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Ca {
        action: CaAction::Create { dir },
    }) = &cli.command
    {
        return match tls::ca::create(dir) {
            Ok((cert, key)) => {
                print!("{}", tls::ca::install_instructions(&cert, &key));
                ExitCode::SUCCESS
            }
            Err(e) => fail(EXIT_CONFIG, &e),
        };
    }
    let (settings, config_path) = match load_settings(cli.config.as_deref()) {
        Ok(found) => found,
        Err(e) => return fail(EXIT_CONFIG, &e),
    };
    let warnings = [settings.warnings.clone(), settings.unsupported()].concat();
    let config = match Config::from_settings(settings) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_CONFIG, &e),
    };
    if let Some(dir) = config.settings.path("chroot_dir") {
        if let Err(e) = daemon::change_root(&dir) {
            return fail(EXIT_STARTUP, &e);
        }
    }
    // Keys are read now: after privileges are dropped they may be unreadable.
    let interceptor = match tls::Interceptor::from_settings(&config.settings) {
        Ok(i) => i,
        Err(e) => return fail(EXIT_CONFIG, &e),
    };
    if cli.check_config {
        let holds_password = config.settings.get("mysql_password").is_some()
            || config
                .settings
                .get("pgsql_connect")
                .is_some_and(|c| c.contains("password"));
        let exposed = config_path
            .as_deref()
            .filter(|_| holds_password)
            .and_then(imspector::trusted_path::readable_by_others);
        for w in warnings.iter().chain(&exposed) {
            eprintln!("imspector: warning: {w}");
        }
    }
    // What a start needs from the configuration is checked before anything
    // starts, so a bad option is exit 2 with its line in either case.
    if let Err(e) = imspector::check(&config) {
        return fail(EXIT_CONFIG, &e);
    }
    if cli.check_config {
        println!("{}: configuration OK", config.settings.source);
        return ExitCode::SUCCESS;
    }
    diag::init(cli.debug);
    if config_path.is_none() {
        log::warn!("no configuration file: using the embedded default (every protocol, file logs under ./{})", imspector::config::EMBEDDED_LOG_DIR);
    }
    for w in &warnings {
        log::warn!("{w}");
    }
    match start(cli.debug, config, config_path, interceptor) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, e)) => {
            log::error!("{e:#}");
            fail(code, &e)
        }
    }
}

fn start(
    debug: bool,
    mut config: Config,
    config_path: Option<PathBuf>,
    interceptor: Option<tls::Interceptor>,
) -> Result<(), (u8, anyhow::Error)> {
    let startup = |e: anyhow::Error| (EXIT_STARTUP, e);
    let icap_config =
        IcapConfig::from_settings(&config.settings).map_err(|e| (EXIT_CONFIG, e.into()))?;
    match daemon::raise_open_files_limit() {
        Ok((old, new)) if new > old => log::info!(
            "open files limit raised from {old} to {new}: room for about {} connections",
            new / 2
        ),
        Ok((_, new)) => log::info!(
            "open files limit {new}: room for about {} connections",
            new / 2
        ),
        Err(e) => log::warn!("cannot raise the open files limit: {e}"),
    }
    if !debug {
        daemon::ensure_not_running(&config.pid_file).map_err(|e| startup(e.into()))?;
    }
    let bind = |port: u16, what: &str, interception| {
        net::bind_listener(config.listen_addr, port, interception)
            .map_err(|e| startup(anyhow::anyhow!("cannot listen on {what} {port}: {e}")))
    };
    let listener = bind(config.port, "port", config.interception)?;
    let http_listener = config
        .http_port
        .map(|p| bind(p, "http_port", net::Interception::Redirect))
        .transpose()?;
    let icap_listener = match icap_config {
        Some(icap) => Some((
            net::bind_listener(Some(icap.listen), icap.port, net::Interception::Redirect).map_err(
                |e| {
                    startup(anyhow::anyhow!(
                        "cannot listen on icap_port {}: {e}",
                        icap.port
                    ))
                },
            )?,
            icap,
        )),
        None => None,
    };
    // What the daemon's user writes is created now, as root, with its modes;
    // with log_group, that group keeps it instead of the daemon's group.
    let owner_group = match config.settings.get("log_group") {
        Some(g) if !g.is_empty() => None,
        _ => config.group.as_deref(),
    };
    for path in imspector::log::build::prepare(&config).map_err(|e| startup(e.into()))? {
        daemon::hand_over(&path, config.user.as_deref(), owner_group)
            .map_err(|e| startup(anyhow::anyhow!("{}: {e}", path.display())))?;
    }
    if let Some(dir) = &config.file_logging_dir {
        // Daemons run from /; keep a relative directory where it was meant.
        let absolute = std::fs::canonicalize(dir)
            .map_err(|e| startup(anyhow::anyhow!("{}: {e}", dir.display())))?;
        config.file_logging_dir = Some(absolute);
    }
    if let Some(dir) = interceptor.as_ref().and_then(tls::Interceptor::cert_dir) {
        daemon::hand_over(dir, config.user.as_deref(), config.group.as_deref())
            .map_err(|e| startup(anyhow::anyhow!("{}: {e}", dir.display())))?;
    }
    let ready = if debug {
        None
    } else {
        let ready = daemon::daemonize().map_err(|e| startup(e.into()))?;
        daemon::write_pid_file(&config.pid_file).map_err(|e| startup(e.into()))?;
        Some(ready)
    };
    let keep = daemon::NetCaps {
        admin: config.upstream_mark.is_some(),
        raw: config.interface.is_some(),
    };
    let log_group =
        imspector::log::build::log_group(&config.settings).map_err(|e| startup(e.into()))?;
    daemon::drop_privileges(
        config.user.as_deref(),
        config.group.as_deref(),
        log_group,
        keep,
    )
    .map_err(|e| startup(e.into()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| startup(e.into()))?;
    runtime
        .block_on(imspector::run(
            listener,
            http_listener,
            icap_listener,
            config,
            config_path,
            interceptor,
            debug,
            || ready.map_or((), daemon::Ready::notify),
        ))
        .map_err(|e| {
            // Another imspector holds the spool directory: a startup failure.
            let busy = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<imspector::log::SinkError>(),
                    Some(imspector::log::SinkError::Busy { .. })
                )
            });
            (if busy { EXIT_STARTUP } else { EXIT_RUNTIME }, e)
        })
}

/// The file given with -c, else the default path, else the embedded default.
fn load_settings(
    explicit: Option<&Path>,
) -> Result<(Settings, Option<PathBuf>), imspector::config::ConfigError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => PathBuf::from(DEFAULT_CONFIG_PATH),
        None => return Ok((Settings::embedded(), None)),
    };
    Ok((Settings::load(&path)?, Some(path)))
}

fn fail(code: u8, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("imspector: error: {e}");
    ExitCode::from(code)
}
