//! A real Squid (Debian package) in a namespace, with the project's snippets.

use std::path::{Path, PathBuf};

use crate::netns::Netns;
use crate::process::Process;
use crate::wait;

pub const SQUID_PORT: u16 = 3128;

/// The project's squid/ directory.
pub fn snippets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../squid")
}

pub struct Squid {
    pub process: Process,
    pub dir: PathBuf,
    /// The service name: the prefix of its segments in /dev/shm.
    name: String,
}

impl Drop for Squid {
    /// A killed Squid leaves its shared memory segments behind.
    fn drop(&mut self) {
        let prefix = format!("{}-", self.name);
        for entry in std::fs::read_dir("/dev/shm")
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

impl Squid {
    /// Run `squid -N` in `ns`, serving `client_net` on port 3128, with these
    /// files of squid/ included where local rules go. Everything Squid writes
    /// stays in `dir` (which must be writable by user proxy).
    pub fn start(
        ns: &Netns,
        dir: &Path,
        client_net: &str,
        snippets: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_with(ns, dir, client_net, "", snippets)
    }

    /// Like [`Squid::start`], with the test's own lines (`local`) before the snippets.
    pub fn start_with(
        ns: &Netns,
        dir: &Path,
        client_net: &str,
        local: &str,
        snippets: &[&str],
    ) -> anyhow::Result<Self> {
        let includes: String = snippets
            .iter()
            .map(|s| format!("include {}\n", snippets_dir().join(s).display()))
            .collect();
        let d = dir.display();
        let conf = format!(
            "pid_filename {d}/squid.pid\ncache_log {d}/cache.log\naccess_log {d}/access.log\n\
             cache_store_log none\ncoredump_dir {d}\nhttp_port {SQUID_PORT}\n\
             acl localnet src {client_net}\nacl SSL_ports port 443\n\
             {local}\n{includes}http_access deny CONNECT !SSL_ports\nhttp_access deny all\n\
             cache_effective_user proxy\n"
        );
        let path = dir.join("squid.conf");
        std::fs::write(&path, conf)?;
        let mut command = ns.command("squid");
        // Namespaces share /dev/shm: the service name prefixes Squid's shared
        // memory segments, so that Squids of tests that run at once do not
        // collide ("shm_open(/squid-cf__metadata.shm): File exists").
        let name: String = dir
            .parent()
            .and_then(Path::file_name)
            .map(|rig| {
                rig.to_string_lossy()
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .collect()
            })
            .unwrap_or_else(|| "imspector".into());
        command.arg("-N").arg("-n").arg(&name).arg("-f").arg(&path);
        let process = Process::spawn("squid", command, dir.join("squid.out"))?;
        let squid = Squid {
            process,
            dir: dir.to_path_buf(),
            name,
        };
        wait::until("squid to accept connections", || {
            wait::read(&dir.join("cache.log"))
                .contains("Accepting HTTP Socket connections")
                .then_some(())
        })
        .map_err(|e| {
            anyhow::anyhow!(
                "{e}; squid printed:\n{}\ncache.log:\n{}",
                squid.process.output(),
                wait::read(&dir.join("cache.log"))
            )
        })?;
        Ok(squid)
    }

    pub fn access_log(&self) -> String {
        wait::read(&self.dir.join("access.log"))
    }
}
