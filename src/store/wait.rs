//! The rate-limit wait under way in this process, if any, so the progress line can say
//! "waiting for Discord's rate limit (4.2 s)" instead of showing a falling rate.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// When the longest wait now under way ends.
static WAITING_UNTIL: Mutex<Option<Instant>> = Mutex::new(None);

/// Notes that a request waits for the rate limit until `until`.
pub(crate) fn note_wait(until: Instant) {
    let mut w = WAITING_UNTIL.lock().unwrap_or_else(|e| e.into_inner());
    *w = Some(w.map_or(until, |u| u.max(until)));
}

/// How long the current rate-limit wait still lasts; `None` when nothing waits.
pub fn rate_limit_wait() -> Option<Duration> {
    let mut w = WAITING_UNTIL.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    match *w {
        Some(until) if until > now => Some(until - now),
        Some(_) => {
            *w = None;
            None
        }
        None => None,
    }
}
