//! The sealed catalogue on Discord (docs/format.md 7): posting a file's entry (pieces first,
//! then the head), and finding every entry that counts, for `recover`.

use std::collections::HashMap;

use time::OffsetDateTime;

use super::crypto::{Keys, ObjectKind};
use super::entry::{self, Entry, EntryError, Opened, Sealed};
use crate::catalog::MessageRef;
use crate::store::{PartStore, PutPart, RemotePart, StoreError};

/// Where a posted entry is: its head, and its pieces (in order).
#[derive(Debug, Clone)]
pub struct Posted {
    pub head: MessageRef,
    pub pieces: Vec<MessageRef>,
}

async fn post<S: PartStore>(
    store: &S,
    channel_id: u64,
    sealed: Sealed,
) -> Result<RemotePart, StoreError> {
    let nonce = sealed.name.chars().take(25).collect();
    store
        .put_part(PutPart {
            channel_id,
            filename: sealed.name,
            nonce,
            data: sealed.bytes.into(),
            reload: None,
        })
        .await
}

/// Posts `entry` to `channel`, split into pieces when its sealed form exceeds `budget`.
pub async fn post_entry<S: PartStore>(
    store: &S,
    keys: &Keys,
    channel_id: u64,
    entry: &Entry,
    budget: usize,
) -> Result<Posted, PostError> {
    let split = entry::seal(keys, entry, budget)?;
    let mut placed = Vec::new();
    let mut pieces = Vec::new();
    for piece in &split.pieces {
        let r = post(store, channel_id, piece.clone()).await?;
        placed.push((r.channel_id, r.message_id, r.attachment_id));
        pieces.push(MessageRef {
            channel_id: r.channel_id,
            message_id: r.message_id,
        });
    }
    let head = split.head(keys, &placed)?;
    let r = post(store, channel_id, head).await?;
    Ok(Posted {
        head: MessageRef {
            channel_id: r.channel_id,
            message_id: r.message_id,
        },
        pieces,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the catalogue entry cannot be written: {0}")]
    Entry(#[from] EntryError),
}

/// An entry that counts, where its head is.
#[derive(Debug, Clone)]
pub struct Found {
    pub entry: Entry,
    pub head: MessageRef,
    pub posted_at: OffsetDateTime,
    pub pieces: Vec<MessageRef>,
}

/// What a scan of the channels found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Per file ID, the entry that counts (highest version; newest message among equals).
    pub entries: HashMap<String, Found>,
    /// Every trusted entry and piece message seen, counting or not (older versions, strays).
    pub messages: Vec<(MessageRef, String)>,
    /// One line per object that was skipped, saying why.
    pub skipped: Vec<String>,
}

/// Finds every catalogue entry in `channels` by an author in `trusted`, opens and checks it,
/// and keeps the one that counts per file.
pub async fn scan<S: PartStore>(
    store: &S,
    keys: &Keys,
    channels: &[u64],
    trusted: &[u64],
) -> Result<Scan, StoreError> {
    let mut out = Scan::default();
    let wanted = |name: &str| {
        matches!(
            keys.name_kind(name),
            Some(ObjectKind::Entry) | Some(ObjectKind::Piece)
        )
    };
    for &channel in channels {
        let found = store
            .find_parts(channel, &wanted, OffsetDateTime::UNIX_EPOCH)
            .await?;
        for part in found {
            let at = MessageRef {
                channel_id: part.channel_id,
                message_id: part.message_id,
            };
            if !trusted.contains(&part.author_id) {
                out.skipped.push(format!(
                    "{} in message {} was posted by someone other than this bot; ignored",
                    part.filename, part.message_id
                ));
                continue;
            }
            out.messages.push((at, part.filename.clone()));
            if keys.name_kind(&part.filename) != Some(ObjectKind::Entry) {
                continue;
            }
            let bytes = store.read_part(&part).await?;
            let skip = |why: String| {
                format!(
                    "the catalogue entry in message {} was skipped: {why}",
                    part.message_id
                )
            };
            let head = match entry::open(keys, &bytes) {
                Ok(Opened::Entry(e)) => e,
                Ok(Opened::Piece(_)) => {
                    out.skipped
                        .push(skip("it is a piece under an entry's name".into()));
                    continue;
                }
                Err(e) => {
                    out.skipped.push(skip(e.to_string()));
                    continue;
                }
            };
            if keys.object_name(ObjectKind::Entry, &head.id, head.version) != part.filename {
                out.skipped
                    .push(skip("its name is not the one its contents give".into()));
                continue;
            }
            let (whole, pieces) = match join_pieces(store, keys, head, channels).await {
                Ok(j) => j,
                Err(why) => {
                    out.skipped.push(skip(why));
                    continue;
                }
            };
            if let Err(e) = whole.check(channels) {
                out.skipped.push(skip(e.to_string()));
                continue;
            }
            let candidate = Found {
                entry: whole,
                head: at,
                posted_at: part.posted_at,
                pieces,
            };
            match out.entries.get(&candidate.entry.id) {
                Some(have)
                    if (have.entry.version, have.posted_at)
                        >= (candidate.entry.version, candidate.posted_at) => {}
                _ => {
                    out.entries.insert(candidate.entry.id.clone(), candidate);
                }
            }
        }
    }
    Ok(out)
}

/// Fetches and joins the pieces a head lists (by message, never by name).
async fn join_pieces<S: PartStore>(
    store: &S,
    keys: &Keys,
    head: Entry,
    channels: &[u64],
) -> Result<(Entry, Vec<MessageRef>), String> {
    if head.pieces.is_empty() {
        return Ok((head, Vec::new()));
    }
    let mut pieces = Vec::new();
    let mut at = Vec::new();
    for (n, p) in head.pieces.iter().enumerate() {
        if !channels.contains(&p.channel_id) {
            return Err(format!(
                "piece {} is in a channel that is not configured",
                n + 1
            ));
        }
        let part = store
            .locate_part(p.channel_id, p.message_id, p.attachment_id)
            .await
            .map_err(|e| format!("piece {} cannot be fetched ({e})", n + 1))?;
        let bytes = store
            .read_part(&part)
            .await
            .map_err(|e| format!("piece {} cannot be fetched ({e})", n + 1))?;
        if crate::hash::sha256_hex(&bytes) != p.sha256 {
            return Err(format!("piece {} is not the one its head lists", n + 1));
        }
        match entry::open(keys, &bytes) {
            Ok(Opened::Piece(piece)) => pieces.push(piece),
            Ok(Opened::Entry(_)) => return Err(format!("piece {} is an entry", n + 1)),
            Err(e) => return Err(format!("piece {}: {e}", n + 1)),
        }
        at.push(MessageRef {
            channel_id: p.channel_id,
            message_id: p.message_id,
        });
    }
    let whole = entry::join(head, pieces).map_err(|e| e.to_string())?;
    Ok((whole, at))
}
