//! JSON shapes of Discord objects: user, channel, guild, message and attachment (discord-api.md §1.5, §5.7).

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::cdn::Signer;
use crate::model::{Channel, Guild, StoredMessage, Webhook, WebhookAuthor};

const BOT_NAME: &str = "dstore-emulator";

/// The bot user, as `/users/@me` and message `author` show it.
pub fn user(bot_user_id: u64) -> Value {
    json!({
        "id": bot_user_id.to_string(),
        "username": BOT_NAME,
        "discriminator": "0000",
        "global_name": null,
        "avatar": null,
        "bot": true,
        "flags": 0,
        "public_flags": 0,
        "mfa_enabled": false,
        "verified": true,
    })
}

/// Another (human) user, as the `author` of a message posted with `Emulator::post_as`.
pub fn other_user(user_id: u64) -> Value {
    json!({
        "id": user_id.to_string(),
        "username": format!("user{user_id}"),
        "discriminator": "0",
        "global_name": null,
        "avatar": null,
        "public_flags": 0,
    })
}

/// A webhook as a message's `author`: the webhook's id and name, flagged as a bot (discord-api.md §1.5).
pub fn webhook_user(w: &WebhookAuthor) -> Value {
    json!({
        "id": w.id.to_string(),
        "username": w.username,
        "discriminator": "0000",
        "global_name": null,
        "avatar": null,
        "bot": true,
        "public_flags": 0,
        "flags": 0,
    })
}

/// An incoming webhook (type 1), made by the bot's application. Its creator (the bot user) is
/// shown with `show_user` (bot routes); the token routes return no user (discord-api.md §1.4).
pub fn webhook(w: &Webhook, bot_user_id: u64, show_user: bool, base_url: &str) -> Value {
    let mut v = json!({
        "id": w.id.to_string(),
        "type": 1,
        "guild_id": w.guild_id.to_string(),
        "channel_id": w.channel_id.to_string(),
        "name": w.name,
        "avatar": null,
        "token": w.token,
        // An application's id is its bot user's id for apps made since 2019 or so.
        "application_id": bot_user_id.to_string(),
        "url": webhook_url(base_url, w),
    });
    if show_user {
        v["user"] = user(bot_user_id);
    }
    v
}

/// `<base>/api/v10/webhooks/<id>/<token>`.
pub fn webhook_url(base_url: &str, w: &Webhook) -> String {
    format!("{base_url}/api/v10/webhooks/{}/{}", w.id, w.token)
}

/// A guild text channel (type 0).
pub fn channel(c: &Channel, last_message_id: Option<u64>) -> Value {
    json!({
        "id": c.id.to_string(),
        "type": 0,
        "guild_id": c.guild_id.to_string(),
        "name": c.name,
        "position": c.position,
        "permission_overwrites": [],
        "nsfw": false,
        "topic": null,
        "parent_id": null,
        "rate_limit_per_user": 0,
        "last_message_id": last_message_id.map(|id| id.to_string()),
        "flags": 0,
    })
}

/// A guild as `GET /guilds/{id}` returns it; everything but `premium_tier` is fixed filler.
pub fn guild(g: &Guild, owner_id: u64) -> Value {
    json!({
        "id": g.id.to_string(),
        "name": g.name,
        "icon": null, "icon_hash": null, "splash": null, "discovery_splash": null, "banner": null,
        "owner_id": owner_id.to_string(),
        "afk_channel_id": null, "afk_timeout": 300,
        "widget_enabled": false, "widget_channel_id": null,
        "verification_level": 0, "default_message_notifications": 0, "explicit_content_filter": 0,
        "roles": [everyone_role(g.id)], "emojis": [], "stickers": [], "features": [],
        "mfa_level": 0, "application_id": null,
        "system_channel_id": null, "system_channel_flags": 0, "rules_channel_id": null,
        "public_updates_channel_id": null, "safety_alerts_channel_id": null,
        "max_presences": null, "max_members": 500000, "vanity_url_code": null, "description": null,
        "premium_tier": g.premium_tier, "premium_subscription_count": 0,
        "preferred_locale": "en-US", "max_video_channel_users": 25, "max_stage_video_channel_users": 50,
        "nsfw_level": 0, "premium_progress_bar_enabled": false,
    })
}

/// Every guild has an @everyone role whose id is the guild id.
fn everyone_role(guild_id: u64) -> Value {
    json!({
        "id": guild_id.to_string(), "name": "@everyone", "color": 0,
        "colors": { "primary_color": 0, "secondary_color": null, "tertiary_color": null }, "hoist": false, "icon": null,
        "unicode_emoji": null, "position": 0, "permissions": "1071698660929", "managed": false,
        "mentionable": false, "flags": 0,
    })
}

/// A message with freshly signed attachment URLs.
pub fn message(m: &StoredMessage, bot_user_id: u64, signer: &Signer) -> Value {
    let attachments: Vec<Value> = m
        .attachments
        .iter()
        .map(|a| {
            let url = signer.url(m.channel_id, a.id, &a.filename);
            json!({
                "id": a.id.to_string(), "filename": a.filename, "size": a.size,
                "url": url, "proxy_url": url, "content_type": a.content_type,
            })
        })
        .collect();
    let author = match (&m.webhook, m.author_id) {
        (Some(w), _) => webhook_user(w),
        (None, Some(id)) => other_user(id),
        (None, None) => user(bot_user_id),
    };
    let mut v = json!({
        "id": m.id.to_string(), "channel_id": m.channel_id.to_string(), "author": author,
        "content": m.content, "timestamp": iso8601(m.timestamp_ms), "edited_timestamp": m.edited_ms.map(iso8601),
        "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [],
        "attachments": attachments, "embeds": [], "pinned": false, "type": 0, "flags": 0,
        "components": [],
    });
    if let Some(nonce) = &m.nonce {
        v["nonce"] = nonce.clone();
    }
    if let Some(w) = &m.webhook {
        v["webhook_id"] = json!(w.id.to_string());
    }
    v
}

/// Discord's timestamp format, e.g. `2024-05-01T12:00:00.123000+00:00`.
pub fn iso8601(unix_ms: u64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]+00:00"
    );
    OffsetDateTime::from_unix_timestamp_nanos(unix_ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00.000000+00:00".into())
}
