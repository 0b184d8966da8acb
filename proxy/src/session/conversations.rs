//! The conversations one connection has seen: each event of one shares its
//! lower-cased ids (with the filters and the log record) and, for a second,
//! its admission under `max_new_conversations`, instead of making them anew.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashMap as HashMap;
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
    /// When the limit last admitted it.
    admitted: Option<Instant>,
}

#[derive(Default)]
pub struct Conversations {
    /// By the ids as the protocol spelled them (see [`Conversations::key_of`]).
    known: HashMap<Box<str>, Known>,
    /// The key of the event looked up, reused.
    key: String,
}

impl Conversations {
    /// The ids of `event`'s conversation, and whether the limit admitted it
    /// less than [`ADMITTED_FOR`] before `now`.
    pub fn ids(&mut self, event: &ChatEvent, now: Instant) -> (Ids, bool) {
        self.key_of(event);
        if let Some(known) = self.known.get(self.key.as_str()) {
            let admitted = known
                .admitted
                .is_some_and(|at| now.saturating_duration_since(at) < ADMITTED_FOR);
            return (known.ids.clone(), admitted);
        }
        if self.known.len() >= MAX_REMEMBERED {
            self.known.clear();
        }
        let ids = Ids::of(event);
        let known = Known {
            ids: ids.clone(),
            admitted: None,
        };
        self.known.insert(self.key.as_str().into(), known);
        (ids, false)
    }

    /// Remember that the limit admitted `event`'s conversation at `now`.
    pub fn admitted(&mut self, event: &ChatEvent, now: Instant) {
        self.key_of(event);
        if let Some(known) = self.known.get_mut(self.key.as_str()) {
            known.admitted = Some(now);
        }
    }

    /// The local id's length, `:`, both ids: no two pairs share a key.
    fn key_of(&mut self, event: &ChatEvent) {
        self.key.clear();
        self.key
            .push_str(itoa::Buffer::new().format(event.local_id.len()));
        self.key.push(':');
        self.key.push_str(&event.local_id);
        self.key.push_str(&event.remote_id);
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
    fn the_table_stays_bounded() {
        let mut table = Conversations::default();
        let now = Instant::now();
        for n in 0..MAX_REMEMBERED * 3 {
            table.ids(&between("alice", &format!("user{n}")), now);
            assert!(table.known.len() <= MAX_REMEMBERED);
        }
    }
}
