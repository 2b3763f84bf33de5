//! `upload` and `resume` of format-2 files (docs/format.md): chunks, packs and a sealed entry.

use std::path::Path;

use anyhow::{bail, Context, Result};
use tokio_util::sync::CancellationToken;

use super::{FileJson, Session};
use crate::catalog::{FileManifest, MessageRef, Status, FORMAT_V2};
use crate::config::PartSize;
use crate::progress::{Progress, ProgressMode};
use crate::render::{human_bytes, plural};
use crate::repo::catalogue::post_entry;
use crate::repo::chunker::ChunkerParams;
use crate::repo::crypto::Keys;
use crate::repo::entry::Entry;
use crate::repo::pack::pack_limit;
use crate::repo::upload::{adopt_orphans, run, Stats, Upload2};
use crate::store::PartStore;
use crate::transfer::{check_source, UploadError};

/// The keys and chunker of the repository an upload writes to.
#[derive(Clone, Debug)]
pub struct RepoKeys {
    pub keys: Keys,
    pub chunker: ChunkerParams,
}

impl From<&crate::repo::repository::Repository> for RepoKeys {
    fn from(r: &crate::repo::repository::Repository) -> Self {
        RepoKeys {
            keys: r.keys.clone(),
            chunker: r.chunker(),
        }
    }
}

/// The repository a format-2 file belongs to, opened; an error naming `dstore init` if there is
/// none (a format-2 file without a repository: its config was deleted, or the data dir moved).
pub async fn repo_keys(s: &Session, id: &str) -> Result<RepoKeys> {
    match s.repository().await? {
        Some(r) => Ok(RepoKeys::from(r.as_ref())),
        None => bail!(
            "{id} is stored in format 2, but no repository config was found here or on Discord; check the configured channels (the first holds the config)"
        ),
    }
}

/// The largest attachment every configured channel accepts, or the configured part size.
pub async fn attachment_limit(s: &Session) -> Result<u64> {
    let store = s.store()?;
    let mut limit = u64::MAX;
    for &channel in &s.config.channels {
        limit = limit.min(store.part_size_limit(channel).await?);
    }
    Ok(match s.config.part_size {
        PartSize::Auto => limit,
        PartSize::Fixed(n) => n.min(limit),
    })
}

pub async fn upload(
    s: &Session,
    repo: &RepoKeys,
    path: &Path,
    json: bool,
    cancel: CancellationToken,
) -> Result<FileManifest> {
    let file = super::upload::new_manifest(s, path, FORMAT_V2)?;
    s.catalog.save_file(&file)?;
    let _lock = s.catalog.lock(&file.id)?;
    tracing::info!(id = %file.id, size = file.size, "upload started (format 2)");
    if !json {
        println!(
            "Uploading {} ({}) as {}.",
            file.name,
            human_bytes(file.size),
            file.id
        );
    }
    transfer(s, repo, file, Vec::new(), json, cancel).await
}

pub async fn resume(
    s: &Session,
    repo: &RepoKeys,
    mut file: FileManifest,
    json: bool,
    cancel: CancellationToken,
) -> Result<FileManifest> {
    let id = file.id.clone();
    if file.status == Status::Complete {
        let posted = file.remote_manifest.is_none();
        if posted {
            publish(s, repo, &mut file).await?;
        }
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&FileJson::of(&s.catalog, &file))?
            );
        } else if posted {
            println!(
                "{id} ({}) is complete; its catalogue entry is now on Discord.",
                file.name
            );
        } else {
            println!(
                "{id} ({}) is already complete; nothing to resume.",
                file.name
            );
        }
        return Ok(file);
    }
    check_source(&file).map_err(|e| anyhow::anyhow!("cannot resume {id}: {e}"))?;
    let store = s.store()?;
    let mut records = s.catalog.load_packs(&id)?;
    let adopted = adopt_orphans(store.as_ref(), &s.catalog, &repo.keys, &file, &mut records)
        .await
        .map_err(|e| anyhow::anyhow!("cannot resume {id}: {e}"))?;
    if !json {
        println!(
            "Resuming {id} ({}): {} on Discord already{}.",
            file.name,
            plural(records.len() as u64, "pack"),
            if adopted > 0 {
                format!(
                    " ({} found unrecorded and adopted)",
                    plural(adopted as u64, "pack")
                )
            } else {
                String::new()
            }
        );
    }
    transfer(s, repo, file, records, json, cancel).await
}

async fn transfer(
    s: &Session,
    repo: &RepoKeys,
    file: FileManifest,
    records: Vec<crate::catalog::PackRecord>,
    json: bool,
    cancel: CancellationToken,
) -> Result<FileManifest> {
    let ctx = Upload2 {
        store: s.store()?,
        catalog: s.catalog.clone(),
        keys: repo.keys.clone(),
        chunker: repo.chunker,
        concurrency: s.config.concurrency,
        cancel,
        attachment_limit: attachment_limit(s).await?,
    };
    let mode = if json && s.progress == ProgressMode::Bar {
        ProgressMode::Hidden
    } else {
        s.progress
    };
    let progress = Progress::new(mode, &format!("upload {}", file.id), file.size);
    let id = file.id.clone();
    match run(&ctx, file, records, &progress).await {
        Ok((mut done, stats)) => {
            tracing::info!(id = %done.id, packs = stats.packs, deduplicated = stats.deduplicated, "upload complete");
            if let Err(e) = publish(s, repo, &mut done).await {
                eprintln!("warning: {e:#}");
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&FileJson::of(&s.catalog, &done))?
                );
            } else {
                println!("{}", summary(&done, &stats));
            }
            Ok(done)
        }
        Err(e) => {
            progress.finish();
            tracing::info!(id = %id, "upload stopped: {e}");
            let at = plural(s.catalog.load_packs(&id)?.len() as u64, "pack");
            match e {
                UploadError::Cancelled => {
                    bail!(
                        "upload of {id} cancelled with {at} stored; run `resume {id}` to continue"
                    )
                }
                UploadError::SourceChanged(_)
                | UploadError::Inconsistent(_)
                | UploadError::PackTooSmall { .. } => {
                    bail!("upload of {id} stopped with {at} stored: {e}")
                }
                e => bail!(
                    "upload of {id} stopped with {at} stored: {e}; run `resume {id}` to continue"
                ),
            }
        }
    }
}

/// "Stored a.bin (12.0 MiB) as <id>: 3 new packs (4.1 MiB sent), 7 of 12 chunks already stored."
fn summary(file: &FileManifest, st: &Stats) -> String {
    let sent = if st.packs == 0 {
        "nothing new to send".to_string()
    } else {
        format!(
            "{} ({} sent)",
            plural(st.packs, "new pack"),
            human_bytes(st.pack_bytes)
        )
    };
    format!(
        "Stored {} ({}) as {}: {sent}, {} of {} already stored; sha256 {}.",
        file.name,
        human_bytes(file.size),
        file.id,
        st.deduplicated,
        plural(st.chunks, "chunk"),
        file.sha256.as_deref().unwrap_or("?")
    )
}

/// Posts the file's sealed catalogue entry (the next version) and records it in `file.json`.
pub async fn publish(s: &Session, repo: &RepoKeys, file: &mut FileManifest) -> Result<()> {
    let id = file.id.clone();
    let Some(&channel) = file.channels.first() else {
        bail!("{id} has no channel in its file.json, so its catalogue entry has nowhere to go; `info {id}` shows it");
    };
    let version = file.entry_version.map_or(1, |v| v + 1);
    let entry = Entry::of(file, version);
    entry
        .check(&file.channels)
        .map_err(|e| anyhow::anyhow!("the catalogue entry of {id} was not posted: {e}"))?;
    let store = s.store()?;
    let budget = pack_limit(attachment_limit(s).await? as usize);
    let posted = post_entry(store.as_ref(), &repo.keys, channel, &entry, budget)
        .await
        .with_context(|| {
            format!(
                "{id} is stored, but its catalogue entry could not be posted to Discord for `recover`; run `resume {id}` to post it"
            )
        })?;
    file.remote_manifest = Some(MessageRef {
        channel_id: posted.head.channel_id,
        message_id: posted.head.message_id,
    });
    file.entry_version = Some(version);
    s.catalog.save_file(file)?;
    tracing::info!(id = %id, version, pieces = posted.pieces.len(), "catalogue entry posted");
    Ok(())
}
