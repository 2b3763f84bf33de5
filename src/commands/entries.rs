//! The catalogue entries on Discord, as the commands use them: which messages count as ours,
//! finding a file's entries, reading one (with its pieces), posting one under the channel's size
//! limit, and removing the ones a newer entry replaces.

use anyhow::{anyhow, Result};
use time::OffsetDateTime;

use super::Session;
use crate::catalog::remote::{
    manifest_name, piece_name, EntryName, PieceRef, RemoteError, RemoteManifest, Trust,
};
use crate::catalog::{FileManifest, MessageRef};
use crate::store::{BotStore, NameFilter, PartStore, PutPart, RemotePart, StoreError};

/// How far below the channel's limit an entry's attachments stay, as `auto` parts do.
const MARGIN: u64 = 64 * 1024;
/// Below this an entry is not split further: a 413 then is not about size.
const MIN_BUDGET: u64 = 2048;
/// How far before `created_at` a file's messages are looked for (clock skew).
const SCAN_MARGIN: time::Duration = time::Duration::minutes(10);

/// The messages that count as ours: posted by a trusted author (the bot's own user; see
/// [`PartStore::trusted_authors`]), in the configured channels.
pub async fn trust(s: &Session, store: &BotStore) -> Result<Trust> {
    let authors = store
        .trusted_authors()
        .await
        .map_err(|e| anyhow!("cannot ask Discord who this bot is: {e}"))?;
    Ok(Trust::new(authors, s.config.channels.iter().copied()))
}

/// Attachments found by a search, split into ours and strangers'.
#[derive(Debug, Default)]
pub struct Found {
    pub ours: Vec<RemotePart>,
    pub strangers: Vec<RemotePart>,
}

impl Found {
    /// One warning line per stranger's message, naming it.
    pub fn warn_strangers(&self, what: &str) {
        for r in &self.strangers {
            eprintln!(
                "warning: message {} in channel {} ({}) looks like {what} but was not posted by this bot; skipped",
                r.message_id, r.channel_id, r.filename
            );
            tracing::warn!(
                channel = r.channel_id,
                message = r.message_id,
                author = r.author_id,
                "skipped a message posted by another user"
            );
        }
    }
}

/// Every attachment named `wanted` in `channels` posted since `since`, ours and strangers'.
pub async fn scan(
    store: &BotStore,
    trust: &Trust,
    channels: &[u64],
    wanted: &NameFilter<'_>,
    since: OffsetDateTime,
) -> Result<Found, StoreError> {
    let mut channels = channels.to_vec();
    channels.sort_unstable();
    channels.dedup();
    let mut found = Found::default();
    for channel in channels {
        for r in store.find_parts(channel, wanted, since).await? {
            if trust.author(r.author_id) {
                found.ours.push(r);
            } else {
                found.strangers.push(r);
            }
        }
    }
    Ok(found)
}

/// The channels a file's messages are in: where its parts go (the first one also takes its
/// entries) and where its entry was recorded.
fn file_channels(file: &FileManifest) -> Vec<u64> {
    let mut channels = file.channels.clone();
    channels.extend(file.remote_manifest.map(|r| r.channel_id));
    channels.sort_unstable();
    channels.dedup();
    channels
}

/// Every attachment named `wanted` of `file`'s, posted since shortly before it was created:
/// in its own channels (where an error is an error) and in the other configured channels,
/// where one the bot cannot read is noted and passed over (nothing of the file can be there
/// unless the config changed).
pub async fn scan_file(
    s: &Session,
    store: &BotStore,
    trust: &Trust,
    file: &FileManifest,
    wanted: &NameFilter<'_>,
) -> Result<Found, StoreError> {
    let since = file.created_at - SCAN_MARGIN;
    let own = file_channels(file);
    let mut found = scan(store, trust, &own, wanted, since).await?;
    let mut others: Vec<u64> = s.config.channels.clone();
    others.retain(|c| !own.contains(c));
    for channel in others {
        match scan(store, trust, &[channel], wanted, since).await {
            Ok(more) => {
                found.ours.extend(more.ours);
                found.strangers.extend(more.strangers);
            }
            Err(e @ (StoreError::MissingAccess { .. } | StoreError::UnknownChannel { .. })) => {
                tracing::warn!("not looking for {} in channel {channel}: {e}", file.id);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(found)
}

/// Reads the entry whose head is `head` (one of ours), its pieces included, and checks it:
/// it names its own file, its parts tile the file, and everything it points to is in a
/// configured channel (and its pieces were posted by us).
pub async fn read_entry(
    store: &BotStore,
    trust: &Trust,
    head: &RemotePart,
) -> Result<RemoteManifest, String> {
    let id = EntryName::parse(&head.filename)
        .map(|n| n.id().to_string())
        .ok_or("it is not a catalogue entry")?;
    let bytes = store.read_part(head).await.map_err(|e| e.to_string())?;
    let m = RemoteManifest::parse(&bytes).map_err(|e| e.to_string())?;
    if m.id != id {
        return Err(format!("it names another file ({})", m.id));
    }
    trust.check_refs(&m).map_err(|e| e.to_string())?;
    let m = if m.pieces.is_empty() {
        m
    } else {
        let mut pieces = Vec::with_capacity(m.pieces.len());
        for (r, n) in m.pieces.iter().zip(1..) {
            let p = store
                .locate_part(r.channel_id, r.message_id, r.attachment_id)
                .await
                .map_err(|e| format!("its piece {n} cannot be read: {e}"))?;
            if !trust.author(p.author_id) || p.filename != piece_name(&id, n) {
                return Err(format!(
                    "its piece {n} (message {}) is not one this bot posted for it",
                    r.message_id
                ));
            }
            pieces.push(
                store
                    .read_part(&p)
                    .await
                    .map_err(|e| e.to_string())?
                    .to_vec(),
            );
        }
        m.join(&pieces).map_err(|e| e.to_string())?
    };
    trust.check_refs(&m).map_err(|e| e.to_string())?;
    Ok(m)
}

/// An entry as posted: its head, and its pieces' messages.
#[derive(Debug, Clone)]
pub struct Posted {
    pub head: MessageRef,
    pub pieces: Vec<MessageRef>,
}

/// Posts `entry` to `channel`: its pieces first (if it needs any), then the head naming them.
/// Each attachment stays under the channel's limit; after a 413 the entry is split finer.
pub async fn post_entry(store: &BotStore, channel: u64, entry: &RemoteManifest) -> Result<Posted> {
    let mut budget = store.part_size_limit(channel).await?.saturating_sub(MARGIN);
    loop {
        let Some(enc) = entry.encode(budget as usize) else {
            return Err(anyhow!(
                "its catalogue entry cannot be split into attachments of {budget} bytes"
            ));
        };
        match post_encoded(store, channel, &entry.id, &enc).await {
            Ok(posted) => return Ok(posted),
            // Each round at most halves the budget, so this ends.
            Err((StoreError::PartTooLarge { size }, posted))
                if budget.min(size) / 2 >= MIN_BUDGET =>
            {
                tracing::warn!(
                    "Discord refused {size} bytes of a catalogue entry (413); splitting it finer"
                );
                budget = budget.min(size) / 2;
                // Best effort: pieces of the refused attempt name nothing and no head names
                // them; a later publish or delete sweeps any left.
                for m in posted {
                    let _ = store.delete_message(m.channel_id, m.message_id).await;
                }
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

/// Posts an encoded entry; on failure also returns the pieces already posted.
async fn post_encoded(
    store: &BotStore,
    channel: u64,
    id: &str,
    enc: &crate::catalog::remote::Encoded,
) -> Result<Posted, (StoreError, Vec<MessageRef>)> {
    let mut refs = Vec::new();
    let mut at = Vec::new();
    for (bytes, n) in enc.pieces.iter().zip(1..) {
        let put = post(store, channel, piece_name(id, n), id, bytes.clone()).await;
        let r = put.map_err(|e| (e, at.clone()))?;
        at.push(MessageRef {
            channel_id: r.channel_id,
            message_id: r.message_id,
        });
        refs.push(PieceRef {
            channel_id: r.channel_id,
            message_id: r.message_id,
            attachment_id: r.attachment_id,
            sha256: crate::hash::sha256_hex(bytes),
            parts: serde_json::from_slice::<crate::catalog::remote::Piece>(bytes)
                .map_or(0, |p| p.parts.len() as u64),
        });
    }
    let head = post(store, channel, manifest_name(id), id, enc.head(refs))
        .await
        .map_err(|e| (e, at.clone()))?;
    Ok(Posted {
        head: MessageRef {
            channel_id: head.channel_id,
            message_id: head.message_id,
        },
        pieces: at,
    })
}

async fn post(
    store: &BotStore,
    channel_id: u64,
    filename: String,
    id: &str,
    data: Vec<u8>,
) -> Result<RemotePart, StoreError> {
    store
        .put_part(PutPart {
            channel_id,
            filename,
            // A new nonce per message (the same one would return the old message); retries of
            // this post share it.
            nonce: format!("{id}.{}", crate::catalog::new_file_id()),
            data: data.into(),
            reload: None,
        })
        .await
}

/// Removes every entry message of `file` we posted except those of `keep` (and `also`, the
/// entry it replaces, even where no scan reaches): heads first, so no head outlives its
/// pieces. Returns how many went.
pub async fn sweep(
    s: &Session,
    store: &BotStore,
    file: &FileManifest,
    keep: &Posted,
    also: Option<MessageRef>,
) -> Result<usize> {
    let trust = trust(s, store).await?;
    let id = file.id.as_str();
    let is_entry = |name: &str| EntryName::parse(name).is_some_and(|n| n.id() == id);
    let found = scan_file(s, store, &trust, file, &is_entry).await?;
    found.warn_strangers(&format!("a catalogue entry of {id}"));
    sweep_found(store, &found, keep, also).await
}

/// [`sweep`] over entry messages already found.
pub async fn sweep_found(
    store: &BotStore,
    found: &Found,
    keep: &Posted,
    also: Option<MessageRef>,
) -> Result<usize> {
    let kept = |m: u64| keep.head.message_id == m || keep.pieces.iter().any(|p| p.message_id == m);
    let mut stale: Vec<(bool, MessageRef)> = found
        .ours
        .iter()
        .filter_map(|r| {
            let piece = match EntryName::parse(&r.filename)? {
                EntryName::Head(_) => false,
                EntryName::Piece(..) => true,
            };
            let at = MessageRef {
                channel_id: r.channel_id,
                message_id: r.message_id,
            };
            (!kept(r.message_id)).then_some((piece, at))
        })
        .collect();
    if let Some(old) = also.filter(|o| !kept(o.message_id)) {
        if !stale.iter().any(|(_, m)| *m == old) {
            stale.push((false, old));
        }
    }
    stale.sort_by_key(|(piece, _)| *piece);
    for (_, m) in &stale {
        store.delete_message(m.channel_id, m.message_id).await?;
    }
    Ok(stale.len())
}

/// An entry that was not posted because it would not describe the file whole.
#[derive(Debug, thiserror::Error)]
#[error("the catalogue entry of {id} was not posted to Discord: {why}; run `verify {id}` to see which parts are missing, then `resume {id}` to repair them")]
pub struct Refused {
    pub id: String,
    pub why: RemoteError,
}

/// Why an entry cannot be built, as a sentence about `id`.
pub fn refused(id: &str, e: RemoteError) -> anyhow::Error {
    Refused {
        id: id.to_string(),
        why: e,
    }
    .into()
}
