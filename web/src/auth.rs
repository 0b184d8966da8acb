//! Sessions, CSRF tokens and the login rate limit, all in memory: a restart
//! logs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::users::User;

pub const SESSION_COOKIE: &str = "imspector_session";
/// Names the login form's token before there is a session.
pub const LOGIN_COOKIE: &str = "imspector_login";
/// A session ends this long after the login, used or not.
const SESSION_LIFE: Duration = Duration::from_secs(8 * 3600);
/// A login form must be sent back within this time.
const LOGIN_FORM_LIFE: Duration = Duration::from_secs(600);
/// Failed logins allowed per client address and per user name in a window.
pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(300);
/// Bounds on what anonymous requests can make us keep.
const MAX_LOGIN_FORMS: usize = 10_000;
const MAX_TRACKED: usize = 10_000;

/// A random token: 32 bytes as hex.
pub fn token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compare without an early exit, so timing tells nothing about a token.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf: String,
    started: Instant,
}

#[derive(Default)]
pub struct Auth {
    sessions: Mutex<HashMap<String, Session>>,
    /// Login form tokens and when they were handed out.
    login_forms: Mutex<HashMap<String, Instant>>,
    /// Recent failed logins per key (`ip:...`, `user:...`).
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl Auth {
    pub fn session(&self, id: &str) -> Option<Session> {
        let mut sessions = self.sessions.lock().expect("session lock");
        match sessions.get(id) {
            Some(s) if s.started.elapsed() < SESSION_LIFE => Some(s.clone()),
            Some(_) => {
                sessions.remove(id);
                None
            }
            None => None,
        }
    }

    /// A new session for `user`: its cookie value.
    pub fn start(&self, user: User) -> String {
        let id = token();
        let mut sessions = self.sessions.lock().expect("session lock");
        sessions.retain(|_, s| s.started.elapsed() < SESSION_LIFE);
        sessions.insert(
            id.clone(),
            Session {
                user,
                csrf: token(),
                started: Instant::now(),
            },
        );
        id
    }

    pub fn end(&self, id: &str) {
        self.sessions.lock().expect("session lock").remove(id);
    }

    /// A token for one login form.
    pub fn login_form(&self) -> String {
        let t = token();
        let mut forms = self.login_forms.lock().expect("login lock");
        forms.retain(|_, at| at.elapsed() < LOGIN_FORM_LIFE);
        if forms.len() >= MAX_LOGIN_FORMS {
            let oldest = forms
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                forms.remove(&k);
            }
        }
        forms.insert(t.clone(), Instant::now());
        t
    }

    /// True once for a login form token we handed out that the browser sent
    /// back in both the cookie and the form.
    pub fn take_login_form(&self, cookie: Option<&str>, form: &str) -> bool {
        let Some(cookie) = cookie else {
            return false;
        };
        if !same(cookie, form) {
            return false;
        }
        let mut forms = self.login_forms.lock().expect("login lock");
        matches!(forms.remove(form), Some(at) if at.elapsed() < LOGIN_FORM_LIFE)
    }

    /// Whether `keys` may try to log in now.
    pub fn may_try(&self, keys: &[String]) -> bool {
        let mut failures = self.failures.lock().expect("failure lock");
        keys.iter().all(|k| {
            let recent = failures.entry(k.clone()).or_default();
            recent.retain(|at| at.elapsed() < FAILURE_WINDOW);
            recent.len() < MAX_FAILURES
        })
    }

    pub fn failed(&self, keys: &[String]) {
        let mut failures = self.failures.lock().expect("failure lock");
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, v| v.iter().any(|at| at.elapsed() < FAILURE_WINDOW));
        }
        for k in keys {
            failures.entry(k.clone()).or_default().push(Instant::now());
        }
    }
}
