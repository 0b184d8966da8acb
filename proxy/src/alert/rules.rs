//! `alert_filename`: what raises an alert. One rule per line (`#` comments):
//! a word or phrase, matched ignoring case anywhere in the text as bad words
//! are, or a regular expression between slashes, `/card \d{4}/`, in the
//! `regex` crate's syntax (`(?i)` for no case).

use std::path::Path;

use regex::{Regex, RegexSet, RegexSetBuilder};

use crate::filter::listfile::{self, ListError};

/// Compiled size limit of all rules together: a list cannot make matching
/// each event slow or large.
const SIZE_LIMIT: usize = 8 << 20;

pub struct Rules {
    set: RegexSet,
    /// Each rule as written, for the alert's `matched` field.
    shown: Vec<String>,
}

impl Rules {
    pub fn load(path: &Path) -> Result<Rules, ListError> {
        let lines = listfile::read(path)?;
        let mut patterns = Vec::with_capacity(lines.len());
        for line in &lines {
            let pattern = pattern_of(&line.text);
            // Checked one by one so that a bad one is named with its line.
            Regex::new(&pattern)
                .map_err(|e| ListError::line(path, line.number, format!("bad pattern: {e}")))?;
            patterns.push(pattern);
        }
        let set = RegexSetBuilder::new(&patterns)
            .size_limit(SIZE_LIMIT)
            .build()
            .map_err(|e| ListError::whole(path, format!("the rules together: {e}")))?;
        Ok(Rules {
            set,
            shown: lines.into_iter().map(|l| l.text).collect(),
        })
    }

    /// The rules `text` matches, as written; empty when none does.
    pub fn matches(&self, text: &str) -> Vec<String> {
        self.set
            .matches(text)
            .into_iter()
            .map(|i| self.shown[i].clone())
            .collect()
    }
}

fn pattern_of(rule: &str) -> String {
    match rule.strip_prefix('/').and_then(|r| r.strip_suffix('/')) {
        Some(regex) if !regex.is_empty() => regex.to_string(),
        _ => format!("(?i){}", regex::escape(rule)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Result<Rules, ListError> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        Rules::load(file.path())
    }

    #[test]
    fn words_ignore_case_and_regexes_are_between_slashes() {
        let r = rules("# alerts\nSecret plan\n/card \\d{4}/\na.b\n").unwrap();
        assert_eq!(r.matches("the SECRET plan is on"), ["Secret plan"]);
        assert_eq!(r.matches("card 1234 and a.b"), ["/card \\d{4}/", "a.b"]);
        // A word is literal: the dot matches only a dot.
        assert!(r.matches("card four, axb").is_empty());
    }

    #[test]
    fn a_bad_regex_names_its_line() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "fine\n/(unclosed/\n").unwrap();
        let e = Rules::load(file.path()).err().unwrap().to_string();
        assert!(
            e.starts_with(&format!("{}:2: bad pattern: ", file.path().display())),
            "{e}"
        );
    }
}
