//! Emulator settings: where state lives, URL lifetime, rate limits, nonce window, request cap, link caps.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can be tuned when starting an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// All state lives here; a restart on the same directory keeps everything.
    pub state_dir: PathBuf,
    /// Lifetime of signed CDN URLs (discord-api.md §2.2: 24 h since mid-2024).
    pub cdn_url_ttl: Duration,
    /// `None` turns rate limiting off; headers are still sent, with generous values.
    pub rate_limits: Option<RateLimits>,
    /// How long a `nonce` with `enforce_nonce` dedupes a create (Discord's value is unknown; "a few minutes").
    pub nonce_window: Duration,
    /// Optional cap on the whole Create Message request (discord-api.md §1.3: 25 MiB, enforcement unclear).
    pub max_request_bytes: Option<u64>,
    /// A shared link: at most this many body bytes per second over all connections together,
    /// uploads and CDN downloads alike (for benchmarks; Discord's side is not the usual bottleneck).
    pub link_bytes_per_sec: Option<u64>,
    /// At most this many body bytes per second on each TCP connection, each way counted together.
    pub connection_bytes_per_sec: Option<u64>,
}

impl EmulatorConfig {
    /// Defaults: 24 h URLs, rate limits on, 5 min nonce window, no request cap, no link caps.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        EmulatorConfig {
            state_dir: state_dir.into(),
            cdn_url_ttl: Duration::from_secs(24 * 60 * 60),
            rate_limits: Some(RateLimits::default()),
            nonce_window: Duration::from_secs(5 * 60),
            max_request_bytes: None,
            link_bytes_per_sec: None,
            connection_bytes_per_sec: None,
        }
    }
}

/// Bucket sizes. The defaults are folklore numbers (discord-api.md §3.2), not documented ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Create Message per channel: about 5 per 5 s (discord-api.md §3.2).
    pub create_message: (u32, Duration),
    /// Requests per second per token (discord-api.md §3.1: 50/s).
    pub global_per_sec: u32,
    /// Every other route (reads, deletes), per route kind and channel (or webhook).
    pub other: (u32, Duration),
    /// Execute Webhook per webhook: 5 per 2 s ("it should be reporting 5/2", Discord staff in
    /// discord/discord-api-docs#367; discord-api.md §3.2). Announced in the headers.
    pub webhook_execute: (u32, Duration),
    /// Requests per second over all webhook token routes. They carry no bot token, so they do not
    /// count against `global_per_sec`; Discord then limits per IP (discord-api.md §3.1: 50/s).
    pub webhook_global_per_sec: u32,
    /// The hidden cap per channel over the executes of all its webhooks: about 30 per 60 s
    /// ("the 30/60 was added as a limit to the channel itself", discord/discord-api-docs#367;
    /// discord-api.md §3.2). No header announces it; exceeding it gives a 429 with scope `shared`.
    pub webhook_channel: (u32, Duration),
    /// How long a channel's webhooks are then refused (the 429's `retry_after`); a fresh window
    /// starts after it. 45 s: the 40-45 s waits reported in discord/discord-api-docs#1454 and
    /// OpenZeppelin/compound-monitoring#111 (discord-api.md §3.2).
    pub webhook_channel_retry_after: Duration,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            create_message: (5, Duration::from_secs(5)),
            global_per_sec: 50,
            other: (50, Duration::from_secs(1)),
            webhook_execute: (5, Duration::from_secs(2)),
            webhook_global_per_sec: 50,
            webhook_channel: (30, Duration::from_secs(60)),
            webhook_channel_retry_after: Duration::from_secs(45),
        }
    }
}
