//! The http_port CONNECT listener: tunnels to enabled IM ports for allowed
//! clients only, and says why when it refuses.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};

use imspector_e2e::irc::{Ii, Ngircd};
use imspector_e2e::{Imspector, Rig};

const HTTP_PORT: u16 = 8080;

/// Send a request head to the CONNECT listener and return the response head.
fn request(stream: &mut TcpStream, head: &str) -> std::io::Result<String> {
    stream.write_all(head.as_bytes())?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut response = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            return Ok(response);
        }
        response.push_str(&line);
    }
}

#[test]
fn connect_tunnels_irc_for_loopback_clients_and_logs_them() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    let ims = Imspector::start(
        &rig.gateway,
        &rig.subdir("ims")?,
        &format!("irc_protocol=on\nhttp_port={HTTP_PORT}\n"),
    )?;
    ims.wait_output(&format!("CONNECT listener on [::]:{HTTP_PORT}"))?;
    let _server = Ngircd::start(&rig.server, &rig.subdir("ngircd")?)?;
    let bob = Ii::start(
        &rig.server,
        &rig.subdir("clients")?,
        "127.0.0.1".parse()?,
        "bob",
        None,
    )?;
    let server = rig.server_ip;
    let status = rig.gateway.run(move || -> std::io::Result<String> {
        let mut conn = TcpStream::connect((Ipv4Addr::LOCALHOST, HTTP_PORT))?;
        let status = request(
            &mut conn,
            &format!("CONNECT {server}:6667 HTTP/1.1\r\n\r\n"),
        )?;
        conn.write_all(b"NICK carl\r\nUSER carl 0 * :Carl\r\n")?;
        let mut reader = BufReader::new(conn.try_clone()?);
        let mut line = String::new();
        while !line.contains(" 001 ") {
            line.clear();
            reader.read_line(&mut line)?;
        }
        conn.write_all(b"PRIVMSG bob :through the CONNECT listener\r\nQUIT\r\n")?;
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
        Ok(status)
    })??;
    assert_eq!(status, "HTTP/1.1 200 Connection established\r\n");
    bob.wait_received("carl", "carl", "through the CONNECT listener")?;
    let lines = ims.wait_log("IRC", "carl", "bob", 1)?;
    assert_eq!(lines[0].client_ip(), "127.0.0.1");
    assert_eq!(lines[0].rest, "1,1,0,,through the CONNECT listener");
    Ok(())
}

#[test]
fn connect_refusals_are_http_answers_with_the_reason() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    let ims = Imspector::start(
        &rig.gateway,
        &rig.subdir("ims")?,
        &format!("irc_protocol=on\nhttp_port={HTTP_PORT}\n"),
    )?;
    let ask = |head: &'static str| -> anyhow::Result<String> {
        Ok(rig.gateway.run(move || -> std::io::Result<String> {
            let mut conn = TcpStream::connect((Ipv4Addr::LOCALHOST, HTTP_PORT))?;
            conn.write_all(head.as_bytes())?;
            let mut whole = String::new();
            conn.read_to_string(&mut whole)?;
            Ok(whole)
        })??)
    };
    let web = ask("CONNECT 192.0.2.1:80 HTTP/1.1\r\n\r\n")?;
    assert!(web.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{web}");
    assert!(
        web.ends_with("\r\n\r\nimspector: port 80 is not an enabled IM protocol\n"),
        "{web}"
    );
    let get = ask("GET http://example.org/ HTTP/1.1\r\n\r\n")?;
    assert!(
        get.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{get}"
    );
    assert!(
        get.ends_with("imspector: only CONNECT is served here, not GET\n"),
        "{get}"
    );

    // A client from the LAN is not in the default http_clients (loopback only).
    let gateway = rig.gateway_ip_towards_client();
    let lan = rig.client.run(move || -> std::io::Result<String> {
        let mut conn = TcpStream::connect((gateway, HTTP_PORT))?;
        conn.write_all(b"CONNECT 192.0.2.1:6667 HTTP/1.1\r\n\r\n")?;
        let mut whole = String::new();
        conn.read_to_string(&mut whole)?;
        Ok(whole)
    })??;
    assert!(lan.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{lan}");
    assert!(
        lan.ends_with(&format!(
            "imspector: client {} is not in http_clients\n",
            rig.client_ip
        )),
        "{lan}"
    );
    ims.wait_output("CONNECT refused: 403 Forbidden: port 80 is not an enabled IM protocol")?;
    Ok(())
}
