//! Before an upload: is this file already stored? A complete file of the same size and SHA-256
//! is the same file; the source is hashed only when some complete file has its size.

use std::path::Path;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, FileManifest, Status};

/// The complete file holding the same bytes as `path`, if any (hidden files count too: their
/// parts are still on Discord). `None` when the hash is cut short by `cancel`.
pub async fn find(
    catalog: &Catalog,
    path: &Path,
    cancel: &CancellationToken,
) -> Result<Option<FileManifest>> {
    let Ok(meta) = std::fs::metadata(path) else {
        // The upload itself says what is wrong with the path.
        return Ok(None);
    };
    if !meta.is_file() {
        return Ok(None);
    }
    let same_size: Vec<FileManifest> = catalog
        .all()?
        .into_iter()
        .flatten()
        .filter(|m| m.status == Status::Complete && m.size == meta.len() && m.sha256.is_some())
        .collect();
    if same_size.is_empty() {
        return Ok(None);
    }
    let owned = path.to_path_buf();
    let hashing = tokio::task::spawn_blocking(move || hash_file(&owned));
    let sha = tokio::select! {
        r = hashing => r.context("the hashing task failed")??,
        () = cancel.cancelled() => return Ok(None),
    };
    Ok(same_size
        .into_iter()
        .filter(|m| m.sha256.as_deref() == Some(sha.as_str()))
        .max_by_key(|m| m.created_at))
}

fn hash_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut sha = crate::hash::Sha256::default();
    std::io::copy(&mut file, &mut sha)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(sha.finish_hex())
}
