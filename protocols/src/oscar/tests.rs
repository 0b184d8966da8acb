use super::*;
use crate::handoff::HandoffTable;
use crate::invariants::{replay, Lcg};

use Direction::{Incoming, Outgoing};

fn tlv(ty: u16, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    tlv::put(&mut out, ty, value).unwrap();
    out
}

fn snac_flap(family: u16, subtype: u16, body: &[u8]) -> Vec<u8> {
    flap::encode(flap::SNAC, 7, &snac::encode(family, subtype, body)).unwrap()
}

fn fragment(id: u8, data: &[u8]) -> Vec<u8> {
    let mut out = vec![id, 1];
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
    out
}

fn text_fragment(charset: u16, bytes: &[u8]) -> Vec<u8> {
    let mut data = charset.to_be_bytes().to_vec();
    data.extend_from_slice(&[0, 0]);
    data.extend_from_slice(bytes);
    fragment(1, &data)
}

fn icbm_head(channel: u16, peer: &str) -> Vec<u8> {
    let mut body = b"cookie01".to_vec();
    body.extend_from_slice(&channel.to_be_bytes());
    body.push(peer.len() as u8);
    body.extend_from_slice(peer.as_bytes());
    body
}

/// 04/06 to `peer` on channel 1 with these fragments.
fn send(peer: &str, fragments: &[Vec<u8>]) -> Vec<u8> {
    let mut body = icbm_head(1, peer);
    body.extend(tlv(2, &fragments.concat()));
    body.extend(tlv(3, b""));
    snac_flap(4, 6, &body)
}

/// The user-info part of a 04/07 from `peer`: warning level and one TLV.
fn received_head(channel: u16, peer: &str) -> Vec<u8> {
    let mut body = icbm_head(channel, peer);
    body.extend_from_slice(&[0, 0, 0, 1]);
    body.extend(tlv(0x0001, &[0, 0x10]));
    body
}

fn receive(peer: &str, fragments: &[Vec<u8>]) -> Vec<u8> {
    let mut body = received_head(1, peer);
    body.extend(tlv(2, &fragments.concat()));
    snac_flap(4, 7, &body)
}

fn rendezvous(peer: &str, capability: [u8; 2], tlvs: &[u8]) -> Vec<u8> {
    let mut data = vec![0, 0];
    data.extend_from_slice(b"rvcookie");
    data.extend_from_slice(&[0x09, 0x46, capability[0], capability[1]]);
    data.extend_from_slice(&icbm::CAPABILITY_TAIL);
    data.extend_from_slice(tlvs);
    let mut body = icbm_head(2, peer);
    body.extend(tlv(5, &data));
    snac_flap(4, 6, &body)
}

fn session_with(table: &Arc<HandoffTable>) -> OscarSession {
    let mut session = OscarSession::default();
    session.share_ids(table.clone());
    session
}

fn run(session: &mut OscarSession, chunks: &[(Direction, Vec<u8>)]) -> crate::invariants::Replay {
    let refs: Vec<(Direction, &[u8])> = chunks.iter().map(|(d, b)| (*d, b.as_slice())).collect();
    replay(session, &refs)
}

/// The MD5 login of "Alice Smith", answered with cookie `cookie`.
fn md5_login(cookie: &[u8]) -> Vec<(Direction, Vec<u8>)> {
    let mut login = tlv(1, b"Alice Smith");
    login.extend(tlv(0x25, b"0123456789abcdef"));
    let mut reply = tlv(1, b"Alice Smith");
    reply.extend(tlv(5, b"127.0.0.1:5191"));
    reply.extend(tlv(6, cookie));
    vec![
        (Outgoing, flap::encode(1, 1, &[0, 0, 0, 1]).unwrap()),
        (Outgoing, snac_flap(0x17, 6, &tlv(1, b"Alice Smith"))),
        (Incoming, snac_flap(0x17, 7, &tlv(0, b"key"))),
        (Outgoing, snac_flap(0x17, 2, &login)),
        (Incoming, snac_flap(0x17, 3, &reply)),
    ]
}

fn bos_sign_on(cookie: &[u8]) -> Vec<u8> {
    let mut data = vec![0, 0, 0, 1];
    data.extend(tlv(6, cookie));
    flap::encode(1, 1, &data).unwrap()
}

#[test]
fn the_login_cookie_carries_the_screen_name_to_the_bos_connection() {
    let table = Arc::new(HandoffTable::new(16));
    let login = run(&mut session_with(&table), &md5_login(b"the-cookie"));
    assert_eq!(login.events, []);
    assert_eq!(login.stopped, None);

    let mut bos = session_with(&table);
    let result = run(
        &mut bos,
        &[
            (Outgoing, bos_sign_on(b"the-cookie")),
            (
                Outgoing,
                send("Bob", &[fragment(5, &[1]), text_fragment(0, b"hi")]),
            ),
        ],
    );
    assert_eq!(result.stopped, None);
    assert_eq!(
        result.events,
        [ChatEvent {
            direction: Outgoing,
            kind: EventType::Message,
            local_id: "alicesmith".into(),
            remote_id: "bob".into(),
            group: false,
            prefix: String::new(),
            text: "hi".into(),
            encrypted: false,
        }]
    );
    // A connection with another cookie does not learn Alice.
    let mut other = session_with(&table);
    let result = run(
        &mut other,
        &[
            (Outgoing, bos_sign_on(b"another")),
            (Outgoing, send("Bob", &[text_fragment(0, b"hi")])),
        ],
    );
    assert_eq!(result.events[0].local_id, "");
}

#[test]
fn the_old_icq_login_names_the_uin_and_its_sign_off_hands_out_the_cookie() {
    let table = Arc::new(HandoffTable::new(16));
    let mut data = vec![0, 0, 0, 1];
    data.extend(tlv(1, b"123456"));
    data.extend(tlv(2, b"\x12\x34roasted"));
    let mut reply = tlv(1, b"123456");
    reply.extend(tlv(6, b"icq-cookie"));
    run(
        &mut session_with(&table),
        &[
            (Outgoing, flap::encode(1, 1, &data).unwrap()),
            (Incoming, flap::encode(4, 1, &reply).unwrap()),
        ],
    );
    assert_eq!(table.recall(b"icq-cookie").as_deref(), Some("123456"));
}

#[test]
fn self_info_names_the_local_user() {
    let mut body = vec![9];
    body.extend_from_slice(b"157901844");
    body.extend_from_slice(&[0, 0, 0, 0]);
    let result = run(
        &mut OscarSession::default(),
        &[
            (Incoming, snac_flap(1, 0x0f, &body)),
            (Incoming, receive("461758769", &[text_fragment(0, b"hey")])),
        ],
    );
    assert_eq!(result.events[0].local_id, "157901844");
    assert_eq!(result.events[0].remote_id, "461758769");
    assert_eq!(result.events[0].direction, Incoming);
}

#[test]
fn each_fragment_is_decoded_in_its_own_charset() {
    let fragments = [
        fragment(5, &[1, 1, 2]),
        text_fragment(charset::ASCII, b"plain, "),
        text_fragment(charset::LATIN1, b"caf\xe9, "),
        text_fragment(charset::UCS2BE, &charset::ucs2_bytes("żółw")),
    ];
    let result = run(
        &mut OscarSession::default(),
        &[(Incoming, receive("Bob Smith", &fragments))],
    );
    assert_eq!(result.stopped, None);
    assert_eq!(result.events[0].text, "plain, café, żółw");
    assert_eq!(result.events[0].remote_id, "bobsmith");
}

#[test]
fn an_odd_ucs2_fragment_is_logged_and_inspection_stops_saying_why() {
    let result = run(
        &mut OscarSession::default(),
        &[
            (
                Incoming,
                receive("bob", &[text_fragment(charset::UCS2BE, &[0, b'h', 0])]),
            ),
            (Incoming, receive("bob", &[text_fragment(0, b"later")])),
        ],
    );
    assert_eq!(result.events.len(), 1);
    assert_eq!(result.events[0].text, "h\u{fffd}");
    assert_eq!(
        result.stopped.as_deref(),
        Some("OSCAR: SNAC 04/07: ICBM message fragment of 3 bytes is not valid in its charset 0x0002")
    );
}

#[test]
fn a_tlv_chain_that_overruns_its_snac_stops_inspection() {
    let mut body = icbm_head(1, "bob");
    body.extend_from_slice(&[0, 2, 0, 40]);
    body.extend_from_slice(&text_fragment(0, b"short"));
    let result = run(
        &mut OscarSession::default(),
        &[(Outgoing, snac_flap(4, 6, &body))],
    );
    assert_eq!(result.events, []);
    assert_eq!(
        result.stopped.as_deref(),
        Some("OSCAR: SNAC 04/06: ICBM: TLV 0x0002 of 40 bytes overruns its container (13 bytes left)")
    );
}

#[test]
fn a_fragment_that_overruns_its_tlv_stops_inspection() {
    let result = run(
        &mut OscarSession::default(),
        &[(Outgoing, send("bob", &[vec![1, 1, 0, 99, 0, 0]]))],
    );
    assert!(result.stopped.unwrap().contains("message fragment"));
}

#[test]
fn bytes_that_do_not_start_a_flap_are_not_held() {
    let mut session = OscarSession::default();
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
    let feed = session.feed(Outgoing, &mut buf);
    assert_eq!(feed.frames, []);
    assert!(matches!(feed.stop, Some(Stop::NotThisProtocol(ref why)) if why.contains("0x47")));
    // An unknown channel in the second byte stops too.
    let mut buf = BytesMut::from(&[0x2a, 9][..]);
    assert!(session.feed(Outgoing, &mut buf).stop.is_some());
}

#[test]
fn only_a_flap_that_can_carry_an_event_is_held() {
    let mut session = OscarSession::default();
    let message = send("bob", &[text_fragment(0, b"hello")]);
    let mut buf = BytesMut::from(&message[..12]);
    let feed = session.feed(Outgoing, &mut buf);
    assert_eq!((feed.frames.len(), buf.len()), (0, 12));
    // A SNAC nobody reads (01/06, rate request) goes out as it comes.
    let other = snac_flap(1, 6, &[0; 40]);
    let mut session = OscarSession::default();
    let mut buf = BytesMut::from(&other[..20]);
    let feed = session.feed(Outgoing, &mut buf);
    assert!(buf.is_empty());
    assert_eq!(
        feed.frames,
        [Frame::Opaque(Bytes::copy_from_slice(&other[..20]))]
    );
    // Its rest, then a message, in one read.
    let mut rest = other[20..].to_vec();
    rest.extend_from_slice(&message);
    let mut buf = BytesMut::from(&rest[..]);
    let feed = session.feed(Outgoing, &mut buf);
    assert!(buf.is_empty());
    assert_eq!(feed.frames.len(), 2);
    assert!(matches!(&feed.frames[1], Frame::Pdu(p) if p.events[0].text == "hello"));
}

#[test]
fn rendezvous_proposals_are_files_webcams_and_relayed_icq_texts() {
    let mut file = vec![0, 1, 0, 1, 0, 0, 0x30, 0x39];
    file.extend_from_slice(b"notes.txt\0");
    let mut file_tlvs = tlv(0x2711, &file);
    file_tlvs.extend(tlv(0x2712, b"us-ascii"));
    let mut relay = vec![0x1b, 0];
    relay.extend_from_slice(&[0; 0x1b]);
    relay.extend_from_slice(&[0x0e, 0]);
    relay.extend_from_slice(&[0; 0x0e]);
    relay.extend_from_slice(&[1, 0, 0, 0, 1, 0, 6, 0]);
    relay.extend_from_slice(b"howdy\0");
    let result = run(
        &mut OscarSession::default(),
        &[
            (Outgoing, rendezvous("bob", [0x13, 0x43], &file_tlvs)),
            (
                Outgoing,
                rendezvous("bob", [0x01, 0x00], &tlv(0x000a, &[0, 1])),
            ),
            (
                Outgoing,
                rendezvous("4242", [0x13, 0x49], &tlv(0x2711, &relay)),
            ),
        ],
    );
    let kinds: Vec<_> = result
        .events
        .iter()
        .map(|e| (e.kind, e.remote_id.as_str(), e.text.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (EventType::File, "bob", "notes.txt 12345 bytes"),
            (EventType::Webcam, "bob", ""),
            (EventType::Message, "4242", "howdy"),
        ]
    );
}

fn channel4(uin: u32, text: &[u8]) -> Vec<u8> {
    let mut data = uin.to_le_bytes().to_vec();
    data.extend_from_slice(&[1, 0]);
    data.extend_from_slice(&((text.len() + 1) as u16).to_le_bytes());
    data.extend_from_slice(text);
    data.push(0);
    let mut body = received_head(4, "4242");
    body.extend(tlv(5, &data));
    snac_flap(4, 7, &body)
}

#[test]
fn old_style_icq_messages_are_read_and_rewritten() {
    let pdu = channel4(4242, b"Gr\xfc\xdfe");
    let result = run(&mut OscarSession::default(), &[(Incoming, pdu.clone())]);
    assert_eq!(result.events[0].text, "Grüße");
    assert_eq!(result.events[0].remote_id, "4242");
    let rewritten = rewrite_and_read(Incoming, &pdu, "Grüße, 你好");
    assert_eq!(rewritten.text, "Grüße, 你好");
}

fn mtn(peer: &str, state: u16) -> Vec<u8> {
    let mut body = icbm_head(1, peer);
    body.extend_from_slice(&state.to_be_bytes());
    snac_flap(4, 0x14, &body)
}

#[test]
fn typing_begun_is_an_event_and_typing_finished_is_not() {
    let result = run(
        &mut OscarSession::default(),
        &[
            (Outgoing, mtn("bob", 2)),
            (Outgoing, mtn("bob", 1)),
            (Incoming, mtn("bob", 0)),
        ],
    );
    assert_eq!(result.events.len(), 1);
    assert_eq!(result.events[0].kind, EventType::Typing);
    assert_eq!(result.events[0].text, "");
}

fn room_info(name: &str) -> Vec<u8> {
    let mut body = vec![0, 4, 5];
    body.extend_from_slice(b"!aol:");
    body.extend_from_slice(&[0, 0, 2, 0, 1]);
    body.extend(tlv(0x00d3, name.as_bytes()));
    snac_flap(0x0e, 2, &body)
}

fn chat_line(subtype: u16, sender: Option<&str>, label: &[u8], text: &[u8]) -> Vec<u8> {
    let mut body = b"chatcook".to_vec();
    body.extend_from_slice(&[0, 3]);
    if let Some(sender) = sender {
        let mut info = vec![sender.len() as u8];
        info.extend_from_slice(sender.as_bytes());
        info.extend_from_slice(&[0, 0, 0, 0]);
        body.extend(tlv(3, &info));
    }
    body.extend(tlv(1, b""));
    let mut message = tlv(1, text);
    message.extend(tlv(2, label));
    message.extend(tlv(3, b"en"));
    body.extend(tlv(5, &message));
    snac_flap(0x0e, subtype, &body)
}

#[test]
fn chat_room_lines_name_the_room_and_prefix_the_sender() {
    let table = Arc::new(HandoffTable::new(4));
    table.remember(b"chat-cookie", "alice");
    let result = run(
        &mut session_with(&table),
        &[
            (Outgoing, bos_sign_on(b"chat-cookie")),
            (Incoming, room_info("Lobby")),
            (Outgoing, chat_line(5, None, b"us-ascii", b"hello room")),
            (
                Incoming,
                chat_line(
                    6,
                    Some("Bob Smith"),
                    b"unicode-2-0",
                    &charset::ucs2_bytes("cześć"),
                ),
            ),
        ],
    );
    let lines: Vec<_> = result
        .events
        .iter()
        .map(|e| {
            (
                e.direction,
                e.local_id.as_str(),
                e.remote_id.as_str(),
                e.group,
                e.event_data(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            (Outgoing, "alice", "Lobby", true, "hello room".to_string()),
            (
                Incoming,
                "alice",
                "Lobby",
                true,
                "bobsmith: cześć".to_string()
            ),
        ]
    );
    let line = chat_line(5, None, b"us-ascii", b"hello room");
    assert_eq!(rewrite_and_read(Outgoing, &line, "zażółć").text, "zażółć");
}

/// Rewrite the one PDU of `pdu` to `text`; a fresh session must read it back.
fn rewrite_and_read(dir: Direction, pdu: &[u8], text: &str) -> ChatEvent {
    let mut session = OscarSession::default();
    let mut buf = BytesMut::from(pdu);
    let feed = session.feed(dir, &mut buf);
    let Some(Frame::Pdu(pdu)) = feed.frames.into_iter().next() else {
        panic!("no PDU");
    };
    let bytes = session.rewrite(dir, &pdu, Rewrite::Text(text)).unwrap();
    let mut buf = BytesMut::from(&bytes[..]);
    let feed = OscarSession::default().feed(dir, &mut buf);
    assert!(buf.is_empty());
    assert_eq!(feed.stop, None);
    match feed.frames.into_iter().next() {
        Some(Frame::Pdu(mut p)) => p.events.remove(0),
        other => panic!("rewritten PDU read as {other:?}"),
    }
}

#[test]
fn a_rewrite_re_encodes_every_nested_length() {
    let pdu = send(
        "bob",
        &[
            fragment(5, &[1]),
            text_fragment(0, b"a long text"),
            text_fragment(0, b" in two"),
        ],
    );
    let event = rewrite_and_read(Outgoing, &pdu, "short");
    assert_eq!(
        (event.text.as_str(), event.remote_id.as_str()),
        ("short", "bob")
    );
    // A text ASCII cannot hold goes out in UCS-2BE.
    let event = rewrite_and_read(Outgoing, &pdu, "naïve ☺");
    assert_eq!(event.text, "naïve ☺");
    let incoming = receive("bob", &[text_fragment(charset::LATIN1, b"caf\xe9")]);
    assert_eq!(rewrite_and_read(Incoming, &incoming, "thé").text, "thé");
    // The result is exactly a FLAP of the new length.
    let mut session = OscarSession::default();
    let mut buf = BytesMut::from(&pdu[..]);
    let Some(Frame::Pdu(p)) = session.feed(Outgoing, &mut buf).frames.pop() else {
        panic!()
    };
    let bytes = session.rewrite(Outgoing, &p, Rewrite::Text("x")).unwrap();
    let header = flap::header(&bytes).unwrap();
    assert_eq!(header.len, bytes.len() - flap::HEADER_LEN);
    assert_eq!(header.seq, 7);
}

#[test]
fn a_file_offer_is_not_rewritten() {
    let mut file = vec![0, 1, 0, 1, 0, 0, 0, 9];
    file.extend_from_slice(b"a.txt\0");
    let pdu = rendezvous("bob", [0x13, 0x43], &tlv(0x2711, &file));
    let mut session = OscarSession::default();
    let mut buf = BytesMut::from(&pdu[..]);
    let Some(Frame::Pdu(p)) = session.feed(Outgoing, &mut buf).frames.pop() else {
        panic!()
    };
    assert_eq!(session.rewrite(Outgoing, &p, Rewrite::Text("x")), None);
}

#[test]
fn a_notice_reads_as_an_incoming_message_from_the_other_party() {
    let mut session = OscarSession::default();
    let mut buf = BytesMut::from(&receive("bob", &[text_fragment(0, b"hi")])[..]);
    session.feed(Incoming, &mut buf);
    let notice = session.notice_to_client("bob", "Blocked: ĉu?").unwrap();
    assert_eq!(flap::header(&notice).unwrap().seq, 8);
    let mut buf = BytesMut::from(&notice[..]);
    let feed = session.feed(Incoming, &mut buf);
    let Some(Frame::Pdu(p)) = feed.frames.into_iter().next() else {
        panic!()
    };
    assert_eq!(p.events[0].remote_id, "bob");
    assert_eq!(p.events[0].direction, Incoming);
    assert_eq!(p.events[0].text, "Blocked: ĉu?");
}

#[test]
fn no_password_appears_in_what_the_core_reports() {
    let mut login = tlv(1, b"alice");
    login.extend(tlv(0x25, b"SECRET-MD5-HASH!"));
    login.extend_from_slice(&[0, 9, 0, 50]);
    let result = run(
        &mut OscarSession::default(),
        &[(Outgoing, snac_flap(0x17, 2, &login))],
    );
    let why = result.stopped.unwrap();
    assert!(!why.contains("SECRET"), "{why}");
    assert!(why.contains("TLV 0x0009"), "{why}");
}

/// A whole session: every chunking gives the same events and forwards every byte.
#[test]
fn any_chunking_gives_the_same_events() {
    let table = Arc::new(HandoffTable::new(4));
    table.remember(b"c", "alice");
    let mut stream = vec![
        (Outgoing, bos_sign_on(b"c")),
        (Incoming, snac_flap(1, 3, &[0, 1, 0, 4])),
        (Outgoing, snac_flap(1, 6, &[0; 300])),
        (Outgoing, mtn("bob", 2)),
        (
            Outgoing,
            send("bob", &[fragment(5, &[1]), text_fragment(0, b"hello")]),
        ),
        (
            Incoming,
            receive("bob", &[text_fragment(2, &charset::ucs2_bytes("hej"))]),
        ),
        (Incoming, channel4(4242, b"old")),
        (Incoming, flap::encode(5, 9, &[]).unwrap()),
    ];
    let whole = run(&mut session_with(&table), &stream).events;
    assert_eq!(whole.len(), 4);
    let mut rng = Lcg(15);
    for _ in 0..200 {
        let mut chunks = Vec::new();
        for (dir, bytes) in &stream {
            for piece in rng.chunks(bytes) {
                chunks.push((*dir, piece.to_vec()));
            }
        }
        assert_eq!(run(&mut session_with(&table), &chunks).events, whole);
    }
    // Damaged streams keep the byte-for-byte invariants.
    for _ in 0..300 {
        let mut chunks = Vec::new();
        for (dir, bytes) in &mut stream {
            let mut bytes = bytes.clone();
            if rng.next_u32().is_multiple_of(3) {
                rng.mutate(&mut bytes);
            }
            for piece in rng.chunks(&bytes) {
                chunks.push((*dir, piece.to_vec()));
            }
        }
        run(&mut session_with(&table), &chunks);
    }
}

#[test]
fn an_otr_message_is_marked_encrypted_and_not_rewritten() {
    let pdu = receive(
        "bob",
        &[text_fragment(
            0,
            b"<HTML><BODY>?OTR:AAMDAAAAAAEAAAAB</BODY></HTML>",
        )],
    );
    let result = run(&mut OscarSession::default(), &[(Incoming, pdu.clone())]);
    assert_eq!(result.events[0].text, "[OTR encrypted message]");
    assert!(result.events[0].encrypted);
    let mut session = OscarSession::default();
    let mut buf = BytesMut::from(&pdu[..]);
    let Some(Frame::Pdu(p)) = session.feed(Incoming, &mut buf).frames.pop() else {
        panic!()
    };
    assert_eq!(session.rewrite(Incoming, &p, Rewrite::Text("x")), None);
    let plain = run(
        &mut OscarSession::default(),
        &[(
            Incoming,
            receive("bob", &[text_fragment(0, b"what is ?OTR anyway")]),
        )],
    );
    assert!(!plain.events[0].encrypted);
}
