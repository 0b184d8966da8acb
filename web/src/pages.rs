//! What each URL shows, who may see it, and the audit record it leaves.
//!
//! | URL | page |
//! |-----|------|
//! | `/login` (GET, POST), `/logout` (POST) | signing in and out |
//! | `/` | protocols |
//! | `/p/{protocol}`, `/p/{protocol}/{local}`, `/p/{protocol}/{local}/{remote}` | local ids, remote ids, days |
//! | `/p/{protocol}/{local}/{remote}/{day}` | one conversation on one day |
//! | `/live/{protocol}/{local}/{remote}` and `/events/...` | the live view and its event stream |
//! | `/export/{csv,json}/{protocol}/{local}/{remote}/{day}` | a conversation as a file |
//! | `/search` | search by text, user, protocol and days |
//! | `/audit` | the audit log (admins) |
//!
//! Every page but `/login` and `/static/*` needs a session; every form carries
//! the session's CSRF token, and a request that changes something or searches
//! without it is refused.

use std::fmt::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeZone;
use hyper::body::Bytes;
use hyper::StatusCode;

use crate::audit::{Audit, Record};
use crate::auth::{self, Auth, Session, LOGIN_COOKIE, SESSION_COOKIE};
use crate::html::{esc, link_list, page, path, Viewer};
use crate::server::Req;
use crate::store::{
    Bounds, Conversation, Cursor, Day, Line, Query, Store, StoreError, MAX_DAY_LINES,
};
use crate::users;

/// How often the live view looks for new events.
const LIVE_POLL: Duration = Duration::from_millis(500);
/// A comment line keeps idle proxies from closing the event stream.
const LIVE_KEEPALIVE: Duration = Duration::from_secs(15);
const SEARCH_BOUNDS: Bounds = Bounds {
    max_hits: 500,
    max_time: Duration::from_secs(5),
};
const AUDIT_SHOWN: usize = 500;

pub enum Reply {
    Full {
        status: StatusCode,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    Stream {
        headers: Vec<(&'static str, String)>,
        rx: tokio::sync::mpsc::Receiver<Bytes>,
    },
}

impl Reply {
    pub fn text(status: StatusCode, text: &str) -> Reply {
        Reply::Full {
            status,
            headers: vec![("content-type", "text/plain; charset=utf-8".into())],
            body: format!("{text}\n").into_bytes(),
        }
    }

    fn html(status: StatusCode, body: String) -> Reply {
        Reply::Full {
            status,
            headers: vec![("content-type", "text/html; charset=utf-8".into())],
            body: body.into_bytes(),
        }
    }

    fn redirect(to: &str) -> Reply {
        Reply::Full {
            status: StatusCode::SEE_OTHER,
            headers: vec![("location", to.to_string())],
            body: Vec::new(),
        }
    }

    fn with_cookie(mut self, cookie: String) -> Reply {
        let (Reply::Full { headers, .. } | Reply::Stream { headers, .. }) = &mut self;
        headers.push(("set-cookie", cookie));
        self
    }
}

fn cookie(name: &str, value: &str, max_age: Option<u64>) -> String {
    let age = max_age.map_or(String::new(), |a| format!("; Max-Age={a}"));
    format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict{age}")
}

pub struct App {
    pub store: Arc<dyn Store>,
    pub auth: Auth,
    pub audit: Audit,
    pub users: PathBuf,
}

/// What went wrong while answering, as the user sees it.
enum Refusal {
    NotFound,
    Forbidden(&'static str),
    Failed(String),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Refusal::NotFound,
            StoreError::Failed(why) => Refusal::Failed(why),
        }
    }
}

type Answer = Result<Reply, Refusal>;

fn local_time(t: i64) -> String {
    chrono::Local
        .timestamp_opt(t, 0)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| t.to_string())
}

fn time_of_day(t: i64) -> String {
    chrono::Local
        .timestamp_opt(t, 0)
        .single()
        .map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_else(|| t.to_string())
}

fn direction(c: &Conversation, l: &Line) -> String {
    if l.outgoing {
        format!("{} → {}", c.local, c.remote)
    } else {
        format!("{} ← {}", c.local, c.remote)
    }
}

/// The table of a conversation's lines; `events` makes it the live view's.
fn lines_table(c: &Conversation, lines: &[Line], with_day: bool, events: Option<&str>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<table id="lines"{}><thead><tr><th>Time</th><th>Direction</th><th>Type</th><th>Text</th><th>Filtered</th><th>Client</th></tr></thead><tbody>"#,
        events.map_or(String::new(), |e| format!(r#" data-events="{}""#, esc(e)))
    );
    for l in lines {
        let mark = if l.filtered {
            format!(
                r#"<span class="mark">filtered</span> {}"#,
                esc(&l.categories)
            )
        } else {
            esc(&l.categories)
        };
        let _ = write!(
            out,
            r#"<tr class="{}{}"><td>{}</td><td class="dir">{}</td><td>{}</td><td class="text">{}</td><td>{}</td><td>{}</td></tr>"#,
            if l.outgoing { "out" } else { "in" },
            if l.filtered { " filtered" } else { "" },
            esc(&if with_day {
                local_time(l.timestamp)
            } else {
                time_of_day(l.timestamp)
            }),
            esc(&direction(c, l)),
            l.kind_name(),
            esc(&l.data),
            mark,
            esc(&l.client),
        );
    }
    out.push_str("</tbody></table>");
    out
}

fn line_json(c: &Conversation, l: &Line) -> serde_json::Value {
    serde_json::json!({
        "time": time_of_day(l.timestamp),
        "timestamp": l.timestamp,
        "client": l.client,
        "outgoing": l.outgoing,
        "direction": direction(c, l),
        "type": l.kind_name(),
        "filtered": l.filtered,
        "categories": l.categories,
        "text": l.data,
    })
}

/// One CSV field: always quoted, and a leading `= + - @` made harmless for
/// spreadsheets that would run it as a formula.
/// What a page says of a day with more events than it shows.
fn cut_note(cut: bool) -> String {
    if cut {
        format!(
            r#"<p class="error">This day has more events than are shown: only the first {MAX_DAY_LINES} (or 64 MiB of a log file).</p>"#
        )
    } else {
        String::new()
    }
}

fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A download's file name: only characters safe everywhere.
fn file_name(parts: &[&str], ext: &str) -> String {
    let base: String = parts
        .join("_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{base}.{ext}")
}

fn record(req: &Req, user: &str, action: &str, what: &str) -> Record {
    Record {
        timestamp: chrono::Utc::now().timestamp(),
        user: user.to_string(),
        client: req.client.to_string(),
        action: action.to_string(),
        what: what.to_string(),
    }
}

impl App {
    fn audit(&self, req: &Req, user: &str, action: &str, what: &str) -> Result<(), Refusal> {
        self.write_audit(record(req, user, action, what))
    }

    /// [`App::audit`] from async code: a database client may block.
    async fn audit_async(
        self: &Arc<Self>,
        req: &Req,
        user: &str,
        action: &str,
        what: &str,
    ) -> Result<(), Refusal> {
        let (app, r) = (self.clone(), record(req, user, action, what));
        tokio::task::spawn_blocking(move || app.write_audit(r))
            .await
            .unwrap_or_else(|_| Err(Refusal::Failed("the audit log failed".into())))
    }

    fn write_audit(&self, r: Record) -> Result<(), Refusal> {
        self.audit.record(r).map_err(|e| {
            log::error!("{e:#}");
            Refusal::Failed("the audit log cannot be written".into())
        })
    }

    /// A name of the listings as the page shows it: the id it stands for,
    /// with control and bidirectional characters written as escapes.
    fn shown(&self, name: &str) -> String {
        imspector::log::file::escape_text(&self.store.id_of(name))
    }

    fn shown_ids(&self, c: &Conversation) -> Conversation {
        Conversation {
            protocol: c.protocol.clone(),
            local: self.shown(&c.local),
            remote: self.shown(&c.remote),
        }
    }

    fn title(&self, local: &str, remote: &str) -> String {
        format!("{} and {}", self.shown(local), self.shown(remote))
    }

    pub async fn respond(self: &Arc<Self>, req: Req) -> Reply {
        let Some(segments) = req.segments.clone() else {
            return Reply::text(StatusCode::NOT_FOUND, "not found");
        };
        let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
        match (req.post, parts.as_slice()) {
            (false, ["static", "style.css"]) => return asset("text/css", crate::html::STYLE),
            (false, ["static", "live.js"]) => {
                return asset("text/javascript", crate::html::LIVE_JS)
            }
            (false, ["login"]) => return self.login_page(None),
            (true, ["login"]) => {
                let app = self.clone();
                return tokio::task::spawn_blocking(move || app.login(&req))
                    .await
                    .unwrap_or_else(|_| Reply::text(StatusCode::INTERNAL_SERVER_ERROR, "failed"));
            }
            _ => {}
        }
        let session = req
            .cookies
            .get(SESSION_COOKIE)
            .and_then(|id| self.auth.session(id).map(|s| (id.clone(), s)));
        let Some((session_id, session)) = session else {
            if let Err(r) = self.audit_async(&req, "-", "refused", &req.target).await {
                return self.refusal(r, None);
            }
            return Reply::redirect("/login");
        };
        if let (false, ["events", p, l, r]) = (req.post, parts.as_slice()) {
            let c = Conversation {
                protocol: p.to_string(),
                local: l.to_string(),
                remote: r.to_string(),
            };
            return match self.events(&req, &session, c).await {
                Ok(reply) => reply,
                Err(r) => self.refusal(r, Some(&session)),
            };
        }
        let app = self.clone();
        let s = session.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
            app.route(&req, &session_id, &s, &parts)
        })
        .await
        .unwrap_or_else(|_| Err(Refusal::Failed("the page failed".into())));
        answer.unwrap_or_else(|r| self.refusal(r, Some(&session)))
    }

    fn refusal(&self, r: Refusal, session: Option<&Session>) -> Reply {
        let (status, text) = match r {
            Refusal::NotFound => (StatusCode::NOT_FOUND, "Not found".to_string()),
            Refusal::Forbidden(why) => (StatusCode::FORBIDDEN, why.to_string()),
            Refusal::Failed(why) => (StatusCode::INTERNAL_SERVER_ERROR, why),
        };
        let viewer = session.map(|s| Viewer {
            name: &s.user.name,
            admin: s.user.admin,
            csrf: &s.csrf,
        });
        Reply::html(
            status,
            page(
                status.canonical_reason().unwrap_or("Error"),
                viewer.as_ref(),
                &format!(r#"<p class="error">{}</p>"#, esc(&text)),
            ),
        )
    }

    fn route(&self, req: &Req, session_id: &str, s: &Session, parts: &[&str]) -> Answer {
        let user = &s.user;
        let viewer = Viewer {
            name: &user.name,
            admin: user.admin,
            csrf: &s.csrf,
        };
        let csrf_ok = |from: &std::collections::HashMap<String, String>| {
            from.get("csrf").is_some_and(|t| auth::same(t, &s.csrf))
        };
        // An id the user may not see is answered as if it did not exist.
        let allowed = |local: &str| -> Result<(), Refusal> {
            if user.may_see(&self.store.id_of(local)) {
                Ok(())
            } else {
                self.audit(req, &user.name, "denied", &req.target)?;
                Err(Refusal::NotFound)
            }
        };
        let conv = |p: &str, l: &str, r: &str| Conversation {
            protocol: p.to_string(),
            local: l.to_string(),
            remote: r.to_string(),
        };
        match (req.post, parts) {
            (true, ["logout"]) => {
                if !csrf_ok(&req.form) {
                    self.audit(req, &user.name, "denied", "logout without its CSRF token")?;
                    return Err(Refusal::Forbidden(
                        "the form's CSRF token is missing or wrong",
                    ));
                }
                self.audit(req, &user.name, "logout", "")?;
                self.auth.end(session_id);
                Ok(Reply::redirect("/login").with_cookie(cookie(SESSION_COOKIE, "", Some(0))))
            }
            (true, _) => Err(Refusal::NotFound),
            (false, []) => {
                self.audit(req, &user.name, "view", "/")?;
                let items: Vec<(String, String)> = self
                    .store
                    .protocols()?
                    .into_iter()
                    .map(|p| (path(&["p", &p]), p))
                    .collect();
                let body = link_list(&items, "Nothing has been logged yet.");
                Ok(Reply::html(
                    StatusCode::OK,
                    page("Protocols", Some(&viewer), &body),
                ))
            }
            (false, ["p", p]) => {
                self.audit(req, &user.name, "view", &path(&[p]))?;
                let items: Vec<(String, String)> = self
                    .store
                    .local_ids(p)?
                    .into_iter()
                    .filter(|l| user.may_see(&self.store.id_of(l)))
                    .map(|l| (path(&["p", p, &l]), self.shown(&l)))
                    .collect();
                let body = link_list(&items, "No local id you may see.");
                Ok(Reply::html(
                    StatusCode::OK,
                    page(&format!("{p}: local ids"), Some(&viewer), &body),
                ))
            }
            (false, ["p", p, l]) => {
                allowed(l)?;
                self.audit(req, &user.name, "view", &path(&[p, l]))?;
                let items: Vec<(String, String)> = self
                    .store
                    .remote_ids(p, l)?
                    .into_iter()
                    .map(|r| (path(&["p", p, l, &r]), self.shown(&r)))
                    .collect();
                let body = link_list(&items, "No conversations.");
                Ok(Reply::html(
                    StatusCode::OK,
                    page(
                        &format!("{p}: {}: conversations", self.shown(l)),
                        Some(&viewer),
                        &body,
                    ),
                ))
            }
            (false, ["p", p, l, r]) => {
                allowed(l)?;
                self.audit(req, &user.name, "view", &path(&[p, l, r]))?;
                let mut days = self.store.days(&conv(p, l, r))?;
                days.reverse();
                let items: Vec<(String, String)> = days
                    .into_iter()
                    .map(|d| (path(&["p", p, l, r, &d]), d))
                    .collect();
                let body = format!(
                    r#"<p><a href="{}">Live view</a></p>{}"#,
                    esc(&path(&["live", p, l, r])),
                    link_list(&items, "No days.")
                );
                Ok(Reply::html(
                    StatusCode::OK,
                    page(&format!("{p}: {}", self.title(l, r)), Some(&viewer), &body),
                ))
            }
            (false, ["p", p, l, r, day]) => {
                allowed(l)?;
                let c = conv(p, l, r);
                let Day { lines, cut } = self.store.lines(&c, day)?;
                self.audit(req, &user.name, "view", &path(&[p, l, r, day]))?;
                let body = format!(
                    r#"<p><a href="{up}">All days</a> · <a href="{live}">Live view</a> · Export: <a href="{csv}">CSV</a> <a href="{json}">JSON</a></p>
<p class="note">{n} events</p>{cut}{table}"#,
                    cut = cut_note(cut),
                    up = esc(&path(&["p", p, l, r])),
                    live = esc(&path(&["live", p, l, r])),
                    csv = esc(&path(&["export", "csv", p, l, r, day])),
                    json = esc(&path(&["export", "json", p, l, r, day])),
                    n = lines.len(),
                    table = lines_table(&self.shown_ids(&c), &lines, false, None),
                );
                Ok(Reply::html(
                    StatusCode::OK,
                    page(
                        &format!("{p}: {} on {day}", self.title(l, r)),
                        Some(&viewer),
                        &body,
                    ),
                ))
            }
            (false, ["live", p, l, r]) => {
                allowed(l)?;
                let c = conv(p, l, r);
                // Known before reading today's lines, so nothing falls between.
                let end = self.store.end(&c)?;
                let today = crate::store::day_of(chrono::Utc::now().timestamp());
                let Day { lines, cut } = match self.store.lines(&c, &today) {
                    Ok(day) => day,
                    Err(StoreError::NotFound) => Day::default(),
                    Err(e) => return Err(e.into()),
                };
                self.audit(req, &user.name, "live", &path(&[p, l, r]))?;
                let events = format!(
                    "{}?after={}",
                    path(&["events", p, l, r]),
                    crate::html::seg(&end.0)
                );
                let body = format!(
                    r#"<p><a href="{up}">All days</a> · <span id="live-status" class="note">The live view needs JavaScript; without it, reload the page.</span></p>
{cut}{table}<script src="/static/live.js"></script>"#,
                    up = esc(&path(&["p", p, l, r])),
                    cut = cut_note(cut),
                    table = lines_table(&self.shown_ids(&c), &lines, false, Some(&events)),
                );
                Ok(Reply::html(
                    StatusCode::OK,
                    page(
                        &format!("{p}: {}, live", self.title(l, r)),
                        Some(&viewer),
                        &body,
                    ),
                ))
            }
            (false, ["export", format @ ("csv" | "json"), p, l, r, day]) => {
                allowed(l)?;
                let c = conv(p, l, r);
                let Day { lines, cut } = self.store.lines(&c, day)?;
                self.audit(
                    req,
                    &user.name,
                    "export",
                    &format!("{} {format}", path(&[p, l, r, day])),
                )?;
                let (content_type, body) = if *format == "csv" {
                    let mut out = String::from(
                        "time,timestamp,client,direction,type,filtered,categories,text\r\n",
                    );
                    for ln in &lines {
                        let fields = [
                            local_time(ln.timestamp),
                            ln.timestamp.to_string(),
                            ln.client.clone(),
                            if ln.outgoing { "out" } else { "in" }.to_string(),
                            ln.kind_name().to_string(),
                            u8::from(ln.filtered).to_string(),
                            ln.categories.clone(),
                            ln.data.clone(),
                        ];
                        let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                        out.push_str(&row.join(","));
                        out.push_str("\r\n");
                    }
                    ("text/csv; charset=utf-8", out)
                } else {
                    let json = serde_json::json!({
                        "protocol": c.protocol,
                        "local_id": self.store.id_of(&c.local),
                        "remote_id": self.store.id_of(&c.remote),
                        "day": day,
                        "cut": cut,
                        "events": lines.iter().map(|ln| line_json(&self.shown_ids(&c), ln)).collect::<Vec<_>>(),
                    });
                    ("application/json", format!("{json:#}\n"))
                };
                Ok(Reply::Full {
                    status: StatusCode::OK,
                    headers: vec![
                        ("content-type", content_type.to_string()),
                        (
                            "content-disposition",
                            format!(
                                "attachment; filename=\"{}\"",
                                file_name(&[p, l, r, day], format)
                            ),
                        ),
                    ],
                    body: body.into_bytes(),
                })
            }
            (false, ["search"]) => self.search(req, s, &viewer, csrf_ok(&req.query)),
            (false, ["audit"]) => {
                if !user.admin {
                    self.audit(req, &user.name, "denied", "/audit")?;
                    return Err(Refusal::Forbidden("only admins may read the audit log"));
                }
                self.audit(req, &user.name, "audit", "")?;
                let records = self
                    .audit
                    .newest(AUDIT_SHOWN)
                    .map_err(|e| Refusal::Failed(format!("audit log: {e}")))?;
                let mut body = format!(
                    r#"<p class="note">The newest {AUDIT_SHOWN} records, newest first.</p><table id="audit"><thead><tr><th>Time</th><th>User</th><th>Client</th><th>Action</th><th>What</th></tr></thead><tbody>"#
                );
                for r in records {
                    let _ = write!(
                        body,
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(&local_time(r.timestamp)),
                        esc(&r.user),
                        esc(&r.client),
                        esc(&r.action),
                        esc(&r.what)
                    );
                }
                body.push_str("</tbody></table>");
                Ok(Reply::html(
                    StatusCode::OK,
                    page("Audit log", Some(&viewer), &body),
                ))
            }
            _ => Err(Refusal::NotFound),
        }
    }

    fn search(&self, req: &Req, s: &Session, viewer: &Viewer<'_>, csrf_ok: bool) -> Answer {
        let field = |k: &str| {
            req.query
                .get(k)
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let q = Query {
            text: field("text"),
            user: field("user"),
            protocol: field("protocol"),
            from: field("from"),
            to: field("to"),
            locals: s.user.limits().to_vec(),
        };
        let asked = !(q.text.is_empty()
            && q.user.is_empty()
            && q.protocol.is_empty()
            && q.from.is_empty()
            && q.to.is_empty());
        let input = |name: &str, label: &str, value: &str, kind: &str| {
            format!(
                r#"<label>{label} <input type="{kind}" name="{name}" value="{}"></label>"#,
                esc(value)
            )
        };
        let mut body = format!(
            r#"<form class="search" method="get" action="/search"><input type="hidden" name="csrf" value="{}">{}{}{}{}{}<button>Search</button></form>"#,
            esc(&s.csrf),
            input("text", "Text", &q.text, "search"),
            input("user", "User", &q.user, "text"),
            input("protocol", "Protocol", &q.protocol, "text"),
            input("from", "From", &q.from, "date"),
            input("to", "To", &q.to, "date"),
        );
        if !asked {
            self.audit(req, &s.user.name, "view", "/search")?;
            return Ok(Reply::html(
                StatusCode::OK,
                page("Search", Some(viewer), &body),
            ));
        }
        if !csrf_ok {
            self.audit(req, &s.user.name, "denied", "search without its CSRF token")?;
            return Err(Refusal::Forbidden(
                "the form's CSRF token is missing or wrong",
            ));
        }
        for (key, day) in [("from", &q.from), ("to", &q.to)] {
            if !day.is_empty() && !crate::store::is_day(day) {
                body.push_str(&format!(
                    r#"<p class="error">{key}: not a day (YYYY-MM-DD)</p>"#
                ));
                return Ok(Reply::html(
                    StatusCode::BAD_REQUEST,
                    page("Search", Some(viewer), &body),
                ));
            }
        }
        let what = format!(
            "text={:?} user={:?} protocol={:?} from={:?} to={:?}",
            q.text, q.user, q.protocol, q.from, q.to
        );
        self.audit(req, &s.user.name, "search", &what)?;
        let hits = self
            .store
            .search(&q, &|local| s.user.may_see(local), SEARCH_BOUNDS)?;
        let _ = write!(body, r#"<p class="note">{} hits</p>"#, hits.hits.len());
        if let Some(why) = &hits.incomplete {
            let _ = write!(body, r#"<p class="error">{}</p>"#, esc(why));
        }
        body.push_str(r#"<table id="hits"><thead><tr><th>Time</th><th>Protocol</th><th>Conversation</th><th>Type</th><th>Text</th><th>Filtered</th></tr></thead><tbody>"#);
        for h in &hits.hits {
            let c = &h.conversation;
            let _ = write!(
                body,
                r#"<tr class="{}"><td>{}</td><td>{}</td><td><a href="{}">{}</a></td><td>{}</td><td class="text">{}</td><td>{}</td></tr>"#,
                if h.line.filtered { "filtered" } else { "" },
                esc(&local_time(h.line.timestamp)),
                esc(&c.protocol),
                esc(&path(&["p", &c.protocol, &c.local, &c.remote, &h.day])),
                esc(&direction(&self.shown_ids(c), &h.line)),
                h.line.kind_name(),
                esc(&h.line.data),
                if h.line.filtered { "filtered" } else { "" },
            );
        }
        body.push_str("</tbody></table>");
        Ok(Reply::html(
            StatusCode::OK,
            page("Search", Some(viewer), &body),
        ))
    }

    /// The live view's stream: each new line as a server-sent event `line`
    /// holding its JSON.
    async fn events(self: &Arc<Self>, req: &Req, s: &Session, c: Conversation) -> Answer {
        if !s.user.may_see(&self.store.id_of(&c.local)) {
            self.audit_async(req, &s.user.name, "denied", &req.target)
                .await?;
            return Err(Refusal::NotFound);
        }
        let after = req.query.get("after").cloned().unwrap_or_default();
        let store = self.store.clone();
        let first = {
            let c = c.clone();
            tokio::task::spawn_blocking(move || {
                // Checks the conversation exists, and the cursor is usable.
                store.days(&c)?;
                store
                    .after(&c, &Cursor(after.clone()))
                    .map(|_| Cursor(after))
            })
            .await
            .map_err(|_| Refusal::Failed("the stream failed".into()))??
        };
        self.audit_async(
            req,
            &s.user.name,
            "live",
            &path(&["events", &c.protocol, &c.local, &c.remote]),
        )
        .await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let shown = self.shown_ids(&c);
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut cursor = first;
            let mut quiet = Duration::ZERO;
            if tx
                .send(Bytes::from_static(b": following\n\n"))
                .await
                .is_err()
            {
                return;
            }
            loop {
                tokio::time::sleep(LIVE_POLL).await;
                let (st, cc, cur) = (store.clone(), c.clone(), cursor.clone());
                let found = tokio::task::spawn_blocking(move || st.after(&cc, &cur)).await;
                let Ok(Ok((lines, next))) = found else {
                    return;
                };
                cursor = next;
                let mut out = String::new();
                for l in &lines {
                    let _ = write!(out, "event: line\ndata: {}\n\n", line_json(&shown, l));
                }
                if out.is_empty() {
                    quiet += LIVE_POLL;
                    if quiet < LIVE_KEEPALIVE {
                        continue;
                    }
                    out.push_str(": keepalive\n\n");
                }
                quiet = Duration::ZERO;
                if tx.send(Bytes::from(out)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Reply::Stream {
            headers: vec![("content-type", "text/event-stream".into())],
            rx,
        })
    }

    fn login_page(&self, error: Option<&str>) -> Reply {
        let token = self.auth.login_form();
        let error = error.map_or(String::new(), |e| {
            format!(r#"<p class="error">{}</p>"#, esc(e))
        });
        let body = format!(
            r#"{error}<form method="post" action="/login"><input type="hidden" name="csrf" value="{token}">
<p><label>User <input name="user" autocomplete="username" required></label></p>
<p><label>Password <input type="password" name="password" autocomplete="current-password" required></label></p>
<p><button>Log in</button></p></form>"#
        );
        let status = if error.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        };
        Reply::html(status, page("Log in", None, &body)).with_cookie(cookie(
            LOGIN_COOKIE,
            &token,
            Some(600),
        ))
    }

    fn login(&self, req: &Req) -> Reply {
        let name = req.form.get("user").cloned().unwrap_or_default();
        let password = req.form.get("password").cloned().unwrap_or_default();
        let form_token = req.form.get("csrf").cloned().unwrap_or_default();
        let who = if users::valid_name(&name) {
            name.as_str()
        } else {
            "-"
        };
        let record = |action: &str, what: &str| self.audit(req, who, action, what);
        if !self.auth.take_login_form(
            req.cookies.get(LOGIN_COOKIE).map(String::as_str),
            &form_token,
        ) {
            if let Err(r) = record("login-refused", "no valid CSRF token") {
                return self.refusal(r, None);
            }
            return self.login_page(Some(
                "The form expired or was not sent by this site; try again.",
            ));
        }
        let keys = [format!("ip:{}", req.ip()), format!("user:{name}")];
        if !self.auth.may_try(&keys) {
            if let Err(r) = record("login-refused", "too many failed logins") {
                return self.refusal(r, None);
            }
            return Reply::html(
                StatusCode::TOO_MANY_REQUESTS,
                page(
                    "Log in",
                    None,
                    &format!(
                        r#"<p class="error">Too many failed logins; wait {} minutes.</p>"#,
                        auth::FAILURE_WINDOW.as_secs() / 60
                    ),
                ),
            );
        }
        let user = match users::load(&self.users) {
            Ok(all) => all.into_iter().find(|u| u.name == name),
            Err(e) => {
                log::error!("{e:#}");
                return Reply::text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the users file cannot be read",
                );
            }
        };
        match user.filter(|u| u.verify(&password)) {
            Some(user) => {
                if let Err(r) = record("login", "") {
                    return self.refusal(r, None);
                }
                let id = self.auth.start(user);
                Reply::redirect("/")
                    .with_cookie(cookie(SESSION_COOKIE, &id, None))
                    .with_cookie(cookie(LOGIN_COOKIE, "", Some(0)))
            }
            None => {
                self.auth.failed(&keys);
                if let Err(r) = record("login-failed", "") {
                    return self.refusal(r, None);
                }
                self.login_page(Some("Wrong user or password."))
            }
        }
    }
}

fn asset(content_type: &str, text: &'static str) -> Reply {
    Reply::Full {
        status: StatusCode::OK,
        headers: vec![("content-type", format!("{content_type}; charset=utf-8"))],
        body: text.as_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("a \"b\", c"), "\"a \"\"b\"\", c\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "\"'=HYPERLINK(1)\"");
        assert_eq!(
            file_name(&["IRC", "a/../b", "#c"], "csv"),
            "IRC_a_.._b__c.csv"
        );
    }
}
