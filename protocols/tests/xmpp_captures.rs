//! The XMPP parser on real captures (Pidgin against ejabberd): every expected
//! event, in order, and every byte forwarded unchanged, also when the stream
//! arrives in random pieces or is damaged.

mod support;

use imspector_protocols::invariants::replay;
use imspector_protocols::xmpp::XmppSession;

/// Streams joined across their gaps (they fall between stanzas); the
/// expectations name the full local JID, the log the bare one.
fn streams() -> Vec<support::Stream> {
    let mut streams = support::streams_across_gaps("xmpp");
    for stream in &mut streams {
        for event in stream.expected["events"].as_array_mut().unwrap() {
            if let Some(bare) = event["local_id"].as_str().and_then(|l| l.split('/').next()) {
                event["local_id"] = bare.to_string().into();
            }
        }
    }
    streams
}

#[test]
fn xmpp_captures_give_the_expected_events() {
    let mut checked = 0;
    for stream in streams() {
        let result = replay(&mut XmppSession::default(), &stream.chunk_refs());
        assert_eq!(result.stopped, None, "{}", stream.name);
        support::assert_expected_events(&stream, &result.events);
        checked += result.events.len();
    }
    assert_eq!(checked, 3);
}

#[test]
fn xmpp_capture_split_into_single_bytes() {
    support::assert_single_bytes_give_the_same_events::<XmppSession>(&streams());
}

#[test]
fn xmpp_survives_random_chunking_and_mutation() {
    support::replay_damaged::<XmppSession>("xmpp", 30, 0x5222);
}
