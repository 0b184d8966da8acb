//! `max_buffered_bytes`: one budget for the bytes every connection's cores
//! hold (partial PDUs waiting for their rest). Over it, the connections that
//! hold the most are released to plain relay, largest first, until the rest
//! fits: an attacker who opens many connections that each announce a large
//! PDU cannot grow the daemon past the budget.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The default `max_buffered_bytes`: 64 MiB.
pub const DEFAULT_MAX_BUFFERED: usize = 64 << 20;

/// Once this much of what the cores held has been freed, and what they hold
/// now is at most half of their high water mark, memory goes back to the
/// system when a connection ends: the allocator keeps freed memory otherwise
/// (1,000 connections that held 40 kB each left 66 MB behind with glibc's).
/// Not while the total holds steady, so busy relaying does not trim.
const TRIM_AFTER: usize = 1 << 20;

pub struct Budget {
    limit: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    total: usize,
    /// The highest `total` since memory was last given back.
    high_water: usize,
    /// Bytes no longer held since memory was last given back.
    freed: usize,
    next_id: u64,
    holders: HashMap<u64, (usize, Arc<Release>)>,
}

/// Set when a connection is to give up inspection; its pumps wait on it.
#[derive(Default)]
pub struct Release {
    pub notify: Notify,
    released: AtomicBool,
}

impl Release {
    pub fn is_set(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }
}

impl Budget {
    pub fn new(limit: usize) -> Self {
        Budget {
            limit,
            state: Mutex::default(),
        }
    }

    /// A new connection's share, holding nothing yet.
    pub fn share(self: &Arc<Self>) -> Share {
        let mut state = self.state.lock().expect("budget lock poisoned");
        let id = state.next_id;
        state.next_id += 1;
        let release = Arc::new(Release::default());
        state.holders.insert(id, (0, release.clone()));
        Share {
            budget: self.clone(),
            id,
            held: [0; 3],
            release,
        }
    }

    /// Bytes held now by all connections.
    pub fn total(&self) -> usize {
        self.state.lock().expect("budget lock poisoned").total
    }
}

/// The part of a connection's share that its core keeps of its own (parts 0
/// and 1 are the partial PDUs of each direction).
pub const CORE: usize = 2;

/// What one connection holds, in each direction and in its core.
pub struct Share {
    budget: Arc<Budget>,
    id: u64,
    held: [usize; 3],
    pub release: Arc<Release>,
}

impl Share {
    /// Record that `part` (a direction, 0 or 1, or [`CORE`]) now holds
    /// `bytes`. Returns how many connections were released to make room
    /// (this one may be one).
    pub fn set(&mut self, part: usize, bytes: usize) -> usize {
        self.held[part] = bytes;
        let mine = self.held.iter().sum();
        let mut state = self.budget.state.lock().expect("budget lock poisoned");
        let Some((held, _)) = state.holders.get_mut(&self.id) else {
            return 0;
        };
        let before = std::mem::replace(held, mine);
        state.total = state.total + mine - before;
        state.freed += before.saturating_sub(mine);
        state.high_water = state.high_water.max(state.total);
        let mut released = 0;
        while state.total > self.budget.limit {
            let largest = state
                .holders
                .iter()
                .filter(|(_, (held, release))| *held > 0 && !release.is_set())
                .max_by_key(|(_, (held, _))| *held)
                .map(|(id, (held, release))| (*id, *held, release.clone()));
            let Some((id, held, release)) = largest else {
                break;
            };
            release.released.store(true, Ordering::Release);
            release.notify.notify_waiters();
            // Its bytes go out now; they no longer count.
            state.total -= held;
            state.freed += held;
            if let Some(entry) = state.holders.get_mut(&id) {
                entry.0 = 0;
            }
            released += 1;
        }
        released
    }

    /// Hold nothing any more, all parts at once (released: what it held goes
    /// out untouched, and the core is gone).
    pub fn clear(&mut self) {
        self.held = [0; 3];
        self.set(0, 0);
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        if self
            .budget
            .state
            .lock()
            .expect("budget lock poisoned")
            .end(self.id)
        {
            crate::memory::give_back();
        }
    }
}

impl State {
    /// Forget connection `id`; true when memory is to go back to the system.
    fn end(&mut self, id: u64) -> bool {
        if let Some((held, _)) = self.holders.remove(&id) {
            self.total -= held;
            self.freed += held;
        }
        let trim = self.freed >= TRIM_AFTER && self.total <= self.high_water / 2;
        if trim {
            self.freed = 0;
            self.high_water = self.total;
        }
        trim
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_the_budget_the_largest_holders_are_released() {
        let budget = Arc::new(Budget::new(100));
        let mut a = budget.share();
        let mut b = budget.share();
        let mut c = budget.share();
        assert_eq!(a.set(0, 40), 0);
        assert_eq!(b.set(1, 30), 0);
        assert_eq!(c.set(0, 20), 0);
        assert_eq!(budget.total(), 90);
        // 40 + 30 + 20 + 15 > 100: a, the largest, goes.
        assert_eq!(c.set(1, 15), 1);
        assert!(a.release.is_set() && !b.release.is_set() && !c.release.is_set());
        assert_eq!(budget.total(), 65);
        drop(b);
        assert_eq!(budget.total(), 35);
        // A released connection that reports again counts nothing new.
        a.set(0, 0);
        assert_eq!(budget.total(), 35);
    }

    #[test]
    fn memory_goes_back_once_the_held_bytes_fell_by_half_not_while_steady() {
        let budget = Arc::new(Budget::new(usize::MAX));
        let mut shares: Vec<Share> = (0..8).map(|_| budget.share()).collect();
        for share in &mut shares {
            share.set(0, TRIM_AFTER / 2);
        }
        let end = |share: Share| {
            let id = share.id;
            std::mem::forget(share);
            budget.state.lock().unwrap().end(id)
        };
        // Steady traffic: a PDU completes and the next one starts.
        shares[0].set(0, 0);
        shares[0].set(0, TRIM_AFTER / 2);
        // 8 halves held and a whole TRIM_AFTER freed, but the total holds:
        // no trim until half of it is gone.
        let trims: Vec<bool> = shares.drain(..4).map(end).collect();
        assert_eq!(trims, [false, false, false, true]);
        // From the new high water of 4 halves: at 2, and at 0.
        let trims: Vec<bool> = shares.drain(..).map(end).collect();
        assert_eq!(trims, [false, true, false, true]);
    }
}
