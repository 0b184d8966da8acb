//! Regex rewriting: rules `pattern => replacement`, one per line, applied in
//! order to each message. Patterns use the `regex` crate's syntax; the
//! replacement may use `$1`, `${name}` and `$$`, and may change the length.
//!
//! A line splits at the first ` =>` that is followed by a space or ends the
//! line (an empty replacement deletes what matched); write `=[>]` for a
//! literal `=>` in a pattern.

use std::path::Path;

use ::regex::Regex;
use imspector_protocols::EventType;

use super::listfile::{self, ListError};
use super::{Filter, FilterEvent};

struct Rule {
    pattern: Regex,
    replacement: String,
}

pub struct RegexRules {
    rules: Vec<Rule>,
}

impl RegexRules {
    pub fn load(path: &Path) -> Result<Self, ListError> {
        let rules = listfile::read(path)?
            .into_iter()
            .map(|line| parse(&line.text).map_err(|why| ListError::line(path, line.number, why)))
            .collect::<Result<_, _>>()?;
        Ok(RegexRules { rules })
    }
}

fn parse(text: &str) -> Result<Rule, String> {
    let split = text
        .match_indices(" =>")
        .map(|(at, _)| at)
        .find(|&at| matches!(text[at + 3..].chars().next(), None | Some(' ' | '\t')));
    let Some(at) = split else {
        return Err(format!("expected `pattern => replacement`, found {text:?}"));
    };
    let pattern = text[..at].trim_end();
    let replacement = text[at + 3..].trim_start();
    let pattern = Regex::new(pattern).map_err(|e| format!("bad pattern {pattern:?}: {e}"))?;
    check_groups(&pattern, replacement)?;
    Ok(Rule {
        pattern,
        replacement: replacement.to_string(),
    })
}

/// A replacement that names a group the pattern lacks would silently insert
/// nothing; say so instead.
fn check_groups(pattern: &Regex, replacement: &str) -> Result<(), String> {
    let names = Regex::new(r"\$(\$|\{([^}]*)\}|[0-9A-Za-z_]+)").expect("valid");
    for found in names.captures_iter(replacement) {
        let name = found.get(2).map_or(&found[1], |m| m.as_str());
        if name == "$" {
            continue;
        }
        let exists = match name.parse::<usize>() {
            Ok(index) => index < pattern.captures_len(),
            Err(_) => pattern.capture_names().flatten().any(|n| n == name),
        };
        if !exists {
            return Err(format!(
                "replacement refers to group ${name}, which the pattern does not have (write ${{1}}x for group 1 followed by x)"
            ));
        }
    }
    Ok(())
}

impl Filter for RegexRules {
    fn apply(&self, event: &mut FilterEvent) {
        if event.kind != EventType::Message {
            return;
        }
        for rule in &self.rules {
            if let std::borrow::Cow::Owned(changed) = rule
                .pattern
                .replace_all(&event.text, rule.replacement.as_str())
            {
                event.set_text(changed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::testing::event;

    fn rules(text: &str) -> Result<RegexRules, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("regex.txt");
        std::fs::write(&path, text).unwrap();
        RegexRules::load(&path).map_err(|e| {
            e.to_string()
                .replace(&path.display().to_string(), "regex.txt")
        })
    }

    fn run(r: &RegexRules, text: &str) -> String {
        let mut e = event(text);
        r.apply(&mut e);
        assert!(!e.blocked);
        e.text
    }

    #[test]
    fn rules_apply_in_order_with_groups_and_any_length() {
        let r = rules(
            "# card numbers\n\
             \\b(\\d{4})[ -]?\\d{4}[ -]?\\d{4}[ -]?(\\d{4})\\b => $1-XXXX-XXXX-$2\n\
             (?i)colou?r => hue\n\
             hue => shade of hue\n\
             \\s+$ =>\n",
        )
        .unwrap();
        assert_eq!(
            run(&r, "card 1234 5678 9012 3456, COLOR   "),
            "card 1234-XXXX-XXXX-3456, shade of hue"
        );
        assert_eq!(run(&r, "nothing here"), "nothing here");
    }

    #[test]
    fn split_at_the_first_arrow_with_spaces() {
        let r = rules("a=>b => c => d\nx =>\n").unwrap();
        assert_eq!(run(&r, "a=>b x"), "c => d ");
        let r = rules("=[>] => arrow\n").unwrap();
        assert_eq!(run(&r, "=>"), "arrow");
    }

    #[test]
    fn bad_rules_name_file_and_line() {
        assert_eq!(
            rules("ok => fine\n\n(unclosed => x\n")
                .err()
                .unwrap()
                .lines()
                .next()
                .unwrap(),
            "regex.txt:3: bad pattern \"(unclosed\": regex parse error:"
        );
        assert_eq!(
            rules("just text\n").err().unwrap(),
            "regex.txt:1: expected `pattern => replacement`, found \"just text\""
        );
        assert_eq!(
            rules(" => x\n").err().unwrap(),
            "regex.txt:1: expected `pattern => replacement`, found \"=> x\""
        );
        assert_eq!(
            rules("(a)b => $1x\n").err().unwrap(),
            "regex.txt:1: replacement refers to group $1x, which the pattern does not have (write ${1}x for group 1 followed by x)"
        );
        assert!(rules("(a)(?P<n>b) => ${1}x$n$$\n").is_ok());
    }
}
