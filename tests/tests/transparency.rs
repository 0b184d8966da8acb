//! Any byte stream passes every inspected port unchanged and in time: whatever
//! a core makes of them, the bytes of iperf3, HTTP, SSH, TLS and noise reach
//! the other side, and none waits in the proxy longer than the hold timeout.

use std::net::SocketAddr;
use std::time::Duration;

use imspector_e2e::replay::{Recording, Sender};
use imspector_e2e::{Imspector, Rig};

const PORT: u16 = 16667;

/// Every port a core inspects, with every protocol on.
const PORTS: [u16; 7] = [6667, 1863, 8074, 5190, 5050, 5222, 5223];
const ALL_ON: &str = "msn_protocol=on\nicq_protocol=on\nyahoo_protocol=on\nirc_protocol=on\n\
                      gg_protocol=on\njabber_protocol=on\n";

/// The default hold timeout, and what a loaded machine may add to it.
const BOUND: Duration = Duration::from_millis(1000 + 1500);

use Sender::{Client, Server};

/// A TLS 1.2/1.3 ClientHello for `chat.example`, built field by field.
fn client_hello() -> Vec<u8> {
    fn with_len16(body: Vec<u8>) -> Vec<u8> {
        let mut out = (body.len() as u16).to_be_bytes().to_vec();
        out.extend(body);
        out
    }
    let name = b"chat.example";
    let mut sni = vec![0];
    sni.extend(with_len16(name.to_vec()));
    let mut extensions = vec![0, 0]; // server_name
    extensions.extend(with_len16(with_len16(sni)));
    extensions.extend([0, 0x2b, 0, 3, 2, 3, 4]); // supported_versions: TLS 1.3
    let mut hello = vec![3, 3];
    hello.extend((0..32u8).map(|i| i.wrapping_mul(37)));
    hello.push(32);
    hello.extend((0..32u8).map(|i| i.wrapping_mul(11)));
    hello.extend(with_len16(vec![0x13, 0x01, 0x13, 0x02, 0xc0, 0x2b]));
    hello.extend([1, 0]);
    hello.extend(with_len16(extensions));
    let mut handshake = vec![1, 0];
    handshake.extend(with_len16(hello));
    let mut record = vec![0x16, 3, 1];
    record.extend(with_len16(handshake));
    record
}

/// Bytes that look like nothing, the same in every run.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut lcg = imspector_protocols::invariants::Lcg(seed);
    (0..len).map(|_| lcg.next_u32() as u8).collect()
}

/// The exchanges every port must pass, each side waiting for the other.
fn exchanges() -> Vec<Recording> {
    let http = Recording::synthetic(
        "HTTP request and response",
        vec![
            (
                Client,
                b"GET /index.html HTTP/1.1\r\nHost: chat.example\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n".to_vec(),
            ),
            (
                Server,
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n".to_vec(),
            ),
        ],
    );
    let ssh = Recording::synthetic(
        "SSH banner exchange",
        vec![
            (
                Server,
                b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n".to_vec(),
            ),
            (
                Client,
                b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n".to_vec(),
            ),
            (
                Client,
                [&[0, 0, 5, 0xdc, 4, 20][..], &noise(1500, 7)].concat(),
            ),
            (
                Server,
                [&[0, 0, 4, 0x3c, 6, 20][..], &noise(1080, 8)].concat(),
            ),
        ],
    );
    let tls = Recording::synthetic(
        "TLS ClientHello waiting for the ServerHello",
        vec![
            (Client, client_hello()),
            (
                Server,
                [&[0x16, 3, 3, 0, 0x7a, 2, 0, 0, 0x76][..], &noise(0x76, 9)].concat(),
            ),
            (
                Client,
                [
                    &[0x14, 3, 3, 0, 1, 1, 0x17, 3, 3, 0, 0x35][..],
                    &noise(0x35, 10),
                ]
                .concat(),
            ),
        ],
    );
    let random = Recording::synthetic(
        "random bytes both ways",
        vec![
            (Client, noise(1, 1)),
            (Server, noise(1, 2)),
            (Client, noise(7, 3)),
            (Server, noise(65536, 4)),
            (Client, noise(200_000, 5)),
            (Server, noise(3, 6)),
        ],
    );
    vec![http, ssh, tls, random]
}

#[test]
fn every_inspected_port_passes_any_stream_in_time() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    rig.redirect(&PORTS, PORT)?;
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, ALL_ON)?;
    for port in PORTS {
        for exchange in exchanges() {
            let dst = SocketAddr::from((rig.server_ip, port));
            let waited = exchange.replay(&rig.client, &rig.server, dst)?;
            assert!(
                waited < BOUND,
                "port {port}, {}: a segment waited {waited:?}\n{}",
                exchange.name,
                ims.process.output()
            );
        }
    }
    // 200,000 random bytes are more than the IRC core judges before a welcome;
    // once a core stops, the rest is spliced (and arrived unchanged above).
    let output = ims.process.output();
    for said in [
        "IRC: 65",
        "bytes of lines with a bare CR or a NUL before the server's welcome (001): not IRC; relaying the rest of this connection untouched",
        "IRC: client to server: spliced socket to socket from here",
        "Gadu-Gadu: server to client: spliced socket to socket from here",
    ] {
        assert!(output.contains(said), "no {said:?} in\n{output}");
    }
    Ok(())
}

#[test]
fn iperf3_runs_through_every_inspected_port_both_ways() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    rig.redirect(&PORTS, PORT)?;
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, ALL_ON)?;
    for port in PORTS {
        for reverse in [false, true] {
            let mut server = rig.server.command("iperf3");
            server.args(["-s", "-1", "--forceflush", "-p", &port.to_string()]);
            let server = imspector_e2e::process::Process::spawn(
                "iperf3 -s",
                server,
                rig.subdir(&format!("iperf3-{port}-{reverse}"))?
                    .join("server.out"),
            )?;
            imspector_e2e::wait::until("iperf3 to listen", || {
                server.output().contains("Server listening").then_some(())
            })?;
            let mut args = vec!["-c".to_string(), rig.server_ip.to_string()];
            args.extend(["-p", &port.to_string(), "-t", "1", "-J"].map(String::from));
            if reverse {
                args.push("-R".into());
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let report = rig
                .client
                .exec("timeout", &[&["20", "iperf3"][..], &args].concat());
            let report = report.map_err(|e| {
                anyhow::anyhow!(
                    "port {port}, reverse {reverse}: {e}\n{}",
                    ims.process.output()
                )
            })?;
            let report: serde_json::Value = serde_json::from_str(&report)?;
            let received = report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
            assert!(
                received > 1_000_000,
                "port {port}, reverse {reverse}: {received} bytes received\n{report}"
            );
        }
    }
    Ok(())
}

#[test]
fn half_a_message_reaches_the_server_within_the_bound_and_is_logged_once_whole(
) -> anyhow::Result<()> {
    let rig = Rig::new()?;
    rig.redirect(&[6667], PORT)?;
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, "irc_protocol=on\n")?;
    let session = Recording::synthetic(
        "a client that pauses in the middle of a message",
        vec![
            (Client, b"NICK alice\r\n".to_vec()),
            (Server, b":srv 001 alice :Welcome\r\n".to_vec()),
            (Client, b"PRIVMSG bob :hal".to_vec()),
            (Server, b":srv NOTICE alice :still there?\r\n".to_vec()),
            (Client, b"f of it\r\n".to_vec()),
            (Server, b":srv NOTICE alice :yes\r\n".to_vec()),
        ],
    );
    let waited = session.replay(&rig.client, &rig.server, (rig.server_ip, 6667).into())?;
    // The server saw the half line after the hold timeout, not never.
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(waited < BOUND, "{waited:?}");
    let lines = ims.wait_log("IRC", "alice", "bob", 1)?;
    assert_eq!(lines[0].rest, "1,1,0,,half of it");
    Ok(())
}
