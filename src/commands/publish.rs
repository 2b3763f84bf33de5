//! Publishing a file's catalogue entry on Discord (see `catalog::remote`), so `recover` can
//! rebuild the file from another machine.

use anyhow::{Context, Result};

use super::entries::{post_entry, refused, sweep};
use super::Session;
use crate::catalog::remote::{uncovered, RemoteError, RemoteManifest};
use crate::catalog::FileManifest;

/// Posts the file's entry, records it in `file.json`, then removes every older entry of the
/// file (the recorded one and any stray a kill or a failed delete left), heads first. Run again
/// after any failure, it ends in the same state: one entry, the recorded one. An entry whose
/// parts do not tile the file is never posted.
pub async fn publish_manifest(s: &Session, file: &mut FileManifest) -> Result<()> {
    let id = file.id.clone();
    let loaded = s.catalog.load_parts(&id)?;
    if let Some(path) = loaded.quarantined.first() {
        let e = RemoteError::Untiled(format!("the part manifest {} is damaged", path.display()));
        return Err(refused(&id, e));
    }
    if let Some((from, to)) = uncovered(&loaded.parts, file.size).first() {
        let e = RemoteError::Untiled(format!("bytes {from}..{to} have no part record"));
        return Err(refused(&id, e));
    }
    let entry = RemoteManifest::of(file, &loaded.parts).map_err(|e| refused(&id, e))?;
    let store = s.store()?;
    let Some(&channel) = file.channels.first() else {
        anyhow::bail!("{id} has no channel in its file.json, so its catalogue entry has nowhere to go; `info {id}` shows it");
    };
    let posted = post_entry(&store, channel, &entry).await.with_context(|| {
        format!(
            "{id} is stored, but its catalogue entry could not be posted to Discord for `recover`; run `resume {id}` to post it"
        )
    })?;
    let old = file.remote_manifest.replace(posted.head);
    s.catalog.save_file(file)?;
    match sweep(s, &store, file, &posted, old).await {
        Ok(removed) => tracing::info!(id = %id, pieces = posted.pieces.len(), replaced = removed, "catalogue entry posted"),
        // Harmless meanwhile: `recover` takes the newest entry, `delete` removes them all.
        Err(e) => eprintln!(
            "warning: the catalogue entry of {id} is posted, but an older one could not be removed from Discord ({e:#}); the next change or `delete` of {id} removes it"
        ),
    }
    Ok(())
}
