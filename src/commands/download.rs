//! `download <id> [dest]`: the destination is resolved and checked, the file is downloaded and
//! verified into a partial file beside it, then renamed into place with its original mtime.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tokio_util::sync::CancellationToken;

use super::Session;
use crate::catalog::{FileManifest, Status};
use crate::progress::{Progress, ProgressMode};
use crate::render::human_bytes;
use crate::transfer::download::{download_into, DownloadError};

pub async fn download(
    s: &Session,
    id: &str,
    dest: Option<&Path>,
    force: bool,
    json: bool,
    cancel: CancellationToken,
) -> Result<PathBuf> {
    let _lock = s.catalog.lock(id)?;
    let file = s.catalog.load_file(id)?;
    if file.status != Status::Complete {
        bail!("{id} is an incomplete upload; run `resume {id}` to finish it, then download it");
    }
    let target = resolve_target(dest, &file.name)?;
    if target.exists() && !force {
        bail!(
            "{} already exists; pass --force to replace it, or give another destination",
            target.display()
        );
    }
    let parts = s.catalog.load_parts(id)?.parts;
    let partial = partial_path(&target, id);
    if !json {
        println!(
            "Downloading {} ({}) to {}.",
            file.name,
            human_bytes(file.size),
            target.display()
        );
    }
    let mode = if json && s.progress == ProgressMode::Bar {
        ProgressMode::Hidden
    } else {
        s.progress
    };
    let progress = Progress::new(mode, &format!("download {id}"), file.size);
    let store = s.store()?;
    let result = download_into(
        store,
        &file,
        &parts,
        &partial,
        s.config.concurrency,
        &progress,
        &cancel,
    )
    .await;
    progress.finish();
    if let Err(e) = &result {
        tracing::warn!(id = %id, "download stopped: {e}");
    }
    match result {
        Ok(()) => {}
        Err(DownloadError::Cancelled) => {
            bail!("download of {id} cancelled; run the same command again to continue")
        }
        Err(e @ DownloadError::Lost(_)) => bail!(
            "download of {id} is incomplete: {e}; the other parts are in {}",
            partial.display()
        ),
        Err(e) => bail!("download of {id} failed: {e}; run the same command again to retry"),
    }
    place(&partial, &target, &file)?;
    tracing::info!(id = %file.id, path = %target.display(), "download complete and verified");
    if json {
        let v = serde_json::json!({
            "id": file.id, "name": file.name, "size": file.size,
            "sha256": file.sha256, "path": target,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "Downloaded {} to {}; SHA-256 verified.",
            file.name,
            target.display()
        );
    }
    Ok(target)
}

/// A directory gets the original (sanitised) name; anything else is the file path itself.
fn resolve_target(dest: Option<&Path>, name: &str) -> Result<PathBuf> {
    let dest = match dest {
        Some(d) => d.to_path_buf(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    if dest.is_dir() {
        return Ok(dest.join(safe_name(name)));
    }
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() && !p.is_dir() => {
            bail!(
                "the folder {} does not exist; create it or choose another destination",
                p.display()
            )
        }
        _ => Ok(dest),
    }
}

/// The stored name made safe to join to a directory: no separators, no `..`, no absolute path,
/// no control characters.
pub fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned.trim_start_matches('.').trim();
    if trimmed.is_empty() {
        "file".into()
    } else {
        trimmed.to_string()
    }
}

fn partial_path(target: &Path, id: &str) -> PathBuf {
    let name = target
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().to_string());
    target.with_file_name(format!(".{name}.{id}.dstore-partial"))
}

/// Sets the original mtime and renames the verified partial file into place.
fn place(partial: &Path, target: &Path, file: &FileManifest) -> Result<()> {
    let f = std::fs::File::options().write(true).open(partial)?;
    f.set_modified(file.mtime.into())?;
    f.sync_all()?;
    std::fs::rename(partial, target)
        .with_context(|| format!("cannot move the download to {}", target.display()))?;
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::catalog::sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_cannot_escape() {
        assert_eq!(safe_name("../../x"), "_.._x");
        assert_eq!(safe_name("/etc/passwd"), "_etc_passwd");
        assert_eq!(safe_name(".."), "file");
        assert_eq!(safe_name("a\\b\nc"), "a_b_c");
        assert_eq!(safe_name("movie.mkv"), "movie.mkv");
        for n in ["../../x", "/abs", "..", "a/../../b"] {
            let joined = Path::new("/dest").join(safe_name(n));
            assert_eq!(joined.parent(), Some(Path::new("/dest")), "{n}");
        }
    }
}
