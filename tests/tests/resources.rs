//! Bounded resources under abuse: many connections that each announce a large
//! MSN payload and send most of it cannot take the daemon past
//! `max_buffered_bytes`, and the memory comes back when they close.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use imspector_e2e::{wait, Imspector, Rig};

const CONNECTIONS: usize = 48;
const SENT: usize = 900_000;

/// The daemon's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn partial_messages_stay_within_max_buffered_bytes_and_memory_comes_back() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    rig.redirect(&[1863], 16667)?;
    let config = "msn_protocol=on\nmax_buffered_bytes=4000000\n";
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, config)?;
    let pid = ims.process.child.id();
    // A server that takes whatever comes.
    let listener = rig.server.run(|| TcpListener::bind("0.0.0.0:1863"))??;
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut sink = [0u8; 65536];
                while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
    });
    let before = rss_kib(pid);
    let server = SocketAddr::from((rig.server_ip, 1863));
    let mut conns = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut conn = rig.client.run(move || TcpStream::connect(server))??;
        conn.write_all(b"MSG 1 N 1000000\r\n")?;
        conn.write_all(&vec![b'x'; SENT])?;
        conns.push(conn);
    }
    let released = || {
        ims.process
            .output()
            .matches("more than max_buffered_bytes")
            .count()
    };
    // All but the few that fit in 4 MB are released.
    let fit = 4_000_000 / SENT;
    wait::until("the releases", || {
        (released() >= CONNECTIONS - fit).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}; {} released", released()))?;
    let peak = rss_kib(pid);
    drop(conns);
    let after = wait::until("the memory to come back", || {
        let now = rss_kib(pid);
        (now < before + 8 * 1024).then_some(now)
    })
    .map_err(|e| anyhow::anyhow!("{e}: {before} -> {peak} -> {} KiB", rss_kib(pid)))?;
    eprintln!(
        "RSS before {before} KiB, with {CONNECTIONS} connections holding {SENT} bytes each {peak} KiB, after they closed {after} KiB"
    );
    // Without the budget they hold some 45 MB (measured: 14 MB -> 58 MB).
    assert!(peak < before + 24 * 1024, "{before} -> {peak} KiB");
    Ok(())
}
