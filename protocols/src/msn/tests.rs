//! Hand-built MSNP sessions, following the protocol documentation.

use super::*;
use crate::invariants::replay;

const OUT: Direction = Direction::Outgoing;
const IN: Direction = Direction::Incoming;

fn feed(s: &mut MsnSession, dir: Direction, data: &[u8]) -> Vec<Frame> {
    let mut buf = BytesMut::from(data);
    let frames = s.feed(dir, &mut buf).frames;
    assert!(
        buf.is_empty(),
        "left unparsed: {:?}",
        String::from_utf8_lossy(&buf)
    );
    frames
}

fn events(s: &mut MsnSession, dir: Direction, data: &[u8]) -> Vec<ChatEvent> {
    feed(s, dir, data)
        .into_iter()
        .flat_map(|f| match f {
            Frame::Pdu(p) => p.events,
            Frame::Opaque(_) => Vec::new(),
        })
        .collect()
}

fn pdu(s: &mut MsnSession, dir: Direction, data: &[u8]) -> Pdu {
    let frames = feed(s, dir, data);
    match frames.as_slice() {
        [Frame::Pdu(p)] => p.clone(),
        other => panic!("expected one PDU, got {other:?}"),
    }
}

/// An MSG command as the client sends it.
fn msg_out(trid: u32, payload: &str) -> Vec<u8> {
    format!("MSG {trid} N {}\r\n{payload}", payload.len()).into_bytes()
}

/// An MSG command as the switchboard relays it.
fn msg_in(from: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("MSG {from} Nick {}\r\n", payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

fn text(body: &str) -> String {
    format!("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nX-MMS-IM-Format: FN=Arial; EF=; CO=0; CS=0; PF=22\r\n\r\n{body}")
}

fn typing(user: &str) -> String {
    format!(
        "MIME-Version: 1.0\r\nContent-Type: text/x-msmsgscontrol\r\nTypingUser: {user}\r\n\r\n\r\n"
    )
}

/// A calling switchboard session of MSNP8 up to the first JOI.
fn msnp8_switchboard() -> MsnSession {
    let mut s = MsnSession::default();
    feed(
        &mut s,
        OUT,
        b"USR 1 alice@example.com 17262740.1050826919.32308\r\n",
    );
    feed(&mut s, IN, b"USR 1 OK alice@example.com Alice\r\n");
    feed(&mut s, OUT, b"CAL 2 bob@example.com\r\n");
    feed(
        &mut s,
        IN,
        b"CAL 2 RINGING 17262740\r\nJOI bob@example.com Bob\r\n",
    );
    s
}

#[test]
fn msnp8_switchboard_text_and_typing() {
    let mut s = msnp8_switchboard();
    let ev = events(&mut s, OUT, &msg_out(3, &typing("alice@example.com")));
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, EventType::Typing);
    assert_eq!(ev[0].text, "");
    let ev = events(&mut s, OUT, &msg_out(4, &text("hi Bob, ça va?")));
    assert_eq!(ev[0].kind, EventType::Message);
    assert_eq!(ev[0].direction, OUT);
    assert_eq!(ev[0].local_id, "alice@example.com");
    assert_eq!(ev[0].remote_id, "bob@example.com");
    assert!(!ev[0].group);
    assert_eq!(ev[0].event_data(), "hi Bob, ça va?");
    let ev = events(
        &mut s,
        IN,
        &msg_in("bob@example.com", text("fine\r\nand you?").as_bytes()),
    );
    assert_eq!(ev[0].direction, IN);
    assert_eq!(ev[0].remote_id, "bob@example.com");
    assert_eq!(ev[0].event_data(), "fine\r\nand you?");
    // Acknowledgements and BYE are forwarded as opaque bytes.
    let frames = feed(&mut s, IN, b"ACK 4\r\nBYE bob@example.com\r\n");
    assert_eq!(
        frames,
        vec![Frame::Opaque(Bytes::from_static(
            b"ACK 4\r\nBYE bob@example.com\r\n"
        ))]
    );
}

#[test]
fn latin1_messages_are_logged_as_utf8() {
    let mut s = msnp8_switchboard();
    let mut payload =
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=ISO-8859-1\r\n\r\ncaf".to_vec();
    payload.push(0xe9);
    let ev = events(&mut s, IN, &msg_in("bob@example.com", &payload));
    assert_eq!(ev[0].text, "café");
}

#[test]
fn answered_msnp18_switchboard_strips_endpoints_and_ignores_own_endpoints() {
    let mut s = MsnSession::default();
    feed(
        &mut s,
        OUT,
        b"ANS 1 alice@example.com;{2b9a3c1e-0000-4000-8000-000000000001} 849102291.520491113 11752013\r\n",
    );
    feed(
        &mut s,
        IN,
        b"IRO 1 1 3 alice@example.com;{2b9a3c1e-0000-4000-8000-000000000002} Alice 2788999228:48\r\n\
IRO 1 2 3 bob@example.com Bob 2788999228:48\r\n\
IRO 1 3 3 bob@example.com;{0d2f-11} Bob 2788999228:48\r\nANS 1 OK\r\n",
    );
    let ev = events(&mut s, OUT, &msg_out(2, &text("hello")));
    assert_eq!(ev[0].local_id, "alice@example.com");
    assert_eq!(ev[0].remote_id, "bob@example.com");
    assert!(
        !ev[0].group,
        "one other party, on two endpoints, is not a group"
    );
}

#[test]
fn group_chat_names_the_switchboard_and_prefixes_senders() {
    let mut s = msnp8_switchboard();
    s.set_now(1160853407);
    feed(&mut s, IN, b"JOI carol@example.com Carol\r\n");
    s.set_now(1160853999);
    let ev = events(
        &mut s,
        IN,
        &msg_in("carol@example.com", text("hi all").as_bytes()),
    );
    assert_eq!(ev[0].remote_id, "groupchat-1160853407");
    assert!(ev[0].group);
    assert_eq!(ev[0].prefix, "carol@example.com: ");
    assert_eq!(ev[0].text, "hi all");
    assert_eq!(ev[0].event_data(), "carol@example.com: hi all");
    let ev = events(&mut s, OUT, &msg_out(5, &text("hello both")));
    assert_eq!(ev[0].remote_id, "groupchat-1160853407");
    assert_eq!(ev[0].event_data(), "hello both");
    // The conversation keeps its name when a party leaves.
    feed(&mut s, IN, b"BYE carol@example.com\r\n");
    let ev = events(
        &mut s,
        IN,
        &msg_in("bob@example.com", text("bye").as_bytes()),
    );
    assert_eq!(ev[0].remote_id, "groupchat-1160853407");
    assert_eq!(ev[0].event_data(), "bob@example.com: bye");
}

#[test]
fn old_style_file_and_webcam_invitations() {
    let mut s = msnp8_switchboard();
    let invite = "MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsinvite; charset=UTF-8\r\n\r\n\
Application-Name: File Transfer\r\nApplication-GUID: {5D3E02AB-6190-11D3-BBBB-00C04F795683}\r\n\
Invitation-Command: INVITE\r\nInvitation-Cookie: 2137\r\nApplication-File: report.doc\r\n\
Application-FileSize: 48128\r\nConnectivity: N\r\n\r\n";
    let ev = events(&mut s, OUT, &msg_out(6, invite));
    assert_eq!(ev[0].kind, EventType::File);
    assert_eq!(ev[0].text, "report.doc 48128 bytes");
    assert_eq!(ev[0].remote_id, "bob@example.com");
    let cam = "MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsinvite; charset=UTF-8\r\n\r\n\
Application-Name: Webcam\r\nApplication-GUID: {1C9AA97E-9C05-4583-A3BD-908A196F1E92}\r\n\
Invitation-Command: INVITE\r\nInvitation-Cookie: 2138\r\n\r\n";
    let ev = events(&mut s, IN, &msg_in("bob@example.com", cam.as_bytes()));
    assert_eq!(ev[0].kind, EventType::Webcam);
    assert_eq!(ev[0].remote_id, "bob@example.com");
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= n {
                out.push(ALPHABET[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn file_context(name: &str, size: u64) -> Vec<u8> {
    let mut ctx = vec![0u8; 638];
    ctx[0..4].copy_from_slice(&638u32.to_le_bytes());
    ctx[4..8].copy_from_slice(&3u32.to_le_bytes());
    ctx[8..16].copy_from_slice(&size.to_le_bytes());
    ctx[16..20].copy_from_slice(&1u32.to_le_bytes());
    for (i, u) in name.encode_utf16().enumerate() {
        ctx[20 + 2 * i..22 + 2 * i].copy_from_slice(&u.to_le_bytes());
    }
    ctx
}

/// An MSNSLP INVITE with the given EUF-GUID and context.
fn slp_invite(guid: &str, app_id: u32, context: &[u8]) -> Vec<u8> {
    let body = format!(
        "EUF-GUID: {guid}\r\nSessionID: 94057211\r\nAppID: {app_id}\r\nContext: {}\r\n\r\n\0",
        base64(context)
    );
    format!(
        "INVITE MSNMSGR:bob@example.com MSNSLP/1.0\r\nTo: <msnmsgr:bob@example.com>\r\n\
From: <msnmsgr:alice@example.com>\r\nVia: MSNSLP/1.0/TLP ;branch={{A0D624A6-6C0C-4283-A9E0-BC97B4B46D32}}\r\n\
CSeq: 0 \r\nCall-ID: {{F1E2D3C4-0000-4000-8000-0000000000AA}}\r\nMax-Forwards: 0\r\n\
Content-Type: application/x-msnmsgr-sessionreqbody\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// MSG commands carrying `slp` in P2Pv1 chunks of at most 1202 bytes.
fn p2p_v1_messages(trid: u32, dest: &str, slp: &[u8]) -> Vec<Vec<u8>> {
    slp.chunks(1202)
        .enumerate()
        .map(|(i, part)| {
            let mut payload = format!(
                "MIME-Version: 1.0\r\nContent-Type: application/x-msnmsgrp2p\r\nP2P-Dest: {dest}\r\n\r\n"
            )
            .into_bytes();
            let mut header = [0u8; 48];
            header[4..8].copy_from_slice(&1_234_567u32.to_le_bytes());
            header[8..16].copy_from_slice(&((i * 1202) as u64).to_le_bytes());
            header[16..24].copy_from_slice(&(slp.len() as u64).to_le_bytes());
            header[24..28].copy_from_slice(&(part.len() as u32).to_le_bytes());
            payload.extend_from_slice(&header);
            payload.extend_from_slice(part);
            payload.extend_from_slice(&0u32.to_be_bytes());
            let mut out = format!("MSG {} D {}\r\n", trid + i as u32, payload.len()).into_bytes();
            out.extend_from_slice(&payload);
            out
        })
        .collect()
}

#[test]
fn msnp15_p2p_file_invitation_split_over_two_chunks() {
    let mut s = msnp8_switchboard();
    let slp = slp_invite(
        "{5D3E02AB-6190-11D3-BBBB-00C04F795683}",
        2,
        &file_context("holiday photos.zip", 7_340_032),
    );
    let messages = p2p_v1_messages(10, "bob@example.com", &slp);
    assert_eq!(messages.len(), 2, "the INVITE needs two chunks");
    assert!(events(&mut s, OUT, &messages[0]).is_empty());
    let p = pdu(&mut s, OUT, &messages[1]);
    let ev = &p.events;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, EventType::File);
    assert_eq!(ev[0].text, "holiday photos.zip 7340032 bytes");
    assert_eq!(ev[0].remote_id, "bob@example.com");
    // A file invitation is not text that could be rewritten.
    assert_eq!(s.rewrite(OUT, &p, Rewrite::Text("x")), None);
    // The second chunk alone is not an invitation.
    assert!(events(&mut s, OUT, &messages[1]).is_empty());
}

#[test]
fn p2p_webcam_and_display_picture_invitations() {
    let mut s = msnp8_switchboard();
    let cam = slp_invite(
        "{4BD96FC0-AB17-4425-A14A-439185962DC8}",
        4,
        b"{B8BE70DE-E2CA}",
    );
    let messages = p2p_v1_messages(20, "alice@example.com", &cam);
    let ev = events(
        &mut s,
        IN,
        &msg_in(
            "bob@example.com",
            &messages[0][messages[0].iter().position(|&b| b == b'\n').unwrap() + 1..],
        ),
    );
    assert_eq!(ev[0].kind, EventType::Webcam);
    assert_eq!(ev[0].direction, IN);
    let picture = slp_invite("{A4268EEC-FEC5-49E5-95C3-F126696BDBF6}", 1, b"<msnobj/>");
    for m in p2p_v1_messages(30, "bob@example.com", &picture) {
        assert!(events(&mut s, OUT, &m).is_empty());
    }
}

#[test]
fn msnp18_p2pv2_file_invitation() {
    let mut s = MsnSession::default();
    feed(
        &mut s,
        OUT,
        b"USR 1 alice@example.com;{aa-1} 849102291.520491113\r\n",
    );
    feed(
        &mut s,
        IN,
        b"USR 1 OK alice@example.com Alice\r\nJOI bob@example.com;{bb-2} Bob 2788999228:48\r\n",
    );
    let slp = slp_invite(
        "{5D3E02AB-6190-11D3-BBBB-00C04F795683}",
        2,
        &file_context("a.txt", 5),
    );
    let mut chunk = vec![8u8, 0];
    chunk.extend_from_slice(&((slp.len() + 8) as u16).to_be_bytes());
    chunk.extend_from_slice(&77u32.to_be_bytes());
    chunk.extend_from_slice(&[8, 1, 0, 0, 0, 0, 0, 0]);
    chunk.extend_from_slice(&slp);
    let mut payload = b"MIME-Version: 1.0\r\nContent-Type: application/x-msnmsgrp2p\r\n\
P2P-Dest: bob@example.com;{bb-2}\r\nP2P-Src: alice@example.com;{aa-1}\r\n\r\n"
        .to_vec();
    payload.extend_from_slice(&chunk);
    let mut msg = format!("MSG 2 D {}\r\n", payload.len()).into_bytes();
    msg.extend_from_slice(&payload);
    let ev = events(&mut s, OUT, &msg);
    assert_eq!(ev[0].kind, EventType::File);
    assert_eq!(ev[0].text, "a.txt 5 bytes");
    assert_eq!(ev[0].local_id, "alice@example.com");
    assert_eq!(ev[0].remote_id, "bob@example.com");
}

fn sdg(trid: &str, from: &str, to: &str, message_type: &str, body: &str) -> Vec<u8> {
    let payload = format!(
        "Routing: 1.0\r\nTo: {to}\r\nFrom: {from}\r\n\r\nReliability: 1.0\r\n\r\n\
Messaging: 2.0\r\nMessage-Type: {message_type}\r\nContent-Length: {}\r\n\
Content-Type: Text/plain; charset=UTF-8\r\nIM-Display-Name: Alice\r\n\r\n{body}",
        body.len()
    );
    format!("SDG {trid} {}\r\n{payload}", payload.len()).into_bytes()
}

#[test]
fn msnp21_sdg_messages_both_ways() {
    let mut s = MsnSession::default();
    feed(&mut s, OUT, b"VER 1 MSNP21 CVR0\r\n");
    feed(&mut s, IN, b"VER 1 MSNP21\r\n");
    feed(&mut s, OUT, b"USR 3 SSO I alice@example.com\r\n");
    let ev = events(
        &mut s,
        OUT,
        &sdg(
            "9",
            "1:alice@example.com;epid={aa-1}",
            "1:bob@example.com",
            "Text",
            "héllo",
        ),
    );
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, EventType::Message);
    assert_eq!(ev[0].local_id, "alice@example.com");
    assert_eq!(ev[0].remote_id, "bob@example.com");
    assert_eq!(ev[0].text, "héllo");
    let ev = events(
        &mut s,
        IN,
        &sdg(
            "0",
            "1:bob@example.com;epid={bb-2}",
            "1:alice@example.com",
            "Text",
            "hi",
        ),
    );
    assert_eq!(
        (ev[0].direction, ev[0].remote_id.as_str()),
        (IN, "bob@example.com")
    );
    let ev = events(
        &mut s,
        IN,
        &sdg(
            "0",
            "1:bob@example.com;epid={bb-2}",
            "1:alice@example.com",
            "Control/Typing",
            "",
        ),
    );
    assert_eq!(ev[0].kind, EventType::Typing);
    assert!(events(
        &mut s,
        IN,
        &sdg(
            "0",
            "1:bob@example.com",
            "1:alice@example.com",
            "Nudge",
            "\r\n"
        )
    )
    .is_empty());
    // On the NS, MSG is the server's profile or mail notification, never chat.
    let profile = "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nnot chat";
    assert!(events(&mut s, IN, &msg_in("Hotmail", profile.as_bytes())).is_empty());
}

#[test]
fn msnp21_group_conversation() {
    let mut s = MsnSession::default();
    feed(&mut s, OUT, b"USR 3 SSO I alice@example.com\r\n");
    let ev = events(
        &mut s,
        IN,
        &sdg(
            "0",
            "1:carol@example.com;epid={cc}",
            "10:00000000-0000-0000-0009-abcdef@live.com;path=IM",
            "Text",
            "hey",
        ),
    );
    assert!(ev[0].group);
    assert_eq!(ev[0].remote_id, "00000000-0000-0000-0009-abcdef@live.com");
    assert_eq!(ev[0].event_data(), "carol@example.com: hey");
}

#[test]
fn sdg_rewrite_updates_both_lengths() {
    let mut s = MsnSession::default();
    let p = pdu(
        &mut s,
        OUT,
        &sdg(
            "9",
            "1:alice@example.com",
            "1:bob@example.com",
            "Text",
            "darn it",
        ),
    );
    let out = s
        .rewrite(OUT, &p, Rewrite::Text("d**n it, I said"))
        .unwrap();
    assert_eq!(
        out,
        Bytes::from(sdg(
            "9",
            "1:alice@example.com",
            "1:bob@example.com",
            "Text",
            "d**n it, I said"
        ))
    );
    let ev = events(&mut s, OUT, &out);
    assert_eq!(ev[0].text, "d**n it, I said");
}

#[test]
fn msg_rewrite_with_longer_and_shorter_text() {
    let mut s = msnp8_switchboard();
    let original = msg_out(4, &text("you are a jerk"));
    let p = pdu(&mut s, OUT, &original);
    for new in [
        "you are a ****",
        "you are a ****, really, I mean it",
        "x",
        "",
    ] {
        let out = s.rewrite(OUT, &p, Rewrite::Text(new)).unwrap();
        assert_eq!(out, Bytes::from(msg_out(4, &text(new))));
        let ev = events(&mut s, OUT, &out);
        assert_eq!(ev[0].text, new);
        assert_eq!(ev[0].remote_id, "bob@example.com");
    }
    // Incoming lines keep the sender and nick.
    let p = pdu(
        &mut s,
        IN,
        &msg_in("bob@example.com", text("ok").as_bytes()),
    );
    let out = s.rewrite(IN, &p, Rewrite::Text("okay")).unwrap();
    assert_eq!(
        out,
        Bytes::from(msg_in("bob@example.com", text("okay").as_bytes()))
    );
    // Typing notifications are not text.
    let p = pdu(&mut s, OUT, &msg_out(5, &typing("alice@example.com")));
    assert_eq!(s.rewrite(OUT, &p, Rewrite::Text("x")), None);
}

#[test]
fn latin1_rewrite_stays_windows_1252() {
    let mut s = msnp8_switchboard();
    let msg = |body: &[u8]| {
        let mut payload =
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\n".to_vec();
        payload.extend_from_slice(body);
        let mut out = format!("MSG 4 N {}\r\n", payload.len()).into_bytes();
        out.extend(payload);
        out
    };
    let p = pdu(&mut s, OUT, &msg(b"caf\xe9"));
    assert_eq!(p.events[0].text, "café");
    let out = s.rewrite(OUT, &p, Rewrite::Text("thé €")).unwrap();
    assert_eq!(&out[..], &msg(b"th\xe9 \x80")[..]);
    // The bytes where windows-1252 and ISO-8859-1 differ are logged as sent.
    let p = pdu(&mut s, OUT, &msg(b"\x93hi\x94 \x85"));
    assert_eq!(p.events[0].text, "\u{201c}hi\u{201d} \u{2026}");
    // A text the charset cannot hold is not rewritten (the proxy then blocks).
    assert_eq!(s.rewrite(OUT, &p, Rewrite::Text("漢")), None);
}

#[test]
fn notices_are_switchboard_messages_from_the_remote_party() {
    let mut s = MsnSession::default();
    feed(
        &mut s,
        OUT,
        b"VER 1 MSNP8 CVR0\r\nUSR 2 TWN I alice@example.com\r\n",
    );
    assert_eq!(s.notice_to_client("bob@example.com", "blocked"), None);
    let s = MsnSession::default();
    assert_eq!(
        s.notice_to_client("bob@example.com", "blocked"),
        None,
        "switchboard not known yet"
    );
    let mut s = msnp8_switchboard();
    let notice = s
        .notice_to_client("bob@example.com", "Your message was blocked")
        .unwrap();
    let ev = events(&mut s, IN, &notice);
    assert_eq!(ev[0].remote_id, "bob@example.com");
    assert_eq!(ev[0].text, "Your message was blocked");
    assert!(notice.starts_with(b"MSG bob@example.com IMSpector "));
    s.set_now(1160853407);
    feed(&mut s, IN, b"JOI carol@example.com Carol\r\n");
    let notice = s.notice_to_client("groupchat-1160853407", "hi").unwrap();
    assert!(notice.starts_with(b"MSG bob@example.com IMSpector "));
}

#[test]
fn payload_commands_that_are_not_logged_keep_the_stream_in_sync() {
    let mut s = MsnSession::default();
    // Payloads that look like commands must not be parsed as commands.
    let ubx = "<Data><PSM>MSG 1 N 3</PSM><CurrentMedia></CurrentMedia></Data>";
    let adl = "<ml l=\"1\"><d n=\"example.com\"><c n=\"bob\" l=\"3\" t=\"1\"/></d></ml>";
    let stream = format!(
        "VER 1 MSNP15 CVR0\r\nCVR 2 0x0409 winnt 5.1 i386 MSNMSGR 8.5.1302 BC01 alice@example.com\r\n\
USR 3 SSO I alice@example.com\r\nADL 4 {}\r\n{adl}UUX 5 {}\r\n{ubx}QRY 6 PROD0114ES4Z%Q5W 32\r\n\
0123456789abcdef0123456789abcdefPNG\r\n",
        adl.len(),
        ubx.len()
    );
    let frames = feed(&mut s, OUT, stream.as_bytes());
    assert_eq!(
        frames,
        vec![Frame::Opaque(Bytes::from(stream.clone().into_bytes()))]
    );
    let server = format!(
        "ADL 4 OK\r\nUBX 1:bob@example.com {}\r\n{ubx}QRY 6\r\nNOT 5\r\nMSG 1GCF 0 3\r\nabc\
241 7 {}\r\n{adl}QNG 50\r\n",
        ubx.len(),
        adl.len()
    );
    let frames = feed(&mut s, IN, server.as_bytes());
    assert_eq!(
        frames,
        vec![Frame::Opaque(Bytes::from(server.into_bytes()))]
    );
    assert_eq!(s.local.as_deref(), Some("alice@example.com"));
}

#[test]
fn incomplete_commands_wait_for_more_bytes() {
    let mut s = msnp8_switchboard();
    let msg = msg_out(4, &text("hello"));
    let mut buf = BytesMut::from(&msg[..msg.len() - 2]);
    assert!(s.feed(OUT, &mut buf).frames.is_empty());
    assert_eq!(buf.len(), msg.len() - 2);
    buf.extend_from_slice(&msg[msg.len() - 2..]);
    let frames = s.feed(OUT, &mut buf).frames;
    assert!(matches!(&frames[..], [Frame::Pdu(p)] if p.events[0].text == "hello"));
}

#[test]
fn huge_payload_length_loses_sync_without_allocating() {
    let mut s = msnp8_switchboard();
    let mut buf = BytesMut::from(&b"MSG 4 N 4294967296\r\nMIME"[..]);
    let feed = s.feed(OUT, &mut buf);
    assert!(feed.frames.is_empty());
    let Some(Stop::TooLarge { why, conversation }) = feed.stop else {
        panic!("no stop: {feed:?}");
    };
    assert!(why.contains("4294967296"), "{why}");
    // The conversation is named, for the log line saying inspection stopped.
    let conversation = conversation.expect("the switchboard's conversation");
    assert_eq!(
        (
            conversation.local_id.as_str(),
            conversation.remote_id.as_str()
        ),
        ("alice@example.com", "bob@example.com")
    );
    // Nothing was taken from the buffer: the caller relays it all.
    assert_eq!(&buf[..], b"MSG 4 N 4294967296\r\nMIME");
    assert!(buf.capacity() < 4096);
    // After complete commands, those go out (and are logged) first.
    let mut buf = BytesMut::from(&b"MSG 3 N 5\r\nhello\r\nMSG 4 N 4294967296\r\nMIME"[..]);
    let feed = s.feed(OUT, &mut buf);
    assert_eq!(feed.frames.len(), 1);
    assert!(matches!(feed.stop, Some(Stop::TooLarge { .. })));
    assert_eq!(&buf[..], b"MSG 4 N 4294967296\r\nMIME");
    // Right at the limit the parser waits for the payload instead.
    let mut buf = BytesMut::from(format!("MSG 5 N {MAX_PAYLOAD}\r\nMIME").as_bytes());
    assert!(s.feed(OUT, &mut buf).frames.is_empty());
}

#[test]
fn overlong_line_loses_sync() {
    let mut s = MsnSession::default();
    let mut line = b"UUX 1 ".to_vec();
    line.resize(MAX_LINE + 1, b'A');
    let mut buf = BytesMut::from(&line[..]);
    assert!(s.feed(OUT, &mut buf).stop.is_some());
    let mut buf = BytesMut::from(&line[..MAX_LINE]);
    let feed = s.feed(OUT, &mut buf);
    assert!(feed.frames.is_empty() && feed.stop.is_none());
}

#[test]
fn a_partial_line_that_is_no_command_is_not_held() {
    // iperf3's cookie, a TLS ClientHello, a one-byte state reply, a lower-case word.
    for partial in [
        &b"abcdefghij0123456789abcdefghij012345\0"[..],
        b"\x16\x03\x01\x02",
        b"\x09",
        b"MSGX",
        b"Msg",
    ] {
        let mut s = MsnSession::default();
        let mut buf = BytesMut::from(partial);
        let feed = s.feed(OUT, &mut buf);
        assert!(
            matches!(feed.stop, Some(Stop::NotThisProtocol(_))),
            "{partial:?}"
        );
    }
    // The start of a command is held.
    for partial in [&b"M"[..], b"MS", b"MSG", b"MSG 4 N", b"911"] {
        let mut s = MsnSession::default();
        let mut buf = BytesMut::from(partial);
        let feed = s.feed(OUT, &mut buf);
        assert!(feed.frames.is_empty() && feed.stop.is_none(), "{partial:?}");
    }
}

#[test]
fn whole_sessions_replay_with_identity_rewrites() {
    let mut s = MsnSession::default();
    let mut out1 = b"USR 1 alice@example.com 1.2.3\r\nCAL 2 bob@example.com\r\n".to_vec();
    out1.extend(msg_out(3, &text("one")));
    let in1 = msg_in("bob@example.com", text("two").as_bytes());
    let mut joins = b"CAL 2 RINGING 42\r\nJOI bob@example.com Bob\r\n".to_vec();
    joins.extend(&in1);
    let result = replay(&mut s, &[(OUT, &out1[..]), (IN, &joins[..])]);
    let texts: Vec<_> = result.events.iter().map(|e| e.event_data()).collect();
    assert_eq!(texts, ["one", "two"]);
    assert!(result.stopped.is_none());
}
