//! Adopting parts that reached Discord but were never recorded (the process died between
//! Discord's reply and the part manifest): found by their unique attachment name, placed by the
//! file's layout, and kept only when their bytes hash like the source's.

use std::collections::HashSet;
use std::fs::File;

use time::{Duration, OffsetDateTime};

use super::reader::read_span;
use super::UploadError;
use crate::catalog::{parse_attachment_name, Catalog, FileManifest, PartRecord, FORMAT_VERSION};
use crate::hash::sha256_hex;
use crate::store::PartStore;

/// Looks for unrecorded parts of `file` on Discord, verifies and records them; returns how
/// many were adopted.
pub async fn adopt_orphans<S: PartStore>(
    store: &S,
    catalog: &Catalog,
    file: &FileManifest,
    stored: &mut Vec<PartRecord>,
) -> Result<usize, UploadError> {
    let known: HashSet<u64> = stored.iter().map(|p| p.index).collect();
    // A part the plan no longer uses (one cut short by a shrink, whose bytes newer parts
    // cover) is passed over: adopting it would overlap them.
    let planned: HashSet<u64> = file.planned().iter().map(|s| s.index).collect();
    // Allow for clock skew between this machine and Discord.
    let since = file
        .created_at
        .checked_sub(Duration::minutes(10))
        .unwrap_or(file.created_at);
    let mut channels = file.channels.clone();
    channels.sort_unstable();
    channels.dedup();
    let is_part = |name: &str| parse_attachment_name(&file.id, name).is_some();
    let mut adopted = 0;
    let mut seen = HashSet::new();
    let trusted = store.trusted_authors().await?;
    for channel in channels {
        for remote in store.find_parts(channel, &is_part, since).await? {
            if !trusted.contains(&remote.author_id) {
                tracing::warn!(
                    message = remote.message_id,
                    "{} in channel {channel} was not posted by this bot; not adopted",
                    remote.filename
                );
                continue;
            }
            let Some(index) = parse_attachment_name(&file.id, &remote.filename) else {
                continue;
            };
            let Some(span) = file.span(index).filter(|s| planned.contains(&s.index)) else {
                continue;
            };
            if known.contains(&index) || remote.size != span.length || !seen.insert(index) {
                continue;
            }
            let path = file.source_path.clone();
            let local = tokio::task::spawn_blocking(move || {
                File::open(&path).and_then(|mut f| read_span(&mut f, span))
            })
            .await
            .map_err(|j| UploadError::Internal(format!("the source reader failed: {j}")))?
            .map_err(|e| UploadError::source(&file.source_path, e))?;
            let sha256 = sha256_hex(&local);
            let remote_bytes = store.read_part(&remote).await?;
            if sha256_hex(&remote_bytes) != sha256 {
                seen.remove(&index);
                tracing::warn!(
                    "part {index} found on Discord differs from the source; uploading it again"
                );
                continue;
            }
            let rec = PartRecord {
                format: FORMAT_VERSION,
                index,
                offset: span.offset,
                length: span.length,
                sha256,
                channel_id: remote.channel_id,
                message_id: remote.message_id,
                attachment_id: remote.attachment_id,
                attachment_name: remote.filename.clone(),
                uploaded_at: OffsetDateTime::now_utc(),
            };
            catalog.save_part(&file.id, &rec)?;
            stored.push(rec);
            adopted += 1;
        }
    }
    Ok(adopted)
}
