//! Becoming a daemon: fork into the background (before any thread exists), the
//! pid file, and dropping to `user`/`group` once the privileged work is done.

use std::fs;
use std::io;
use std::path::Path;

use nix::sys::signal::kill;
use nix::unistd::{fork, setgid, setsid, setuid, ForkResult, Group, Pid, User};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{path}: imspector is already running as pid {pid}")]
    AlreadyRunning { path: String, pid: i32 },
    #[error("{path}: {source}")]
    PidFile { path: String, source: io::Error },
    #[error("fork: {0}")]
    Fork(nix::Error),
    #[error("unknown user {0:?}")]
    NoUser(String),
    #[error("unknown group {0:?}")]
    NoGroup(String),
    #[error("cannot switch to {what}: {source}")]
    Switch { what: String, source: nix::Error },
    #[error("chroot_dir {path}: {source}")]
    Chroot { path: String, source: nix::Error },
}

/// The daemon's promise to tell the process that started it when it serves.
pub struct Ready(fs::File);

impl Ready {
    /// The daemon is serving: the foreground process exits 0.
    pub fn notify(mut self) {
        use std::io::Write;
        let _ = self.0.write_all(b"1");
    }
}

/// Fork into the background. Returns in the child only. The parent waits until
/// the child calls [`Ready::notify`] and exits 0, or exits 3 when the child
/// ends without doing so (its reason is in syslog), so a firewall script that
/// starts imspector learns whether it runs. Must run before the tokio runtime
/// (or any other thread) exists.
pub fn daemonize() -> Result<Ready, DaemonError> {
    let (read_end, write_end) = nix::unistd::pipe().map_err(DaemonError::Fork)?;
    // SAFETY: called while the process is single-threaded.
    match unsafe { fork() }.map_err(DaemonError::Fork)? {
        ForkResult::Parent { .. } => {
            drop(write_end);
            let mut byte = [0u8; 1];
            let served = std::io::Read::read(&mut fs::File::from(read_end), &mut byte);
            std::process::exit(if matches!(served, Ok(1)) { 0 } else { 3 });
        }
        ForkResult::Child => drop(read_end),
    }
    setsid().map_err(DaemonError::Fork)?;
    // Standard streams go nowhere; diagnostics go to syslog.
    if let Ok(null) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors of our own process.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    Ok(Ready(fs::File::from(write_end)))
}

/// `chroot_dir`: make `dir` the root directory, while still root and before
/// any file but the configuration is read, so that every other path the
/// configuration names (logs, spool, lists, keys, the pid file, the
/// configuration again on SIGHUP, `/dev/log`, `/etc/passwd` for `user`) is
/// found inside it. For sites without systemd, whose units do this better.
pub fn change_root(dir: &Path) -> Result<(), DaemonError> {
    nix::unistd::chroot(dir)
        .and_then(|()| nix::unistd::chdir("/"))
        .map_err(|source| DaemonError::Chroot {
            path: dir.display().to_string(),
            source,
        })
}

/// Raise the soft limit on open files to the hard limit: every relayed
/// connection holds two descriptors, and the usual soft limit of 1024 would
/// cap a gateway at about 500 connections. Returns the (old, new) soft limit.
pub fn raise_open_files_limit() -> io::Result<(u64, u64)> {
    /// The kernel's default fs.nr_open, for a hard limit of "unlimited".
    const NR_OPEN: libc::rlim_t = 1 << 20;
    let mut limit = open_files_limit()?;
    let old = limit.rlim_cur;
    let want = limit.rlim_max.min(NR_OPEN);
    if want > old {
        limit.rlim_cur = want;
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((old, limit.rlim_cur))
}

/// The limits on open files (soft and hard).
pub fn open_files_limit() -> io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit)
}

/// Refuse to start while the pid in `path` is alive.
pub fn ensure_not_running(path: &Path) -> Result<(), DaemonError> {
    if let Ok(text) = fs::read_to_string(path) {
        if let Ok(pid) = text.trim().parse::<i32>() {
            let alive = pid > 0
                && pid != std::process::id() as i32
                && !matches!(
                    kill(Pid::from_raw(pid), None),
                    Err(nix::errno::Errno::ESRCH)
                );
            if alive {
                return Err(DaemonError::AlreadyRunning {
                    path: path.display().to_string(),
                    pid,
                });
            }
        }
    }
    Ok(())
}

/// Write our pid (after [`ensure_not_running`] and the fork), without
/// following a link there, and keep a root process that removes the file when
/// the daemon ends.
pub fn write_pid_file(path: &Path) -> Result<(), DaemonError> {
    let pid_error = |source| DaemonError::PidFile {
        path: path.display().to_string(),
        source,
    };
    let pid_file =
        crate::trusted_path::PidFile::create(path, std::process::id()).map_err(pid_error)?;
    crate::trusted_path::remove_when_done(pid_file).map_err(pid_error)
}

/// Network capabilities the daemon may keep after dropping root.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCaps {
    /// CAP_NET_ADMIN: SO_MARK on upstream sockets (`upstream_mark`).
    pub admin: bool,
    /// CAP_NET_RAW: SO_BINDTODEVICE on upstream sockets (`interface`).
    pub raw: bool,
}

impl NetCaps {
    fn mask(self) -> u32 {
        const CAP_NET_ADMIN: u32 = 12;
        const CAP_NET_RAW: u32 = 13;
        (u32::from(self.admin) << CAP_NET_ADMIN) | (u32::from(self.raw) << CAP_NET_RAW)
    }
}

/// Switch to `group` and `user` (each optional), group first, keeping only
/// the network capabilities in `keep` (and only when switching away from root).
/// `log_group`, when set, stays among the supplementary groups, so that the
/// files the daemon creates can be given to it.
pub fn drop_privileges(
    user: Option<&str>,
    group: Option<&str>,
    log_group: Option<u32>,
    keep: NetCaps,
) -> Result<(), DaemonError> {
    let keeping = user.is_some() && keep != NetCaps::default();
    if keeping {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
            return Err(DaemonError::Switch {
                what: "capabilities".into(),
                source: nix::Error::last(),
            });
        }
    }
    if user.is_some() {
        limit_bounding_set(keep.mask())?;
    }
    switch_ids(user, group, log_group)?;
    if keeping {
        set_capabilities(keep.mask())?;
    }
    // Nothing this process may exec could gain privileges again.
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(DaemonError::Switch {
            what: "no_new_privs".into(),
            source: nix::Error::last(),
        });
    }
    Ok(())
}

/// Drop every capability but those in `mask` from the bounding set (while
/// still root: that takes CAP_SETPCAP), so none can come back later. The
/// kernel says EINVAL past the last capability it knows (read without /proc,
/// which a chroot_dir lacks).
fn limit_bounding_set(mask: u32) -> Result<(), DaemonError> {
    for cap in 0..64u32 {
        if cap < 32 && mask & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) } != 0 {
            let error = nix::Error::last();
            if error == nix::errno::Errno::EINVAL && cap > 0 {
                break;
            }
            return Err(DaemonError::Switch {
                what: "the capability bounding set".into(),
                source: error,
            });
        }
    }
    Ok(())
}

/// Make `mask` the permitted and effective capability sets, nothing else.
fn set_capabilities(mask: u32) -> Result<(), DaemonError> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let none = Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    };
    let data = [
        Data {
            effective: mask,
            permitted: mask,
            inheritable: 0,
        },
        none,
    ];
    // SAFETY: capset reads a valid header and two data structs (version 3).
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if rc != 0 {
        return Err(DaemonError::Switch {
            what: "capabilities".into(),
            source: nix::Error::last(),
        });
    }
    Ok(())
}

fn switch_ids(
    user: Option<&str>,
    group: Option<&str>,
    log_group: Option<u32>,
) -> Result<(), DaemonError> {
    if let Some(name) = group {
        let group = Group::from_name(name)
            .ok()
            .flatten()
            .ok_or_else(|| DaemonError::NoGroup(name.to_string()))?;
        nix::unistd::setgroups(&[group.gid]).map_err(|source| DaemonError::Switch {
            what: format!("group {name}"),
            source,
        })?;
        setgid(group.gid).map_err(|source| DaemonError::Switch {
            what: format!("group {name}"),
            source,
        })?;
    }
    if let Some(name) = user {
        let user = User::from_name(name)
            .ok()
            .flatten()
            .ok_or_else(|| DaemonError::NoUser(name.to_string()))?;
        if group.is_none() {
            nix::unistd::initgroups(&std::ffi::CString::new(name).unwrap_or_default(), user.gid)
                .and_then(|_| setgid(user.gid))
                .map_err(|source| DaemonError::Switch {
                    what: format!("group of user {name}"),
                    source,
                })?;
        }
        if let Some(gid) = log_group.map(nix::unistd::Gid::from_raw) {
            let mut groups = nix::unistd::getgroups().unwrap_or_default();
            groups.push(gid);
            nix::unistd::setgroups(&groups).map_err(|source| DaemonError::Switch {
                what: "log_group".into(),
                source,
            })?;
        }
        setuid(user.uid).map_err(|source| DaemonError::Switch {
            what: format!("user {name}"),
            source,
        })?;
    }
    Ok(())
}

/// Let `user`/`group` write into a directory or file we create as root (the
/// log directory), refusing a link planted there (see [`crate::trusted_path`]).
pub fn hand_over(path: &Path, user: Option<&str>, group: Option<&str>) -> io::Result<()> {
    let uid = user
        .and_then(|u| User::from_name(u).ok().flatten())
        .map(|u| u.uid.as_raw());
    let gid = group
        .and_then(|g| Group::from_name(g).ok().flatten())
        .map(|g| g.gid.as_raw());
    if uid.is_none() && gid.is_none() {
        return Ok(());
    }
    crate::trusted_path::hand_over(path, uid, gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_refuses_a_live_pid_and_replaces_a_dead_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imspector.pid");
        // pid 1 is always alive.
        fs::write(&path, "1\n").unwrap();
        let e = ensure_not_running(&path).unwrap_err();
        assert!(e.to_string().ends_with("already running as pid 1"), "{e}");
        // A pid that cannot exist.
        fs::write(&path, "2147483646\n").unwrap();
        ensure_not_running(&path).unwrap();
    }
}
