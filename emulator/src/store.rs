//! The live state behind one lock: meta, messages by channel, the attachment index and recent nonces.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::model::{nonce_key, Channel, Guild, StoredAttachment, StoredMessage, Webhook};
use crate::persist::journal::{Event, Journal};
use crate::persist::meta::Meta;
use crate::snowflake::Snowflakes;

/// Which page of a channel's history to return (discord-api.md §4; mutually exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Latest,
    Before(u64),
    After(u64),
    Around(u64),
}

/// At most 15 webhooks per channel (discord-api.md §3.2, staff comment in discord/discord-api-docs#5286).
pub const MAX_WEBHOOKS_PER_CHANNEL: usize = 15;

#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    meta: Meta,
    journal: Journal,
    ids: Snowflakes,
    messages: HashMap<u64, BTreeMap<u64, StoredMessage>>,
    /// attachment id -> (channel id, message id)
    attachments: HashMap<u64, (u64, u64)>,
    /// (channel id, nonce) -> newest message id created with it
    nonces: HashMap<(u64, String), u64>,
}

impl Store {
    /// Loads `dir` (creating a fresh state there if empty) and replays the journal.
    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        fs::create_dir_all(dir.join("blobs"))
            .with_context(|| format!("creating {}", dir.display()))?;
        // Upload temp files of a previous run are garbage: their messages were never committed.
        let _ = fs::remove_dir_all(dir.join("tmp"));
        fs::create_dir_all(dir.join("tmp"))?;
        let mut ids = Snowflakes::after(0);
        let meta = Meta::load_or_create(dir, &mut ids)?;
        let (journal, events) = Journal::open(dir)?;
        let mut store = Store {
            dir: dir.to_path_buf(),
            meta,
            journal,
            ids,
            messages: HashMap::new(),
            attachments: HashMap::new(),
            nonces: HashMap::new(),
        };
        for ev in events {
            store.apply(ev);
        }
        Ok(store)
    }

    fn apply(&mut self, ev: Event) {
        match ev {
            Event::Create { message } => self.apply_create(message),
            Event::Delete {
                channel_id,
                message_id,
            } => {
                let removed = self
                    .messages
                    .get_mut(&channel_id)
                    .and_then(|m| m.remove(&message_id));
                if let Some(nonce) = removed.as_ref().and_then(|m| m.nonce.as_ref()) {
                    self.nonces.remove(&(channel_id, nonce_key(nonce)));
                }
                for a in removed.iter().flat_map(|m| &m.attachments) {
                    self.attachments.remove(&a.id);
                    let _ = fs::remove_file(self.blob_path(a.id));
                }
            }
            Event::Retime {
                channel_id,
                message_id,
                timestamp_ms,
            } => {
                if let Some(m) = self
                    .messages
                    .get_mut(&channel_id)
                    .and_then(|m| m.get_mut(&message_id))
                {
                    m.timestamp_ms = timestamp_ms;
                }
            }
            Event::Edit {
                channel_id,
                message_id,
                content,
                edited_ms,
            } => {
                if let Some(m) = self
                    .messages
                    .get_mut(&channel_id)
                    .and_then(|m| m.get_mut(&message_id))
                {
                    m.content = content;
                    m.edited_ms = Some(edited_ms);
                }
            }
        }
    }

    fn apply_create(&mut self, message: StoredMessage) {
        self.ids.observe(message.id);
        for a in &message.attachments {
            self.ids.observe(a.id);
            self.attachments
                .insert(a.id, (message.channel_id, message.id));
        }
        if let Some(nonce) = &message.nonce {
            self.nonces
                .insert((message.channel_id, nonce_key(nonce)), message.id);
        }
        self.messages
            .entry(message.channel_id)
            .or_default()
            .insert(message.id, message);
    }

    fn record(&mut self, ev: Event) -> anyhow::Result<()> {
        self.journal.append(&ev)?;
        self.apply(ev);
        Ok(())
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Changes meta and rewrites `meta.json` (rare: tests adding guilds, channels, limits).
    pub fn update_meta(
        &mut self,
        change: impl FnOnce(&mut Meta, &mut Snowflakes),
    ) -> anyhow::Result<()> {
        change(&mut self.meta, &mut self.ids);
        self.meta.last_snowflake = self.ids.last();
        self.meta.save(&self.dir)
    }

    pub fn add_guild(&mut self, premium_tier: u8) -> anyhow::Result<u64> {
        let mut id = 0;
        self.update_meta(|meta, ids| {
            id = ids.next();
            meta.guilds.insert(
                id,
                Guild {
                    id,
                    name: format!("guild {}", meta.guilds.len() + 1),
                    premium_tier,
                    upload_limit: None,
                },
            );
        })?;
        Ok(id)
    }

    pub fn add_channel(&mut self, guild_id: u64) -> anyhow::Result<u64> {
        let mut id = 0;
        self.update_meta(|meta, ids| {
            id = ids.next();
            let position = meta
                .channels
                .values()
                .filter(|c| c.guild_id == guild_id)
                .count() as u16;
            let name = format!("storage-{}", position + 1);
            meta.channels.insert(
                id,
                Channel {
                    id,
                    guild_id,
                    name,
                    position,
                    access: Default::default(),
                },
            );
        })?;
        Ok(id)
    }

    /// A new webhook of `channel_id`, or `None` when the channel is unknown or already holds
    /// `MAX_WEBHOOKS_PER_CHANNEL`.
    pub fn add_webhook(&mut self, channel_id: u64, name: &str) -> anyhow::Result<Option<Webhook>> {
        let Some(guild_id) = self.channel(channel_id).map(|c| c.guild_id) else {
            return Ok(None);
        };
        if self.webhooks_of(channel_id).len() >= MAX_WEBHOOKS_PER_CHANNEL {
            return Ok(None);
        }
        let mut made = None;
        self.update_meta(|meta, ids| {
            let hook = Webhook {
                id: ids.next(),
                channel_id,
                guild_id,
                name: name.to_string(),
                token: crate::persist::meta::webhook_token(),
            };
            meta.webhooks.insert(hook.id, hook.clone());
            made = Some(hook);
        })?;
        Ok(made)
    }

    /// Removes a webhook (its messages stay); false if there was none.
    pub fn delete_webhook(&mut self, id: u64) -> anyhow::Result<bool> {
        if !self.meta.webhooks.contains_key(&id) {
            return Ok(false);
        }
        self.update_meta(|meta, _| {
            meta.webhooks.remove(&id);
        })?;
        Ok(true)
    }

    pub fn webhook(&self, id: u64) -> Option<&Webhook> {
        self.meta.webhooks.get(&id)
    }

    /// A channel's webhooks, oldest first.
    pub fn webhooks_of(&self, channel_id: u64) -> Vec<&Webhook> {
        self.meta
            .webhooks
            .values()
            .filter(|w| w.channel_id == channel_id)
            .collect()
    }

    pub fn channel(&self, id: u64) -> Option<&Channel> {
        self.meta.channels.get(&id)
    }

    pub fn guild(&self, id: u64) -> Option<&Guild> {
        self.meta.guilds.get(&id)
    }

    pub fn next_id(&mut self) -> u64 {
        self.ids.next()
    }

    pub fn blob_path(&self, attachment_id: u64) -> PathBuf {
        self.dir.join("blobs").join(attachment_id.to_string())
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// The newest message in `channel_id` carrying `nonce`, if created at or after `since_ms`.
    pub fn find_nonce(
        &self,
        channel_id: u64,
        nonce: &serde_json::Value,
        since_ms: u64,
    ) -> Option<&StoredMessage> {
        let message_id = self.nonces.get(&(channel_id, nonce_key(nonce)))?;
        self.message(channel_id, *message_id)
            .filter(|m| m.timestamp_ms >= since_ms)
    }

    /// Moves the uploaded temp files into `blobs/`, then journals the message: the journal line is
    /// the commit point, so a crash before it leaves only unreferenced blobs.
    pub fn commit(
        &mut self,
        message: StoredMessage,
        temp_files: Vec<(u64, PathBuf)>,
    ) -> anyhow::Result<()> {
        for (attachment_id, tmp) in temp_files {
            fs::rename(&tmp, self.blob_path(attachment_id))
                .with_context(|| format!("storing {}", tmp.display()))?;
        }
        self.record(Event::Create { message })
    }

    pub fn delete(&mut self, channel_id: u64, message_id: u64) -> anyhow::Result<bool> {
        if self.message(channel_id, message_id).is_none() {
            return Ok(false);
        }
        self.record(Event::Delete {
            channel_id,
            message_id,
        })?;
        Ok(true)
    }

    pub fn retime(
        &mut self,
        channel_id: u64,
        message_id: u64,
        timestamp_ms: u64,
    ) -> anyhow::Result<bool> {
        if self.message(channel_id, message_id).is_none() {
            return Ok(false);
        }
        self.record(Event::Retime {
            channel_id,
            message_id,
            timestamp_ms,
        })?;
        Ok(true)
    }

    /// Replaces a message's content and marks it edited now; false if it does not exist.
    pub fn edit(
        &mut self,
        channel_id: u64,
        message_id: u64,
        content: String,
    ) -> anyhow::Result<bool> {
        if self.message(channel_id, message_id).is_none() {
            return Ok(false);
        }
        self.record(Event::Edit {
            channel_id,
            message_id,
            content,
            edited_ms: crate::snowflake::now_ms(),
        })?;
        Ok(true)
    }

    pub fn message(&self, channel_id: u64, message_id: u64) -> Option<&StoredMessage> {
        self.messages.get(&channel_id)?.get(&message_id)
    }

    /// Oldest first.
    pub fn all_messages(&self, channel_id: u64) -> Vec<&StoredMessage> {
        self.messages
            .get(&channel_id)
            .map(|m| m.values().collect())
            .unwrap_or_default()
    }

    /// A page of history, newest first (discord-api.md §4, also for `after`).
    pub fn list(&self, channel_id: u64, page: Page, limit: usize) -> Vec<&StoredMessage> {
        let Some(msgs) = self.messages.get(&channel_id) else {
            return Vec::new();
        };
        let mut out: Vec<&StoredMessage> = match page {
            Page::Latest => msgs.values().rev().take(limit).collect(),
            Page::Before(id) => msgs.range(..id).rev().map(|(_, m)| m).take(limit).collect(),
            // The page starts right after `id`: the oldest `limit` newer messages.
            Page::After(id) => msgs.range(id + 1..).map(|(_, m)| m).take(limit).collect(),
            Page::Around(id) => around(msgs, id, limit),
        };
        out.sort_by_key(|m| std::cmp::Reverse(m.id));
        out
    }

    /// Sets the size an attachment is listed with (not journaled: see `Emulator::replace_attachment_bytes`).
    pub fn set_attachment_size(&mut self, attachment_id: u64, size: u64) -> bool {
        let Some(&(channel_id, message_id)) = self.attachments.get(&attachment_id) else {
            return false;
        };
        let att = self
            .messages
            .get_mut(&channel_id)
            .and_then(|m| m.get_mut(&message_id))
            .and_then(|m| m.attachments.iter_mut().find(|a| a.id == attachment_id));
        match att {
            Some(a) => {
                a.size = size;
                true
            }
            None => false,
        }
    }

    /// The attachment and its message, if the message still exists.
    pub fn attachment(&self, attachment_id: u64) -> Option<(&StoredMessage, &StoredAttachment)> {
        let (channel_id, message_id) = self.attachments.get(&attachment_id)?;
        let msg = self.message(*channel_id, *message_id)?;
        Some((msg, msg.attachments.iter().find(|a| a.id == attachment_id)?))
    }
}

/// Discord's split for `around` is undocumented (discord-api.md §4); we take the target, up to
/// half the limit older, and fill the rest with newer messages.
fn around(msgs: &BTreeMap<u64, StoredMessage>, id: u64, limit: usize) -> Vec<&StoredMessage> {
    let mut out: Vec<&StoredMessage> = msgs
        .range(..id)
        .rev()
        .map(|(_, m)| m)
        .take(limit / 2)
        .collect();
    let room = limit - out.len();
    out.extend(msgs.range(id..).map(|(_, m)| m).take(room));
    out
}
