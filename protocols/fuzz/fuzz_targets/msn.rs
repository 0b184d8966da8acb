//! Arbitrary bytes, cut into chunks of both directions at points the fuzzer
//! chooses, through the MSN core: forwarded bytes must equal received bytes and
//! identity rewrites must re-parse to the same events.
#![no_main]

use imspector_protocols::invariants::replay;
use imspector_protocols::msn::MsnSession;
use imspector_protocols::Direction;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Each chunk is one control byte (low bit: direction, the rest: length - 1)
    // followed by up to that many bytes.
    let mut chunks = Vec::new();
    let mut rest = data;
    while let Some((&control, tail)) = rest.split_first() {
        let dir = if control & 1 == 0 {
            Direction::Outgoing
        } else {
            Direction::Incoming
        };
        let len = (usize::from(control >> 1) + 1).min(tail.len());
        chunks.push((dir, &tail[..len]));
        rest = &tail[len..];
    }
    replay(&mut MsnSession::default(), &chunks);
});
