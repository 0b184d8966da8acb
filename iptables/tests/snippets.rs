//! The files in iptables/snippets are exactly what the program prints now.

mod support;

use imspector_rules::snippets::SNIPPETS;
use support::{crate_dir, generate};

const REGENERATE: &str = "cargo run -p imspector-rules -- snippets iptables/snippets";

#[test]
fn snippets_match_the_generator() {
    let dir = crate_dir().join("snippets");
    for snippet in SNIPPETS {
        let path = dir.join(snippet.file);
        let on_disk = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run {REGENERATE}", path.display()));
        assert!(
            on_disk == generate(snippet.args),
            "{} differs from `imspector-rules generate {}`; run {REGENERATE}",
            path.display(),
            snippet.args.join(" ")
        );
    }
}

#[test]
fn no_stale_files_in_the_snippet_directory() {
    let mut on_disk: Vec<String> = std::fs::read_dir(crate_dir().join("snippets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    let mut listed: Vec<&str> = SNIPPETS.iter().map(|s| s.file).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "run {REGENERATE} after removing stale files"
    );
}

#[test]
fn the_snippets_command_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = support::rules(&["snippets", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for snippet in SNIPPETS {
        let written = std::fs::read_to_string(dir.path().join(snippet.file)).unwrap();
        let committed =
            std::fs::read_to_string(crate_dir().join("snippets").join(snippet.file)).unwrap();
        assert_eq!(written, committed, "{}", snippet.file);
    }
}
