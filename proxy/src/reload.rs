//! SIGHUP: the configuration file is read again and what can change while
//! connections go on is put in force: the filters and their lists, the ICAP
//! service's handlers (under a new ISTag), the alert rules and targets, and
//! `retention_days`. Everything is built before anything is swapped, so a bad
//! file changes nothing. Every other option that changed is named, one line
//! each, as needing a restart.

use std::path::Path;
use std::sync::mpsc::Sender;
use std::sync::Arc;

use crate::alert::{AlertConfig, Alerter};
use crate::config::{Settings, Support, KNOWN_OPTIONS};
use crate::retention::{self, Retention};
use crate::session::Shared;
use crate::{filter, icap};

/// The options a reload puts in force.
const RELOADED: &[&str] = &[
    "acl_filename",
    "badwords_block_count",
    "badwords_filename",
    "badwords_replace_character",
    "blacklist_filename",
    "block_encrypted",
    "block_files",
    "block_unlisted",
    "block_webcams",
    "db_filter_filename",
    "regex_filename",
    "responder_filename",
    "whitelist_filename",
    "notice_days",
    "notice_response",
    "filtered_mins",
    "filtered_response",
    "response_prefix",
    "response_postfix",
    "webchat_rules_filename",
    "alert_filename",
    "alert_webhook",
    "alert_command",
    "alert_mins",
    "retention_days",
];

/// What a reload swaps, besides the filters in [`Shared`].
pub struct Live {
    pub icap: Option<Arc<icap::Service>>,
    pub alerter: Arc<Alerter>,
    /// The retention thread's channel, while `retention_days` is set.
    pub retention: Option<Sender<Option<Retention>>>,
    pub retention_days: Option<u32>,
    /// Reloads so far (the ICAP ISTag changes with each).
    generation: u64,
}

impl Live {
    pub fn new(
        icap: Option<Arc<icap::Service>>,
        alerter: Arc<Alerter>,
        retention: Option<Sender<Option<Retention>>>,
        retention_days: Option<u32>,
    ) -> Live {
        Live {
            icap,
            alerter,
            retention,
            retention_days,
            generation: 0,
        }
    }

    /// Reload from `path` (the embedded default when `None`) and log the outcome.
    pub fn reload(&mut self, shared: &Shared, path: Option<&Path>) {
        match self.apply(shared, path) {
            Ok(settings) => {
                for line in restart_needed(&shared.config.settings, &settings) {
                    ::log::warn!("reload: {line}");
                }
                ::log::info!("SIGHUP: configuration reloaded");
            }
            Err(e) => ::log::error!("SIGHUP: reload failed, previous rules stay in force: {e}"),
        }
    }

    /// Put the file's reloadable options in force; the settings read.
    pub fn apply(&mut self, shared: &Shared, path: Option<&Path>) -> anyhow::Result<Settings> {
        let settings = match path {
            Some(path) => Settings::load(path)?,
            None => Settings::embedded(),
        };
        let chain = filter::build(&settings)?;
        let alerts = AlertConfig::from_settings(&settings)?;
        let days = retention::days(&settings)?;
        // The tables and files retention cleans are the sinks', which only a
        // restart changes.
        let file_dir = shared.config.file_logging_dir.as_deref();
        let retention = match days {
            Some(_) if days != self.retention_days => {
                Retention::new(days, &shared.config.settings, file_dir)?
            }
            _ => None,
        };
        self.generation += 1;
        if let Some(icap) = &self.icap {
            // Fails before it swaps anything.
            icap.reload(&settings, self.generation)?;
        }
        *shared.filters.write().expect("filter lock poisoned") = Arc::new(chain);
        self.alerter.reload(alerts);
        if days != self.retention_days {
            self.set_retention(retention)?;
            self.retention_days = days;
        }
        Ok(settings)
    }

    fn set_retention(&mut self, next: Option<Retention>) -> std::io::Result<()> {
        match (&self.retention, next) {
            (Some(thread), next) => {
                let stop = next.is_none();
                let _ = thread.send(next);
                if stop {
                    self.retention = None;
                }
            }
            (None, Some(next)) => self.retention = Some(next.spawn()?),
            (None, None) => {}
        }
        Ok(())
    }
}

/// One line per option whose value in `new` differs from the one the daemon
/// started with and that only a restart puts in force.
pub fn restart_needed(running: &Settings, new: &Settings) -> Vec<String> {
    KNOWN_OPTIONS
        .iter()
        .filter(|(key, support)| *support == Support::Supported && !RELOADED.contains(key))
        .filter(|(key, _)| running.get(key) != new.get(key))
        .map(|(key, _)| match new.line_of(key) {
            Some(line) => format!(
                "{}:{line}: {key} changed; it takes effect after a restart",
                new.source
            ),
            None => format!(
                "{}: {key} removed; that takes effect after a restart",
                new.source
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::filter::testing::event_between;
    use crate::log;

    fn blocked(shared: &Shared, local: &str, remote: &str) -> bool {
        let mut e = event_between(local, remote, "hello");
        shared.filters.read().unwrap().apply(&mut e);
        e.blocked
    }

    #[test]
    fn reload_with_a_bad_file_keeps_the_rules_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let acl = dir.path().join("acl.txt");
        let conf = dir.path().join("imspector.conf");
        std::fs::write(&acl, "deny alice bob\n").unwrap();
        std::fs::write(&conf, format!("acl_filename={}\n", acl.display())).unwrap();
        let config = Config::from_settings(Settings::load(&conf).unwrap()).unwrap();
        let filters = filter::build(&config.settings).unwrap();
        let logger = log::spawn_writer(Vec::new(), false).0;
        let shared = Shared::new(config, filters, logger, None);
        let mut live = Live::new(None, Alerter::new(None).0, None, None);
        assert!(blocked(&shared, "alice", "bob"));

        std::fs::write(&acl, "allow alice carol\npermit alice bob\n").unwrap();
        let e = live.apply(&shared, Some(&conf)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}:2: a rule starts with allow or deny, not \"permit\"",
                acl.display()
            )
        );
        assert!(blocked(&shared, "alice", "bob"));

        std::fs::write(&acl, "deny alice carol\n").unwrap();
        live.apply(&shared, Some(&conf)).unwrap();
        assert!(!blocked(&shared, "alice", "bob"));
        assert!(blocked(&shared, "alice", "carol"));
    }

    #[test]
    fn each_option_that_needs_a_restart_is_named_with_its_line() {
        let running = Settings::parse(
            "i.conf",
            "port=16667\nirc_protocol=on\nbadwords_filename=/a\n",
        )
        .unwrap();
        let new = Settings::parse(
            "i.conf",
            "port=16668\nbadwords_filename=/b\nsqlite_file=/x.db\n",
        )
        .unwrap();
        assert_eq!(
            restart_needed(&running, &new),
            [
                "i.conf:1: port changed; it takes effect after a restart",
                "i.conf: irc_protocol removed; that takes effect after a restart",
                "i.conf:3: sqlite_file changed; it takes effect after a restart",
            ]
        );
    }
}
