//! The conversations one connection has seen: each event of one shares its
//! lower-cased ids (with the filters and the log record) and, for a second,
//! its admission under `max_new_conversations`, instead of making them anew.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::{Equivalent, HashMap};
use imspector_protocols::ChatEvent;

/// Conversations remembered per connection; past this the table starts
/// again empty (a client naming a new party in every message gains nothing
/// from it, and it stays small).
const MAX_REMEMBERED: usize = 256;

/// How long an admission is taken as still valid without asking
/// [`crate::new_conversations::NewConversations`] again: the limit forgets a
/// conversation after minutes of silence, so one second stale changes nothing.
const ADMITTED_FOR: Duration = Duration::from_secs(1);

/// A conversation's ids as logged (lower-cased), shared by its events.
#[derive(Clone)]
pub struct Ids {
    pub local: Arc<str>,
    pub remote: Arc<str>,
}

impl Ids {
    /// `event`'s ids, lower-cased, made for this event alone.
    pub fn of(event: &ChatEvent) -> Ids {
        Ids {
            local: event.local_id.to_lowercase().into(),
            remote: event.remote_id.to_lowercase().into(),
        }
    }
}

struct Known {
    ids: Ids,
    /// Until when the limit's last admission stands ([`ADMITTED_FOR`] after
    /// it): one compare per message instead of a duration computed.
    admitted_until: Option<Instant>,
}

/// A conversation's ids as the protocol spelled them.
type Key = (Box<str>, Box<str>);

/// An event's [`Key`], borrowed from it to look the conversation up.
struct KeyOf<'a>(&'a str, &'a str);

impl<'a> KeyOf<'a> {
    fn event(event: &'a ChatEvent) -> Self {
        KeyOf(&event.local_id, &event.remote_id)
    }
}

/// Hashed as a [`Key`] hashes, so that it finds one.
impl Hash for KeyOf<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.0, self.1).hash(state)
    }
}

impl Equivalent<Key> for KeyOf<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        same(self.0, &key.0) && same(self.1, &key.1)
    }
}

/// `a == b` for ids of a few bytes, compared in place with two loads that
/// overlap: a call to the C library's `bcmp` per id cost more than the
/// compare (about 65 instructions a message in the chat bench).
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let len = a.len();
    if len != b.len() {
        return false;
    }
    let u64_at = |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().unwrap());
    let u32_at = |s: &[u8], at: usize| u32::from_ne_bytes(s[at..at + 4].try_into().unwrap());
    match len {
        0 => true,
        1..=3 => a[0] == b[0] && a[len / 2] == b[len / 2] && a[len - 1] == b[len - 1],
        4..=7 => u32_at(a, 0) == u32_at(b, 0) && u32_at(a, len - 4) == u32_at(b, len - 4),
        8..=16 => u64_at(a, 0) == u64_at(b, 0) && u64_at(a, len - 8) == u64_at(b, len - 8),
        _ => a == b,
    }
}

#[derive(Default)]
pub struct Conversations {
    known: HashMap<Key, Known, ahash::RandomState>,
}

impl Conversations {
    /// The ids of `event`'s conversation, and whether the limit admitted it
    /// less than [`ADMITTED_FOR`] before `now`.
    pub fn ids(&mut self, event: &ChatEvent, now: Instant) -> (Ids, bool) {
        if let Some(known) = self.known.get(&KeyOf::event(event)) {
            let admitted = known.admitted_until.is_some_and(|until| now < until);
            return (known.ids.clone(), admitted);
        }
        if self.known.len() >= MAX_REMEMBERED {
            self.known.clear();
        }
        let ids = Ids::of(event);
        let known = Known {
            ids: ids.clone(),
            admitted_until: None,
        };
        let key = (
            event.local_id.as_str().into(),
            event.remote_id.as_str().into(),
        );
        self.known.insert(key, known);
        (ids, false)
    }

    /// Remember that the limit admitted `event`'s conversation at `now`.
    pub fn admitted(&mut self, event: &ChatEvent, now: Instant) {
        if let Some(known) = self.known.get_mut(&KeyOf::event(event)) {
            known.admitted_until = now.checked_add(ADMITTED_FOR);
        }
    }
}

#[cfg(test)]
mod tests {
    use imspector_protocols::{Direction, EventType};

    use super::*;

    fn between(local: &str, remote: &str) -> ChatEvent {
        ChatEvent {
            direction: Direction::Outgoing,
            kind: EventType::Message,
            local_id: local.into(),
            remote_id: remote.into(),
            group: false,
            prefix: String::new(),
            text: "hi".into(),
            encrypted: false,
        }
    }

    #[test]
    fn events_of_a_conversation_share_its_lower_cased_ids() {
        let mut table = Conversations::default();
        let now = Instant::now();
        let (first, _) = table.ids(&between("Alice", "#Chan"), now);
        let (second, _) = table.ids(&between("Alice", "#Chan"), now);
        assert_eq!((&*first.local, &*first.remote), ("alice", "#chan"));
        assert!(Arc::ptr_eq(&first.local, &second.local));
        assert!(Arc::ptr_eq(&first.remote, &second.remote));
        // The same letters split differently are another conversation.
        let (other, _) = table.ids(&between("Alice#", "Chan"), now);
        assert_eq!((&*other.local, &*other.remote), ("alice#", "chan"));
    }

    #[test]
    fn an_admission_is_reused_for_a_second_only() {
        let mut table = Conversations::default();
        let event = between("alice", "bob");
        let start = Instant::now();
        assert!(
            !table.ids(&event, start).1,
            "not admitted before it is asked"
        );
        table.admitted(&event, start);
        assert!(table.ids(&event, start + Duration::from_millis(999)).1);
        assert!(!table.ids(&event, start + ADMITTED_FOR).1);
        assert!(!table.ids(&between("alice", "carol"), start).1);
    }

    #[test]
    fn ids_are_the_same_exactly_when_their_bytes_are() {
        let ids = [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "abcdefg",
            "abcdefgh",
            "abcdefghijklmnop",
            "abcdefghijklmnopq",
        ];
        for id in ids {
            assert!(same(id, id));
            for at in 0..id.len() {
                let mut other = id.as_bytes().to_vec();
                other[at] ^= 1;
                assert!(
                    !same(id, std::str::from_utf8(&other).unwrap()),
                    "{id} at {at}"
                );
            }
        }
        assert!(!same("ab", "abc") && !same("abcdefgh", "abcdefg"));
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut table = Conversations::default();
        let now = Instant::now();
        for n in 0..MAX_REMEMBERED * 3 {
            table.ids(&between("alice", &format!("user{n}")), now);
            assert!(table.known.len() <= MAX_REMEMBERED);
        }
    }
}
