//! Filter conformance scenarios that every way of carrying a message can run.
//!
//! A [`FilterRig`] knows how to configure the proxy, make the local user send a
//! message to the remote party, and report what the remote party received, the
//! notices the local user got, and the logged event. [`SCENARIOS`] then checks
//! the filters as a user sees them. [`ChainRig`] runs them on the filter chain
//! alone; end-to-end rigs run them through real clients and servers of each
//! protocol, so every protocol is held to the same expectations.
//!
//! The helpers [`event`] and [`event_between`] build events for unit tests.

use std::path::Path;
use std::time::{Duration, Instant};

use imspector_protocols::{Direction, EventType, ProtocolKind};

use super::{build, FilterChain, FilterEvent};
use crate::config::Settings;

/// An outgoing IRC message from `alice` to `bob`.
pub fn event(text: &str) -> FilterEvent {
    event_between("alice", "bob", text)
}

/// An outgoing IRC message between these (lower-case) ids.
pub fn event_between(local: &str, remote: &str, text: &str) -> FilterEvent {
    FilterEvent {
        protocol: ProtocolKind::Irc.log_name().into(),
        direction: Direction::Outgoing,
        kind: EventType::Message,
        local_id: local.into(),
        remote_id: remote.into(),
        group: false,
        encrypted: false,
        text: text.to_string(),
        original: None,
        blocked: false,
        categories: String::new(),
        notices: Vec::new(),
    }
}

/// A logged event, as far as the filters decide it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub outgoing: bool,
    /// 1 message, 2 file, 3 typing, 4 webcam.
    pub kind: u8,
    pub filtered: bool,
    pub categories: String,
    pub data: String,
}

impl Logged {
    /// Read a file-log line `client,timestamp,outgoing,type,filtered,categories,eventdata`.
    pub fn from_file_line(line: &str) -> Option<Logged> {
        let mut fields = line.trim_end_matches(['\r', '\n']).splitn(7, ',');
        let _client = fields.next()?;
        let _timestamp = fields.next()?;
        let flag = |f: Option<&str>| match f? {
            "0" => Some(false),
            "1" => Some(true),
            _ => None,
        };
        Some(Logged {
            outgoing: flag(fields.next())?,
            kind: fields.next()?.parse().ok()?,
            filtered: flag(fields.next())?,
            categories: fields.next()?.to_string(),
            data: fields.next()?.to_string(),
        })
    }

    /// What an outgoing message is logged as.
    pub fn outgoing_message(filtered: bool, categories: &str, data: &str) -> Logged {
        Logged {
            outgoing: true,
            kind: 1,
            filtered,
            categories: categories.to_string(),
            data: data.to_string(),
        }
    }
}

/// What one message from the local user led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The text the remote party received; `None` when nothing arrived.
    pub delivered: Option<String>,
    /// The texts of the notices the local user received, in order.
    pub notices: Vec<String>,
    /// The event logged for the message.
    pub logged: Logged,
}

/// How much of what the remote party and the local user received a rig has
/// already reported, so each message's [`Outcome`] holds only its own.
#[derive(Debug, Default)]
pub struct Seen {
    delivered: usize,
    notices: usize,
}

impl Seen {
    /// The outcome of the last message, given everything the remote party
    /// got from the local user and every notice the local user got so far.
    pub fn outcome(
        &mut self,
        delivered: &[String],
        notices: &[String],
        logged: Logged,
    ) -> Result<Outcome, String> {
        let new = delivered.get(self.delivered..).unwrap_or_default();
        if new.len() > 1 {
            return Err(format!("the remote party got several messages: {new:?}"));
        }
        let outcome = Outcome {
            delivered: new.first().cloned(),
            notices: notices.get(self.notices..).unwrap_or_default().to_vec(),
            logged,
        };
        self.delivered = delivered.len();
        self.notices = notices.len();
        Ok(outcome)
    }
}

/// A way to run the proxy and send a message through it.
pub trait FilterRig {
    /// The local and the remote party's ids as the proxy logs them (lower case).
    fn ids(&self) -> (String, String);

    /// (Re)start the proxy, or reload it, with these configuration lines added
    /// to the rig's own (protocol, logging). Each scenario calls this once,
    /// first; the files the lines name exist by then.
    fn configure(&mut self, conf: &str) -> Result<(), String>;

    /// The local user sends `text` to the remote party (a private message).
    /// A rig decides that nothing was delivered by sending a further message of
    /// its own and seeing it arrive first.
    fn send(&mut self, text: &str) -> Result<Outcome, String>;
}

/// One scenario: its name, and the check, given a fresh directory for its files.
pub type Scenario = (&'static str, fn(&mut dyn FilterRig, &Path));

/// Every scenario, for rigs to run one by one or all at once.
pub const SCENARIOS: &[Scenario] = &[
    ("badword_replaced", badword_replaced),
    ("badword_block_count_exceeded", badword_block_count_exceeded),
    ("acl_deny", acl_deny),
    ("blacklist_deny", blacklist_deny),
    ("db_filter_block_and_awl", db_filter_block_and_awl),
    ("regex_rewrite_changes_length", regex_rewrite_changes_length),
    ("logging_notice_once", logging_notice_once),
    ("blocked_notice", blocked_notice),
];

/// Run every scenario, each in its own subdirectory of `dir`.
pub fn run_all(rig: &mut dyn FilterRig, dir: &Path) {
    for (name, scenario) in SCENARIOS {
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub).expect("scenario directory");
        scenario(rig, &sub);
    }
}

fn configure(rig: &mut dyn FilterRig, conf: &str) {
    if let Err(e) = rig.configure(conf) {
        panic!("configuring with\n{conf}failed: {e}");
    }
}

fn send(rig: &mut dyn FilterRig, text: &str) -> Outcome {
    rig.send(text)
        .unwrap_or_else(|e| panic!("sending {text:?} failed: {e}"))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing a list file");
    path.display().to_string()
}

fn delivered(text: &str, categories: &str, sent: &str) -> Outcome {
    Outcome {
        delivered: Some(text.to_string()),
        notices: Vec::new(),
        logged: Logged::outgoing_message(false, categories, sent),
    }
}

fn blocked(categories: &str, sent: &str) -> Outcome {
    Outcome {
        delivered: None,
        notices: Vec::new(),
        logged: Logged::outgoing_message(true, categories, sent),
    }
}

/// After a block the conversation goes on.
fn still_works(rig: &mut dyn FilterRig) {
    assert_eq!(
        send(rig, "still here"),
        delivered("still here", "", "still here")
    );
}

fn badword_replaced(rig: &mut dyn FilterRig, dir: &Path) {
    let words = write(dir, "badwords.txt", "# words\ndarn\nbad word\n");
    configure(rig, &format!("badwords_filename={words}\n"));
    let sent = "Darn, a BAD WORD!";
    assert_eq!(
        send(rig, sent),
        delivered("****, a ********!", "2 badwords;", sent)
    );
}

fn badword_block_count_exceeded(rig: &mut dyn FilterRig, dir: &Path) {
    let words = write(dir, "badwords.txt", "darn\n");
    configure(
        rig,
        &format!(
            "badwords_filename={words}\nbadwords_replace_character=#\nbadwords_block_count=1\n"
        ),
    );
    assert_eq!(
        send(rig, "darn it"),
        delivered("#### it", "1 badwords;", "darn it")
    );
    assert_eq!(
        send(rig, "darn, darn"),
        blocked("2 badwords;", "darn, darn")
    );
    still_works(rig);
}

fn acl_deny(rig: &mut dyn FilterRig, dir: &Path) {
    let (local, remote) = rig.ids();
    let acl = write(
        dir,
        "acl.txt",
        &format!("allow {local} nobody@example.net\ndeny {local} \\\n  {remote}\nallow all\n"),
    );
    configure(rig, &format!("acl_filename={acl}\n"));
    assert_eq!(send(rig, "hello"), blocked("", "hello"));
    let acl = write(
        dir,
        "acl.txt",
        &format!("deny {local} nobody@example.net\n"),
    );
    configure(rig, &format!("acl_filename={acl}\n"));
    still_works(rig);
}

fn blacklist_deny(rig: &mut dyn FilterRig, dir: &Path) {
    let (local, remote) = rig.ids();
    let black = write(dir, "blacklist.txt", &format!("{local}: {remote}\n"));
    let white = write(
        dir,
        "whitelist.txt",
        &format!("{local}: nobody@example.net\n"),
    );
    configure(
        rig,
        &format!("blacklist_filename={black}\nwhitelist_filename={white}\n"),
    );
    assert_eq!(send(rig, "hello"), blocked("", "hello"));
}

fn db_filter_block_and_awl(rig: &mut dyn FilterRig, dir: &Path) {
    let (local, remote) = rig.ids();
    let path = dir.join("filter.db");
    let db = rusqlite::Connection::open(&path).expect("creating the filter database");
    db.execute_batch(
        "CREATE TABLE lists (id integer PRIMARY KEY AUTOINCREMENT, localid text,
         remoteid text, action integer NOT NULL, type integer NOT NULL,
         timestamp integer NOT NULL);
         INSERT INTO lists (localid, remoteid, action, type, timestamp)
         VALUES (NULL, NULL, 2, 1, 0);",
    )
    .expect("filling the filter database");
    configure(rig, &format!("db_filter_filename={}\n", path.display()));
    assert_eq!(send(rig, "hello"), blocked("", "hello"));
    db.execute(
        "INSERT INTO lists (localid, remoteid, action, type, timestamp) VALUES (?1, NULL, 3, 1, 0)",
        [&local],
    )
    .expect("adding an AWL row");
    // The proxy picks up the edit within a second, without a restart.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let outcome = send(rig, "learn me");
        if outcome.delivered.is_some() {
            assert_eq!(outcome, delivered("learn me", "", "learn me"));
            break;
        }
        assert!(Instant::now() < deadline, "the AWL row was never seen");
        std::thread::sleep(Duration::from_millis(100));
    }
    let learned = || -> Vec<(String, String, i64, i64)> {
        let mut stmt = db
            .prepare("SELECT localid, remoteid, action, type FROM lists WHERE id > 2")
            .expect("query");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    while learned().is_empty() {
        assert!(Instant::now() < deadline, "no ACCEPT row was written");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(learned(), vec![(local, remote, 1, 2)]);
}

fn regex_rewrite_changes_length(rig: &mut dyn FilterRig, dir: &Path) {
    let rules = write(
        dir,
        "regex.txt",
        "(?i)\\bcolou?r\\b => shade of hue\n\\s*!+$ => .\n(\\w+)@(\\w+)\\.com => $2 ($1)\n",
    );
    configure(rig, &format!("regex_filename={rules}\n"));
    let sent = "My colour is blue!!!";
    assert_eq!(
        send(rig, sent),
        delivered("My shade of hue is blue.", "", sent)
    );
    let sent = "mail bob@acme.com";
    assert_eq!(send(rig, sent), delivered("mail acme (bob)", "", sent));
}

fn logging_notice_once(rig: &mut dyn FilterRig, dir: &Path) {
    let db = dir.join("responder.db");
    configure(
        rig,
        &format!("responder_filename={}\nnotice_days=7\n", db.display()),
    );
    let mut first = delivered("first", "", "first");
    first.notices = vec!["Message from IMSpector: -=Your activities are being logged=-".into()];
    assert_eq!(send(rig, "first"), first);
    assert_eq!(send(rig, "second"), delivered("second", "", "second"));
}

fn blocked_notice(rig: &mut dyn FilterRig, dir: &Path) {
    let (local, remote) = rig.ids();
    let acl = write(dir, "acl.txt", &format!("deny {local} {remote}\n"));
    let db = dir.join("responder.db");
    configure(
        rig,
        &format!(
            "acl_filename={acl}\nresponder_filename={}\nfiltered_mins=15\nresponse_prefix=<<\nresponse_postfix=>>\n",
            db.display()
        ),
    );
    let mut first = blocked("", "secret plans");
    first.notices = vec!["<<The message or action was blocked (secret plans)>>".into()];
    assert_eq!(send(rig, "secret plans"), first);
    assert_eq!(send(rig, "more plans"), blocked("", "more plans"));
}

/// Runs the scenarios on the filter chain alone: what the session would
/// deliver, notify and log, without any protocol or socket.
pub struct ChainRig {
    chain: FilterChain,
}

impl ChainRig {
    pub fn new() -> Self {
        ChainRig {
            chain: FilterChain::default(),
        }
    }
}

impl Default for ChainRig {
    fn default() -> Self {
        Self::new()
    }
}

impl FilterRig for ChainRig {
    fn ids(&self) -> (String, String) {
        (
            "alice@school.org".to_string(),
            "bob@example.net".to_string(),
        )
    }

    fn configure(&mut self, conf: &str) -> Result<(), String> {
        let settings = Settings::parse("rig.conf", conf).map_err(|e| e.to_string())?;
        self.chain = build(&settings).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn send(&mut self, text: &str) -> Result<Outcome, String> {
        let (local, remote) = self.ids();
        let mut e = event_between(&local, &remote, text);
        self.chain.apply(&mut e);
        Ok(Outcome {
            delivered: (!e.blocked).then_some(e.text),
            notices: e.notices,
            logged: Logged::outgoing_message(e.blocked, &e.categories, text),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_passes_on_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        run_all(&mut ChainRig::new(), dir.path());
    }

    #[test]
    fn reads_file_log_lines() {
        assert_eq!(
            Logged::from_file_line("127.0.0.1:5000,1700000000,1,1,1,2 badwords;,a, b\n"),
            Some(Logged::outgoing_message(true, "2 badwords;", "a, b"))
        );
        assert_eq!(Logged::from_file_line("127.0.0.1:5000,1,1,1"), None);
    }

    #[test]
    fn a_rig_that_ignores_filters_fails_the_scenarios() {
        struct Deaf;
        impl FilterRig for Deaf {
            fn ids(&self) -> (String, String) {
                ("a".into(), "b".into())
            }
            fn configure(&mut self, _: &str) -> Result<(), String> {
                Ok(())
            }
            fn send(&mut self, text: &str) -> Result<Outcome, String> {
                Ok(delivered(text, "", text))
            }
        }
        let dir = tempfile::tempdir().unwrap();
        for (name, scenario) in SCENARIOS {
            let sub = dir.path().join(name);
            std::fs::create_dir_all(&sub).unwrap();
            let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                scenario(&mut Deaf, &sub)
            }));
            assert!(failed.is_err(), "{name} passed without filters");
        }
    }
}
