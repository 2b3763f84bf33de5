//! Emulator settings: where state lives, URL lifetime, rate limits, nonce window, request cap.

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
}

impl EmulatorConfig {
    /// Defaults: 24 h URLs, rate limits on, 5 min nonce window, no request cap.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        EmulatorConfig {
            state_dir: state_dir.into(),
            cdn_url_ttl: Duration::from_secs(24 * 60 * 60),
            rate_limits: Some(RateLimits::default()),
            nonce_window: Duration::from_secs(5 * 60),
            max_request_bytes: None,
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
    /// Every other route (reads, deletes), per route kind and channel.
    pub other: (u32, Duration),
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            create_message: (5, Duration::from_secs(5)),
            global_per_sec: 50,
            other: (50, Duration::from_secs(1)),
        }
    }
}
