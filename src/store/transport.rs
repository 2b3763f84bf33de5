//! Sends requests built by serenity on dstore's own reqwest client, so it can read the
//! rate-limit headers and 429 bodies serenity's `Http` drops (discord-api.md §5.1-5.3), and
//! retries what deserves a retry: 429 after `retry_after`, 5xx/408/timeouts/resets with backoff.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serenity::http::Request;

use super::backoff::Backoff;
use super::error::StoreError;
use super::ratelimit::{secs, RateLimiter, RouteKey};
use crate::config::{Config, Secret, DISCORD_API_BASE};

/// How many 429s in a row one request may meet before dstore stops (each is waited out).
const MAX_RATE_LIMITED: u32 = 64;

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A send failed for a reason a retry may fix.
struct Transient(String);

pub struct Transport {
    client: reqwest::Client,
    auth: Secret,
    proxy: Option<String>,
    limiter: RateLimiter,
    backoff: Backoff,
    retries: u32,
}

impl Transport {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(Duration::from_secs(10).min(config.request_timeout))
            .timeout(config.request_timeout)
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
            auth: Secret::new(auth),
            proxy,
            limiter: RateLimiter::default(),
            backoff: Backoff {
                base: config.retry_base,
                cap: Duration::from_secs(30),
            },
            retries: config.retries,
        })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn backoff(&self) -> (Backoff, u32) {
        (self.backoff, self.retries)
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
        mut build: impl FnMut() -> Result<Request<'a>, StoreError>,
    ) -> Result<Reply, StoreError> {
        let mut failures = 0u32;
        let mut limited = 0u32;
        loop {
            let ticket = self.limiter.acquire(&key).await;
            let builder = build()?
                .build(&self.client, self.auth.expose(), self.proxy.as_deref())
                .map_err(|e| StoreError::Protocol(e.to_string()))?;
            let why = match self.attempt(builder).await {
                Ok(reply) => {
                    self.limiter.observe(&key, ticket, &reply.headers);
                    match reply.status.as_u16() {
                        429 => {
                            limited += 1;
                            let (wait, global) = retry_after(&reply);
                            if limited > MAX_RATE_LIMITED {
                                return Err(StoreError::GaveUp {
                                    attempts: limited,
                                    last: "rate limited every time".into(),
                                });
                            }
                            tracing::warn!(
                                route = key.kind,
                                global,
                                "rate limited; waiting {:.2}s",
                                wait.as_secs_f64()
                            );
                            self.limiter.penalize(&key, wait, global);
                            continue;
                        }
                        s if s >= 500 || s == 408 => Transient(format!("Discord answered {s}")),
                        _ => return Ok(reply),
                    }
                }
                Err(t) => t,
            };
            failures += 1;
            if failures > self.retries {
                return Err(StoreError::GaveUp {
                    attempts: failures,
                    last: why.0,
                });
            }
            let delay = self.backoff.delay(failures);
            tracing::warn!(
                route = key.kind,
                "{}; retry {failures}/{} in {:.1}s",
                why.0,
                self.retries,
                delay.as_secs_f64()
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(&self, builder: reqwest::RequestBuilder) -> Result<Reply, Transient> {
        let resp = builder.send().await.map_err(describe)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(describe)?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}

/// A reqwest error in words, without the URL (a webhook URL would carry its token).
fn describe(e: reqwest::Error) -> Transient {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "connection dropped while reading the reply"
    } else {
        "connection failed"
    };
    Transient(format!("{kind}: {}", e.without_url()))
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
