//! `max_new_conversations`: how many conversations one client (an IP
//! address, whatever number of connections it opens) may start a minute.
//! Every conversation has its own log file, so a client that names a new
//! party in each message (100,000 MSN ids in 1.7 s) would otherwise fill the
//! disk with directories and hold up everyone's logging while the writer
//! makes them. Over the limit, messages of new conversations are neither
//! delivered nor logged (logging them is the harm); conversations already
//! under way go on. The conversations a client starts and those that remote
//! parties start with it count apart, so that a remote spammer cannot stop
//! the local user from writing to someone new.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use imspector_protocols::Direction;

/// The default `max_new_conversations`: more than a person starts, even an
/// IRC client joining many busy channels at once.
pub const DEFAULT_MAX_NEW_CONVERSATIONS: usize = 120;

/// The span the limit counts over.
const WINDOW: Duration = Duration::from_secs(60);

/// A conversation quiet this long is forgotten, and counts as new when it
/// resumes. This bounds what is remembered per client to what it may start
/// in this time.
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// One conversation as logged: protocol, local id, remote id (lower case),
/// and the direction of the event that may start it.
pub struct Conversation<'a> {
    pub protocol: &'a str,
    pub local_id: &'a str,
    pub remote_id: &'a str,
    pub direction: Direction,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Under way, or started now within the limit.
    Admitted,
    /// Over the limit. `warn`: say so now, with this many refused since the
    /// last time it was said (at most once a minute per client).
    Refused { warn: Option<u64> },
}

pub struct NewConversations {
    /// `None`: no limit (`max_new_conversations=0`).
    limit: Option<usize>,
    /// Conversations are remembered by a keyed hash: small, and a remote
    /// party cannot make two of them collide.
    keys: RandomState,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    clients: HashMap<IpAddr, Client>,
    /// When forgotten conversations were last dropped.
    pruned: Option<Instant>,
}

#[derive(Default)]
struct Client {
    /// Conversations seen, with when they were last seen.
    known: HashMap<u64, Instant>,
    /// When each conversation of the last minute started, oldest first: by
    /// the local user, and by remote parties.
    started: [VecDeque<Instant>; 2],
    /// Refused since the last warning.
    refused: u64,
    warned: Option<Instant>,
}

impl NewConversations {
    pub fn new(limit: usize) -> Self {
        NewConversations {
            limit: (limit > 0).then_some(limit),
            keys: RandomState::new(),
            state: Mutex::default(),
        }
    }

    /// May `client` have an event in `conversation` at `now`?
    pub fn admit(&self, client: IpAddr, conversation: &Conversation, now: Instant) -> Admission {
        let Some(limit) = self.limit else {
            return Admission::Admitted;
        };
        let key = self.keys.hash_one((
            conversation.protocol,
            conversation.local_id,
            conversation.remote_id,
        ));
        let mut state = self.state.lock().expect("conversation lock poisoned");
        state.prune(now);
        let client = state.clients.entry(client).or_default();
        if let Some(seen) = client.known.get_mut(&key) {
            *seen = now;
            return Admission::Admitted;
        }
        let started =
            &mut client.started[usize::from(conversation.direction == Direction::Incoming)];
        while started
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            started.pop_front();
        }
        if started.len() < limit {
            started.push_back(now);
            client.known.insert(key, now);
            return Admission::Admitted;
        }
        client.refused += 1;
        let due = client
            .warned
            .is_none_or(|t| now.duration_since(t) >= WINDOW);
        if !due {
            return Admission::Refused { warn: None };
        }
        client.warned = Some(now);
        Admission::Refused {
            warn: Some(std::mem::take(&mut client.refused)),
        }
    }
}

impl State {
    /// Once a minute, forget quiet conversations and clients with none left.
    fn prune(&mut self, now: Instant) {
        if self.pruned.is_some_and(|t| now.duration_since(t) < WINDOW) {
            return;
        }
        self.pruned = Some(now);
        self.clients.retain(|_, client| {
            client
                .known
                .retain(|_, seen| now.duration_since(*seen) < FORGET_AFTER);
            !client.known.is_empty() || client.refused > 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(remote_id: &str) -> Conversation<'_> {
        Conversation {
            protocol: "MSN",
            local_id: "mallory@example.com",
            remote_id,
            direction: Direction::Outgoing,
        }
    }

    const MALLORY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
    const ALICE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 3));

    #[test]
    fn over_the_limit_new_conversations_are_refused_known_ones_go_on() {
        let limit = NewConversations::new(3);
        let start = Instant::now();
        for id in ["a", "b", "c"] {
            assert_eq!(limit.admit(MALLORY, &with(id), start), Admission::Admitted);
        }
        assert_eq!(
            limit.admit(MALLORY, &with("d"), start),
            Admission::Refused { warn: Some(1) }
        );
        assert_eq!(
            limit.admit(MALLORY, &with("e"), start),
            Admission::Refused { warn: None }
        );
        // Conversations under way, and other clients, are not held up.
        assert_eq!(limit.admit(MALLORY, &with("a"), start), Admission::Admitted);
        assert_eq!(limit.admit(ALICE, &with("d"), start), Admission::Admitted);
        // The protocol and the local id are part of the conversation.
        let irc = Conversation {
            protocol: "IRC",
            ..with("a")
        };
        assert!(matches!(
            limit.admit(MALLORY, &irc, start),
            Admission::Refused { .. }
        ));
        // Remote parties starting conversations have a quota of their own,
        // and a conversation either side started is known to both.
        let from = |remote_id| Conversation {
            direction: Direction::Incoming,
            ..with(remote_id)
        };
        for id in ["x", "y", "z"] {
            assert_eq!(limit.admit(MALLORY, &from(id), start), Admission::Admitted);
        }
        assert!(matches!(
            limit.admit(MALLORY, &from("w"), start),
            Admission::Refused { .. }
        ));
        assert_eq!(limit.admit(MALLORY, &with("x"), start), Admission::Admitted);
        assert_eq!(limit.admit(MALLORY, &from("a"), start), Admission::Admitted);

        // A minute on there is room again, and the refusals are told.
        let later = start + WINDOW;
        assert_eq!(limit.admit(MALLORY, &with("d"), later), Admission::Admitted);
        for id in ["e", "f"] {
            assert_eq!(limit.admit(MALLORY, &with(id), later), Admission::Admitted);
        }
        assert_eq!(
            limit.admit(MALLORY, &with("g"), later),
            Admission::Refused { warn: Some(4) }
        );
    }

    #[test]
    fn quiet_conversations_are_forgotten_and_zero_is_no_limit() {
        let limit = NewConversations::new(1);
        let start = Instant::now();
        assert_eq!(limit.admit(MALLORY, &with("a"), start), Admission::Admitted);
        // Still known after nine quiet minutes...
        let quiet = start + Duration::from_secs(540);
        assert_eq!(limit.admit(MALLORY, &with("a"), quiet), Admission::Admitted);
        // ...and forgotten ten minutes after it was last seen.
        let gone = quiet + FORGET_AFTER;
        assert_eq!(limit.admit(MALLORY, &with("b"), gone), Admission::Admitted);
        assert!(matches!(
            limit.admit(MALLORY, &with("a"), gone),
            Admission::Refused { .. }
        ));
        assert_eq!(limit.state.lock().unwrap().clients[&MALLORY].known.len(), 1);

        let unlimited = NewConversations::new(0);
        for id in 0..1000 {
            let id = id.to_string();
            assert_eq!(
                unlimited.admit(MALLORY, &with(&id), start),
                Admission::Admitted
            );
        }
    }
}
