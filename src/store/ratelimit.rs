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
    reset_at: Instant,
}

#[derive(Debug, Default)]
struct State {
    /// Discord's opaque bucket hash for each route, learnt from `X-RateLimit-Bucket`.
    bucket_of: HashMap<RouteKey, String>,
    buckets: HashMap<(String, u64), Bucket>,
    global_until: Option<Instant>,
    recent: VecDeque<Instant>,
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

    /// How long to wait before sending, or `None` after taking a slot.
    fn try_take(&mut self, key: &RouteKey, now: Instant) -> Option<Duration> {
        if let Some(until) = self.global_until.filter(|u| *u > now) {
            return Some(until - now);
        }
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= GLOBAL_PER_SEC {
            return Some(Duration::from_secs(1) - now.duration_since(self.recent[0]));
        }
        let name = self.bucket_name(key);
        if let Some(b) = self.buckets.get_mut(&name) {
            if b.reset_at <= now {
                self.buckets.remove(&name);
            } else if b.remaining == 0 {
                return Some(b.reset_at - now);
            } else {
                b.remaining -= 1;
            }
        }
        self.recent.push_back(now);
        None
    }
}

#[derive(Debug, Default)]
pub struct RateLimiter {
    state: Mutex<State>,
}

impl RateLimiter {
    /// Waits until a request on `key` may be sent without being rate limited.
    pub async fn acquire(&self, key: &RouteKey) {
        loop {
            let wait = self.state.lock().unwrap().try_take(key, Instant::now());
            match wait {
                None => return,
                Some(d) => tokio::time::sleep(d.max(Duration::from_millis(1))).await,
            }
        }
    }

    /// Learns the bucket state from a response's headers.
    pub fn observe(&self, key: &RouteKey, headers: &HeaderMap) {
        let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let remaining = h("x-ratelimit-remaining").and_then(|v| v.parse::<u64>().ok());
        let reset_after = h("x-ratelimit-reset-after").and_then(|v| v.parse::<f64>().ok());
        let (Some(remaining), Some(reset_after)) = (remaining, reset_after) else {
            return;
        };
        let now = Instant::now();
        let reset_at = now + secs(reset_after);
        let mut st = self.state.lock().unwrap();
        if let Some(hash) = h("x-ratelimit-bucket") {
            st.bucket_of.insert(*key, hash.to_string());
        }
        let name = st.bucket_name(key);
        let bucket = st.buckets.entry(name).or_insert(Bucket {
            remaining,
            reset_at,
        });
        // Replies to concurrent requests arrive out of order: within one window keep the
        // lowest count seen; a later window replaces it.
        if bucket.reset_at > now && reset_at <= bucket.reset_at + Duration::from_millis(50) {
            bucket.remaining = bucket.remaining.min(remaining);
        } else {
            *bucket = Bucket {
                remaining,
                reset_at,
            };
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
        st.buckets.insert(
            name,
            Bucket {
                remaining: 0,
                reset_at: until,
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
        rl.observe(&KEY, &headers("0", "2.5"));
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
        rl.observe(&KEY, &headers("1", "5"));
        let now = Instant::now();
        let mut st = rl.state.lock().unwrap();
        assert_eq!(st.try_take(&KEY, now), None);
        assert!(st.try_take(&KEY, now).is_some());
        let other = RouteKey {
            kind: "create",
            major: 8,
        };
        assert_eq!(st.try_take(&other, now), None);
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
            .is_some());
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
            assert_eq!(st.try_take(&k, now), None);
        }
        assert!(st
            .try_take(
                &RouteKey {
                    kind: "get",
                    major: 99
                },
                now
            )
            .is_some());
    }
}
