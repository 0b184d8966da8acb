//! The fuzz targets' saved inputs, run as ordinary tests: each input once led
//! a fuzzer down a new path through a core, and the core must still keep its
//! invariants on it (forwarded bytes equal received bytes, identity rewrites
//! parse again to the same events). The inputs are the minimised corpora of
//! `cargo fuzz` in `protocols/fuzz/seeds/<target>/`; see docs/security.md.

use std::path::PathBuf;

use imspector_protocols::invariants::{replay, split_fuzz_input};
use imspector_protocols::session::ProtocolSession;

fn seeds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds")
}

/// Every saved input of `target`, each replayed through a fresh core.
fn check<S: ProtocolSession + Clone + Default>(target: &str) {
    let dir = seeds_dir().join(target);
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 10,
        "{}: only {} inputs",
        dir.display(),
        inputs.len()
    );
    for path in inputs {
        let data = std::fs::read(&path).expect("readable seed");
        let result = std::panic::catch_unwind(|| {
            replay(&mut S::default(), &split_fuzz_input(&data));
        });
        if let Err(panic) = result {
            eprintln!("seed {} broke an invariant", path.display());
            std::panic::resume_unwind(panic);
        }
    }
}

/// Every fuzz target has its saved inputs here, and a test below.
#[test]
fn every_fuzz_target_has_seeds() {
    let targets = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    for entry in std::fs::read_dir(targets).expect("fuzz targets") {
        let name = entry.expect("entry").path();
        let name = name.file_stem().and_then(|s| s.to_str()).expect("name");
        assert!(
            seeds_dir().join(name).is_dir(),
            "fuzz target {name} has no protocols/fuzz/seeds/{name}"
        );
    }
}

#[test]
fn irc_seeds() {
    check::<imspector_protocols::irc::IrcSession>("irc");
}

#[test]
fn msn_seeds() {
    check::<imspector_protocols::msn::MsnSession>("msn");
}

#[test]
fn gadugadu_seeds() {
    check::<imspector_protocols::gadugadu::GaduGaduSession>("gadugadu");
}

#[test]
fn yahoo_seeds() {
    check::<imspector_protocols::yahoo::YahooSession>("yahoo");
}

#[test]
fn oscar_seeds() {
    check::<imspector_protocols::oscar::OscarSession>("oscar");
}

#[test]
fn xmpp_seeds() {
    check::<imspector_protocols::xmpp::XmppSession>("xmpp");
}
