//! Sends requests built by serenity on dstore's own reqwest client, so it can read the
//! rate-limit headers and 429 bodies serenity's `Http` drops (discord-api.md §5.1-5.3), and
//! retries what deserves a retry on the shared budget of [`super::retry`]: 429 after
//! `retry_after`, 5xx/408/timeouts/resets with backoff, an unreachable host briefly. CDN
//! downloads go through the same budget. A try fails when nothing moves for `request_timeout`
//! ([`super::idle`]), never on a total deadline.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serenity::http::Request;

use futures::{StreamExt, TryStreamExt};
use time::OffsetDateTime;

use super::backoff::Backoff;
use super::error::StoreError;
use super::idle::{self, Activity};
use super::ratelimit::{secs, RateLimiter, RouteKey};
use super::retry::{Attempts, Failure, Policy};
use super::PartStream;
use crate::config::{Config, Secret, DISCORD_API_BASE};

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What [`Transport::send_until`] ended with.
pub enum Sent {
    Reply(Reply),
    /// A try that may have been carried out was sent at this time, longer ago than the trust
    /// window: look for its result before trying again.
    Late(OffsetDateTime),
}

/// A successful CDN answer: its status (200 or 206), `Content-Range` if any, and the body.
pub struct Opened {
    pub status: StatusCode,
    pub content_range: Option<String>,
    pub stream: PartStream,
}

/// Invalid requests (401, 403, 429 but those of scope `shared`) over a sliding window; at the
/// threshold every further request fails at once (docs/lanes.md 3, discord-api.md §3.1).
#[derive(Debug)]
pub struct InvalidGuard {
    threshold: usize,
    window: Duration,
    seen: std::sync::Mutex<std::collections::VecDeque<tokio::time::Instant>>,
}

/// A tenth of the 10,000 invalid requests in 10 minutes that get an IP banned for an hour.
const INVALID_THRESHOLD: usize = 1_000;
const INVALID_WINDOW: Duration = Duration::from_secs(600);

impl InvalidGuard {
    pub fn new(threshold: usize, window: Duration) -> Self {
        Self {
            threshold,
            window,
            seen: Default::default(),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<tokio::time::Instant>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The invalid answers within the window, forgetting older ones.
    fn count(&self) -> usize {
        let now = tokio::time::Instant::now();
        let mut seen = self.seen();
        while seen
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            seen.pop_front();
        }
        seen.len()
    }

    /// Refuses to send once the threshold is reached.
    pub fn check(&self) -> Result<(), StoreError> {
        let count = self.count();
        if count >= self.threshold {
            return Err(StoreError::TooManyInvalid { count });
        }
        Ok(())
    }

    /// Counts the reply if Discord counts it as invalid.
    pub fn note(&self, status: u16, headers: &HeaderMap) {
        let shared = headers
            .get("x-ratelimit-scope")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"shared"));
        if status == 401 || status == 403 || (status == 429 && !shared) {
            let count = self.count();
            self.seen().push_back(tokio::time::Instant::now());
            if count + 1 == self.threshold {
                tracing::error!(
                    "{} invalid requests in 10 minutes; dstore stops sending",
                    count + 1
                );
            }
        }
    }
}

pub struct Transport {
    client: reqwest::Client,
    invalid: InvalidGuard,
    auth: Secret,
    proxy: Option<String>,
    limiter: RateLimiter,
    policy: Policy,
    /// No progress for this long fails a try (`request_timeout`); never a total deadline.
    idle: Duration,
}

impl Transport {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(Duration::from_secs(10).min(config.request_timeout))
            .build()?;
        let token = config.token.expose().trim();
        let auth = if token.starts_with("Bot ") || token.starts_with("Bearer ") {
            token.to_string()
        } else {
            format!("Bot {token}")
        };
        // serenity rewrites its fixed discord.com origin to this one (discord-api.md §5.1).
        let proxy = (config.api_base != DISCORD_API_BASE).then(|| config.api_base.clone());
        Ok(Self {
            client,
            invalid: InvalidGuard::new(INVALID_THRESHOLD, INVALID_WINDOW),
            auth: Secret::new(auth),
            proxy,
            limiter: RateLimiter::default(),
            policy: Policy {
                backoff: Backoff {
                    base: config.retry_base,
                    cap: Duration::from_secs(30),
                },
                retries: config.retries,
            },
            idle: config.request_timeout,
        })
    }

    /// A fresh retry budget for one request on `route`.
    pub fn attempts(&self, route: &'static str) -> Attempts {
        Attempts::new(self.policy, route)
    }

    /// Sends the request `build` makes (afresh for every attempt) until Discord accepts it, a
    /// non-retryable answer comes back, or the retry budget is spent. Non-2xx answers that are
    /// not retried come back as `Ok` for the caller to classify.
    pub async fn send<'a>(
        &self,
        key: RouteKey,
        mut build: impl FnMut() -> Request<'a>,
    ) -> Result<Reply, StoreError> {
        self.send_with(key, || Ok(build())).await
    }

    /// [`Transport::send`] with a request maker that may fail (re-reading a part's bytes).
    pub async fn send_with<'a>(
        &self,
        key: RouteKey,
        build: impl FnMut() -> Result<Request<'a>, StoreError>,
    ) -> Result<Reply, StoreError> {
        let mut attempts = self.attempts(key.kind);
        match self.send_until(key, &mut attempts, None, build).await? {
            Sent::Reply(reply) => Ok(reply),
            // Without a trust window no try is ever late.
            Sent::Late(_) => Err(StoreError::Protocol("a request stopped early".into())),
        }
    }

    /// [`Transport::send_with`] on a budget the caller keeps; with `trust`, it stops with
    /// [`Sent::Late`] rather than send again once a try that may have been carried out is
    /// older than `trust`.
    pub async fn send_until<'a>(
        &self,
        key: RouteKey,
        attempts: &mut Attempts,
        trust: Option<Duration>,
        mut build: impl FnMut() -> Result<Request<'a>, StoreError>,
    ) -> Result<Sent, StoreError> {
        self.send_built_until(key, attempts, trust, || {
            build()?
                .build(&self.client, self.auth.expose(), self.proxy.as_deref())
                .map_err(|e| StoreError::Protocol(e.to_string()))
        })
        .await
    }

    /// [`Transport::send_until`] for a multipart POST to `route` whose body `form` makes afresh
    /// for each attempt. serenity numbers every attachment it is handed `files[0]`, so a
    /// message of several attachments (`files[0]`, `files[1]`, ...) is built here.
    pub async fn send_form_until(
        &self,
        key: RouteKey,
        attempts: &mut Attempts,
        trust: Option<Duration>,
        route: serenity::http::Route<'_>,
        mut form: impl FnMut() -> Result<reqwest::multipart::Form, StoreError>,
    ) -> Result<Sent, StoreError> {
        let mut url = route.path().to_string();
        if let Some(proxy) = &self.proxy {
            // As serenity does: its fixed origin becomes the configured one.
            url = url.replace("https://discord.com", proxy.trim_end_matches('/'));
        }
        let mut auth = reqwest::header::HeaderValue::from_str(self.auth.expose())
            .map_err(|_| StoreError::Protocol("the token is not a valid HTTP header".into()))?;
        auth.set_sensitive(true);
        self.send_built_until(key, attempts, trust, || {
            Ok(self
                .client
                .post(&url)
                .header(reqwest::header::AUTHORIZATION, auth.clone())
                .header(reqwest::header::USER_AGENT, serenity::constants::USER_AGENT)
                .multipart(form()?))
        })
        .await
    }

    /// The API URL of `path` (`/webhooks/...`): on the configured origin, as serenity's are.
    pub fn api_url(&self, path: &str) -> String {
        let origin = self.proxy.as_deref().unwrap_or(DISCORD_API_BASE);
        format!("{}/api/v10{path}", origin.trim_end_matches('/'))
    }

    /// When a request on `key` could leave without a rate-limit wait.
    pub fn ready_at(&self, key: &RouteKey) -> tokio::time::Instant {
        self.limiter.ready_at(key)
    }

    /// Takes a slot on `key` now for the request about to be sent (see [`RateLimiter::reserve`]).
    pub fn reserve(&self, key: &RouteKey) -> bool {
        self.limiter.reserve(key)
    }

    /// Messages per second `keys` allow together (see [`RateLimiter::rate`]).
    pub fn rate(&self, keys: &[RouteKey]) -> Option<f64> {
        self.limiter.rate(keys)
    }

    /// Puts `key` in a group that shares a limit no header announces (see
    /// [`RateLimiter::penalize_shared`]).
    pub fn join_group(&self, key: RouteKey, group: u64) {
        self.limiter.join_group(key, group)
    }

    /// [`Transport::send_until`] for a request without the bot's `Authorization` (a webhook's
    /// token routes), built afresh for each attempt on the shared client.
    pub async fn send_plain_until(
        &self,
        key: RouteKey,
        attempts: &mut Attempts,
        trust: Option<Duration>,
        mut build: impl FnMut(&reqwest::Client) -> Result<reqwest::RequestBuilder, StoreError>,
    ) -> Result<Sent, StoreError> {
        self.send_built_until(key, attempts, trust, || {
            Ok(build(&self.client)?
                .header(reqwest::header::USER_AGENT, serenity::constants::USER_AGENT))
        })
        .await
    }

    /// [`Transport::send_plain_until`] on a fresh budget, never late.
    pub async fn send_plain(
        &self,
        key: RouteKey,
        build: impl FnMut(&reqwest::Client) -> Result<reqwest::RequestBuilder, StoreError>,
    ) -> Result<Reply, StoreError> {
        let mut attempts = self.attempts(key.kind);
        match self
            .send_plain_until(key, &mut attempts, None, build)
            .await?
        {
            Sent::Reply(reply) => Ok(reply),
            Sent::Late(_) => Err(StoreError::Protocol("a request stopped early".into())),
        }
    }

    async fn send_built_until(
        &self,
        key: RouteKey,
        attempts: &mut Attempts,
        trust: Option<Duration>,
        mut build: impl FnMut() -> Result<reqwest::RequestBuilder, StoreError>,
    ) -> Result<Sent, StoreError> {
        loop {
            self.invalid.check()?;
            let ticket = self.limiter.acquire(&key).await?;
            // Checked after any rate-limit wait: that wait is what can make a retry late.
            if let Some(since) = trust.and_then(|t| attempts.late(t)) {
                return Ok(Sent::Late(since));
            }
            let builder = build()?;
            attempts.sending();
            let reply = match self.attempt(builder).await {
                Ok(reply) => reply,
                Err(failure) => {
                    attempts.failed(failure).await?;
                    continue;
                }
            };
            self.invalid.note(reply.status.as_u16(), &reply.headers);
            if reply.status == StatusCode::TOO_MANY_REQUESTS {
                self.limiter.observe_limited(&key, ticket, &reply.headers);
            } else {
                self.limiter.observe(&key, ticket, &reply.headers);
            }
            match reply.status.as_u16() {
                429 => {
                    let (wait, global) = retry_after(&reply);
                    let shared = reply
                        .headers
                        .get("x-ratelimit-scope")
                        .and_then(|v| v.to_str().ok())
                        == Some("shared");
                    if shared && !global {
                        self.limiter.penalize_shared(&key, wait);
                    } else {
                        self.limiter.penalize(&key, wait, global);
                    }
                    attempts.rate_limited(wait, global)?;
                }
                s if s >= 500 || s == 408 => {
                    let why = format!("Discord answered {s}");
                    attempts
                        .failed(Failure::Transient {
                            why,
                            maybe_done: true,
                        })
                        .await?;
                }
                _ => return Ok(Sent::Reply(reply)),
            }
        }
    }

    /// One try: the request, then its whole reply, failing when nothing moves for `idle`.
    async fn attempt(&self, builder: reqwest::RequestBuilder) -> Result<Reply, Failure> {
        let mut req = builder.build().map_err(|e| describe(&e, self.idle))?;
        let activity = Activity::new();
        if let Some(body) = req.body_mut().take() {
            *req.body_mut() = Some(activity.track(body));
        }
        let host = host_of(req.url());
        let mut resp = activity
            .guard(self.idle, self.client.execute(req))
            .await
            .ok_or_else(|| stalled(self.idle))?
            .map_err(|e| describe_at(&e, &host, self.idle))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let mut body = bytes::BytesMut::new();
        loop {
            match tokio::time::timeout(self.idle, resp.chunk()).await {
                Err(_) => return Err(stalled(self.idle)),
                Ok(Err(e)) => return Err(describe(&e, self.idle)),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            }
        }
        Ok(Reply {
            status,
            headers,
            body: body.freeze(),
        })
    }

    /// Starts a GET of `url` (a CDN URL) on the shared retry budget. A success comes back as a
    /// stream that fails when no bytes come for the idle timeout; 404 and other refusals come
    /// back as their status for the caller to classify.
    pub async fn open(&self, url: &str) -> Result<Result<PartStream, StatusCode>, StoreError> {
        Ok(self.open_range(url, None).await?.map(|o| o.stream))
    }

    /// [`Transport::open`] with an optional `Range: bytes=a-b` (`range` end excluded); the
    /// answer's status and `Content-Range` come back with the stream for the caller to check.
    pub async fn open_range(
        &self,
        url: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Result<Opened, StatusCode>, StoreError> {
        let mut attempts = self.attempts("cdn");
        let Ok(parsed) = reqwest::Url::parse(url) else {
            return Err(StoreError::Protocol(
                "Discord sent an attachment URL that is not one".into(),
            ));
        };
        let host = host_of(&parsed);
        loop {
            attempts.sending();
            let mut get = self.client.get(parsed.clone());
            if let Some(r) = range.as_ref().filter(|r| r.end > r.start) {
                get = get.header(
                    reqwest::header::RANGE,
                    format!("bytes={}-{}", r.start, r.end - 1),
                );
            }
            let sent = tokio::time::timeout(self.idle, get.send());
            let failure = match sent.await {
                Err(_) => stalled(self.idle),
                Ok(Err(e)) => describe_at(&e, &host, self.idle),
                Ok(Ok(resp)) if resp.status().is_success() => {
                    let status = resp.status();
                    let content_range = resp
                        .headers()
                        .get(reqwest::header::CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let idle = self.idle;
                    let chunks = resp
                        .bytes_stream()
                        .map_err(|e| StoreError::CutOff(reason(&e)));
                    let on_idle = move || {
                        StoreError::CutOff(format!("no data came for {} s", idle.as_secs()))
                    };
                    let stream = idle::per_item(chunks, idle, on_idle).boxed();
                    return Ok(Ok(Opened {
                        status,
                        content_range,
                        stream,
                    }));
                }
                Ok(Ok(resp)) if resp.status() == 429 => {
                    let wait = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<f64>().ok())
                        .map_or(Duration::from_secs(1), secs);
                    attempts.rate_limited(wait, false)?;
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Ok(Ok(resp)) if resp.status().is_server_error() || resp.status() == 408 => {
                    Failure::Transient {
                        why: format!("the CDN answered {}", resp.status().as_u16()),
                        maybe_done: false,
                    }
                }
                Ok(Ok(resp)) => return Ok(Err(resp.status())),
            };
            attempts.failed(failure).await?;
        }
    }
}

/// `host:port` of a URL: what a message may name (its path may hold a webhook's token).
fn host_of(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("the server");
    match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

fn stalled(idle: Duration) -> Failure {
    Failure::Transient {
        why: format!("nothing moved for {} s", idle.as_secs()),
        maybe_done: true,
    }
}

/// A reqwest error as a failure, naming `host` when nothing answered there.
fn describe_at(e: &reqwest::Error, host: &str, idle: Duration) -> Failure {
    match unreachable(e) {
        Some(why) => Failure::Unreachable {
            host: host.to_string(),
            why: why.into(),
        },
        None => describe(e, idle),
    }
}

/// Connection refused, an unknown name, no route: nothing answers there.
fn unreachable(e: &reqwest::Error) -> Option<&'static str> {
    if !e.is_connect() || e.is_timeout() {
        return None;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            match io.kind() {
                ConnectionRefused => return Some("connection refused"),
                NetworkUnreachable | HostUnreachable => return Some("no route to it"),
                _ => {}
            }
        }
        // hyper-util's resolver error ("dns error: ...") has no type of its own to match.
        if s.to_string().starts_with("dns error") {
            return Some("its name could not be resolved");
        }
        source = s.source();
    }
    None
}

/// A reqwest error in words, without the URL (a webhook URL would carry its token).
fn describe(e: &reqwest::Error, idle: Duration) -> Failure {
    let why = if e.is_timeout() {
        format!("timed out after {} s", idle.as_secs())
    } else if e.is_connect() {
        format!("could not connect: {}", reason(e))
    } else if e.is_body() || e.is_decode() {
        format!("connection dropped while reading the reply: {}", reason(e))
    } else {
        format!("connection failed: {}", reason(e))
    };
    // A request that never connected cannot have been carried out.
    let maybe_done = !e.is_connect();
    Failure::Transient { why, maybe_done }
}

/// The innermost cause of a reqwest error; never its URL.
fn reason(e: &reqwest::Error) -> String {
    let mut last = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        last = Some(s);
        source = s.source();
    }
    last.map_or_else(|| "no detail given".to_string(), |s| s.to_string())
}

/// The wait a 429 asks for: the body's `retry_after`, else the `Retry-After` header
/// (discord-api.md §3.1), else one second.
fn retry_after(reply: &Reply) -> (Duration, bool) {
    #[derive(serde::Deserialize)]
    struct Body {
        retry_after: Option<f64>,
        #[serde(default)]
        global: bool,
    }
    let body: Option<Body> = serde_json::from_slice(&reply.body).ok();
    let header = |n: &str| reply.headers.get(n).and_then(|v| v.to_str().ok());
    let global = body.as_ref().is_some_and(|b| b.global) || header("x-ratelimit-global").is_some();
    let wait = body
        .and_then(|b| b.retry_after)
        .or_else(|| header("retry-after").and_then(|v| v.parse().ok()))
        .unwrap_or(1.0);
    (secs(wait), global)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[tokio::test(start_paused = true)]
    async fn invalid_answers_stop_sending_at_the_threshold_then_age_out() {
        let guard = InvalidGuard::new(3, Duration::from_secs(600));
        let none = HeaderMap::new();
        let mut shared = HeaderMap::new();
        shared.insert("x-ratelimit-scope", HeaderValue::from_static("shared"));
        guard.note(401, &none);
        guard.note(403, &none);
        // Neither a shared-scope 429, nor a 404 or a 500, counts.
        guard.note(429, &shared);
        guard.note(404, &none);
        guard.note(500, &none);
        guard.check().unwrap();
        tokio::time::sleep(Duration::from_secs(300)).await;
        guard.note(429, &none);
        let err = guard.check().unwrap_err();
        assert!(matches!(err, StoreError::TooManyInvalid { count: 3 }));
        assert_eq!(
            err.to_string(),
            "dstore stopped sending: 3 invalid requests in 10 minutes (401/403/429); Discord bans an IP at 10,000 — check the token, webhooks and permissions"
        );
        assert!(err.is_fatal());
        // The first two leave the window ten minutes after they came.
        tokio::time::sleep(Duration::from_secs(301)).await;
        guard.check().unwrap();
    }
}
