//! A small tmpfs mounted for one test: a disk that fills up.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A small tmpfs mounted for one test (a disk that fills up), unmounted on drop.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "mounting a tmpfs on {} needs root",
            at.display()
        );
        Tmpfs(at.to_path_buf())
    }

    /// Fill it up; the filler file is returned, to be removed.
    pub fn fill(&self) -> PathBuf {
        let filler = self.0.join("filler");
        // dd stops with "No space left on device": that is the point.
        let _ = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", filler.display()))
            .arg("bs=4k")
            .stderr(std::process::Stdio::null())
            .status()
            .expect("running dd");
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
