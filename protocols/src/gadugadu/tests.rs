use super::*;

fn packet(ty: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = ty.to_le_bytes().to_vec();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn u32s(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Feed one direction's bytes; return the frames.
fn frames(s: &mut GaduGaduSession, dir: Direction, data: &[u8]) -> Vec<Frame> {
    let mut buf = BytesMut::from(data);
    let feed = s.feed(dir, &mut buf);
    assert!(buf.is_empty(), "{} bytes left", buf.len());
    feed.frames
}

fn pdu(s: &mut GaduGaduSession, dir: Direction, data: &[u8]) -> Pdu {
    match frames(s, dir, data).as_slice() {
        [Frame::Pdu(pdu)] => pdu.clone(),
        other => panic!("expected one PDU, got {other:?}"),
    }
}

fn event(s: &mut GaduGaduSession, dir: Direction, data: &[u8]) -> ChatEvent {
    pdu(s, dir, data).events.remove(0)
}

fn no_event(s: &mut GaduGaduSession, dir: Direction, data: &[u8]) {
    let got = frames(s, dir, data);
    assert_eq!(got, vec![Frame::Opaque(Bytes::copy_from_slice(data))]);
}

/// GG_LOGIN60: uin, hash, status, version, dunno, local ip/port, external
/// ip/port, image size, dunno.
fn login60(uin: u32) -> Vec<u8> {
    let mut p = u32s(&[uin, 0x1234_5678, 2, 0x22]);
    p.extend_from_slice(&[0, 127, 0, 0, 1, 0x1f, 0x90, 0, 0, 0, 0, 0, 0, 255, 0xbe]);
    packet(packet::LOGIN60, &p)
}

fn login80(uin: u32) -> Vec<u8> {
    let mut p = uin.to_le_bytes().to_vec();
    p.extend_from_slice(b"pl\x02");
    p.extend_from_slice(&[0xaa; 64]);
    p.extend_from_slice(&u32s(&[2, 0, 0x367, 0]));
    packet(packet::LOGIN80, &p)
}

/// GG_LOGIN105 with the fields libgadu sends before the UIN (lang) and after it.
fn login105(uin: &str) -> Vec<u8> {
    let mut p = vec![
        0x0a,
        2,
        b'p',
        b'l',
        0x12,
        uin.len() as u8 + 2,
        1,
        uin.len() as u8,
    ];
    p.extend_from_slice(uin.as_bytes());
    p.extend_from_slice(&[0x1a, 3, 1, 2, 3, 0x3a, 3, b'G', b'G', b'/']);
    packet(packet::LOGIN105, &p)
}

fn logged_in(login: Vec<u8>) -> GaduGaduSession {
    let mut s = GaduGaduSession::default();
    no_event(&mut s, Direction::Outgoing, &login);
    s
}

// ---- GG 6/7 ----

/// GG_SEND_MSG: recipient, seq, class, CP1250 text, NUL, options.
fn send_msg(to: u32, text: &[u8], options: &[u8]) -> Vec<u8> {
    let mut p = u32s(&[to, 7, 0x08]);
    p.extend_from_slice(text);
    p.push(0);
    p.extend_from_slice(options);
    packet(packet::SEND_MSG, &p)
}

fn recv_msg(from: u32, class: u32, text: &[u8], options: &[u8]) -> Vec<u8> {
    let mut p = u32s(&[from, 9, 1_700_000_000, class]);
    p.extend_from_slice(text);
    p.push(0);
    p.extend_from_slice(options);
    packet(packet::RECV_MSG, &p)
}

const FORMATS: &[u8] = &[0x02, 0x06, 0x00, 0x00, 0x00, 0x08, 0x12, 0x34, 0x56];
const CONFERENCE: &[u8] = &[0x01, 0x02, 0, 0, 0, 0x11, 0, 0, 0, 0x22, 0, 0, 0];

#[test]
fn gg6_messages_both_ways_with_cp1250_text() {
    let mut s = logged_in(login60(1234));
    let ev = event(
        &mut s,
        Direction::Outgoing,
        &send_msg(5678, b"za\xbf\xf3\xb3\xe6", FORMATS),
    );
    assert_eq!(
        ev,
        ChatEvent {
            direction: Direction::Outgoing,
            kind: EventType::Message,
            local_id: "1234".into(),
            remote_id: "5678".into(),
            group: false,
            prefix: String::new(),
            text: "zażółć".into(),
            encrypted: false,
        }
    );
    let ev = event(
        &mut s,
        Direction::Incoming,
        &recv_msg(5678, 0x04, b"g\xea\x9cl\xb9", &[]),
    );
    assert_eq!(ev.direction, Direction::Incoming);
    assert_eq!(
        (ev.local_id.as_str(), ev.remote_id.as_str()),
        ("1234", "5678")
    );
    assert_eq!(ev.event_data(), "gęślą");
}

#[test]
fn nothing_before_the_login_is_an_event_and_the_first_login_holds() {
    let mut s = GaduGaduSession::default();
    no_event(&mut s, Direction::Outgoing, &send_msg(42, b"early", &[]));
    no_event(&mut s, Direction::Outgoing, &login60(1234));
    no_event(&mut s, Direction::Outgoing, &login80(99));
    let ev = event(&mut s, Direction::Outgoing, &send_msg(42, b"hi", &[]));
    assert_eq!(ev.local_id, "1234");
    let notice = s.notice_to_client("42", "x").unwrap();
    assert_eq!(le32(&notice, 0), Some(packet::RECV_MSG));
}

#[test]
fn login70_gives_the_local_uin() {
    let mut p = 4_000_000_000u32.to_le_bytes().to_vec();
    p.push(2);
    p.extend_from_slice(&[0; 64]);
    p.extend_from_slice(&[0; 23]);
    let mut s = logged_in(packet(packet::LOGIN70, &p));
    let ev = event(&mut s, Direction::Outgoing, &send_msg(1, b"x", &[]));
    assert_eq!(ev.local_id, "4000000000");
}

#[test]
fn gg6_conference_is_a_group_prefixed_with_the_sender() {
    let mut s = logged_in(login60(1234));
    let ev = event(
        &mut s,
        Direction::Incoming,
        &recv_msg(0x33, 0x08, b"hi all", CONFERENCE),
    );
    assert!(ev.group);
    assert_eq!(ev.remote_id, "51");
    assert_eq!(ev.event_data(), "51: hi all");
    let ev = event(
        &mut s,
        Direction::Outgoing,
        &send_msg(0x11, b"hi", CONFERENCE),
    );
    assert!(ev.group);
    assert_eq!(
        (ev.remote_id.as_str(), ev.event_data().as_str()),
        ("17", "hi")
    );
}

#[test]
fn ctcp_images_and_empty_texts_are_not_messages() {
    let mut s = logged_in(login60(1234));
    no_event(
        &mut s,
        Direction::Incoming,
        &recv_msg(5678, 0x10, b"\x02", &[]),
    );
    let image_request = [0x04, 0, 1, 0, 0, 0xde, 0xad, 0xbe, 0xef];
    no_event(
        &mut s,
        Direction::Outgoing,
        &send_msg(5678, b"", &image_request),
    );
    no_event(&mut s, Direction::Outgoing, &send_msg(5678, b"", &[]));
    // Without the terminating NUL the packet is not understood: forwarded as it is.
    no_event(
        &mut s,
        Direction::Outgoing,
        &packet(packet::SEND_MSG, &u32s(&[1, 2, 8, 0x41414141])),
    );
}

#[test]
fn gg6_rewrite_changes_the_length_keeps_the_conference_and_drops_formats() {
    let mut s = logged_in(login60(1234));
    let mut options = FORMATS.to_vec();
    options.extend_from_slice(CONFERENCE);
    let original = pdu(
        &mut s,
        Direction::Outgoing,
        &send_msg(0x11, b"darn", &options),
    );
    let out = s
        .rewrite(Direction::Outgoing, &original, Rewrite::Text("d**n, żółw"))
        .unwrap();
    assert_eq!(
        &out[..],
        &send_msg(0x11, b"d**n, \xbf\xf3\xb3w", CONFERENCE)[..]
    );
    let out = s
        .rewrite(Direction::Outgoing, &original, Rewrite::Text("x\0y"))
        .unwrap();
    assert_eq!(&out[..], &send_msg(0x11, b"xy", CONFERENCE)[..]);
}

// ---- GG 8.0 ----

/// GG_SEND_MSG80: recipient, seq, class, offset_plain, offset_attr, then the
/// XHTML part, the CP1250 plain part and the options.
fn send_msg80(to: u32, html: &[u8], plain: &[u8], options: &[u8]) -> Vec<u8> {
    let offset_plain = 20 + html.len() as u32 + 1;
    let offset_attr = offset_plain + plain.len() as u32 + 1;
    let mut p = u32s(&[to, 3, 0x08, offset_plain, offset_attr]);
    for part in [html, plain] {
        p.extend_from_slice(part);
        p.push(0);
    }
    p.extend_from_slice(options);
    packet(packet::SEND_MSG80, &p)
}

fn recv_msg80(ty: u32, from: u32, html: &[u8], plain: &[u8], options: &[u8]) -> Vec<u8> {
    let offset_plain = 24 + html.len() as u32 + 1;
    let offset_attr = offset_plain + plain.len() as u32 + 1;
    let mut p = u32s(&[from, 3, 1_700_000_123, 0x08, offset_plain, offset_attr]);
    for part in [html, plain] {
        p.extend_from_slice(part);
        p.push(0);
    }
    p.extend_from_slice(options);
    packet(ty, &p)
}

#[test]
fn gg8_logs_the_plain_part() {
    let mut s = logged_in(login80(1193046));
    let html = "<span style=\"color:#000000\"><b>t</b>ęśt</span>".as_bytes();
    let ev = event(
        &mut s,
        Direction::Outgoing,
        &send_msg80(42, html, b"t\xea\x9ct", FORMATS),
    );
    assert_eq!(
        (ev.local_id.as_str(), ev.remote_id.as_str()),
        ("1193046", "42")
    );
    assert_eq!(ev.text, "tęśt");
    let ev = event(
        &mut s,
        Direction::Incoming,
        &recv_msg80(packet::RECV_MSG80, 42, b"<b>hi</b>", b"hi", CONFERENCE),
    );
    assert!(ev.group);
    assert_eq!(ev.event_data(), "42: hi");
}

#[test]
fn a_markup_part_that_says_something_else_is_judged_and_rewritten_too() {
    let mut s = logged_in(login80(1));
    // GG 8.0 clients show the markup; old ones the plain part.
    let sent = send_msg80(42, b"<b>darn</b> \xe2\x98\xba", b"hello", &[]);
    let original = pdu(&mut s, Direction::Outgoing, &sent);
    assert_eq!(original.events[0].text, "darn \u{263a}\nhello");
    let out = s
        .rewrite(
            Direction::Outgoing,
            &original,
            Rewrite::Text("**** \u{263a}\nhello"),
        )
        .unwrap();
    assert_eq!(
        &out[..],
        &send_msg80(42, b"**** \xe2\x98\xba<br>hello", b"**** ?\nhello", &[])[..]
    );
    // Parts that agree (the plain one in CP1250, lacking the emoji) log once,
    // as the markup shows it.
    let ev = event(
        &mut s,
        Direction::Outgoing,
        &send_msg80(42, "<i>ęś</i> \u{263a}".as_bytes(), b"\xea\x9c ?", &[]),
    );
    assert_eq!(ev.text, "ęś \u{263a}");
    let mut s = logged_in(login105("1"));
    let ev = event(
        &mut s,
        Direction::Outgoing,
        &msg110(
            packet::SEND_MSG110,
            Some("42"),
            "hello",
            Some("<b>darn</b>"),
            None,
        ),
    );
    assert_eq!(ev.text, "darn\nhello");
}

#[test]
fn gg8_without_a_plain_part_logs_the_text_of_the_markup() {
    let mut s = logged_in(login80(1));
    let ev = event(
        &mut s,
        Direction::Incoming,
        &recv_msg80(
            packet::RECV_MSG80,
            42,
            "<b>a&amp;b</b><br>ż".as_bytes(),
            b"",
            &[],
        ),
    );
    assert_eq!(ev.text, "a&b\nż");
}

#[test]
fn gg8_own_message_from_another_session_is_outgoing() {
    let mut s = logged_in(login80(1));
    let ev = event(
        &mut s,
        Direction::Incoming,
        &recv_msg80(packet::RECV_OWN_MSG, 42, b"", b"sent from my phone", &[]),
    );
    assert_eq!(ev.direction, Direction::Outgoing);
    assert_eq!(ev.remote_id, "42");
}

#[test]
fn gg8_rewrite_keeps_both_parts_and_every_offset_consistent() {
    let mut s = logged_in(login80(1));
    let mut options = CONFERENCE.to_vec();
    options.extend_from_slice(FORMATS);
    let original = pdu(
        &mut s,
        Direction::Outgoing,
        &send_msg80(0x11, b"<b>bad word</b>", b"bad word", &options),
    );
    for (new, html, plain) in [
        (
            "b*d w*rd <3 & ąę, much longer",
            &b"b*d w*rd &lt;3 &amp; \xc4\x85\xc4\x99, much longer"[..],
            &b"b*d w*rd <3 & \xb9\xea, much longer"[..],
        ),
        ("x", b"x", b"x"),
    ] {
        let out = s
            .rewrite(Direction::Outgoing, &original, Rewrite::Text(new))
            .unwrap();
        assert_eq!(&out[..], &send_msg80(0x11, html, plain, CONFERENCE)[..]);
        let ev = event(&mut s, Direction::Outgoing, &out);
        assert_eq!((ev.text.as_str(), ev.group), (new, true));
    }
}

#[test]
fn gg8_rewrite_of_a_markup_only_message_keeps_the_plain_part_empty() {
    let mut s = logged_in(login80(1));
    let original = pdu(
        &mut s,
        Direction::Incoming,
        &recv_msg80(packet::RECV_MSG80, 42, "<i>漢字</i>".as_bytes(), b"", &[]),
    );
    let out = s
        .rewrite(Direction::Incoming, &original, Rewrite::Text("漢 <字>"))
        .unwrap();
    assert_eq!(
        &out[..],
        &recv_msg80(packet::RECV_MSG80, 42, "漢 &lt;字&gt;".as_bytes(), b"", &[])[..]
    );
}

// ---- GG 11 ----

/// A UIN as GG 11 sends it: magic, length, decimal digits.
fn uin_field(number: u8, uin: &str) -> Vec<u8> {
    let mut out = vec![number << 3 | 2, uin.len() as u8 + 2, 0, uin.len() as u8];
    out.extend_from_slice(uin.as_bytes());
    out
}

fn string_field(number: u8, text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    protobuf::put_bytes(&mut out, u32::from(number), text.as_bytes());
    out
}

/// GG110SendMessage / GG110RecvMessage with the fields libgadu sets.
fn msg110(
    ty: u32,
    peer: Option<&str>,
    plain: &str,
    xhtml: Option<&str>,
    chat: Option<u64>,
) -> Vec<u8> {
    let mut p = Vec::new();
    if let Some(peer) = peer {
        p.extend_from_slice(&uin_field(1, peer));
    }
    p.extend_from_slice(&[0x10, 0x08, 0x18, 0x2a]);
    p.extend_from_slice(&[0x25, 0x10, 0x20, 0x30, 0x40]);
    p.extend_from_slice(&string_field(5, plain));
    if let Some(xhtml) = xhtml {
        p.extend_from_slice(&string_field(6, xhtml));
    }
    if ty == packet::CHAT_SEND_MSG {
        // libgadu's dummy3, an empty string, sent with every chat message.
        p.extend_from_slice(&[7 << 3 | 2, 0]);
    }
    if let Some(chat) = chat {
        p.push(10 << 3 | 1);
        p.extend_from_slice(&chat.to_le_bytes());
    }
    packet(ty, &p)
}

#[test]
fn gg11_messages_both_ways() {
    let mut s = logged_in(login105("1193046"));
    let ev = event(
        &mut s,
        Direction::Outgoing,
        &msg110(
            packet::SEND_MSG110,
            Some("42"),
            "zażółć",
            Some("<b>zażółć</b>"),
            None,
        ),
    );
    assert_eq!(
        (ev.local_id.as_str(), ev.remote_id.as_str()),
        ("1193046", "42")
    );
    assert_eq!(
        (ev.direction, ev.text.as_str(), ev.group),
        (Direction::Outgoing, "zażółć", false)
    );
    let ev = event(
        &mut s,
        Direction::Incoming,
        &msg110(
            packet::RECV_MSG110,
            Some("42"),
            "",
            Some("from <i>mobile</i>"),
            None,
        ),
    );
    assert_eq!(
        (ev.direction, ev.text.as_str()),
        (Direction::Incoming, "from mobile")
    );
}

#[test]
fn gg11_chats_are_groups_named_by_chat_id() {
    let mut s = logged_in(login105("1"));
    let chat = Some(0x0102_0304_0506_0708);
    let sent = pdu(
        &mut s,
        Direction::Outgoing,
        &msg110(packet::CHAT_SEND_MSG, None, "", Some("<b>hi</b>"), chat),
    );
    let ev = &sent.events[0];
    assert_eq!(
        (ev.remote_id.as_str(), ev.group, ev.text.as_str()),
        ("chat-72623859790382856", true, "hi")
    );
    let out = s
        .rewrite(Direction::Outgoing, &sent, Rewrite::Text("hello"))
        .unwrap();
    assert_eq!(
        &out[..],
        &msg110(packet::CHAT_SEND_MSG, None, "", Some("hello"), chat)[..]
    );
    let ev = event(
        &mut s,
        Direction::Incoming,
        &msg110(packet::CHAT_RECV_MSG, Some("77"), "yo", Some("yo"), chat),
    );
    assert_eq!(ev.remote_id, "chat-72623859790382856");
    assert_eq!(ev.event_data(), "77: yo");
    let ev = event(
        &mut s,
        Direction::Incoming,
        &msg110(packet::CHAT_RECV_OWN_MSG, None, "me too", None, chat),
    );
    assert_eq!(
        (ev.direction, ev.event_data().as_str()),
        (Direction::Outgoing, "me too")
    );
}

#[test]
fn gg11_rewrite_re_encodes_the_lengths() {
    let mut s = logged_in(login105("1"));
    let original = pdu(
        &mut s,
        Direction::Outgoing,
        &msg110(
            packet::SEND_MSG110,
            Some("42"),
            "short",
            Some("<b>short</b>"),
            None,
        ),
    );
    // Past 127 bytes a protobuf length takes two bytes.
    let long = "ł".repeat(100);
    let out = s
        .rewrite(Direction::Outgoing, &original, Rewrite::Text(&long))
        .unwrap();
    assert_eq!(
        &out[..],
        &msg110(packet::SEND_MSG110, Some("42"), &long, Some(&long), None)[..]
    );
    let back = pdu(&mut s, Direction::Outgoing, &out);
    let out = s
        .rewrite(Direction::Outgoing, &back, Rewrite::Text("<ok>"))
        .unwrap();
    assert_eq!(
        &out[..],
        &msg110(
            packet::SEND_MSG110,
            Some("42"),
            "<ok>",
            Some("&lt;ok&gt;"),
            None
        )[..]
    );
}

#[test]
fn gg11_images_and_malformed_protobuf_are_forwarded_untouched() {
    let mut s = logged_in(login105("1"));
    let mut image = msg110(packet::RECV_MSG110, Some("42"), "", None, None);
    image.extend_from_slice(&[7 << 3 | 2, 1, 0x05]);
    let len = image.len() as u32 - 8;
    image[4..8].copy_from_slice(&len.to_le_bytes());
    no_event(&mut s, Direction::Incoming, &image);
    no_event(
        &mut s,
        Direction::Incoming,
        &packet(packet::RECV_MSG110, &[0x2a, 0x7f, b'a']),
    );
    // A UIN with a wrong length byte is no UIN.
    no_event(
        &mut s,
        Direction::Incoming,
        &packet(packet::RECV_MSG110, &[0x0a, 3, 0, 2, b'4', 0x2a, 1, b'x']),
    );
}

#[test]
fn gg11_file_transfer_info_is_a_file_event() {
    let mut s = logged_in(login105("1"));
    let party = |uin: &str| {
        let mut m = vec![0x08, 1];
        m.extend_from_slice(&uin_field(2, uin));
        m
    };
    let mut file = string_field(7, "zdjęcie.jpg");
    file.extend_from_slice(&[0x40, 0xd2, 0x09]);
    let mut p = vec![0x08, 6];
    for (number, body) in [(2u32, party("42")), (4, party("42")), (6, file)] {
        protobuf::put_bytes(&mut p, number, &body);
    }
    let ev = event(
        &mut s,
        Direction::Incoming,
        &packet(packet::TRANSFER_INFO, &p),
    );
    assert_eq!(
        (ev.kind, ev.direction),
        (EventType::File, Direction::Incoming)
    );
    assert_eq!(
        (ev.remote_id.as_str(), ev.text.as_str()),
        ("42", "zdjęcie.jpg 1234 bytes")
    );
}

// ---- typing, file offers ----

#[test]
fn typing_notifications_both_ways() {
    let mut s = logged_in(login80(1));
    let typing = |len: u16, uin: u32| {
        let mut p = len.to_le_bytes().to_vec();
        p.extend_from_slice(&uin.to_le_bytes());
        packet(packet::TYPING_NOTIFICATION, &p)
    };
    let ev = event(&mut s, Direction::Outgoing, &typing(3, 42));
    assert_eq!(
        (ev.kind, ev.direction, ev.remote_id.as_str()),
        (EventType::Typing, Direction::Outgoing, "42")
    );
    let ev = event(&mut s, Direction::Incoming, &typing(1, 43));
    assert_eq!(
        (ev.direction, ev.remote_id.as_str()),
        (Direction::Incoming, "43")
    );
    no_event(&mut s, Direction::Incoming, &typing(0, 43));
    let pdu = pdu(&mut s, Direction::Incoming, &typing(1, 43));
    assert_eq!(
        s.rewrite(Direction::Incoming, &pdu, Rewrite::Text("x")),
        None
    );
}

fn dcc7_new(from: u32, to: u32, kind: u32, name: &[u8], size: u64) -> Vec<u8> {
    let mut p = 0x1122_3344_5566_7788u64.to_le_bytes().to_vec();
    p.extend_from_slice(&u32s(&[from, to, kind]));
    let mut field = name.to_vec();
    field.resize(255, 0);
    p.extend_from_slice(&field);
    p.extend_from_slice(&size.to_le_bytes());
    p.extend_from_slice(&[0x5a; 20]);
    packet(packet::DCC7_NEW, &p)
}

#[test]
fn dcc7_file_offers_both_ways() {
    let mut s = logged_in(login80(1));
    let ev = event(
        &mut s,
        Direction::Outgoing,
        &dcc7_new(1, 42, 4, b"r\xf3\xbfa.txt", 5_000_000_000),
    );
    assert_eq!((ev.kind, ev.remote_id.as_str()), (EventType::File, "42"));
    assert_eq!(ev.text, "róża.txt 5000000000 bytes");
    let ev = event(
        &mut s,
        Direction::Incoming,
        &dcc7_new(42, 1, 4, b"a.bin", 10),
    );
    assert_eq!(
        (ev.direction, ev.remote_id.as_str(), ev.text.as_str()),
        (Direction::Incoming, "42", "a.bin 10 bytes")
    );
    // A voice call is not a file.
    no_event(&mut s, Direction::Incoming, &dcc7_new(42, 1, 1, b"", 0));
}

// ---- notices ----

#[test]
fn notices_match_the_generation_of_the_login_and_parse_back() {
    assert_eq!(
        GaduGaduSession::default().notice_to_client("42", "hi"),
        None
    );
    for (login, ty) in [
        (login60(7), packet::RECV_MSG),
        (login80(7), packet::RECV_MSG80),
        (login105("7"), packet::RECV_MSG110),
    ] {
        let mut s = logged_in(login);
        let notice = s
            .notice_to_client("42", "Your activities <are> logged: żółw")
            .unwrap();
        assert_eq!(le32(&notice, 0), Some(ty));
        assert_eq!(le32(&notice, 4), Some(notice.len() as u32 - 8));
        let ev = event(&mut s, Direction::Incoming, &notice);
        assert_eq!(
            (ev.direction, ev.remote_id.as_str(), ev.local_id.as_str()),
            (Direction::Incoming, "42", "7")
        );
        assert_eq!(ev.text, "Your activities <are> logged: żółw");
        assert_eq!(s.notice_to_client("chat-5", "x"), None);
    }
}

#[test]
fn gg6_notice_bytes_carry_the_latest_server_time() {
    let mut s = logged_in(login60(7));
    event(
        &mut s,
        Direction::Incoming,
        &recv_msg(42, 0x08, b"hello", &[]),
    );
    let notice = s.notice_to_client("42", "ok").unwrap();
    let mut payload = u32s(&[42, NOTICE_SEQ, 1_700_000_000, 0x08]);
    payload.extend_from_slice(b"ok\0");
    assert_eq!(&notice[..], &packet(packet::RECV_MSG, &payload)[..]);
}

// ---- framing ----

#[test]
fn unknown_packets_pass_as_one_opaque_frame_and_partial_packets_wait() {
    let mut s = logged_in(login60(1));
    let mut data = packet(0x01, &[1, 2, 3, 4]);
    data.extend_from_slice(&packet(0x1234, &[]));
    let msg = send_msg(42, b"hello", &[]);
    data.extend_from_slice(&msg[..10]);
    let mut buf = BytesMut::from(&data[..]);
    let feed = s.feed(Direction::Outgoing, &mut buf);
    assert_eq!(
        feed.frames,
        vec![Frame::Opaque(Bytes::copy_from_slice(&data[..20]))]
    );
    assert_eq!(&buf[..], &msg[..10]);
    buf.extend_from_slice(&msg[10..]);
    let feed = s.feed(Direction::Outgoing, &mut buf);
    assert!(matches!(&feed.frames[..], [Frame::Pdu(p)] if p.bytes[..] == msg[..]));
}

#[test]
fn a_huge_length_loses_sync_without_allocating() {
    let mut s = GaduGaduSession::default();
    let mut buf = BytesMut::from(&[0x0b, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 2][..]);
    let capacity = buf.capacity();
    assert!(s.feed(Direction::Outgoing, &mut buf).stop.is_some());
    assert_eq!(buf.len(), 10);
    assert_eq!(buf.capacity(), capacity);
    let mut at_limit = BytesMut::from(&packet(0x99, &vec![0; MAX_PAYLOAD])[..]);
    assert_eq!(s.feed(Direction::Incoming, &mut at_limit).frames.len(), 1);
    let mut over = BytesMut::from(&u32s(&[0x99, MAX_PAYLOAD as u32 + 1])[..]);
    assert!(s.feed(Direction::Incoming, &mut over).stop.is_some());
}

#[test]
fn a_huge_length_after_a_message_forwards_the_message_then_passes_through() {
    let mut s = logged_in(login60(1));
    let mut data = send_msg(42, b"hi", &[]);
    data.extend_from_slice(&u32s(&[0x0b, 1 << 20]));
    let mut buf = BytesMut::from(&data[..]);
    let feed = s.feed(Direction::Outgoing, &mut buf);
    // The message goes out; the oversized one waits for the UIN it is for.
    assert_eq!(feed.frames.len(), 1);
    assert_eq!(feed.stop, None);
    buf.extend_from_slice(&u32s(&[42, 0]));
    let feed = s.feed(Direction::Outgoing, &mut buf);
    let Some(Stop::TooLarge { why, conversation }) = feed.stop else {
        panic!("{:?}", feed.stop)
    };
    assert_eq!(
        why,
        "Gadu-Gadu packet of type 0xb and 1048576 bytes (limit 64 KiB)"
    );
    let conversation = conversation.unwrap();
    assert_eq!(
        (
            conversation.local_id.as_str(),
            conversation.remote_id.as_str()
        ),
        ("1", "42")
    );
    assert_eq!(buf.len(), 16);
    // GG 11 names the peer in its first protobuf field.
    let mut s = logged_in(login105("1"));
    let mut buf = BytesMut::from(&u32s(&[packet::SEND_MSG110, 1 << 20])[..]);
    buf.extend_from_slice(&uin_field(1, "4242")[..4]);
    assert_eq!(s.feed(Direction::Outgoing, &mut buf).stop, None);
    buf.extend_from_slice(&uin_field(1, "4242")[4..]);
    let Some(Stop::TooLarge { conversation, .. }) = s.feed(Direction::Outgoing, &mut buf).stop
    else {
        panic!()
    };
    assert_eq!(conversation.unwrap().remote_id, "4242");
}

// ---- every packet kind under random damage ----

/// A session with each kind of packet of every generation, both ways.
fn every_kind() -> Vec<(Direction, Vec<u8>)> {
    let chat = Some(99);
    let typing = packet(packet::TYPING_NOTIFICATION, &[1, 0, 42, 0, 0, 0]);
    vec![
        (Direction::Incoming, packet(0x01, &[1, 2, 3, 4])),
        (Direction::Outgoing, login60(1)),
        (
            Direction::Outgoing,
            send_msg(42, b"za\xbf\xf3\xb3\xe6", FORMATS),
        ),
        (Direction::Incoming, recv_msg(42, 0x08, b"hi", CONFERENCE)),
        (Direction::Outgoing, login80(1)),
        (
            Direction::Outgoing,
            send_msg80(42, b"<b>x</b>", b"x", CONFERENCE),
        ),
        (
            Direction::Incoming,
            recv_msg80(packet::RECV_MSG80, 42, b"<i>&lt;</i>", b"", &[]),
        ),
        (Direction::Outgoing, typing.clone()),
        (Direction::Incoming, typing),
        (Direction::Outgoing, dcc7_new(1, 42, 4, b"f.txt", 3)),
        (Direction::Outgoing, login105("1")),
        (
            Direction::Outgoing,
            msg110(packet::SEND_MSG110, Some("42"), "ą", Some("<b>ą</b>"), None),
        ),
        (
            Direction::Incoming,
            msg110(packet::CHAT_RECV_MSG, Some("43"), "", Some("a<br>b"), chat),
        ),
        (
            Direction::Incoming,
            msg110(packet::CHAT_RECV_OWN_MSG, None, "c", None, chat),
        ),
    ]
}

#[test]
fn every_packet_kind_survives_random_chunking_and_mutation() {
    use crate::invariants::{replay, Lcg};
    let clean = every_kind();
    let chunks: Vec<(Direction, &[u8])> = clean.iter().map(|(d, b)| (*d, &b[..])).collect();
    assert_eq!(
        replay(&mut GaduGaduSession::default(), &chunks)
            .events
            .len(),
        10
    );
    let mut rng = Lcg(0x9a);
    for _ in 0..2000 {
        let mut damaged = clean.clone();
        for (_, bytes) in damaged.iter_mut() {
            // One packet in four is damaged.
            if rng.next_u32() & 3 == 0 {
                rng.mutate(bytes);
            }
        }
        let mut pieces = Vec::new();
        for (dir, bytes) in &damaged {
            pieces.extend(rng.chunks(bytes).into_iter().map(|c| (*dir, c)));
        }
        replay(&mut GaduGaduSession::default(), &pieces);
    }
}
