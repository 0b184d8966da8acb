//! Hand-built YMSG sessions, following the protocol documentation
//! (libpurple's yahoo prpl and Wireshark's YMSG dissector).

use super::packet::{encode, pairs};
use super::*;
use crate::invariants::{replay, Lcg};
use crate::{ChatEvent, EventType};

const OUT: Direction = Direction::Outgoing;
const IN: Direction = Direction::Incoming;

/// A YMSG 16 packet.
fn pkt(service: u16, status: u32, pairs: &[(u32, &[u8])]) -> Vec<u8> {
    let header = Header {
        version: 16,
        vendor: 0,
        len: 0,
        service,
        status,
        session: 0x0102_0304,
    };
    encode(&header, pairs).unwrap()
}

fn events_of(frames: Vec<Frame>) -> Vec<ChatEvent> {
    frames
        .into_iter()
        .flat_map(|f| match f {
            Frame::Pdu(p) => p.events,
            Frame::Opaque(_) => Vec::new(),
        })
        .collect()
}

/// Feed whole packets; nothing may be left over or stop the session.
fn feed(s: &mut YahooSession, dir: Direction, data: &[u8]) -> Vec<Frame> {
    let mut buf = BytesMut::from(data);
    let feed = s.feed(dir, &mut buf);
    assert_eq!(feed.stop, None);
    assert!(buf.is_empty(), "left unparsed: {buf:?}");
    feed.frames
}

fn events(s: &mut YahooSession, dir: Direction, data: &[u8]) -> Vec<ChatEvent> {
    events_of(feed(s, dir, data))
}

fn pdu(s: &mut YahooSession, dir: Direction, data: &[u8]) -> Pdu {
    match feed(s, dir, data).as_slice() {
        [Frame::Pdu(p)] => p.clone(),
        other => panic!("expected one PDU, got {other:?}"),
    }
}

fn ev(dir: Direction, kind: EventType, local: &str, remote: &str, text: &str) -> ChatEvent {
    ChatEvent {
        direction: dir,
        kind,
        local_id: local.into(),
        remote_id: remote.into(),
        group: false,
        prefix: String::new(),
        text: text.into(),
        encrypted: false,
    }
}

fn group(dir: Direction, local: &str, room: &str, prefix: &str, text: &str) -> ChatEvent {
    ChatEvent {
        group: true,
        prefix: prefix.into(),
        ..ev(dir, EventType::Message, local, room, text)
    }
}

/// A client that logged in as Alice_Smith.
fn logged_in() -> YahooSession {
    let mut s = YahooSession::default();
    feed(&mut s, OUT, &pkt(service::AUTH, 0, &[(1, b"Alice_Smith")]));
    feed(
        &mut s,
        IN,
        &pkt(service::AUTH, 1, &[(1, b"Alice_Smith"), (94, b"challenge")]),
    );
    s
}

fn message_out(to: &[&str], text: &[u8], utf8: bool) -> Vec<u8> {
    let mut p: Vec<(u32, &[u8])> = vec![(1, b"alice_smith")];
    p.extend(to.iter().map(|t| (5, t.as_bytes())));
    p.push((14, text));
    if utf8 {
        p.push((97, b"1"));
    }
    p.push((63, b";0"));
    p.push((64, b"0"));
    pkt(service::MESSAGE, 0, &p)
}

#[test]
fn messages_both_ways_in_utf8_and_the_legacy_charset() {
    let mut s = logged_in();
    assert_eq!(
        events(
            &mut s,
            OUT,
            &message_out(&["Bob"], "ça va? 漢".as_bytes(), true)
        ),
        [ev(
            OUT,
            EventType::Message,
            "alice_smith",
            "bob",
            "ça va? 漢"
        )]
    );
    let incoming = pkt(
        service::MESSAGE,
        1,
        &[
            (5, b"alice_smith"),
            (4, b"Bob"),
            (14, b"caf\xe9 \x80"),
            (15, b"1160853407"),
        ],
    );
    assert_eq!(
        events(&mut s, IN, &incoming),
        [ev(IN, EventType::Message, "alice_smith", "bob", "café €")]
    );
}

#[test]
fn a_message_to_several_recipients_is_an_event_for_each() {
    let mut s = logged_in();
    let got = events(
        &mut s,
        OUT,
        &message_out(&["bob", "carol"], b"hi both", true),
    );
    assert_eq!(
        got,
        [
            ev(OUT, EventType::Message, "alice_smith", "bob", "hi both"),
            ev(OUT, EventType::Message, "alice_smith", "carol", "hi both"),
        ]
    );
}

#[test]
fn offline_messages_in_one_packet_are_each_an_event_and_not_rewritten() {
    let mut s = logged_in();
    let bundle = pkt(
        service::MESSAGE,
        0x5a55_aa56,
        &[
            (31, b"6"),
            (32, b"6"),
            (4, b"bob"),
            (5, b"alice_smith"),
            (14, b"are you there?"),
            (15, b"1160853407"),
            (97, b"1"),
            (31, b"6"),
            (4, b"carol"),
            (5, b"alice_smith"),
            (14, b"call me"),
            (15, b"1160853410"),
        ],
    );
    let p = pdu(&mut s, IN, &bundle);
    assert_eq!(
        p.events,
        [
            ev(
                IN,
                EventType::Message,
                "alice_smith",
                "bob",
                "are you there?"
            ),
            ev(IN, EventType::Message, "alice_smith", "carol", "call me"),
        ]
    );
    assert_eq!(s.rewrite(IN, &p, Rewrite::Text("x")), None);
}

#[test]
fn typing_and_webcam_notifications() {
    let mut s = logged_in();
    let typing = |state: &'static [u8]| {
        pkt(
            service::NOTIFY,
            0x16,
            &[
                (49, b"TYPING"),
                (1, b"alice_smith"),
                (14, b" "),
                (13, state),
                (5, b"bob"),
            ],
        )
    };
    assert_eq!(
        events(&mut s, OUT, &typing(b"1")),
        [ev(OUT, EventType::Typing, "alice_smith", "bob", "")]
    );
    assert_eq!(events(&mut s, OUT, &typing(b"0")), []);
    let invite = pkt(
        service::NOTIFY,
        0x16,
        &[
            (5, b"alice_smith"),
            (4, b"bob"),
            (49, b"WEBCAMINVITE"),
            (14, b" "),
            (13, b"0"),
        ],
    );
    let p = pdu(&mut s, IN, &invite);
    assert_eq!(
        p.events,
        [ev(IN, EventType::Webcam, "alice_smith", "bob", "")]
    );
    assert_eq!(s.rewrite(IN, &p, Rewrite::Text("x")), None);
    let game = pkt(
        service::NOTIFY,
        0x16,
        &[(4, b"bob"), (49, b"GAME"), (13, b"1")],
    );
    assert_eq!(events(&mut s, IN, &game), []);
}

#[test]
fn file_transfers_of_every_generation() {
    let mut s = logged_in();
    let old = pkt(
        service::FILETRANSFER,
        0,
        &[
            (4, b"bob"),
            (5, b"alice_smith"),
            (14, b""),
            (20, b"http://f.example/x"),
            (27, b"holiday.jpg"),
            (28, b"48213"),
        ],
    );
    assert_eq!(
        events(&mut s, IN, &old),
        [ev(
            IN,
            EventType::File,
            "alice_smith",
            "bob",
            "holiday.jpg 48213 bytes"
        )]
    );
    let p2p = |command: &'static [u8]| {
        pkt(
            service::P2PFILEXFER,
            0,
            &[
                (5, b"bob"),
                (4, b"alice_smith"),
                (13, command),
                (27, b"notes.txt"),
                (28, b"12"),
                (49, b"FILEXFER"),
            ],
        )
    };
    assert_eq!(
        events(&mut s, OUT, &p2p(b"1")),
        [ev(
            OUT,
            EventType::File,
            "alice_smith",
            "bob",
            "notes.txt 12 bytes"
        )]
    );
    assert_eq!(events(&mut s, OUT, &p2p(b"3")), []);
    let offer = pkt(
        service::FILETRANS_15,
        0,
        &[
            (1, b"alice_smith"),
            (5, b"bob"),
            (265, b"c2VuZA--"),
            (222, b"1"),
            (266, b"2"),
            (302, b"268"),
            (300, b"268"),
            (27, "résumé.pdf".as_bytes()),
            (28, b"1048576"),
            (301, b"268"),
            (300, b"268"),
            (27, b"b.png"),
            (28, b"7"),
            (301, b"268"),
            (303, b"268"),
        ],
    );
    assert_eq!(
        events(&mut s, OUT, &offer),
        [
            ev(
                OUT,
                EventType::File,
                "alice_smith",
                "bob",
                "résumé.pdf 1048576 bytes"
            ),
            ev(OUT, EventType::File, "alice_smith", "bob", "b.png 7 bytes"),
        ]
    );
    let accept = pkt(
        service::FILETRANS_15,
        0,
        &[
            (1, b"alice_smith"),
            (5, b"bob"),
            (265, b"c2VuZA--"),
            (222, b"3"),
        ],
    );
    assert_eq!(events(&mut s, OUT, &accept), []);
}

#[test]
fn conferences_are_group_chats_named_by_the_room() {
    let mut s = logged_in();
    let invite = pkt(
        service::CONFINVITE,
        0,
        &[
            (1, b"alice_smith"),
            (50, b"Bob"),
            (57, b"bob-7811"),
            (52, b"carol"),
            (58, b"join us"),
            (13, b"0"),
        ],
    );
    assert_eq!(events(&mut s, IN, &invite), []);
    let incoming = pkt(
        service::CONFMSG,
        0,
        &[
            (1, b"alice_smith"),
            (3, b"Carol"),
            (57, b"bob-7811"),
            (14, b"hello all"),
            (97, b"1"),
        ],
    );
    assert_eq!(
        events(&mut s, IN, &incoming),
        [group(IN, "alice_smith", "bob-7811", "carol: ", "hello all")]
    );
    let outgoing = pkt(
        service::CONFMSG,
        0,
        &[
            (1, b"alice_smith"),
            (53, b"bob"),
            (53, b"carol"),
            (57, b"bob-7811"),
            (14, b"hi"),
            (97, b"1"),
        ],
    );
    assert_eq!(
        events(&mut s, OUT, &outgoing),
        [group(OUT, "alice_smith", "bob-7811", "", "hi")]
    );
    // A notice into the conference comes from a member the client knows.
    let notice = s.notice_to_client("bob-7811", "logged").unwrap();
    let header = Header::parse(&notice);
    assert_eq!(header.service, service::CONFMSG);
    assert_eq!(header.packet_len(), notice.len());
    let got = pairs(&notice[HEADER_LEN..]).unwrap();
    let got: Vec<(u32, &[u8])> = got.iter().map(|p| (p.key, p.value)).collect();
    assert_eq!(
        got,
        [
            (1, &b"alice_smith"[..]),
            (57, b"bob-7811"),
            (3, b"bob"),
            (14, b"logged"),
            (97, b"1")
        ]
    );
    assert_eq!(
        events(&mut s.clone(), IN, &notice),
        [group(IN, "alice_smith", "bob-7811", "bob: ", "logged")]
    );
}

#[test]
fn only_the_latest_groups_with_short_names_are_remembered() {
    let mut s = logged_in();
    let long = "r".repeat(300);
    for room in (0..70).map(|i| format!("room{i}")).chain([long.clone()]) {
        let line = pkt(
            service::CONFMSG,
            0,
            &[
                (1, b"alice_smith"),
                (3, b"bob"),
                (57, room.as_bytes()),
                (14, b"hi"),
            ],
        );
        assert_eq!(events(&mut s, IN, &line).len(), 1, "logged all the same");
    }
    assert_eq!(s.groups.0.len(), MAX_GROUPS);
    assert!(s
        .notice_to_client(&long, "n")
        .is_some_and(|n| Header::parse(&n).service == service::MESSAGE));
    assert!(s
        .notice_to_client("room5", "n")
        .is_some_and(|n| Header::parse(&n).service == service::MESSAGE));
    assert!(s
        .notice_to_client("room69", "n")
        .is_some_and(|n| Header::parse(&n).service == service::CONFMSG));
}

#[test]
fn chat_rooms_are_group_chats_with_emotes() {
    let mut s = logged_in();
    let line = |who: &'static [u8], kind: &'static [u8]| {
        pkt(
            service::COMMENT,
            0,
            &[
                (1, b"alice_smith"),
                (104, b"Linux:1"),
                (109, who),
                (117, b"waves"),
                (124, kind),
            ],
        )
    };
    assert_eq!(
        events(&mut s, IN, &line(b"dave", b"1")),
        [group(IN, "alice_smith", "linux:1", "dave: ", "waves")]
    );
    assert_eq!(
        events(&mut s, IN, &line(b"dave", b"2")),
        [group(IN, "alice_smith", "linux:1", "dave: /me ", "waves")]
    );
    let mine = pkt(
        service::COMMENT,
        0,
        &[
            (1, b"alice_smith"),
            (104, b"Linux:1"),
            (117, b"hi room"),
            (124, b"1"),
            (97, b"1"),
        ],
    );
    let p = pdu(&mut s, OUT, &mine);
    assert_eq!(
        p.events,
        [group(OUT, "alice_smith", "linux:1", "", "hi room")]
    );
    let rewritten = s.rewrite(OUT, &p, Rewrite::Text("hi ***")).unwrap();
    assert_eq!(
        events(&mut s.clone(), OUT, &rewritten),
        [group(OUT, "alice_smith", "linux:1", "", "hi ***")]
    );
    let notice = s.notice_to_client("linux:1", "logged").unwrap();
    assert_eq!(Header::parse(&notice).service, service::COMMENT);
    assert_eq!(
        events(&mut s.clone(), IN, &notice),
        [group(IN, "alice_smith", "linux:1", "dave: ", "logged")]
    );
}

#[test]
fn rewriting_recomputes_the_length_and_keeps_the_charset() {
    let mut s = logged_in();
    let original = message_out(&["bob"], b"nice colour", false);
    let p = pdu(&mut s, OUT, &original);
    let rewritten = s
        .rewrite(OUT, &p, Rewrite::Text("nice shade of hué €"))
        .unwrap();
    let header = Header::parse(&rewritten);
    assert_eq!(header.packet_len(), rewritten.len());
    assert_eq!(header.session, 0x0102_0304);
    let got = pairs(&rewritten[HEADER_LEN..]).unwrap();
    assert_eq!(got[2].value, b"nice shade of hu\xe9 \x80");
    // Every other pair is kept, in its place.
    assert_eq!(got.len(), 5);
    assert_eq!(
        events(&mut s, OUT, &rewritten),
        [ev(
            OUT,
            EventType::Message,
            "alice_smith",
            "bob",
            "nice shade of hué €"
        )]
    );
    assert_eq!(
        s.rewrite(OUT, &p, Rewrite::Text("漢")),
        None,
        "not in windows-1252"
    );
    let long = "x".repeat(70_000);
    assert_eq!(s.rewrite(OUT, &p, Rewrite::Text(&long)), None);
}

#[test]
fn notices_are_messages_from_the_other_party() {
    let s = YahooSession::default();
    assert_eq!(s.notice_to_client("bob", "hi"), None, "no session yet");
    let mut s = logged_in();
    let notice = s
        .notice_to_client("bob", "Your activities are being logged")
        .unwrap();
    let header = Header::parse(&notice);
    assert_eq!(
        (
            header.version,
            header.service,
            header.status,
            header.session
        ),
        (16, service::MESSAGE, 1, 0x0102_0304)
    );
    assert_eq!(
        events(&mut s, IN, &notice),
        [ev(
            IN,
            EventType::Message,
            "alice_smith",
            "bob",
            "Your activities are being logged"
        )]
    );
}

#[test]
fn other_services_are_forwarded_as_they_arrive() {
    let mut s = logged_in();
    let list = pkt(
        0xf1,
        0,
        &[(302, b"318"), (300, b"318"), (65, b"Friends"), (7, b"bob")],
    );
    let mut buf = BytesMut::from(&list[..30]);
    let got = s.feed(IN, &mut buf);
    assert_eq!(
        got.frames,
        [Frame::Opaque(Bytes::copy_from_slice(&list[..30]))]
    );
    assert!(buf.is_empty(), "an uninspected packet is not held");
    let mut rest = BytesMut::from(&list[30..]);
    rest.extend_from_slice(&message_out(&["bob"], b"hi", true));
    let frames = s.feed(IN, &mut rest).frames;
    assert_eq!(
        frames[0],
        Frame::Opaque(Bytes::copy_from_slice(&list[30..]))
    );
    assert!(rest.is_empty());
    // Unknown services are never parsed, so they may hold anything.
    let mut odd = pkt(0x1234, 0, &[]);
    odd.extend_from_slice(b"no pairs here");
    let len = (odd.len() - HEADER_LEN) as u16;
    odd[8..10].copy_from_slice(&len.to_be_bytes());
    assert_eq!(events(&mut s, OUT, &odd), []);
}

#[test]
fn every_split_point_gives_the_same_events() {
    let mut stream = Vec::new();
    stream.extend(pkt(service::AUTH, 0, &[(1, b"alice_smith")]));
    stream.extend(pkt(0x55, 0, &[(87, b"Friends:bob,carol")]));
    stream.extend(message_out(&["bob"], b"first", true));
    stream.extend(message_out(&["carol"], b"second", true));
    let whole = replay(&mut YahooSession::default(), &[(OUT, &stream)]);
    assert_eq!(whole.events.len(), 2);
    assert_eq!(whole.stopped, None);
    for at in 1..stream.len() {
        let got = replay(
            &mut YahooSession::default(),
            &[(OUT, &stream[..at]), (OUT, &stream[at..])],
        );
        assert_eq!(got.events, whole.events, "split at {at}");
        assert_eq!(got.stopped, None);
    }
    let bytes: Vec<(Direction, &[u8])> = stream.chunks(1).map(|c| (OUT, c)).collect();
    assert_eq!(
        replay(&mut YahooSession::default(), &bytes).events,
        whole.events
    );
}

fn stop_of(data: &[u8]) -> (Vec<Frame>, Option<Stop>, usize) {
    let mut s = logged_in();
    let mut buf = BytesMut::from(data);
    let feed = s.feed(OUT, &mut buf);
    (feed.frames, feed.stop, buf.len())
}

#[test]
fn other_protocols_stop_at_once() {
    let (frames, stop, held) = stop_of(b"GET / HTTP/1.1\r\n");
    assert!(frames.is_empty());
    assert_eq!(held, 16);
    assert!(
        matches!(stop, Some(Stop::NotThisProtocol(ref why)) if why.contains("not the start of a YMSG packet"))
    );
    // A prefix of the magic is held, anything else is not.
    assert_eq!(stop_of(b"YM").1, None);
    assert!(stop_of(b"YX").1.is_some());
    assert!(stop_of(b"\x00").1.is_some());
}

#[test]
fn bad_input_stops_with_a_reason_after_the_good_packets() {
    let good = message_out(&["bob"], b"fine", true);
    let check = |bad: Vec<u8>, want: &str| {
        let mut data = good.clone();
        data.extend_from_slice(&bad);
        let (frames, stop, held) = stop_of(&data);
        assert_eq!(events_of(frames).len(), 1, "the packet before is delivered");
        match stop {
            Some(Stop::NotThisProtocol(why)) => assert!(why.contains(want), "{why}"),
            other => panic!("expected a stop, got {other:?}"),
        }
        assert_eq!(held, bad.len(), "the bad packet is relayed as it is");
    };
    // A value without its separator.
    let mut dangling = pkt(service::MESSAGE, 0, &[(1, b"alice_smith"), (5, b"bob")]);
    dangling.extend_from_slice(b"14\xc0\x80hi");
    let len = (dangling.len() - HEADER_LEN) as u16;
    dangling[8..10].copy_from_slice(&len.to_be_bytes());
    check(dangling, "the value of key 14 has no separator");
    // A length past the end swallows the next packet's header.
    let mut long = message_out(&["bob"], b"short", true);
    let len = (long.len() - HEADER_LEN + 20) as u16;
    long[8..10].copy_from_slice(&len.to_be_bytes());
    long.extend_from_slice(&message_out(&["bob"], b"next", true));
    check(long, "malformed");
    // A newer protocol.
    let mut v17 = message_out(&["bob"], b"hi", true);
    v17[4..6].copy_from_slice(&17u16.to_be_bytes());
    check(v17, "YMSG version 17");
}

#[test]
fn a_huge_key_count_is_too_large_to_inspect_and_names_its_conversation() {
    let mut many: Vec<(u32, &[u8])> = vec![(1, b"alice_smith"), (5, b"Bob")];
    many.extend((0..MAX_PAIRS).map(|_| (14, &b"x"[..])));
    let packet = pkt(service::MESSAGE, 0, &many);
    let (frames, stop, held) = stop_of(&packet);
    assert!(frames.is_empty());
    assert_eq!(held, packet.len(), "the packet is relayed as it is");
    let Some(Stop::TooLarge { why, conversation }) = stop else {
        panic!("expected TooLarge, got {stop:?}");
    };
    assert_eq!(
        why,
        format!(
            "YMSG packet of service 0x06 ({} bytes) with more than 4096 key/value pairs",
            packet.len()
        )
    );
    assert_eq!(
        conversation.as_deref(),
        Some(&ev(OUT, EventType::Message, "alice_smith", "bob", ""))
    );
    let mut room: Vec<(u32, &[u8])> = vec![(1, b"alice_smith"), (57, b"Bob-1")];
    room.extend((0..MAX_PAIRS).map(|_| (53, &b"carol"[..])));
    let (_, stop, _) = stop_of(&pkt(service::CONFMSG, 0, &room));
    let Some(Stop::TooLarge { conversation, .. }) = stop else {
        panic!("expected TooLarge, got {stop:?}");
    };
    assert_eq!(
        conversation.as_deref(),
        Some(&ChatEvent {
            group: true,
            ..ev(OUT, EventType::Message, "alice_smith", "bob-1", "")
        })
    );
}

#[test]
fn random_mutations_keep_the_invariants() {
    let mut stream = Vec::new();
    stream.extend(pkt(service::AUTH, 0, &[(1, b"alice_smith")]));
    stream.extend(message_out(&["bob", "carol"], b"hello", true));
    stream.extend(pkt(
        service::CONFMSG,
        0,
        &[(1, b"a"), (3, b"b"), (57, b"r"), (14, b"x")],
    ));
    stream.extend(pkt(
        service::COMMENT,
        0,
        &[(104, b"r"), (109, b"d"), (117, b"y")],
    ));
    stream.extend(pkt(
        service::FILETRANS_15,
        0,
        &[(5, b"b"), (222, b"1"), (27, b"f"), (28, b"1")],
    ));
    let mut rng = Lcg(7);
    for round in 0..2000 {
        let mut data = stream.clone();
        rng.mutate(&mut data);
        let chunks: Vec<(Direction, &[u8])> = rng
            .chunks(&data)
            .into_iter()
            .map(|c| (if round % 2 == 0 { OUT } else { IN }, c))
            .collect();
        replay(&mut YahooSession::default(), &chunks);
    }
}
