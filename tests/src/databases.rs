//! Private database servers for the sink tests, started and stopped by the
//! tests themselves (no systemd, nothing shared with the system's instances):
//! MariaDB and PostgreSQL each in a temporary directory, reachable only through
//! a unix socket in it. Also a logger that keeps the diagnostic lines.
//!
//! A missing server program is a test failure with the package to install,
//! never a silent skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use imspector::event::LogEvent;
use imspector_protocols::EventType;

/// How long a server may take to start or to stop.
const SERVER_DEADLINE: Duration = Duration::from_secs(120);

pub const DB_NAME: &str = "imspector";
pub const DB_USER: &str = "ims";
pub const DB_PASSWORD: &str = "ims secret";

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn require(program: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|dir| dir.join(program))
        .find(|p| p.exists());
    found.unwrap_or_else(|| {
        panic!(
            "{program} is missing: install the Debian package {package} (scripts/deps/sinks.apt)"
        )
    })
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the database tests start private servers as their service users and need root"
    );
}

/// A temporary directory the service `user` can use.
fn service_dir(user: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("imspector-db-")
        .tempdir()
        .expect("temporary directory");
    run(Command::new("chown")
        .arg(format!("{user}:"))
        .arg(dir.path()));
    run(Command::new("chmod").arg("0755").arg(dir.path()));
    dir
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool, log: &Path) {
    let start = Instant::now();
    while !ready() {
        if start.elapsed() > SERVER_DEADLINE {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what} did not happen within {SERVER_DEADLINE:?}; server log:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A private MariaDB server on a unix socket.
pub struct Mariadb {
    dir: tempfile::TempDir,
    server: Option<Child>,
}

impl Mariadb {
    /// Initialise a data directory, start the server, create the database and
    /// a user that owns it.
    pub fn start() -> Mariadb {
        require_root();
        let install = require("mariadb-install-db", "mariadb-server");
        let dir = service_dir("mysql");
        // Its own temporary directory: two servers bootstrapping at once in
        // /tmp can collide on the names of their temporary tables.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).expect("temporary directory");
        run(Command::new("chown").arg("mysql:").arg(&tmp));
        run(Command::new(install)
            .arg("--no-defaults")
            .arg("--user=mysql")
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg("--skip-test-db")
            .stdout(Stdio::null()));
        let mut db = Mariadb { dir, server: None };
        db.resume();
        db.sql(&format!(
            "CREATE DATABASE {DB_NAME};
             CREATE USER '{DB_USER}'@'localhost' IDENTIFIED BY '{DB_PASSWORD}';
             GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'localhost';"
        ));
        db
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("mysqld.sock")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Start the server again on the same data.
    pub fn resume(&mut self) {
        assert!(self.server.is_none(), "MariaDB is already running");
        let server = Command::new(require("mariadbd", "mariadb-server"))
            .arg("--no-defaults")
            .arg("--user=mysql")
            .arg(format!(
                "--datadir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!(
                "--tmpdir={}",
                self.dir.path().join("tmp").display()
            ))
            .arg(format!(
                "--pid-file={}",
                self.dir.path().join("pid").display()
            ))
            .arg(format!("--log-error={}", self.log_path().display()))
            .arg("--skip-networking")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mariadbd");
        self.server = Some(server);
        let socket = self.socket();
        // A query, not `mariadb-admin ping`: ping answers "alive" even while
        // the server still refuses logins.
        wait_until(
            "MariaDB accepting logins",
            || {
                Command::new("mariadb")
                    .arg(format!("--socket={}", socket.display()))
                    .arg("--user=root")
                    .args(["-e", "SELECT 1"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            },
            &self.log_path(),
        );
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let server = self.server.as_ref().expect("MariaDB is running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.id() as i32), signal)
            .expect("signalling mariadbd");
    }

    /// Make the server stop answering, as a hung host does (SIGSTOP): its
    /// connections stay open and what is sent to it waits.
    pub fn freeze(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Let a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    /// Stop the server (a clean shutdown, as `service mariadb stop` does),
    /// thawing it first.
    pub fn stop(&mut self) {
        if self.server.is_some() {
            self.thaw();
            self.signal(nix::sys::signal::Signal::SIGTERM);
            let mut server = self.server.take().expect("checked above");
            server.wait().expect("waiting for mariadbd");
        }
    }

    /// Run SQL as the server's root user; returns tab-separated rows.
    pub fn sql(&self, sql: &str) -> String {
        run(Command::new("mariadb")
            .arg(format!("--socket={}", self.socket().display()))
            .arg("--user=root")
            .arg("--batch")
            .arg("--skip-column-names")
            .arg("-e")
            .arg(sql))
    }

    /// The configuration lines that point imspector at this server.
    pub fn config(&self) -> String {
        format!(
            "mysql_socket={}\nmysql_database={DB_NAME}\nmysql_username={DB_USER}\nmysql_password={DB_PASSWORD}\n",
            self.socket().display()
        )
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private PostgreSQL cluster on a unix socket.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    running: bool,
}

impl Postgres {
    pub fn start() -> Postgres {
        require_root();
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                let mut found: Vec<PathBuf> = versions
                    .filter_map(|v| Some(v.ok()?.path().join("bin")))
                    .filter(|b| b.join("initdb").exists())
                    .collect();
                found.sort();
                found.pop()
            })
            .unwrap_or_else(|| {
                panic!("initdb is missing: install the Debian package postgresql (scripts/deps/sinks.apt)")
            });
        let dir = service_dir("postgres");
        run(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .arg("-D")
            .arg(dir.path().join("data"))
            .stdout(Stdio::null()));
        let mut db = Postgres {
            dir,
            bin,
            running: false,
        };
        db.resume();
        db.sql(&format!("CREATE ROLE {DB_USER} LOGIN"));
        db.sql(&format!("CREATE DATABASE {DB_NAME} OWNER {DB_USER}"));
        db
    }

    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    fn pg_ctl(&self, action: &[&str]) {
        run(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .arg("-o")
            .arg(format!(
                "-k {} -c listen_addresses=''",
                self.dir.path().display()
            ))
            .args(["-w", "-t", "120"])
            .args(action)
            .stdout(Stdio::null()));
    }

    pub fn resume(&mut self) {
        assert!(!self.running, "PostgreSQL is already running");
        self.pg_ctl(&["start"]);
        self.running = true;
    }

    pub fn stop(&mut self) {
        if self.running {
            self.pg_ctl(&["-m", "fast", "stop"]);
            self.running = false;
        }
    }

    /// Run SQL as the superuser in `imspector` (or `postgres` before it
    /// exists); returns `|`-separated rows.
    pub fn sql(&self, sql: &str) -> String {
        let has_db = self.running
            && run(Command::new("runuser")
                .args(["-u", "postgres", "--", "psql", "-tAq", "-h"])
                .arg(self.dir.path())
                .args(["-d", "postgres", "-c"])
                .arg(format!(
                    "SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"
                )))
            .trim()
                == "1";
        run(Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                "psql",
                "-tAq",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
            ])
            .arg(self.dir.path())
            .args(["-d", if has_db { DB_NAME } else { "postgres" }, "-c"])
            .arg(sql))
    }

    pub fn connect_string(&self) -> String {
        format!(
            "host={} dbname={DB_NAME} user={DB_USER}",
            self.dir.path().display()
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Diagnostic lines logged while the tests run.
static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        if record.target().starts_with("imspector") {
            let line = format!("{} {}", record.level(), record.args());
            eprintln!("{line}");
            LINES.lock().unwrap().push(line);
        }
    }
    fn flush(&self) {}
}

/// Start keeping diagnostic lines (once per test binary).
pub fn capture_log() {
    if log::set_logger(&Capture).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

/// The lines kept so far that start with `prefix` (e.g. `WARN mysql sink`).
pub fn log_lines(prefix: &str) -> Vec<String> {
    LINES
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with(prefix))
        .cloned()
        .collect()
}

/// Event number `n` of a test stream: every field differs from event to event.
pub fn event(n: usize) -> LogEvent {
    let kinds = [
        EventType::Message,
        EventType::File,
        EventType::Typing,
        EventType::Webcam,
    ];
    LogEvent {
        timestamp: 1_700_000_000 + n as i64,
        client: format!("192.168.0.{}:{}", n % 250 + 1, 40000 + n).into(),
        protocol: ["IRC", "MSN", "Jabber", "Gadu-Gadu"][n % 4].into(),
        outgoing: matches!(n % 2, 0),
        kind: kinds[n % 4],
        local_id: format!("alice{n}@example.org").into(),
        remote_id: format!("#chan-{}", n % 7).into(),
        filtered: matches!(n % 3, 0),
        categories: if matches!(n % 5, 0) {
            format!("{} badwords;", n % 9)
        } else {
            String::new()
        },
        data: format!("message {n}: héllo 😀, with \"quotes\" and\nnewline\ttab"),
    }
}

/// Write `events` through the writer thread into `sinks`, then stop it
/// (which waits until the databases have them).
pub fn log_through(sinks: Vec<Box<dyn imspector::log::Sink>>, events: &[LogEvent]) {
    let (logger, writer) = imspector::log::spawn_writer(sinks, false);
    send(&logger, events);
    drop(logger);
    writer.join().unwrap();
}

/// Queue `events` on `logger`, in order.
pub fn send(logger: &imspector::log::Logger, events: &[LogEvent]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        for e in events {
            logger.log(e.clone()).await;
        }
    });
}

/// Wait (bounded) until `done` holds; panic naming `what` otherwise.
pub fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < SERVER_DEADLINE,
            "{what} did not happen within {SERVER_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
