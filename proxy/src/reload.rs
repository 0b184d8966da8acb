//! SIGHUP: the configuration file is read again and checked as a start
//! checks it, and what can change while connections go on is put in force:
//! the protocols and their ports (for new connections), the filters and
//! their lists, the ICAP service's handlers (under a new ISTag), the alert
//! rules and targets, `retention_days`, and the syslog sink (the other sinks
//! need directories made and handed over as root, or journals that one
//! process holds, so they change with a restart). Everything is built before
//! anything is swapped, so a bad file changes nothing. Each changed option
//! gets one line: in force, or needing a restart.

use std::path::Path;
use std::sync::mpsc::Sender;
use std::sync::Arc;

use crate::alert::{AlertConfig, Alerter};
use crate::config::{Config, Settings, Support, KNOWN_OPTIONS};
use crate::retention::{self, Retention};
use crate::session::Shared;
use crate::{filter, icap, log};

/// The options a reload puts in force, besides each protocol's
/// `*_protocol` and `*_ports` (see [`reloaded`]).
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
    "syslog_logging",
    "syslog_facility",
    "syslog_server",
    "syslog_max_size",
];

fn reloaded(key: &str) -> bool {
    RELOADED.contains(&key) || key.ends_with("_protocol") || key.ends_with("_ports")
}

/// What a reload swaps, besides the filters and routes in [`Shared`].
pub struct Live {
    pub icap: Option<Arc<icap::Service>>,
    pub alerter: Arc<Alerter>,
    /// The retention thread's channel, while `retention_days` is set.
    pub retention: Option<Sender<Option<Retention>>>,
    pub retention_days: Option<u32>,
    /// The file as last put in force.
    applied: Settings,
    /// Reloads so far (the ICAP ISTag changes with each).
    generation: u64,
}

impl Live {
    /// What a daemon started with `started` has in force.
    pub fn new(
        icap: Option<Arc<icap::Service>>,
        alerter: Arc<Alerter>,
        retention: Option<Sender<Option<Retention>>>,
        started: &Settings,
    ) -> anyhow::Result<Live> {
        Ok(Live {
            icap,
            alerter,
            retention,
            retention_days: retention::days(started)?,
            applied: started.clone(),
            generation: 0,
        })
    }

    /// Reload from `path` (the embedded default when `None`) and log the outcome.
    pub fn reload(&mut self, shared: &Shared, path: Option<&Path>) {
        let before = self.applied.clone();
        match self.apply(shared, path) {
            Ok(()) => {
                for (restart, line) in changes(&shared.config.settings, &before, &self.applied) {
                    if restart {
                        ::log::warn!("reload: {line}");
                    } else {
                        ::log::info!("reload: {line}");
                    }
                }
                ::log::info!("SIGHUP: configuration reloaded");
            }
            Err(e) => ::log::error!("SIGHUP: reload failed, previous rules stay in force: {e}"),
        }
    }

    /// Check the file as a start would and put its reloadable options in force.
    pub fn apply(&mut self, shared: &Shared, path: Option<&Path>) -> anyhow::Result<()> {
        let settings = match path {
            Some(path) => Settings::load(path)?,
            None => Settings::embedded(),
        };
        let config = Config::from_settings(settings)?;
        crate::check(&config)?;
        let settings = &config.settings;
        let chain = filter::build(settings)?;
        let alerts = AlertConfig::from_settings(settings)?;
        let syslog = log::build::syslog(settings)?;
        let days = retention::days(settings)?;
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
            icap.reload(settings, self.generation)?;
        }
        *shared.filters.write().expect("filter lock poisoned") = Arc::new(chain);
        *shared.routes.write().expect("routes lock poisoned") = Arc::new(config.routes);
        self.alerter.reload(alerts);
        let syslog_changed = KNOWN_OPTIONS.iter().any(|(key, _)| {
            key.starts_with("syslog_") && self.applied.get(key) != settings.get(key)
        });
        if syslog_changed {
            let sink = syslog.map(|s| Box::new(s) as Box<dyn log::Sink>);
            shared.logger.replace_sink("syslog", sink);
        }
        if days != self.retention_days {
            self.set_retention(retention)?;
            self.retention_days = days;
        }
        self.applied = config.settings;
        Ok(())
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

/// One line per option that `new` changes: against `before` (the file last
/// in force) for those a reload puts in force, against `running` (the file
/// the daemon started with) for those that need a restart, and whether it does.
pub fn changes(running: &Settings, before: &Settings, new: &Settings) -> Vec<(bool, String)> {
    KNOWN_OPTIONS
        .iter()
        .filter(|(_, support)| *support == Support::Supported)
        .filter_map(|(key, _)| {
            let restart = !reloaded(key);
            let (was, effect) = if restart {
                (running, "takes effect after a restart")
            } else {
                (before, "in force now")
            };
            if was.get(key) == new.get(key) {
                return None;
            }
            let line = match new.line_of(key) {
                Some(line) => format!("{}:{line}: {key} changed; {effect}", new.source),
                None => format!("{}: {key} removed; {effect}", new.source),
            };
            Some((restart, line))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::testing::event_between;

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
        let mut live =
            Live::new(None, Alerter::new(None).0, None, &shared.config.settings).unwrap();
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
    fn each_changed_option_is_named_with_its_line_and_effect() {
        let parse = |text| Settings::parse("i.conf", text).unwrap();
        let running = parse("port=16667\nirc_protocol=on\nbadwords_filename=/a\n");
        let before = parse("port=16667\nirc_protocol=on\nbadwords_filename=/b\n");
        let new = parse("port=16668\nbadwords_filename=/b\nsqlite_file=/x.db\n");
        assert_eq!(
            changes(&running, &before, &new),
            [
                (
                    true,
                    "i.conf:1: port changed; takes effect after a restart".into()
                ),
                (false, "i.conf: irc_protocol removed; in force now".into()),
                (
                    true,
                    "i.conf:3: sqlite_file changed; takes effect after a restart".into()
                ),
            ]
        );
    }
}
