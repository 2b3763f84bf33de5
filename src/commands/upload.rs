//! `upload <path>` and `resume <id>`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::{FileJson, Session};
use crate::catalog::remote::uncovered;
use crate::catalog::{layout, FileManifest, Status, FORMAT_VERSION};
use crate::config::PartSize;
use crate::render::human_bytes;
use crate::transfer::{adopt_orphans, check_source, run_upload, UploadCtx, UploadError};

/// How far below the channel's limit `auto` parts stay: the exact boundary is not documented
/// (discord-api.md §1.1).
const AUTO_MARGIN: u64 = 64 * 1024;

pub async fn upload(
    s: &Session,
    path: &Path,
    json: bool,
    cancel: CancellationToken,
) -> Result<FileManifest> {
    let mut file = new_manifest(s, path, FORMAT_VERSION)?;
    let limit = super::upload2::channels_limit(s).await?;
    let part_size = match s.config.part_size {
        PartSize::Auto => limit
            .checked_sub(AUTO_MARGIN)
            .filter(|n| *n > 0)
            .unwrap_or(limit),
        PartSize::Fixed(n) => n,
    };
    file.part_size = part_size;
    file.layout = layout::initial(file.size, part_size);
    s.catalog.save_file(&file)?;
    let _lock = s.catalog.lock(&file.id)?;
    tracing::info!(id = %file.id, size = file.size, part_size, "upload started");
    if !json {
        s.say(format_args!(
            "Uploading {} ({}) as {} in {} of up to {}.",
            file.name,
            human_bytes(file.size),
            file.id,
            crate::render::plural(file.planned().len() as u64, "part"),
            human_bytes(part_size)
        ));
    }
    transfer(s, file, Vec::new(), json, cancel).await
}

/// A new, incomplete manifest for the regular file at `path`, in storage `format`, with a
/// fresh ID, the configured channels and what identifies the source; one sentence if `path`
/// is missing or not a regular file.
pub(super) fn new_manifest(s: &Session, path: &Path, format: u32) -> Result<FileManifest> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!("there is no file at {}", path.display()),
        _ => anyhow::anyhow!("cannot read {}: {e}", path.display()),
    })?;
    if !meta.is_file() {
        bail!(
            "{} is not a regular file; `upload` takes one file",
            path.display()
        );
    }
    let now = OffsetDateTime::now_utc();
    let source = std::fs::canonicalize(path)
        .with_context(|| format!("cannot resolve {}", path.display()))?;
    Ok(FileManifest {
        format,
        id: s.catalog.fresh_id(),
        name: path
            .file_name()
            .map_or_else(|| "file".into(), |n| n.to_string_lossy().to_string()),
        source_path: source,
        size: meta.len(),
        mtime: meta
            .modified()
            .map(OffsetDateTime::from)
            .with_context(|| format!("cannot read the modification time of {}", path.display()))?,
        sha256: None,
        part_size: 0,
        layout: Vec::new(),
        channels: s.config.channels.clone(),
        status: Status::Incomplete,
        created_at: now,
        updated_at: now,
        hidden: false,
        remote_manifest: None,
        mode: crate::catalog::mode_of(&meta),
        source_stamp: crate::catalog::SourceStamp::of(&meta),
        entry_version: None,
        packs: Vec::new(),
        chunks: Vec::new(),
    })
}

pub async fn resume(
    s: &Session,
    id: &str,
    json: bool,
    cancel: CancellationToken,
) -> Result<FileManifest> {
    let _lock = s.catalog.lock(id)?;
    let mut file = s.catalog.load_file(id)?;
    if file.format == crate::catalog::FORMAT_V2 {
        let repo = super::upload2::repo_keys(s, id).await?;
        return super::upload2::resume(s, &repo, file, json, cancel).await;
    }
    if file.status == Status::Complete {
        let repaired = resume_complete(s, &mut file).await?;
        if json {
            s.say(format_args!(
                "{}",
                serde_json::to_string_pretty(&FileJson::of(&s.catalog, &file))?
            ));
        } else if repaired > 0 {
            s.say(format_args!(
                "{} ({}) is complete; {repaired} missing part {} restored from Discord.",
                file.id,
                file.name,
                if repaired == 1 {
                    "record was"
                } else {
                    "records were"
                }
            ));
        } else {
            s.say(format_args!(
                "{} ({}) is already complete; nothing to resume.",
                file.id, file.name
            ));
        }
        return Ok(file);
    }
    check_source(&file).map_err(|e| anyhow::anyhow!("cannot resume {}: {e}", file.id))?;
    let store = s.store()?;
    let mut parts = s.catalog.load_parts(id)?.parts;
    let adopted = adopt_orphans(store.as_ref(), &s.catalog, &file, &mut parts)
        .await
        .map_err(|e| anyhow::anyhow!("cannot resume {}: {e}", file.id))?;
    if !json {
        let have: u64 = parts.iter().map(|p| p.length).sum();
        s.say(format_args!(
            "Resuming {} ({}): {} of {} already on Discord{}.",
            file.id,
            file.name,
            human_bytes(have),
            human_bytes(file.size),
            if adopted > 0 {
                format!(
                    " ({} found and verified)",
                    crate::render::plural(adopted as u64, "unrecorded part")
                )
            } else {
                String::new()
            }
        ));
    }
    transfer(s, file, parts, json, cancel).await
}

/// A complete file: nothing to do when its part records cover it and its catalogue entry is
/// recorded. Else restores the missing records from Discord, then makes sure its entry there is
/// the recorded one and the only one (posting it if need be).
async fn resume_complete(s: &Session, file: &mut FileManifest) -> Result<usize> {
    let id = file.id.clone();
    let have = s.catalog.load_parts(&id)?.parts;
    if file.remote_manifest.is_some() && uncovered(&have, file.size).is_empty() {
        return Ok(0);
    }
    let store = s.store()?;
    let trust = super::entries::trust(s, &store).await?;
    let remote = super::repair::look(s, &store, &trust, file).await?;
    let repaired = super::repair::repair(s, &store, file, &remote)
        .await
        .map_err(|e| anyhow::anyhow!("cannot resume {id}: {e:#}"))?;
    match (&remote.entry, file.remote_manifest) {
        (Some((posted, _)), Some(recorded)) if posted.head == recorded => {
            super::entries::sweep_found(&store, &remote.found, posted, None).await?;
        }
        _ => super::publish::publish_manifest(s, file).await?,
    }
    Ok(repaired)
}

async fn transfer(
    s: &Session,
    file: FileManifest,
    parts: Vec<crate::catalog::PartRecord>,
    json: bool,
    cancel: CancellationToken,
) -> Result<FileManifest> {
    let ctx = UploadCtx {
        store: s.store()?,
        catalog: s.catalog.clone(),
        concurrency: s.config.concurrency,
        cancel,
    };
    let progress = s.progress_bar(json, &format!("upload {}", file.id), file.size);
    let id = file.id.clone();
    match run_upload(&ctx, file, parts, &progress).await {
        Ok(mut done) => {
            tracing::info!(id = %done.id, sha256 = done.sha256.as_deref().unwrap_or_default(), "upload complete");
            if let Err(e) = super::publish::publish_manifest(s, &mut done).await {
                eprintln!("warning: {e:#}");
            }
            if json {
                s.say(format_args!(
                    "{}",
                    serde_json::to_string_pretty(&FileJson::of(&s.catalog, &done))?
                ));
            } else {
                s.say(format_args!(
                    "Stored {} ({}) as {}: {}, sha256 {}.",
                    done.name,
                    human_bytes(done.size),
                    done.id,
                    crate::render::plural(s.catalog.part_indices(&done.id).len() as u64, "part"),
                    done.sha256.as_deref().unwrap_or("?")
                ));
            }
            Ok(done)
        }
        Err(e) => {
            progress.finish();
            tracing::info!(id = %id, "upload stopped: {e}");
            let file = s.catalog.load_file(&id)?;
            let j = FileJson::of(&s.catalog, &file);
            let at = format!(
                "{}/{}",
                j.parts_done,
                crate::render::plural(j.parts_total, "part")
            );
            match e {
                UploadError::Cancelled => {
                    bail!("upload of {id} cancelled after {at}; run `resume {id}` to continue")
                }
                UploadError::SourceChanged(_) | UploadError::Inconsistent(_) => {
                    bail!("upload of {id} stopped after {at}: {e}")
                }
                e => bail!("upload of {id} stopped after {at}: {e}; run `resume {id}` to continue"),
            }
        }
    }
}
