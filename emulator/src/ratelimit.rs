//! Rate-limit buckets per (route kind, channel or webhook), the global per-second limits, the
//! hidden per-channel webhook cap, and their headers.

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
    CreateWebhook,
    ListWebhooks,
    /// The token routes, keyed by webhook id.
    GetWebhook,
    DeleteWebhook,
    ExecuteWebhook,
    GetWebhookMessage,
    EditWebhookMessage,
    DeleteWebhookMessage,
}

impl BucketKind {
    /// Token routes: limited per webhook and against the webhook global, not the bot's.
    fn is_webhook_token_route(self) -> bool {
        matches!(
            self,
            BucketKind::GetWebhook
                | BucketKind::DeleteWebhook
                | BucketKind::ExecuteWebhook
                | BucketKind::GetWebhookMessage
                | BucketKind::EditWebhookMessage
                | BucketKind::DeleteWebhookMessage
        )
    }
}

/// `X-RateLimit-Scope` of a 429 (discord-api.md §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The route's own bucket.
    User,
    /// The global limit.
    Global,
    /// A limit shared with others, here the hidden per-channel webhook cap.
    Shared,
}

impl Scope {
    pub fn header(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Global => "global",
            Scope::Shared => "shared",
        }
    }
}

/// What goes into the `X-RateLimit-*` headers of one response.
#[derive(Debug, Clone)]
pub struct BucketState {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds left of the window at `at`, when the request was counted.
    pub reset_after: f64,
    pub bucket: String,
    /// When the request was counted; the headers, written when the reply leaves (after the
    /// body was read), say how long is left from then: the window does not move meanwhile.
    pub at: Instant,
}

/// A refusal: how long to wait and which limit caused it.
#[derive(Debug, Clone, Copy)]
pub struct Limited {
    pub retry_after: f64,
    pub scope: Scope,
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

    /// Like `hit`, but counts nothing.
    fn room(&mut self, limit: u32, period: Duration, now: Instant) -> Result<(), Duration> {
        self.roll(period, now);
        if self.count >= limit {
            return Err(period.saturating_sub(now.duration_since(self.start)));
        }
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

/// The hidden cap of one channel over its webhooks: a fixed window, and once it is full a block
/// of `webhook_channel_retry_after` after which a fresh window starts.
#[derive(Debug, Clone, Copy)]
struct ChannelCap {
    window: Window,
    blocked_until: Option<Instant>,
}

impl ChannelCap {
    fn hit(&mut self, limits: &RateLimits, now: Instant) -> Result<(), Duration> {
        if let Some(until) = self.blocked_until {
            if now < until {
                return Err(until - now);
            }
            self.blocked_until = None;
            self.window = Window {
                start: now,
                count: 0,
            };
        }
        let (limit, period) = limits.webhook_channel;
        self.window.hit(limit, period, now).map_err(|_| {
            self.blocked_until = Some(now + limits.webhook_channel_retry_after);
            limits.webhook_channel_retry_after
        })
    }
}

#[derive(Debug)]
pub struct RateLimiter {
    limits: Option<RateLimits>,
    buckets: HashMap<(BucketKind, u64), Window>,
    global: Window,
    /// The per-IP global of requests without a bot token (the webhook token routes).
    webhook_global: Window,
    channel_caps: HashMap<u64, ChannelCap>,
}

impl RateLimiter {
    pub fn new(limits: Option<RateLimits>) -> Self {
        let fresh = Window {
            start: Instant::now(),
            count: 0,
        };
        RateLimiter {
            limits,
            buckets: HashMap::new(),
            global: fresh,
            webhook_global: fresh,
            channel_caps: HashMap::new(),
        }
    }

    /// Counts a webhook token route request: the webhook global, then the webhook's bucket, then
    /// (for an execute, `channel` given) the channel's hidden cap. A refused request uses up
    /// nothing but its place in the global. The headers describe the webhook's bucket only, even
    /// on a `shared` refusal: the hidden cap is never announced.
    pub fn check_webhook(
        &mut self,
        kind: BucketKind,
        webhook_id: u64,
        channel: Option<u64>,
    ) -> (BucketState, Option<Limited>) {
        let Some(limits) = self.limits else {
            return (unlimited(kind, webhook_id), None);
        };
        let (limit, period) = match kind {
            BucketKind::ExecuteWebhook => limits.webhook_execute,
            _ => limits.other,
        };
        let now = Instant::now();
        let mut window = self.bucket(kind, webhook_id, now);
        let refused = |wait: Duration, scope| Limited {
            retry_after: wait.as_secs_f64(),
            scope,
        };
        let limited = if let Err(wait) =
            self.webhook_global
                .hit(limits.webhook_global_per_sec, Duration::from_secs(1), now)
        {
            Some(refused(wait, Scope::Global))
        } else if let Err(wait) = window.room(limit, period, now) {
            Some(refused(wait, Scope::User))
        } else if let Some(Err(wait)) = channel.map(|c| {
            let fresh = ChannelCap {
                window: Window {
                    start: now,
                    count: 0,
                },
                blocked_until: None,
            };
            self.channel_caps
                .entry(c)
                .or_insert(fresh)
                .hit(&limits, now)
        }) {
            Some(refused(wait, Scope::Shared))
        } else {
            let _ = window.hit(limit, period, now);
            None
        };
        self.buckets.insert((kind, webhook_id), window);
        (
            state(kind, webhook_id, &window, limit, period, now),
            limited,
        )
    }

    fn bucket(&self, kind: BucketKind, major: u64, now: Instant) -> Window {
        self.buckets.get(&(kind, major)).copied().unwrap_or(Window {
            start: now,
            count: 0,
        })
    }

    /// Counts a request against the global limit and its bucket. A refused request uses up nothing.
    pub fn check(&mut self, kind: BucketKind, major: u64) -> (BucketState, Option<Limited>) {
        let Some(limits) = self.limits else {
            return (unlimited(kind, major), None);
        };
        let (limit, period) = match kind {
            BucketKind::CreateMessage => limits.create_message,
            _ => limits.other,
        };
        let now = Instant::now();
        let mut window = self.bucket(kind, major, now);
        let global = self
            .global
            .hit(limits.global_per_sec, Duration::from_secs(1), now);
        let limited = match global {
            Err(wait) => Some(Limited {
                retry_after: wait.as_secs_f64(),
                scope: Scope::Global,
            }),
            Ok(()) => {
                let verdict = window.hit(limit, period, now).err();
                self.buckets.insert((kind, major), window);
                verdict.map(|wait| Limited {
                    retry_after: wait.as_secs_f64(),
                    scope: Scope::User,
                })
            }
        };
        (state(kind, major, &window, limit, period, now), limited)
    }
}

/// The headers of a bucket after a request.
fn state(
    kind: BucketKind,
    major: u64,
    window: &Window,
    limit: u32,
    period: Duration,
    now: Instant,
) -> BucketState {
    let mut window = *window;
    window.roll(period, now);
    BucketState {
        limit,
        remaining: limit.saturating_sub(window.count),
        reset_after: window.reset_after(period, now),
        bucket: bucket_hash(kind, major),
        at: now,
    }
}

/// With limits off the headers stay numerically valid: serenity re-sends on parse errors (§5.2).
fn unlimited(kind: BucketKind, major: u64) -> BucketState {
    BucketState {
        limit: 10_000,
        remaining: 9_999,
        reset_after: 1.0,
        bucket: bucket_hash(kind, major),
        at: Instant::now(),
    }
}

/// Opaque and stable per route kind; like Discord's, it leaves out the top-level resource
/// (`major`), except on webhook token routes, where each webhook gets a bucket of its own.
pub fn bucket_hash(kind: BucketKind, major: u64) -> String {
    let key = if kind.is_webhook_token_route() {
        format!("{kind:?}/{major}")
    } else {
        format!("{kind:?}")
    };
    hex::encode(&Sha256::digest(key.as_bytes())[..16])
}

/// Adds `X-RateLimit-Limit/-Remaining/-Reset/-Reset-After/-Bucket` (discord-api.md §3.1).
pub fn add_headers(headers: &mut HeaderMap, s: &BucketState) {
    let reset_after = (s.reset_after - s.at.elapsed().as_secs_f64()).max(0.0);
    let reset = now_ms() as f64 / 1000.0 + reset_after;
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put("x-ratelimit-limit", s.limit.to_string());
    put("x-ratelimit-remaining", s.remaining.to_string());
    put("x-ratelimit-reset", format!("{reset:.3}"));
    put("x-ratelimit-reset-after", format!("{reset_after:.3}"));
    put("x-ratelimit-bucket", s.bucket.clone());
}

/// The 429 of discord-api.md §3.1: JSON body, `Retry-After` rounded up, `X-RateLimit-Scope`.
pub fn too_many_requests(limited: Limited) -> Response {
    let body = serde_json::json!({
        "message": "You are being rate limited.",
        "retry_after": (limited.retry_after * 1000.0).ceil() / 1000.0,
        "global": limited.scope == Scope::Global,
    });
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    let h = resp.headers_mut();
    h.insert(
        "retry-after",
        HeaderValue::from(limited.retry_after.ceil() as u64),
    );
    h.insert(
        "x-ratelimit-scope",
        HeaderValue::from_static(limited.scope.header()),
    );
    if limited.scope == Scope::Global {
        h.insert("x-ratelimit-global", HeaderValue::from_static("true"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RateLimits {
        RateLimits {
            webhook_execute: (2, Duration::from_secs(60)),
            webhook_channel: (3, Duration::from_secs(60)),
            webhook_channel_retry_after: Duration::from_millis(150),
            ..Default::default()
        }
    }

    fn execute(l: &mut RateLimiter, hook: u64) -> Option<Scope> {
        let (_, limited) = l.check_webhook(BucketKind::ExecuteWebhook, hook, Some(1));
        limited.map(|l| l.scope)
    }

    #[test]
    fn channel_cap_blocks_for_its_retry_after_then_opens_a_fresh_window() {
        let mut l = RateLimiter::new(Some(limits()));
        assert_eq!(execute(&mut l, 10), None);
        assert_eq!(execute(&mut l, 20), None);
        assert_eq!(execute(&mut l, 30), None);
        // The channel is full; webhook 10 still has room of its own, and keeps it.
        assert_eq!(execute(&mut l, 10), Some(Scope::Shared));
        let (state, _) = l.check_webhook(BucketKind::GetWebhookMessage, 10, None);
        assert_eq!(state.bucket, bucket_hash(BucketKind::GetWebhookMessage, 10));
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(execute(&mut l, 10), None);
        // Its own bucket now runs out first (2 per window).
        assert_eq!(execute(&mut l, 10), Some(Scope::User));
    }

    #[test]
    fn webhook_routes_have_their_own_global_and_leave_the_bots_alone() {
        let mut l = RateLimiter::new(Some(RateLimits {
            global_per_sec: 1,
            webhook_global_per_sec: 1,
            ..Default::default()
        }));
        assert!(l.check_webhook(BucketKind::GetWebhook, 1, None).1.is_none());
        let refused = l.check_webhook(BucketKind::GetWebhook, 2, None).1;
        assert_eq!(refused.map(|r| r.scope), Some(Scope::Global));
        assert!(l.check(BucketKind::CurrentUser, 0).1.is_none());
    }

    #[test]
    fn headers_written_after_a_slow_body_count_down_from_when_the_request_was_counted() {
        let mut l = RateLimiter::new(Some(RateLimits::default()));
        let (state, _) = l.check(BucketKind::CreateMessage, 7);
        // The body takes a while to read; the window keeps running meanwhile.
        std::thread::sleep(Duration::from_millis(300));
        let mut h = HeaderMap::new();
        add_headers(&mut h, &state);
        let left: f64 = h["x-ratelimit-reset-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(left <= 4.71 && left > 4.0, "{left}");
    }
}
