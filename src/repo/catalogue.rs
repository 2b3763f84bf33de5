//! The sealed catalogue on Discord (docs/format.md 7): posting entries (several to a message,
//! 7.2; a large one as pieces, then its head), finding every entry that counts, for `recover`,
//! and posting again the entries a message holds before that message is deleted.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use time::OffsetDateTime;

use super::crypto::{Keys, ObjectKind};
use super::entry::{self, Entry, EntryError, Opened, Sealed};
use super::snapshot::{self, Snapshot};
use crate::catalog::MessageRef;
use crate::store::{PartStore, PutMessage, RemotePart, StoreError, MAX_ATTACHMENTS};

/// Where a posted entry is: its head, and its pieces (in order).
#[derive(Debug, Clone)]
pub struct Posted {
    pub head: MessageRef,
    pub pieces: Vec<MessageRef>,
}

/// A message's key in maps: `(channel, message)`.
type At = (u64, u64);

fn at(m: &MessageRef) -> At {
    (m.channel_id, m.message_id)
}

fn message_ref(r: &RemotePart) -> MessageRef {
    MessageRef {
        channel_id: r.channel_id,
        message_id: r.message_id,
    }
}

/// A fresh nonce for one message: random, so a message posted again with the same names (and,
/// unencrypted, the same bytes) is never taken by Discord for the first one.
fn fresh_nonce() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

/// Posts `objects` as the attachments of one message in `channel`.
async fn post_message<S: PartStore>(
    store: &S,
    channel_id: u64,
    objects: Vec<Sealed>,
    newer_than: u64,
) -> Result<Vec<RemotePart>, StoreError> {
    store
        .put_parts(PutMessage {
            channel_id,
            nonce: fresh_nonce(),
            attachments: objects
                .into_iter()
                .map(|o| (o.name, Bytes::from(o.bytes)))
                .collect(),
            newer_than,
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
    post_split(store, keys, channel_id, split, 0).await
}

/// Posts a sealed entry alone: each piece its own message, then the head.
async fn post_split<S: PartStore>(
    store: &S,
    keys: &Keys,
    channel_id: u64,
    split: entry::Split,
    newer_than: u64,
) -> Result<Posted, PostError> {
    let mut placed = Vec::new();
    let mut pieces = Vec::new();
    for piece in &split.pieces {
        let r = one(post_message(store, channel_id, vec![piece.clone()], newer_than).await?)?;
        placed.push((r.channel_id, r.message_id, r.attachment_id));
        pieces.push(message_ref(&r));
    }
    let head = split.head(keys, &placed)?;
    let r = one(post_message(store, channel_id, vec![head], newer_than).await?)?;
    Ok(Posted {
        head: message_ref(&r),
        pieces,
    })
}

fn one(mut posted: Vec<RemotePart>) -> Result<RemotePart, StoreError> {
    match (posted.pop(), posted.is_empty()) {
        (Some(r), true) => Ok(r),
        _ => Err(StoreError::Protocol(
            "a message came back with another number of attachments than sent".into(),
        )),
    }
}

/// Posts `entries` to `channel`, several to a message (7.2): each that fits `budget` is sealed
/// whole, and as many as [`MAX_ATTACHMENTS`] whose sizes add up to at most `budget` share one
/// message; one that needs pieces is posted alone, pieces first. Returns, in order, each entry's
/// place or why it was not posted (a failed message fails every entry in it).
pub async fn post_entries<S: PartStore>(
    store: &S,
    keys: &Keys,
    channel_id: u64,
    entries: &[Entry],
    budget: usize,
    newer_than: u64,
) -> Vec<Result<Posted, PostError>> {
    let mut out: Vec<Option<Result<Posted, PostError>>> =
        (0..entries.len()).map(|_| None).collect();
    // Batches of (entry index, sealed entry), filled in order.
    let mut batches: Vec<Vec<(usize, Sealed)>> = Vec::new();
    let mut size = 0usize;
    for (i, e) in entries.iter().enumerate() {
        let split = match entry::seal(keys, e, budget) {
            Ok(split) => split,
            Err(err) => {
                out[i] = Some(Err(err.into()));
                continue;
            }
        };
        if !split.pieces.is_empty() {
            out[i] = Some(post_split(store, keys, channel_id, split, newer_than).await);
            continue;
        }
        let sealed = match split.head(keys, &[]) {
            Ok(sealed) => sealed,
            Err(err) => {
                out[i] = Some(Err(err.into()));
                continue;
            }
        };
        let fits = batches
            .last()
            .is_some_and(|b| b.len() < MAX_ATTACHMENTS && size + sealed.bytes.len() <= budget);
        if !fits {
            batches.push(Vec::new());
            size = 0;
        }
        size += sealed.bytes.len();
        if let Some(b) = batches.last_mut() {
            b.push((i, sealed));
        }
    }
    for batch in batches {
        let (which, objects): (Vec<usize>, Vec<Sealed>) = batch.into_iter().unzip();
        match post_message(store, channel_id, objects, newer_than).await {
            Ok(posted) if posted.len() == which.len() => {
                for (i, r) in which.into_iter().zip(posted) {
                    out[i] = Some(Ok(Posted {
                        head: message_ref(&r),
                        pieces: Vec::new(),
                    }));
                }
            }
            Ok(_) => {
                for i in which {
                    out[i] = Some(Err(PostError::Store(StoreError::Protocol(
                        "a message came back with another number of attachments than sent".into(),
                    ))));
                }
            }
            Err(e) => {
                let why = e.to_string();
                for i in which {
                    out[i] = Some(Err(PostError::Batch(why.clone())));
                }
            }
        }
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(PostError::Batch("it was not posted".into()))))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the catalogue entry cannot be written: {0}")]
    Entry(#[from] EntryError),
    /// The message the entry shared with others failed (the store's error, as text).
    #[error("{0}")]
    Batch(String),
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
    /// Every trusted entry and piece message seen, counting or not (older versions, strays),
    /// once per attachment.
    pub messages: Vec<(MessageRef, String)>,
    /// The catalogue attachments of each trusted message, by name: what else goes when one
    /// entry's message is deleted (7.2).
    pub contents: HashMap<(u64, u64), Vec<String>>,
    /// One line per object that was skipped, saying why.
    pub skipped: Vec<String>,
    /// Per `(folder, seq)`, the synced folder's snapshot that counts (docs/sync.md 2.2).
    pub snapshots: HashMap<(String, u64), FoundSnapshot>,
}

/// A snapshot that counts, where its head and pieces are.
#[derive(Debug, Clone)]
pub struct FoundSnapshot {
    pub snapshot: Snapshot,
    pub head: MessageRef,
    pub posted_at: OffsetDateTime,
    pub pieces: Vec<MessageRef>,
}

impl Scan {
    /// Every pack attachment a snapshot that counts names.
    pub fn snapshot_packs(&self) -> HashSet<u64> {
        self.snapshots
            .values()
            .flat_map(|f| f.snapshot.packs.iter().map(|p| p.attachment_id))
            .collect()
    }
}

/// The attachment names of an entry: its head's, and its pieces' (as many as it has).
fn entry_names(keys: &Keys, e: &Entry, pieces: usize) -> HashSet<String> {
    let mut names = HashSet::from([keys.object_name(ObjectKind::Entry, &e.id, e.version)]);
    for n in 1..=pieces as u64 {
        names.insert(keys.object_name(ObjectKind::Piece, &e.id, (e.version << 32) + n));
    }
    names
}

impl Scan {
    /// The messages holding the entry of `id` that counts (its head, then its pieces), each
    /// with the names of the other catalogue attachments in it (other files' entries and
    /// pieces, older versions).
    pub fn sharing(&self, keys: &Keys, id: &str) -> Vec<(MessageRef, Vec<String>)> {
        let Some(f) = self.entries.get(id) else {
            return Vec::new();
        };
        let own = entry_names(keys, &f.entry, f.pieces.len());
        std::iter::once(f.head)
            .chain(f.pieces.iter().copied())
            .map(|m| {
                let others = self
                    .contents
                    .get(&at(&m))
                    .into_iter()
                    .flatten()
                    .filter(|n| !own.contains(*n))
                    .cloned()
                    .collect();
                (m, others)
            })
            .collect()
    }

    /// Before the messages `doomed` are deleted (7.2): every entry that counts with its head
    /// or a piece in one of them, except the entry of `except`, is posted again (same
    /// version, several to a message) in `channel`. The scan then reports them at their new
    /// places. Returns them, by file ID; on an error nothing may be deleted yet.
    pub async fn repost_sharers<S: PartStore>(
        &mut self,
        store: &S,
        keys: &Keys,
        channel_id: u64,
        budget: usize,
        doomed: &[MessageRef],
        except: &str,
    ) -> Result<Vec<(String, Posted)>, PostError> {
        let doomed_at: HashSet<At> = doomed.iter().map(at).collect();
        let mut ids: Vec<String> = self
            .entries
            .iter()
            .filter(|(id, f)| {
                id.as_str() != except
                    && std::iter::once(&f.head)
                        .chain(&f.pieces)
                        .any(|m| doomed_at.contains(&at(m)))
            })
            .map(|(id, _)| id.clone())
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        ids.sort();
        let list: Vec<Entry> = ids
            .iter()
            .map(|id| Entry {
                pieces: Vec::new(),
                ..self.entries[id].entry.clone()
            })
            .collect();
        let newer_than = doomed.iter().map(|m| m.message_id).max().unwrap_or(0);
        let results = post_entries(store, keys, channel_id, &list, budget, newer_than).await;
        let now = OffsetDateTime::now_utc();
        let mut reposted = Vec::with_capacity(ids.len());
        let mut failed = None;
        for ((id, e), result) in ids.into_iter().zip(&list).zip(results) {
            let posted = match result {
                Ok(p) => p,
                Err(err) => {
                    failed.get_or_insert(err);
                    continue;
                }
            };
            self.note_posted(keys, e, &posted, now);
            tracing::info!(id = %id, version = e.version, "catalogue entry posted again before its message goes");
            reposted.push((id, posted));
        }
        match failed {
            Some(err) => Err(err),
            None => Ok(reposted),
        }
    }

    /// Records that `e` (whole: its chunk list, not a head's piece list) now counts at `posted`.
    pub fn note_posted(&mut self, keys: &Keys, e: &Entry, posted: &Posted, now: OffsetDateTime) {
        let piece_names = (1..=posted.pieces.len() as u64)
            .map(|n| keys.object_name(ObjectKind::Piece, &e.id, (e.version << 32) + n));
        let head_name = keys.object_name(ObjectKind::Entry, &e.id, e.version);
        for (m, name) in std::iter::once((posted.head, head_name))
            .chain(posted.pieces.iter().copied().zip(piece_names))
        {
            self.contents.entry(at(&m)).or_default().push(name.clone());
            self.messages.push((m, name));
        }
        self.entries.insert(
            e.id.clone(),
            Found {
                entry: e.clone(),
                head: posted.head,
                posted_at: now,
                pieces: posted.pieces.clone(),
            },
        );
    }

    /// Forgets the messages `gone` (deleted). An entry whose head or piece was in one no
    /// longer counts anywhere this scan knows.
    pub fn forget(&mut self, gone: &[MessageRef]) {
        let gone: HashSet<At> = gone.iter().map(at).collect();
        self.messages.retain(|(m, _)| !gone.contains(&at(m)));
        self.contents.retain(|m, _| !gone.contains(m));
        self.entries.retain(|_, f| {
            !std::iter::once(&f.head)
                .chain(&f.pieces)
                .any(|m| gone.contains(&at(m)))
        });
    }
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
            Some(ObjectKind::Entry) | Some(ObjectKind::Piece) | Some(ObjectKind::Snapshot)
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
            if keys.name_kind(&part.filename) == Some(ObjectKind::Snapshot) {
                scan_snapshot(store, keys, channels, &part, &mut out).await?;
                continue;
            }
            out.messages.push((at, part.filename.clone()));
            out.contents
                .entry((at.channel_id, at.message_id))
                .or_default()
                .push(part.filename.clone());
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
                // Equal versions are one entry posted again (7.2): the newest message counts.
                Some(have)
                    if (have.entry.version, have.posted_at, have.head.message_id)
                        >= (
                            candidate.entry.version,
                            candidate.posted_at,
                            candidate.head.message_id,
                        ) => {}
                _ => {
                    out.entries.insert(candidate.entry.id.clone(), candidate);
                }
            }
        }
    }
    Ok(out)
}

/// Opens and checks one trusted snapshot head, joins its pieces, and keeps it when it counts.
async fn scan_snapshot<S: PartStore>(
    store: &S,
    keys: &Keys,
    channels: &[u64],
    part: &RemotePart,
    out: &mut Scan,
) -> Result<(), StoreError> {
    let bytes = store.read_part(part).await?;
    let skip = |why: String| {
        format!(
            "the snapshot in message {} was skipped: {why}",
            part.message_id
        )
    };
    let head = match snapshot::open(keys, &bytes) {
        Ok(snapshot::Opened::Snapshot(s)) => s,
        Ok(snapshot::Opened::Piece(_)) => {
            out.skipped
                .push(skip("it is a piece under a snapshot's name".into()));
            return Ok(());
        }
        Err(e) => {
            out.skipped.push(skip(e.to_string()));
            return Ok(());
        }
    };
    if head.object_name(keys) != part.filename {
        out.skipped
            .push(skip("its name is not the one its contents give".into()));
        return Ok(());
    }
    let mut pieces = Vec::new();
    let mut at = Vec::new();
    for (n, p) in head.pieces.iter().enumerate() {
        if !channels.contains(&p.channel_id) {
            out.skipped.push(skip(format!(
                "piece {} is in a channel that is not configured",
                n + 1
            )));
            return Ok(());
        }
        let fetched = match store
            .locate_part(p.channel_id, p.message_id, p.attachment_id)
            .await
        {
            Ok(r) => store.read_part(&r).await,
            Err(e) => Err(e),
        };
        let bytes = match fetched {
            Ok(b) => b,
            Err(e) => {
                out.skipped
                    .push(skip(format!("piece {} cannot be fetched ({e})", n + 1)));
                return Ok(());
            }
        };
        if crate::hash::sha256_hex(&bytes) != p.sha256 {
            out.skipped.push(skip(format!(
                "piece {} is not the one its head lists",
                n + 1
            )));
            return Ok(());
        }
        match snapshot::open(keys, &bytes) {
            Ok(snapshot::Opened::Piece(piece)) => pieces.push(piece),
            Ok(snapshot::Opened::Snapshot(_)) => {
                out.skipped
                    .push(skip(format!("piece {} is a snapshot", n + 1)));
                return Ok(());
            }
            Err(e) => {
                out.skipped.push(skip(format!("piece {}: {e}", n + 1)));
                return Ok(());
            }
        }
        at.push(MessageRef {
            channel_id: p.channel_id,
            message_id: p.message_id,
        });
    }
    let whole = match snapshot::join(head, pieces) {
        Ok(w) => w,
        Err(e) => {
            out.skipped.push(skip(e.to_string()));
            return Ok(());
        }
    };
    if let Err(e) = whole.check(channels) {
        out.skipped.push(skip(e.to_string()));
        return Ok(());
    }
    let key = (whole.folder.clone(), whole.seq);
    let candidate = FoundSnapshot {
        snapshot: whole,
        head: MessageRef {
            channel_id: part.channel_id,
            message_id: part.message_id,
        },
        posted_at: part.posted_at,
        pieces: at,
    };
    match out.snapshots.get(&key) {
        // The same seq posted again (a round re-run after a crash): the newest message counts.
        Some(have)
            if (have.posted_at, have.head.message_id)
                >= (candidate.posted_at, candidate.head.message_id) => {}
        _ => {
            out.snapshots.insert(key, candidate);
        }
    }
    Ok(())
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

/// Every pack in `channels` posted by an author in `trusted` (listed, not downloaded).
pub async fn list_packs<S: PartStore>(
    store: &S,
    keys: &Keys,
    channels: &[u64],
    trusted: &[u64],
) -> Result<Vec<RemotePart>, StoreError> {
    let is_pack = |name: &str| keys.name_kind(name) == Some(ObjectKind::Pack);
    let mut packs = Vec::new();
    for &channel in channels {
        for p in store
            .find_parts(channel, &is_pack, OffsetDateTime::UNIX_EPOCH)
            .await?
        {
            if trusted.contains(&p.author_id) {
                packs.push(p);
            }
        }
    }
    Ok(packs)
}
