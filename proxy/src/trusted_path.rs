//! What root does to the file system at start-up, done so that no other user
//! can redirect it: the pid file and the directories handed to the daemon's
//! user are reached through a chain of directories opened one by one without
//! following links, and a symbolic link on the way is refused unless root owns
//! it and only root can replace it.

use std::ffi::{CStr, CString};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// An open directory and a name in it.
pub struct Entry {
    dir: OwnedFd,
    name: CString,
    path: PathBuf,
}

fn refused(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{}: {why}; refused", path.display()),
    )
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
}

/// `openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC)`.
fn open_at(dir: Option<&OwnedFd>, name: &CStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let dirfd = dir.map_or(libc::AT_FDCWD, AsRawFd::as_raw_fd);
    // SAFETY: a valid NUL-terminated name; the returned descriptor is ours.
    let fd = unsafe {
        libc::openat(
            dirfd,
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat just returned this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: fstat writes into the struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// Refuse a symbolic link on `path` that root did not make or that someone
/// else could replace (it is root's, and so is the directory holding it,
/// writable by root alone). `/var/run -> /run` passes; a link the daemon's
/// user planted in a directory it may write does not.
fn check_links(path: &Path) -> io::Result<()> {
    let mut prefix = PathBuf::new();
    for component in path.components() {
        prefix.push(component);
        let Ok(meta) = std::fs::symlink_metadata(&prefix) else {
            // Not there yet: we create it, below a directory we opened.
            return Ok(());
        };
        if meta.file_type().is_symlink() {
            let parent = prefix.parent().unwrap_or(Path::new("/"));
            let holder = std::fs::metadata(parent)?;
            let trusted = meta.uid() == 0 && holder.uid() == 0 && holder.mode() & 0o022 == 0;
            if !trusted {
                return Err(refused(
                    &prefix,
                    "a symbolic link that a user other than root can change",
                ));
            }
        }
    }
    Ok(())
}

/// Open the directory holding `path`, one component at a time and without
/// following links (after [`check_links`] resolved the trusted ones), so that
/// nothing swapped in meanwhile is followed.
pub fn open_entry(path: &Path) -> io::Result<Entry> {
    let absolute = std::path::absolute(path)?;
    check_links(&absolute)?;
    let name = absolute
        .file_name()
        .ok_or_else(|| refused(path, "not a file name"))?;
    let parent = absolute.parent().unwrap_or(Path::new("/"));
    let resolved = std::fs::canonicalize(parent)?;
    let mut dir: Option<OwnedFd> = None;
    for component in resolved.components() {
        let part = match component {
            Component::RootDir => cstring(b"/")?,
            Component::Normal(part) => cstring(part.as_bytes())?,
            _ => return Err(refused(path, "an unexpected component")),
        };
        let next = open_at(dir.as_ref(), &part, libc::O_PATH | libc::O_DIRECTORY, 0)
            .map_err(|e| refused(path, &format!("changed while opened ({e})")))?;
        dir = Some(next);
    }
    Ok(Entry {
        dir: dir.ok_or_else(|| refused(path, "no directory"))?,
        name: cstring(name.as_bytes())?,
        path: absolute,
    })
}

/// Give the directory or file at `path` (just created by root) to `uid` and
/// `gid`. A symbolic link there, or a file with other names (a hard link to
/// somebody else's file), is refused instead of followed.
pub fn hand_over(path: &Path, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    let entry = open_entry(path)?;
    let fd = open_at(
        Some(&entry.dir),
        &entry.name,
        libc::O_RDONLY | libc::O_NONBLOCK,
        0,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => refused(path, "a symbolic link"),
        _ => e,
    })?;
    let st = fstat(&fd)?;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {}
        libc::S_IFREG if st.st_nlink == 1 => {}
        libc::S_IFREG => return Err(refused(path, "a file with other names (hard links)")),
        _ => return Err(refused(path, "neither a directory nor a file")),
    }
    let (uid, gid) = (uid.unwrap_or(u32::MAX), gid.unwrap_or(u32::MAX));
    // SAFETY: fchown on a descriptor we own; -1 keeps an id as it is.
    if unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The pid file, written by root, removed when the daemon ends.
pub struct PidFile {
    entry: Entry,
}

impl PidFile {
    /// Write `pid` into a new file at `path` (mode 0644). A stale regular
    /// file there is replaced; a symbolic link or anything else is refused.
    pub fn create(path: &Path, pid: u32) -> io::Result<Self> {
        let entry = open_entry(path)?;
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstatat writes into the struct we own; the name is valid.
        let found = unsafe {
            libc::fstatat(
                entry.dir.as_raw_fd(),
                entry.name.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        } == 0;
        if found {
            if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                return Err(refused(path, "not a regular file (a symbolic link?)"));
            }
            entry.unlink()?;
        }
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
        let fd = open_at(Some(&entry.dir), &entry.name, flags, 0o644)?;
        std::fs::File::from(fd).write_all(format!("{pid}\n").as_bytes())?;
        Ok(PidFile { entry })
    }

    /// Remove the file if it still names `pid`.
    pub fn remove(&self, pid: u32) -> io::Result<()> {
        let fd = open_at(Some(&self.entry.dir), &self.entry.name, libc::O_RDONLY, 0)?;
        let mut text = String::new();
        std::fs::File::from(fd).read_to_string(&mut text)?;
        if text.trim() != pid.to_string() {
            return Ok(());
        }
        self.entry.unlink()
    }

    pub fn path(&self) -> &Path {
        &self.entry.path
    }
}

impl Entry {
    fn unlink(&self) -> io::Result<()> {
        // SAFETY: unlinkat with a directory we hold and a valid name.
        if unsafe { libc::unlinkat(self.dir.as_raw_fd(), self.name.as_ptr(), 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Keep a root process that removes the pid file once the daemon has ended
/// (after the drop the daemon may not remove it itself). It holds nothing but
/// a pipe and the pid file's directory. Call while single-threaded, after the
/// pid file is written and before privileges are dropped.
pub fn remove_when_done(pid_file: PidFile) -> io::Result<()> {
    let (read_end, write_end) = nix::unistd::pipe().map_err(io::Error::from)?;
    let daemon = std::process::id();
    // SAFETY: the process is single-threaded here.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        nix::unistd::ForkResult::Parent { .. } => {
            drop(read_end);
            // The write end stays open, unused, for the daemon's lifetime.
            std::mem::forget(write_end);
            Ok(())
        }
        nix::unistd::ForkResult::Child => {
            drop(write_end);
            close_all_but(&[read_end.as_raw_fd(), pid_file.entry.dir.as_raw_fd()]);
            let mut byte = [0u8; 1];
            // Returns when the daemon (the only writer) has exited.
            let _ = std::fs::File::from(read_end).read(&mut byte);
            let _ = pid_file.remove(daemon);
            std::process::exit(0)
        }
    }
}

/// Close every descriptor but `keep` and the standard ones: the listening
/// sockets must not outlive the daemon.
fn close_all_but(keep: &[i32]) {
    let max = crate::daemon::open_files_limit().map_or(1024, |l| l.rlim_cur.min(1 << 20) as i32);
    for fd in 3..max {
        if !keep.contains(&fd) {
            // SAFETY: closing descriptors of this (forked) process.
            unsafe { libc::close(fd) };
        }
    }
}

/// Warn about a file holding a database password that users other than its
/// owner and group may read.
pub fn readable_by_others(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    (meta.mode() & 0o004 != 0).then(|| {
        format!(
            "{} holds a database password and every user may read it (mode {:o}): chmod o-r",
            path.display(),
            meta.mode() & 0o777
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_file_replaces_a_stale_one_and_refuses_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imspector.pid");
        std::fs::write(&path, "999999\n").unwrap();
        let pid_file = PidFile::create(&path, 42).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "42\n");
        pid_file.remove(41).unwrap();
        assert!(path.exists(), "another pid's file stays");
        pid_file.remove(42).unwrap();
        assert!(!path.exists());

        let victim = dir.path().join("victim");
        std::fs::write(&victim, "secret").unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let e = PidFile::create(&path, 42).err().unwrap();
        assert!(e.to_string().contains("refused"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret");
    }

    #[test]
    fn hand_over_refuses_links() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::create_dir(&target).unwrap();
        let link = dir.path().join("logs");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = hand_over(&link, Some(65534), None).err().unwrap();
        assert!(e.to_string().contains("a symbolic link"), "{e}");
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        std::fs::hard_link(&file, dir.path().join("g")).unwrap();
        let e = hand_over(&file, Some(65534), None).err().unwrap();
        assert!(e.to_string().contains("hard links"), "{e}");
    }
}
