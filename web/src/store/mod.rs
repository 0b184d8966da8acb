//! Where the viewer reads the daemon's events: its file logs or its
//! `messages` table. Both answer the same questions, in the original's tree:
//! protocols, then local ids, remote ids and days.

pub mod db;
pub mod files;
pub mod sql;

use std::time::{Duration, Instant};

/// One logged event, as the viewer shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// UNIX seconds.
    pub timestamp: i64,
    pub client: String,
    pub outgoing: bool,
    /// The original's type code: 1 message, 2 file, 3 typing, 4 webcam.
    pub kind: u8,
    pub filtered: bool,
    pub categories: String,
    pub data: String,
}

impl Line {
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            1 => "message",
            2 => "file",
            3 => "typing",
            4 => "webcam",
            _ => "unknown",
        }
    }
}

/// The most events a page or an export of one day holds; a longer day says
/// that it was cut.
pub const MAX_DAY_LINES: usize = 100_000;

/// The events of one conversation on one day.
#[derive(Debug, Clone, Default)]
pub struct Day {
    pub lines: Vec<Line>,
    /// The day has more than was read (over [`MAX_DAY_LINES`], or a file
    /// over the size a page reads).
    pub cut: bool,
}

/// One conversation: a protocol, a local id and a remote id, each as the
/// store names it (for files, the directory name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Conversation {
    pub protocol: String,
    pub local: String,
    pub remote: String,
}

/// A search: every part optional; `text` and `user` match substrings,
/// without regard to case.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub text: String,
    /// A local or remote id.
    pub user: String,
    pub protocol: String,
    /// Days `YYYY-MM-DD`, inclusive.
    pub from: String,
    pub to: String,
    /// The user's local id patterns (`*`, `?`), lower-cased; empty for every
    /// id. A store may narrow what it reads with them; the `allowed` of
    /// [`Store::search`] still decides.
    pub locals: Vec<String>,
}

impl Query {
    pub fn matches_line(&self, line: &Line) -> bool {
        self.text.is_empty() || contains_folded(&line.data, &self.text)
    }

    pub fn matches_ids(&self, c: &Conversation) -> bool {
        (self.protocol.is_empty() || c.protocol.eq_ignore_ascii_case(&self.protocol))
            && (self.user.is_empty()
                || contains_folded(&c.local, &self.user)
                || contains_folded(&c.remote, &self.user))
    }

    pub fn matches_day(&self, day: &str) -> bool {
        (self.from.is_empty() || day >= self.from.as_str())
            && (self.to.is_empty() || day <= self.to.as_str())
    }
}

fn contains_folded(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

/// One search result.
#[derive(Debug, Clone)]
pub struct Hit {
    pub conversation: Conversation,
    pub day: String,
    pub line: Line,
}

/// Search results, and whether the search stopped before the end.
#[derive(Debug, Default)]
pub struct Hits {
    pub hits: Vec<Hit>,
    /// Why the search stopped early, if it did.
    pub incomplete: Option<String>,
}

/// How far a search may go.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_hits: usize,
    pub max_time: Duration,
}

impl Bounds {
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.max_time
    }
}

/// Where the live view has read up to; opaque to the pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub String);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such protocol, id or day (or an id that is not a valid name).
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Failed(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// What the viewer asks of the logs, by the names the listings give.
/// `allowed` tells which local ids the user may see; stores apply it before
/// reading anything of a conversation.
pub trait Store: Send + Sync {
    /// The id a name of the listings stands for (file logs encode unusual
    /// ids in their directory names). Id limits and pages use the id.
    fn id_of(&self, name: &str) -> String {
        name.to_string()
    }
    fn protocols(&self) -> Result<Vec<String>>;
    fn local_ids(&self, protocol: &str) -> Result<Vec<String>>;
    fn remote_ids(&self, protocol: &str, local: &str) -> Result<Vec<String>>;
    fn days(&self, c: &Conversation) -> Result<Vec<String>>;
    fn lines(&self, c: &Conversation, day: &str) -> Result<Day>;
    /// Where the newest event of `c` ends: the live view starts there.
    fn end(&self, c: &Conversation) -> Result<Cursor>;
    /// Events of `c` logged after `cursor`, and the new cursor.
    fn after(&self, c: &Conversation, cursor: &Cursor) -> Result<(Vec<Line>, Cursor)>;
    fn search(&self, q: &Query, allowed: &dyn Fn(&str) -> bool, bounds: Bounds) -> Result<Hits>;
}

/// A day as the stores name it: `YYYY-MM-DD`.
pub fn is_day(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// The local day of a UNIX time, as file logs are named.
pub fn day_of(timestamp: i64) -> String {
    use chrono::TimeZone;
    chrono::Local
        .timestamp_opt(timestamp, 0)
        .single()
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".to_string())
}
