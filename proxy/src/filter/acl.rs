//! The 0.5 white and black lists: lines `localid: remote1 remote2`.
//!
//! A whitelist match allows without looking at the blacklist; a blacklist match
//! blocks; no match allows, unless `block_unlisted=on`. A line with no remote
//! ids matches every remote party of that local id. Ids match exactly or as a
//! domain (see [`super::ids::matches`]).

use std::path::Path;

use super::listfile::{self, ListError};
use super::{ids, Filter, FilterEvent};
use crate::config::{ConfigError, Settings};

/// One list line: a local id and the remote ids it names.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    local: String,
    remotes: Vec<String>,
}

impl Entry {
    fn matches(&self, event: &FilterEvent) -> bool {
        ids::matches(&self.local, &event.local_id)
            && (self.remotes.is_empty()
                || self
                    .remotes
                    .iter()
                    .any(|r| ids::matches(r, &event.remote_id)))
    }
}

pub struct Lists {
    whitelist: Vec<Entry>,
    blacklist: Vec<Entry>,
    block_unlisted: bool,
}

impl Lists {
    pub fn from_settings(settings: &Settings) -> Result<Option<Self>, ConfigError> {
        let whitelist = settings.path("whitelist_filename");
        let blacklist = settings.path("blacklist_filename");
        let block_unlisted = settings.flag("block_unlisted")?.unwrap_or(false);
        if whitelist.is_none() && blacklist.is_none() && !block_unlisted {
            return Ok(None);
        }
        let load = |path: Option<std::path::PathBuf>| match path {
            Some(path) => load(&path),
            None => Ok(Vec::new()),
        };
        Ok(Some(Lists {
            whitelist: load(whitelist)?,
            blacklist: load(blacklist)?,
            block_unlisted,
        }))
    }
}

fn load(path: &Path) -> Result<Vec<Entry>, ListError> {
    listfile::read(path)?
        .into_iter()
        .map(|line| {
            let Some((local, remotes)) = line.text.split_once(':') else {
                return Err(ListError::line(
                    path,
                    line.number,
                    format!("expected `localid: remoteid ...`, found {:?}", line.text),
                ));
            };
            let local = local.trim().to_lowercase();
            if local.is_empty() || local.contains(char::is_whitespace) {
                return Err(ListError::line(
                    path,
                    line.number,
                    format!("{:?} is not one local id", local),
                ));
            }
            Ok(Entry {
                local,
                remotes: remotes.split_whitespace().map(str::to_lowercase).collect(),
            })
        })
        .collect()
}

impl Filter for Lists {
    fn apply(&self, event: &mut FilterEvent) {
        if self.whitelist.iter().any(|e| e.matches(event)) {
            return;
        }
        if self.block_unlisted || self.blacklist.iter().any(|e| e.matches(event)) {
            event.blocked = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::testing::event_between;

    fn lists(white: Option<&str>, black: Option<&str>, unlisted: bool) -> Lists {
        let dir = tempfile::tempdir().unwrap();
        let mut conf = format!("block_unlisted={}\n", if unlisted { "on" } else { "off" });
        for (key, text) in [("whitelist_filename", white), ("blacklist_filename", black)] {
            if let Some(text) = text {
                let path = dir.path().join(key);
                std::fs::write(&path, text).unwrap();
                conf.push_str(&format!("{key}={}\n", path.display()));
            }
        }
        Lists::from_settings(&Settings::parse("t.conf", &conf).unwrap())
            .unwrap()
            .unwrap()
    }

    fn blocked(lists: &Lists, local: &str, remote: &str) -> bool {
        let mut e = event_between(local, remote, "hello");
        lists.apply(&mut e);
        e.blocked
    }

    #[test]
    fn blacklist_blocks_listed_pairs() {
        let l = lists(
            None,
            Some("# kids\nAlice: Mallory eve@evil.com\nbob:\n"),
            false,
        );
        assert!(blocked(&l, "alice", "mallory"));
        assert!(blocked(&l, "alice", "eve@evil.com"));
        assert!(!blocked(&l, "alice", "carol"));
        // No remote ids: every remote party.
        assert!(blocked(&l, "bob", "anyone"));
        assert!(!blocked(&l, "carol", "mallory"));
    }

    #[test]
    fn whitelist_first_then_blacklist_then_block_unlisted() {
        let l = lists(Some("alice: carol\n"), Some("alice:\n"), false);
        assert!(!blocked(&l, "alice", "carol"));
        assert!(blocked(&l, "alice", "dave"));
        assert!(!blocked(&l, "bob", "dave"));
        let strict = lists(Some("alice: carol\nschool.org:\n"), None, true);
        assert!(!blocked(&strict, "alice", "carol"));
        assert!(blocked(&strict, "alice", "dave"));
        assert!(blocked(&strict, "bob", "carol"));
        // A domain as local id covers everyone there.
        assert!(!blocked(&strict, "pupil@school.org", "dave"));
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("black.txt");
        std::fs::write(&path, "alice: bob\n\nalice bob\n").unwrap();
        let e = load(&path).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}:3: expected `localid: remoteid ...`, found \"alice bob\"",
                path.display()
            )
        );
        std::fs::write(&path, ": bob\n").unwrap();
        assert_eq!(
            load(&path).unwrap_err().to_string(),
            format!("{}:1: \"\" is not one local id", path.display())
        );
    }
}
