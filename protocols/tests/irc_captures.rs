//! The IRC parser on real captures: every expected event, in order, and every
//! byte forwarded unchanged, also when the stream arrives in random pieces or
//! is damaged.

mod support;

use imspector_protocols::invariants::replay;
use imspector_protocols::irc::IrcSession;

#[test]
fn irc_captures_give_the_expected_events() {
    for stream in support::streams("irc") {
        let result = replay(&mut IrcSession::default(), &stream.chunk_refs());
        // The expectations list the messages the original logged; topics, the
        // reasons of PART, QUIT and KICK, and other CTCP are logged too now.
        let messages: Vec<_> = result
            .events
            .iter()
            .filter(|e| {
                !["/topic ", "/part ", "/quit ", "/kick ", "/ctcp "]
                    .iter()
                    .any(|command| e.prefix.contains(command))
            })
            .cloned()
            .collect();
        support::assert_expected_events(&stream, &messages);
        if stream.name.contains("starttls") {
            assert!(
                result.stopped.is_some(),
                "STARTTLS must switch to passthrough"
            );
        }
    }
}

#[test]
fn irc_survives_random_chunking_and_mutation() {
    support::replay_damaged::<IrcSession>("irc", 20, 0x1c);
}
