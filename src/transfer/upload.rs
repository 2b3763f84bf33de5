//! The upload pipeline: posts every pending part with bounded concurrency, records each part
//! the moment Discord confirms it, shrinks the part size on 413 and carries on, and marks the
//! file complete once every byte is stored and the whole-file hash is known.

use std::collections::HashSet;
use std::sync::Arc;

use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::reader::{self, Item, Job};
use super::source::{check_source, check_unchanged};
use super::UploadError;
use crate::catalog::{
    attachment_name, layout, Catalog, FileManifest, PartRecord, Status, FORMAT_VERSION,
};
use crate::progress::Progress;
use crate::store::{PartStore, PutPart, Reload, StoreError};

/// Per-file limits by boost tier, largest first (discord-api.md §1.1): after a 413, the next
/// smaller one is tried before halving.
const TIER_LIMITS: [u64; 3] = [104_857_600, 52_428_800, 10_485_760];
/// Below this a 413 is not a size problem dstore can work around.
const MIN_PART: u64 = 1024;

pub struct UploadCtx<S> {
    pub store: Arc<S>,
    pub catalog: Catalog,
    pub concurrency: usize,
    pub cancel: CancellationToken,
}

/// Uploads every part of `file` not in `stored`, until the file is complete.
pub async fn run_upload<S: PartStore>(
    ctx: &UploadCtx<S>,
    mut file: FileManifest,
    mut stored: Vec<PartRecord>,
    progress: &Progress,
) -> Result<FileManifest, UploadError> {
    let began = check_source(&file)?;
    loop {
        check_unchanged(&file.source_path, &began)?;
        let items = items(&file, &stored)?;
        let total = items.len() as u64;
        progress.set_parts(stored.len() as u64, total);
        progress.set_position(stored.iter().map(|p| p.length).sum());
        match round(ctx, &file, items, &mut stored, progress).await? {
            RoundEnd::Complete(sha) => {
                // Every byte was read in this run: if the source moved meanwhile, the parts and
                // the hash mix old and new bytes, a file that never existed.
                check_unchanged(&file.source_path, &began)?;
                file.sha256 = Some(sha);
                file.status = Status::Complete;
                file.updated_at = OffsetDateTime::now_utc();
                ctx.catalog.save_file(&file)?;
                progress.finish();
                return Ok(file);
            }
            RoundEnd::Shrink(refused) => {
                let smaller = smaller_part(refused).ok_or(UploadError::CannotShrink(refused))?;
                tracing::warn!(
                    "Discord refused a part of {refused} bytes (413); continuing with parts of {smaller} bytes"
                );
                let spans: Vec<(u64, u64)> = stored.iter().map(|p| (p.offset, p.length)).collect();
                file.layout = layout::relayout(&file.layout, &spans, file.size, smaller);
                file.part_size = smaller;
                file.updated_at = OffsetDateTime::now_utc();
                ctx.catalog.save_file(&file)?;
            }
        }
    }
}

/// The part size to try after a part of `refused` bytes was too large.
fn smaller_part(refused: u64) -> Option<u64> {
    if let Some(tier) = TIER_LIMITS
        .iter()
        .find(|t| **t < refused && refused > TIER_LIMITS[2])
    {
        return Some(*tier);
    }
    (refused > MIN_PART).then_some(refused / 2)
}

/// Stored parts and pending parts of the layout, in offset order, checked to tile the file.
fn items(file: &FileManifest, stored: &[PartRecord]) -> Result<Vec<Item>, UploadError> {
    if let Some(problem) = layout::problem(&file.layout, file.size) {
        return Err(UploadError::Inconsistent(problem));
    }
    if file.channels.is_empty() {
        return Err(UploadError::Inconsistent(
            "file.json names no channel to store parts in".into(),
        ));
    }
    let done: HashSet<u64> = stored.iter().map(|p| p.index).collect();
    let mut items: Vec<Item> = stored
        .iter()
        .map(|p| Item::Stored(p.span(), p.sha256.clone()))
        .chain(
            file.planned()
                .into_iter()
                .filter(|s| !done.contains(&s.index))
                .map(Item::Pending),
        )
        .collect();
    items.sort_by_key(|i| i.span().offset);
    let mut at = 0;
    for i in &items {
        let s = i.span();
        // A hand-edited layout must not make the reader hold more than Discord's largest part.
        if s.offset != at || s.length == 0 || s.length > TIER_LIMITS[0] {
            return Err(UploadError::Inconsistent(format!(
                "part {} starts at byte {}, expected {at}",
                s.index, s.offset
            )));
        }
        at = s.end();
    }
    if at != file.size {
        return Err(UploadError::Inconsistent(format!(
            "parts end at byte {at}, the file at {}",
            file.size
        )));
    }
    Ok(items)
}

enum RoundEnd {
    Complete(String),
    /// A part of this many bytes was refused as too large; the rest of this round was drained.
    Shrink(u64),
}

/// One pass over the file with the current layout.
async fn round<S: PartStore>(
    ctx: &UploadCtx<S>,
    file: &FileManifest,
    items: Vec<Item>,
    stored: &mut Vec<PartRecord>,
    progress: &Progress,
) -> Result<RoundEnd, UploadError> {
    let (tx, mut rx) = mpsc::channel::<Job>(1);
    let reader = reader::spawn(
        file.source_path.clone(),
        items,
        tx,
        ctx.cancel.child_token(),
    );
    let mut inflight: JoinSet<Result<PartRecord, UploadError>> = JoinSet::new();
    let mut reading = true;
    let mut refused: Option<u64> = None;
    let mut failure: Option<UploadError> = None;
    while reading || !inflight.is_empty() {
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => {
                inflight.abort_all();
                return Err(UploadError::Cancelled);
            }
            Some(joined) = inflight.join_next(), if !inflight.is_empty() => {
                let err = match joined {
                    Ok(Ok(rec)) => {
                        progress.part_done(rec.length);
                        stored.push(rec);
                        continue;
                    }
                    Ok(Err(UploadError::Store(StoreError::PartTooLarge { size }))) => {
                        refused = Some(refused.map_or(size, |r| r.min(size)));
                        reading = false;
                        continue;
                    }
                    Ok(Err(e)) => e,
                    // Aborted after a fatal error: if Discord kept the part, `resume` finds it
                    // by its attachment name.
                    Err(j) if j.is_cancelled() => continue,
                    Err(j) => UploadError::Internal(format!("a part upload failed: {j}")),
                };
                if err.is_fatal() {
                    inflight.abort_all();
                }
                failure.get_or_insert(err);
                reading = false;
            }
            job = rx.recv(), if reading && inflight.len() < ctx.concurrency => match job {
                Some(job) => { inflight.spawn(post_part(ctx.store.clone(), ctx.catalog.clone(), file, job)); }
                None => reading = false,
            },
        }
    }
    drop(rx);
    let whole = reader
        .await
        .map_err(|j| UploadError::Internal(format!("the source reader failed: {j}")))?;
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some(size) = refused {
        return Ok(RoundEnd::Shrink(size));
    }
    match whole? {
        Some(sha) => Ok(RoundEnd::Complete(sha)),
        None => Err(UploadError::Cancelled),
    }
}

/// Posts one part and writes its manifest as soon as Discord has confirmed it.
fn post_part<S: PartStore>(
    store: Arc<S>,
    catalog: Catalog,
    file: &FileManifest,
    job: Job,
) -> impl std::future::Future<Output = Result<PartRecord, UploadError>> + Send + 'static {
    let id = file.id.clone();
    let channel_id = file.channel_for(job.span.index);
    let reload = Reload {
        path: file.source_path.clone(),
        offset: job.span.offset,
        length: job.span.length,
        sha256: job.sha256.clone(),
    };
    async move {
        let channel_id = channel_id.ok_or_else(|| {
            UploadError::Inconsistent("file.json names no channel to store parts in".into())
        })?;
        let name = attachment_name(&id, job.span.index);
        let remote = store
            .put_part(PutPart {
                channel_id,
                filename: name.clone(),
                nonce: format!("{id}.{}", job.span.index),
                data: job.data,
                reload: Some(reload),
            })
            .await?;
        let rec = PartRecord {
            format: FORMAT_VERSION,
            index: job.span.index,
            offset: job.span.offset,
            length: job.span.length,
            sha256: job.sha256,
            channel_id: remote.channel_id,
            message_id: remote.message_id,
            attachment_id: remote.attachment_id,
            attachment_name: name,
            uploaded_at: OffsetDateTime::now_utc(),
        };
        let (c, r) = (catalog, rec.clone());
        tokio::task::spawn_blocking(move || c.save_part(&id, &r))
            .await
            .map_err(|j| {
                UploadError::Internal(format!("the part manifest writer failed: {j}"))
            })??;
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinking_walks_the_tiers_then_halves() {
        assert_eq!(smaller_part(104_857_600), Some(52_428_800));
        assert_eq!(smaller_part(60_000_000), Some(52_428_800));
        assert_eq!(smaller_part(52_428_800), Some(10_485_760));
        assert_eq!(smaller_part(10_485_760), Some(5_242_880));
        assert_eq!(smaller_part(4096), Some(2048));
        assert_eq!(smaller_part(1024), None);
    }
}
