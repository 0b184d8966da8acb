//! The ready-made snippets in iptables/snippets: each is the output of
//! `imspector-rules generate` with fixed arguments. A test compares the files
//! with what the program prints now; `imspector-rules snippets DIR` writes them.

use std::path::Path;

use crate::cli::{generate_with, CliError};

/// A snippet file and the arguments of `generate` that produce it.
pub struct Snippet {
    pub file: &'static str,
    pub args: &'static [&'static str],
}

const fn snippet(file: &'static str, args: &'static [&'static str]) -> Snippet {
    Snippet { file, args }
}

/// The Squid snippets skip packets marked 16667: imspector.conf needs
/// `upstream_mark=16667` with them.
pub const SNIPPETS: &[Snippet] = &[
    snippet("irc.sh", &["--protocols", "irc", "--format", "shell"]),
    snippet("msn.sh", &["--protocols", "msn", "--format", "shell"]),
    snippet("icq.sh", &["--protocols", "icq", "--format", "shell"]),
    snippet("yahoo.sh", &["--protocols", "yahoo", "--format", "shell"]),
    snippet("gg.sh", &["--protocols", "gg", "--format", "shell"]),
    snippet("jabber.sh", &["--protocols", "jabber", "--format", "shell"]),
    snippet(
        "all-protocols.sh",
        &["--protocols", "all", "--format", "shell"],
    ),
    snippet(
        "all-protocols-remove.sh",
        &["--protocols", "all", "--format", "shell", "--remove"],
    ),
    snippet(
        "squid-owner.sh",
        &[
            "--protocols",
            "all",
            "--squid-user",
            "proxy",
            "--mark",
            "16667",
            "--format",
            "shell",
        ],
    ),
    snippet(
        "squid-owner-remove.sh",
        &[
            "--protocols",
            "all",
            "--squid-user",
            "proxy",
            "--mark",
            "16667",
            "--format",
            "shell",
            "--remove",
        ],
    ),
    snippet("all.nft", &["--protocols", "all", "--format", "nft"]),
    snippet(
        "squid-owner.nft",
        &[
            "--protocols",
            "all",
            "--squid-user",
            "proxy",
            "--mark",
            "16667",
            "--format",
            "nft",
        ],
    ),
    snippet(
        "all.v4.rules",
        &[
            "--protocols",
            "all",
            "--format",
            "restore",
            "--family",
            "ipv4",
        ],
    ),
    snippet(
        "all.v6.rules",
        &[
            "--protocols",
            "all",
            "--format",
            "restore",
            "--family",
            "ipv6",
        ],
    ),
    snippet(
        "tproxy.sh",
        &[
            "--protocols",
            "all",
            "--mode",
            "tproxy",
            "--format",
            "shell",
        ],
    ),
    snippet(
        "tproxy-remove.sh",
        &[
            "--protocols",
            "all",
            "--mode",
            "tproxy",
            "--format",
            "shell",
            "--remove",
        ],
    ),
    snippet(
        "tproxy.nft",
        &["--protocols", "all", "--mode", "tproxy", "--format", "nft"],
    ),
    snippet("pf.conf", &["--protocols", "all", "--format", "pf"]),
];

/// Writes every snippet into `dir`.
pub fn write_all(dir: &Path) -> Result<(), CliError> {
    let write_error = |path: &Path, source| CliError::Write {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| write_error(dir, e))?;
    for snippet in SNIPPETS {
        let text = generate_with(snippet.args)?;
        let path = dir.join(snippet.file);
        std::fs::write(&path, text).map_err(|e| write_error(&path, e))?;
    }
    Ok(())
}
