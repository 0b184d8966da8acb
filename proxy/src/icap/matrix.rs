//! Matrix client-server API (spec v1.x; `r0`, `v3` and `unstable` paths).
//!
//! - Outgoing: `PUT /_matrix/client/*/rooms/{room}/send/{type}/{txn}` request
//!   bodies. `m.room.message`: `m.text` and `m.notice` are messages, `m.emote`
//!   is logged as `/me text`, `m.file`, `m.image`, `m.video` and `m.audio` are
//!   file transfers (`name size bytes`). `m.room.encrypted` is logged as
//!   `[encrypted: algorithm]`: the text is not readable here.
//! - Incoming: the timeline events of joined rooms in incremental `/sync`
//!   responses (with `since`), sent by someone else, logged as `sender: text`
//!   (like a group line on IRC). An initial sync only repeats recent history.
//! - The local user: `user_id` of `/login` responses (tied to the access token
//!   they hand out) and of `/account/whoami` responses (tied to the token of the
//!   request). A token never seen is logged as local id `unknown`.
//!
//! Remote id is the room id; every room counts as a group chat. A blocked
//! outgoing message is refused with 403 `M_FORBIDDEN` and the blocked notice's
//! text; a blocked incoming one is taken out of the `/sync` response. A rewritten
//! message gets the new `body`, and loses `formatted_body`, which would still
//! hold the original.

use std::collections::HashMap;
use std::sync::Mutex;

use imspector_protocols::{ChatEvent, Direction, EventType};
use serde_json::{json, Value};

use super::handler::{Exchange, Handler, Judge, Mode, Verdict};
use super::http::{is_plain_json, percent_decode, HttpRequest};

pub const PROTOCOL: &str = "Matrix";
/// Access tokens remembered; the oldest half is forgotten beyond this.
const MAX_TOKENS: usize = 10_000;
/// The local id for a token never seen in a login or whoami response.
const UNKNOWN_USER: &str = "unknown";

#[derive(Default)]
pub struct Matrix {
    /// Access token -> user id, with the order tokens were learned in.
    users: Mutex<Users>,
}

#[derive(Default)]
struct Users {
    by_token: HashMap<String, (String, u64)>,
    learned: u64,
}

impl Users {
    fn learn(&mut self, token: &str, user: &str) {
        if self.by_token.len() >= MAX_TOKENS && !self.by_token.contains_key(token) {
            let cutoff = self.learned.saturating_sub(MAX_TOKENS as u64 / 2);
            self.by_token.retain(|_, (_, when)| *when > cutoff);
        }
        self.learned += 1;
        self.by_token
            .insert(token.to_string(), (user.to_string(), self.learned));
    }
}

/// The API call a request makes, from its path.
#[derive(Debug, PartialEq, Eq)]
enum Call {
    Login,
    Whoami,
    Sync,
    Send { room: String, event_type: String },
}

fn call_of(request: &HttpRequest) -> Option<Call> {
    let rest = request.path().strip_prefix("/_matrix/client/")?;
    let mut segments = rest.split('/');
    let _version = segments.next()?;
    let segments: Vec<&str> = segments.collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("POST", ["login"]) => Some(Call::Login),
        ("GET", ["account", "whoami"]) => Some(Call::Whoami),
        ("GET", ["sync"]) => Some(Call::Sync),
        ("PUT", ["rooms", room, "send", event_type, _txn]) => Some(Call::Send {
            room: percent_decode(room),
            event_type: percent_decode(event_type),
        }),
        _ => None,
    }
}

/// The request's access token: the `Authorization: Bearer` header, or the
/// deprecated `access_token` query parameter.
fn token_of(request: &HttpRequest) -> Option<String> {
    if let Some(auth) = request.header("Authorization") {
        let (scheme, token) = auth.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("Bearer")
            .then(|| token.trim().to_string());
    }
    request.query("access_token").map(percent_decode)
}

/// What an event's content says, as logged.
struct Said {
    kind: EventType,
    prefix: String,
    text: String,
    /// The text may be rewritten (`content.body` of a text message).
    editable: bool,
    encrypted: bool,
}

fn said(event_type: &str, content: &Value) -> Option<Said> {
    let said = |kind, prefix: &str, text: String, editable| Said {
        kind,
        prefix: prefix.to_string(),
        text,
        editable,
        encrypted: false,
    };
    match event_type {
        "m.room.encrypted" => {
            let algorithm = content["algorithm"].as_str().unwrap_or("unknown");
            Some(Said {
                encrypted: true,
                ..said(
                    EventType::Message,
                    "",
                    format!("[encrypted: {algorithm}]"),
                    false,
                )
            })
        }
        "m.room.message" => {
            let body = content["body"].as_str()?.to_string();
            match content["msgtype"].as_str()? {
                "m.emote" => Some(said(EventType::Message, "/me ", body, true)),
                "m.file" | "m.image" | "m.video" | "m.audio" => {
                    let text = match content["info"]["size"].as_u64() {
                        Some(size) => format!("{body} {size} bytes"),
                        None => body,
                    };
                    Some(said(EventType::File, "", text, false))
                }
                _ => Some(said(EventType::Message, "", body, true)),
            }
        }
        _ => None,
    }
}

/// Put `text` in place of the content's body (and drop the HTML version).
fn rewrite_content(content: &mut Value, text: &str) {
    if let Some(map) = content.as_object_mut() {
        map.insert("body".into(), Value::String(text.to_string()));
        map.remove("formatted_body");
        map.remove("format");
    }
}

impl Matrix {
    fn user_of(&self, request: &HttpRequest) -> String {
        token_of(request)
            .and_then(|t| {
                let users = self.users.lock().expect("matrix users lock poisoned");
                users.by_token.get(&t).map(|(user, _)| user.clone())
            })
            .unwrap_or_else(|| UNKNOWN_USER.to_string())
    }

    fn send(
        &self,
        request: &HttpRequest,
        room: &str,
        event_type: &str,
        body: &[u8],
        judge: &mut Judge<'_>,
    ) -> Verdict {
        let Ok(mut content) = serde_json::from_slice::<Value>(body) else {
            log::debug!("{}: Matrix send body is not JSON; passed on", judge.client);
            return Verdict::Unchanged;
        };
        let Some(said) = said(event_type, &content) else {
            return Verdict::Unchanged;
        };
        let event = ChatEvent {
            direction: Direction::Outgoing,
            kind: said.kind,
            local_id: self.user_of(request),
            remote_id: room.to_string(),
            group: true,
            prefix: said.prefix,
            text: said.text,
            encrypted: said.encrypted,
        };
        let decided = judge.event(PROTOCOL.into(), &event);
        if decided.blocked {
            let answer = json!({"errcode": "M_FORBIDDEN", "error": judge.blocked_text(&decided)});
            return Verdict::Refuse {
                status: "403 Forbidden",
                content_type: "application/json",
                body: answer.to_string().into_bytes(),
            };
        }
        if said.editable && decided.text != event.text {
            rewrite_content(&mut content, &decided.text);
            return Verdict::Body(content.to_string().into_bytes());
        }
        Verdict::Unchanged
    }

    fn sync(&self, request: &HttpRequest, body: &[u8], judge: &mut Judge<'_>) -> Verdict {
        let Ok(mut sync) = serde_json::from_slice::<Value>(body) else {
            log::debug!(
                "{}: Matrix sync response is not JSON; passed on",
                judge.client
            );
            return Verdict::Unchanged;
        };
        let local = self.user_of(request);
        let mut changed = false;
        let Some(rooms) = sync
            .pointer_mut("/rooms/join")
            .and_then(Value::as_object_mut)
        else {
            return Verdict::Unchanged;
        };
        for (room, joined) in rooms.iter_mut() {
            let Some(events) = joined
                .pointer_mut("/timeline/events")
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            events.retain_mut(|event| {
                let sender = event["sender"].as_str().unwrap_or_default().to_string();
                let event_type = event["type"].as_str().unwrap_or_default().to_string();
                if sender.eq_ignore_ascii_case(&local) {
                    return true;
                }
                let Some(said) = said(&event_type, &event["content"]) else {
                    return true;
                };
                let chat = ChatEvent {
                    direction: Direction::Incoming,
                    kind: said.kind,
                    local_id: local.clone(),
                    remote_id: room.clone(),
                    group: true,
                    prefix: format!("{sender}: {}", said.prefix),
                    text: said.text,
                    encrypted: said.encrypted,
                };
                let decided = judge.event(PROTOCOL.into(), &chat);
                if decided.blocked {
                    changed = true;
                    return false;
                }
                if said.editable && decided.text != chat.text {
                    rewrite_content(&mut event["content"], &decided.text);
                    changed = true;
                }
                true
            });
        }
        if changed {
            Verdict::Body(sync.to_string().into_bytes())
        } else {
            Verdict::Unchanged
        }
    }

    /// `/login` and `/account/whoami` responses name the local user.
    fn learn(&self, request: &HttpRequest, call: &Call, body: &[u8]) {
        let Ok(answer) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        let Some(user) = answer["user_id"].as_str() else {
            return;
        };
        let token = match call {
            Call::Login => answer["access_token"].as_str().map(str::to_string),
            _ => token_of(request),
        };
        if let Some(token) = token {
            self.users
                .lock()
                .expect("matrix users lock poisoned")
                .learn(&token, user);
        }
    }
}

impl Handler for Matrix {
    fn wants(&self, exchange: &Exchange) -> bool {
        let Some(request) = &exchange.request else {
            return false;
        };
        let Some(call) = call_of(request) else {
            return false;
        };
        match (exchange.mode, &exchange.response, call) {
            (Mode::Reqmod, _, Call::Send { .. }) => true,
            // An initial sync (no `since`) repeats the rooms' recent history,
            // which was logged when it happened.
            (Mode::Respmod, Some(_), Call::Sync) if request.query("since").is_none() => false,
            (Mode::Respmod, Some(response), Call::Login | Call::Whoami | Call::Sync) => {
                response.status == 200 && is_plain_json(&response.headers)
            }
            _ => false,
        }
    }

    fn inspect(&self, exchange: &Exchange, body: &[u8], judge: &mut Judge<'_>) -> Verdict {
        let Some(request) = &exchange.request else {
            return Verdict::Unchanged;
        };
        match call_of(request) {
            Some(Call::Send { room, event_type }) if exchange.mode == Mode::Reqmod => {
                self.send(request, &room, &event_type, body, judge)
            }
            Some(Call::Sync) => self.sync(request, body, judge),
            Some(call @ (Call::Login | Call::Whoami)) => {
                self.learn(request, &call, body);
                Verdict::Unchanged
            }
            _ => Verdict::Unchanged,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::icap::testing::{judge_for, judge_with, request};

    fn put(path: &str, token: &str) -> HttpRequest {
        request(&format!(
            "PUT http://matrix.test:8008{path} HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n"
        ))
    }

    fn reqmod(request: HttpRequest) -> Exchange {
        Exchange {
            mode: Mode::Reqmod,
            request: Some(request),
            response: None,
        }
    }

    fn respmod(request: HttpRequest) -> Exchange {
        let response = super::super::http::HttpResponse::parse(Bytes::from_static(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n",
        ))
        .unwrap();
        Exchange {
            mode: Mode::Respmod,
            request: Some(request),
            response: Some(response),
        }
    }

    const SEND: &str = "/_matrix/client/v3/rooms/%21room%3Atest.local/send/m.room.message/t1";

    fn logged(judge: &Judge<'_>) -> Vec<String> {
        judge
            .records
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {} {} {}",
                    r.outgoing as u8,
                    r.kind.code(),
                    r.local_id,
                    r.remote_id,
                    r.filtered as u8,
                    r.data
                )
            })
            .collect()
    }

    #[test]
    fn the_user_comes_from_login_and_messages_are_logged_by_room() {
        let m = Matrix::default();
        let (config, filters) = judge_with("", "");
        let mut judge = judge_for(&config, filters, "10.0.0.2:0");
        let login = request("POST /_matrix/client/v3/login HTTP/1.1\r\nHost: m\r\n\r\n");
        assert!(m.wants(&respmod(login.clone())));
        let verdict = m.inspect(
            &respmod(login),
            br#"{"user_id":"@Alice:test.local","access_token":"tok1","device_id":"D"}"#,
            &mut judge,
        );
        assert_eq!(verdict, Verdict::Unchanged);
        let send = reqmod(put(SEND, "tok1"));
        assert!(m.wants(&send));
        for body in [
            r#"{"msgtype":"m.text","body":"hello bob"}"#,
            r#"{"msgtype":"m.emote","body":"waves"}"#,
            r#"{"msgtype":"m.file","body":"report.pdf","info":{"size":1234},"url":"mxc://x/y"}"#,
        ] {
            assert_eq!(
                m.inspect(&send, body.as_bytes(), &mut judge),
                Verdict::Unchanged
            );
        }
        let encrypted = reqmod(put(
            "/_matrix/client/v3/rooms/!room:test.local/send/m.room.encrypted/t2",
            "tok2",
        ));
        m.inspect(
            &encrypted,
            br#"{"algorithm":"m.megolm.v1.aes-sha2","ciphertext":"x"}"#,
            &mut judge,
        );
        assert_eq!(
            logged(&judge),
            [
                "1 1 @alice:test.local !room:test.local 0 hello bob",
                "1 1 @alice:test.local !room:test.local 0 /me waves",
                "1 2 @alice:test.local !room:test.local 0 report.pdf 1234 bytes",
                "1 1 unknown !room:test.local 0 [encrypted: m.megolm.v1.aes-sha2]",
            ]
        );
    }

    #[test]
    fn sync_logs_what_others_said_and_drops_what_is_blocked() {
        let m = Matrix::default();
        let (config, filters) = judge_with("darn\n", "badwords_block_count=1\n");
        let mut judge = judge_for(&config, filters, "10.0.0.2:0");
        let whoami = request(
            "GET /_matrix/client/v3/account/whoami HTTP/1.1\r\nAuthorization: Bearer t\r\n\r\n",
        );
        m.inspect(
            &respmod(whoami),
            br#"{"user_id":"@alice:test.local"}"#,
            &mut judge,
        );
        let initial =
            request("GET /_matrix/client/v3/sync HTTP/1.1\r\nAuthorization: Bearer t\r\n\r\n");
        assert!(!m.wants(&respmod(initial)));
        let sync = request("GET /_matrix/client/v3/sync?since=s1&timeout=30000 HTTP/1.1\r\nAuthorization: Bearer t\r\n\r\n");
        assert!(m.wants(&respmod(sync.clone())));
        let body = json!({"next_batch": "s2", "rooms": {"join": {"!r:test.local": {"timeline": {"events": [
            {"type": "m.room.message", "sender": "@alice:test.local", "content": {"msgtype": "m.text", "body": "mine"}},
            {"type": "m.room.message", "sender": "@bob:test.local", "content": {"msgtype": "m.text", "body": "hi alice"}},
            {"type": "m.room.message", "sender": "@bob:test.local", "content": {"msgtype": "m.text", "body": "darn it, darn"}},
            {"type": "m.room.member", "sender": "@bob:test.local", "content": {"membership": "join"}},
        ]}}}}});
        let verdict = m.inspect(&respmod(sync), body.to_string().as_bytes(), &mut judge);
        let Verdict::Body(new) = verdict else {
            panic!("{verdict:?}")
        };
        let new: Value = serde_json::from_slice(&new).unwrap();
        let events = new
            .pointer("/rooms/join/!r:test.local/timeline/events")
            .unwrap()
            .as_array()
            .unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(
            logged(&judge),
            [
                "0 1 @alice:test.local !r:test.local 0 @bob:test.local: hi alice",
                "0 1 @alice:test.local !r:test.local 1 @bob:test.local: darn it, darn",
            ]
        );
    }

    #[test]
    fn blocked_messages_are_refused_and_rewritten_ones_lose_their_html() {
        let m = Matrix::default();
        let (config, filters) = judge_with("darn\n", "badwords_block_count=1\n");
        let mut judge = judge_for(&config, filters, "c");
        let send = reqmod(put(SEND, "t"));
        let verdict = m.inspect(&send, br#"{"msgtype":"m.text","body":"darn","format":"org.matrix.custom.html","formatted_body":"<b>darn</b>"}"#, &mut judge);
        assert_eq!(
            verdict,
            Verdict::Body(br#"{"body":"****","msgtype":"m.text"}"#.to_vec())
        );
        let verdict = m.inspect(
            &send,
            br#"{"msgtype":"m.text","body":"darn darn"}"#,
            &mut judge,
        );
        assert_eq!(
            verdict,
            Verdict::Refuse {
                status: "403 Forbidden",
                content_type: "application/json",
                body: br#"{"errcode":"M_FORBIDDEN","error":"The message or action was blocked (**** ****)"}"#.to_vec(),
            }
        );
    }

    #[test]
    fn other_calls_are_not_read() {
        let m = Matrix::default();
        assert!(!m.wants(&reqmod(request(
            "GET /_matrix/client/v3/sync HTTP/1.1\r\n\r\n"
        ))));
        assert!(!m.wants(&reqmod(request(
            "PUT /other/rooms/x/send/m.room.message/t HTTP/1.1\r\n\r\n"
        ))));
        assert!(!m.wants(&respmod(request(
            "GET /_matrix/client/v3/profile/x HTTP/1.1\r\n\r\n"
        ))));
    }
}
