//! The ICAP service with real software: Matrix users on a real matrix-synapse
//! chat through a real Squid that hands their requests and responses to
//! imspector; c-icap's own client talks to the service; and malformed ICAP
//! gets an answer or a close, in bounded memory.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use imspector_e2e::icap::{
    c_icap_client, read_heads, reqmod, reqmod_with_preview, send_raw, Reply,
};
use imspector_e2e::imspector::{assert_lines, now};
use imspector_e2e::scripted::msn::{incoming_text, ALICE, BOB};
use imspector_e2e::scripted::msn_gateway::{GatewayServer, GatewaySession, GATEWAY_HOST};
use imspector_e2e::scripted::{Frame, Item, ScriptedProtocol};
use imspector_e2e::squid::{Squid, SQUID_PORT};
use imspector_e2e::synapse::{MatrixUser, Synapse};
use imspector_e2e::tmpfs::Tmpfs;
use imspector_e2e::{wait, Imspector, Rig};
use serde_json::json;

const ICAP: &str = "127.0.0.1:1344";

fn icap_addr() -> SocketAddr {
    ICAP.parse().unwrap()
}

/// Squid in the gateway for the rig's clients, sending what goes to the
/// rig's server through the ICAP service (squid/icap.conf); `extra` are lines
/// of the test's own.
fn chat_squid(rig: &Rig, extra: &str) -> anyhow::Result<Squid> {
    Squid::start_with(
        &rig.gateway,
        &rig.subdir("squid")?,
        &format!("{}/24", rig.client_ip),
        &format!(
            "{extra}acl imspector_chat dst {}\nhttp_access allow localnet\n",
            rig.server_ip
        ),
        &["icap.conf"],
    )
}

#[test]
fn matrix_through_squid_is_logged_filtered_and_blocked() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    let homeserver = SocketAddr::from((rig.server_ip, 8008));
    let synapse = Synapse::start(&rig.server, &rig.subdir("synapse")?, homeserver)?;
    let conf = rig.subdir("conf")?;
    std::fs::write(conf.join("badwords.txt"), "darn\n")?;
    let ims = Imspector::start(
        &rig.gateway,
        &rig.subdir("ims")?,
        &format!(
            "icap_port=on\nbadwords_filename={}\nbadwords_block_count=1\n",
            conf.join("badwords.txt").display()
        ),
    )?;
    ims.wait_output("ICAP service on icap://127.0.0.1:1344")?;
    let _squid = chat_squid(&rig, "")?;
    synapse.register(&rig.server, "alice", "alice-pw")?;
    synapse.register(&rig.server, "bob", "bob-pw")?;
    let since_time = now();

    // Alice is behind Squid; Bob talks to the homeserver directly.
    let proxy = SocketAddr::from((rig.gateway_ip_towards_client(), SQUID_PORT));
    let alice = MatrixUser::login(&rig.client, homeserver, Some(proxy), "alice", "alice-pw")?;
    let bob = MatrixUser::login(&rig.server, homeserver, None, "bob", "bob-pw")?;
    assert_eq!(alice.user_id, "@alice:test.local");
    let room = alice.create_room()?;
    bob.join(&room)?;
    let next_batch = alice.sync(None)?["next_batch"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    assert_eq!(alice.say(&room, "hello bob")?.status, 200);
    let emote = json!({"msgtype": "m.emote", "body": "waves"});
    assert_eq!(
        alice.send_event(&room, "m.room.message", &emote)?.status,
        200
    );
    let file = json!({"msgtype": "m.file", "body": "report.pdf", "url": "mxc://test.local/abc", "info": {"size": 1234}});
    assert_eq!(
        alice.send_event(&room, "m.room.message", &file)?.status,
        200
    );
    let refused = alice.say(&room, "darn darn")?;
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.body,
        json!({"errcode": "M_FORBIDDEN", "error": "The message or action was blocked (**** ****)"})
    );
    assert_eq!(alice.say(&room, "darn it")?.status, 200);
    let encrypted = json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgA", "sender_key": "k", "session_id": "s", "device_id": "D"});
    assert_eq!(
        alice
            .send_event(&room, "m.room.encrypted", &encrypted)?
            .status,
        200
    );
    bob.say(&room, "hi alice")?;
    bob.say(&room, "darn darn, alice")?;
    let synced = alice.sync(Some(&next_batch))?;

    // Bob got what the filters let through, rewritten; never the blocked one.
    assert_eq!(
        bob.texts(&room)?,
        [
            "hello bob",
            "waves",
            "report.pdf",
            "**** it",
            "hi alice",
            "darn darn, alice"
        ]
    );
    // Alice's sync lost Bob's blocked line and nothing else.
    let timeline: Vec<String> = synced["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        timeline,
        ["hello bob", "waves", "report.pdf", "**** it", "hi alice"]
    );

    let lines = ims.wait_log("Matrix", "@alice:test.local", &room.to_lowercase(), 8)?;
    let rest: Vec<&str> = lines.iter().map(|l| l.rest.as_str()).collect();
    assert_eq!(
        rest,
        [
            "1,1,0,,hello bob",
            "1,1,0,,/me waves",
            "1,2,0,,report.pdf 1234 bytes",
            "1,1,1,2 badwords;,darn darn",
            "1,1,0,1 badwords;,darn it",
            "1,1,0,,[encrypted: m.megolm.v1.aes-sha2]",
            "0,1,0,,@bob:test.local: hi alice",
            "0,1,1,2 badwords;,@bob:test.local: darn darn, alice",
        ]
    );
    // The HTTP client, as Squid told us: Alice's address and her port.
    for line in &lines {
        assert_eq!(line.client_ip(), rig.client_ip.to_string(), "{line:?}");
        assert!(!line.client.ends_with(":0"), "{line:?}");
        assert!(
            line.timestamp >= since_time && line.timestamp <= now(),
            "{line:?}"
        );
    }
    Ok(())
}

/// imspector with the ICAP service on, in the gateway, and a badwords file.
fn icap_only(rig: &Rig, extra: &str) -> anyhow::Result<Imspector> {
    let ims = Imspector::start(
        &rig.gateway,
        &rig.subdir("ims")?,
        &format!("icap_port=on\n{extra}"),
    )?;
    ims.wait_output("ICAP service on")?;
    Ok(ims)
}

#[test]
fn c_icap_client_options_reqmod_and_respmod() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    let ims = icap_only(&rig, "")?;
    let c = |args: &[&str]| {
        let mut all = vec!["-i", "127.0.0.1", "-p", "1344", "-v"];
        all.extend_from_slice(args);
        c_icap_client(&rig.gateway, &all)
    };
    for (service, method) in [("reqmod", "REQMOD"), ("respmod", "RESPMOD")] {
        let options = c(&["-s", service])?;
        for line in [
            "ICAP/1.0 200 OK".to_string(),
            format!("Methods: {method}"),
            "Allow: 204".into(),
            "Preview: 4096".into(),
            "Max-Connections: 1000".into(),
            "Options-TTL: 300".into(),
            "Transfer-Preview: *".into(),
            "Transfer-Ignore: js, css, png, jpg, jpeg, gif, svg, ico, webp, woff, woff2, ttf, map"
                .into(),
        ] {
            assert!(options.contains(&line), "{line} in\n{options}");
        }
    }
    let dir = rig.subdir("bodies")?;
    let body = dir.join("send.json");
    std::fs::write(&body, r#"{"msgtype":"m.text","body":"hello from c-icap"}"#)?;
    let body = body.to_str().unwrap();
    let url = "http://matrix.test/_matrix/client/v3/rooms/!room:test.local/send/m.room.message/t1";
    let out = c(&[
        "-s",
        "reqmod",
        "-req",
        url,
        "-method",
        "PUT",
        "-f",
        body,
        "-x",
        "X-Client-IP: 10.9.8.7",
        "-x",
        "X-Client-Port: 4567",
    ])?;
    assert!(out.contains("ICAP/1.0 204 No Content"), "{out}");
    let lines = ims.wait_log("Matrix", "unknown", "!room:test.local", 1)?;
    assert_eq!(lines[0].client, "10.9.8.7:4567");
    assert_eq!(lines[0].rest, "1,1,0,,hello from c-icap");

    // Without 204 and without preview, the message comes back as it was.
    let echoed = dir.join("echoed");
    let out = c(&[
        "-s",
        "respmod",
        "-resp",
        "http://matrix.test/other",
        "-f",
        body,
        "-no204",
        "-nopreview",
        "-o",
        echoed.to_str().unwrap(),
    ])?;
    assert!(out.contains("ICAP/1.0 200 OK"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&echoed)?,
        r#"{"msgtype":"m.text","body":"hello from c-icap"}"#
    );
    // With a preview, 204 after it.
    let out = c(&[
        "-s",
        "respmod",
        "-resp",
        "http://matrix.test/other",
        "-f",
        body,
    ])?;
    assert!(out.contains("ICAP/1.0 204 No Content"), "{out}");
    Ok(())
}

#[test]
fn malformed_icap_gets_an_answer_or_a_close() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    let _ims = icap_only(&rig, "icap_max_body=65536\n")?;
    let quick = Duration::from_millis(500);
    let run = |parts: Vec<Vec<u8>>| {
        rig.gateway.run(move || {
            let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            send_raw(icap_addr(), &refs, Duration::ZERO, Duration::from_secs(5))
        })
    };
    let options = b"OPTIONS icap://127.0.0.1/reqmod ICAP/1.0\r\nHost: x\r\n\r\n".to_vec();
    let head = |enc: &str| {
        format!("REQMOD icap://127.0.0.1/reqmod ICAP/1.0\r\nEncapsulated: {enc}\r\n\r\nGET / HTTP/1.1\r\n\r\n").into_bytes()
    };
    // Framing lost: 400 with the reason, then the connection is closed.
    let fatal: Vec<(Vec<u8>, &str)> = vec![
        (
            head("req-hdr=0, null-body=10"),
            "ICAP/1.0 400 encapsulated req-hdr does not end with an empty line (wrong offsets?)",
        ),
        (
            head("req-hdr=7, null-body=18"),
            "ICAP/1.0 400 bad Encapsulated header: the first section must start at 0",
        ),
        (
            head("req-hdr=0, res-body=18"),
            "ICAP/1.0 400 bad Encapsulated header: res-body does not fit this method",
        ),
        (
            b"REQMOD icap://127.0.0.1/reqmod ICAP/1.0\r\n\r\n".to_vec(),
            "ICAP/1.0 400 no Encapsulated header",
        ),
        (
            b"OPTIONS icap://127.0.0.1/reqmod ICAP/2.0\r\n\r\n".to_vec(),
            "ICAP/1.0 505 ICAP version \"ICAP/2.0\" is not supported",
        ),
        (
            {
                let mut r = reqmod("http://x/y", "hello", None);
                let at = r.windows(10).position(|w| w == b"\r\n5\r\nhello").unwrap();
                r[at + 2] = b'3'; // the chunk says 3 bytes, 5 follow
                r
            },
            "ICAP/1.0 400 bad chunk: chunk data longer than its size line says",
        ),
        (
            reqmod("http://x/y", &"a".repeat(100), Some(10)),
            "ICAP/1.0 400 preview longer than the 10 bytes announced",
        ),
        (
            vec![b'A'; 70 * 1024],
            "ICAP/1.0 400 request head larger than 65536 bytes",
        ),
    ];
    for (request, status) in fatal {
        let reply = run(vec![request, options.clone()])??;
        assert_eq!(reply.status_lines(), [status], "{reply:?}");
        assert!(reply.closed, "{reply:?}");
    }
    // Refusals that keep the framing: the next request on the connection is served.
    let kept: Vec<(Vec<u8>, &str)> = vec![
        (b"OPTIONS icap://127.0.0.1/nothing ICAP/1.0\r\n\r\n".to_vec(), "ICAP/1.0 404 no such service \"/nothing\" for this method"),
        (b"FROB icap://127.0.0.1/reqmod ICAP/1.0\r\nEncapsulated: null-body=0\r\n\r\n".to_vec(), "ICAP/1.0 501 method FROB is not implemented"),
        (
            b"REQMOD icap://127.0.0.1/reqmod ICAP/1.0\r\nEncapsulated: req-hdr=0, null-body=11\r\n\r\nGARBAGE\r\n\r\n".to_vec(),
            "ICAP/1.0 400 HTTP request head: invalid token",
        ),
    ];
    for (request, status) in kept {
        let reply = rig.gateway.run({
            let options = options.clone();
            move || send_raw(icap_addr(), &[&request, &options], Duration::ZERO, quick)
        })??;
        assert_eq!(
            reply.status_lines(),
            [status, "ICAP/1.0 200 OK"],
            "{reply:?}"
        );
        assert!(!reply.closed, "{reply:?}");
    }
    Ok(())
}

#[test]
fn slow_or_endless_requests_end_in_bounded_memory() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    let ims = icap_only(&rig, "icap_max_body=65536\n")?;
    // Slowloris: a head that never completes is cut off.
    let slow = rig.gateway.run(|| {
        send_raw(
            icap_addr(),
            &[b"OPTIONS icap://127.0.0.1/reqmod ICAP/1.0\r\nX-A: 1\r\n"],
            Duration::ZERO,
            Duration::from_secs(15),
        )
    })??;
    assert_eq!(
        slow.status_lines(),
        ["ICAP/1.0 408 request head timed out"],
        "{slow:?}"
    );
    assert!(slow.closed);
    // A chat message body far over icap_max_body, without Allow: 204: streamed
    // back unread while it is sent, never held whole.
    let reply = rig.gateway.run(|| -> anyhow::Result<(usize, bool)> {
        use std::io::{Read, Write};
        let url = "http://m/_matrix/client/v3/rooms/!r:t/send/m.room.message/t1";
        let http = format!("PUT {url} HTTP/1.1\r\nHost: m\r\n\r\n");
        let mut stream = std::net::TcpStream::connect(icap_addr())?;
        stream.write_all(format!("REQMOD icap://127.0.0.1/reqmod ICAP/1.0\r\nEncapsulated: req-hdr=0, req-body={}\r\n\r\n{http}", http.len()).as_bytes())?;
        let mut reader = stream.try_clone()?;
        let counter = std::thread::spawn(move || {
            let mut total = 0;
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                total += n;
            }
            total
        });
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..128 {
            stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
            stream.write_all(&chunk)?;
            stream.write_all(b"\r\n")?;
        }
        stream.write_all(b"0\r\n\r\n")?;
        stream.shutdown(std::net::Shutdown::Write)?;
        let total = counter.join().unwrap();
        Ok((total, true))
    })??;
    assert!(reply.0 > 128 << 20, "the body came back: {} bytes", reply.0);
    let status = std::fs::read_to_string(format!("/proc/{}/status", ims.process.pid()))?;
    let peak_kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        peak_kib < 48 * 1024,
        "peak RSS {peak_kib} KiB for a 128 MiB body"
    );
    assert!(ims
        .process
        .output()
        .contains("body over icap_max_body (65536 bytes); passed on unread"));
    Ok(())
}

#[test]
fn web_chat_rules_log_rewrite_and_block_through_squid() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    let conf = rig.subdir("conf")?;
    std::fs::write(conf.join("badwords.txt"), "darn\n")?;
    std::fs::write(conf.join("regex.txt"), "(?i)\\bbrb\\b => be right back\n")?;
    // The shipped rules, and one for a notes API under /notes/.
    let shipped =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/webchat-rules.txt");
    let rules = conf.join("webchat-rules.txt");
    std::fs::write(
        &rules,
        format!(
            "{}\n[Notes]\nmethod = POST\nhost = *\npath = /notes/*\ntext = /text\nroom = /room\nlocal = header:X-User-Id\n",
            std::fs::read_to_string(shipped)?
        ),
    )?;
    let ims = Imspector::start(
        &rig.gateway,
        &rig.subdir("ims")?,
        &format!(
            "icap_port=on\nwebchat_rules_filename={}\nbadwords_filename={}\nbadwords_block_count=1\nregex_filename={}\n",
            rules.display(),
            conf.join("badwords.txt").display(),
            conf.join("regex.txt").display()
        ),
    )?;
    ims.wait_output("ICAP service on")?;
    let chat = SocketAddr::from((rig.server_ip, 3000));
    let server =
        imspector_e2e::icap::RecordingServer::start(&rig.server, &rig.subdir("chat")?, chat)?;
    let _squid = chat_squid(&rig, "")?;
    let proxy = SocketAddr::from((rig.gateway_ip_towards_client(), SQUID_PORT));
    let post_to = |path: &str, body: &str| -> anyhow::Result<String> {
        rig.client.exec(
            "curl",
            &[
                "-sS",
                "--max-time",
                "20",
                "-x",
                &format!("http://{proxy}"),
                "-w",
                "\n%{http_code}",
                "-H",
                "Content-Type: application/json",
                "-H",
                "X-User-Id: Alice01",
                "--data-binary",
                body,
                &format!("http://{chat}{path}"),
            ],
        )
    };
    let post = |text: &str| {
        let body = json!({"message": {"rid": "GENERAL", "msg": text}}).to_string();
        post_to("/api/v1/chat.sendMessage", &body)
    };
    assert!(post("hello all")?.ends_with("\n200"));
    assert!(post("brb")?.ends_with("\n200"));
    let refused = post("darn darn")?;
    assert!(refused.ends_with("\n403"), "{refused}");
    assert!(
        refused.contains("<p>The message or action was blocked (**** ****)</p>"),
        "{refused}"
    );
    // The server got the rewritten body with its new length, never the blocked one.
    let body = |text: &str| {
        let b = json!({"message": {"rid": "GENERAL", "msg": text}}).to_string();
        format!("/api/v1/chat.sendMessage {} {b}", b.len())
    };
    assert_eq!(
        server.requests(),
        [body("hello all"), body("be right back")]
    );
    let lines = ims.wait_log("Rocket.Chat", "alice01", "general", 3)?;
    let rest: Vec<&str> = lines.iter().map(|l| l.rest.as_str()).collect();
    assert_eq!(
        rest,
        [
            "1,1,0,,hello all",
            "1,1,0,,brb",
            "1,1,1,2 badwords;,darn darn"
        ]
    );
    assert_eq!(lines[0].client_ip(), rig.client_ip.to_string());

    // Squid sends no URL ending in a Transfer-Ignore extension to the service.
    let note = |text: &str| json!({"room": "desk", "text": text}).to_string();
    assert!(post_to("/notes/style.css", &note("never seen"))?.ends_with("\n200"));
    assert!(post_to("/notes/today.txt", &note("seen"))?.ends_with("\n200"));
    let lines = ims.wait_log("Notes", "alice01", "desk", 1)?;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].rest, "1,1,0,,seen");
    assert_eq!(server.requests().len(), 4, "{:?}", server.requests());
    Ok(())
}

/// The shipped squid/ssl-bump.conf with this test's files in place of the
/// example paths.
fn ssl_bump_conf(
    ca: &imspector_e2e::tls::InterceptionCa,
    ssl_db: &std::path::Path,
) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(imspector_e2e::squid::snippets_dir().join("ssl-bump.conf"))?;
    Ok(text
        .replace(
            "/etc/imspector/imspector-ca.pem",
            &ca.cert.display().to_string(),
        )
        .replace(
            "/etc/imspector/imspector-ca.key",
            &ca.key.display().to_string(),
        )
        .replace("/var/lib/squid/ssl_db", &ssl_db.display().to_string()))
}

#[test]
fn matrix_over_https_is_bumped_by_squid_and_logged() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    let certs = rig.subdir("certs")?;
    let servers = imspector_e2e::tls::TestCa::new(&certs.join("public"))?;
    let cert = servers.server_cert(&certs, "matrix.test", rig.server_ip.into(), false)?;
    let homeserver = SocketAddr::from((rig.server_ip, 8448));
    let synapse = Synapse::start_with(
        &rig.server,
        &rig.subdir("synapse")?,
        homeserver,
        Some(&cert),
    )?;
    let ims = icap_only(&rig, "")?;
    let ca = imspector_e2e::tls::InterceptionCa::create(&rig.subdir("ca")?)?;
    let squid_dir = rig.subdir("squid")?;
    let ssl_db = squid_dir.join("ssl_db");
    rig.gateway.exec(
        "/usr/lib/squid/security_file_certgen",
        &["-c", "-s", ssl_db.to_str().unwrap(), "-M", "4MB"],
    )?;
    rig.gateway
        .exec("chown", &["-R", "proxy:proxy", ssl_db.to_str().unwrap()])?;
    rig.gateway.exec(
        "chmod",
        &["a+r", ca.key.to_str().unwrap(), ca.cert.to_str().unwrap()],
    )?;
    // Squid finds the homeserver by name, so the certificate it makes names it too.
    let hosts = squid_dir.join("hosts");
    std::fs::write(&hosts, format!("{} matrix.test\n", rig.server_ip))?;
    let local = format!(
        "hosts_file {hosts}\nacl imspector_chat dstdomain matrix.test\nacl SSL_ports port 8448\n\
         http_access allow localnet\ntls_outgoing_options cafile={public}\n{bump}",
        hosts = hosts.display(),
        public = servers.cert_file().display(),
        bump = ssl_bump_conf(&ca, &ssl_db)?,
    );
    let _squid = Squid::start_with(
        &rig.gateway,
        &squid_dir,
        &format!("{}/24", rig.client_ip),
        &local,
        &["icap.conf"],
    )?;
    synapse.register(&rig.server, "carol", "carol-pw")?;
    let proxy = SocketAddr::from((rig.gateway_ip_towards_client(), 3129));
    let cacert = ca.cert.display().to_string();
    let carol = MatrixUser::login_to(
        &rig.client,
        "https://matrix.test:8448",
        Some(proxy),
        &["--cacert", &cacert],
        "carol",
        "carol-pw",
    )?;
    let room = carol.create_room()?;
    assert_eq!(carol.say(&room, "over https, bumped")?.status, 200);
    let lines = ims.wait_log("Matrix", "@carol:test.local", &room.to_lowercase(), 1)?;
    assert_eq!(lines[0].rest, "1,1,0,,over https, bumped");
    assert_eq!(lines[0].client_ip(), rig.client_ip.to_string());
    Ok(())
}

/// What decoded MSN frames carry: texts with their senders where the frame
/// names one, markers by id.
fn items(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| match &f.item {
            Item::Text {
                from: Some(from),
                text,
            } => format!("{from}: {text}"),
            Item::Text { from: None, text } => text.clone(),
            Item::Marker(id) => format!("marker {id}"),
            Item::Other(what) => what.clone(),
        })
        .collect()
}

#[test]
fn msn_gateway_through_squid_is_logged_rewritten_and_blocked() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    let conf = rig.subdir("conf")?;
    std::fs::write(conf.join("badwords.txt"), "darn\n")?;
    let ims = icap_only(
        &rig,
        &format!(
            "badwords_filename={}\nbadwords_block_count=1\nresponder_filename={}\nnotice_days=1\nfiltered_mins=1\n",
            conf.join("badwords.txt").display(),
            conf.join("responder.db").display()
        ),
    )?;
    let server = GatewayServer::start(&rig.server, rig.server_ip)?;
    // Squid finds the gateway by its name; later requests go to the GW-IP address.
    let squid_dir = rig.subdir("squid")?;
    let hosts = squid_dir.join("hosts");
    std::fs::write(&hosts, format!("{} {GATEWAY_HOST}\n", rig.server_ip))?;
    let squid = chat_squid(&rig, &format!("hosts_file {}\n", hosts.display()))?;
    let since = now();
    let proxy = SocketAddr::from((rig.gateway_ip_towards_client(), SQUID_PORT));
    // The open and the call: the login reaches each end unchanged.
    let mut session = GatewaySession::open(&rig.client, proxy, server)?;

    // The first message of the conversation: the answer tells alice it is logged.
    let hello = session.msn.message("hello bob");
    let round = session.round(&hello, b"")?;
    assert_eq!(items(&round.at_server), ["hello bob"]);
    assert_eq!(
        items(&round.at_client),
        [format!(
            "{BOB}: Message from IMSpector: -=Your activities are being logged=-"
        )]
    );
    // A poll fetches what bob sent.
    let round = session.poll(&incoming_text(BOB, "Bob", "hi alice"))?;
    assert!(round.at_server.is_empty(), "{round:?}");
    assert_eq!(items(&round.at_client), [format!("{BOB}: hi alice")]);
    // Rewritten: the switchboard gets the new text, its length fixed (the
    // strict decoder reads each body to its end).
    let darn_it = session.msn.message("darn it");
    assert_eq!(items(&session.round(&darn_it, b"")?.at_server), ["**** it"]);
    // Blocked: left out of the body; the nudge after it still goes, and the
    // answer brings the blocked notice, then the nudge's ACK.
    let blocked = session.msn.message("darn darn");
    let nudge = session.msn.marker();
    let round = session.round(&[blocked, nudge].concat(), b"ACK 6\r\n")?;
    assert_eq!(items(&round.at_server), ["marker 6"]);
    assert_eq!(
        items(&round.at_client),
        [
            format!(
                "{BOB}: Message from IMSpector: -=The message or action was blocked (**** ****)=-"
            ),
            "marker 6".into()
        ]
    );
    // An incoming blocked message is taken out of the poll's answer, the rest stays.
    let answer = [
        incoming_text(BOB, "Bob", "darn darn, alice"),
        incoming_text(BOB, "Bob", "bye"),
    ]
    .concat();
    let round = session.poll(&answer)?;
    assert_eq!(items(&round.at_client), [format!("{BOB}: bye")]);

    let lines = ims.wait_log("MSN", ALICE, BOB, 6)?;
    assert_lines(
        &lines,
        &rig.client_ip.to_string(),
        since,
        &[
            "1,1,0,,hello bob",
            "0,1,0,,hi alice",
            "1,1,0,1 badwords;,darn it",
            "1,1,1,2 badwords;,darn darn",
            "0,1,1,2 badwords;,darn darn, alice",
            "0,1,0,,bye",
        ],
    );
    // Every request went through Squid (which logs no query, and writes a
    // line after its answer): the open by name, the rest to the GW-IP.
    let by_name = format!("POST http://{GATEWAY_HOST}/gateway/gateway.dll?");
    let by_address = format!("POST http://{}/gateway/gateway.dll?", rig.server_ip);
    let counted = |log: &str| {
        (
            log.matches(&by_name).count(),
            log.matches(&by_address).count(),
        )
    };
    wait::until("Squid's access log of 7 requests", || {
        (counted(&squid.access_log()) == (1, 6)).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}:\n{}", squid.access_log()))?;
    Ok(())
}

/// The answer to an OPTIONS on a new connection.
fn options(rig: &Rig) -> anyhow::Result<Reply> {
    let options = b"OPTIONS icap://127.0.0.1/reqmod ICAP/1.0\r\nHost: x\r\n\r\n";
    rig.gateway.run(move || {
        send_raw(
            icap_addr(),
            &[options],
            Duration::ZERO,
            Duration::from_secs(2),
        )
    })?
}

fn istag(rig: &Rig) -> anyhow::Result<String> {
    let reply = options(rig)?;
    reply
        .text
        .lines()
        .find(|l| l.starts_with("ISTag: "))
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no ISTag in {reply:?}"))
}

#[test]
fn istag_continue_many_at_once_and_max_connections() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    let ims = icap_only(&rig, "")?;
    // A reload changes the ISTag, so Squid drops what it cached from us.
    let before = istag(&rig)?;
    ims.reload("icap_port=on\n")?;
    let after = istag(&rig)?;
    assert_ne!(before, after);

    // A chat message longer than its preview: 100 Continue, then the rest is read.
    let url = "http://m/_matrix/client/v3/rooms/!many:test.local/send/m.room.message/t0";
    let long = json!({"msgtype": "m.text", "body": "a long line ".repeat(20)}).to_string();
    let (preview, rest) = reqmod_with_preview(url, &long, 64);
    let heads = rig.gateway.run(move || -> anyhow::Result<Vec<String>> {
        let mut stream = TcpStream::connect(icap_addr())?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(&preview)?;
        let mut heads = read_heads(&mut stream, 1)?;
        stream.write_all(&rest)?;
        heads.extend(read_heads(&mut stream, 1)?);
        Ok(heads)
    })??;
    assert_eq!(heads[0], "ICAP/1.0 100 Continue");
    assert!(
        heads[1].starts_with("ICAP/1.0 204 No Content\r\n"),
        "{heads:?}"
    );

    // Many transactions at once: 40 connections, 25 pipelined requests each.
    let (connections, each) = (40, 25);
    let clients: Vec<_> = (0..connections)
        .map(|c| {
            rig.gateway.run(move || {
                std::thread::spawn(move || -> anyhow::Result<Vec<String>> {
                    let mut stream = TcpStream::connect(icap_addr())?;
                    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
                    let requests: Vec<u8> = (0..each)
                        .flat_map(|n| {
                            let body = json!({"msgtype": "m.text", "body": format!("c{c} n{n}")});
                            let url = format!("http://m/_matrix/client/v3/rooms/!many:test.local/send/m.room.message/c{c}n{n}");
                            reqmod(&url, &body.to_string(), None)
                        })
                        .collect();
                    stream.write_all(&requests)?;
                    read_heads(&mut stream, each)
                })
            })
        })
        .collect::<anyhow::Result<_>>()?;
    for client in clients {
        let heads = client.join().expect("client thread")?;
        assert!(
            heads
                .iter()
                .all(|h| h.starts_with("ICAP/1.0 204 No Content\r\n")),
            "{heads:?}"
        );
    }
    let lines = ims.wait_log(
        "Matrix",
        "unknown",
        "!many:test.local",
        1 + connections * each,
    )?;
    let mut logged: Vec<String> = lines.iter().map(|l| l.rest.clone()).collect();
    logged.sort();
    let mut expected: Vec<String> = (0..connections)
        .flat_map(|c| (0..each).map(move |n| format!("1,1,0,,c{c} n{n}")))
        .chain([format!("1,1,0,,{}", "a long line ".repeat(20))])
        .collect();
    expected.sort();
    assert_eq!(logged, expected);

    // Max-Connections: with 1000 open, the next is refused; one closed makes room.
    let mut open = rig.gateway.run(|| -> anyhow::Result<Vec<TcpStream>> {
        (0..imspector::icap::MAX_CONNECTIONS)
            .map(|_| {
                let mut stream = TcpStream::connect(icap_addr())?;
                stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                stream.write_all(b"OPTIONS icap://127.0.0.1/reqmod ICAP/1.0\r\n\r\n")?;
                read_heads(&mut stream, 1)?;
                Ok(stream)
            })
            .collect()
    })??;
    let refused = options(&rig)?;
    assert_eq!(
        refused.status_lines(),
        ["ICAP/1.0 503 too many connections"],
        "{refused:?}"
    );
    assert!(refused.closed, "{refused:?}");
    open.pop();
    wait::until("a free connection slot", || {
        (options(&rig).ok()?.status_lines() == ["ICAP/1.0 200 OK"]).then_some(())
    })?;
    drop(open);
    Ok(())
}

/// `log_failure=block` over ICAP: once the file log's disk is full, a web chat
/// message is refused (403 `M_FORBIDDEN`) instead of passing unlogged; when the
/// disk has room again chat passes, and every message is in the log.
#[test]
fn with_log_failure_block_web_chat_that_cannot_be_logged_is_refused() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    let dir = rig.subdir("ims")?;
    let disk = Tmpfs::mount(&dir.join("logs"), "1m");
    let config = format!(
        "icap_port=on\nlog_failure=block\nfile_logging_dir={}\n",
        disk.0.display()
    );
    let ims = Imspector::start(&rig.gateway, &dir, &config)?;
    ims.wait_output("ICAP service on")?;
    let bodies = rig.subdir("bodies")?;
    // The ICAP answer, and the HTTP body it carries (none for 204).
    let send = |room: &str, text: &str| -> anyhow::Result<(String, String)> {
        let body = bodies.join(format!("{text}.json"));
        std::fs::write(
            &body,
            json!({"msgtype": "m.text", "body": text}).to_string(),
        )?;
        let page = bodies.join(format!("{text}.out"));
        let url =
            format!("http://matrix.test/_matrix/client/v3/rooms/{room}/send/m.room.message/{text}");
        let out = c_icap_client(
            &rig.gateway,
            &[
                "-i",
                "127.0.0.1",
                "-p",
                "1344",
                "-v",
                "-s",
                "reqmod",
                "-req",
                &url,
                "-method",
                "PUT",
                "-f",
                body.to_str().unwrap(),
                "-o",
                page.to_str().unwrap(),
                "-x",
                "X-Client-IP: 10.9.8.7",
                "-x",
                "X-Client-Port: 4567",
            ],
        )?;
        Ok((out, std::fs::read_to_string(&page).unwrap_or_default()))
    };
    let (out, _) = send("!a:test.local", "before")?;
    assert!(out.contains("ICAP/1.0 204 No Content"), "{out}");
    ims.wait_log("Matrix", "unknown", "!a:test.local", 1)?;

    let filler = disk.fill();
    // A new room needs a new file, which the full disk has no room for.
    send("!b:test.local", "finds-the-disk-full")?;
    ims.wait_output("file sink: cannot write")?;
    let (out, page) = send("!a:test.local", "while-full")?;
    assert!(page.contains("M_FORBIDDEN"), "{out}\n{page}");

    std::fs::remove_file(filler)?;
    ims.wait_output("writable again; 2 waiting events written")?;
    let (out, _) = send("!a:test.local", "after")?;
    assert!(out.contains("ICAP/1.0 204 No Content"), "{out}");
    let lines = ims.wait_log("Matrix", "unknown", "!a:test.local", 3)?;
    let rest: Vec<&str> = lines.iter().map(|l| l.rest.as_str()).collect();
    assert_eq!(rest, ["1,1,0,,before", "1,1,1,,while-full", "1,1,0,,after"]);
    let b = ims.wait_log("Matrix", "unknown", "!b:test.local", 1)?;
    assert_eq!(b[0].rest, "1,1,0,,finds-the-disk-full");
    Ok(())
}
