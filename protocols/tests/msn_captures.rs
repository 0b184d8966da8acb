//! The MSN parser on real captures: every expected event, in order, and every
//! byte forwarded unchanged, also when the stream arrives in random pieces or
//! is damaged.

mod support;

use imspector_protocols::invariants::replay;
use imspector_protocols::msn::MsnSession;

#[test]
fn msn_captures_give_the_expected_events() {
    for stream in support::streams("msn") {
        let mut session = MsnSession::default();
        let result = replay(&mut session, &stream.chunk_refs());
        assert!(
            result.stopped.is_none(),
            "{}: {:?}",
            stream.name,
            result.stopped
        );
        support::assert_expected_events(&stream, &result.events);
    }
}

#[test]
fn msn_capture_split_into_single_bytes() {
    support::assert_single_bytes_give_the_same_events::<MsnSession>(&support::streams("msn"));
}

#[test]
fn msn_survives_random_chunking_and_mutation() {
    support::replay_damaged::<MsnSession>("msn", 50, 0x1863);
}
