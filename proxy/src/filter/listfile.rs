//! Reading the filters' list and rule files, with errors that name file and line.

use std::path::Path;

/// What is wrong with a list, rule or database file.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {why}")]
    Line {
        path: String,
        line: usize,
        why: String,
    },
    #[error("{path}: {why}")]
    Whole { path: String, why: String },
    #[error("{path}: database: {source}")]
    Database {
        path: String,
        source: rusqlite::Error,
    },
}

impl ListError {
    pub fn line(path: &Path, line: usize, why: impl Into<String>) -> Self {
        ListError::Line {
            path: path.display().to_string(),
            line,
            why: why.into(),
        }
    }

    pub fn whole(path: &Path, why: impl Into<String>) -> Self {
        ListError::Whole {
            path: path.display().to_string(),
            why: why.into(),
        }
    }

    pub fn database(path: &Path, source: rusqlite::Error) -> Self {
        ListError::Database {
            path: path.display().to_string(),
            source,
        }
    }
}

/// One meaningful line: its number (of its first physical line) and its text, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub number: usize,
    pub text: String,
}

/// The lines of a list file, without blank lines and `#` comments.
pub fn read(path: &Path) -> Result<Vec<Line>, ListError> {
    Ok(lines(&load(path)?, false))
}

/// Like [`read`], but a line ending in a backslash continues on the next one
/// (comment lines in between are skipped), as the 0.9 ACL file allows.
pub fn read_continued(path: &Path) -> Result<Vec<Line>, ListError> {
    Ok(lines(&load(path)?, true))
}

fn load(path: &Path) -> Result<String, ListError> {
    let bytes = std::fs::read(path).map_err(|source| ListError::Read {
        path: path.display().to_string(),
        source,
    })?;
    // Lists written on other systems may be Latin-1; never refuse them for that.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn lines(text: &str, continuation: bool) -> Vec<Line> {
    let mut out = Vec::new();
    let mut pending: Option<Line> = None;
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (body, continues) = match trimmed.strip_suffix('\\') {
            Some(body) if continuation => (body.trim_end(), true),
            _ => (trimmed, false),
        };
        let line = match pending.take() {
            Some(mut line) => {
                line.text.push(' ');
                line.text.push_str(body);
                line
            }
            None => Line {
                number: index + 1,
                text: body.to_string(),
            },
        };
        if continues {
            pending = Some(line);
        } else {
            out.push(line);
        }
    }
    out.extend(pending);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str, continuation: bool) -> Vec<(usize, String)> {
        lines(text, continuation)
            .into_iter()
            .map(|l| (l.number, l.text))
            .collect()
    }

    #[test]
    fn skips_blank_and_comment_lines_and_keeps_numbers() {
        assert_eq!(
            texts("# words\n\n  fish  \r\nbad word\n", false),
            vec![(3, "fish".to_string()), (4, "bad word".to_string())]
        );
    }

    #[test]
    fn backslash_continues_a_line_only_when_asked() {
        let text = "allow all \\\n# note\n  a@x \\\n b@x\ndeny all\n";
        assert_eq!(
            texts(text, true),
            vec![
                (1, "allow all a@x b@x".to_string()),
                (5, "deny all".to_string())
            ]
        );
        assert_eq!(texts("a \\\nb\n", false)[0], (1, "a \\".to_string()));
        // A continuation at the end of the file ends the line.
        assert_eq!(
            texts("deny all \\\n", true),
            vec![(1, "deny all".to_string())]
        );
    }
}
