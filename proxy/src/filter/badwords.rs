//! Bad words: each hit in a message is replaced character for character, and
//! a message with more hits than `badwords_block_count` is blocked.
//!
//! Matching is case-insensitive (Unicode simple case folding) and runs on the
//! text in its compatibility form (NFKC, one character at a time: fullwidth
//! letters, ligatures and letter-like symbols become plain letters) with
//! zero-width characters and combining marks left out, so that none of those
//! hides a word. Hits are replaced in the original text, character for
//! character, so the replaced text has exactly as many characters as the
//! original even where lower-casing or NFKC would change lengths (`İ`, `ﬁ`).

use std::path::Path;

use imspector_protocols::EventType;
use regex::{Regex, RegexBuilder};
use unicode_normalization::UnicodeNormalization;

use super::listfile::{self, ListError};
use super::{Filter, FilterEvent};
use crate::config::{ConfigError, Settings};

/// Room for lists of many thousands of words.
const REGEX_SIZE_LIMIT: usize = 256 << 20;

pub struct BadWords {
    /// Every word as one alternation, longest first so that a phrase wins over
    /// a word it starts with.
    pattern: Regex,
    replace_with: char,
    /// Block when there are more hits than this; 0 never blocks.
    block_count: usize,
}

impl BadWords {
    pub fn from_settings(settings: &Settings) -> Result<Option<Self>, ConfigError> {
        let Some(path) = settings.path("badwords_filename") else {
            return Ok(None);
        };
        let replace_with = match settings.get("badwords_replace_character") {
            None => '*',
            Some(v) => {
                let mut chars = v.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => c,
                    _ => {
                        return Err(settings.bad(
                            "badwords_replace_character",
                            format!("{v:?} is not one character"),
                        ))
                    }
                }
            }
        };
        let block_count = settings.parsed("badwords_block_count")?.unwrap_or(0);
        Ok(Some(Self::load(&path, replace_with, block_count)?))
    }

    pub fn load(path: &Path, replace_with: char, block_count: usize) -> Result<Self, ListError> {
        let mut words: Vec<String> = listfile::read(path)?
            .into_iter()
            .map(|line| Folded::of(&line.text).text)
            .filter(|word| !word.is_empty())
            .collect();
        words.sort_by(|a, b| b.chars().count().cmp(&a.chars().count()).then(a.cmp(b)));
        words.dedup();
        let alternation = if words.is_empty() {
            // Matches nothing: an empty list is allowed and does nothing.
            r"[^\s\S]".to_string()
        } else {
            words
                .iter()
                .map(|w| regex::escape(w))
                .collect::<Vec<_>>()
                .join("|")
        };
        let pattern = RegexBuilder::new(&alternation)
            .case_insensitive(true)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| ListError::whole(path, format!("word list too large: {e}")))?;
        Ok(BadWords {
            pattern,
            replace_with,
            block_count,
        })
    }

    /// The text with every hit replaced, and the number of hits.
    fn censor(&self, text: &str) -> (String, usize) {
        let folded = Folded::of(text);
        let mut chars: Vec<char> = text.chars().collect();
        let mut hits = 0;
        for found in self.pattern.find_iter(&folded.text) {
            hits += 1;
            let first = folded.origin[found.start()];
            let mut last = folded.origin[found.end() - 1];
            // Marks on the last letter belong to the hit.
            while chars.get(last + 1).is_some_and(|&c| is_invisible(c)) {
                last += 1;
            }
            chars[first..=last].fill(self.replace_with);
        }
        (chars.into_iter().collect(), hits)
    }
}

/// A text as the words are matched against it, and where each part of it
/// came from.
struct Folded {
    text: String,
    /// For each byte of `text`, the index of the original character.
    origin: Vec<usize>,
}

impl Folded {
    fn of(original: &str) -> Self {
        let mut folded = Folded {
            text: String::with_capacity(original.len()),
            origin: Vec::with_capacity(original.len()),
        };
        for (index, c) in original.chars().enumerate() {
            if c.is_ascii() {
                folded.push(c, index);
                continue;
            }
            for part in std::iter::once(c).nfkc() {
                if !is_invisible(part) {
                    folded.push(part, index);
                }
            }
        }
        folded
    }

    fn push(&mut self, c: char, origin: usize) {
        self.text.push(c);
        self.origin.resize(self.text.len(), origin);
    }
}

/// Characters that show nothing by themselves: combining marks, and the
/// zero-width and formatting characters used to split a word unseen.
fn is_invisible(c: char) -> bool {
    unicode_normalization::char::is_combining_mark(c)
        || matches!(
            c,
            '\u{ad}' | '\u{34f}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}'
                | '\u{feff}'
        )
}

impl Filter for BadWords {
    fn apply(&self, event: &mut FilterEvent) {
        if event.kind != EventType::Message {
            return;
        }
        let (censored, hits) = self.censor(&event.text);
        if hits == 0 {
            return;
        }
        event.set_text(censored);
        event.categories.push_str(&format!("{hits} badwords;"));
        if self.block_count > 0 && hits > self.block_count {
            event.blocked = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::testing::event;

    fn filter(words: &str, replace_with: char, block_count: usize) -> BadWords {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("badwords.txt");
        std::fs::write(&path, words).unwrap();
        BadWords::load(&path, replace_with, block_count).unwrap()
    }

    fn run(f: &BadWords, text: &str) -> (String, bool, String) {
        let mut e = event(text);
        f.apply(&mut e);
        (e.text, e.blocked, e.categories)
    }

    #[test]
    fn replaces_each_hit_character_for_character_ignoring_case() {
        let f = filter("# list\nfish\n\nbad word\n", '*', 0);
        assert_eq!(
            run(&f, "FISH and a Bad Word, fishy"),
            (
                "**** and a ********, ****y".to_string(),
                false,
                "3 badwords;".to_string()
            )
        );
        assert_eq!(
            run(&f, "clean text"),
            ("clean text".to_string(), false, String::new())
        );
    }

    #[test]
    fn unicode_case_insensitive_and_length_preserving() {
        let f = filter("straße\nКОТ\ni̇stanbul\n", '#', 0);
        assert_eq!(run(&f, "STRASSE Straße кот").0, "STRASSE ###### ###");
        // Lower-casing İ gives two chars; the replacement follows the original.
        let (text, _, cats) = run(&f, "İstanbul i̇stanbul");
        assert_eq!(text, "İstanbul #########");
        assert_eq!(cats, "1 badwords;");
        assert_eq!(text.chars().count(), "İstanbul i̇stanbul".chars().count());
    }

    #[test]
    fn fullwidth_letters_joiners_and_marks_hide_no_word() {
        let f = filter("darn\nfile\n", '*', 0);
        for (sent, censored, hits) in [
            ("ｄａｒｎ it", "**** it", 1),
            ("ＤＡＲＮ", "****", 1),
            ("d\u{200b}a\u{200d}r\u{2060}n!", "*******!", 1),
            ("d\u{0301}arn\u{0327}", "******", 1),
            ("d\u{ad}arn \u{fb01}le", "***** ***", 2),
            ("𝐝𝐚𝐫𝐧", "****", 1),
        ] {
            let (text, _, cats) = run(&f, sent);
            assert_eq!(text, censored, "{sent:?}");
            assert_eq!(cats, format!("{hits} badwords;"));
            assert_eq!(text.chars().count(), sent.chars().count());
        }
        // Letters with their own diacritics stay other letters.
        assert_eq!(run(&f, "dárn").2, "");
    }

    #[test]
    fn the_longer_phrase_wins() {
        let f = filter("bad\nbad word\n", '*', 0);
        assert_eq!(run(&f, "bad words").0, "********s");
    }

    #[test]
    fn blocks_above_the_count_only() {
        let f = filter("fish\n", '*', 2);
        assert_eq!(
            run(&f, "fish fish"),
            ("**** ****".to_string(), false, "2 badwords;".to_string())
        );
        assert_eq!(
            run(&f, "fish fish fish"),
            (
                "**** **** ****".to_string(),
                true,
                "3 badwords;".to_string()
            )
        );
    }

    #[test]
    fn words_are_literal_not_patterns() {
        let f = filter("a.b\n(x\n", '*', 0);
        assert_eq!(run(&f, "axb a.b (x").0, "axb *** **");
    }

    #[test]
    fn other_event_types_are_untouched() {
        let f = filter("fish\n", '*', 0);
        let mut e = event("fish.jpg 100 bytes");
        e.kind = EventType::File;
        f.apply(&mut e);
        assert_eq!(e.text, "fish.jpg 100 bytes");
    }

    #[test]
    fn many_words_build_one_matcher() {
        let words: String = (0..20_000).map(|i| format!("word{i}x\n")).collect();
        let f = filter(&words, '*', 0);
        assert_eq!(run(&f, "a WORD19999X b word7x").0, "a ********** b ******");
    }

    #[test]
    fn settings_defaults_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.txt");
        std::fs::write(&path, "fish\n").unwrap();
        let conf = format!("badwords_filename={}\n", path.display());
        let f = BadWords::from_settings(&Settings::parse("t.conf", &conf).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(run(&f, "fish fish fish").0, "**** **** ****");
        assert!(!run(&f, "fish fish fish").1);

        let bad = format!("{conf}badwords_replace_character=ab\n");
        let e = BadWords::from_settings(&Settings::parse("t.conf", &bad).unwrap())
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "t.conf:2: badwords_replace_character: \"ab\" is not one character"
        );
        let missing = "badwords_filename=/nonexistent/words.txt\n";
        let e = BadWords::from_settings(&Settings::parse("t.conf", missing).unwrap())
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/words.txt: cannot read:"),
            "{e}"
        );
    }
}
