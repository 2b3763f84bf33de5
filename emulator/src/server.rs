//! The `Emulator` handle: start on 127.0.0.1:0, accept connections (through the link caps),
//! test helpers, shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::api::{self, Outcome};
use crate::cdn::Signer;
use crate::config::EmulatorConfig;
use crate::faults::Faults;
use crate::link::{self, Pacer};
use crate::model::{Access, AttachmentInfo, MessageInfo, StoredAttachment, StoredMessage};
use crate::ratelimit::RateLimiter;
use crate::shared::Shared;
use crate::stats::{Counters, Stats};
use crate::store::Store;

/// A webhook made by `Emulator::create_webhook`. `Debug` leaves out the token and URL.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookInfo {
    pub id: u64,
    /// 68 characters of `[A-Za-z0-9_-]`.
    pub token: String,
    /// `<base_url>/api/v10/webhooks/<id>/<token>`: where to execute it.
    pub url: String,
}

impl std::fmt::Debug for WebhookInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookInfo")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A running emulator. Dropping it stops the server too; `shutdown` also waits for it.
#[derive(Debug)]
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Emulator {
    /// Opens (or creates) the state in `config.state_dir`, binds 127.0.0.1:0 and serves in a task.
    pub async fn start(config: EmulatorConfig) -> anyhow::Result<Emulator> {
        let dir = config.state_dir.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(&dir)).await??;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let meta = store.meta().clone();
        let signer = Signer {
            base_url: format!("http://{addr}"),
            secret: hex::decode(&meta.hmac_secret).context("meta.json hmac_secret is not hex")?,
            ttl: config.cdn_url_ttl,
        };
        let shared = Arc::new(Shared {
            limiter: Mutex::new(RateLimiter::new(config.rate_limits)),
            link: config.link_bytes_per_sec.map(Pacer::new),
            connection_totals: Default::default(),
            config,
            store: Mutex::new(store),
            faults: Faults::default(),
            stats: Counters::default(),
            signer,
            token: meta.token,
            bot_user_id: meta.bot_user_id,
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, shared.clone(), stopped));
        Ok(Emulator {
            shared,
            addr,
            stop,
            task: Mutex::new(Some(task)),
        })
    }

    /// `http://127.0.0.1:PORT`, no trailing slash; the API is under `/api/v10`, the CDN under `/attachments`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bot token, without the `Bot ` prefix.
    pub fn token(&self) -> String {
        self.shared.token.clone()
    }

    pub fn guild_id(&self) -> u64 {
        self.shared.with_store(|s| s.meta().default_guild)
    }

    pub fn channel_id(&self) -> u64 {
        self.shared.with_store(|s| s.meta().default_channel)
    }

    pub fn bot_user_id(&self) -> u64 {
        self.shared.bot_user_id
    }

    /// A new text channel in `guild_id`.
    pub fn add_channel(&self, guild_id: u64) -> u64 {
        self.shared
            .with_store(|s| s.add_channel(guild_id))
            .expect("writing meta.json")
    }

    pub fn add_guild(&self, premium_tier: u8) -> u64 {
        self.shared
            .with_store(|s| s.add_guild(premium_tier))
            .expect("writing meta.json")
    }

    pub fn set_premium_tier(&self, guild_id: u64, tier: u8) {
        self.update_guild(guild_id, |g| g.premium_tier = tier);
    }

    /// Overrides the boost-tier table for this guild (`None` restores it).
    pub fn set_upload_limit(&self, guild_id: u64, bytes: Option<u64>) {
        self.update_guild(guild_id, |g| g.upload_limit = bytes);
    }

    fn update_guild(&self, guild_id: u64, f: impl FnOnce(&mut crate::model::Guild)) {
        let r = self
            .shared
            .with_store(|s| s.update_meta(|m, _| m.guilds.get_mut(&guild_id).map(f).unwrap_or(())));
        r.expect("writing meta.json");
    }

    pub fn set_channel_access(&self, channel_id: u64, access: Access) {
        let r = self.shared.with_store(|s| {
            s.update_meta(|m, _| {
                m.channels
                    .get_mut(&channel_id)
                    .map(|c| c.access = access)
                    .unwrap_or(())
            })
        });
        r.expect("writing meta.json");
    }

    /// A new webhook of `channel_id`, as the bot (with Manage Webhooks) would create it; named
    /// `hook-N`. Panics if the channel is unknown or already has 15 webhooks (Discord's cap).
    pub fn create_webhook(&self, channel_id: u64) -> WebhookInfo {
        let hook = self
            .shared
            .with_store(|s| {
                let name = format!("hook-{}", s.webhooks_of(channel_id).len() + 1);
                s.add_webhook(channel_id, &name)
            })
            .expect("writing meta.json")
            .unwrap_or_else(|| {
                panic!("create_webhook: channel {channel_id} is unknown or has 15 webhooks")
            });
        WebhookInfo {
            id: hook.id,
            url: crate::json::webhook_url(&self.base_url(), &hook),
            token: hook.token,
        }
    }

    /// Deletes a webhook (its messages stay); its routes then answer 404 10015. False if there
    /// was no such webhook.
    pub fn delete_webhook(&self, webhook_id: u64) -> bool {
        self.shared
            .with_store(|s| s.delete_webhook(webhook_id))
            .expect("writing meta.json")
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Messages of a channel, oldest first.
    pub fn messages(&self, channel_id: u64) -> Vec<MessageInfo> {
        self.shared.with_store(|s| {
            s.all_messages(channel_id)
                .into_iter()
                .map(MessageInfo::from)
                .collect()
        })
    }

    pub fn attachment(&self, attachment_id: u64) -> Option<AttachmentInfo> {
        self.shared.with_store(|s| {
            s.attachment(attachment_id).map(|(_, a)| AttachmentInfo {
                id: a.id,
                filename: a.filename.clone(),
                size: a.size,
            })
        })
    }

    /// The stored bytes of an attachment whose message still exists.
    pub fn attachment_bytes(&self, attachment_id: u64) -> Option<Vec<u8>> {
        let path = self.shared.with_store(|s| {
            s.attachment(attachment_id)
                .map(|_| s.blob_path(attachment_id))
        })?;
        std::fs::read(path).ok()
    }

    /// Replaces the stored bytes of an attachment whose message still exists, and the size it
    /// is listed with, as damage on Discord's side would (a flipped byte, a truncation); false if
    /// there is no such attachment. Test-only: the new size is not journaled, so a restart lists
    /// the old one.
    pub fn replace_attachment_bytes(&self, attachment_id: u64, bytes: &[u8]) -> bool {
        self.shared.with_store(|s| {
            if s.attachment(attachment_id).is_none() {
                return false;
            }
            std::fs::write(s.blob_path(attachment_id), bytes).expect("writing a blob");
            s.set_attachment_size(attachment_id, bytes.len() as u64)
        })
    }

    /// Deletes a message as a moderator would; false if it does not exist.
    pub fn delete_message(&self, channel_id: u64, message_id: u64) -> bool {
        self.shared
            .with_store(|s| s.delete(channel_id, message_id))
            .expect("writing the journal")
    }

    /// Posts a message with one attachment as another user (`user_id`, not the bot), as anyone
    /// allowed to post in the channel could; returns it.
    pub fn post_as(
        &self,
        user_id: u64,
        channel_id: u64,
        filename: &str,
        bytes: &[u8],
    ) -> MessageInfo {
        self.shared
            .with_store(|s| -> anyhow::Result<MessageInfo> {
                let tmp = s
                    .tmp_dir()
                    .join(format!("post-as-{:016x}", rand::random::<u64>()));
                std::fs::write(&tmp, bytes)?;
                let message = StoredMessage {
                    id: s.next_id(),
                    channel_id,
                    content: String::new(),
                    nonce: None,
                    timestamp_ms: crate::snowflake::now_ms(),
                    attachments: vec![StoredAttachment {
                        id: s.next_id(),
                        filename: filename.to_string(),
                        size: bytes.len() as u64,
                        content_type: "application/octet-stream".into(),
                    }],
                    author_id: Some(user_id),
                    webhook: None,
                    edited_ms: None,
                };
                let info = MessageInfo::from(&message);
                s.commit(message.clone(), vec![(message.attachments[0].id, tmp)])?;
                Ok(info)
            })
            .expect("writing the journal")
    }

    /// Moves a message's timestamp back by `by` (for the 14-day bulk-delete rule).
    pub fn age_message(&self, channel_id: u64, message_id: u64, by: Duration) {
        self.shared.with_store(|s| {
            let Some(ts) = s.message(channel_id, message_id).map(|m| m.timestamp_ms) else {
                return;
            };
            s.retime(
                channel_id,
                message_id,
                ts.saturating_sub(by.as_millis() as u64),
            )
            .expect("writing the journal");
        });
    }

    pub fn stats(&self) -> Stats {
        let mut stats = self.shared.stats.snapshot();
        stats.link_bytes = self
            .shared
            .link
            .as_ref()
            .map_or(0, |l| l.totals().snapshot().0);
        stats.connection_capped_bytes = self.shared.connection_totals.snapshot().0;
        stats
    }

    /// Stops accepting, closes open connections and waits for the server task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(serve_connection(stream, shared.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

/// Serves HTTP/1.1 on one connection. A `Drop` outcome ends the connection future, which closes
/// the socket with no response: what a client sees on a reset or a proxy timeout.
async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let kill = Arc::new(Notify::new());
    let svc_kill = kill.clone();
    // One set of pacers per connection: its own cap is shared by its requests, one after another.
    let pacers = shared.connection_pacers();
    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let (shared, kill, pacers) = (shared.clone(), svc_kill.clone(), pacers.clone());
        async move {
            let req = req.map(|b| link::paced(Body::new(b), pacers.clone()));
            match api::handle(&shared, req).await {
                Outcome::Reply(resp) => {
                    Ok::<_, std::convert::Infallible>(resp.map(|b| link::paced(b, pacers)))
                }
                Outcome::Drop => {
                    kill.notify_one();
                    std::future::pending().await
                }
            }
        }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
    tokio::select! {
        _ = conn => {}
        _ = kill.notified() => {}
    }
}
