//! What can go wrong talking to Discord, as variants a caller can act on; every message is a
//! sentence that says what to do next and never holds the token.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use super::ratelimit::MAX_WAIT;

/// The permissions a storage channel needs (README "Discord setup").
pub const PERMISSIONS: &str = "View Channel, Send Messages, Attach Files and Read Message History";

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("Discord rejected the bot token (401 Unauthorized); check `token` in the config file or DSTORE_TOKEN")]
    Unauthorized,
    #[error("the bot cannot see channel {channel} (403 Missing Access); invite it and give it {PERMISSIONS}")]
    MissingAccess { channel: u64 },
    #[error("the bot lacks a permission in channel {channel} (403 Missing Permissions); it needs {PERMISSIONS}")]
    MissingPermissions { channel: u64 },
    #[error("channel {channel} does not exist or the bot is not in its server (404 Unknown Channel); check `channels` in the config")]
    UnknownChannel { channel: u64 },
    #[error(
        "message {message} in channel {channel} no longer exists on Discord (404 Unknown Message)"
    )]
    UnknownMessage { channel: u64, message: u64 },
    #[error("Discord refused a part of {size} bytes as too large (413)")]
    PartTooLarge { size: u64 },
    #[error("Discord answered {status} with code {code}: {message}")]
    Rejected {
        status: u16,
        code: i64,
        message: String,
    },
    #[error("gave up after {}; the last failure was: {last}", crate::render::plural(u64::from(*attempts), "attempt"))]
    GaveUp { attempts: u32, last: String },
    #[error("cannot reach {host}: {why} (tried {}); check the network connection, and `api_base` if you set one", if *attempts == 1 { "once".to_string() } else { format!("{attempts} times") })]
    Unreachable {
        host: String,
        why: String,
        attempts: u32,
    },
    #[error("Discord's rate limit on {route} asks for a wait of {}, longer than the {} dstore waits; try again later", minutes(*wait), minutes(MAX_WAIT))]
    WaitTooLong { route: &'static str, wait: Duration },
    #[error("Discord sent a reply dstore cannot read: {0}")]
    Protocol(String),
    #[error("the attachment's link has expired or the content is gone")]
    ContentGone,
    #[error("the download was cut off: {0}")]
    CutOff(String),
    /// Bytes asked of an attachment that ends before them (416, or a reply of other bytes).
    #[error("bytes {start}..{end} lie outside the {size}-byte attachment")]
    RangeOutside { start: u64, end: u64, size: u64 },
    /// A webhook answered 404 Unknown Webhook or 401 Invalid Webhook Token: it is left out for
    /// the rest of the run. `reason` names which; never the token.
    #[error("webhook {webhook} {reason}; it is left out for the rest of this run (remove it from `webhooks` or copy its URL again)")]
    DeadWebhook { webhook: u64, reason: &'static str },
    /// With a bot, a webhook must post in a configured channel (so `recover` finds its messages).
    #[error("webhook {webhook} posts in channel {channel}, which is not in `channels`; add the channel to `channels` or remove the webhook")]
    WebhookElsewhere { webhook: u64, channel: u64 },
    /// Every lane is gone: no bot token, and no configured webhook answers.
    #[error("no lane left to post through: there is no bot token and no configured webhook can be used; set `token`, or check `webhooks`")]
    NoLane,
    /// Without a bot, a post to a channel needs a webhook of that channel.
    #[error("without a bot token dstore posts to channel {channel} through its webhooks, and no configured webhook that works posts there; add one to `webhooks` or set `token`")]
    NoWebhookIn { channel: u64 },
    /// What only a bot can do: webhooks have no route for it.
    #[error("{0} needs a bot token (no webhook route can do it); set `token` in the config file or DSTORE_TOKEN")]
    NeedsBot(&'static str),
    /// Without a bot, a message is reached only through a webhook that posted it.
    #[error("message {message} in channel {channel} was not posted by any configured webhook of that channel, and without a bot token dstore can read only its webhooks' messages; set `token` to read it")]
    NotByWebhooks { channel: u64, message: u64 },
    /// A webhook's reply was lost after its body was sent, and no bot can look for the message.
    #[error("the reply of webhook {webhook} was lost after the pack was sent, and without a bot token dstore cannot look whether Discord kept it; it is sent again (a copy may stay until `prune` runs with a bot token)")]
    Ambiguous { webhook: u64 },
    /// Too many 401/403/429 answers: Discord bans an IP that sends 10,000 in 10 minutes.
    #[error("dstore stopped sending: {count} invalid requests in 10 minutes (401/403/429); Discord bans an IP at 10,000 — check the token, webhooks and permissions")]
    TooManyInvalid { count: usize },
    /// A retry found the source's bytes changed (see [`SourceChanged`]).
    #[error(transparent)]
    Source(#[from] SourceChanged),
}

/// The source file is no longer the one being uploaded. The only error for this, wherever it
/// is noticed: a retry re-reading a part, the reader, the checks before and after each pass.
#[derive(Debug, Error)]
#[error("{} has changed since its upload began ({what}), so it is not marked complete; `upload` it again to store it as it is now", .path.display())]
pub struct SourceChanged {
    pub path: PathBuf,
    /// What differs, e.g. "its size is 10 bytes, not 12".
    pub what: String,
}

impl SourceChanged {
    pub fn new(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            what: what.into(),
        }
    }
}

impl StoreError {
    /// Errors that no retry or other part can fix: stop the whole transfer at once.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            StoreError::Unauthorized
                | StoreError::MissingAccess { .. }
                | StoreError::MissingPermissions { .. }
                | StoreError::UnknownChannel { .. }
                | StoreError::TooManyInvalid { .. }
                | StoreError::WebhookElsewhere { .. }
                | StoreError::NoLane
                | StoreError::Source(_)
        )
    }
}

/// A wait in words: "45 s", "6 min 40 s".
fn minutes(d: Duration) -> String {
    let s = d.as_secs_f64().ceil() as u64;
    match (s / 60, s % 60) {
        (0, s) => format!("{s} s"),
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}

/// Discord's JSON error body (discord-api.md §4).
#[derive(Debug, serde::Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub message: String,
}

/// Maps a non-retryable answer to its error.
pub fn classify(status: u16, body: &[u8], channel: u64, message: u64, size: u64) -> StoreError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let code = parsed.as_ref().map_or(-1, |b| b.code);
    match (status, code) {
        (401, _) => StoreError::Unauthorized,
        (403, 50013) => StoreError::MissingPermissions { channel },
        (403, _) => StoreError::MissingAccess { channel },
        (404, 10003) => StoreError::UnknownChannel { channel },
        (404, 10008) => StoreError::UnknownMessage { channel, message },
        (413, _) | (_, 40005) => StoreError::PartTooLarge { size },
        _ => StoreError::Rejected {
            status,
            code,
            message: parsed.map_or_else(
                || String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
                |b| b.message,
            ),
        },
    }
}
