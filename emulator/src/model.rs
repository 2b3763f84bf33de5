//! The emulator's records: guilds, channels, messages and attachments, plus the test-facing views.

use serde::{Deserialize, Serialize};

/// What the bot may do in a channel (discord-api.md §4 error table: 50001 / 50013).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Access {
    /// View, read history, send, attach, manage messages.
    #[default]
    Full,
    /// Cannot see the channel at all: 403 `Missing Access` (50001) on every channel route.
    NoAccess,
    /// Can read but not send or bulk-delete: 403 `Missing Permissions` (50013) on those.
    NoPermission,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Guild {
    pub id: u64,
    pub name: String,
    pub premium_tier: u8,
    /// Test override of the boost-tier table.
    pub upload_limit: Option<u64>,
}

impl Guild {
    /// Per-file limit: the override, else the boost-tier table of discord-api.md §1.1.
    pub fn file_limit(&self) -> u64 {
        self.upload_limit.unwrap_or(match self.premium_tier {
            0 | 1 => 10_485_760,
            2 => 52_428_800,
            _ => 104_857_600,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Channel {
    pub id: u64,
    pub guild_id: u64,
    pub name: String,
    pub position: u16,
    #[serde(default)]
    pub access: Access,
}

/// An incoming webhook (type 1) of a channel; its token is the credential of the token routes.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct Webhook {
    pub id: u64,
    pub channel_id: u64,
    pub guild_id: u64,
    pub name: String,
    /// 68 characters of `[A-Za-z0-9_-]` (discord-api.md §4).
    pub token: String,
}

impl std::fmt::Debug for Webhook {
    /// Leaves the token out, as any credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("channel_id", &self.channel_id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The webhook a message was posted through, and the name it was posted under.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WebhookAuthor {
    pub id: u64,
    pub username: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredAttachment {
    pub id: u64,
    pub filename: String,
    pub size: u64,
    pub content_type: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredMessage {
    pub id: u64,
    pub channel_id: u64,
    pub content: String,
    /// Kept as sent (string or integer), echoed back like Discord does.
    #[serde(default)]
    pub nonce: Option<serde_json::Value>,
    /// Unix ms; starts at creation time, moved back by `Emulator::age_message`.
    pub timestamp_ms: u64,
    pub attachments: Vec<StoredAttachment>,
    /// Who posted it: `None` for the bot itself, else another user (`Emulator::post_as`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_id: Option<u64>,
    /// Set when a webhook posted it; `author_id` is then the webhook's id too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookAuthor>,
    /// Unix ms of the last edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_ms: Option<u64>,
}

/// A message as tests see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    pub id: u64,
    pub content: String,
    /// The nonce as a string (an integer nonce is rendered in decimal).
    pub nonce: Option<String>,
    /// Unix time in milliseconds.
    pub timestamp: u64,
    pub attachments: Vec<AttachmentInfo>,
    /// `None` when the bot posted it, else the other user's (or the webhook's) ID.
    pub author_id: Option<u64>,
    /// The webhook that posted it, if one did.
    pub webhook_id: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentInfo {
    pub id: u64,
    pub filename: String,
    pub size: u64,
}

/// The nonce's identity for dedupe: `"5"` and `5` are the same nonce.
pub fn nonce_key(nonce: &serde_json::Value) -> String {
    match nonce {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl From<&StoredMessage> for MessageInfo {
    fn from(m: &StoredMessage) -> Self {
        MessageInfo {
            id: m.id,
            content: m.content.clone(),
            nonce: m.nonce.as_ref().map(nonce_key),
            timestamp: m.timestamp_ms,
            attachments: m
                .attachments
                .iter()
                .map(|a| AttachmentInfo {
                    id: a.id,
                    filename: a.filename.clone(),
                    size: a.size,
                })
                .collect(),
            author_id: m.author_id,
            webhook_id: m.webhook.as_ref().map(|w| w.id),
        }
    }
}
