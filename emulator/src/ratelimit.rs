//! Rate-limit buckets per (route kind, channel), the global per-second limit, and their headers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::config::RateLimits;
use crate::snowflake::now_ms;

/// Route kinds; each has its own bucket per top-level resource (discord-api.md §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BucketKind {
    CreateMessage,
    ListMessages,
    GetMessage,
    DeleteMessage,
    BulkDelete,
    GetChannel,
    GetGuild,
    CurrentUser,
    RefreshUrls,
}

/// What goes into the `X-RateLimit-*` headers of one response.
#[derive(Debug, Clone)]
pub struct BucketState {
    pub limit: u32,
    pub remaining: u32,
    pub reset_after: f64,
    pub bucket: String,
}

/// A refusal: how long to wait and whether the global limit caused it.
#[derive(Debug, Clone, Copy)]
pub struct Limited {
    pub retry_after: f64,
    pub global: bool,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
}

impl Window {
    /// Counts one request in a fixed window; `Err(wait)` when the window is full.
    fn hit(&mut self, limit: u32, period: Duration, now: Instant) -> Result<(), Duration> {
        if now.duration_since(self.start) >= period {
            *self = Window {
                start: now,
                count: 0,
            };
        }
        if self.count >= limit {
            return Err(period.saturating_sub(now.duration_since(self.start)));
        }
        self.count += 1;
        Ok(())
    }

    /// Starts a new window once the old one has run out.
    fn roll(&mut self, period: Duration, now: Instant) {
        if now.duration_since(self.start) >= period {
            *self = Window {
                start: now,
                count: 0,
            };
        }
    }

    fn reset_after(&self, period: Duration, now: Instant) -> f64 {
        period
            .saturating_sub(now.duration_since(self.start))
            .as_secs_f64()
    }
}

#[derive(Debug)]
pub struct RateLimiter {
    limits: Option<RateLimits>,
    buckets: HashMap<(BucketKind, u64), Window>,
    global: Window,
}

impl RateLimiter {
    pub fn new(limits: Option<RateLimits>) -> Self {
        let now = Instant::now();
        RateLimiter {
            limits,
            buckets: HashMap::new(),
            global: Window {
                start: now,
                count: 0,
            },
        }
    }

    /// Counts a request against the global limit and its bucket. A refused request uses up nothing.
    pub fn check(&mut self, kind: BucketKind, major: u64) -> (BucketState, Option<Limited>) {
        let Some(limits) = self.limits else {
            // Unlimited, but the headers stay numerically valid: serenity re-sends on parse errors (§5.2).
            let state = BucketState {
                limit: 10_000,
                remaining: 9_999,
                reset_after: 1.0,
                bucket: bucket_hash(kind),
            };
            return (state, None);
        };
        let (limit, period) = match kind {
            BucketKind::CreateMessage => limits.create_message,
            _ => limits.other,
        };
        let now = Instant::now();
        let mut window = self.buckets.get(&(kind, major)).copied().unwrap_or(Window {
            start: now,
            count: 0,
        });
        let global = self
            .global
            .hit(limits.global_per_sec, Duration::from_secs(1), now);
        let limited = match global {
            Err(wait) => Some(Limited {
                retry_after: wait.as_secs_f64(),
                global: true,
            }),
            Ok(()) => {
                let verdict = window.hit(limit, period, now).err();
                self.buckets.insert((kind, major), window);
                verdict.map(|wait| Limited {
                    retry_after: wait.as_secs_f64(),
                    global: false,
                })
            }
        };
        window.roll(period, now);
        let state = BucketState {
            limit,
            remaining: limit.saturating_sub(window.count),
            reset_after: window.reset_after(period, now),
            bucket: bucket_hash(kind),
        };
        (state, limited)
    }
}

/// Opaque and stable per route kind; like Discord's, it leaves out the top-level resource.
pub fn bucket_hash(kind: BucketKind) -> String {
    hex::encode(&Sha256::digest(format!("{kind:?}").as_bytes())[..16])
}

/// Adds `X-RateLimit-Limit/-Remaining/-Reset/-Reset-After/-Bucket` (discord-api.md §3.1).
pub fn add_headers(headers: &mut HeaderMap, s: &BucketState) {
    let reset = now_ms() as f64 / 1000.0 + s.reset_after;
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put("x-ratelimit-limit", s.limit.to_string());
    put("x-ratelimit-remaining", s.remaining.to_string());
    put("x-ratelimit-reset", format!("{reset:.3}"));
    put("x-ratelimit-reset-after", format!("{:.3}", s.reset_after));
    put("x-ratelimit-bucket", s.bucket.clone());
}

/// The 429 of discord-api.md §3.1: JSON body, `Retry-After` rounded up, `X-RateLimit-Scope`.
pub fn too_many_requests(limited: Limited) -> Response {
    let body = serde_json::json!({
        "message": "You are being rate limited.",
        "retry_after": (limited.retry_after * 1000.0).ceil() / 1000.0,
        "global": limited.global,
    });
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    let h = resp.headers_mut();
    h.insert(
        "retry-after",
        HeaderValue::from(limited.retry_after.ceil() as u64),
    );
    h.insert(
        "x-ratelimit-scope",
        HeaderValue::from_static(if limited.global { "global" } else { "user" }),
    );
    if limited.global {
        h.insert("x-ratelimit-global", HeaderValue::from_static("true"));
    }
    resp
}
