//! The viewer's command line, in the library so that the man page and the
//! shell completions are generated from the same definition.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use imspector::config::DEFAULT_CONFIG_PATH;

/// Log viewer for IMSpector: browse, follow, search and export the chat logs.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    /// The daemon's configuration file, with the web_* options
    #[arg(short = 'c', value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
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
