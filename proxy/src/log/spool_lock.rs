//! One imspector per spool directory: two daemons appending to the same
//! journals would number events twice. The lock is an `flock` on
//! `{spool_dir}/lock`, which the kernel releases when the process ends, however
//! it ends; the file holds the pid of the holder, for the message.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use super::{private, SinkError};

/// Held while the daemon uses the spool directory.
#[derive(Clone)]
pub struct SpoolLock {
    _held: Arc<File>,
}

impl SpoolLock {
    pub fn acquire(spool_dir: &Path) -> Result<SpoolLock, SinkError> {
        let io_err = |path: &Path| {
            let path = path.display().to_string();
            move |source| SinkError::Io { path, source }
        };
        private::create_dir_all(spool_dir).map_err(io_err(spool_dir))?;
        let path = spool_dir.join("lock");
        let mut file = private::open_read_write(&path).map_err(io_err(&path))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::WouldBlock {
                return Err(io_err(&path)(e));
            }
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(SinkError::Busy {
                dir: spool_dir.display().to_string(),
                pid: match pid.trim() {
                    "" => "unknown".to_string(),
                    pid => pid.to_string(),
                },
            });
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(io_err(&path))?;
        Ok(SpoolLock {
            _held: Arc::new(file),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = SpoolLock::acquire(dir.path()).unwrap();
        let e = SpoolLock::acquire(dir.path()).err().unwrap();
        assert_eq!(
            e.to_string(),
            format!(
                "{} is in use by imspector pid {}: one imspector per spool_dir",
                dir.path().display(),
                std::process::id()
            )
        );
        drop(first);
        SpoolLock::acquire(dir.path()).unwrap();
    }
}
