//! Arbitrary bytes, cut into chunks at points the fuzzer chooses and sent both
//! ways through the Gadu-Gadu core: every byte must come out unchanged and
//! every identity rewrite must parse back to the same events.
//!
//! Input: a control byte (bit 0: direction, bits 1..: chunk length - 1), then
//! the chunk; repeated.

#![no_main]

use imspector_protocols::gadugadu::GaduGaduSession;
use imspector_protocols::invariants::replay;
use imspector_protocols::Direction;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
    replay(&mut GaduGaduSession::default(), &chunks);
});
