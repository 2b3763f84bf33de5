//! [`PartStore`] through a bot token: serenity builds each request and decodes each model,
//! [`Transport`] sends it.

use std::borrow::Cow;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serenity::builder::CreateAttachment;
use serenity::http::{LightMethod, Multipart, MultipartUpload, Request, Route};
use serenity::model::channel::{Attachment, Message};
use serenity::model::id::{ChannelId, GuildId};
use time::OffsetDateTime;

use super::error::classify;
use super::ratelimit::RouteKey;
use super::transport::{Reply, Transport};
use super::{NameFilter, PartStore, PartStream, PutPart, Reload, RemotePart, StoreError};
use crate::config::Config;

/// Per-file upload limits by boost tier (discord-api.md §1.1).
const DEFAULT_LIMIT: u64 = 10_485_760;
const TIER2_LIMIT: u64 = 52_428_800;
const TIER3_LIMIT: u64 = 104_857_600;

/// Messages per page when listing a channel, Discord's maximum (discord-api.md §4).
const PAGE: u8 = 100;

pub struct BotStore {
    t: Transport,
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
        })
    }

    pub async fn get_message(&self, channel: u64, message: u64) -> Result<Message, StoreError> {
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

    /// Downloads `url` (a CDN URL) and checks the answer, which serenity's own download does not
    /// (discord-api.md §5.1): a 404 is content gone, not data.
    /// Starts downloading `url`, retrying what deserves it until the CDN answers.
    async fn open(&self, url: &str) -> Result<PartStream, StoreError> {
        let (backoff, retries) = self.t.backoff();
        let mut failures = 0;
        loop {
            let why = match self.t.client().get(url).send().await {
                Ok(resp) if resp.status().is_success() => {
                    return Ok(resp
                        .bytes_stream()
                        .map_err(|e| StoreError::CutOff(e.without_url().to_string()))
                        .boxed())
                }
                Ok(resp) if resp.status() == 404 => return Err(StoreError::ContentGone),
                Ok(resp) if resp.status().is_server_error() || resp.status() == 429 => {
                    format!("the CDN answered {}", resp.status())
                }
                Ok(resp) => {
                    return Err(StoreError::Rejected {
                        status: resp.status().as_u16(),
                        code: -1,
                        message: "the CDN refused the download".into(),
                    })
                }
                Err(e) => format!("download failed: {}", e.without_url()),
            };
            failures += 1;
            if failures > retries {
                return Err(StoreError::GaveUp {
                    attempts: failures,
                    last: why,
                });
            }
            tokio::time::sleep(backoff.delay(failures)).await;
        }
    }
}

impl BotStore {
    /// Deletes one message; one already gone counts as deleted.
    pub async fn delete_message(&self, channel: u64, message: u64) -> Result<(), StoreError> {
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
        let key = RouteKey {
            kind: "bulk-delete",
            major: channel,
        };
        let body = serde_json::to_vec(&serde_json::json!({
            "messages": messages.iter().map(|m| m.to_string()).collect::<Vec<_>>()
        }))
        .expect("ids serialise");
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

impl PartStore for BotStore {
    async fn put_part(&self, part: PutPart) -> Result<RemotePart, StoreError> {
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
        let reply = self
            .t
            .send_with(key, || {
                let file = CreateAttachment::bytes(bodies.next()?, part.filename.clone());
                Ok(Request::new(
                    Route::ChannelMessages {
                        channel_id: cid(part.channel_id),
                    },
                    LightMethod::Post,
                )
                .multipart(Some(Multipart {
                    upload: MultipartUpload::Attachments(vec![file]),
                    fields: Vec::<(Cow<'static, str>, Cow<'static, str>)>::new(),
                    payload_json: Some(payload.clone()),
                })))
            })
            .await?;
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

    async fn part_size_limit(&self, channel_id: u64) -> Result<u64, StoreError> {
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
    spare: Option<Bytes>,
    reload: Option<Reload>,
}

impl Bodies {
    fn new(data: Bytes, reload: Option<Reload>) -> Self {
        // Without a way to read the part again, keep a handle for retries (and copy each time).
        let spare = reload.is_none().then(|| data.clone());
        Self {
            first: Some(data),
            spare,
            reload,
        }
    }

    fn next(&mut self) -> Result<Vec<u8>, StoreError> {
        if let Some(first) = self.first.take() {
            // No copy when this is the only handle on the bytes.
            return Ok(Vec::from(first));
        }
        match (&self.spare, &self.reload) {
            (Some(spare), _) => Ok(spare.to_vec()),
            (None, Some(reload)) => reload.read(),
            (None, None) => unreachable!("a part has spare bytes or a way to reload them"),
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

fn remote(msg: &Message, a: &Attachment) -> RemotePart {
    RemotePart {
        channel_id: msg.channel_id.get(),
        message_id: msg.id.get(),
        attachment_id: a.id.get(),
        filename: a.filename.clone(),
        size: u64::from(a.size),
        url: a.url.clone(),
        posted_at: timestamp(msg),
    }
}
