//! The 0.9 ACL file: rules `allow|deny <localid|all> [groupchat|remoteid ...]`.
//!
//! The first rule that matches decides; no match allows. `all` matches every
//! local id; `groupchat` in the remote list matches group-chat events; an empty
//! remote list matches anyone. Ids match exactly or as a domain
//! (see [`super::ids::matches`]). A backslash at the end of a line continues it.

use std::path::Path;

use super::listfile::{self, ListError};
use super::{ids, Filter, FilterEvent};

#[derive(Debug, PartialEq, Eq)]
enum Remote {
    GroupChat,
    Id(String),
}

#[derive(Debug, PartialEq, Eq)]
struct Rule {
    allow: bool,
    /// `None` for `all`.
    local: Option<String>,
    remotes: Vec<Remote>,
}

impl Rule {
    fn matches(&self, event: &FilterEvent) -> bool {
        let local = match &self.local {
            None => true,
            Some(id) => ids::matches(id, &event.local_id),
        };
        local
            && (self.remotes.is_empty()
                || self.remotes.iter().any(|remote| match remote {
                    Remote::GroupChat => event.group,
                    Remote::Id(id) => ids::matches(id, &event.remote_id),
                }))
    }
}

pub struct AclRules {
    rules: Vec<Rule>,
}

impl AclRules {
    pub fn load(path: &Path) -> Result<Self, ListError> {
        let rules = listfile::read_continued(path)?
            .into_iter()
            .map(|line| parse(&line.text).map_err(|why| ListError::line(path, line.number, why)))
            .collect::<Result<_, _>>()?;
        Ok(AclRules { rules })
    }
}

fn parse(text: &str) -> Result<Rule, String> {
    let mut words = text.split_whitespace();
    let allow = match words.next().map(str::to_lowercase).as_deref() {
        Some("allow") => true,
        Some("deny") => false,
        other => {
            return Err(format!(
                "a rule starts with allow or deny, not {:?}",
                other.unwrap_or_default()
            ))
        }
    };
    let local = match words.next().map(str::to_lowercase) {
        None => return Err("a local id or `all` must follow allow/deny".to_string()),
        Some(all) if all == "all" => None,
        Some(id) => Some(id),
    };
    let remotes = words
        .map(str::to_lowercase)
        .map(|id| match id.as_str() {
            "groupchat" => Remote::GroupChat,
            _ => Remote::Id(id),
        })
        .collect();
    Ok(Rule {
        allow,
        local,
        remotes,
    })
}

impl Filter for AclRules {
    fn apply(&self, event: &mut FilterEvent) {
        if let Some(rule) = self.rules.iter().find(|r| r.matches(event)) {
            if !rule.allow {
                event.blocked = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::testing::event_between;

    fn acl(text: &str) -> AclRules {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acl.txt");
        std::fs::write(&path, text).unwrap();
        AclRules::load(&path).unwrap()
    }

    fn blocked(acl: &AclRules, local: &str, remote: &str, group: bool) -> bool {
        let mut e = event_between(local, remote, "hello");
        e.group = group;
        acl.apply(&mut e);
        e.blocked
    }

    #[test]
    fn first_match_wins_and_no_match_allows() {
        let a = acl("allow alice bob\ndeny alice\ndeny all mallory\n");
        assert!(!blocked(&a, "alice", "bob", false));
        assert!(blocked(&a, "alice", "carol", false));
        assert!(blocked(&a, "dave", "mallory", false));
        assert!(!blocked(&a, "dave", "carol", false));
    }

    #[test]
    fn groupchat_domains_and_continued_lines() {
        let a = acl("# pupils may talk to school staff only\n\
             allow school.org school.org \\\n   friend@other.net\n\
             deny school.org groupchat\n\
             deny school.org\n");
        assert!(!blocked(
            &a,
            "pupil@school.org",
            "teacher@school.org",
            false
        ));
        assert!(!blocked(&a, "pupil@school.org", "friend@other.net", false));
        assert!(blocked(&a, "pupil@school.org", "stranger@other.net", false));
        assert!(blocked(&a, "pupil@school.org", "#chat", true));
        assert!(!blocked(&a, "boss@company.com", "#chat", true));
    }

    #[test]
    fn deny_all_blocks_everything_unless_allowed_before() {
        let a = acl("ALLOW all groupchat\nDENY all\n");
        assert!(!blocked(&a, "x", "#room", true));
        assert!(blocked(&a, "x", "y", false));
    }

    #[test]
    fn bad_rules_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acl.txt");
        std::fs::write(&path, "allow all\n\npermit bob\n").unwrap();
        assert_eq!(
            AclRules::load(&path).err().unwrap().to_string(),
            format!(
                "{}:3: a rule starts with allow or deny, not \"permit\"",
                path.display()
            )
        );
        std::fs::write(&path, "deny\n").unwrap();
        assert_eq!(
            AclRules::load(&path).err().unwrap().to_string(),
            format!(
                "{}:1: a local id or `all` must follow allow/deny",
                path.display()
            )
        );
    }
}
