//! Limits on what a connection may take: how many are open at once, and how
//! long one may stay silent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use imspector_e2e::{Imspector, Rig};

const PORT: u16 = 16667;

/// A server in the server namespace on `port` that accepts every connection
/// and echoes what it reads.
fn echo_server(rig: &Rig, port: u16) -> anyhow::Result<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let ns = rig.server.name.clone();
    std::thread::spawn(move || {
        let file = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let listener = TcpListener::bind(("0.0.0.0", port)).unwrap();
        ready_tx.send(()).unwrap();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    ready_rx.recv()?;
    Ok(())
}

/// Send `line` and read its echo; an error when the proxy closed instead.
fn echoed(conn: &mut TcpStream, line: &[u8]) -> std::io::Result<()> {
    conn.write_all(line)?;
    let mut got = vec![0; line.len()];
    conn.read_exact(&mut got)?;
    assert_eq!(got, line);
    Ok(())
}

#[test]
fn connections_over_max_connections_are_closed_with_one_line() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    rig.redirect(&[6667], PORT)?;
    echo_server(&rig, 6667)?;
    let ims = Imspector::start(
        &rig.gateway,
        &rig.subdir("ims")?,
        "irc_protocol=on\nmax_connections=2\n",
    )?;
    ims.wait_output("(at most 2 connections)")?;
    let dst = SocketAddr::from((rig.server_ip, 6667));
    rig.client.run(move || -> anyhow::Result<()> {
        let mut first = TcpStream::connect(dst)?;
        let mut second = TcpStream::connect(dst)?;
        echoed(&mut first, b"PING :one\r\n")?;
        echoed(&mut second, b"PING :two\r\n")?;
        // The third is closed without a byte.
        let mut third = TcpStream::connect(dst)?;
        third.set_read_timeout(Some(Duration::from_secs(10)))?;
        let _ = third.write_all(b"PING :three\r\n");
        let mut got = Vec::new();
        let _ = third.read_to_end(&mut got);
        assert!(got.is_empty(), "{got:?}");
        // Once one closes, there is room again.
        drop(first);
        imspector_e2e::wait::until("room for a new connection", || {
            let mut again = TcpStream::connect(dst).ok()?;
            again.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            echoed(&mut again, b"PING :four\r\n").ok()
        })?;
        echoed(&mut second, b"PING :still up\r\n")?;
        Ok(())
    })??;
    ims.wait_output("closed: max_connections (2) are open (1 refused since the last such line)")?;
    Ok(())
}

#[test]
fn a_silent_connection_is_closed_only_where_the_protocol_has_keepalives() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    rig.redirect(&[6667, 5222], PORT)?;
    echo_server(&rig, 6667)?;
    echo_server(&rig, 5222)?;
    let ims = Imspector::start(
        &rig.gateway,
        &rig.subdir("ims")?,
        "irc_protocol=on\njabber_protocol=on\nidle_timeout=2\n",
    )?;
    let (irc, xmpp) = (
        SocketAddr::from((rig.server_ip, 6667)),
        SocketAddr::from((rig.server_ip, 5222)),
    );
    rig.client.run(move || -> anyhow::Result<()> {
        let mut irc = TcpStream::connect(irc)?;
        let mut xmpp = TcpStream::connect(xmpp)?;
        // Traffic keeps a connection open past the timeout.
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(800));
            echoed(&mut irc, b"PING :keep me\r\n")?;
        }
        // Silence closes the IRC one after about 2 s.
        let silent = Instant::now();
        irc.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut got = Vec::new();
        irc.read_to_end(&mut got)?;
        let closed_after = silent.elapsed();
        assert!(
            closed_after > Duration::from_millis(1500) && closed_after < Duration::from_secs(6),
            "{closed_after:?}"
        );
        // XMPP has no mandatory keep-alive: silence there is no reason to close.
        echoed(&mut xmpp, b" ")?;
        Ok(())
    })??;
    ims.wait_output("IRC: no byte either way for 2 s; closed (idle_timeout)")?;
    Ok(())
}
