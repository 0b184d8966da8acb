//! Counts of what the relay did that a site watches, for the metrics to read.

use std::sync::atomic::{AtomicU64, Ordering};

pub struct Counters {
    /// Connections whose inspection stopped at a PDU too large to inspect.
    pub uninspectable: AtomicU64,
    /// Connections released to plain relay by `max_buffered_bytes`.
    pub over_budget: AtomicU64,
}

pub static COUNTERS: Counters = Counters {
    uninspectable: AtomicU64::new(0),
    over_budget: AtomicU64::new(0),
};

impl Counters {
    pub fn count(counter: &AtomicU64) {
        Self::add(counter, 1);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
