//! Web-chat rules (`webchat_rules_filename`): a chat API described in a file,
//! so an administrator can add one without code. Each rule matches requests
//! by method, host and path, and names with JSON pointers (RFC 6901) where the
//! request body holds the text, the room and, optionally, the sender:
//!
//! ```text
//! [Mattermost]                 # the protocol name in the logs
//! method = POST
//! host = *                     # a host, *.example.com, or * for any
//! path = /api/v4/posts         # exact; a trailing * matches a prefix
//! text = /message              # JSON pointers into the request body
//! room = /channel_id
//! local = header:X-User-Id     # a pointer, or header:NAME; default: the client's address
//! ```
//!
//! Matching messages are outgoing events (type 1, group chat) through the
//! filters and the logger; a rewrite replaces the text in the body (the
//! Content-Length follows); a block answers 403 with a short page that says why.

use std::path::Path;

use imspector_protocols::{ChatEvent, Direction, EventType};
use serde_json::Value;

use super::handler::{Exchange, Handler, Judge, Mode, Verdict};
use super::http::HttpRequest;
use crate::filter::listfile;
use crate::filter::ListError;

/// Names the logs already use for other protocols.
const TAKEN: &[&str] = &[
    "MSN",
    "ICQ-AIM",
    "Yahoo",
    "IRC",
    "Gadu-Gadu",
    "Jabber",
    "Matrix",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Pointer(String),
    Header(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    method: String,
    /// Lower case; `*` any, `*.x` a suffix.
    host: String,
    path: String,
    text: String,
    room: String,
    local: Option<Source>,
}

impl Rule {
    fn matches(&self, request: &HttpRequest) -> bool {
        let host = request.host();
        let host_ok = match self.host.strip_prefix("*.") {
            _ if self.host == "*" => true,
            Some(suffix) => host == suffix || host.ends_with(&format!(".{suffix}")),
            None => host == self.host,
        };
        let path_ok = match self.path.strip_suffix('*') {
            Some(prefix) => request.path().starts_with(prefix),
            None => request.path() == self.path,
        };
        request.method.eq_ignore_ascii_case(&self.method) && host_ok && path_ok
    }
}

/// The rules of one file, in order: the first that matches a request reads it.
#[derive(Debug, Default)]
pub struct WebChat {
    rules: Vec<Rule>,
}

impl WebChat {
    pub fn load(path: &Path) -> Result<Self, ListError> {
        let mut rules: Vec<Rule> = Vec::new();
        let mut current: Option<Pending> = None;
        let lines = listfile::read(path)?;
        for line in lines.iter() {
            let text = line.text.split(" #").next().unwrap_or_default().trim();
            if let Some(name) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
                if let Some(done) = current.take() {
                    rules.push(finish(path, done)?);
                }
                let name = name.trim();
                let bad = |why: &str| {
                    ListError::line(path, line.number, format!("rule name {name:?} {why}"))
                };
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                    || name.starts_with('.')
                {
                    return Err(bad(
                        "must be letters, digits, '-', '_' or '.' (it names a log directory)",
                    ));
                }
                if TAKEN.iter().any(|t| t.eq_ignore_ascii_case(name))
                    || rules.iter().any(|r| r.name.eq_ignore_ascii_case(name))
                {
                    return Err(bad("is already used"));
                }
                current = Some((line.number, Vec::new(), name.to_string()));
                continue;
            }
            let Some((_, fields, _)) = current.as_mut() else {
                return Err(ListError::line(
                    path,
                    line.number,
                    "a rule starts with [name]",
                ));
            };
            let Some((key, value)) = text.split_once('=') else {
                return Err(ListError::line(
                    path,
                    line.number,
                    format!("{text:?} is not key = value"),
                ));
            };
            let key = key.trim().to_ascii_lowercase();
            if !["method", "host", "path", "text", "room", "local"].contains(&key.as_str()) {
                return Err(ListError::line(
                    path,
                    line.number,
                    format!("unknown key {key:?}"),
                ));
            }
            fields.push((key, value.trim().to_string()));
        }
        if let Some(done) = current.take() {
            rules.push(finish(path, done)?);
        }
        Ok(WebChat { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn rule_for(&self, request: &HttpRequest) -> Option<&Rule> {
        self.rules.iter().find(|r| r.matches(request))
    }
}

/// A rule being read: the line of its `[name]`, its `key = value` fields, its name.
type Pending = (usize, Vec<(String, String)>, String);

/// A rule from what was read of it.
fn finish(path: &Path, (line, fields, name): Pending) -> Result<Rule, ListError> {
    let get = |key: &str| {
        fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let need = |key: &str| {
        get(key).ok_or_else(|| ListError::line(path, line, format!("rule {name} has no {key}")))
    };
    let pointer = |key: &str, value: String| {
        if value.starts_with('/') {
            Ok(value)
        } else {
            Err(ListError::line(
                path,
                line,
                format!("rule {name}: {key} {value:?} is not a JSON pointer (it starts with /)"),
            ))
        }
    };
    let path_value = need("path")?;
    if !path_value.starts_with('/') {
        return Err(ListError::line(
            path,
            line,
            format!("rule {name}: path must start with /"),
        ));
    }
    let local = match get("local") {
        None => None,
        Some(v) => Some(match v.strip_prefix("header:") {
            Some(h) => Source::Header(h.trim().to_string()),
            None => Source::Pointer(pointer("local", v)?),
        }),
    };
    Ok(Rule {
        method: need("method")?.to_ascii_uppercase(),
        host: get("host")
            .unwrap_or_else(|| "*".into())
            .to_ascii_lowercase(),
        path: path_value,
        text: pointer("text", need("text")?)?,
        room: pointer("room", need("room")?)?,
        local,
        name,
    })
}

/// A string or number at `pointer`, as text.
fn text_at(body: &Value, pointer: &str) -> Option<String> {
    match body.pointer(pointer)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A refusal page, escaped.
fn blocked_page(text: &str) -> Vec<u8> {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    format!("<!DOCTYPE html>\n<html><head><title>Blocked</title></head><body><h1>Blocked</h1><p>{escaped}</p></body></html>\n").into_bytes()
}

impl Handler for WebChat {
    fn wants(&self, exchange: &Exchange) -> bool {
        exchange.mode == Mode::Reqmod
            && exchange
                .request
                .as_ref()
                .is_some_and(|r| self.rule_for(r).is_some())
    }

    fn inspect(&self, exchange: &Exchange, body: &[u8], judge: &mut Judge<'_>) -> Verdict {
        let Some(request) = &exchange.request else {
            return Verdict::Unchanged;
        };
        let Some(rule) = self.rule_for(request) else {
            return Verdict::Unchanged;
        };
        let Ok(mut json) = serde_json::from_slice::<Value>(body) else {
            log::debug!(
                "{}: {} body is not JSON; passed on",
                judge.client,
                rule.name
            );
            return Verdict::Unchanged;
        };
        let (Some(text), Some(room)) = (text_at(&json, &rule.text), text_at(&json, &rule.room))
        else {
            return Verdict::Unchanged;
        };
        let local = match &rule.local {
            Some(Source::Pointer(p)) => text_at(&json, p),
            Some(Source::Header(h)) => request.header(h).map(str::to_string),
            None => None,
        }
        .unwrap_or_else(|| client_ip(&judge.client));
        let event = ChatEvent {
            direction: Direction::Outgoing,
            kind: EventType::Message,
            local_id: local,
            remote_id: room,
            group: true,
            prefix: String::new(),
            text,
            encrypted: false,
        };
        let decided = judge.event(rule.name.clone().into(), &event);
        if decided.blocked {
            return Verdict::Refuse {
                status: "403 Forbidden",
                content_type: "text/html; charset=utf-8",
                body: blocked_page(&judge.blocked_text(&decided)),
            };
        }
        if decided.text != event.text {
            if let Some(slot) = json.pointer_mut(&rule.text) {
                *slot = Value::String(decided.text.clone());
                return Verdict::Body(json.to_string().into_bytes());
            }
        }
        Verdict::Unchanged
    }
}

/// `10.0.0.2:5000` -> `10.0.0.2`; `[::1]:5` -> `::1`.
fn client_ip(client: &str) -> String {
    match client.rsplit_once(':') {
        Some((ip, _)) => ip.trim_start_matches('[').trim_end_matches(']').to_string(),
        None => client.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::icap::testing::{judge_for, judge_with, request};

    fn examples() -> WebChat {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/webchat-rules.txt");
        WebChat::load(&path).unwrap()
    }

    fn reqmod(head: &str) -> Exchange {
        Exchange {
            mode: Mode::Reqmod,
            request: Some(request(head)),
            response: None,
        }
    }

    fn run(chat: &WebChat, head: &str, body: &str, badwords: &str) -> (Verdict, Vec<String>) {
        let (config, filters) = judge_with(badwords, "badwords_block_count=1\n");
        let mut judge = judge_for(&config, filters, "10.0.0.2:40000");
        let exchange = reqmod(head);
        assert!(chat.wants(&exchange), "{head}");
        let verdict = chat.inspect(&exchange, body.as_bytes(), &mut judge);
        let logged = judge
            .records
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {} {}",
                    r.protocol, r.local_id, r.remote_id, r.filtered as u8, r.data
                )
            })
            .collect();
        (verdict, logged)
    }

    /// Request bodies as the Mattermost API v4 reference shows them (create a post).
    #[test]
    fn mattermost_posts() {
        let chat = examples();
        let head = "POST https://chat.example.com/api/v4/posts HTTP/1.1\r\nHost: chat.example.com\r\nAuthorization: Bearer tok\r\nContent-Type: application/json\r\n\r\n";
        let body = r#"{"channel_id":"4xp9fdt77pncbef59f4k1qe83o","message":"darn the build","root_id":""}"#;
        let (verdict, logged) = run(&chat, head, body, "darn\n");
        assert_eq!(
            logged,
            ["Mattermost 10.0.0.2 4xp9fdt77pncbef59f4k1qe83o 0 darn the build"]
        );
        let Verdict::Body(new) = verdict else {
            panic!("{verdict:?}")
        };
        let new: Value = serde_json::from_slice(&new).unwrap();
        assert_eq!(new["message"], "**** the build");
        assert_eq!(new["channel_id"], "4xp9fdt77pncbef59f4k1qe83o");
    }

    /// Rocket.Chat REST API: chat.sendMessage, with the user in X-User-Id.
    #[test]
    fn rocket_chat_send_message() {
        let chat = examples();
        let head = "POST http://rocket.example.org/api/v1/chat.sendMessage HTTP/1.1\r\nHost: rocket.example.org\r\nX-User-Id: aobEdbYhXfu5hkeqG\r\nX-Auth-Token: 9HqLlyZOugoStsXCUfD_0YdwnNnunAJF8V47U3QHXSq\r\n\r\n";
        let body = r#"{"message":{"rid":"GENERAL","msg":"darn darn"}}"#;
        let (verdict, logged) = run(&chat, head, body, "darn\n");
        assert_eq!(
            logged,
            ["Rocket.Chat aobedbyhxfu5hkeqg general 1 darn darn"]
        );
        let Verdict::Refuse { status, body, .. } = verdict else {
            panic!("{verdict:?}")
        };
        assert_eq!(status, "403 Forbidden");
        assert!(String::from_utf8(body)
            .unwrap()
            .contains("<p>The message or action was blocked (**** ****)</p>"));
    }

    #[test]
    fn other_requests_are_not_read() {
        let chat = examples();
        assert!(!chat.wants(&reqmod("GET /api/v4/posts HTTP/1.1\r\nHost: x\r\n\r\n")));
        assert!(!chat.wants(&reqmod("POST /api/v4/users HTTP/1.1\r\nHost: x\r\n\r\n")));
    }

    #[test]
    fn bad_rule_files_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.txt");
        let cases = [
            ("method = POST\n", "2: a rule starts with [name]"),
            ("[a/b]\n", "2: rule name \"a/b\" must be letters, digits, '-', '_' or '.' (it names a log directory)"),
            ("[Matrix]\n", "2: rule name \"Matrix\" is already used"),
            ("[x]\nmethod=POST\npath=/p\ntext=message\nroom=/r\n", "2: rule x: text \"message\" is not a JSON pointer (it starts with /)"),
            ("[x]\nmethod=POST\npath=/p\ntext=/m\n", "2: rule x has no room"),
            ("[x]\ncolour=blue\n", "3: unknown key \"colour\""),
        ];
        for (text, why) in cases {
            std::fs::write(&path, format!("# rules\n{text}")).unwrap();
            let e = WebChat::load(&path).unwrap_err();
            assert_eq!(e.to_string(), format!("{}:{why}", path.display()), "{text}");
        }
    }
}
