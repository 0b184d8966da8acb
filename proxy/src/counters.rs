//! Counts of what the relay did that a site watches, for the metrics to read.

use std::sync::atomic::{AtomicU64, Ordering};

pub struct Counters {
    /// Connections whose inspection stopped at a PDU too large to inspect.
    pub uninspectable: AtomicU64,
}

pub static COUNTERS: Counters = Counters {
    uninspectable: AtomicU64::new(0),
};

impl Counters {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
