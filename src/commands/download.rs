//! `download <id> [dest]`: the destination is resolved and checked, and the partial file
//! beside it created, before a byte is fetched; the file is downloaded and verified into the
//! partial file, then moved into place with its original mtime and mode, never over a file
//! that appeared meanwhile unless `--force`.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tokio_util::sync::CancellationToken;

use super::Session;
use crate::catalog::{Status, FORMAT_V2};
use crate::render::human_bytes;
use crate::repo::crypto::Keys;
use crate::repo::download::{check_manifest, Rebuild, RebuildError, Sink};
use crate::transfer::download::{
    default_file_mode, download_into, partial_path, DownloadError, Partial, NAME_MAX,
};

pub async fn download(
    s: &Session,
    id: &str,
    dest: Option<&Path>,
    force: bool,
    json: bool,
    cancel: CancellationToken,
) -> Result<PathBuf> {
    if !s.catalog.contains(id) {
        if let Some((folder, path)) = super::sync::resolve(s, id)? {
            return download_synced(s, &folder, &path, dest, force, json, cancel).await;
        }
    }
    if s.catalog.load_file(id)?.format == FORMAT_V2 {
        let keys = repository_keys(s, id).await?;
        return download_v2(s, &keys, id, dest, force, json, cancel).await;
    }
    let _lock = s.catalog.lock(id)?;
    let file = s.catalog.load_file(id)?;
    if file.status != Status::Complete {
        bail!("{id} is an incomplete upload; run `resume {id}` to finish it, then download it");
    }
    let target = resolve_target(dest, &file.name)?;
    check_target(&target, force)?;
    let parts = s.catalog.load_parts(id)?.parts;
    let store = s.store()?;
    // Creating the partial file is the check that the folder can be written to.
    let partial = Partial::open(&partial_path(&target, id), file.size)?;
    let partial_at = partial.path.clone();
    if !json {
        println!(
            "Downloading {} ({}) to {}.",
            file.name,
            human_bytes(file.size),
            target.display()
        );
    }
    let progress = s.progress_bar(json, &format!("download {id}"), file.size);
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
        tracing::info!(id = %id, "download stopped: {e}");
    }
    match result {
        Ok(()) => {}
        Err(DownloadError::Cancelled) => {
            bail!("download of {id} cancelled; run the same command again to continue")
        }
        Err(e @ DownloadError::Lost(_)) => bail!(
            "download of {id} is incomplete: {e}; the other parts are in {}",
            partial_at.display()
        ),
        Err(e) => bail!("download of {id} failed: {e}; run the same command again to retry"),
    }
    place(partial, &file, target, force, json)
}

/// `download <synced path>`: the file as the folder's latest snapshot holds it, verified, to
/// the same destinations as a file ID's download.
async fn download_synced(
    s: &Session,
    folder: &crate::sync::Folder,
    path: &str,
    dest: Option<&Path>,
    force: bool,
    json: bool,
    cancel: CancellationToken,
) -> Result<PathBuf> {
    let local = super::sync::snapshot_at(s, folder, None)?;
    let snap = &local.snapshot;
    let Some(node) = snap
        .node(path)
        .filter(|n| n.kind == crate::repo::snapshot::Kind::File)
    else {
        bail!(
            "{}/{path} is not a file of the latest snapshot of {} (`restore` writes folders; `versions` lists deleted files' versions)",
            folder.name,
            folder.name
        );
    };
    let name = path.rsplit('/').next().unwrap_or(path);
    let target = resolve_target(dest, name)?;
    check_target(&target, force)?;
    let Some(repo) = s.repository().await? else {
        bail!("there is no format-2 repository here or on Discord");
    };
    if !json {
        println!(
            "Downloading {}/{path} ({}) to {}.",
            folder.name,
            human_bytes(node.size.unwrap_or(0)),
            target.display()
        );
    }
    let job = crate::sync::restore::Restore {
        store: s.store()?,
        keys: &repo.keys,
        channels: &s.config.channels,
        concurrency: s.config.concurrency,
        cancel: &cancel,
        force,
    };
    job.file(snap, node, &target).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({"folder": folder.id, "path": path, "seq": snap.seq,
                "size": node.size, "sha256": node.sha256, "saved_to": target})
        );
    } else {
        println!("Saved {} (verified).", target.display());
    }
    Ok(target)
}

/// The keys of the repository format-2 file `id` lives in.
pub(super) async fn repository_keys(s: &Session, id: &str) -> Result<Keys> {
    Ok(super::upload2::repo_keys(s, id).await?.keys)
}

/// `download` of a format-2 file with the repository's `keys`: the same destination rules,
/// partial file, resume, progress, output and final checks as format 1.
pub async fn download_v2(
    s: &Session,
    keys: &Keys,
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
    check_target(&target, force)?;
    // Before the partial file exists: a damaged record leaves nothing behind.
    check_manifest(&file, &s.config.channels)?;
    let store = s.store()?;
    let partial = Partial::open(&partial_path(&target, id), file.size)?;
    if !json {
        println!(
            "Downloading {} ({}) to {}.",
            file.name,
            human_bytes(file.size),
            target.display()
        );
    }
    let progress = s.progress_bar(json, &format!("download {id}"), file.size);
    let sink = Sink {
        file: partial.file.clone(),
        path: partial.path.clone(),
        resumed: partial.resumed,
    };
    let rebuild = Rebuild {
        store,
        keys,
        file: &file,
        channels: &s.config.channels,
        concurrency: s.config.concurrency,
        progress: &progress,
        cancel: &cancel,
    };
    let result = rebuild.run(Some(sink)).await;
    progress.finish();
    match result {
        Ok(done) => tracing::debug!(id = %id, ?done, "every chunk opened"),
        Err(RebuildError::Cancelled) => {
            bail!("download of {id} cancelled; run the same command again to continue")
        }
        Err(e @ (RebuildError::Store(_) | RebuildError::Io { .. })) => {
            bail!("download of {id} failed: {e}; run the same command again to retry")
        }
        Err(e) => return Err(e.into()),
    }
    place(partial, &file, target, force, json)
}

/// A folder gets the original (sanitised) name; anything else is the file path itself. A
/// destination written as a folder (`dir/`, `dir/.`) must be an existing folder.
fn resolve_target(dest: Option<&Path>, name: &str) -> Result<PathBuf> {
    let dest = match dest {
        Some(d) => d.to_path_buf(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let found = std::fs::metadata(&dest);
    if found.as_ref().is_ok_and(|m| m.is_dir()) {
        return Ok(dest.join(safe_name(name)));
    }
    if names_a_folder(&dest) {
        // `file.txt/` does not resolve at all (ENOTDIR): look at the path without its slash.
        let bare: PathBuf = dest.components().collect();
        if std::fs::symlink_metadata(&bare).is_ok() {
            bail!(
                "{} is not a folder; leave off the trailing slash to write to that file, or give a folder",
                dest.display()
            );
        }
        bail!(
            "the folder {} does not exist; create it first, or leave off the trailing slash to name the file to write",
            dest.display()
        );
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

/// Whether the path is written as a folder: a trailing `/`, or ending in `.` or `..`.
fn names_a_folder(dest: &Path) -> bool {
    let b = dest.as_os_str().as_bytes();
    b.ends_with(b"/") || b.ends_with(b"/.") || b.ends_with(b"/..") || b == b"." || b == b".."
}

/// Refuses a destination that cannot be written before anything is fetched.
fn check_target(target: &Path, force: bool) -> Result<()> {
    let too_long = target
        .file_name()
        .is_some_and(|n| n.as_bytes().len() > NAME_MAX);
    if too_long {
        bail!(
            "the name {} is longer than file systems take ({NAME_MAX} bytes); give a shorter file name",
            target.display()
        );
    }
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => bail!(
            "{} is a folder; give another destination, or a file name inside it",
            target.display()
        ),
        Ok(_) if !force => bail!(
            "{} already exists; pass --force to replace it, or give another destination",
            target.display()
        ),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => bail!("cannot check {}: {e}", target.display()),
    }
}

/// The stored name made safe to join to a folder: no separators, no control characters, not
/// hidden (no leading dots, whatever spaces come between them), not `.` or `..`, never empty,
/// at most [`NAME_MAX`] bytes. Ordinary names come out as they went in.
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
    let trimmed = cleaned
        .trim_start_matches(|c: char| c == '.' || c.is_whitespace())
        .trim_end();
    if trimmed.is_empty() {
        return "file".into();
    }
    let mut cut = trimmed.len().min(NAME_MAX);
    while !trimmed.is_char_boundary(cut) {
        cut -= 1;
    }
    trimmed[..cut].trim_end().to_string()
}

/// Puts a verified partial file at `target` with the file's mtime and permission bits, and says so.
fn place(
    partial: Partial,
    file: &crate::catalog::FileManifest,
    target: PathBuf,
    force: bool,
    json: bool,
) -> Result<PathBuf> {
    // Permission bits only: set-user-ID and the like are not given to a file from Discord.
    let mode = file.mode.map_or_else(default_file_mode, |m| m & 0o777);
    partial.place(&target, file.mtime.into(), mode, force)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_names_cannot_escape_or_hide() {
        assert_eq!(safe_name("../../x"), "_.._x");
        assert_eq!(safe_name("/etc/passwd"), "_etc_passwd");
        assert_eq!(safe_name(".."), "file");
        assert_eq!(safe_name("a\\b\nc"), "a_b_c");
        assert_eq!(safe_name("movie.mkv"), "movie.mkv");
        assert_eq!(safe_name(" .envrc"), "envrc");
        assert_eq!(safe_name(". . .bashrc "), "bashrc");
        assert_eq!(safe_name("\u{a0}.x"), "x");
        assert_eq!(safe_name(" "), "file");
        assert_eq!(safe_name(&"x".repeat(300)).len(), NAME_MAX);
        for n in ["../../x", "/abs", "..", "a/../../b"] {
            let joined = Path::new("/dest").join(safe_name(n));
            assert_eq!(joined.parent(), Some(Path::new("/dest")), "{n}");
        }
    }

    /// Names built mostly from the characters that make trouble, in any order.
    fn tricky_name() -> impl Strategy<Value = String> {
        let tricky = prop::sample::select(vec![
            '.', ' ', '/', '\\', '\n', '\t', '\0', '\u{7f}', '\u{a0}', '\u{3000}', 'a', 'Z', '-',
            '~', 'é', '日',
        ]);
        prop_oneof![
            prop::collection::vec(tricky, 0..24).prop_map(|v| v.into_iter().collect()),
            any::<String>(),
        ]
    }

    proptest! {
        #[test]
        fn safe_names_are_never_hidden_or_escaping(name in tricky_name()) {
            let safe = safe_name(&name);
            prop_assert!(!safe.is_empty());
            prop_assert!(!safe.starts_with('.'), "{safe:?}");
            prop_assert!(safe != "." && safe != "..");
            prop_assert!(!safe.contains(['/', '\\']), "{safe:?}");
            prop_assert!(!safe.chars().any(char::is_control), "{safe:?}");
            prop_assert!(safe.len() <= NAME_MAX);
            let joined = Path::new("/dest").join(&safe);
            prop_assert_eq!(joined.parent(), Some(Path::new("/dest")));
            prop_assert_eq!(joined.file_name().and_then(|n| n.to_str()), Some(safe.as_str()));
        }

        #[test]
        fn ordinary_names_are_kept(
            name in "[A-Za-z0-9_(\\[][A-Za-z0-9 ._()\\[\\]-]{0,60}[A-Za-z0-9_)\\]]"
        ) {
            prop_assert_eq!(safe_name(&name), name);
        }
    }
}
