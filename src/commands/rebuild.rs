//! `rebuild-index`: brings this machine's format-2 records in line with Discord. Every entry that
//! counts rewrites its file's `file.json` when it is newer or names other places (after a `prune`
//! or a `delete` on another machine); files whose entry is gone are reported; the headers of packs
//! no entry names are read (two small range requests each) and reported for `prune`. The chunk
//! index that deduplication uses is derived from these records, so it is rebuilt with them.

use std::collections::HashSet;

use anyhow::{bail, Result};

use super::Session;
use crate::catalog::{Status, FORMAT_V2};
use crate::render::{human_bytes, plural};
use crate::repo::catalogue::{list_packs, scan};
use crate::repo::pack::{header_range, open_header, TRAILER_LEN};
use crate::store::PartStore;

/// What a rebuild changed and found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rebuilt {
    pub written: usize,
    pub unchanged: usize,
    /// Local complete files whose entry is no longer on Discord.
    pub gone: Vec<String>,
    /// Packs no entry and no local record names, their bytes and chunks.
    pub orphan_packs: usize,
    pub orphan_bytes: u64,
    pub orphan_chunks: usize,
    /// Packs whose header does not open.
    pub unreadable: usize,
}

pub async fn rebuild_index(s: &Session) -> Result<Rebuilt> {
    let Some(repo) = s.repository().await? else {
        bail!("there is no format-2 repository here or on Discord; `dstore init` creates one");
    };
    let keys = &repo.keys;
    let store = s.store()?;
    let trusted = store.trusted_authors().await?;
    let found = scan(store.as_ref(), keys, &s.config.channels, &trusted).await?;
    for why in &found.skipped {
        eprintln!("warning: {why}");
    }
    let mut out = Rebuilt::default();
    // Synced folders' snapshots name packs too (docs/sync.md 6).
    let mut named: HashSet<u64> = found.snapshot_packs();
    named.extend(crate::sync::Folders::new(&s.config.data_dir).used_packs()?);
    for f in found.entries.values() {
        named.extend(f.entry.packs.iter().map(|p| p.attachment_id));
        let local = s.catalog.load_file(&f.entry.id).ok();
        if let Some(m) = &local {
            if m.format != FORMAT_V2 {
                continue;
            }
            if m.status == Status::Complete
                && m.entry_version == Some(f.entry.version)
                && m.packs == f.entry.packs
                && m.chunks == f.entry.chunks
            {
                out.unchanged += 1;
                continue;
            }
        }
        let mut file = f.entry.to_manifest(s.config.channels.clone(), f.head);
        if let Some(m) = local {
            // What only this machine knows stays.
            file.source_path = m.source_path;
            file.source_stamp = m.source_stamp;
        }
        s.catalog.save_file(&file)?;
        out.written += 1;
    }
    for m in s.catalog.all()?.into_iter().flatten() {
        if m.format != FORMAT_V2 {
            continue;
        }
        for r in s.catalog.load_packs(&m.id)? {
            named.insert(r.attachment_id);
        }
        if m.status == Status::Complete
            && m.remote_manifest.is_some()
            && !found.entries.contains_key(&m.id)
        {
            out.gone.push(m.id.clone());
        }
    }
    for p in list_packs(store.as_ref(), keys, &s.config.channels, &trusted).await? {
        if named.contains(&p.attachment_id) {
            continue;
        }
        out.orphan_packs += 1;
        out.orphan_bytes += p.size;
        let header = async {
            let end = p.size.checked_sub(TRAILER_LEN as u64)?;
            let trailer = store.read_range(&p, end..p.size).await.ok()?;
            let r = header_range(p.size, &trailer).ok()?;
            let sealed = store.read_range(&p, r.clone()).await.ok()?;
            open_header(keys, &sealed, r.start).ok()
        };
        match header.await {
            Some(h) => out.orphan_chunks += h.entries.len(),
            None => out.unreadable += 1,
        }
    }
    Ok(out)
}

pub async fn command(s: &Session) -> Result<()> {
    let r = rebuild_index(s).await?;
    println!(
        "Rebuilt from Discord: {} written, {} already up to date.",
        plural(r.written as u64, "file record"),
        r.unchanged
    );
    for id in &r.gone {
        println!(
            "{id}: its catalogue entry is no longer on Discord (deleted on another machine?); `verify {id}` checks its packs, `delete {id}` forgets it."
        );
    }
    if r.orphan_packs > 0 {
        println!(
            "{} ({}, {}) no file uses{}; `prune` removes them.",
            plural(r.orphan_packs as u64, "pack"),
            human_bytes(r.orphan_bytes),
            plural(r.orphan_chunks as u64, "chunk"),
            if r.unreadable > 0 {
                format!(", {} of them unreadable", r.unreadable)
            } else {
                String::new()
            }
        );
    }
    Ok(())
}
