//! `imspector-web`: serve the log viewer, or manage its users file.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use imspector::config::DEFAULT_CONFIG_PATH;
use imspector_web::config::WebConfig;
use imspector_web::users;

/// Log viewer for IMSpector: browse, follow, search and export the chat logs.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The daemon's configuration file, with the web_* options
    #[arg(short = 'c', value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Add a user or change a user's password (read from standard input)
    Passwd {
        /// The users file (web_users_filename)
        file: PathBuf,
        user: String,
        /// May read the audit log
        #[arg(long, conflicts_with = "viewer")]
        admin: bool,
        /// May not read the audit log (the default for a new user)
        #[arg(long)]
        viewer: bool,
        /// Local ids or patterns the user may see, e.g. "class7-*,teacher"
        /// [default for a new user: *, every id]
        #[arg(long, value_name = "PATTERNS")]
        ids: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Passwd {
            file,
            user,
            admin,
            viewer,
            ids,
        }) => passwd(file, &user, admin, viewer, ids),
        None => serve(cli.config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imspector-web: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn passwd(
    file: PathBuf,
    user: &str,
    admin: bool,
    viewer: bool,
    ids: Option<String>,
) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("New password for {user} (shown as you type it): ");
        std::io::stderr().flush()?;
    }
    let mut password = String::new();
    stdin.lock().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    let role = match (admin, viewer) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    users::set_password(&file, user, password, users::Change { admin: role, ids })?;
    eprintln!("{}: {user} saved", file.display());
    Ok(())
}

fn serve(config_path: PathBuf) -> anyhow::Result<()> {
    imspector::diag::init(true);
    let config = WebConfig::load(&config_path)?;
    let app = imspector_web::app(&config)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(imspector_web::server::run(config, app, |addr| {
        // Tests and scripts read the address from here.
        eprintln!("imspector-web: listening on {addr}");
    }))
}
