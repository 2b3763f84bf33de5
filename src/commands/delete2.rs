//! `delete` of a format-2 file (docs/format.md 7.5): its catalogue entries (every version, and
//! their pieces) go first, then every pack it used or posted that no other file uses, by the
//! catalogue on Discord and this machine's manifests alike. A delete stopped half-way, run
//! again, finishes: the entry is gone, the packs left are found the same way. Other files'
//! entries that share a message with it (7.2) are posted again before that message goes.

use std::collections::HashSet;

use anyhow::{anyhow, bail, Result};

use super::upload2::{attachment_limit, RepoKeys};
use super::Session;
use crate::catalog::{FileManifest, MessageRef, FORMAT_V2};
use crate::repo::catalogue::{scan, Posted};
use crate::repo::crypto::ObjectKind;
use crate::repo::pack::pack_limit;
use crate::store::PartStore;

/// Pieces per entry version whose names are looked for (a piece holds ~30,000 chunks, so this
/// covers files of over a billion chunks).
const MAX_PIECES: u64 = 4096;

/// What a delete removed.
#[derive(Debug, Default)]
pub struct Removed {
    pub entries: usize,
    pub packs: usize,
    /// Packs of this file kept because other files use them.
    pub shared: usize,
}

pub async fn delete(s: &Session, repo: &RepoKeys, file: &FileManifest) -> Result<Removed> {
    let id = file.id.clone();
    let store = s.store()?;
    let history = store.reads_history();
    let mut found = if history {
        let trusted = store.trusted_authors().await?;
        scan(store.as_ref(), &repo.keys, &s.config.channels, &trusted).await?
    } else {
        // Webhooks only: what this machine recorded is all there is to go by.
        refuse_shared_entry_without_history(s, file)?;
        Default::default()
    };
    // Every version's head and pieces of this file, by name.
    let top = found
        .entries
        .get(&id)
        .map_or(0, |f| f.entry.version)
        .max(file.entry_version.unwrap_or(0))
        + 1;
    let mut names = HashSet::new();
    for v in 1..=top {
        names.insert(repo.keys.object_name(ObjectKind::Entry, &id, v));
        for n in 1..=MAX_PIECES {
            names.insert(repo.keys.object_name(ObjectKind::Piece, &id, (v << 32) + n));
        }
    }
    let mut entry_messages: Vec<MessageRef> = found
        .messages
        .iter()
        .filter(|(_, name)| names.contains(name))
        .map(|(at, _)| *at)
        .collect();
    if let Some(f) = found.entries.get(&id) {
        entry_messages.extend(f.pieces.iter().copied());
        entry_messages.push(f.head);
    }
    if !history {
        entry_messages.extend(file.remote_manifest);
    }
    entry_messages.sort_by_key(|m| (m.channel_id, m.message_id));
    entry_messages.dedup();
    // Packs others use: every other entry on Discord, every other local format-2 file.
    let mut kept: HashSet<u64> = HashSet::new();
    for (other, f) in &found.entries {
        if *other != id {
            kept.extend(f.entry.packs.iter().map(|p| p.attachment_id));
        }
    }
    // Packs synced folders' snapshots name (docs/sync.md 6).
    kept.extend(found.snapshot_packs());
    kept.extend(crate::sync::Folders::new(&s.config.data_dir).used_packs()?);
    for other in s.catalog.all()?.into_iter().flatten() {
        if other.id == id || other.format != FORMAT_V2 {
            continue;
        }
        kept.extend(other.packs.iter().map(|p| p.attachment_id));
        for rec in s.catalog.load_packs(&other.id)? {
            kept.insert(rec.attachment_id);
        }
    }
    let mut candidates: Vec<(u64, u64, u64)> = file
        .packs
        .iter()
        .map(|p| (p.channel_id, p.message_id, p.attachment_id))
        .collect();
    for rec in s.catalog.load_packs(&id)? {
        candidates.push((rec.channel_id, rec.message_id, rec.attachment_id));
    }
    candidates.sort_unstable();
    candidates.dedup();
    let mut removed = Removed::default();
    // Other files' entries in those messages are posted again first, so none goes with them.
    let Some(&first) = s.config.channels.first() else {
        bail!("no channel is configured, so the catalogue has nowhere to be; nothing was deleted");
    };
    let budget = pack_limit(attachment_limit(s).await? as usize);
    let reposted = found
        .repost_sharers(
            store.as_ref(),
            &repo.keys,
            first,
            budget,
            &entry_messages,
            &id,
        )
        .await
        .map_err(|e| {
            anyhow!("other files' catalogue entries that share a message with the entry of {id} could not be posted again ({e}); nothing was deleted")
        })?;
    for (other, posted) in &reposted {
        let version = found.entries.get(other).map_or(0, |f| f.entry.version);
        record_place(s, other, version, posted)?;
    }
    // The entries first: from here on no reader finds the file, so its packs may go.
    for m in &entry_messages {
        store.delete_message(m.channel_id, m.message_id).await?;
        removed.entries += 1;
    }
    for (channel, message, attachment) in candidates {
        if kept.contains(&attachment) {
            removed.shared += 1;
            continue;
        }
        if !s.config.channels.contains(&channel) {
            bail!("a pack of {id} is in channel {channel}, which is not configured; nothing more was deleted");
        }
        store.delete_message(channel, message).await?;
        removed.packs += 1;
    }
    Ok(removed)
}

/// Without channel history (no bot token), an entry that shares its message with other files'
/// entries cannot be posted again elsewhere first, so the delete stops before anything goes.
fn refuse_shared_entry_without_history(s: &Session, file: &FileManifest) -> Result<()> {
    let Some(head) = file.remote_manifest else {
        return Ok(());
    };
    for other in s.catalog.all()?.into_iter().flatten() {
        if other.id != file.id && other.remote_manifest == Some(head) {
            bail!(
                "the catalogue entry of {} shares its message with that of {}, and without a bot token that entry cannot be posted again first; set `token` to delete {}; nothing was deleted",
                file.id, other.id, file.id
            );
        }
    }
    Ok(())
}

/// Records in the local `file.json` of `id`, when it holds entry `version`, that the entry is
/// now at `posted` (posted again, same version). A file busy elsewhere is left as it is: its
/// `remote_manifest` then names a message that is gone, which nothing relies on.
pub(super) fn record_place(s: &Session, id: &str, version: u64, posted: &Posted) -> Result<()> {
    if !s.catalog.contains(id) {
        return Ok(());
    }
    let _lock = match s.catalog.lock(id) {
        Ok(lock) => lock,
        Err(e) => {
            tracing::warn!(
                id,
                "the new place of its catalogue entry was not recorded: {e}"
            );
            return Ok(());
        }
    };
    let Ok(mut m) = s.catalog.load_file(id) else {
        return Ok(());
    };
    if m.format != FORMAT_V2 || m.entry_version != Some(version) {
        return Ok(());
    }
    m.remote_manifest = Some(posted.head);
    s.catalog.save_file(&m)?;
    Ok(())
}
