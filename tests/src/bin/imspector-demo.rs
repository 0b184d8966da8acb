//! `scripts/demo`: a first look at IMSpector in one command. Builds a client,
//! a gateway and a server network namespace with the real REDIRECT rule,
//! starts the daemon in the gateway, ngircd on the server and two IRC users
//! (ii), has them chat, and prints each log line as the daemon writes it.
//! Everything it made is removed when it ends, also on Ctrl-C.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use imspector_e2e::irc::{Ii, Ngircd};
use imspector_e2e::{Imspector, Rig};

/// Set by SIGINT/SIGTERM: stop, and let the drops clean up.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

const USAGE: &str = "usage: scripts/demo [--badwords FILE]
  Runs IMSpector between two IRC users in network namespaces of its own and
  prints the chat log lines as they are written. Needs root, ngircd and ii.
  --badwords FILE   a bad-words list (one word per line): one message uses the
                    first word, and the log shows it filtered.";

fn main() {
    if let Err(e) = run() {
        eprintln!("demo: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let mut badwords = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--badwords" => badwords = Some(PathBuf::from(args.next().unwrap_or_default())),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let bad_word = match &badwords {
        Some(path) => Some(first_word(path)?),
        None => None,
    };
    for signal in [nix::sys::signal::SIGINT, nix::sys::signal::SIGTERM] {
        let action = nix::sys::signal::SigAction::new(
            nix::sys::signal::SigHandler::Handler(on_signal),
            nix::sys::signal::SaFlags::empty(),
            nix::sys::signal::SigSet::empty(),
        );
        // SAFETY: the handler only stores to an atomic.
        unsafe { nix::sys::signal::sigaction(signal, &action)? };
    }

    let rig = Rig::new()?;
    rig.redirect(&[6667], 16667)?;
    println!(
        "namespaces: client {} ({}), gateway {} (iptables REDIRECT of port 6667 to imspector on 16667), server {} ({})",
        rig.client.name, rig.client_ip, rig.gateway.name, rig.server.name, rig.server_ip
    );
    let mut config = String::from("irc_protocol=on\n");
    if let Some(path) = &badwords {
        let path = std::fs::canonicalize(path)?;
        config.push_str(&format!("badwords_filename={}\n", path.display()));
    }
    let ims = Imspector::start(&rig.gateway, &rig.subdir("imspector")?, &config)?;
    println!(
        "imspector: running in the gateway, logging to {}",
        ims.log_dir.display()
    );
    let _server = Ngircd::start(&rig.server, &rig.subdir("ngircd")?)?;
    println!("ngircd: running on the server");
    let clients = rig.subdir("clients")?;
    let bob = Ii::remote(&rig, &clients, "bob")?;
    let alice = Ii::local(&rig, &clients, IpAddr::V4(rig.server_ip), "alice")?;
    println!("ii: alice in the client namespace, bob next to the server\n");

    let hello = "hello bob, this goes through the gateway".to_string();
    let mut script = vec![
        (&alice, &bob, hello),
        (&bob, &alice, "hi alice, and it is logged".to_string()),
    ];
    if let Some(word) = &bad_word {
        script.push((&alice, &bob, format!("this one says {word}")));
    }
    script.push((&alice, &bob, "bye!".to_string()));

    let mut tail = LogTail::default();
    for (from, to, text) in &script {
        println!("{} -> {}: {text}", from.nick, to.nick);
        let before = to.window(&from.nick).lines().count();
        from.msg(&to.nick, text)?;
        tail.print_until(&ims.log_dir, tail.printed + 1)?;
        println!("  {} sees: {}", to.nick, received(to, &from.nick, before)?);
    }
    println!("\ndone: stopping everything and removing the namespaces");
    Ok(())
}

/// The line after the first `before` lines of `who`'s window with `from`,
/// once it is there: what the recipient's client shows.
fn received(who: &Ii, from: &str, before: usize) -> anyhow::Result<String> {
    imspector_e2e::wait::until(&format!("{} to receive the message", who.nick), || {
        let window = who.window(from);
        let line = window.lines().nth(before)?;
        // ii writes "date time <nick> text".
        Some(
            line.split_once('>')
                .map_or(line, |(_, text)| text.trim())
                .to_string(),
        )
    })
}

/// The first word of a bad-words list, to use in a message.
fn first_word(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("{}: no word in the list", path.display()))
}

/// Lines already shown, per log file.
#[derive(Default)]
struct LogTail {
    seen: std::collections::BTreeMap<PathBuf, usize>,
    printed: usize,
}

impl LogTail {
    /// Print new log lines until `total` have been printed (at most 20 s).
    fn print_until(&mut self, dir: &Path, total: usize) -> anyhow::Result<()> {
        let start = std::time::Instant::now();
        while self.printed < total {
            anyhow::ensure!(!STOP.load(Ordering::SeqCst), "stopped");
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(20),
                "no log line after 20 s"
            );
            for file in files_under(dir) {
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                let seen = self.seen.entry(file.clone()).or_default();
                for line in text.lines().skip(*seen) {
                    let name = file.strip_prefix(dir).unwrap_or(&file);
                    println!("  logged in {}: {line}", name.display());
                    *seen += 1;
                    self.printed += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}
