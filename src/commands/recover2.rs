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
