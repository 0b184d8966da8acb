//! The relay itself, with sockets the test opens in the namespaces: bytes
//! unchanged, half-close both ways, unknown ports, loops.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};

use imspector_e2e::{Imspector, Rig};

const PORT: u16 = 16667;

/// A server in the server namespace on `port` that reads until the client's
/// end of stream, then answers with `reply` and closes. Returns what it read.
fn one_shot_server(
    rig: &Rig,
    port: u16,
    reply: &'static [u8],
) -> anyhow::Result<std::sync::mpsc::Receiver<Vec<u8>>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let ns = rig.server.name.clone();
    std::thread::spawn(move || {
        let file = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let listener = TcpListener::bind(("0.0.0.0", port)).unwrap();
        ready_tx.send(()).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).unwrap();
        conn.write_all(reply).unwrap();
        tx.send(got).unwrap();
    });
    ready_rx.recv()?;
    Ok(rx)
}

/// Connect from the client namespace, send `data`, half-close, read the answer.
fn client_exchange(
    rig: &Rig,
    dst: SocketAddr,
    data: Vec<u8>,
) -> anyhow::Result<std::io::Result<Vec<u8>>> {
    rig.client.run(move || -> std::io::Result<Vec<u8>> {
        let mut conn = TcpStream::connect(dst)?;
        conn.write_all(&data)?;
        conn.shutdown(Shutdown::Write)?;
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer)?;
        Ok(answer)
    })
}

/// The proxy closed the connection without answering (a reset is fine: the
/// client's bytes were never read).
fn assert_closed(result: std::io::Result<Vec<u8>>) {
    match result {
        Ok(answer) => assert!(answer.is_empty(), "got {answer:?}"),
        Err(e) => {
            use std::io::ErrorKind::*;
            assert!(
                matches!(e.kind(), ConnectionReset | NotConnected | BrokenPipe),
                "{e}"
            );
        }
    }
}

#[test]
fn bytes_pass_unchanged_and_the_client_may_half_close_first() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    rig.redirect(&[6667], PORT)?;
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, "irc_protocol=on\n")?;
    let got = one_shot_server(&rig, 6667, b":srv NOTICE * :bye\r\nno line end")?;
    // Not UTF-8, a 200 kB line, a message longer than any IRC line, a line
    // without its end: all must arrive exactly as sent, and the server only
    // answers after our half-close.
    let mut data = b"NICK x\r\nPRIVMSG bob :\xff\xfe latin1 \xe9\r\n".to_vec();
    data.extend(std::iter::repeat_n(b'z', 200_000));
    data.extend_from_slice(b"\r\nPRIVMSG bob :");
    data.extend(std::iter::repeat_n(b'y', 200_000));
    data.extend_from_slice(b"\r\nPRIVMSG bob :partial");
    let answer = client_exchange(&rig, (rig.server_ip, 6667).into(), data.clone())??;
    assert_eq!(got.recv()?, data);
    assert_eq!(answer, b":srv NOTICE * :bye\r\nno line end");
    // The overlong message made the parser give up: said once, relayed plainly,
    // and logged in its conversation after the message before it.
    ims.wait_output("IRC line longer than 64 KiB: too large to inspect; the rest of the connection is relayed without inspection or logging")?;
    // The Latin-1 message was still logged, then where inspection stopped.
    let lines = ims.wait_log("IRC", "x", "bob", 2)?;
    assert_eq!(lines[0].rest, "1,1,0,,\u{ff}\u{fe} latin1 \u{e9}");
    assert!(
        lines[1]
            .rest
            .starts_with("1,1,0,uninspectable;,[IMSpector: inspection stopped"),
        "{lines:?}"
    );
    Ok(())
}

#[test]
fn the_server_may_half_close_first() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    rig.redirect(&[6667], PORT)?;
    let _ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, "irc_protocol=on\n")?;
    // The server says its piece and half-closes; the client, having read it
    // to the end, still sends, and the server still receives.
    let (tx, got) = std::sync::mpsc::channel();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let ns = rig.server.name.clone();
    std::thread::spawn(move || {
        let file = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let listener = TcpListener::bind(("0.0.0.0", 6667)).unwrap();
        ready_tx.send(()).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b":srv NOTICE * :read only from now on\r\n")
            .unwrap();
        conn.shutdown(Shutdown::Write).unwrap();
        let mut data = Vec::new();
        conn.read_to_end(&mut data).unwrap();
        tx.send(data).unwrap();
    });
    ready.recv()?;
    let dst = SocketAddr::from((rig.server_ip, 6667));
    let greeting = rig.client.run(move || -> std::io::Result<Vec<u8>> {
        let mut conn = TcpStream::connect(dst)?;
        let mut greeting = Vec::new();
        conn.read_to_end(&mut greeting)?;
        conn.write_all(b"NICK late\r\nPRIVMSG bob :after your end\r\n")?;
        conn.shutdown(Shutdown::Write)?;
        Ok(greeting)
    })??;
    assert_eq!(greeting, b":srv NOTICE * :read only from now on\r\n");
    assert_eq!(got.recv()?, b"NICK late\r\nPRIVMSG bob :after your end\r\n");
    Ok(())
}

#[test]
fn unknown_ports_and_loops_are_refused_with_one_line() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    rig.redirect(&[6667, 5050], PORT)?;
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, "irc_protocol=on\n")?;
    // 5050 is Yahoo, not enabled: the connection is closed without a byte.
    assert_closed(client_exchange(
        &rig,
        (rig.server_ip, 5050).into(),
        b"hello".to_vec(),
    )?);
    ims.wait_output("port 5050 is not an enabled protocol; closed")?;
    // Straight to our own port: that would loop.
    let own = SocketAddr::from((rig.gateway_ip_towards_client(), PORT));
    assert_closed(client_exchange(&rig, own, b"hello".to_vec())?);
    ims.wait_output("refused (it would loop)")?;
    Ok(())
}

#[test]
fn an_unreachable_server_closes_the_client_and_says_why() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    rig.redirect(&[6667], PORT)?;
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, "irc_protocol=on\n")?;
    // Nothing listens on the server: connection refused upstream.
    assert_closed(client_exchange(
        &rig,
        (rig.server_ip, 6667).into(),
        b"NICK x\r\n".to_vec(),
    )?);
    ims.wait_output(&format!("IRC connection to {}:6667 failed", rig.server_ip))?;
    Ok(())
}
