use bytes::BytesMut;

use super::*;
use crate::event::ChatEvent;
use crate::invariants::{replay, Lcg};

use Direction::{Incoming, Outgoing};

const CLIENT_HEADER: &str = "<?xml version='1.0'?><stream:stream to='example.org' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
const SERVER_HEADER: &str = "<?xml version='1.0'?><stream:stream from='example.org' id='s1' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

/// A login as a client does it: header, SASL, restart, binding.
fn login() -> Vec<(Direction, String)> {
    vec![
        (Outgoing, CLIENT_HEADER.into()),
        (Incoming, format!("{SERVER_HEADER}<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>")),
        (Outgoing, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHB3</auth>".into()),
        (Incoming, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>".into()),
        (Outgoing, CLIENT_HEADER.into()),
        (Incoming, format!("{SERVER_HEADER}<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>")),
        (Outgoing, "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>laptop</resource></bind></iq>".into()),
        (Incoming, "<iq type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>Alice@Example.org/laptop</jid></bind></iq>".into()),
    ]
}

fn logged_in() -> XmppSession {
    let mut s = XmppSession::default();
    for (dir, data) in login() {
        assert!(feed(&mut s, dir, &data).is_empty());
    }
    s
}

/// Feed whole, expecting every byte framed and no stop.
fn feed(s: &mut XmppSession, dir: Direction, data: &str) -> Vec<ChatEvent> {
    let mut buf = BytesMut::from(data.as_bytes());
    let feed = s.feed(dir, &mut buf);
    assert_eq!(feed.stop, None, "{data}");
    assert!(buf.is_empty(), "held {:?}", String::from_utf8_lossy(&buf));
    events_of(feed)
}

fn events_of(feed: Feed) -> Vec<ChatEvent> {
    feed.frames
        .into_iter()
        .flat_map(|f| match f {
            Frame::Pdu(p) => p.events,
            Frame::Opaque(_) => Vec::new(),
        })
        .collect()
}

fn one(events: Vec<ChatEvent>) -> ChatEvent {
    assert_eq!(events.len(), 1, "{events:#?}");
    events.into_iter().next().unwrap()
}

#[test]
fn login_binds_the_local_id_and_messages_both_ways() {
    let mut s = logged_in();
    assert_eq!(s.server_name(), Some("example.org"));
    let e = one(feed(&mut s, Outgoing, "<message type='chat' to='Bob@Example.net/phone' id='m1'><body>hi &amp; &lt;bye&gt; &#x263A;</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>"));
    assert_eq!(
        (
            e.direction,
            e.kind,
            e.local_id.as_str(),
            e.remote_id.as_str(),
            e.text.as_str(),
            e.group
        ),
        (
            Outgoing,
            EventType::Message,
            "alice@example.org",
            "bob@example.net",
            "hi & <bye> ☺",
            false
        )
    );
    let e = one(feed(&mut s, Incoming, "<message from='bob@example.net/phone' to='alice@example.org/laptop' type='chat'><body><![CDATA[<b>bold</b>]]> too</body></message>"));
    assert_eq!(
        (e.direction, e.remote_id.as_str(), e.text.as_str()),
        (Incoming, "bob@example.net", "<b>bold</b> too")
    );
    // normal (no type) and headline messages too; errors are not chat.
    assert_eq!(
        one(feed(
            &mut s,
            Incoming,
            "<message from='news.example.org'><subject>s</subject><body>n</body></message>"
        ))
        .remote_id,
        "news.example.org"
    );
    assert_eq!(
        one(feed(
            &mut s,
            Incoming,
            "<message from='bob@example.net' type='headline'><body>h</body></message>"
        ))
        .text,
        "h"
    );
    assert!(feed(&mut s, Incoming, "<message from='bob@example.net' type='error'><body>x</body><error type='cancel'/></message>").is_empty());
}

#[test]
fn prefixes_namespaces_and_several_stanzas_in_one_read() {
    let mut s = logged_in();
    let events = feed(&mut s, Outgoing, "<c:message xmlns:c='jabber:client' to='bob@example.net'><c:body>one</c:body></c:message> <message to='carol@example.net'><body>two</body></message><presence/>\n");
    let texts: Vec<_> = events
        .iter()
        .map(|e| (e.remote_id.as_str(), e.text.as_str()))
        .collect();
    assert_eq!(
        texts,
        [("bob@example.net", "one"), ("carol@example.net", "two")]
    );
    // A body in another namespace is not the message's body.
    assert!(feed(
        &mut s,
        Outgoing,
        "<message to='bob@example.net'><body xmlns='urn:other'>x</body></message>"
    )
    .is_empty());
}

#[test]
fn chat_states_composing_is_typing() {
    let mut s = logged_in();
    let e = one(feed(&mut s, Outgoing, "<message type='chat' to='bob@example.net'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"));
    assert_eq!((e.kind, e.text.as_str()), (EventType::Typing, ""));
    assert!(feed(&mut s, Incoming, "<message from='bob@example.net/x' type='chat'><paused xmlns='http://jabber.org/protocol/chatstates'/></message>").is_empty());
}

fn join_room(s: &mut XmppSession) {
    feed(s, Outgoing, "<presence to='room@conf.example.org/Ali'><x xmlns='http://jabber.org/protocol/muc'/></presence>");
    // The room renames us, and says so with status 110.
    feed(s, Incoming, "<presence from='room@conf.example.org/Alice2' to='alice@example.org/laptop'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='member' role='participant'/><status code='110'/></x></presence>");
}

#[test]
fn group_chat_lines_private_messages_echoes_and_history() {
    let mut s = logged_in();
    join_room(&mut s);
    // History replayed on join is not new.
    assert!(feed(&mut s, Incoming, "<message from='room@conf.example.org/bob' type='groupchat'><body>old</body><delay xmlns='urn:xmpp:delay' stamp='2020-01-01T00:00:00Z'/></message>").is_empty());
    let e = one(feed(
        &mut s,
        Outgoing,
        "<message to='room@conf.example.org' type='groupchat'><body>hello room</body></message>",
    ));
    assert_eq!(
        (e.remote_id.as_str(), e.group, e.event_data().as_str()),
        ("room@conf.example.org", true, "hello room")
    );
    // The room's echo of our line was logged when it went out.
    assert!(feed(&mut s, Incoming, "<message from='room@conf.example.org/Alice2' type='groupchat'><body>hello room</body></message>").is_empty());
    let e = one(feed(&mut s, Incoming, "<message from='Room@conf.example.org/Bob' type='groupchat'><body>hi alice</body></message>"));
    assert_eq!(
        (
            e.remote_id.as_str(),
            e.group,
            e.prefix.as_str(),
            e.text.as_str()
        ),
        ("room@conf.example.org", true, "Bob: ", "hi alice")
    );
    // The subject alone is not a message.
    assert!(feed(
        &mut s,
        Incoming,
        "<message from='room@conf.example.org' type='groupchat'><subject>topic</subject></message>"
    )
    .is_empty());
    // Private messages with an occupant: their own conversation.
    let e = one(feed(
        &mut s,
        Outgoing,
        "<message to='room@conf.example.org/Bob' type='chat'><body>psst</body></message>",
    ));
    assert_eq!(
        (e.remote_id.as_str(), e.group),
        ("room@conf.example.org/bob", false)
    );
    let e = one(feed(&mut s, Incoming, "<message from='room@conf.example.org/Bob' type='chat'><body>yes?</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>"));
    assert_eq!(
        (e.direction, e.remote_id.as_str()),
        (Incoming, "room@conf.example.org/bob")
    );
    // A notice in the room is a room message.
    let notice = s
        .notice_to_client("room@conf.example.org", "blocked <x>")
        .unwrap();
    assert_eq!(&notice[..], b"<message type='groupchat' from='room@conf.example.org' to='Alice@Example.org/laptop'><body>blocked &lt;x&gt;</body></message>");
    // After leaving, the room's JID is an ordinary contact's.
    feed(&mut s, Incoming, "<presence from='room@conf.example.org/Alice2' type='unavailable'><x xmlns='http://jabber.org/protocol/muc#user'><status code='110'/></x></presence>");
    assert_eq!(
        one(feed(
            &mut s,
            Outgoing,
            "<message to='room@conf.example.org/Bob'><body>x</body></message>"
        ))
        .remote_id,
        "room@conf.example.org"
    );
}

#[test]
fn file_offers_and_calls() {
    let mut s = logged_in();
    let e = one(feed(&mut s, Outgoing, "<iq type='set' to='bob@example.net/phone' id='s1'><si xmlns='http://jabber.org/protocol/si' id='a' profile='http://jabber.org/protocol/si/profile/file-transfer'><file xmlns='http://jabber.org/protocol/si/profile/file-transfer' name='report.pdf' size='48128'/></si></iq>"));
    assert_eq!(
        (e.kind, e.remote_id.as_str(), e.text.as_str()),
        (EventType::File, "bob@example.net", "report.pdf 48128 bytes")
    );
    let e = one(feed(&mut s, Incoming, "<iq type='set' from='bob@example.net/phone' id='j1'><jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='x'><content creator='initiator' name='f'><description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file><name>photo.jpg</name><size>2048</size></file></description></content></jingle></iq>"));
    assert_eq!(
        (e.kind, e.direction, e.text.as_str()),
        (EventType::File, Incoming, "photo.jpg 2048 bytes")
    );
    let e = one(feed(&mut s, Outgoing, "<iq type='get' to='upload.example.org' id='u1'><request xmlns='urn:xmpp:http:upload:0' filename='cat.png' size='1234' content-type='image/png'/></iq>"));
    assert_eq!(
        (e.kind, e.remote_id.as_str(), e.text.as_str()),
        (EventType::File, "upload.example.org", "cat.png 1234 bytes")
    );
    // The slot's URL, shared in a message: one file event.
    let e = one(feed(&mut s, Outgoing, "<message to='bob@example.net' type='chat'><body>https://up.example.org/a/cat.png</body><x xmlns='jabber:x:oob'><url>https://up.example.org/a/cat.png</url></x></message>"));
    assert_eq!(
        (e.kind, e.text.as_str()),
        (
            EventType::File,
            "cat.png (https://up.example.org/a/cat.png)"
        )
    );
    let e = one(feed(&mut s, Incoming, "<iq type='set' from='bob@example.net/phone' id='j2'><jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='y'><content creator='initiator' name='a'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></content><content creator='initiator' name='v'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'/></content></jingle></iq>"));
    assert_eq!(e.kind, EventType::Webcam);
    let e = one(feed(&mut s, Outgoing, "<message to='bob@example.net'><propose xmlns='urn:xmpp:jingle-message:0' id='c'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'/></propose></message>"));
    assert_eq!(e.kind, EventType::Webcam);
    // Answers and other iqs are not offers.
    assert!(feed(&mut s, Incoming, "<iq type='result' from='upload.example.org' id='u1'><slot xmlns='urn:xmpp:http:upload:0'><put url='https://up.example.org/a/cat.png'/></slot></iq>").is_empty());
}

#[test]
fn carbons_are_logged_once_with_their_direction_and_archives_not_at_all() {
    let mut s = logged_in();
    let e = one(feed(&mut s, Incoming, "<message from='alice@example.org' to='alice@example.org/laptop'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='alice@example.org/phone' to='bob@example.net/x' type='chat'><body>from my phone</body></message></forwarded></sent></message>"));
    assert_eq!(
        (e.direction, e.remote_id.as_str(), e.text.as_str()),
        (Outgoing, "bob@example.net", "from my phone")
    );
    let e = one(feed(&mut s, Incoming, "<message from='alice@example.org' to='alice@example.org/laptop'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='bob@example.net/x' to='alice@example.org/phone' type='chat'><body>to the phone</body></message></forwarded></received></message>"));
    assert_eq!(
        (e.direction, e.remote_id.as_str()),
        (Incoming, "bob@example.net")
    );
    // A carbon from someone else is a forgery.
    assert!(feed(&mut s, Incoming, "<message from='mallory@example.net'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' to='bob@example.net' type='chat'><body>fake</body></message></forwarded></sent></message>").is_empty());
    assert!(feed(&mut s, Incoming, "<message to='alice@example.org/laptop'><result xmlns='urn:xmpp:mam:2' queryid='q' id='1'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='bob@example.net' type='chat'><body>old</body></message></forwarded></result></message>").is_empty());
}

#[test]
fn encrypted_messages_say_so_and_with_what() {
    let mut s = logged_in();
    for (payload, text) in [
        ("<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'><key rid='2'>a2V5</key><iv>aXY=</iv></header><payload>cGF5</payload></encrypted><body>I sent you an OMEMO encrypted message.</body>", "[OMEMO encrypted message]"),
        ("<encrypted xmlns='urn:xmpp:omemo:2'><header sid='1'/><payload>x</payload></encrypted>", "[OMEMO encrypted message]"),
        ("<openpgp xmlns='urn:xmpp:openpgp:0'>LS0t</openpgp><body>This message is encrypted.</body>", "[OpenPGP (XEP-0373) encrypted message]"),
        ("<body>This message is encrypted.</body><x xmlns='jabber:x:encrypted'>LS0t</x>", "[OpenPGP (XEP-0027) encrypted message]"),
        ("<body>?OTR:AAMDAAAAAAEAAAAB</body>", "[OTR encrypted message]"),
    ] {
        let e = one(feed(&mut s, Outgoing, &format!("<message to='bob@example.net' type='chat'>{payload}</message>")));
        assert_eq!((e.kind, e.text.as_str(), e.encrypted), (EventType::Message, text, true), "{payload}");
    }
    let e = one(feed(
        &mut s,
        Outgoing,
        "<message to='bob@example.net'><body>plain</body></message>",
    ));
    assert!(!e.encrypted);
}

#[test]
fn starttls_stops_after_proceed_and_the_intercepted_streams_go_on() {
    let mut s = XmppSession::default();
    feed(&mut s, Outgoing, CLIENT_HEADER);
    feed(&mut s, Incoming, &format!("{SERVER_HEADER}<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"));
    feed(
        &mut s,
        Outgoing,
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    );
    let mut buf =
        BytesMut::from(&b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\x16\x03\x03"[..]);
    let feed_out = s.feed(Incoming, &mut buf);
    assert_eq!(feed_out.stop, Some(Stop::Encrypted("XMPP STARTTLS")));
    assert_eq!(feed_out.frames.len(), 1);
    assert_eq!(&buf[..], b"\x16\x03\x03");
    assert_eq!(s.server_name(), Some("example.org"));
    // The relay decrypts and feeds the same core: new streams from both sides.
    for (dir, data) in login() {
        feed(&mut s, dir, &data);
    }
    let e = one(feed(
        &mut s,
        Outgoing,
        "<message to='bob@example.net'><body>secret</body></message>",
    ));
    assert_eq!(
        (e.local_id.as_str(), e.text.as_str()),
        ("alice@example.org", "secret")
    );
}

#[test]
fn bytes_that_are_not_xml_stop_at_once_and_are_not_held() {
    for (data, why) in [
        (
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
            "TLS handshake",
        ),
        (b"hostname.1700000000.123456.abcdefghijklmnopq", "not XML"),
        (b"\x01", "not XML"),
    ] {
        let mut buf = BytesMut::from(data);
        let feed = XmppSession::default().feed(Outgoing, &mut buf);
        assert!(feed.frames.is_empty());
        match feed.stop {
            Some(Stop::NotThisProtocol(reason)) => assert!(reason.contains(why), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
    // iperf3's one-byte states may be XML white space: forwarded, not held.
    let mut buf = BytesMut::from(&b"\x09"[..]);
    assert_eq!(
        XmppSession::default().feed(Incoming, &mut buf).frames.len(),
        1
    );
    // Garbage after a stream started is not held either.
    let mut s = logged_in();
    let mut buf = BytesMut::from(&b"\x00\x01binary"[..]);
    assert!(matches!(
        s.feed(Outgoing, &mut buf).stop,
        Some(Stop::NotThisProtocol(_))
    ));
}

#[test]
fn a_dtd_is_refused_and_no_entity_is_expanded() {
    let bomb = "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>]><stream:stream to='example.org' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><message to='b@x'><body>&lol2;</body></message>";
    for cut in [bomb.len(), 35] {
        let mut s = XmppSession::default();
        let mut buf = BytesMut::from(&bomb.as_bytes()[..cut]);
        let feed = s.feed(Outgoing, &mut buf);
        match &feed.stop {
            Some(Stop::NotThisProtocol(reason)) => assert!(reason.contains("DTD"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(events_of(feed).is_empty());
    }
    // An undefined entity in a stream without DTD stays as written.
    let mut s = logged_in();
    let e = one(feed(
        &mut s,
        Outgoing,
        "<message to='b@x'><body>&lol9;</body></message>",
    ));
    assert_eq!(e.text, "&lol9;");
}

#[test]
fn a_stanza_over_the_bound_stops_inspection_but_big_uninteresting_ones_stream() {
    let mut s = logged_in();
    // A vCard with a photo: forwarded as it arrives, nothing held.
    let mut buf =
        BytesMut::from(&b"<iq type='result' id='v'><vCard xmlns='vcard-temp'><PHOTO><BINVAL>"[..]);
    let f = s.feed(Incoming, &mut buf);
    assert_eq!(f.stop, None);
    assert!(buf.is_empty());
    for _ in 0..10 {
        buf.extend_from_slice(&[b'A'; 64 * 1024]);
        let f = s.feed(Incoming, &mut buf);
        assert_eq!((f.stop, buf.len()), (None, 0));
    }
    buf.extend_from_slice(b"</BINVAL></PHOTO></vCard></iq>");
    assert_eq!(s.feed(Incoming, &mut buf).stop, None);
    assert!(buf.is_empty());
    let e = one(feed(
        &mut s,
        Incoming,
        "<message from='bob@example.net'><body>after</body></message>",
    ));
    assert_eq!(e.text, "after");
    // A message that big is not held.
    let mut buf = BytesMut::from(&b"<message to='bob@example.net'><body>"[..]);
    let mut stop = None;
    for _ in 0..5 {
        buf.extend_from_slice(&[b'b'; 64 * 1024]);
        stop = s.feed(Outgoing, &mut buf).stop;
        if stop.is_some() {
            break;
        }
    }
    // Whole in one read, the same.
    let mut whole = BytesMut::from(&b"<message to='bob@example.net'><body>"[..]);
    whole.extend_from_slice(&[b'b'; MAX_STANZA]);
    whole.extend_from_slice(b"</body></message>");
    let mut copy = s.clone();
    let f = copy.feed(Outgoing, &mut whole);
    assert!(f.frames.is_empty(), "nothing inspected");
    assert!(
        matches!(f.stop, Some(Stop::TooLarge { .. })),
        "{:?}",
        f.stop
    );
    let Some(Stop::TooLarge { why, conversation }) = stop else {
        panic!("{stop:?}");
    };
    assert_eq!(
        why,
        "a <message> stanza longer than 256 KiB (more than XMPP servers accept)"
    );
    let conversation = conversation.expect("the message's conversation");
    assert_eq!(
        (
            conversation.local_id.as_str(),
            conversation.remote_id.as_str()
        ),
        ("alice@example.org", "bob@example.net")
    );
}

#[test]
fn a_split_at_every_byte_gives_the_same_events_and_forwards_every_byte() {
    let mut chunks = login();
    chunks.extend([
        (Outgoing, "<message type='chat' to='bob@example.net'><body>a &amp; b é</body></message> ".to_string()),
        (Incoming, "<message from='bob@example.net/r' type='chat'><body>ok</body><html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'>ok</body></html></message>".to_string()),
        (Outgoing, "<iq type='set' to='bob@example.net/r' id='s'><si xmlns='http://jabber.org/protocol/si'><file xmlns='http://jabber.org/protocol/si/profile/file-transfer' name='f' size='1'/></si></iq>".to_string()),
        (Incoming, "<iq type='result' id='r'><query xmlns='jabber:iq:roster'><item jid='bob@example.net'/></query></iq>".to_string()),
        (Outgoing, "</stream:stream>".to_string()),
    ]);
    let whole: Vec<(Direction, &[u8])> = chunks.iter().map(|(d, s)| (*d, s.as_bytes())).collect();
    let expected = replay(&mut XmppSession::default(), &whole);
    assert_eq!(expected.stopped, None);
    assert_eq!(expected.events.len(), 3);
    let bytes: Vec<(Direction, &[u8])> = whole
        .iter()
        .flat_map(|(d, b)| (0..b.len()).map(move |i| (*d, &b[i..i + 1])))
        .collect();
    let split = replay(&mut XmppSession::default(), &bytes);
    assert_eq!(split.events, expected.events);
    let mut rng = Lcg(5222);
    for _ in 0..50 {
        let mut pieces = Vec::new();
        for (d, b) in &whole {
            let mut b = b.to_vec();
            if rng.next_u32() & 3 == 0 {
                rng.mutate(&mut b);
            }
            pieces.push((*d, b));
        }
        let mut cut = Vec::new();
        for (d, b) in &pieces {
            for piece in rng.chunks(b) {
                cut.push((*d, piece));
            }
        }
        replay(&mut XmppSession::default(), &cut);
    }
}

#[test]
fn rewriting_changes_the_bodies_only_and_drops_the_xhtml_copy() {
    let mut s = logged_in();
    let stanza = "<message to='bob@example.net' id='x'><body>darn it</body><body xml:lang='de'>verflixt</body><html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'><b>darn</b> it</body></html><active xmlns='http://jabber.org/protocol/chatstates'/></message>";
    let mut buf = BytesMut::from(stanza.as_bytes());
    let f = s.feed(Outgoing, &mut buf);
    let Frame::Pdu(pdu) = &f.frames[0] else {
        panic!("{:?}", f.frames)
    };
    let out = s
        .rewrite(Outgoing, pdu, Rewrite::Text("d**n <it> & more"))
        .unwrap();
    assert_eq!(
        String::from_utf8(out.to_vec()).unwrap(),
        "<message to='bob@example.net' id='x'><body>d**n &lt;it&gt; &amp; more</body><body xml:lang='de'>d**n &lt;it&gt; &amp; more</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
    );
    // A carbon's forwarded body is the one rewritten.
    let carbon = "<message from='alice@example.org'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' to='bob@example.net' type='chat'><body>darn</body></message></forwarded></sent></message>";
    let mut buf = BytesMut::from(carbon.as_bytes());
    let f = s.feed(Incoming, &mut buf);
    let Frame::Pdu(pdu) = &f.frames[0] else {
        panic!()
    };
    let out = s.rewrite(Incoming, pdu, Rewrite::Text("****")).unwrap();
    assert_eq!(&out[..], carbon.replace("darn", "****").as_bytes());
    // Encrypted messages and file offers are not rewritten.
    let mut buf = BytesMut::from(&b"<message to='b@x'><body>?OTR:AAE</body></message>"[..]);
    let f = s.feed(Outgoing, &mut buf);
    let Frame::Pdu(pdu) = &f.frames[0] else {
        panic!()
    };
    assert_eq!(s.rewrite(Outgoing, pdu, Rewrite::Text("x")), None);
}

#[test]
fn notices_come_from_the_remote_party_and_wait_for_a_stanza_boundary() {
    assert_eq!(
        XmppSession::default().notice_to_client("bob@example.net", "hi"),
        None
    );
    let mut s = logged_in();
    let notice = s
        .notice_to_client("bob@example.net", "Your activities are being logged")
        .unwrap();
    let mut events = feed(
        &mut XmppSession::default(),
        Incoming,
        &format!("{SERVER_HEADER}{}", String::from_utf8_lossy(&notice)),
    );
    assert_eq!(&notice[..], &b"<message type='chat' from='bob@example.net' to='Alice@Example.org/laptop'><body>Your activities are being logged</body></message>"[..]);
    let e = events.remove(0);
    assert_eq!(
        (e.remote_id.as_str(), e.text.as_str()),
        ("bob@example.net", "Your activities are being logged")
    );
    // The server is in the middle of a roster the client is receiving.
    let mut buf = BytesMut::from(
        &b"<iq type='result' id='r'><query xmlns='jabber:iq:roster'><item jid='x@y'/>"[..],
    );
    s.feed(Incoming, &mut buf);
    let mut out = BytesMut::from(&b"<message to='bob@example.net'><body>x</body></message>"[..]);
    s.feed(Outgoing, &mut out);
    assert_eq!(s.notice_to_client("bob@example.net", "hi"), None);
}

#[test]
fn a_capture_that_starts_mid_stream_still_gives_its_events() {
    let mut s = XmppSession::default();
    feed(
        &mut s,
        Incoming,
        "<presence to='tom@cs-xmpp.lan/darkstar' from='x@y/z'/>",
    );
    let e = one(feed(
        &mut s,
        Outgoing,
        "<message type='chat' to='chatback@cs-xmpp.lan'><body>hey</body></message>",
    ));
    assert_eq!(
        (e.local_id.as_str(), e.remote_id.as_str()),
        ("tom@cs-xmpp.lan", "chatback@cs-xmpp.lan")
    );
    // A stream end alone is fine too.
    feed(&mut XmppSession::default(), Outgoing, "</stream:stream>");
}
