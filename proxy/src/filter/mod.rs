//! The filter chain: every chat event passes through it before it is delivered.
//!
//! A filter may rewrite the text (the protocol re-encodes the PDU), block the
//! event (it is not delivered and is logged with filtered=1), add to the
//! categories, or ask for a notice to be shown to the local user.
//!
//! [`build`] assembles the chain from the configuration; docs/filters.md
//! describes each filter and why they run in this order.

mod acl;
mod acl_rules;
mod badwords;
mod blocktypes;
mod dbfilter;
mod ids;
pub(crate) mod listfile;
mod regex;
mod responder;
pub mod testing;

use std::borrow::Cow;
use std::sync::Arc;

use imspector_protocols::{Direction, EventType};

use crate::config::{ConfigError, Settings};

pub use listfile::ListError;
pub use responder::blocked_text;

/// An event as the filters see it. Ids are lower-cased.
#[derive(Debug, Clone)]
pub struct FilterEvent {
    /// The protocol's name as logged (`IRC`, `Matrix`, a web-chat rule's name).
    pub protocol: Cow<'static, str>,
    pub direction: Direction,
    pub kind: EventType,
    /// Lower-cased; shared with the log record.
    pub local_id: Arc<str>,
    pub remote_id: Arc<str>,
    pub group: bool,
    /// An end-to-end encrypted message (`block_encrypted`).
    pub encrypted: bool,
    /// The text to deliver; filters change it with [`FilterEvent::set_text`].
    pub text: String,
    /// The text as it came, once a filter changed it (what is logged).
    pub original: Option<String>,
    pub blocked: bool,
    /// Appended to by filters, e.g. `2 badwords;`.
    pub categories: String,
    /// Notices to inject towards the local user.
    pub notices: Vec<String>,
}

impl FilterEvent {
    /// Deliver `text` instead; the first text is kept as the original.
    pub fn set_text(&mut self, text: String) {
        if text != self.text {
            let before = std::mem::replace(&mut self.text, text);
            self.original.get_or_insert(before);
        }
    }

    /// Whether a filter changed the text.
    pub fn changed(&self) -> bool {
        self.original.is_some()
    }

    /// The text before any filter changed it.
    pub fn original_text(&self) -> &str {
        self.original.as_deref().unwrap_or(&self.text)
    }

    /// [`FilterEvent::original_text`], taken out of an event that is done with.
    pub fn take_original(&mut self) -> String {
        self.original
            .take()
            .unwrap_or_else(|| std::mem::take(&mut self.text))
    }
}

pub trait Filter: Send + Sync {
    /// Look at (and possibly change) one event. Runs even when an earlier
    /// filter blocked it, so that later filters can react to `blocked`.
    fn apply(&self, event: &mut FilterEvent);
}

/// The filters configured, in the order they run.
#[derive(Default)]
pub struct FilterChain {
    filters: Vec<Box<dyn Filter>>,
}

impl FilterChain {
    pub fn new(filters: Vec<Box<dyn Filter>>) -> Self {
        FilterChain { filters }
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    pub fn apply(&self, event: &mut FilterEvent) {
        for filter in &self.filters {
            filter.apply(event);
        }
    }
}

/// Build the chain from the configuration, in this order:
/// 1. blocking by event type (`block_files`, `block_webcams`);
/// 2. the 0.9 ACL file (`acl_filename`), then the 0.5 lists (`whitelist_filename`,
///    `blacklist_filename`); a deny from either blocks;
/// 3. the database filter (`db_filter_filename`), which only learns (AWL) from
///    events nothing else blocked;
/// 4. bad words, counted on the text as the user typed it;
/// 5. regex rewriting;
/// 6. notices, last, because they react to `blocked`.
pub fn build(settings: &Settings) -> Result<FilterChain, ConfigError> {
    let mut filters: Vec<Box<dyn Filter>> = Vec::new();
    if let Some(f) = blocktypes::BlockTypes::from_settings(settings)? {
        filters.push(Box::new(f));
    }
    if let Some(path) = settings.path("acl_filename") {
        filters.push(Box::new(acl_rules::AclRules::load(&path)?));
    }
    if let Some(f) = acl::Lists::from_settings(settings)? {
        filters.push(Box::new(f));
    }
    if let Some(path) = settings.path("db_filter_filename") {
        filters.push(Box::new(dbfilter::DbFilter::open(&path)?));
    }
    if let Some(f) = badwords::BadWords::from_settings(settings)? {
        filters.push(Box::new(f));
    }
    if let Some(path) = settings.path("regex_filename") {
        filters.push(Box::new(self::regex::RegexRules::load(&path)?));
    }
    if let Some(f) = responder::Responder::from_settings(settings)? {
        filters.push(Box::new(f));
    }
    Ok(FilterChain::new(filters))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::testing::event_between;
    use super::*;

    /// The sample files in examples/ load and do what their comments say.
    #[test]
    fn the_example_files_work_as_documented() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let conf: String = [
            ("badwords_filename", "badwords.txt"),
            ("acl_filename", "acl.txt"),
            ("whitelist_filename", "whitelist.txt"),
            ("blacklist_filename", "blacklist.txt"),
            ("regex_filename", "regex.txt"),
        ]
        .iter()
        .map(|(key, file)| format!("{key}={}\n", examples.join(file).display()))
        .collect();
        let chain = build(&Settings::parse("t.conf", &conf).unwrap()).unwrap();
        let run = |local: &str, remote: &str, group: bool, text: &str| {
            let mut e = event_between(local, remote, text);
            e.group = group;
            chain.apply(&mut e);
            (e.blocked, e.text, e.categories)
        };
        let allowed =
            |text: &str, categories: &str| (false, text.to_string(), categories.to_string());
        assert_eq!(
            run(
                "pupil@school.org",
                "teacher@school.org",
                false,
                "Darned card 1234 5678 9012 3456!!!!"
            ),
            allowed("****ed card XXXX-XXXX-XXXX-3456!", "1 badwords;")
        );
        assert_eq!(
            run("pupil@school.org", "library@city.example", false, "hi"),
            allowed("hi", "")
        );
        assert!(run("pupil@school.org", "#games", true, "hi").0);
        assert!(run("pupil@school.org", "someone@else.example", false, "hi").0);
        assert_eq!(
            run("head@staff.school.org", "#games", true, "hi"),
            allowed("hi", "")
        );
        assert!(run("visitor@home.example", "spammer@example.net", false, "hi").0);
        // The ACL file allows this pair; the 0.5 blacklist still denies it.
        assert!(run("guest@school.org", "teacher@school.org", false, "hi").0);
    }
}
