//! `upload` and `resume` of format-2 files (docs/format.md): chunks, packs and a sealed entry.

use std::path::Path;

use anyhow::{bail, Result};
use tokio_util::sync::CancellationToken;

use super::{FileJson, Session};
use crate::catalog::{FileManifest, Status, FORMAT_V2};
use crate::config::PartSize;
use crate::render::{human_bytes, plural};
use crate::repo::catalogue::{post_entries, Posted};
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

/// The largest attachment every configured channel accepts (from each server's boost tier).
pub async fn channels_limit(s: &Session) -> Result<u64> {
    let store = s.store()?;
    let mut limit = u64::MAX;
    for &channel in &s.config.channels {
        limit = limit.min(store.part_size_limit(channel).await?);
    }
    Ok(limit)
}

/// The largest attachment every configured channel accepts, or the configured part size.
pub async fn attachment_limit(s: &Session) -> Result<u64> {
    let limit = channels_limit(s).await?;
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
    let done = upload_unposted(s, repo, path, json, cancel).await?;
    let mut files = finish(s, repo, vec![done]).await?;
    files
        .pop()
        .ok_or_else(|| anyhow::anyhow!("the upload came back without its file"))
}

/// A file uploaded whole whose catalogue entry is not posted yet, so that the files of one
/// `upload` share messages (docs/format.md 7.2); [`finish`] posts and reports it. Until then
/// its `file.json` is complete with no `remote_manifest` (what `resume <id>` posts), and it
/// stays locked.
pub struct Unposted {
    file: FileManifest,
    stats: Stats,
    json: bool,
    _lock: Option<crate::catalog::FileLock>,
}

impl Unposted {
    pub fn id(&self) -> &str {
        &self.file.id
    }

    /// The size of its sealed entry, about (to know when a batch is full).
    pub fn entry_len(&self) -> usize {
        serde_json::to_vec(&Entry::of(&self.file, 1)).map_or(usize::MAX, |j| j.len() + 40)
    }
}

/// [`upload`] up to the catalogue entry, which is left to [`finish`].
pub async fn upload_unposted(
    s: &Session,
    repo: &RepoKeys,
    path: &Path,
    json: bool,
    cancel: CancellationToken,
) -> Result<Unposted> {
    let file = super::upload::new_manifest(s, path, FORMAT_V2)?;
    s.catalog.save_file(&file)?;
    let lock = s.catalog.lock(&file.id)?;
    tracing::info!(id = %file.id, size = file.size, "upload started (format 2)");
    if !json {
        s.say(format_args!(
            "Uploading {} ({}) as {}.",
            file.name,
            human_bytes(file.size),
            file.id
        ));
    }
    let mut done = transfer(s, repo, file, Vec::new(), json, cancel).await?;
    done._lock = Some(lock);
    Ok(done)
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
            s.say(format_args!(
                "{}",
                serde_json::to_string_pretty(&FileJson::of(&s.catalog, &file))?
            ));
        } else if posted {
            s.say(format_args!(
                "{id} ({}) is complete; its catalogue entry is now on Discord.",
                file.name
            ));
        } else {
            s.say(format_args!(
                "{id} ({}) is already complete; nothing to resume.",
                file.name
            ));
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
        s.say(format_args!(
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
        ));
    }
    let done = transfer(s, repo, file, records, json, cancel).await?;
    let mut files = finish(s, repo, vec![done]).await?;
    files
        .pop()
        .ok_or_else(|| anyhow::anyhow!("the upload came back without its file"))
}

async fn transfer(
    s: &Session,
    repo: &RepoKeys,
    file: FileManifest,
    records: Vec<crate::catalog::PackRecord>,
    json: bool,
    cancel: CancellationToken,
) -> Result<Unposted> {
    let ctx = Upload2 {
        store: s.store()?,
        catalog: s.catalog.clone(),
        keys: repo.keys.clone(),
        chunker: repo.chunker,
        concurrency: s.config.concurrency_set.then_some(s.config.concurrency),
        cancel,
        attachment_limit: attachment_limit(s).await?,
    };
    let progress = s.progress_bar(json, &format!("upload {}", file.id), file.size);
    let id = file.id.clone();
    match run(&ctx, file, records, &progress).await {
        Ok((done, stats)) => {
            tracing::info!(id = %done.id, packs = stats.packs, deduplicated = stats.deduplicated, "upload complete");
            Ok(Unposted {
                file: done,
                stats,
                json,
                _lock: None,
            })
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

/// Posts the catalogue entries of `done`, several to a message (7.2), records each in its
/// `file.json`, and only then reports each file: its summary (or JSON), after a warning naming
/// `resume <id>` when its entry could not be posted. Returns the files.
pub async fn finish(
    s: &Session,
    repo: &RepoKeys,
    done: Vec<Unposted>,
) -> Result<Vec<FileManifest>> {
    let mut files: Vec<FileManifest> = done.iter().map(|d| d.file.clone()).collect();
    let results = publish_all(s, repo, &mut files).await;
    for ((d, file), result) in done.iter().zip(&files).zip(results) {
        if let Err(e) = result {
            eprintln!("warning: {e:#}");
        }
        if d.json {
            s.say(format_args!(
                "{}",
                serde_json::to_string_pretty(&FileJson::of(&s.catalog, file))?
            ));
        } else {
            s.say(format_args!("{}", summary(file, &d.stats)));
        }
    }
    Ok(files)
}

/// Posts the file's sealed catalogue entry (the next version) and records it in `file.json`.
pub async fn publish(s: &Session, repo: &RepoKeys, file: &mut FileManifest) -> Result<()> {
    let mut files = vec![file.clone()];
    let result = publish_all(s, repo, &mut files)
        .await
        .pop()
        .unwrap_or_else(|| Err(anyhow::anyhow!("the catalogue entry was not posted")));
    if let Some(posted) = files.pop() {
        *file = posted;
    }
    result
}

/// Posts the next catalogue entry version of each of `files`, several to a message (7.2), and
/// records each posted one in its `file.json`; per file, done or why not (naming `resume`).
pub async fn publish_all(
    s: &Session,
    repo: &RepoKeys,
    files: &mut [FileManifest],
) -> Vec<Result<()>> {
    let not_posted = |id: &str| {
        format!(
            "{id} is stored, but its catalogue entry could not be posted to Discord for `recover`; run `resume {id}` to post it"
        )
    };
    let mut out: Vec<Option<Result<()>>> = files.iter().map(|_| None).collect();
    // Per channel, the files whose entry goes there and their entries.
    let mut by_channel: std::collections::BTreeMap<u64, Vec<(usize, Entry)>> = Default::default();
    for (i, file) in files.iter().enumerate() {
        let id = &file.id;
        let Some(&channel) = file.channels.first() else {
            out[i] = Some(Err(anyhow::anyhow!("{id} has no channel in its file.json, so its catalogue entry has nowhere to go; `info {id}` shows it")));
            continue;
        };
        let version = file.entry_version.map_or(1, |v| v + 1);
        let entry = Entry::of(file, version);
        match entry.check(&file.channels) {
            Ok(()) => by_channel.entry(channel).or_default().push((i, entry)),
            Err(e) => {
                out[i] = Some(Err(anyhow::anyhow!(
                    "the catalogue entry of {id} was not posted: {e}"
                )))
            }
        }
    }
    if !by_channel.is_empty() {
        let setup = async {
            let store = s.store()?;
            let budget = pack_limit(attachment_limit(s).await? as usize);
            anyhow::Ok((store, budget))
        };
        match setup.await {
            Err(e) => {
                for (i, _) in by_channel.values().flatten() {
                    out[*i] = Some(Err(anyhow::anyhow!("{}: {e:#}", not_posted(&files[*i].id))));
                }
            }
            Ok((store, budget)) => {
                for (channel, batch) in by_channel {
                    let (which, entries): (Vec<usize>, Vec<Entry>) = batch.into_iter().unzip();
                    let results =
                        post_entries(store.as_ref(), &repo.keys, channel, &entries, budget, 0)
                            .await;
                    for ((i, entry), result) in which.into_iter().zip(&entries).zip(results) {
                        let file = &mut files[i];
                        out[i] = Some(match result {
                            Ok(posted) => record(s, file, entry.version, &posted),
                            Err(e) => Err(anyhow::Error::new(e).context(not_posted(&file.id))),
                        });
                    }
                }
            }
        }
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("the catalogue entry was not posted"))))
        .collect()
}

/// Records in `file.json` that the entry `version` of `file` is at `posted`.
fn record(s: &Session, file: &mut FileManifest, version: u64, posted: &Posted) -> Result<()> {
    file.remote_manifest = Some(posted.head);
    file.entry_version = Some(version);
    s.catalog.save_file(file)?;
    tracing::info!(id = %file.id, version, pieces = posted.pieces.len(), "catalogue entry posted");
    Ok(())
}
