//! The journal and what the daemon stores, through the real binary: one
//! daemon per spool directory, the modes of everything it creates, what its
//! last line says about events still waiting, full disks, crashes and
//! SIGTERM, and `log_failure=block`.

use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use imspector_e2e::irc::{Ii, Ngircd};
use imspector_e2e::process::Process;
use imspector_e2e::tmpfs::Tmpfs;
use imspector_e2e::{imspector, wait, Imspector, Rig};
use nix::sys::signal::Signal;

/// `imspector -d -c CONFIG` on a free loopback port (no traffic needed), in `dir`.
fn daemon_command(dir: &Path, config: &str) -> Command {
    let path = dir.join("imspector.conf");
    std::fs::write(&path, format!("port=0\nlistenaddr=127.0.0.1\n{config}")).unwrap();
    let mut command = Command::new(imspector::binary());
    command.arg("-d").arg("-c").arg(path);
    command
}

fn start_daemon(dir: &Path, config: &str) -> anyhow::Result<Process> {
    let process = Process::spawn(
        "imspector",
        daemon_command(dir, config),
        dir.join("imspector.out"),
    )?;
    wait::until("imspector to listen", || {
        process.output().contains("listening on").then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}; imspector printed:\n{}", process.output()))?;
    Ok(process)
}

#[test]
fn a_second_daemon_on_the_same_spool_dir_refuses_to_start_until_the_first_is_gone(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let spool = dir.path().join("spool");
    let config = format!(
        "sqlite_file={}\nspool_dir={}\n",
        dir.path().join("imspector.db").display(),
        spool.display()
    );
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    std::fs::create_dir_all(&one)?;
    std::fs::create_dir_all(&two)?;
    let mut first = start_daemon(&one, &config)?;

    let second = daemon_command(&two, &config).output()?;
    assert_eq!(second.status.code(), Some(3), "{second:?}");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!(
            "{} is in use by imspector pid {}",
            spool.display(),
            first.pid()
        )),
        "{stderr}"
    );

    // A crash releases the lock.
    first.signal(Signal::SIGKILL)?;
    first.wait_exit()?;
    let mut third = start_daemon(&two, &config)?;
    third.signal(Signal::SIGTERM)?;
    assert_eq!(third.wait_exit()?, Some(0));
    Ok(())
}

/// A rig whose IRC traffic to port 6667 goes through imspector, to ngircd.
fn irc_rig() -> anyhow::Result<(Rig, Ngircd)> {
    let rig = Rig::new()?;
    rig.redirect(&[6667], 16667)?;
    let server = Ngircd::start(&rig.server, &rig.subdir("ngircd")?)?;
    Ok((rig, server))
}

/// IRC clients: alice behind imspector, bob outside.
fn alice_and_bob(rig: &Rig) -> anyhow::Result<(Ii, Ii)> {
    let clients = rig.subdir("clients")?;
    let bob = Ii::remote(rig, &clients, "bob")?;
    let alice = Ii::local(rig, &clients, IpAddr::V4(rig.server_ip), "alice")?;
    Ok((alice, bob))
}

/// Every file under `root` (and `root` itself), with its mode, owner and group.
fn modes(root: &Path) -> Vec<(PathBuf, u32, u32, u32)> {
    let mut found = Vec::new();
    let meta = std::fs::metadata(root).unwrap();
    found.push((
        root.to_path_buf(),
        meta.mode() & 0o7777,
        meta.uid(),
        meta.gid(),
    ));
    if meta.is_dir() {
        for entry in std::fs::read_dir(root).unwrap() {
            found.extend(modes(&entry.unwrap().path()));
        }
    }
    found
}

#[test]
fn everything_the_daemon_stores_is_0640_in_0750_directories_of_its_user_and_log_group(
) -> anyhow::Result<()> {
    let adm = nix::unistd::Group::from_name("adm")?
        .expect("the group adm (Debian base-passwd)")
        .gid
        .as_raw();
    let (rig, _server) = irc_rig()?;
    let dir = rig.subdir("ims")?;
    let db_dir = rig.subdir("db")?;
    let (logs, spool) = (dir.join("logs/imspector"), dir.join("spool"));
    // The categories file in a directory only root can write: the daemon must
    // open it before it becomes nobody.
    let cats_dir = rig.subdir("cats")?;
    std::fs::set_permissions(
        &cats_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let (cats, db) = (cats_dir.join("cats.log"), db_dir.join("imspector.db"));
    // The daemon runs as nobody: SQLite needs to make its -wal and -shm here.
    std::fs::set_permissions(&db_dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
    let nobody = nix::unistd::User::from_name("nobody")?
        .unwrap()
        .uid
        .as_raw();
    let badwords = db_dir.join("badwords.txt");
    std::fs::write(&badwords, "plan\n")?;
    let config = format!(
        "irc_protocol=on\nuser=nobody\nlog_group=adm\nfile_logging_dir={}\nspool_dir={}\nsqlite_file={}\n\
         cats_logging_filename={}\nbadwords_filename={}\n",
        logs.display(),
        spool.display(),
        db.display(),
        cats.display(),
        badwords.display()
    );
    std::fs::write(dir.join("imspector.conf"), &config)?;
    let mut command = rig.gateway.command(imspector::binary().to_str().unwrap());
    command.arg("-d").arg("-c").arg(dir.join("imspector.conf"));
    // SAFETY: umask is async-signal-safe; the child gets the widest mask.
    unsafe {
        command.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let mut ims = Process::spawn("imspector", command, dir.join("imspector.out"))?;
    wait::until("imspector to listen", || {
        ims.output().contains("listening on").then_some(())
    })?;
    let (alice, bob) = alice_and_bob(&rig)?;
    alice.msg("bob", "the plan")?;
    bob.wait_received("alice", "alice", "the ****")?;
    ims.signal(Signal::SIGTERM)?;
    assert_eq!(ims.wait_exit()?, Some(0), "{}", ims.output());

    let mut stored = modes(&logs);
    stored.extend(modes(&spool));
    stored.extend(
        ["", "-wal", "-shm"]
            .iter()
            .map(|s| PathBuf::from(format!("{}{s}", db.display())))
            .filter(|p| p.exists())
            .flat_map(|p| modes(&p)),
    );
    stored.extend(modes(&cats));
    let names: Vec<String> = stored
        .iter()
        .map(|(p, _, _, _)| p.display().to_string())
        .collect();
    for wanted in [
        "IRC/alice/bob/",
        "spool/sqlite/id",
        "spool/lock",
        "cats.log",
    ] {
        assert!(
            names.iter().any(|n| n.contains(wanted)),
            "{wanted} missing from {names:?}"
        );
    }
    assert!(
        wait::read(&cats).contains("badwords"),
        "nothing in {}",
        cats.display()
    );
    for (path, mode, uid, gid) in stored {
        let want = if path.is_dir() { 0o750 } else { 0o640 };
        assert_eq!(
            (mode, uid, gid),
            (want, nobody, adm),
            "{} is {mode:o} of user {uid}, group {gid}",
            path.display()
        );
    }
    Ok(())
}

#[test]
fn the_last_line_says_how_many_events_wait_and_where() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let spool = dir.path().join("spool");
    let (rig, _server) = irc_rig()?;
    // A database that cannot be opened: its directory does not exist.
    let config = format!(
        "irc_protocol=on\nsqlite_file={}\nspool_dir={}\n",
        dir.path().join("missing/imspector.db").display(),
        spool.display()
    );
    let mut ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, &config)?;
    let (alice, bob) = alice_and_bob(&rig)?;
    for n in 0..3 {
        alice.msg("bob", &format!("message {n}"))?;
        bob.wait_received("alice", "alice", &format!("message {n}"))?;
    }
    ims.wait_log("IRC", "alice", "bob", 3)?;
    ims.process.signal(Signal::SIGTERM)?;
    assert_eq!(ims.process.wait_exit()?, Some(0));
    let output = ims.process.output();
    let last = output.lines().last().unwrap_or_default();
    assert!(
        last.ends_with(&format!(
            "stopped; 3 events wait in {} for the sqlite database (written when imspector next starts)",
            spool.join("sqlite").display()
        )),
        "{output}"
    );
    Ok(())
}

/// The file log on a disk that fills up, with `log_failure=block`: the
/// message that finds the disk full is kept in memory; chat then stops, and
/// the sender is told, until the disk has room; every event reaches the file,
/// whole lines in order; one line says it failed, one that it recovered. A
/// line the disk fills up in the middle of is taken back, never torn (without
/// that, the line glued to its retry fails this). A log directory deleted
/// while running is made again.
#[test]
fn a_full_disk_blocks_chat_with_log_failure_block_and_loses_no_line() -> anyhow::Result<()> {
    let (rig, _server) = irc_rig()?;
    let dir = rig.subdir("ims")?;
    // The file log's directory is the small disk (Imspector::log_dir).
    let disk = Tmpfs::mount(&dir.join("logs"), "1m");
    let logs = disk.0.clone();
    let config = format!(
        "irc_protocol=on\nlog_failure=block\nfile_logging_dir={}\nresponder_filename={}\n\
         filtered_mins=15\nfiltered_response=Not sent: it cannot be logged now\n",
        logs.display(),
        dir.join("responder.db").display()
    );
    let ims = Imspector::start(&rig.gateway, &dir, &config)?;
    let (alice, bob) = alice_and_bob(&rig)?;
    alice.msg("bob", "before")?;
    bob.wait_received("alice", "alice", "before")?;
    ims.wait_log("IRC", "alice", "bob", 1)?;

    let filler = disk.fill();
    // A new conversation needs a new file, which the full disk has no room for
    // (a line into the first file would still fit in its last page).
    alice.msg("carol", "finds the disk full")?;
    ims.wait_output("file sink: cannot write")?;
    alice.msg("bob", "while full")?;
    wait::until("the notice to alice", || {
        alice
            .window("bob")
            .contains("Not sent: it cannot be logged now")
            .then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}; alice sees {:?}", alice.window("bob")))?;
    assert!(
        !bob.window("alice").contains("while full"),
        "{}",
        bob.window("alice")
    );

    std::fs::remove_file(filler)?;
    ims.wait_output("writable again; 2 waiting events written")?;
    alice.msg("bob", "after")?;
    bob.wait_received("alice", "alice", "after")?;
    let lines = ims.wait_log("IRC", "alice", "bob", 3)?;
    let rest: Vec<&str> = lines.iter().map(|l| l.rest.as_str()).collect();
    assert_eq!(rest, ["1,1,0,,before", "1,1,1,,while full", "1,1,0,,after"]);
    let carol = ims.wait_log("IRC", "alice", "carol", 1)?;
    assert_eq!(carol[0].rest, "1,1,0,,finds the disk full");
    let output = ims.process.output();
    assert_eq!(
        output.matches("file sink: cannot write").count(),
        1,
        "{output}"
    );

    // A line that meets the full disk part way (the last page of bob's file
    // fills up) is taken back, not torn: the disk full again, long lines to
    // bob until one does not fit.
    let filler = disk.fill();
    let long: Vec<String> = (0..16)
        .map(|k| format!("long {k:02} {}", "x".repeat(400)))
        .collect();
    for text in &long {
        alice.msg("bob", text)?;
    }
    let said = |text: &str, times: usize| {
        wait::until(
            &format!("imspector to print {text:?} {times} times"),
            || (ims.process.output().matches(text).count() >= times).then_some(()),
        )
    };
    said("file sink: cannot write", 2)?;
    std::fs::remove_file(filler)?;
    said("writable again", 2)?;
    let lines = ims.wait_log("IRC", "alice", "bob", 3 + long.len())?;
    // Whole and in order (delivered, or blocked as filtered once the failure
    // was known: the proxy may have read the lines at once).
    for (line, text) in lines[3..].iter().zip(&long) {
        let (flags, rest) = line.rest.split_at(6);
        assert!(
            ["1,1,0,", "1,1,1,"].contains(&flags) && rest == format!(",{text}"),
            "a line torn or out of order: {:?}",
            line.rest
        );
    }

    // The log directory deleted while running is made again.
    std::fs::remove_dir_all(logs.join("IRC"))?;
    alice.msg("bob", "into a new directory")?;
    bob.wait_received("alice", "alice", "into a new directory")?;
    let lines = ims.wait_log("IRC", "alice", "bob", 1)?;
    assert_eq!(lines[0].rest, "1,1,0,,into a new directory");
    Ok(())
}

/// The original's MyISAM table (no transactions) and a kill -9 in the middle
/// of a replay: every event ends up in the table in order, at most one twice,
/// and then the one the log named.
#[test]
fn myisam_and_kill_9_repeat_at_most_the_one_row_the_log_names() -> anyhow::Result<()> {
    use imspector_e2e::databases::{self, Mariadb};
    const EVENTS: usize = 800;
    let mut db = Mariadb::start();
    // Each insert takes at least 5 ms, so the replay lasts 4 s or more and the
    // kill lands in its middle however fast the machine is.
    db.sql(&format!(
        "USE {}; CREATE TABLE messages (id int NOT NULL auto_increment PRIMARY KEY,
         timestamp int NOT NULL default '0', clientaddress text NOT NULL,
         protocolname text NOT NULL, outgoing int NOT NULL default '0',
         type int NOT NULL default '0', localid text NOT NULL, remoteid text NOT NULL,
         filtered int NOT NULL default '0', categories text NOT NULL,
         eventdata blob NOT NULL) ENGINE=MyISAM CHARSET=utf8mb4;
         CREATE TRIGGER slow_insert BEFORE INSERT ON messages FOR EACH ROW SET @w = SLEEP(0.005);",
        databases::DB_NAME
    ));
    let dir = tempfile::tempdir()?;
    let spool = dir.path().join("spool");
    let config = format!("{}spool_dir={}\n", db.config(), spool.display());
    // The journal fills while the database is down, as after an outage.
    db.stop();
    let settings = ::imspector::config::Settings::parse("t.conf", &config)?;
    let cfg = ::imspector::config::Config::from_settings(settings)?;
    let (logger, writer) = ::imspector::log::spawn_writer(::imspector::build_sinks(&cfg)?, false);
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let texts: Vec<String> = (0..EVENTS).map(|n| format!("event {n}")).collect();
    rt.block_on(async {
        for (n, text) in texts.iter().enumerate() {
            let mut e = databases::event(n);
            e.data = text.clone();
            logger.log(e).await;
        }
    });
    drop(logger);
    writer.join().expect("the writer");
    db.resume();

    let logged = || -> Vec<String> {
        db.sql(&format!(
            "SELECT eventdata FROM {}.messages ORDER BY id",
            databases::DB_NAME
        ))
        .lines()
        .map(str::to_string)
        .collect()
    };
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    std::fs::create_dir_all(&one)?;
    std::fs::create_dir_all(&two)?;
    let mut first = start_daemon(&one, &config)?;
    wait::until("part of the replay", || {
        (logged().len() > 100).then_some(())
    })?;
    first.signal(Signal::SIGKILL)?;
    first.wait_exit()?;
    let after_kill = logged().len();
    assert!(after_kill < EVENTS, "the replay was over before the kill");
    let mut second = start_daemon(&two, &config)?;
    wait::until("the whole replay", || {
        (logged().len() >= EVENTS).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}; imspector printed:\n{}", second.output()))?;
    second.signal(Signal::SIGTERM)?;
    assert_eq!(second.wait_exit()?, Some(0));

    let mut rows = logged();
    let output = second.output();
    assert!(
        output.contains("table messages has no transactions"),
        "{output}"
    );
    if rows.len() > EVENTS {
        assert_eq!(rows.len(), EVENTS + 1, "more than one row repeated");
        let twice = (1..rows.len())
            .find(|&i| rows[i] == rows[i - 1])
            .expect("the repeated row next to its first copy");
        // The row holds "event n", which has sequence number n + 1 in the journal.
        let n: usize = rows[twice]
            .strip_prefix("event ")
            .and_then(|n| n.parse().ok())
            .expect("an event's text");
        assert!(
            output.contains(&format!("the row of event {} of ", n + 1)),
            "row {twice} ({}) repeated, but the log named another: {output}",
            rows[twice]
        );
        rows.remove(twice);
    }
    assert_eq!(rows, texts);
    Ok(())
}

/// A disk so full that the journal cannot grow: an error naming the segment,
/// the events held in memory meanwhile, and all of them in the database, in
/// order, once there is room again.
#[test]
fn a_journal_on_a_full_disk_is_an_error_naming_the_path_and_loses_nothing() -> anyhow::Result<()> {
    use ::imspector::config::{Config, Settings};
    use imspector_e2e::databases;
    databases::capture_log();
    let dir = tempfile::tempdir()?;
    let disk = Tmpfs::mount(&dir.path().join("spool"), "1m");
    let db = dir.path().join("imspector.db");
    let config = format!(
        "sqlite_file={}\nspool_dir={}\n",
        db.display(),
        disk.0.display()
    );
    let cfg = Config::from_settings(Settings::parse("t.conf", &config)?)?;
    let (logger, writer) = ::imspector::log::spawn_writer(::imspector::build_sinks(&cfg)?, false);
    let filler = disk.fill();
    let events: Vec<_> = (0..300).map(databases::event).collect();
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let send = |range: std::ops::Range<usize>| {
        rt.block_on(async {
            for e in &events[range] {
                logger.log(e.clone()).await;
            }
        })
    };
    send(0..200);
    databases::eventually("the error", || {
        !databases::log_lines("ERROR sqlite sink: cannot write its spool").is_empty()
    });
    let told = databases::log_lines("ERROR sqlite sink: cannot write its spool");
    let segment = disk.0.join("sqlite/00000000000000000001.spool");
    assert!(
        told[0].contains(&format!("{}: No space left on device", segment.display())),
        "{told:?}"
    );
    std::fs::remove_file(filler)?;
    send(200..300);
    drop(logger);
    writer.join().expect("the writer");
    let conn = rusqlite::Connection::open(&db)?;
    let texts: Vec<String> = conn
        .prepare("SELECT CAST(eventdata AS TEXT) FROM messages ORDER BY id")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let want: Vec<String> = events.iter().map(|e| e.data.clone()).collect();
    assert_eq!(texts, want);
    assert!(
        !databases::log_lines("INFO sqlite sink: spool writable again; ").is_empty(),
        "no line said the spool is writable again"
    );
    Ok(())
}

/// SIGTERM while the server reads nothing: after the grace the session is
/// aborted, but every line the server did receive has its event in the log.
#[test]
fn sigterm_loses_no_event_of_bytes_already_forwarded() -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let rig = Rig::new()?;
    rig.redirect(&[6667], 16667)?;
    let listener = rig
        .server
        .run(|| std::net::TcpListener::bind("0.0.0.0:6667"))??;
    let mut ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, "irc_protocol=on\n")?;
    let server_ip = rig.server_ip;
    let mut client = rig
        .client
        .run(move || std::net::TcpStream::connect((server_ip, 6667)))??;
    let (mut upstream, _) = listener.accept()?;
    let sender = std::thread::spawn(move || {
        let _ = client.write_all(b"NICK alice\r\nUSER a 0 * :A\r\n");
        for n in 0..200_000 {
            // Fails once the proxy is gone: the point is what got through.
            if client
                .write_all(format!("PRIVMSG bob :line {n}\r\n").as_bytes())
                .is_err()
            {
                break;
            }
        }
    });
    // The server reads nothing: the buffers fill and the relay waits.
    ims.wait_log("IRC", "alice", "bob", 1000)?;
    std::thread::sleep(std::time::Duration::from_secs(1));
    ims.process.signal(Signal::SIGTERM)?;
    assert_eq!(ims.process.wait_exit()?, Some(0));
    let mut received = Vec::new();
    let _ = upstream.read_to_end(&mut received);
    let _ = sender.join();
    // Whole lines only: the abort may cut the last write short.
    let whole = received.len() - received.iter().rev().take_while(|&&b| b != b'\n').count();
    let forwarded: Vec<String> = String::from_utf8_lossy(&received[..whole])
        .lines()
        .filter_map(|l| l.strip_prefix("PRIVMSG bob :").map(str::to_string))
        .collect();
    let logged: Vec<String> = wait::read(&ims.log_file("IRC", "alice", "bob"))
        .lines()
        .map(|l| imspector::LogLine::parse(l).rest)
        .collect();
    assert!(
        forwarded.len() > 1000,
        "only {} lines got through",
        forwarded.len()
    );
    assert!(
        logged.len() >= forwarded.len(),
        "{} lines reached the server, {} are logged",
        forwarded.len(),
        logged.len()
    );
    for (n, text) in forwarded.iter().enumerate() {
        assert_eq!(logged[n], format!("1,1,0,,{text}"));
    }
    Ok(())
}

/// `log_failure=block`: a message's bytes go out only once its event is with
/// the sinks. Here a sink is held up (the categories file is a FIFO no one
/// reads yet): the censored message stays in the proxy until a reader opens
/// the FIFO, then it is delivered and its line is in the file.
#[test]
fn with_log_failure_block_a_message_waits_until_its_event_is_written() -> anyhow::Result<()> {
    use std::io::Read;
    let (rig, _server) = irc_rig()?;
    let dir = rig.subdir("ims")?;
    let (cats, badwords) = (dir.join("cats.log"), dir.join("badwords.txt"));
    std::fs::write(&badwords, "plan\n")?;
    let config = format!(
        "irc_protocol=on\nlog_failure=block\nbadwords_filename={}\ncats_logging_filename={}\n",
        badwords.display(),
        cats.display()
    );
    let ims = Imspector::start(&rig.gateway, &dir, &config)?;
    let (alice, bob) = alice_and_bob(&rig)?;
    alice.msg("bob", "before")?;
    bob.wait_received("alice", "alice", "before")?;

    // Opening a FIFO for writing waits for a reader: the writer thread waits.
    std::fs::remove_file(&cats)?;
    nix::unistd::mkfifo(&cats, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
    alice.msg("bob", "the plan")?;
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        !bob.window("alice").contains("the ****"),
        "delivered before its event was written: {}",
        bob.window("alice")
    );
    let reader = std::thread::spawn(move || {
        let mut fifo = std::fs::File::open(&cats)?;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\n") && fifo.read(&mut byte)? == 1 {
            line.push(byte[0]);
        }
        std::io::Result::Ok(String::from_utf8_lossy(&line).into_owned())
    });
    bob.wait_received("alice", "alice", "the ****")?;
    let line = reader.join().expect("the FIFO reader")?;
    assert!(
        line.starts_with("IRC,alice,bob,") && line.ends_with(",0,1 badwords;,the plan\n"),
        "{line:?}"
    );
    assert!(ims.log_file("IRC", "alice", "bob").exists());
    Ok(())
}
