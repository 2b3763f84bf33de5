//! Pacing by Discord's rate-limit headers (discord-api.md §3.1): per-bucket `Remaining` and
//! `Reset-After`, 429 `retry_after` (route or global), and the 50 requests/s global limit.
//! serenity's own ratelimiter cannot be used: the proxy only works with it off (§5.1).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use reqwest::header::HeaderMap;

/// The global limit for a bot: 50 requests per second (discord-api.md §3.1).
const GLOBAL_PER_SEC: usize = 50;

/// What a request is for, so requests that share a Discord bucket share our pacing.
/// Buckets are per route and per top-level resource (channel or guild).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouteKey {
    pub kind: &'static str,
    pub major: u64,
}

#[derive(Debug)]
struct Bucket {
    remaining: u64,
    /// When the current window ends; `None` once it has ended and no reply from the next one
    /// has come yet.
    reset_at: Option<Instant>,
    /// `X-RateLimit-Limit`: what a fresh window allows.
    limit: Option<u64>,
}

#[derive(Debug, Default)]
struct State {
    /// Discord's opaque bucket hash for each route, learnt from `X-RateLimit-Bucket`.
    bucket_of: HashMap<RouteKey, String>,
    buckets: HashMap<(String, u64), Bucket>,
    /// Requests sent per route so far: a reply's `Remaining` was counted before the requests
    /// sent after it, which the server has (or will have) counted too.
    sent: HashMap<RouteKey, u64>,
    global_until: Option<Instant>,
    recent: VecDeque<Instant>,
}

/// A request's place among those sent on its route, and when it left, for reading its reply.
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    seq: u64,
    sent_at: Instant,
}

impl State {
    fn bucket_name(&self, key: &RouteKey) -> (String, u64) {
        let name = self
            .bucket_of
            .get(key)
            .cloned()
            .unwrap_or_else(|| key.kind.to_string());
        (name, key.major)
    }

    /// How long to wait before sending, or a ticket after taking a slot.
    fn try_take(&mut self, key: &RouteKey, now: Instant) -> Result<Ticket, Duration> {
        if let Some(until) = self.global_until.filter(|u| *u > now) {
            return Err(until - now);
        }
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= GLOBAL_PER_SEC {
            return Err(Duration::from_secs(1) - now.duration_since(self.recent[0]));
        }
        let name = self.bucket_name(key);
        if let Some(b) = self.buckets.get_mut(&name) {
            if b.reset_at.is_some_and(|r| r <= now) {
                // The window ended: a fresh one allows `limit`; without it nothing is known.
                match b.limit {
                    Some(limit) => (b.remaining, b.reset_at) = (limit, None),
                    None => drop(self.buckets.remove(&name)),
                }
            }
        }
        if let Some(b) = self.buckets.get_mut(&name) {
            if b.remaining == 0 {
                // With the reset still unknown, a reply will tell it soon: look again shortly.
                return Err(b.reset_at.map_or(Duration::from_millis(50), |r| r - now));
            }
            b.remaining -= 1;
        }
        self.recent.push_back(now);
        let sent = self.sent.entry(*key).or_default();
        *sent += 1;
        Ok(Ticket {
            seq: *sent,
            sent_at: now,
        })
    }
}

#[derive(Debug, Default)]
pub struct RateLimiter {
    state: Mutex<State>,
}

impl RateLimiter {
    /// Waits until a request on `key` may be sent without being rate limited.
    pub async fn acquire(&self, key: &RouteKey) -> Ticket {
        loop {
            let taken = self.state.lock().unwrap().try_take(key, Instant::now());
            match taken {
                Ok(ticket) => return ticket,
                Err(d) => {
                    if d > Duration::from_secs(1) {
                        super::wait::note_wait(Instant::now() + d);
                    }
                    tokio::time::sleep(d.max(Duration::from_millis(1))).await
                }
            }
        }
    }

    /// Learns the bucket state from the headers of the reply to request `ticket`.
    pub fn observe(&self, key: &RouteKey, ticket: Ticket, headers: &HeaderMap) {
        let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let remaining = h("x-ratelimit-remaining").and_then(|v| v.parse::<u64>().ok());
        let reset_after = h("x-ratelimit-reset-after").and_then(|v| v.parse::<f64>().ok());
        let (Some(remaining), Some(reset_after)) = (remaining, reset_after) else {
            return;
        };
        let limit = h("x-ratelimit-limit").and_then(|v| v.parse::<u64>().ok());
        let now = Instant::now();
        let reset_at = now + secs(reset_after);
        let mut st = self.state.lock().unwrap();
        // The server counted this request before the ones sent after it; count those too.
        let sent_since = st.sent.get(key).map_or(0, |n| n.saturating_sub(ticket.seq));
        let remaining = remaining.saturating_sub(sent_since);
        if let Some(hash) = h("x-ratelimit-bucket") {
            st.bucket_of.insert(*key, hash.to_string());
        }
        let name = st.bucket_name(key);
        let bucket = st.buckets.entry(name).or_insert(Bucket {
            remaining,
            reset_at: Some(reset_at),
            limit,
        });
        bucket.limit = limit.or(bucket.limit);
        match bucket.reset_at {
            // Sent after the window we knew had ended: this reply describes a new one.
            Some(known) if ticket.sent_at >= known => {
                (bucket.remaining, bucket.reset_at) = (remaining, Some(reset_at));
            }
            // Replies within one window arrive out of order: keep the lowest count.
            Some(_) => bucket.remaining = bucket.remaining.min(remaining),
            // The first reply of a window we opened ourselves after a reset.
            None => {
                bucket.remaining = bucket.remaining.min(remaining);
                bucket.reset_at = Some(reset_at);
            }
        }
    }

    /// Holds back the bucket (or every request, when `global`) for `retry_after`.
    pub fn penalize(&self, key: &RouteKey, retry_after: Duration, global: bool) {
        let until = Instant::now() + retry_after;
        let mut st = self.state.lock().unwrap();
        if global {
            st.global_until = Some(st.global_until.map_or(until, |u| u.max(until)));
            return;
        }
        let name = st.bucket_name(key);
        let limit = st.buckets.get(&name).and_then(|b| b.limit);
        st.buckets.insert(
            name,
            Bucket {
                remaining: 0,
                reset_at: Some(until),
                limit,
            },
        );
    }
}

/// Seconds as a duration; negative or absurd values are clamped (a bad header must not panic).
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(if s.is_finite() {
        s.clamp(0.0, 3600.0)
    } else {
        1.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(remaining: &str, reset_after: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "x-ratelimit-remaining",
            HeaderValue::from_str(remaining).unwrap(),
        );
        h.insert(
            "x-ratelimit-reset-after",
            HeaderValue::from_str(reset_after).unwrap(),
        );
        h.insert("x-ratelimit-bucket", HeaderValue::from_static("abcd"));
        h
    }

    const KEY: RouteKey = RouteKey {
        kind: "create",
        major: 7,
    };

    #[tokio::test(start_paused = true)]
    async fn waits_for_reset_when_bucket_is_empty() {
        let rl = RateLimiter::default();
        rl.observe(
            &KEY,
            Ticket {
                seq: 0,
                sent_at: Instant::now(),
            },
            &headers("0", "2.5"),
        );
        let start = tokio::time::Instant::now();
        rl.acquire(&KEY).await;
        assert!(
            start.elapsed() >= Duration::from_millis(2400),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn remaining_counts_down_and_other_channels_are_separate() {
        let rl = RateLimiter::default();
        rl.observe(
            &KEY,
            Ticket {
                seq: 0,
                sent_at: Instant::now(),
            },
            &headers("1", "5"),
        );
        let now = Instant::now();
        let mut st = rl.state.lock().unwrap();
        assert!(st.try_take(&KEY, now).is_ok());
        assert!(st.try_take(&KEY, now).is_err());
        let other = RouteKey {
            kind: "create",
            major: 8,
        };
        assert!(st.try_take(&other, now).is_ok());
    }

    #[test]
    fn global_penalty_blocks_every_route() {
        let rl = RateLimiter::default();
        rl.penalize(&KEY, Duration::from_secs(3), true);
        let other = RouteKey {
            kind: "get",
            major: 1,
        };
        assert!(rl
            .state
            .lock()
            .unwrap()
            .try_take(&other, Instant::now())
            .is_err());
    }

    #[test]
    fn global_limit_is_fifty_per_second() {
        let st = &mut State::default();
        let now = Instant::now();
        for i in 0..50 {
            let k = RouteKey {
                kind: "get",
                major: i,
            };
            assert!(st.try_take(&k, now).is_ok());
        }
        assert!(st
            .try_take(
                &RouteKey {
                    kind: "get",
                    major: 99
                },
                now
            )
            .is_err());
    }

    #[test]
    fn requests_sent_after_a_reply_count_against_its_remaining() {
        let rl = RateLimiter::default();
        let now = Instant::now();
        // Four requests go out before any reply; the first reply says 4 of 5 are left, but
        // the three sent after it were counted by the server too: one is left, not four.
        let tickets: Vec<Ticket> = (0..4)
            .map(|_| rl.state.lock().unwrap().try_take(&KEY, now).unwrap())
            .collect();
        rl.observe(&KEY, tickets[0], &headers("4", "5"));
        let mut st = rl.state.lock().unwrap();
        assert!(st.try_take(&KEY, now).is_ok());
        assert!(st.try_take(&KEY, now).is_err());
    }

    #[test]
    fn a_new_window_allows_the_limit_then_waits_for_replies() {
        let rl = RateLimiter::default();
        let mut h = headers("0", "1");
        h.insert(
            "x-ratelimit-limit",
            reqwest::header::HeaderValue::from_static("2"),
        );
        rl.observe(
            &KEY,
            Ticket {
                seq: 0,
                sent_at: Instant::now(),
            },
            &h,
        );
        let later = Instant::now() + Duration::from_secs(2);
        let mut st = rl.state.lock().unwrap();
        assert!(st.try_take(&KEY, later).is_ok());
        assert!(st.try_take(&KEY, later).is_ok());
        let wait = st.try_take(&KEY, later).unwrap_err();
        assert!(
            wait <= Duration::from_millis(50),
            "not a whole window: {wait:?}"
        );
    }
}
