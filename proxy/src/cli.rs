//! The daemon's command line, in the library so that the man page and the
//! shell completions are generated from the same definition.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Transparent proxy that logs and filters instant-messenger chats.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    /// Configuration file [default: /etc/imspector/imspector.conf; without it,
    /// the embedded default: every protocol, file logs under ./imspector-logs]
    #[arg(short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Stay in the foreground and print diagnostics and events to stderr
    #[arg(short = 'd')]
    pub debug: bool,
    /// Check the configuration, print what is wrong, and exit (0 = usable)
    #[arg(long)]
    pub check_config: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// The CA that signs the certificates of intercepted TLS (ssl=on)
    Ca {
        #[command(subcommand)]
        action: CaAction,
    },
}

#[derive(Subcommand)]
pub enum CaAction {
    /// Write a new CA key (mode 0600) and certificate into DIR and print how
    /// to install the certificate on the clients
    Create { dir: PathBuf },
}
