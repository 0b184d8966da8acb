//! Waiting for something a real program does, with a generous deadline. These
//! are not timing assertions: the deadline only turns a hang into a failure.

use std::time::{Duration, Instant};

/// Long enough for a real server or browser to start on a busy 2-core machine
/// running two tests at once.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Poll `check` until it returns `Some`, or fail with `what` and the last state.
pub fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if start.elapsed() > DEADLINE {
            anyhow::bail!("timed out after {DEADLINE:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Read a file that may not exist yet, as text.
pub fn read(path: &std::path::Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
