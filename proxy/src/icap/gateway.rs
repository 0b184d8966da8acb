//! The MSN HTTP gateway: MSN commands carried in HTTP bodies, for clients that
//! can only reach the web (`POST /gateway/gateway.dll`, Content-Type
//! `application/x-msn-messenger`).
//!
//! The first request of a session says `?Action=open&Server=NS|SB&IP=host`;
//! every response names the session in `X-MSN-Messenger: SessionID=...;
//! GW-IP=...`, and the client's next request (`?SessionID=...`, or
//! `?Action=poll&SessionID=...` with an empty body to fetch what waits) uses the
//! last one it got. One MSN core (the one port 1863 uses) follows each session:
//! request bodies are its outgoing bytes, response bodies its incoming ones, so
//! ids, events and rewrites are those of the relay. `Session=close` ends it.
//! A blocked command is left out of the body, as on port 1863.
//!
//! Notices (the filters' "logged" and "blocked" texts) go to the client as the
//! MSN core writes them for port 1863, in a response body of the session: those
//! for an incoming message just before it, those for what the client sent in
//! the answer to that request.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::BytesMut;
use imspector_protocols::{new_session, Direction, Frame, ProtocolKind, ProtocolSession, Rewrite};

use super::handler::{Exchange, Handler, Judge, Mode, Verdict};
use super::http::HttpRequest;

const PATH: &str = "/gateway/gateway.dll";
const CONTENT_TYPE: &str = "application/x-msn-messenger";
/// Sessions followed at once; the least recently used goes beyond this.
const MAX_SESSIONS: usize = 10_000;
/// Notice bytes a session holds for the client's next answer; more are dropped.
const MAX_PENDING_NOTICES: usize = 16 * 1024;

#[derive(Default)]
pub struct Gateway {
    sessions: Mutex<Sessions>,
}

#[derive(Default)]
struct Sessions {
    by_key: HashMap<String, Followed>,
    uses: u64,
}

/// One session's MSN core, when it was last used, and the notices that wait
/// for the next response to the client.
struct Followed {
    core: Box<dyn ProtocolSession>,
    used: u64,
    notices: Vec<u8>,
}

impl Sessions {
    fn take(&mut self, key: &str) -> (Box<dyn ProtocolSession>, Vec<u8>) {
        match self.by_key.remove(key) {
            Some(followed) => (followed.core, followed.notices),
            None => (
                new_session(ProtocolKind::Msn).expect("the MSN core exists"),
                Vec::new(),
            ),
        }
    }

    fn put(&mut self, key: String, core: Box<dyn ProtocolSession>, notices: Vec<u8>) {
        if self.by_key.len() >= MAX_SESSIONS {
            let oldest = self
                .by_key
                .iter()
                .min_by_key(|(_, followed)| followed.used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.by_key.remove(&oldest);
            }
        }
        self.uses += 1;
        let used = self.uses;
        self.by_key.insert(
            key,
            Followed {
                core,
                used,
                notices,
            },
        );
    }
}

/// The session a request belongs to: its SessionID, or for an opening request
/// the client and the server it opens (the response names the session).
fn session_key(request: &HttpRequest, client: &str) -> String {
    match request.query("SessionID") {
        Some(id) => format!("id:{id}"),
        None => {
            let ip = client.rsplit_once(':').map_or(client, |(ip, _)| ip);
            format!(
                "open:{ip}:{}:{}",
                request.query("Server").unwrap_or_default(),
                request.query("IP").unwrap_or_default()
            )
        }
    }
}

/// `SessionID=...; GW-IP=...` -> the SessionID; `None` with `Session=close` too.
fn next_session(header: &str) -> (Option<String>, bool) {
    let mut id = None;
    let mut closed = false;
    for part in header.split(';') {
        match part.trim().split_once('=') {
            Some(("SessionID", v)) => id = Some(format!("id:{}", v.trim())),
            Some(("Session", v)) if v.trim().eq_ignore_ascii_case("close") => closed = true,
            _ => {}
        }
    }
    (id, closed)
}

/// What a body became: the commands to send on, and the notices for the client.
struct Inspected {
    body: Vec<u8>,
    changed: bool,
    notices: Vec<u8>,
}

impl Gateway {
    /// Run `body` through `core` in `dir`. Incoming, the notices an event
    /// raises go just before its command; outgoing, they are returned.
    fn inspect_body(
        core: &mut dyn ProtocolSession,
        dir: Direction,
        body: &[u8],
        judge: &mut Judge<'_>,
    ) -> Inspected {
        core.set_now(judge.now);
        let mut buf = BytesMut::from(body);
        let feed = core.feed(dir, &mut buf);
        let mut out = Inspected {
            body: Vec::with_capacity(body.len()),
            changed: false,
            notices: Vec::new(),
        };
        for frame in feed.frames {
            match frame {
                Frame::Opaque(bytes) => out.body.extend_from_slice(&bytes),
                Frame::Pdu(pdu) => {
                    let mut blocked = false;
                    let mut new_text = None;
                    for event in &pdu.events {
                        let decided = judge.event(ProtocolKind::Msn.log_name().into(), event);
                        blocked |= decided.blocked;
                        if decided.text != event.text {
                            new_text = Some(decided.text);
                        }
                        for notice in &decided.notices {
                            if let Some(bytes) = core.notice_to_client(&event.remote_id, notice) {
                                out.notices.extend_from_slice(&bytes);
                            }
                        }
                    }
                    if dir == Direction::Incoming && !out.notices.is_empty() {
                        out.body.append(&mut out.notices);
                        out.changed = true;
                    }
                    match (blocked, new_text) {
                        (true, _) => out.changed = true,
                        (false, Some(text)) => {
                            match core.rewrite(dir, &pdu, Rewrite::Text(&text)) {
                                Some(bytes) => {
                                    out.body.extend_from_slice(&bytes);
                                    out.changed = true;
                                }
                                None => out.body.extend_from_slice(&pdu.bytes),
                            }
                        }
                        (false, None) => out.body.extend_from_slice(&pdu.bytes),
                    }
                }
            }
        }
        if let Some(stop) = feed.stop {
            log::info!(
                "{}: MSN gateway: {stop}; the rest of this body passes unread",
                judge.client
            );
        }
        // A command cut at the end of a body goes on as it is.
        out.body.extend_from_slice(&buf);
        out
    }
}

impl Handler for Gateway {
    fn wants(&self, exchange: &Exchange) -> bool {
        let Some(request) = &exchange.request else {
            return false;
        };
        if request.method != "POST" || request.path() != PATH {
            return false;
        }
        match (exchange.mode, &exchange.response) {
            (Mode::Reqmod, _) => true,
            (Mode::Respmod, Some(response)) => {
                response.status == 200
                    && response
                        .header("Content-Type")
                        .is_some_and(|t| t.starts_with(CONTENT_TYPE))
            }
            (Mode::Respmod, None) => false,
        }
    }

    fn inspect(&self, exchange: &Exchange, body: &[u8], judge: &mut Judge<'_>) -> Verdict {
        let Some(request) = &exchange.request else {
            return Verdict::Unchanged;
        };
        let key = session_key(request, &judge.client);
        let (mut core, mut notices) = self
            .sessions
            .lock()
            .expect("gateway lock poisoned")
            .take(&key);
        let (dir, next_key) = match (exchange.mode, &exchange.response) {
            (Mode::Respmod, Some(response)) => {
                let (next, closed) = response
                    .header("X-MSN-Messenger")
                    .map_or((None, false), next_session);
                (
                    Direction::Incoming,
                    if closed {
                        None
                    } else {
                        Some(next.unwrap_or_else(|| key.clone()))
                    },
                )
            }
            _ => (Direction::Outgoing, Some(key)),
        };
        let mut inspected = Self::inspect_body(core.as_mut(), dir, body, judge);
        if dir == Direction::Incoming && !notices.is_empty() {
            // What the client sent raised them: they answer it first.
            inspected.body.splice(0..0, notices.drain(..));
            inspected.changed = true;
        }
        if notices.len() + inspected.notices.len() > MAX_PENDING_NOTICES {
            log::info!(
                "{}: MSN gateway: notices waiting for the client's next answer are over {MAX_PENDING_NOTICES} bytes; dropped",
                judge.client
            );
        } else {
            notices.append(&mut inspected.notices);
        }
        if let Some(next_key) = next_key {
            self.sessions
                .lock()
                .expect("gateway lock poisoned")
                .put(next_key, core, notices);
        }
        if inspected.changed {
            Verdict::Body(inspected.body)
        } else {
            Verdict::Unchanged
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::config::Config;
    use crate::filter::FilterChain;
    use crate::icap::http::HttpResponse;
    use crate::icap::testing::{judge_for, judge_with, request};

    /// One exchange of a gateway session, as the MSN HTTP gateway documentation
    /// describes it: the request's query, its body, the response's session
    /// header and body.
    struct Step<'a> {
        query: &'a str,
        sent: &'a str,
        session: &'a str,
        received: &'a str,
    }

    fn exchange(mode: Mode, query: &str, session: &str) -> Exchange {
        let request = request(&format!(
            "POST http://gateway.messenger.hotmail.com/gateway/gateway.dll?{query} HTTP/1.1\r\nHost: gateway.messenger.hotmail.com\r\nContent-Type: application/x-msn-messenger\r\n\r\n"
        ));
        let response = HttpResponse::parse(Bytes::from(format!(
            "HTTP/1.1 200 OK\r\nX-MSN-Messenger: {session}\r\nContent-Type: application/x-msn-messenger\r\n\r\n"
        )))
        .unwrap();
        Exchange {
            mode,
            request: Some(request),
            response: (mode == Mode::Respmod).then_some(response),
        }
    }

    /// The judge of one client's transactions.
    fn judge(config: &Config, filters: Arc<FilterChain>) -> Judge<'_> {
        Judge {
            now: 1_700_000_000,
            ..judge_for(config, filters, "10.0.0.2:1025")
        }
    }

    fn msg(payload: &str) -> String {
        let payload = format!(
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n{payload}"
        );
        format!("MSG 3 N {}\r\n{payload}", payload.len())
    }

    #[test]
    fn a_switchboard_session_over_the_gateway() {
        let gw = Gateway::default();
        let (config, filters) = judge_with("darn\n", "badwords_block_count=1\n");
        let mut judge = judge(&config, filters);
        let hello = msg("hello bob");
        let darn = msg("darn");
        let payload =
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nhi alice";
        let incoming = format!("MSG bob@example.com Bob {}\r\n{payload}", payload.len());
        let steps = [
            Step {
                query: "Action=open&Server=SB&IP=207.46.108.38",
                sent: "USR 1 alice@example.com 17262740.1050826919.32308\r\n",
                session: "SessionID=40000000.11; GW-IP=207.46.110.10",
                received: "USR 1 OK alice@example.com Alice\r\n",
            },
            Step {
                query: "SessionID=40000000.11",
                sent: "CAL 2 bob@example.com\r\n",
                session: "SessionID=40000000.12; GW-IP=207.46.110.10",
                received: "CAL 2 RINGING 17262740\r\nJOI bob@example.com Bob\r\n",
            },
            Step {
                query: "SessionID=40000000.12",
                sent: &hello,
                session: "SessionID=40000000.13; GW-IP=207.46.110.10",
                received: "ACK 3\r\n",
            },
            Step {
                query: "Action=poll&SessionID=40000000.13",
                sent: "",
                session: "SessionID=40000000.14; GW-IP=207.46.110.10",
                received: &incoming,
            },
            Step {
                query: "SessionID=40000000.14",
                sent: &darn,
                session: "SessionID=40000000.15; GW-IP=207.46.110.10",
                received: "",
            },
        ];
        let mut verdicts = Vec::new();
        for step in &steps {
            let out = exchange(Mode::Reqmod, step.query, step.session);
            assert!(gw.wants(&out));
            verdicts.push(gw.inspect(&out, step.sent.as_bytes(), &mut judge));
            let back = exchange(Mode::Respmod, step.query, step.session);
            assert!(gw.wants(&back));
            assert_eq!(
                gw.inspect(&back, step.received.as_bytes(), &mut judge),
                Verdict::Unchanged
            );
        }
        let logged: Vec<String> = judge
            .records
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {} {} {}",
                    r.protocol, r.outgoing as u8, r.local_id, r.remote_id, r.filtered as u8, r.data
                )
            })
            .collect();
        assert_eq!(
            logged,
            [
                "MSN 1 alice@example.com bob@example.com 0 hello bob",
                "MSN 0 alice@example.com bob@example.com 0 hi alice",
                "MSN 1 alice@example.com bob@example.com 0 darn",
            ]
        );
        // The rewritten message has its new length.
        let Verdict::Body(rewritten) = &verdicts[4] else {
            panic!("{verdicts:?}")
        };
        assert_eq!(String::from_utf8_lossy(rewritten), msg("****"));
        assert_eq!(gw.sessions.lock().unwrap().by_key.len(), 1);
    }

    #[test]
    fn notices_go_into_the_answers() {
        let gw = Gateway::default();
        let dir = tempfile::tempdir().unwrap();
        let conf = format!(
            "responder_filename={}\nnotice_days=1\n",
            dir.path().join("responder.db").display()
        );
        let (config, filters) = judge_with("", &conf);
        let mut judge = judge(&config, filters);
        let mut round = |query: &str, session: &str, sent: &str, received: &str| {
            let out = exchange(Mode::Reqmod, query, session);
            assert_eq!(
                gw.inspect(&out, sent.as_bytes(), &mut judge),
                Verdict::Unchanged
            );
            gw.inspect(
                &exchange(Mode::Respmod, query, session),
                received.as_bytes(),
                &mut judge,
            )
        };
        round(
            "Action=open&Server=SB&IP=10.0.0.9",
            "SessionID=1.1; GW-IP=10.0.0.9",
            "ANS 1 alice@example.com 17262740.1050826919.32308 11752013\r\n",
            "IRO 1 1 1 bob@example.com Bob\r\nANS 1 OK\r\n",
        );
        // bob's first message: the "logged" notice goes just before it.
        let payload = "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nhi";
        let incoming = format!("MSG bob@example.com Bob {}\r\n{payload}", payload.len());
        let Verdict::Body(answer) = round(
            "Action=poll&SessionID=1.1",
            "SessionID=1.2; GW-IP=10.0.0.9",
            "",
            &incoming,
        ) else {
            panic!("no notice")
        };
        let notice = "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nMessage from IMSpector: -=Your activities are being logged=-";
        let notice = format!("MSG bob@example.com IMSpector {}\r\n{notice}", notice.len());
        assert_eq!(
            String::from_utf8_lossy(&answer),
            format!("{notice}{incoming}")
        );
        // Once per conversation: the next message passes unchanged.
        assert_eq!(
            round(
                "SessionID=1.2",
                "SessionID=1.3; GW-IP=10.0.0.9",
                &msg("hello"),
                ""
            ),
            Verdict::Unchanged
        );
    }

    #[test]
    fn session_headers() {
        assert_eq!(
            next_session("SessionID=1.2; GW-IP=1.2.3.4"),
            (Some("id:1.2".into()), false)
        );
        assert_eq!(
            next_session("Session=close; SessionID=1.2"),
            (Some("id:1.2".into()), true)
        );
    }
}
