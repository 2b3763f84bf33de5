//! [`PartStore`] through a bot token: serenity builds each request and decodes each model,
//! [`Transport`] sends it.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serenity::http::{LightMethod, Request, Route};
use serenity::model::channel::{Attachment, Message};
use serenity::model::id::{ChannelId, GuildId};
use time::OffsetDateTime;

use super::error::classify;
use super::ratelimit::RouteKey;
use super::transport::{Reply, Sent, Transport};
use super::webhook::{Hooks, Lane};
use super::{
    NameFilter, PartStore, PartStream, PutMessage, PutPart, Reload, RemotePart, StoreError,
    MAX_ATTACHMENTS,
};
use crate::config::Config;

/// Per-file upload limits by boost tier (discord-api.md §1.1).
const DEFAULT_LIMIT: u64 = 10_485_760;
const TIER2_LIMIT: u64 = 52_428_800;
const TIER3_LIMIT: u64 = 104_857_600;

/// Messages per page when listing a channel, Discord's maximum (discord-api.md §4).
const PAGE: u8 = 100;

/// How long after a try of a create its nonce is trusted to stop a second copy. Discord
/// dedupes a nonce for "a few minutes" (discord-api.md §1.4); a later retry first looks for
/// the part in the channel.
const NONCE_TRUST: Duration = Duration::from_secs(60);

/// How far Discord's clock may be ahead of ours when looking for a part posted by a try.
pub(super) const CLOCK_SKEW: time::Duration = time::Duration::seconds(10);

pub struct BotStore {
    pub(super) t: Transport,
    nonce_trust: Duration,
    /// The bot's own user ID, asked once (`GET /users/@me`).
    me: tokio::sync::OnceCell<u64>,
    /// A bot token is configured: without one only webhook routes are used.
    pub(super) bot: bool,
    /// The configured channels.
    pub(super) channels: Vec<u64>,
    pub(super) hooks: Hooks,
}

/// A part a late retry looks for: same channel, name and bytes.
struct Sought<'a> {
    channel_id: u64,
    filename: &'a str,
    size: u64,
    sha256: &'a str,
}

fn cid(id: u64) -> ChannelId {
    ChannelId::new(id)
}

/// `/channels/{channel}/messages/{message}`, for getting and deleting one message.
fn message_route(channel: u64, message: u64) -> Route<'static> {
    Route::ChannelMessage {
        channel_id: cid(channel),
        message_id: message.into(),
    }
}

impl BotStore {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            t: Transport::new(config)?,
            nonce_trust: NONCE_TRUST,
            me: tokio::sync::OnceCell::new(),
            bot: !config.token.is_empty(),
            channels: config.channels.clone(),
            hooks: Hooks::new(config.webhooks.clone()),
        })
    }

    /// Sets how long a create's nonce is trusted (tests shorten it along with the emulator's).
    #[must_use]
    pub fn with_nonce_trust(mut self, trust: Duration) -> Self {
        self.nonce_trust = trust;
        self
    }

    /// The part a try sent at `since` posted, if Discord has it: found by its name, and
    /// returned only when its bytes are the ones being sent.
    async fn find_posted(
        &self,
        wanted: &Sought<'_>,
        since: OffsetDateTime,
    ) -> Result<Option<RemotePart>, StoreError> {
        let named = |name: &str| name == wanted.filename;
        let found = self
            .find_parts(wanted.channel_id, &named, since - CLOCK_SKEW)
            .await?;
        let me = self.own_user_id().await?;
        // Only a part this bot posted: another user's copy could be deleted under us.
        let ours = found
            .into_iter()
            .filter(|p| p.size == wanted.size && p.author_id == me);
        for candidate in ours {
            let bytes = self.read_part(&candidate).await?;
            if crate::hash::sha256_hex(&bytes) == wanted.sha256 {
                tracing::info!(
                    part = wanted.filename,
                    message = candidate.message_id,
                    "a retry found the part already posted; not posting it again"
                );
                return Ok(Some(candidate));
            }
        }
        Ok(None)
    }

    /// The message a try of `message` sent at `since` posted, if Discord has it: one by this
    /// bot, newer than `message.newer_than`, holding every attachment with the name and bytes
    /// sent; its attachments in the order of `message`.
    async fn find_posted_message(
        &self,
        message: &PutMessage,
        since: OffsetDateTime,
    ) -> Result<Option<Vec<RemotePart>>, StoreError> {
        let me = self.own_user_id().await?;
        self.find_posted_in(
            message.channel_id,
            &message.attachments,
            message.newer_than,
            me,
            since,
        )
        .await
    }

    /// A message of `channel` by `author`, newer than `newer_than` and posted at or after
    /// `since`, holding every attachment of `attachments` with its name and bytes; its
    /// attachments in the order given.
    pub(super) async fn find_posted_in(
        &self,
        channel: u64,
        attachments: &[(String, Bytes)],
        newer_than: u64,
        author: u64,
        since: OffsetDateTime,
    ) -> Result<Option<Vec<RemotePart>>, StoreError> {
        let names: std::collections::HashSet<&str> =
            attachments.iter().map(|(n, _)| n.as_str()).collect();
        let named = |name: &str| names.contains(name);
        let found = self.find_parts(channel, &named, since - CLOCK_SKEW).await?;
        let mut by_message: std::collections::BTreeMap<u64, Vec<RemotePart>> = Default::default();
        for p in found {
            if p.author_id == author && p.message_id > newer_than {
                by_message.entry(p.message_id).or_default().push(p);
            }
        }
        'messages: for (id, parts) in by_message {
            let mut placed = Vec::with_capacity(attachments.len());
            for (name, data) in attachments {
                match parts
                    .iter()
                    .find(|p| &p.filename == name && p.size == data.len() as u64)
                {
                    Some(p) => placed.push(p.clone()),
                    None => continue 'messages,
                }
            }
            for (p, (_, data)) in placed.iter().zip(attachments) {
                let bytes = self.read_part(p).await?;
                if crate::hash::sha256_hex(&bytes) != crate::hash::sha256_hex(data) {
                    continue 'messages;
                }
            }
            tracing::info!(
                message = id,
                attachments = placed.len(),
                "a retry found the message already posted; not posting it again"
            );
            return Ok(Some(placed));
        }
        Ok(None)
    }

    /// The bot's own user ID: the author of every message it posts.
    pub async fn own_user_id(&self) -> Result<u64, StoreError> {
        if !self.bot {
            return Err(StoreError::NeedsBot("asking Discord who the bot is"));
        }
        self.me
            .get_or_try_init(|| async {
                let key = RouteKey {
                    kind: "get-user",
                    major: 0,
                };
                let me = self.get_json(key, Route::UserMe).await?;
                me["id"]
                    .as_str()
                    .and_then(|id| id.parse().ok())
                    .ok_or_else(|| StoreError::Protocol("the bot user has no ID".into()))
            })
            .await
            .copied()
    }

    pub async fn get_message(&self, channel: u64, message: u64) -> Result<Message, StoreError> {
        if !self.bot {
            return self.message_via_webhooks(channel, message).await;
        }
        let key = RouteKey {
            kind: "get-message",
            major: channel,
        };
        let reply = self
            .t
            .send(key, || {
                Request::new(message_route(channel, message), LightMethod::Get)
            })
            .await?;
        decode(&expect_ok(reply, channel, message, 0)?)
    }

    /// One page of messages older than `before`, newest first.
    pub async fn messages_before(
        &self,
        channel: u64,
        before: Option<u64>,
    ) -> Result<Vec<Message>, StoreError> {
        if !self.bot {
            return Err(StoreError::NeedsBot("reading a channel's history"));
        }
        let key = RouteKey {
            kind: "list-messages",
            major: channel,
        };
        let mut params = vec![("limit", PAGE.to_string())];
        if let Some(b) = before {
            params.push(("before", b.to_string()));
        }
        let reply = self
            .t
            .send(key, || {
                Request::new(
                    Route::ChannelMessages {
                        channel_id: cid(channel),
                    },
                    LightMethod::Get,
                )
                .params(Some(params.clone()))
            })
            .await?;
        decode(&expect_ok(reply, channel, 0, 0)?)
    }

    async fn get_json(
        &self,
        key: RouteKey,
        route: Route<'static>,
    ) -> Result<serde_json::Value, StoreError> {
        let reply = self
            .t
            .send(key, || Request::new(route, LightMethod::Get))
            .await?;
        decode(&expect_ok(reply, key.major, 0, 0)?)
    }

    /// Starts downloading `url` (a CDN URL) and checks the answer, which serenity's own
    /// download does not (discord-api.md §5.1): a 404 is content gone, not data.
    async fn open(&self, url: &str) -> Result<PartStream, StoreError> {
        match self.t.open(url).await? {
            Ok(stream) => Ok(stream),
            Err(status) if status == 404 => Err(StoreError::ContentGone),
            Err(status) => Err(StoreError::Rejected {
                status: status.as_u16(),
                code: -1,
                message: "the CDN refused the download".into(),
            }),
        }
    }
}

impl BotStore {
    /// One ranged GET of `url` for an attachment of `size` bytes: the bytes, or the refusing
    /// status (403 or 404: perhaps an expired URL) for the caller to refresh and retry.
    async fn range_once(
        &self,
        url: &str,
        range: &std::ops::Range<u64>,
        size: u64,
        buf: bytes::BytesMut,
    ) -> Result<Result<Bytes, reqwest::StatusCode>, StoreError> {
        let outside = || StoreError::RangeOutside {
            start: range.start,
            end: range.end,
            size,
        };
        let opened = match self.t.open_range(url, Some(range.clone())).await? {
            Ok(opened) => opened,
            Err(status) if status == 403 || status == 404 => return Ok(Err(status)),
            Err(status) if status == 416 => return Err(outside()),
            Err(status) => {
                return Err(StoreError::Rejected {
                    status: status.as_u16(),
                    code: -1,
                    message: "the CDN refused the download".into(),
                })
            }
        };
        if opened.status == 206 {
            let announced = opened
                .content_range
                .as_deref()
                .and_then(parse_content_range);
            if announced != Some((range.start, range.end, Some(size)))
                && announced != Some((range.start, range.end, None))
            {
                return Err(StoreError::Protocol(format!(
                    "the CDN answered bytes {} when asked for {}..{} of {size}",
                    opened
                        .content_range
                        .as_deref()
                        .unwrap_or("(no Content-Range)"),
                    range.start,
                    range.end
                )));
            }
            return collect(opened.stream, range.end - range.start, buf)
                .await
                .map(Ok);
        }
        // A 200 is the whole attachment (a CDN may ignore Range): kept only if it is exactly that.
        let all = collect(opened.stream, size, bytes::BytesMut::new()).await?;
        super::cut_range(all, size, range).map(Ok)
    }

    /// Deletes one message; one already gone counts as deleted.
    pub async fn delete_message(&self, channel: u64, message: u64) -> Result<(), StoreError> {
        if !self.bot {
            return self.delete_via_webhooks(channel, message).await;
        }
        let key = RouteKey {
            kind: "delete-message",
            major: channel,
        };
        let reply = self
            .t
            .send(key, || {
                Request::new(message_route(channel, message), LightMethod::Delete)
            })
            .await?;
        match expect_ok(reply, channel, message, 0) {
            Ok(_) | Err(StoreError::UnknownMessage { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes 2 to 100 messages younger than 14 days in one request (discord-api.md §4).
    pub async fn bulk_delete(&self, channel: u64, messages: &[u64]) -> Result<(), StoreError> {
        if !self.bot {
            // Webhooks delete one message at a time.
            for &m in messages {
                self.delete_via_webhooks(channel, m).await?;
            }
            return Ok(());
        }
        let key = RouteKey {
            kind: "bulk-delete",
            major: channel,
        };
        let body = serde_json::to_vec(&serde_json::json!({
            "messages": messages.iter().map(|m| m.to_string()).collect::<Vec<_>>()
        }))
        .map_err(|e| StoreError::Protocol(e.to_string()))?;
        let reply = self
            .t
            .send(key, || {
                Request::new(
                    Route::ChannelMessagesBulkDelete {
                        channel_id: cid(channel),
                    },
                    LightMethod::Post,
                )
                .body(Some(body.clone()))
            })
            .await?;
        expect_ok(reply, channel, 0, 0).map(|_| ())
    }
}

impl BotStore {
    /// [`PartStore::put_part`] through the bot: a create with a nonce.
    async fn put_part_bot(&self, part: PutPart) -> Result<RemotePart, StoreError> {
        let key = RouteKey {
            kind: "create-message",
            major: part.channel_id,
        };
        let payload = serde_json::json!({
            "nonce": part.nonce,
            "enforce_nonce": true,
            "attachments": [{"id": 0, "filename": part.filename}],
        })
        .to_string();
        let size = part.data.len() as u64;
        let mut bodies = Bodies::new(part.data, part.reload);
        let mut attempts = self.t.attempts(key.kind);
        let reply = loop {
            // Each try's body is a handle on the part's bytes (or the source read again): the
            // bytes are never copied to be sent, nor held twice.
            let form = || {
                let data = bodies.next()?;
                let len = data.len() as u64;
                let file =
                    reqwest::multipart::Part::stream_with_length(reqwest::Body::from(data), len)
                        .file_name(part.filename.clone())
                        .mime_str("application/octet-stream")
                        .map_err(|e| StoreError::Protocol(e.to_string()))?;
                Ok(reqwest::multipart::Form::new()
                    .part("files[0]", file)
                    .text("payload_json", payload.clone()))
            };
            let route = Route::ChannelMessages {
                channel_id: cid(part.channel_id),
            };
            let sent = self
                .t
                .send_form_until(key, &mut attempts, Some(self.nonce_trust), route, form)
                .await?;
            match sent {
                Sent::Reply(reply) => break reply,
                // Discord may have forgotten the nonce: a new try could post a second copy.
                Sent::Late(since) => {
                    let sha256 = bodies.sha256();
                    let wanted = Sought {
                        channel_id: part.channel_id,
                        filename: &part.filename,
                        size,
                        sha256: &sha256,
                    };
                    if let Some(found) = self.find_posted(&wanted, since).await? {
                        return Ok(found);
                    }
                    attempts.none_done();
                }
            }
        };
        let msg: Message = decode(&expect_ok(reply, part.channel_id, 0, size)?)?;
        let stored = msg
            .attachments
            .iter()
            .find(|a| a.filename == part.filename)
            .ok_or_else(|| StoreError::Protocol("the message came back without the part".into()))?;
        if u64::from(stored.size) != size {
            return Err(StoreError::Protocol(format!(
                "Discord stored {} bytes of a {size}-byte part",
                stored.size
            )));
        }
        Ok(remote(&msg, stored))
    }
}

impl PartStore for BotStore {
    async fn put_part(&self, part: PutPart) -> Result<RemotePart, StoreError> {
        if !self.bot {
            let mut parts = self
                .execute_in(part.channel_id, &[(part.filename, part.data)])
                .await?;
            return parts
                .pop()
                .ok_or_else(|| StoreError::Protocol("the message came back empty".into()));
        }
        self.put_part_bot(part).await
    }

    async fn put_part_on(&self, lane: Lane, part: PutPart) -> Result<RemotePart, StoreError> {
        match lane {
            Lane::Channel(_) if !self.bot => Err(StoreError::NeedsBot("posting as the bot")),
            Lane::Channel(channel_id) => self.put_part_bot(PutPart { channel_id, ..part }).await,
            Lane::Webhook(id) => {
                let mut parts = self.execute(id, &[(part.filename, part.data)]).await?;
                parts
                    .pop()
                    .ok_or_else(|| StoreError::Protocol("the message came back empty".into()))
            }
        }
    }

    async fn upload_lanes(&self) -> Result<Vec<Lane>, StoreError> {
        BotStore::upload_lanes(self).await
    }

    fn lane_ready(&self, lane: Lane) -> tokio::time::Instant {
        BotStore::lane_ready(self, lane)
    }

    fn reserve_lane(&self, lane: Lane) -> bool {
        BotStore::reserve_lane(self, lane)
    }

    fn lanes_rate(&self, lanes: &[Lane]) -> Option<f64> {
        BotStore::lanes_rate(self, lanes)
    }

    fn reads_history(&self) -> bool {
        self.bot
    }

    async fn put_parts(&self, message: PutMessage) -> Result<Vec<RemotePart>, StoreError> {
        let count = message.attachments.len();
        if count == 0 || count > MAX_ATTACHMENTS {
            return Err(StoreError::Protocol(format!(
                "a message holds 1 to {MAX_ATTACHMENTS} attachments, not {count}"
            )));
        }
        let mut names: Vec<&str> = message
            .attachments
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(StoreError::Protocol(
                "two attachments of one message have the same name".into(),
            ));
        }
        let channel = message.channel_id;
        if !self.bot {
            return self.execute_in(channel, &message.attachments).await;
        }
        let key = RouteKey {
            kind: "create-message",
            major: channel,
        };
        let listed: Vec<serde_json::Value> = message
            .attachments
            .iter()
            .enumerate()
            .map(|(i, (name, _))| serde_json::json!({"id": i, "filename": name}))
            .collect();
        let payload = serde_json::json!({
            "nonce": message.nonce,
            "enforce_nonce": true,
            "attachments": listed,
        })
        .to_string();
        // Each try sends handles on the same bytes: no copy of the attachments is made.
        let form = || {
            let mut form = reqwest::multipart::Form::new();
            for (i, (name, data)) in message.attachments.iter().enumerate() {
                let part = reqwest::multipart::Part::stream_with_length(
                    reqwest::Body::from(data.clone()),
                    data.len() as u64,
                )
                .file_name(name.clone())
                .mime_str("application/octet-stream")
                .map_err(|e| StoreError::Protocol(e.to_string()))?;
                form = form.part(format!("files[{i}]"), part);
            }
            Ok(form.text("payload_json", payload.clone()))
        };
        let mut attempts = self.t.attempts(key.kind);
        let reply = loop {
            let route = Route::ChannelMessages {
                channel_id: cid(channel),
            };
            let sent = self
                .t
                .send_form_until(key, &mut attempts, Some(self.nonce_trust), route, form)
                .await?;
            match sent {
                Sent::Reply(reply) => break reply,
                // Discord may have forgotten the nonce: a new try could post a second copy.
                Sent::Late(since) => {
                    if let Some(found) = self.find_posted_message(&message, since).await? {
                        return Ok(found);
                    }
                    attempts.none_done();
                }
            }
        };
        let total = message
            .attachments
            .iter()
            .map(|(_, d)| d.len() as u64)
            .sum();
        let msg: Message = decode(&expect_ok(reply, channel, 0, total)?)?;
        confirmed(&msg, &message.attachments)
    }

    async fn find_parts(
        &self,
        channel_id: u64,
        wanted: &NameFilter<'_>,
        since: OffsetDateTime,
    ) -> Result<Vec<RemotePart>, StoreError> {
        let mut found = Vec::new();
        let mut before = None;
        loop {
            let page = self.messages_before(channel_id, before).await?;
            // Pages run newest to oldest; the next one starts below this page's oldest message.
            let Some(oldest) = page.iter().map(|m| m.id.get()).min() else {
                break;
            };
            if before.is_some_and(|b| oldest >= b) {
                break; // no progress: never page forever
            }
            before = Some(oldest);
            let mut older = false;
            for msg in &page {
                if timestamp(msg) < since {
                    older = true;
                    continue;
                }
                for a in msg.attachments.iter().filter(|a| wanted(&a.filename)) {
                    found.push(remote(msg, a));
                }
            }
            if older || page.len() < PAGE as usize {
                break;
            }
        }
        Ok(found)
    }

    async fn locate_part(
        &self,
        channel_id: u64,
        message_id: u64,
        attachment_id: u64,
    ) -> Result<RemotePart, StoreError> {
        let msg = self.get_message(channel_id, message_id).await?;
        let a = msg
            .attachments
            .iter()
            .find(|a| a.id.get() == attachment_id)
            .ok_or(StoreError::ContentGone)?;
        Ok(remote(&msg, a))
    }

    async fn stream_part(&self, part: &RemotePart) -> Result<PartStream, StoreError> {
        match self.open(&part.url).await {
            // The URL may have expired since it was fetched: fetch the message again.
            Err(StoreError::ContentGone) => {
                let fresh = self
                    .locate_part(part.channel_id, part.message_id, part.attachment_id)
                    .await?;
                self.open(&fresh.url).await
            }
            r => r,
        }
    }

    async fn read_part(&self, part: &RemotePart) -> Result<Bytes, StoreError> {
        let mut stream = self.stream_part(part).await?;
        let mut all = bytes::BytesMut::new();
        while let Some(chunk) = stream.next().await {
            all.extend_from_slice(&chunk?);
        }
        Ok(all.freeze())
    }

    async fn read_range(
        &self,
        part: &RemotePart,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, StoreError> {
        self.read_range_into(part, range, bytes::BytesMut::new())
            .await
    }

    async fn read_range_into(
        &self,
        part: &RemotePart,
        range: std::ops::Range<u64>,
        buf: bytes::BytesMut,
    ) -> Result<Bytes, StoreError> {
        if range.start > range.end || range.end > part.size {
            return Err(StoreError::RangeOutside {
                start: range.start,
                end: range.end,
                size: part.size,
            });
        }
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        match self.range_once(&part.url, &range, part.size, buf).await? {
            Ok(bytes) => Ok(bytes),
            // The URL may have expired since it was fetched: fetch the message again.
            Err(_) => {
                let fresh = self
                    .locate_part(part.channel_id, part.message_id, part.attachment_id)
                    .await?;
                match self
                    .range_once(&fresh.url, &range, part.size, bytes::BytesMut::new())
                    .await?
                {
                    Ok(bytes) => Ok(bytes),
                    Err(status) if status == 404 => Err(StoreError::ContentGone),
                    Err(status) => Err(StoreError::Rejected {
                        status: status.as_u16(),
                        code: -1,
                        message: "the CDN refused the download".into(),
                    }),
                }
            }
        }
    }

    async fn trusted_authors(&self) -> Result<Vec<u64>, StoreError> {
        // A webhook's message has the webhook's ID as its author.
        let mut ids = self.hooks.ids();
        if self.bot {
            ids.insert(0, self.own_user_id().await?);
        }
        Ok(ids)
    }

    async fn part_size_limit(&self, channel_id: u64) -> Result<u64, StoreError> {
        if !self.bot {
            // A server's boost tier is read with the bot's token only: the smallest limit is safe.
            return Ok(DEFAULT_LIMIT);
        }
        let key = RouteKey {
            kind: "get-channel",
            major: channel_id,
        };
        let channel = self
            .get_json(
                key,
                Route::Channel {
                    channel_id: cid(channel_id),
                },
            )
            .await?;
        let Some(guild) = channel["guild_id"]
            .as_str()
            .and_then(|g| g.parse::<u64>().ok())
        else {
            return Ok(DEFAULT_LIMIT);
        };
        let key = RouteKey {
            kind: "get-guild",
            major: guild,
        };
        let guild = self
            .get_json(
                key,
                Route::Guild {
                    guild_id: GuildId::new(guild),
                },
            )
            .await?;
        Ok(match guild["premium_tier"].as_u64().unwrap_or(0) {
            3 => TIER3_LIMIT,
            2 => TIER2_LIMIT,
            _ => DEFAULT_LIMIT,
        })
    }
}

/// The attachment bytes for each attempt to post a part (each send consumes its body).
struct Bodies {
    first: Option<Bytes>,
    again: Again,
}

/// Where the bytes of a second attempt come from.
enum Again {
    /// Another handle on the same bytes (no copy).
    Copy(Bytes),
    /// The source file, read again (and checked) for each attempt.
    Reload(Reload),
}

impl Bodies {
    fn new(data: Bytes, reload: Option<Reload>) -> Self {
        // Without a way to read the part again, keep a handle for retries (and copy each time).
        let again = match reload {
            Some(reload) => Again::Reload(reload),
            None => Again::Copy(data.clone()),
        };
        Self {
            first: Some(data),
            again,
        }
    }

    fn next(&mut self) -> Result<Bytes, StoreError> {
        if let Some(first) = self.first.take() {
            return Ok(first);
        }
        match &self.again {
            Again::Copy(bytes) => Ok(bytes.clone()),
            Again::Reload(reload) => reload.read().map(Bytes::from),
        }
    }

    /// The SHA-256 of the part's bytes, hex.
    fn sha256(&self) -> String {
        match &self.again {
            Again::Copy(bytes) => crate::hash::sha256_hex(bytes),
            Again::Reload(reload) => reload.sha256.clone(),
        }
    }
}

fn expect_ok(reply: Reply, channel: u64, message: u64, size: u64) -> Result<Bytes, StoreError> {
    if reply.status.is_success() {
        Ok(reply.body)
    } else {
        Err(classify(
            reply.status.as_u16(),
            &reply.body,
            channel,
            message,
            size,
        ))
    }
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(body).map_err(|e| StoreError::Protocol(e.to_string()))
}

fn timestamp(msg: &Message) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(msg.timestamp.unix_timestamp())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The attachments of a message Discord returned, in the order they were sent, each checked to
/// hold exactly the bytes sent: a part counts as stored only then.
pub(super) fn confirmed(
    msg: &Message,
    sent: &[(String, Bytes)],
) -> Result<Vec<RemotePart>, StoreError> {
    sent.iter()
        .map(|(name, data)| {
            let stored = msg
                .attachments
                .iter()
                .find(|a| &a.filename == name)
                .ok_or_else(|| {
                    StoreError::Protocol(
                        "the message came back without one of its attachments".into(),
                    )
                })?;
            if u64::from(stored.size) != data.len() as u64 {
                return Err(StoreError::Protocol(format!(
                    "Discord stored {} bytes of a {}-byte attachment",
                    stored.size,
                    data.len()
                )));
            }
            Ok(remote(msg, stored))
        })
        .collect()
}

pub(super) fn remote(msg: &Message, a: &Attachment) -> RemotePart {
    RemotePart {
        channel_id: msg.channel_id.get(),
        message_id: msg.id.get(),
        attachment_id: a.id.get(),
        filename: a.filename.clone(),
        size: u64::from(a.size),
        url: a.url.clone(),
        posted_at: timestamp(msg),
        author_id: msg.author.id.get(),
    }
}

/// A body of exactly `len` bytes; more is refused as soon as it arrives, fewer is a cut-off.
/// The whole body of `stream`, which must be `len` bytes, into `all` (emptied first; a
/// buffer of an earlier request, so its pages are not faulted in again).
async fn collect(
    mut stream: PartStream,
    len: u64,
    mut all: bytes::BytesMut,
) -> Result<Bytes, StoreError> {
    all.clear();
    all.reserve(len.min(1 << 24) as usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if (all.len() + chunk.len()) as u64 > len {
            return Err(StoreError::Protocol(format!(
                "the CDN sent more than the {len} bytes asked for"
            )));
        }
        all.extend_from_slice(&chunk);
    }
    if all.len() as u64 != len {
        return Err(StoreError::CutOff(format!(
            "{} of {len} bytes arrived",
            all.len()
        )));
    }
    Ok(all.freeze())
}

/// `bytes a-b/total` (or `/*`) as `(a, b + 1, total)`.
fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let (span, total) = v.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let (a, b) = (a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?);
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    (a <= b).then_some((a, b.checked_add(1)?, total))
}

#[cfg(test)]
mod tests {
    use super::parse_content_range;

    #[test]
    fn content_ranges_parse_with_exclusive_ends() {
        assert_eq!(
            parse_content_range("bytes 0-9/100"),
            Some((0, 10, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 5-5/*"), Some((5, 6, None)));
        assert_eq!(parse_content_range("bytes 9-5/100"), None);
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }
}
