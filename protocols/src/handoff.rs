//! What one connection of a user tells a later one. OSCAR signs on twice: the
//! login connection names the user and hands out a cookie, and the BOS (or
//! chat) connection presents only that cookie. A core sees one connection, so
//! the relay gives every core the same [`Handoff`] table, kept in the process.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Tokens (login cookies) and the local id each stands for.
pub trait Handoff: Send + Sync {
    fn remember(&self, token: &[u8], local_id: &str);
    fn recall(&self, token: &[u8]) -> Option<String>;
}

/// A [`Handoff`] that keeps the latest `capacity` tokens: a cookie is used
/// within seconds of being handed out, so the oldest can go.
pub struct HandoffTable {
    capacity: usize,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    ids: HashMap<Vec<u8>, String>,
    order: VecDeque<Vec<u8>>,
}

impl HandoffTable {
    pub fn new(capacity: usize) -> Self {
        HandoffTable {
            capacity: capacity.max(1),
            entries: Mutex::default(),
        }
    }
}

impl Handoff for HandoffTable {
    fn remember(&self, token: &[u8], local_id: &str) {
        let mut entries = self.entries.lock().expect("handoff lock poisoned");
        if entries
            .ids
            .insert(token.to_vec(), local_id.to_string())
            .is_none()
        {
            entries.order.push_back(token.to_vec());
        }
        while entries.order.len() > self.capacity {
            if let Some(old) = entries.order.pop_front() {
                entries.ids.remove(&old);
            }
        }
    }

    fn recall(&self, token: &[u8]) -> Option<String> {
        let entries = self.entries.lock().expect("handoff lock poisoned");
        entries.ids.get(token).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_tokens_go_first() {
        let table = HandoffTable::new(2);
        table.remember(b"a", "alice");
        table.remember(b"b", "bob");
        table.remember(b"a", "alice");
        table.remember(b"c", "carol");
        assert_eq!(table.recall(b"a"), None);
        assert_eq!(table.recall(b"b").as_deref(), Some("bob"));
        assert_eq!(table.recall(b"c").as_deref(), Some("carol"));
    }
}
