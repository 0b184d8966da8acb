//! Helpers shared by the tests: running the program, and network namespaces
//! that the tests create and always delete.
#![allow(dead_code)] // each test file uses a different part

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// iptables/ in the source tree.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `imspector-rules ARGS`.
pub fn rules(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imspector-rules"))
        .args(args)
        .output()
        .expect("imspector-rules runs")
}

/// The stdout of `imspector-rules generate ARGS`, which must succeed.
pub fn generate(args: &[&str]) -> String {
    let mut all = vec!["generate"];
    all.extend(args);
    let out = rules(&all);
    assert!(
        out.status.success(),
        "generate {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `program args` with `stdin`, returning its output.
pub fn run_with_input(program: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests build network namespaces and need root (run scripts/test as root)"
    );
}

/// A network namespace that exists as long as the value: deleted on drop,
/// also when the test fails.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Self {
        require_root();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "imsrules-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ns = Netns { name };
        ns.ok("ip", &["link", "set", "lo", "up"], "");
        ns
    }

    /// Runs `program args` inside the namespace.
    pub fn run(&self, program: &str, args: &[&str], stdin: &str) -> Output {
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend(args);
        run_with_input("ip", &all, stdin)
    }

    /// Runs `program args` inside the namespace; it must succeed. Returns stdout.
    pub fn ok(&self, program: &str, args: &[&str], stdin: &str) -> String {
        let out = self.run(program, args, stdin);
        assert!(
            out.status.success(),
            "{program} {args:?} failed in {}: {}\ninput:\n{stdin}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a shell script inside the namespace; it must succeed.
    pub fn sh(&self, script: &str) {
        self.ok("sh", &["-s"], script);
    }

    /// The rules of a family as iptables-save prints them, without comments
    /// (they carry the time) and counters.
    pub fn saved(&self, save: &str) -> Vec<String> {
        self.ok(save, &[], "")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    }

    /// The rules (`-A` lines) and our chain declarations of a family.
    pub fn rules(&self, save: &str) -> Vec<String> {
        self.saved(save)
            .into_iter()
            .filter(|l| l.starts_with("-A") || l.contains("IMSPECTOR"))
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
