//! Arbitrary bytes, cut into chunks of both directions at points the fuzzer
//! chooses, through the XMPP core: forwarded bytes must equal received bytes
//! and identity rewrites must re-parse to the same events.
#![no_main]

use imspector_protocols::invariants::{replay, split_fuzz_input};
use imspector_protocols::xmpp::XmppSession;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    replay(&mut XmppSession::default(), &split_fuzz_input(data));
});
