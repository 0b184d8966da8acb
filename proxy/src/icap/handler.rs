//! What every chat handler of the ICAP service implements, and the context it
//! judges events in: the relay's filter chain and logger, through
//! [`crate::session::judge_event`].

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use imspector_protocols::ChatEvent;

use super::http::{HttpRequest, HttpResponse};
use crate::config::Config;
use crate::event::LogEvent;
use crate::filter::{FilterChain, FilterEvent};
use crate::new_conversations::NewConversations;
use crate::session::{judge_event, refused_conversation};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The client's request, before it goes to the server.
    Reqmod,
    /// The server's response, before it goes to the client.
    Respmod,
}

/// The HTTP exchange an ICAP request carries.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub mode: Mode,
    /// The request head (in RESPMOD, as Squid sends it along).
    pub request: Option<HttpRequest>,
    /// RESPMOD only.
    pub response: Option<HttpResponse>,
}

/// What to do with the message a handler inspected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Unchanged,
    /// The same head with this body (its Content-Length updated).
    Body(Vec<u8>),
    /// REQMOD: answer the client with this instead of sending the request on.
    Refuse {
        status: &'static str,
        content_type: &'static str,
        body: Vec<u8>,
    },
}

pub trait Handler: Send + Sync {
    /// From the heads alone: does this handler read this message's body?
    fn wants(&self, exchange: &Exchange) -> bool;
    /// Read the complete body, judge its events, and decide.
    fn inspect(&self, exchange: &Exchange, body: &[u8], judge: &mut Judge<'_>) -> Verdict;
}

/// The filters and logging of one ICAP transaction.
pub struct Judge<'a> {
    pub filters: Arc<FilterChain>,
    pub config: &'a Config,
    /// The HTTP client's address, as the log shows it.
    pub client: String,
    /// `max_new_conversations` and the HTTP client's address it counts by
    /// (`None`: no limit).
    pub conversations: Option<(&'a NewConversations, IpAddr)>,
    pub now: i64,
    /// `log_failure=block` and no sink can store events: chat is blocked.
    pub unlogged: bool,
    /// What to log before the answer goes out.
    pub records: Vec<LogEvent>,
}

impl Judge<'_> {
    /// Run one event through the filters and keep its log record.
    pub fn event(&mut self, protocol: Cow<'static, str>, event: &ChatEvent) -> FilterEvent {
        if let Some((limit, ip)) = self.conversations {
            let client = &self.client;
            if let Some(refusal) =
                refused_conversation(limit, self.config, client, ip, protocol.clone(), event)
            {
                return refusal;
            }
        }
        let (decided, record) = judge_event(
            &self.filters,
            self.config,
            &self.client,
            protocol,
            event,
            self.now,
            self.unlogged,
        );
        crate::metrics::event(
            &decided.protocol,
            event.kind,
            event.direction,
            decided.blocked,
            0,
        );
        self.records.extend(record);
        decided
    }

    /// The text a refusal shows the user for a blocked event.
    pub fn blocked_text(&self, decided: &FilterEvent) -> String {
        crate::filter::blocked_text(&self.config.settings, &decided.text)
    }
}

#[cfg(test)]
mod tests {
    use imspector_protocols::{Direction, EventType};

    use super::*;
    use crate::icap::testing::{judge_for, judge_with};

    fn message_to(remote_id: &str) -> ChatEvent {
        ChatEvent {
            direction: Direction::Outgoing,
            kind: EventType::Message,
            local_id: "alice".into(),
            remote_id: remote_id.into(),
            group: false,
            prefix: String::new(),
            text: "hi".into(),
            encrypted: false,
        }
    }

    /// Chat over ICAP is counted in /metrics as the relay's is.
    #[test]
    fn judged_events_are_counted_in_the_metrics() {
        let (config, filters) = judge_with("", "");
        let mut judge = judge_for(&config, filters, "10.0.0.2:0");
        judge.event("MetricsChat".into(), &message_to("bob"));
        let counted = crate::metrics::get().encode();
        assert!(
            counted.contains(
                "imspector_events_total{protocol=\"MetricsChat\",type=\"message\",direction=\"out\"} 1"
            ),
            "{counted}"
        );
    }

    #[test]
    fn with_nothing_to_store_events_and_log_failure_block_web_chat_is_blocked() {
        let (config, filters) = judge_with("", "log_failure=block");
        let mut judge = Judge {
            unlogged: true,
            ..judge_for(&config, filters, "10.0.0.2:0")
        };
        let decided = judge.event("Matrix".into(), &message_to("bob"));
        assert!(decided.blocked);
        assert_eq!(
            judge.records.len(),
            1,
            "the blocked message is still logged"
        );
        assert!(judge.records[0].filtered);
    }

    #[test]
    fn web_chat_is_held_to_max_new_conversations_too() {
        let (config, filters) = judge_with("", "");
        let limit = NewConversations::new(1);
        let mut judge = Judge {
            filters,
            config: &config,
            client: "10.0.0.2:0".into(),
            conversations: Some((&limit, "10.0.0.2".parse().unwrap())),
            now: 1,
            unlogged: false,
            records: vec![],
        };
        assert!(!judge.event("Matrix".into(), &message_to("bob")).blocked);
        assert!(!judge.event("Matrix".into(), &message_to("bob")).blocked);
        assert!(judge.event("Matrix".into(), &message_to("carol")).blocked);
        let logged: Vec<&str> = judge.records.iter().map(|r| &*r.remote_id).collect();
        assert_eq!(logged, ["bob", "bob"]);
    }
}
