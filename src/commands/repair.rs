//! Repairing a complete file whose part records on disk are missing or damaged: the parts are
//! found on Discord by their attachment names (posted by this bot only) and each is kept only
//! when its bytes hash as the file's catalogue entry on Discord says, or, without an entry, as
//! the unchanged source's bytes do.

use anyhow::{anyhow, bail, Result};
use time::OffsetDateTime;

use super::entries::{read_entry, scan_file, Found, Posted};
use super::Session;
use crate::catalog::layout::PartSpan;
use crate::catalog::remote::{uncovered, EntryName, RemoteManifest, Trust};
use crate::catalog::{parse_attachment_name, FileManifest, MessageRef, PartRecord, FORMAT_VERSION};
use crate::hash::sha256_hex;
use crate::store::{BotStore, PartStore, RemotePart};

/// What Discord holds of one file: its parts and entry messages (ours and strangers'), and
/// its entry (the recorded one if it is there and sound, else our newest sound one).
pub struct OnDiscord {
    pub found: Found,
    pub entry: Option<(Posted, RemoteManifest)>,
}

/// Pages through the file's channels once for its parts and entries.
pub async fn look(
    s: &Session,
    store: &BotStore,
    trust: &Trust,
    file: &FileManifest,
) -> Result<OnDiscord> {
    let id = file.id.as_str();
    let wanted = |name: &str| {
        parse_attachment_name(id, name).is_some()
            || EntryName::parse(name).is_some_and(|n| n.id() == id)
    };
    let found = scan_file(s, store, trust, file, &wanted)
        .await
        .map_err(|e| anyhow!("cannot look for {id} on Discord: {e}"))?;
    found.warn_strangers(&format!("part of {id}"));
    let mut heads: Vec<&RemotePart> = found
        .ours
        .iter()
        .filter(|r| matches!(EntryName::parse(&r.filename), Some(EntryName::Head(_))))
        .collect();
    let recorded = file.remote_manifest.map(|r| r.message_id);
    heads.sort_by_key(|r| {
        (
            Some(r.message_id) != recorded,
            std::cmp::Reverse(r.message_id),
        )
    });
    let mut entry = None;
    for head in heads {
        match read_entry(store, trust, head).await {
            Ok(m) => {
                let posted = Posted {
                    head: MessageRef {
                        channel_id: head.channel_id,
                        message_id: head.message_id,
                    },
                    pieces: m
                        .pieces
                        .iter()
                        .map(|p| MessageRef {
                            channel_id: p.channel_id,
                            message_id: p.message_id,
                        })
                        .collect(),
                };
                entry = Some((posted, m));
                break;
            }
            Err(why) => tracing::warn!(
                message = head.message_id,
                "a catalogue entry of {id} cannot be used: {why}"
            ),
        }
    }
    Ok(OnDiscord { found, entry })
}

/// One part to restore: its span and the SHA-256 its bytes must have.
struct Want {
    span: PartSpan,
    sha256: String,
}

/// Restores the records of a complete file's parts that are missing on disk; returns how many.
pub async fn repair(
    s: &Session,
    store: &BotStore,
    file: &FileManifest,
    remote: &OnDiscord,
) -> Result<usize> {
    let id = &file.id;
    let have = s.catalog.load_parts(id)?.parts;
    let gaps = uncovered(&have, file.size);
    if gaps.is_empty() {
        return Ok(0);
    }
    let wants = match &remote.entry {
        Some((_, m)) => from_entry(m, &gaps),
        None => from_source(file, &gaps).await?,
    };
    let mut repaired = 0;
    for want in wants {
        let rec = adopt(store, file, &remote.found, &want).await?.ok_or_else(|| {
            anyhow!(
                "part {} of {id} (bytes {}..{}) is not on Discord as this bot posted it, so {id} cannot be repaired; upload the file again",
                want.span.index,
                want.span.offset,
                want.span.end()
            )
        })?;
        s.catalog.save_part(id, &rec)?;
        repaired += 1;
    }
    let left = uncovered(&s.catalog.load_parts(id)?.parts, file.size);
    if let Some((from, to)) = left.first() {
        bail!("bytes {from}..{to} of {id} have no part on Discord, so it cannot be repaired; upload the file again");
    }
    Ok(repaired)
}

/// The entry's parts that lie in the gaps.
fn from_entry(m: &RemoteManifest, gaps: &[(u64, u64)]) -> Vec<Want> {
    m.parts
        .iter()
        .filter(|p| gaps.iter().any(|&(a, b)| p.offset >= a && p.offset < b))
        .map(|p| Want {
            span: p.span(),
            sha256: p.sha256.clone(),
        })
        .collect()
}

/// Without an entry: the layout's parts in the gaps, hashed from the source, which must be
/// unchanged.
async fn from_source(file: &FileManifest, gaps: &[(u64, u64)]) -> Result<Vec<Want>> {
    let id = &file.id;
    crate::transfer::check_source(file).map_err(|e| {
        anyhow!("{id} has parts without a record and no catalogue entry on Discord to check them against, and its source cannot be used ({e}); upload the file again")
    })?;
    let spans: Vec<PartSpan> = file
        .planned()
        .into_iter()
        .filter(|p| gaps.iter().any(|&(a, b)| p.offset >= a && p.offset < b))
        .collect();
    let mut wants = Vec::new();
    for span in spans {
        let path = file.source_path.clone();
        let bytes = tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut buf = vec![0; span.length as usize];
            std::fs::File::open(&path)
                .and_then(|f| f.read_exact_at(&mut buf, span.offset))
                .map(|()| buf)
        })
        .await?
        .map_err(|e| anyhow!("cannot read {}: {e}", file.source_path.display()))?;
        wants.push(Want {
            span,
            sha256: sha256_hex(&bytes),
        });
    }
    Ok(wants)
}

/// The first of our messages named for this part whose bytes hash as wanted.
async fn adopt(
    store: &BotStore,
    file: &FileManifest,
    found: &Found,
    want: &Want,
) -> Result<Option<PartRecord>> {
    let candidates = found.ours.iter().filter(|r| {
        parse_attachment_name(&file.id, &r.filename) == Some(want.span.index)
            && r.size == want.span.length
    });
    for r in candidates {
        let bytes = store.read_part(r).await?;
        if sha256_hex(&bytes) != want.sha256 {
            tracing::warn!(
                message = r.message_id,
                "a copy of part {} of {} on Discord has other bytes; not adopted",
                want.span.index,
                file.id
            );
            continue;
        }
        return Ok(Some(PartRecord {
            format: FORMAT_VERSION,
            index: want.span.index,
            offset: want.span.offset,
            length: want.span.length,
            sha256: want.sha256.clone(),
            channel_id: r.channel_id,
            message_id: r.message_id,
            attachment_id: r.attachment_id,
            attachment_name: r.filename.clone(),
            uploaded_at: OffsetDateTime::now_utc(),
        }));
    }
    Ok(None)
}
