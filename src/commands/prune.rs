//! `prune` (docs/format.md 7.5): deletes packs no entry uses, and repacks the live chunks of
//! packs that are mostly unused into new packs, posts a new entry version for every file that
//! used them, and only then deletes the old packs. At every instant each entry that counts names
//! packs that exist, so a prune killed at any point loses nothing, and the next run finishes.
//!
//! Packs younger than the grace period are left alone: an upload in progress (here or on another
//! machine) may have posted them and not yet its entry.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use time::OffsetDateTime;

use super::upload2::{attachment_limit, RepoKeys};
use super::Session;
use crate::catalog::{new_file_id, ChunkRef, MessageRef, PackRef, Status, FORMAT_V2};
use crate::render::{human_bytes, plural};
use crate::repo::catalogue::{list_packs, post_entry, scan, Found, Scan};
use crate::repo::crypto::ObjectKind;
use crate::repo::entry::Entry;
use crate::repo::pack::{pack_limit, PackEntry, PackReader, PackWriter};
use crate::store::{PartStore, PutPart, RemotePart};

/// How `prune` decides.
#[derive(Debug, Clone, Copy)]
pub struct PruneOpts {
    /// Packs posted less than this long ago are never touched.
    pub grace: Duration,
    /// A pack whose live chunks take less than this share of it is repacked.
    pub repack_below: f64,
    /// Only say what would be done.
    pub dry_run: bool,
}

impl Default for PruneOpts {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(24 * 3600),
            repack_below: 0.5,
            dry_run: false,
        }
    }
}

/// What a prune did (or, dry, would do).
#[derive(Debug, Default, Clone)]
pub struct PruneReport {
    pub deleted: usize,
    pub deleted_bytes: u64,
    pub repacked: usize,
    pub new_packs: usize,
    pub new_bytes: u64,
    pub entries_rewritten: usize,
    pub young: usize,
}

impl PruneReport {
    pub fn summary(&self, dry: bool) -> String {
        let verb = if dry { "would free" } else { "freed" };
        format!(
            "{}: {} no file uses deleted, {} mostly unused repacked into {} ({} kept), {} rewritten; {verb} {}{}.",
            if dry { "Prune (dry run)" } else { "Pruned" },
            plural(self.deleted as u64, "pack"),
            plural(self.repacked as u64, "pack"),
            plural(self.new_packs as u64, "new pack"),
            human_bytes(self.new_bytes),
            plural(self.entries_rewritten as u64, "catalogue entry"),
            human_bytes(self.deleted_bytes.saturating_sub(self.new_bytes)),
            if self.young > 0 {
                format!(
                    " ({} younger than the grace period left alone)",
                    plural(self.young as u64, "pack")
                )
            } else {
                String::new()
            }
        )
    }
}

pub async fn prune(s: &Session, repo: &RepoKeys, opts: PruneOpts) -> Result<PruneReport> {
    let keys = &repo.keys;
    let store = s.store()?;
    let trusted = store.trusted_authors().await?;
    let mut found = scan(store.as_ref(), keys, &s.config.channels, &trusted).await?;
    for why in &found.skipped {
        eprintln!("warning: {why}");
    }
    // Every pack on Discord by this bot.
    let packs = list_packs(store.as_ref(), keys, &s.config.channels, &trusted).await?;
    // Live chunks per pack attachment, from the entries that count.
    let mut live: HashMap<u64, BTreeMap<u64, PackEntry>> = HashMap::new();
    for f in found.entries.values() {
        for c in &f.entry.chunks {
            let p = &f.entry.packs[c.pack as usize];
            live.entry(p.attachment_id)
                .or_default()
                .insert(c.offset, c.entry());
        }
    }
    // Packs this machine's manifests rely on beyond Discord's entries (uploads not finished,
    // entries not posted) are left whole.
    let mut pinned: HashSet<u64> = HashSet::new();
    for f in s.catalog.all()?.into_iter().flatten() {
        if f.format != FORMAT_V2 {
            continue;
        }
        if f.status != Status::Complete || f.remote_manifest.is_none() {
            pinned.extend(f.packs.iter().map(|p| p.attachment_id));
            for r in s.catalog.load_packs(&f.id)? {
                pinned.insert(r.attachment_id);
            }
        }
    }
    // Packs a synced folder's snapshot names (on Discord, or this machine's) are kept whole:
    // snapshots are never rewritten (docs/sync.md 6).
    pinned.extend(found.snapshot_packs());
    pinned.extend(crate::sync::Folders::new(&s.config.data_dir).used_packs()?);
    let cutoff = OffsetDateTime::now_utc() - opts.grace;
    let mut report = PruneReport::default();
    let mut dead: Vec<RemotePart> = Vec::new();
    let mut repack: Vec<RemotePart> = Vec::new();
    for p in packs {
        if pinned.contains(&p.attachment_id) {
            continue;
        }
        if p.posted_at > cutoff {
            report.young += 1;
            continue;
        }
        match live.get(&p.attachment_id) {
            None => dead.push(p),
            Some(chunks) => {
                let used: u64 = chunks.values().map(|e| u64::from(e.sealed_len)).sum();
                if (used as f64) < opts.repack_below * p.size as f64 {
                    repack.push(p);
                }
            }
        }
    }
    report.deleted = dead.len() + repack.len();
    report.deleted_bytes = dead.iter().chain(&repack).map(|p| p.size).sum();
    report.repacked = repack.len();
    if opts.dry_run {
        report.new_bytes = repack
            .iter()
            .map(|p| {
                live[&p.attachment_id]
                    .values()
                    .map(|e| u64::from(e.sealed_len))
                    .sum::<u64>()
            })
            .sum();
        report.deleted -= report.repacked;
        return Ok(report);
    }

    // 1. Copy the live chunks of the packs to repack into new packs.
    let limit = pack_limit(attachment_limit(s).await? as usize);
    let run_id = new_file_id();
    let mut moved: HashMap<(u64, u64), (PackRef, PackEntry)> = HashMap::new();
    let mut writer = PackWriter::new(keys, limit);
    let mut waiting: Vec<(u64, u64)> = Vec::new();
    let mut n = 0u64;
    for p in &repack {
        let bytes = store.read_part(p).await?;
        let reader = PackReader::open(keys, &bytes)
            .with_context(|| format!("pack in message {} cannot be repacked", p.message_id))?;
        for (&offset, want) in &live[&p.attachment_id] {
            let Some(at) = reader
                .entries()
                .iter()
                .position(|e| e.offset == offset && e.id == want.id)
            else {
                anyhow::bail!("a catalogue entry names a chunk that pack {} does not hold; nothing was deleted (`verify` the files that use it)", p.message_id);
            };
            let plain = reader.chunk(at).with_context(|| {
                format!(
                    "a chunk of pack {} failed its check; nothing was deleted",
                    p.message_id
                )
            })?;
            if !writer.would_fit(plain.len()) {
                let full = std::mem::replace(&mut writer, PackWriter::new(keys, limit));
                post_new(
                    s,
                    repo,
                    &run_id,
                    n,
                    full,
                    &mut waiting,
                    &mut moved,
                    &mut report,
                )
                .await?;
                n += 1;
            }
            writer.add(want.id, &plain)?;
            waiting.push((p.attachment_id, offset));
        }
    }
    if !writer.is_empty() {
        post_new(
            s,
            repo,
            &run_id,
            n,
            writer,
            &mut waiting,
            &mut moved,
            &mut report,
        )
        .await?;
    }

    // 2. A new entry version for every file that used a repacked pack, then its old entries go.
    let repacked: HashSet<u64> = repack.iter().map(|p| p.attachment_id).collect();
    let budget = limit;
    let mut ids: Vec<String> = found
        .entries
        .iter()
        .filter(|(_, f)| {
            f.entry
                .packs
                .iter()
                .any(|p| repacked.contains(&p.attachment_id))
        })
        .map(|(id, _)| id.clone())
        .collect();
    ids.sort();
    for id in ids {
        // Where its entry is now: an earlier rewrite may have posted it again (7.2).
        let Some(f) = found.entries.get(&id).cloned() else {
            continue;
        };
        rewrite(s, repo, &mut found, &f, &moved, budget).await?;
        report.entries_rewritten += 1;
    }

    // 3. Only now the old packs.
    for p in dead.iter().chain(&repack) {
        store.delete_message(p.channel_id, p.message_id).await?;
    }
    report.deleted -= report.repacked;
    // A copy a lost webhook reply left is a pack no entry uses: gone now if older than the
    // grace period, so its note goes too.
    for (id, _) in s.catalog.all_lost_replies()? {
        s.catalog.forget_lost_replies(&id, cutoff)?;
    }
    Ok(report)
}

/// Posts a finished pack of the prune run; every chunk waiting for it is then moved.
#[allow(clippy::too_many_arguments)]
async fn post_new(
    s: &Session,
    repo: &RepoKeys,
    run_id: &str,
    n: u64,
    writer: PackWriter<'_>,
    waiting: &mut Vec<(u64, u64)>,
    moved: &mut HashMap<(u64, u64), (PackRef, PackEntry)>,
    report: &mut PruneReport,
) -> Result<()> {
    let (bytes, header) = writer.finish();
    let name = repo.keys.object_name(ObjectKind::Pack, run_id, n);
    let channel = s.config.channels[(n % s.config.channels.len() as u64) as usize];
    let pack_id = repo.keys.pack_id(&bytes);
    let size = bytes.len() as u64;
    let r = s
        .store()?
        .put_part(PutPart {
            channel_id: channel,
            nonce: name.chars().take(25).collect(),
            filename: name,
            data: Bytes::from(bytes),
            reload: None,
        })
        .await?;
    let pack = PackRef {
        channel_id: r.channel_id,
        message_id: r.message_id,
        attachment_id: r.attachment_id,
        pack_id,
        size,
    };
    for (old, entry) in waiting.drain(..).zip(header.entries) {
        moved.insert(old, (pack.clone(), entry));
    }
    report.new_packs += 1;
    report.new_bytes += size;
    Ok(())
}

/// Posts the next version of a file's entry with its chunks at their new places, records it
/// locally, then deletes the file's older entries.
async fn rewrite(
    s: &Session,
    repo: &RepoKeys,
    found: &mut Scan,
    f: &Found,
    moved: &HashMap<(u64, u64), (PackRef, PackEntry)>,
    budget: usize,
) -> Result<()> {
    let old = &f.entry;
    let mut packs: Vec<PackRef> = Vec::new();
    let mut slots: HashMap<u64, u32> = HashMap::new();
    let mut chunks = Vec::with_capacity(old.chunks.len());
    for c in &old.chunks {
        let was = &old.packs[c.pack as usize];
        let (pack, e) = match moved.get(&(was.attachment_id, c.offset)) {
            Some((p, e)) => (p.clone(), *e),
            None => (was.clone(), c.entry()),
        };
        let slot = *slots.entry(pack.attachment_id).or_insert_with(|| {
            packs.push(pack.clone());
            packs.len() as u32 - 1
        });
        chunks.push(ChunkRef {
            id: e.id,
            pack: slot,
            offset: e.offset,
            sealed_len: e.sealed_len,
            plain_len: e.plain_len,
            flags: e.flags,
        });
    }
    let local = s
        .catalog
        .load_file(&old.id)
        .ok()
        .filter(|m| m.format == FORMAT_V2);
    let version = old
        .version
        .max(local.as_ref().and_then(|m| m.entry_version).unwrap_or(0))
        + 1;
    let entry = Entry {
        version,
        packs,
        chunks,
        pieces: Vec::new(),
        ..old.clone()
    };
    entry.check(&s.config.channels)?;
    let store = s.store()?;
    let posted = post_entry(store.as_ref(), &repo.keys, s.config.channels[0], &entry, budget)
        .await
        .with_context(|| format!("the new catalogue entry of {} could not be posted; nothing of it was deleted, run `prune` again", old.id))?;
    if let Some(mut m) = local {
        let _lock = s.catalog.lock(&m.id)?;
        m.packs = entry.packs.clone();
        m.chunks = entry.chunks.clone();
        m.entry_version = Some(version);
        m.remote_manifest = Some(MessageRef {
            channel_id: posted.head.channel_id,
            message_id: posted.head.message_id,
        });
        m.updated_at = OffsetDateTime::now_utc();
        s.catalog.save_file(&m)?;
    }
    // The new entry counts now. The old one's messages go once the other files' entries they
    // hold are posted again (7.2).
    found.note_posted(&repo.keys, &entry, &posted, OffsetDateTime::now_utc());
    let doomed: Vec<MessageRef> = f
        .pieces
        .iter()
        .copied()
        .chain(std::iter::once(f.head))
        .collect();
    let reposted = found
        .repost_sharers(
            store.as_ref(),
            &repo.keys,
            s.config.channels[0],
            budget,
            &doomed,
            &old.id,
        )
        .await
        .with_context(|| format!("other files' catalogue entries sharing a message with the old entry of {} could not be posted again; it was left in place, run `prune` again", old.id))?;
    for (other, at) in &reposted {
        let version = found.entries.get(other).map_or(0, |e| e.entry.version);
        super::delete2::record_place(s, other, version, at)?;
    }
    for m in &doomed {
        store.delete_message(m.channel_id, m.message_id).await?;
    }
    found.forget(&doomed);
    Ok(())
}
