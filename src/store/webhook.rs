//! Webhooks as lanes (docs/lanes.md): executing a webhook with `?wait=true` (multipart, as a
//! bot's create), reading and deleting its messages, learning its channel once, and leaving out
//! for the session a webhook Discord no longer knows. A webhook's token is a secret: it is only
//! ever put in a request's path, never in an error, a log line or a record.

use std::collections::HashSet;
use std::fmt;
use std::sync::Mutex;

use bytes::Bytes;
use serenity::model::channel::Message;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::error::{classify, ErrorBody};
use super::ratelimit::RouteKey;
use super::transport::{Reply, Sent};
use super::{BotStore, RemotePart, StoreError};
use crate::config::{Secret, Webhook};

/// Where a message can be created: a configured channel, through the bot, or a webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    Channel(u64),
    Webhook(u64),
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lane::Channel(c) => write!(f, "channel {c}"),
            Lane::Webhook(w) => write!(f, "webhook {w}"),
        }
    }
}

impl Lane {
    /// The rate-limit route a message created on this lane is paced by.
    pub(super) fn create_key(self) -> RouteKey {
        match self {
            Lane::Channel(c) => RouteKey {
                kind: "create-message",
                major: c,
            },
            Lane::Webhook(w) => RouteKey {
                kind: "webhook-execute",
                major: w,
            },
        }
    }
}

/// The configured webhooks and what the session learned of them.
pub(super) struct Hooks {
    configured: Vec<Webhook>,
    /// `(webhook, channel)` of every webhook that answered, in configuration order; asked once.
    channels: tokio::sync::OnceCell<Vec<(u64, u64)>>,
    /// Webhooks that answered 404 Unknown Webhook or 401 Invalid Webhook Token: never called
    /// again this session.
    dead: Mutex<HashSet<u64>>,
    /// Which webhook posted a message, for messages posted (or found) this session.
    posted_by: Mutex<std::collections::HashMap<u64, u64>>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<u64> = self.configured.iter().map(|w| w.id).collect();
        write!(f, "Hooks({ids:?})")
    }
}

const UNKNOWN: &str = "is unknown to Discord (404 Unknown Webhook)";
const WRONG_TOKEN: &str = "has a wrong token (401 Invalid Webhook Token)";

impl Hooks {
    pub fn new(configured: Vec<Webhook>) -> Self {
        Self {
            configured,
            channels: tokio::sync::OnceCell::new(),
            dead: Mutex::default(),
            posted_by: Mutex::default(),
        }
    }

    pub fn ids(&self) -> Vec<u64> {
        self.configured.iter().map(|w| w.id).collect()
    }

    fn dead(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.dead.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_dead(&self, id: u64) -> bool {
        self.dead().contains(&id)
    }

    /// Leaves webhook `id` out for the session, warning once.
    fn kill(&self, id: u64, reason: &'static str) -> StoreError {
        if self.dead().insert(id) {
            tracing::warn!(webhook = id, "webhook {id} {reason}; left out for this run");
            eprintln!(
                "warning: webhook {id} {reason}; it is left out for the rest of this run (remove it from `webhooks` or copy its URL again)"
            );
        }
        StoreError::DeadWebhook {
            webhook: id,
            reason,
        }
    }

    /// The path of webhook `id` (`/webhooks/{id}/{token}`), if it is configured and alive.
    fn path(&self, id: u64) -> Result<String, StoreError> {
        let Some(w) = self.configured.iter().find(|w| w.id == id) else {
            return Err(StoreError::Protocol(format!(
                "webhook {id} is not in the configuration"
            )));
        };
        if self.is_dead(id) {
            return Err(StoreError::DeadWebhook {
                webhook: id,
                reason: "answered earlier that it cannot be used",
            });
        }
        Ok(format!("/webhooks/{id}/{}", expose(&w.token)))
    }

    pub fn note_poster(&self, message: u64, webhook: u64) {
        self.posted_by
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(message, webhook);
    }

    fn poster(&self, message: u64) -> Option<u64> {
        self.posted_by
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&message)
            .copied()
    }
}

fn expose(token: &Secret) -> &str {
    token.expose().trim()
}

/// A webhook's refusal as its error: a dead webhook is left out for the session.
fn refused(
    hooks: &Hooks,
    id: u64,
    reply: &Reply,
    channel: u64,
    message: u64,
    size: u64,
) -> StoreError {
    let code = serde_json::from_slice::<ErrorBody>(&reply.body).map_or(-1, |b| b.code);
    match (reply.status.as_u16(), code) {
        (404, 10015) => hooks.kill(id, UNKNOWN),
        (401, _) | (_, 50027) => hooks.kill(id, WRONG_TOKEN),
        (s, _) => classify(s, &reply.body, channel, message, size),
    }
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(body).map_err(|e| StoreError::Protocol(e.to_string()))
}

impl BotStore {
    /// Whether a bot token is configured (else only webhook routes can be used).
    pub fn has_bot(&self) -> bool {
        self.bot
    }

    /// `(webhook, channel)` of every configured webhook still alive, in configuration order.
    /// Each webhook's channel is asked once per session (`GET /webhooks/{id}/{token}`); with a
    /// bot it must be one of the configured channels, so `recover` finds what it posts.
    pub async fn live_webhooks(&self) -> Result<Vec<(u64, u64)>, StoreError> {
        let all = self
            .hooks
            .channels
            .get_or_try_init(|| async {
                let mut out = Vec::new();
                for id in self.hooks.ids() {
                    match self.webhook_channel(id).await {
                        Ok(channel) => {
                            // The webhooks of one channel share Discord's hidden per-channel cap.
                            self.t.join_group(Lane::Webhook(id).create_key(), channel);
                            out.push((id, channel))
                        }
                        Err(StoreError::DeadWebhook { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(out)
            })
            .await?;
        Ok(all
            .iter()
            .copied()
            .filter(|(id, _)| !self.hooks.is_dead(*id))
            .collect())
    }

    async fn webhook_channel(&self, id: u64) -> Result<u64, StoreError> {
        let url = self.t.api_url(&self.hooks.path(id)?);
        let key = RouteKey {
            kind: "webhook-get",
            major: id,
        };
        let reply = self.t.send_plain(key, |c| Ok(c.get(&url))).await?;
        if !reply.status.is_success() {
            return Err(refused(&self.hooks, id, &reply, 0, 0, 0));
        }
        let hook: serde_json::Value = decode(&reply.body)?;
        let channel = hook["channel_id"]
            .as_str()
            .and_then(|c| c.parse::<u64>().ok())
            .ok_or_else(|| StoreError::Protocol(format!("webhook {id} names no channel")))?;
        if !self.channels.is_empty() && !self.channels.contains(&channel) {
            return Err(StoreError::WebhookElsewhere {
                webhook: id,
                channel,
            });
        }
        Ok(channel)
    }

    /// The lanes of an upload: every configured channel when a bot token is set, and every
    /// live webhook.
    pub async fn upload_lanes(&self) -> Result<Vec<Lane>, StoreError> {
        let mut lanes: Vec<Lane> = Vec::new();
        if self.bot {
            lanes.extend(self.channels.iter().map(|&c| Lane::Channel(c)));
        }
        lanes.extend(
            self.live_webhooks()
                .await?
                .into_iter()
                .map(|(w, _)| Lane::Webhook(w)),
        );
        if lanes.is_empty() {
            return Err(StoreError::NoLane);
        }
        Ok(lanes)
    }

    /// When `lane` could send a message without a rate-limit wait.
    pub fn lane_ready(&self, lane: Lane) -> Instant {
        self.t.ready_at(&lane.create_key())
    }

    /// Takes the slot `lane` has now for a message about to be posted there; false when it
    /// has none (another pack took it).
    pub fn reserve_lane(&self, lane: Lane) -> bool {
        self.t.reserve(&lane.create_key())
    }

    /// Messages per second `lanes` allow together, as the rate limiter knows them now.
    pub fn lanes_rate(&self, lanes: &[Lane]) -> Option<f64> {
        let keys: Vec<RouteKey> = lanes.iter().map(|l| l.create_key()).collect();
        self.t.rate(&keys)
    }

    /// A live webhook of `channel` that can send soonest, for posts without a bot.
    pub(super) async fn webhook_for(&self, channel: u64) -> Result<u64, StoreError> {
        let hooks = self.live_webhooks().await?;
        hooks
            .iter()
            .filter(|(_, c)| *c == channel)
            .map(|(w, _)| *w)
            .min_by_key(|w| self.lane_ready(Lane::Webhook(*w)))
            .ok_or(StoreError::NoWebhookIn { channel })
    }

    /// Posts `attachments` as one message in `channel` through its webhooks (without a bot):
    /// on the one that can send soonest, and after a lost reply or a dead webhook on the next
    /// (so a lost reply leaves at most one copy behind).
    pub(super) async fn execute_in(
        &self,
        channel: u64,
        attachments: &[(String, Bytes)],
    ) -> Result<Vec<RemotePart>, StoreError> {
        let mut tries = 0;
        loop {
            let hook = self.webhook_for(channel).await?;
            match self.execute(hook, attachments).await {
                Err(e @ (StoreError::Ambiguous { .. } | StoreError::DeadWebhook { .. }))
                    if tries < 3 =>
                {
                    tries += 1;
                    tracing::warn!(channel, "{e}");
                }
                r => return r,
            }
        }
    }

    /// Executes webhook `id` with `attachments` as one message (`?wait=true`, so Discord
    /// returns it) and checks each attachment came back with its size. A try whose reply was
    /// lost is never sent again blindly: with a bot the message is looked for in the channel's
    /// history first; without one the post fails with [`StoreError::Ambiguous`] so the caller
    /// can send it on another lane.
    pub async fn execute(
        &self,
        id: u64,
        attachments: &[(String, Bytes)],
    ) -> Result<Vec<RemotePart>, StoreError> {
        let url = format!("{}?wait=true", self.t.api_url(&self.hooks.path(id)?));
        let key = Lane::Webhook(id).create_key();
        let listed: Vec<serde_json::Value> = attachments
            .iter()
            .enumerate()
            .map(|(i, (name, _))| serde_json::json!({"id": i, "filename": name}))
            .collect();
        let payload = serde_json::json!({ "attachments": listed }).to_string();
        let form = || {
            let mut form = reqwest::multipart::Form::new();
            for (i, (name, data)) in attachments.iter().enumerate() {
                let part = reqwest::multipart::Part::stream_with_length(
                    reqwest::Body::from(data.clone()),
                    data.len() as u64,
                )
                .file_name(name.clone())
                .mime_str("application/octet-stream")
                .map_err(|e| StoreError::Protocol(e.to_string()))?;
                form = form.part(format!("files[{i}]"), part);
            }
            Ok::<_, StoreError>(form.text("payload_json", payload.clone()))
        };
        let asked = OffsetDateTime::now_utc();
        let mut attempts = self.t.attempts(key.kind);
        let reply = loop {
            // No nonce: any try that may have been carried out is late at once.
            let sent = self
                .t
                .send_plain_until(key, &mut attempts, Some(std::time::Duration::ZERO), |c| {
                    Ok(c.post(&url).multipart(form()?))
                })
                .await?;
            match sent {
                Sent::Reply(reply) => break reply,
                Sent::Late(since) => {
                    if !self.bot {
                        tracing::warn!(
                            webhook = id,
                            "a webhook's reply was lost after the message was sent; without a bot token it cannot be looked for"
                        );
                        return Err(StoreError::Ambiguous { webhook: id });
                    }
                    let channel = self
                        .live_webhooks()
                        .await?
                        .into_iter()
                        .find(|(w, _)| *w == id)
                        .map(|(_, c)| c)
                        .ok_or(StoreError::DeadWebhook {
                            webhook: id,
                            reason: "answered earlier that it cannot be used",
                        })?;
                    let newer_than = snowflake_at(asked);
                    if let Some(found) = self
                        .find_posted_in(channel, attachments, newer_than, id, since)
                        .await?
                    {
                        return Ok(found);
                    }
                    attempts.none_done();
                }
            }
        };
        let total = attachments.iter().map(|(_, d)| d.len() as u64).sum();
        if !reply.status.is_success() {
            return Err(refused(&self.hooks, id, &reply, 0, 0, total));
        }
        let msg: Message = decode(&reply.body)?;
        self.hooks.note_poster(msg.id.get(), id);
        super::bot::confirmed(&msg, attachments)
    }

    /// `GET` (or `DELETE`, when `delete`) of message `message` through webhook `id`; `None`
    /// when that webhook has no such message (Unknown Message).
    async fn webhook_message(
        &self,
        id: u64,
        channel: u64,
        message: u64,
        delete: bool,
    ) -> Result<Option<Option<Message>>, StoreError> {
        let url = self
            .t
            .api_url(&format!("{}/messages/{message}", self.hooks.path(id)?));
        let key = RouteKey {
            kind: if delete {
                "webhook-delete-message"
            } else {
                "webhook-get-message"
            },
            major: id,
        };
        let reply = self
            .t
            .send_plain(key, |c| {
                Ok(if delete { c.delete(&url) } else { c.get(&url) })
            })
            .await?;
        if reply.status.is_success() {
            return Ok(Some(if delete {
                None
            } else {
                Some(decode(&reply.body)?)
            }));
        }
        match refused(&self.hooks, id, &reply, channel, message, 0) {
            StoreError::UnknownMessage { .. } => Ok(None),
            e => Err(e),
        }
    }

    /// The webhooks that may hold `message` of `channel`: the one known to have posted it
    /// first, then the channel's others.
    async fn webhooks_for_message(
        &self,
        channel: u64,
        message: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let mut ids: Vec<u64> = self
            .live_webhooks()
            .await?
            .into_iter()
            .filter(|(_, c)| *c == channel)
            .map(|(w, _)| w)
            .collect();
        if let Some(known) = self.hooks.poster(message) {
            ids.retain(|w| *w != known);
            if !self.hooks.is_dead(known) {
                ids.insert(0, known);
            }
        }
        Ok(ids)
    }

    /// Message `message` of `channel` through the webhook that posted it (without a bot).
    pub(super) async fn message_via_webhooks(
        &self,
        channel: u64,
        message: u64,
    ) -> Result<Message, StoreError> {
        for id in self.webhooks_for_message(channel, message).await? {
            if let Some(Some(msg)) = self.webhook_message(id, channel, message, false).await? {
                self.hooks.note_poster(message, id);
                return Ok(msg);
            }
        }
        Err(StoreError::NotByWebhooks { channel, message })
    }

    /// Deletes message `message` of `channel` through the webhook that posted it (without a
    /// bot); one no webhook has counts as gone.
    pub(super) async fn delete_via_webhooks(
        &self,
        channel: u64,
        message: u64,
    ) -> Result<(), StoreError> {
        for id in self.webhooks_for_message(channel, message).await? {
            if self
                .webhook_message(id, channel, message, true)
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        tracing::warn!(
            channel,
            message,
            "no configured webhook of the channel has the message; taken as already deleted"
        );
        Ok(())
    }
}

/// The smallest snowflake of a message created at or after `at`, less the clock skew
/// allowed (discord-api.md: snowflakes carry milliseconds since 2015).
fn snowflake_at(at: OffsetDateTime) -> u64 {
    const DISCORD_EPOCH_MS: i128 = 1_420_070_400_000;
    let ms = (at - super::bot::CLOCK_SKEW).unix_timestamp_nanos() / 1_000_000 - DISCORD_EPOCH_MS;
    u64::try_from(ms.max(0)).unwrap_or(0) << 22
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_print_their_kind_and_id_only() {
        assert_eq!(Lane::Webhook(42).to_string(), "webhook 42");
        assert_eq!(Lane::Channel(7).to_string(), "channel 7");
        let hooks = Hooks::new(vec![Webhook {
            id: 42,
            token: Secret::new("sekrit-token-value"),
        }]);
        assert_eq!(format!("{hooks:?}"), "Hooks([42])");
        let err = hooks.kill(42, WRONG_TOKEN).to_string();
        assert!(
            err.contains("webhook 42") && !err.contains("sekrit"),
            "{err}"
        );
        let again = hooks.path(42).unwrap_err().to_string();
        assert!(!again.contains("sekrit"), "{again}");
    }

    #[test]
    fn snowflakes_of_an_instant_are_ordered_like_it() {
        let a = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let b = a + time::Duration::seconds(1);
        assert!(snowflake_at(a) < snowflake_at(b));
        assert_eq!(snowflake_at(OffsetDateTime::UNIX_EPOCH), 0);
    }
}
