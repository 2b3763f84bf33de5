//! `stats`: what the repository holds. Files and logical bytes come from the local catalogue;
//! packs and stored bytes from Discord (the packs of this repository by this bot, listed, not
//! downloaded); deduplication and compression from the chunk lists of the format-2 files.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use serde::Serialize;

use super::Session;
use crate::catalog::{Status, FORMAT_V2};
use crate::render::{human_bytes, plural};
use crate::repo::catalogue::list_packs;
use crate::store::PartStore;

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Stats {
    /// Complete files in the catalogue, by format, and their bytes.
    pub files_v1: u64,
    pub bytes_v1: u64,
    pub files_v2: u64,
    /// Files in the synced folders' latest snapshots, their folders and bytes.
    pub synced_files: u64,
    pub synced_folders: u64,
    pub synced_bytes: u64,
    /// The sum of the format-2 files' sizes and the synced files'.
    pub logical_bytes: u64,
    /// Distinct chunks those files use, their plaintext and their sealed bytes.
    pub unique_chunks: u64,
    pub unique_plain_bytes: u64,
    pub unique_sealed_bytes: u64,
    /// logical / unique plaintext, and unique plaintext / unique sealed.
    pub dedup_ratio: f64,
    pub compression_ratio: f64,
    /// Packs on Discord and their bytes; how many no file uses, and the bytes no file uses
    /// (whole unused packs, and unused chunks inside used ones: what `prune` can free).
    pub packs: u64,
    pub stored_bytes: u64,
    pub unused_packs: u64,
    pub garbage_bytes: u64,
    /// Webhook posts whose reply was lost with no bot to look: each may have left a pack copy
    /// on Discord that no record names.
    pub lost_replies: u64,
}

pub async fn stats(s: &Session, json: bool) -> Result<()> {
    let st = compute(s).await?;
    print(&st, json)
}

/// The figures, from the catalogue and (when a repository exists) the packs on Discord.
pub async fn compute(s: &Session) -> Result<Stats> {
    let mut st = Stats {
        lost_replies: s.catalog.all_lost_replies()?.len() as u64,
        ..Stats::default()
    };
    let mut seen: HashSet<[u8; 32]> = HashSet::new();
    // Sealed bytes that files use, per pack attachment.
    let mut live: HashMap<u64, HashMap<u64, u64>> = HashMap::new();
    // Packs synced folders' snapshots name (docs/sync.md 6) are not garbage.
    let mut pinned: HashSet<u64> = crate::sync::Folders::new(&s.config.data_dir).used_packs()?;
    for m in s.catalog.all()?.into_iter().flatten() {
        if m.format != FORMAT_V2 {
            if m.status == Status::Complete {
                st.files_v1 += 1;
                st.bytes_v1 += m.size;
            }
            continue;
        }
        for r in s.catalog.load_packs(&m.id)? {
            pinned.insert(r.attachment_id);
        }
        if m.status != Status::Complete {
            continue;
        }
        st.files_v2 += 1;
        st.logical_bytes += m.size;
        for c in &m.chunks {
            // A record whose chunk names no pack is damaged; `verify` says so, not a panic here.
            let Some(p) = m.packs.get(c.pack as usize) else {
                continue;
            };
            live.entry(p.attachment_id)
                .or_default()
                .insert(c.offset, u64::from(c.sealed_len));
            if seen.insert(c.id) {
                st.unique_chunks += 1;
                st.unique_plain_bytes += u64::from(c.plain_len);
                st.unique_sealed_bytes += u64::from(c.sealed_len);
            }
        }
    }
    // Synced folders count as they are now: their latest snapshots.
    let folders = crate::sync::Folders::new(&s.config.data_dir);
    for f in folders.all()? {
        let Some(latest) = folders.latest(&f.id)? else {
            continue;
        };
        st.synced_folders += 1;
        let snap = &latest.snapshot;
        for n in snap
            .files
            .iter()
            .filter(|n| n.kind == crate::repo::snapshot::Kind::File)
        {
            st.synced_files += 1;
            let size = n.size.unwrap_or(0);
            st.synced_bytes += size;
            st.logical_bytes += size;
            for c in &n.chunks {
                if seen.insert(c.id) {
                    st.unique_chunks += 1;
                    st.unique_plain_bytes += u64::from(c.plain_len);
                    st.unique_sealed_bytes += u64::from(c.sealed_len);
                }
            }
        }
    }
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    st.dedup_ratio = ratio(st.logical_bytes, st.unique_plain_bytes);
    st.compression_ratio = ratio(st.unique_plain_bytes, st.unique_sealed_bytes);
    if let Some(repo) = s.repository().await? {
        let store = s.store()?;
        let trusted = store.trusted_authors().await?;
        for p in list_packs(store.as_ref(), &repo.keys, &s.config.channels, &trusted).await? {
            st.packs += 1;
            st.stored_bytes += p.size;
            match live.get(&p.attachment_id) {
                Some(used) => st.garbage_bytes += p.size.saturating_sub(used.values().sum::<u64>()),
                None if pinned.contains(&p.attachment_id) => {}
                None => {
                    st.unused_packs += 1;
                    st.garbage_bytes += p.size;
                }
            }
        }
    }
    Ok(st)
}

fn print(st: &Stats, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(st)?);
        return Ok(());
    }
    println!(
        "Files:       {} in format 2 ({} of content){}",
        st.files_v2,
        human_bytes(st.logical_bytes - st.synced_bytes),
        if st.files_v1 > 0 {
            format!(
                ", {} in format 1 ({})",
                st.files_v1,
                human_bytes(st.bytes_v1)
            )
        } else {
            String::new()
        }
    );
    if st.synced_folders > 0 {
        println!(
            "Synced:      {} in {} ({} of content, included above)",
            plural(st.synced_files, "file"),
            plural(st.synced_folders, "folder"),
            human_bytes(st.synced_bytes)
        );
    }
    println!(
        "Chunks:      {} distinct, {} before compression, {} sealed",
        st.unique_chunks,
        human_bytes(st.unique_plain_bytes),
        human_bytes(st.unique_sealed_bytes)
    );
    println!(
        "Ratios:      deduplication {:.2}x, compression {:.2}x",
        st.dedup_ratio, st.compression_ratio
    );
    println!(
        "On Discord:  {} ({}); {} no file uses, {} unused in all (`prune` frees it)",
        plural(st.packs, "pack"),
        human_bytes(st.stored_bytes),
        plural(st.unused_packs, "pack"),
        human_bytes(st.garbage_bytes)
    );
    if st.lost_replies > 0 {
        println!(
            "Lost replies: {} lost {} after the pack was sent, each perhaps leaving a copy on Discord (`prune` with a bot token removes them)",
            plural(st.lost_replies, "webhook post"),
            if st.lost_replies == 1 { "its reply" } else { "their replies" }
        );
    }
    Ok(())
}
