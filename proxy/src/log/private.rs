//! What the daemon stores is private: every file it creates (logs, journal
//! segments, dead letters, SQLite files) is 0640 and every directory 0750,
//! whatever the umask it was started with, and both belong to the group
//! `log_group` when one is set (e.g. `adm`, so log readers need no root).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};

pub const FILE_MODE: u32 = 0o640;
pub const DIR_MODE: u32 = 0o750;

/// The gid of `log_group`, or -1.
static GROUP: AtomicI64 = AtomicI64::new(-1);

/// Give what is created from now on to group `gid` (`log_group`).
pub fn set_group(gid: Option<u32>) {
    GROUP.store(gid.map_or(-1, i64::from), Ordering::Relaxed);
}

fn group() -> Option<nix::unistd::Gid> {
    u32::try_from(GROUP.load(Ordering::Relaxed))
        .ok()
        .map(nix::unistd::Gid::from_raw)
}

/// Set the mode (the umask cut it) and the group of something just created.
fn restrict(path: &Path, mode: u32) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    if let Some(gid) = group() {
        nix::unistd::chown(path, None, Some(gid))?;
    }
    Ok(())
}

/// `create_dir_all`, each directory it creates 0750 in `log_group`.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => restrict(path, DIR_MODE),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Open `path` for appending, creating it 0640 in `log_group` when missing.
pub fn open_append(path: &Path) -> io::Result<File> {
    open(path, OpenOptions::new().append(true))
}

/// Open `path` for reading and writing, creating it like [`open_append`].
pub fn open_read_write(path: &Path) -> io::Result<File> {
    open(path, OpenOptions::new().read(true).write(true))
}

fn open(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    match options.clone().create_new(true).mode(FILE_MODE).open(path) {
        Ok(file) => {
            restrict(path, FILE_MODE)?;
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => options.open(path),
        Err(e) => Err(e),
    }
}

/// Create `path` (0640, `log_group`) when missing, so that a program that
/// creates it on its own (SQLite) finds it with the right mode.
pub fn touch(path: &Path) -> io::Result<()> {
    open_append(path).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn modes_hold_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: umask only changes this process's file creation mask.
        let old = unsafe { libc::umask(0o077) };
        let deep = dir.path().join("a/b");
        create_dir_all(&deep).unwrap();
        open_append(&deep.join("f")).unwrap();
        unsafe { libc::umask(0o000) };
        touch(&deep.join("g")).unwrap();
        unsafe { libc::umask(old) };
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&dir.path().join("a")), 0o750);
        assert_eq!(mode(&deep), 0o750);
        assert_eq!(mode(&deep.join("f")), 0o640);
        assert_eq!(mode(&deep.join("g")), 0o640);
    }
}
