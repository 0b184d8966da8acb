//! The Python peers (slixmpp, matrix-nio, matrix-synapse...) run from the
//! virtualenv that `scripts/test` makes and fills from `scripts/deps/*.pip`.

use std::path::PathBuf;

/// The virtualenv's directory: `IMSPECTOR_VENV`, or `target/test-venv` of
/// this workspace, where `scripts/test` puts it.
pub fn venv() -> PathBuf {
    std::env::var_os("IMSPECTOR_VENV").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-venv"),
        PathBuf::from,
    )
}

/// A program of the virtualenv (`python3`, `register_new_matrix_user`...).
/// Panics with what to run when the virtualenv is not there.
pub fn bin(name: &str) -> PathBuf {
    let path = venv().join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test, which makes the virtualenv from scripts/deps/*.pip",
        path.display()
    );
    path
}
