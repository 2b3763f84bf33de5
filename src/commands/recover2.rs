//! `recover` of format-2 files: every sealed catalogue entry this bot posted that opens with the
//! repository's keys and passes its checks becomes a `file.json` (the highest version of each
//! file; files already in the catalogue at that version or newer are left alone).

use anyhow::{bail, Result};
use tokio_util::sync::CancellationToken;

use super::upload2::RepoKeys;
use super::{FileJson, Session};
use crate::catalog::FORMAT_V2;
use crate::render::human_bytes;
use crate::repo::catalogue::scan;
use crate::store::PartStore;

/// Recovers the format-2 files of the repository; returns them, and how many entries could not
/// be used (each reported on stderr).
pub async fn recover(
    s: &Session,
    repo: &RepoKeys,
    json: bool,
    cancel: CancellationToken,
) -> Result<(Vec<FileJson>, usize)> {
    let store = s.store()?;
    let trusted = store.trusted_authors().await?;
    let found = tokio::select! {
        _ = cancel.cancelled() => bail!("recover cancelled; run it again to continue"),
        f = scan(store.as_ref(), &repo.keys, &s.config.channels, &trusted) => f?,
    };
    for why in &found.skipped {
        eprintln!("warning: {why}");
    }
    recover_snapshots(s, &found.snapshots, json)?;
    let mut entries: Vec<_> = found.entries.into_values().collect();
    entries.sort_by_key(|f| f.entry.created_at);
    let mut recovered = Vec::new();
    for f in entries {
        let id = f.entry.id.clone();
        if s.catalog.contains(&id) {
            match s.catalog.load_file(&id) {
                Ok(m) if m.format != FORMAT_V2 => {
                    eprintln!("warning: the catalogue entry of {id} on Discord names a file this catalogue holds in format 1; left as it is");
                    continue;
                }
                Ok(m) if m.entry_version.unwrap_or(0) >= f.entry.version => continue,
                // An incomplete upload or an older version: the entry on Discord is newer.
                Ok(_) | Err(_) => {}
            }
        }
        let file = f.entry.to_manifest(s.config.channels.clone(), f.head);
        s.catalog.save_file(&file)?;
        tracing::info!(id = %file.id, version = f.entry.version, "recovered from Discord");
        if !json {
            println!(
                "Recovered {} ({}) as {}.",
                file.name,
                human_bytes(file.size),
                file.id
            );
        }
        recovered.push(FileJson::of(&s.catalog, &file));
    }
    Ok((recovered, found.skipped.len()))
}

/// Writes every snapshot that counts and this machine lacks (and its folder's record, with no
/// local root, when the folder is new here), so `list`, `versions` and `restore` see it.
pub fn recover_snapshots(
    s: &Session,
    snapshots: &std::collections::HashMap<(String, u64), crate::repo::catalogue::FoundSnapshot>,
    json: bool,
) -> Result<usize> {
    let folders = crate::sync::Folders::new(&s.config.data_dir);
    let mut keys: Vec<&(String, u64)> = snapshots.keys().collect();
    keys.sort();
    let mut written = 0;
    let mut per_folder: std::collections::BTreeMap<String, (String, usize)> = Default::default();
    for key in keys {
        let f = &snapshots[key];
        let snap = &f.snapshot;
        if folders.load(&snap.folder)?.is_none() {
            folders.save(&crate::sync::Folder {
                format: crate::sync::LOCAL_FORMAT,
                id: snap.folder.clone(),
                root: String::new(),
                name: snap.name.clone(),
                created_at: snap.time,
            })?;
        }
        let have = folders.snapshot(&snap.folder, snap.seq)?;
        if have.is_some_and(|l| l.message == f.head) {
            continue;
        }
        folders.save_snapshot(&crate::sync::Local {
            message: f.head,
            pieces: f.pieces.clone(),
            snapshot: snap.clone(),
        })?;
        written += 1;
        let e = per_folder
            .entry(snap.folder.clone())
            .or_insert_with(|| (snap.name.clone(), 0));
        e.1 += 1;
    }
    if !json {
        for (id, (name, n)) in per_folder {
            println!(
                "Recovered {} of the synced folder {name} ({id}).",
                crate::render::plural(n as u64, "snapshot")
            );
        }
    }
    Ok(written)
}
