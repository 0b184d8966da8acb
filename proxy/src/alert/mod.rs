//! Keyword alerts: an event whose text matches a rule of `alert_filename`
//! is sent as JSON to `alert_webhook` and/or `alert_command`, at most once
//! per conversation every `alert_mins` minutes.
//!
//! An alert never delays chat: [`Alerter::offer`] only matches and queues
//! (never waits); one task sends the queued alerts. The queue is bounded, and
//! what does not fit is dropped, counted, and said in the log.

mod deliver;
mod rules;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::TimeZone;

use crate::config::{ConfigError, Settings};
use crate::event::LogEvent;
use deliver::{Targets, Webhook};
use rules::Rules;

/// Alerts waiting to be sent at most.
const QUEUE: usize = 256;
/// Conversations whose last alert is remembered at most (for `alert_mins`).
const REMEMBERED: usize = 4096;
/// At most one line about dropped alerts this often.
const DROP_REPORT: Duration = Duration::from_secs(10);
const DEFAULT_MINS: u64 = 5;

/// The alert options, read and checked.
pub struct AlertConfig {
    rules: Rules,
    targets: Targets,
    interval: Duration,
}

impl AlertConfig {
    /// `None` without `alert_filename`. A list without a webhook or a
    /// command, or a target without a list, is an error: it would do nothing.
    pub fn from_settings(s: &Settings) -> Result<Option<AlertConfig>, ConfigError> {
        let webhook = match s.get("alert_webhook").filter(|v| !v.is_empty()) {
            Some(url) => Some(Webhook::parse(url).map_err(|why| s.bad("alert_webhook", why))?),
            None => None,
        };
        let command = s
            .get("alert_command")
            .filter(|v| !v.is_empty())
            .map(str::to_string);
        let minutes = s.parsed::<u64>("alert_mins")?.unwrap_or(DEFAULT_MINS);
        let Some(path) = s.path("alert_filename") else {
            for key in ["alert_webhook", "alert_command"] {
                if s.get(key).is_some_and(|v| !v.is_empty()) {
                    return Err(s.bad(key, "needs alert_filename, the rules that raise alerts"));
                }
            }
            return Ok(None);
        };
        if webhook.is_none() && command.is_none() {
            return Err(s.bad(
                "alert_filename",
                "alerts need alert_webhook or alert_command to go to",
            ));
        }
        Ok(Some(AlertConfig {
            rules: Rules::load(&path)?,
            targets: Targets { webhook, command },
            interval: Duration::from_secs(minutes * 60),
        }))
    }
}

struct Alert {
    json: Bytes,
    targets: Targets,
}

/// Matches events and queues their alerts; shared by every [`crate::log::Logger`].
pub struct Alerter {
    config: RwLock<Option<Arc<AlertConfig>>>,
    /// When each conversation last raised an alert.
    last: Mutex<HashMap<(String, String, String), Instant>>,
    queue: tokio::sync::mpsc::Sender<Alert>,
    dropped: AtomicU64,
    dropped_said: Mutex<Option<Instant>>,
}

impl Alerter {
    /// The alerter and the task that sends its alerts (to be spawned).
    pub fn new(
        config: Option<AlertConfig>,
    ) -> (Arc<Alerter>, impl std::future::Future<Output = ()>) {
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        let alerter = Arc::new(Alerter {
            config: RwLock::new(config.map(Arc::new)),
            last: Mutex::default(),
            queue: tx,
            dropped: AtomicU64::new(0),
            dropped_said: Mutex::new(None),
        });
        (alerter, send_all(rx))
    }

    /// SIGHUP: new rules and targets; what is queued goes where it was meant to.
    pub fn reload(&self, config: Option<AlertConfig>) {
        *self.config.write().expect("alert lock") = config.map(Arc::new);
    }

    /// Queue an alert if `event` matches and its conversation has had none
    /// for `alert_mins`. Never waits.
    pub fn offer(&self, event: &LogEvent) {
        let Some(config) = self.config.read().expect("alert lock").clone() else {
            return;
        };
        // With hide_eventdata there is no text to look at.
        if event.data == crate::event::HIDDEN {
            return;
        }
        let matched = config.rules.matches(&event.data);
        if matched.is_empty() || !self.due(event, config.interval) {
            return;
        }
        let alert = Alert {
            json: Bytes::from(to_json(event, &matched)),
            targets: config.targets.clone(),
        };
        if self.queue.try_send(alert).is_err() {
            self.note_dropped();
        }
    }

    fn due(&self, e: &LogEvent, interval: Duration) -> bool {
        let mut last = self.last.lock().expect("alert lock");
        let key = (
            e.protocol.to_string(),
            e.local_id.to_string(),
            e.remote_id.to_string(),
        );
        let now = Instant::now();
        if last.get(&key).is_some_and(|t| now - *t < interval) {
            return false;
        }
        if last.len() >= REMEMBERED {
            last.retain(|_, t| now - *t < interval);
            if last.len() >= REMEMBERED {
                last.clear();
            }
        }
        last.insert(key, now);
        true
    }

    fn note_dropped(&self) {
        let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let mut said = self.dropped_said.lock().expect("alert lock");
        if said.is_none_or(|t| t.elapsed() >= DROP_REPORT) {
            log::warn!(
                "alert: {QUEUE} alerts wait to be sent; an alert was dropped ({total} since start)"
            );
            *said = Some(Instant::now());
        }
    }
}

async fn send_all(mut rx: tokio::sync::mpsc::Receiver<Alert>) {
    while let Some(alert) = rx.recv().await {
        let webhook = async {
            match &alert.targets.webhook {
                Some(w) => w.post(&alert.json).await,
                None => Ok(()),
            }
        };
        let command = async {
            match &alert.targets.command {
                Some(c) => deliver::run_command(c, &alert.json).await,
                None => Ok(()),
            }
        };
        let (webhook, command) = tokio::join!(webhook, command);
        for failed in [webhook.err(), command.err()].into_iter().flatten() {
            log::warn!("alert not delivered: {failed}");
        }
    }
}

/// The alert as its receivers get it, one line of JSON.
fn to_json(e: &LogEvent, matched: &[String]) -> String {
    let time = chrono::Local
        .timestamp_opt(e.timestamp, 0)
        .single()
        .map(|t| t.to_rfc3339());
    let mut text = serde_json::json!({
        "timestamp": e.timestamp,
        "time": time,
        "protocol": e.protocol,
        "client": &*e.client,
        "direction": if e.outgoing { "out" } else { "in" },
        "type": e.kind.name(),
        "local_id": &*e.local_id,
        "remote_id": &*e.remote_id,
        "filtered": e.filtered,
        "categories": e.categories,
        "text": e.data,
        "matched": matched,
    })
    .to_string();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::tests::event;

    fn settings(text: &str) -> Settings {
        Settings::parse("t.conf", text).unwrap()
    }

    #[test]
    fn options_that_would_do_nothing_are_errors_on_their_line() {
        let e = AlertConfig::from_settings(&settings("\nalert_webhook=http://127.0.0.1:9/\n"));
        assert_eq!(
            e.err().unwrap().to_string(),
            "t.conf:2: alert_webhook: needs alert_filename, the rules that raise alerts"
        );
        let e = AlertConfig::from_settings(&settings("alert_filename=/x\n"));
        assert_eq!(
            e.err().unwrap().to_string(),
            "t.conf:1: alert_filename: alerts need alert_webhook or alert_command to go to"
        );
        let e = AlertConfig::from_settings(&settings("alert_webhook=ftp://x/\n"));
        assert_eq!(
            e.err().unwrap().to_string(),
            "t.conf:1: alert_webhook: \"ftp://x/\" is not an http:// or https:// URL"
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("alerts.txt");
        std::fs::write(&rules, "secret\n").unwrap();
        let s = settings(&format!(
            "alert_filename={}\nalert_command=true\n",
            rules.display()
        ));
        // The task that sends alerts is not running: nothing leaves the queue.
        let (alerter, _not_running) = Alerter::new(AlertConfig::from_settings(&s).unwrap());
        let in_room = |n: usize| LogEvent {
            remote_id: format!("#room{n}").into(),
            ..event("a secret")
        };
        for n in 0..QUEUE + 5 {
            alerter.offer(&in_room(n));
        }
        assert_eq!(alerter.dropped.load(Ordering::Relaxed), 5);
        // Within alert_mins a conversation raises nothing, so drops nothing.
        alerter.offer(&in_room(0));
        alerter.offer(&event("no match here"));
        let hidden_room = LogEvent {
            data: crate::event::HIDDEN.into(),
            ..in_room(QUEUE + 9)
        };
        std::fs::write(&rules, "hidden\n").unwrap();
        alerter.reload(AlertConfig::from_settings(&s).unwrap());
        alerter.offer(&hidden_room);
        assert_eq!(alerter.dropped.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn the_json_names_every_field_of_the_event() {
        let json: serde_json::Value =
            serde_json::from_str(&to_json(&event("the secret"), &["secret".into()])).unwrap();
        assert_eq!(json["protocol"], "IRC");
        assert_eq!(json["direction"], "out");
        assert_eq!(json["type"], "message");
        assert_eq!(json["local_id"], "alice");
        assert_eq!(json["remote_id"], "#chan");
        assert_eq!(json["text"], "the secret");
        assert_eq!(json["matched"][0], "secret");
        assert_eq!(json["timestamp"], 1160853407);
    }
}
