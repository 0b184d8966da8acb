//! `imspector-web`: serve the log viewer, or manage its users file.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use imspector_web::cli::{Cli, Command};
use imspector_web::config::WebConfig;
use imspector_web::users;

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
