//! One sync round (docs/sync.md 3): walk the folder, take unchanged files from the state, read
//! the others, pack the new chunks of all of them together into the round's packs (each recorded
//! the moment Discord confirms it), then post one snapshot of the whole tree.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::walk::{walk, Item, Skipped};
use super::{Folder, Folders, Local, Seen, State, LOCAL_FORMAT};
use crate::catalog::{Catalog, ChunkRef, MessageRef, PackChunk, PackRecord, PackRef, FORMAT_V2};
use crate::repo::chunker::{Chunker, ChunkerParams};
use crate::repo::crypto::{ChunkId, Keys, ObjectKind, PACK_ID_LEN};
use crate::repo::index::ChunkIndex;
use crate::repo::pack::{pack_limit, PackEntry, PackWriter};
use crate::repo::snapshot::{self, Kind, Node, Snapshot, SNAPSHOT_FORMAT};
use crate::store::lanes::Scheduler;
use crate::store::{Lane, PartStore, PutMessage, PutPart, StoreError};

/// What a round runs with.
pub struct Ctx<S> {
    pub store: Arc<S>,
    pub catalog: Catalog,
    pub folders: Folders,
    pub keys: Keys,
    pub chunker: ChunkerParams,
    /// The configured channels; the first holds snapshots.
    pub channels: Vec<u64>,
    /// The largest attachment every channel accepts (the part size in force).
    pub attachment_limit: u64,
    pub concurrency: usize,
    /// The data dir, never synced even when inside the folder.
    pub data_dir: PathBuf,
    pub host: String,
    pub cancel: CancellationToken,
}

/// What a round did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    /// Files new, changed and deleted against the previous snapshot; files read.
    pub new: usize,
    pub changed: usize,
    pub deleted: usize,
    pub read: usize,
    /// Files, folders and links in the snapshot.
    pub files: usize,
    pub dirs: usize,
    /// Packs posted and their bytes; chunks sent.
    pub packs: u64,
    pub pack_bytes: u64,
    pub chunks_sent: u64,
    /// The snapshot posted, `None` when the tree was as the previous snapshot says.
    pub snapshot: Option<u64>,
    /// Messages posted (packs, snapshot and its pieces).
    pub messages: u64,
    /// Paths left out this round, and why (changing while read, unreadable).
    pub skipped: Vec<Skipped>,
}

impl Report {
    /// One line for people.
    pub fn line(&self, name: &str) -> String {
        use crate::render::{human_bytes, plural};
        let what = match self.snapshot {
            Some(seq) => format!("snapshot {seq} posted"),
            None => "nothing changed".into(),
        };
        let mut line = format!(
            "{name}: {what}; {} new, {} changed, {} deleted; {} sent in {} ({}).",
            self.new,
            self.changed,
            self.deleted,
            human_bytes(self.pack_bytes),
            plural(self.packs, "pack"),
            plural(self.messages, "message"),
        );
        if !self.skipped.is_empty() {
            line.push_str(&format!(
                " {} left for the next round: {}.",
                plural(self.skipped.len() as u64, "path"),
                self.skipped
                    .iter()
                    .take(3)
                    .map(|s| format!("{} ({})", s.path, s.why))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        line
    }
}

/// A finished pack on its way from the packer to the poster.
struct PackJob {
    index: u64,
    bytes: Bytes,
    pack_id: [u8; PACK_ID_LEN],
    chunks: Vec<PackChunk>,
}

/// A file the packer read whole.
struct ReadFile {
    path: String,
    sha256: String,
    size: u64,
    ids: Vec<ChunkId>,
}

/// What the packer thread gives back.
struct Packed {
    files: Vec<ReadFile>,
    unstable: Vec<Skipped>,
    chunks_sent: u64,
}

/// Runs one round over `folder`.
pub async fn round<S: PartStore>(ctx: &Ctx<S>, folder: &Folder) -> Result<Report> {
    if folder.root.is_empty() {
        bail!(
            "folder {} ({}) was synced on another machine; restore it here, or sync a local folder",
            folder.id,
            folder.name
        );
    }
    let root = PathBuf::from(&folder.root);
    if !root.is_dir() {
        bail!("{} is not a folder (any more)", root.display());
    }
    let Some(&first_channel) = ctx.channels.first() else {
        bail!("no channel is configured");
    };
    let _lock = ctx.folders.lock(&folder.id)?;
    let mut report = Report::default();
    let state = ctx.folders.state(&folder.id)?;
    let prev = ctx.folders.latest(&folder.id)?;
    let prev_snap = prev.as_ref().map(|l| &l.snapshot);
    let began = OffsetDateTime::now_utc();
    let (data_dir, root2) = (ctx.data_dir.clone(), root.clone());
    let (items, skipped) = tokio::task::spawn_blocking(move || walk(&root2, &data_dir))
        .await
        .map_err(|e| anyhow!("the folder walk failed: {e}"))?;
    report.skipped = skipped;

    // Unchanged files: same size, mtime and inode as the state's snapshot records.
    let prev_state_snap = if state.seq != 0 {
        ctx.folders.snapshot(&folder.id, state.seq)?
    } else {
        None
    };
    let mut reuse: HashMap<String, (Node, Vec<ChunkId>, Vec<PackRef>)> = HashMap::new();
    let mut to_read: Vec<Item> = Vec::new();
    for it in items.iter().filter(|i| i.kind == Kind::File) {
        let seen = state.files.get(&it.path);
        let old = prev_state_snap
            .as_ref()
            .and_then(|l| l.snapshot.node(&it.path).map(|n| (n, &l.snapshot.packs)));
        match (seen, old) {
            (Some(s), Some((n, packs)))
                if s.size == it.size
                    && s.mtime_ns == it.mtime_ns()
                    && s.inode == it.inode
                    && n.kind == Kind::File
                    && n.size == Some(it.size) =>
            {
                let refs: Vec<PackRef> = n
                    .chunks
                    .iter()
                    .map(|c| packs[c.pack as usize].clone())
                    .collect();
                let ids = n.chunks.iter().map(|c| c.id).collect();
                reuse.insert(it.path.clone(), (n.clone(), ids, refs));
            }
            _ => to_read.push(it.clone()),
        }
    }
    report.read = to_read.len();

    // Packs a killed round posted but could not record are adopted first (docs/sync.md 3).
    if !to_read.is_empty() {
        let adopted = adopt_orphans(ctx, &folder.id).await?;
        if adopted > 0 {
            tracing::info!(folder = %folder.id, adopted, "adopted packs a killed round posted");
        }
    }
    // The index: every chunk this machine knows to be stored.
    let mut index = ChunkIndex::build(&ctx.catalog)?;
    ctx.folders.add_to_index(&mut index)?;
    let round_id = crate::catalog::new_file_id();
    let limit = pack_limit(ctx.attachment_limit as usize);
    let needed = ctx.chunker.max as usize
        + 2 * ctx.keys.overhead()
        + crate::repo::pack::HEADER_FIXED
        + crate::repo::pack::ENTRY_LEN
        + crate::repo::pack::TRAILER_LEN;
    if limit < needed {
        bail!(
            "a pack may be {limit} bytes here (the part size in force less 64 KiB), but the largest chunk needs {needed}; raise part_size or leave it on auto"
        );
    }
    let mut own: HashSet<[u8; PACK_ID_LEN]> = HashSet::new();
    let mut read_files: HashMap<String, ReadFile> = HashMap::new();
    let mut unstable: Vec<Skipped> = Vec::new();
    let mut next_pack = 0u64;
    let mut began_round = false;
    let mut pending = to_read.clone();
    let mut checked: HashSet<[u8; PACK_ID_LEN]> = prev_snap
        .map(|s| s.packs.iter().map(|p| p.pack_id).collect())
        .unwrap_or_default();
    for attempt in 0..3 {
        if !pending.is_empty() {
            if !began_round {
                ctx.folders.begin_round(&folder.id, &round_id)?;
                began_round = true;
            }
            let packed = pack_files(
                ctx,
                &folder.id,
                &round_id,
                &mut next_pack,
                limit,
                std::mem::take(&mut pending),
                &mut index,
                &mut own,
                &mut report,
            )
            .await?;
            report.chunks_sent += packed.chunks_sent;
            unstable.extend(packed.unstable);
            for f in packed.files {
                read_files.insert(f.path.clone(), f);
            }
        }
        // Packs named for the first time, posted by someone else: still there?
        let mut fresh: Vec<PackRef> = Vec::new();
        for f in read_files.values() {
            for id in &f.ids {
                let Some((p, _)) = index.get(id) else {
                    bail!(
                        "chunk {} of {} was neither stored nor found in the index",
                        hex::encode(id),
                        f.path
                    );
                };
                if !own.contains(&p.pack_id) && checked.insert(p.pack_id) {
                    fresh.push(p.clone());
                }
            }
        }
        let mut gone = HashSet::new();
        for p in fresh {
            match ctx
                .store
                .locate_part(p.channel_id, p.message_id, p.attachment_id)
                .await
            {
                Ok(r) if r.size == p.size => {}
                Ok(_)
                | Err(StoreError::UnknownMessage { .. })
                | Err(StoreError::NotByWebhooks { .. })
                | Err(StoreError::ContentGone) => {
                    index.remove_pack(&p.pack_id);
                    checked.remove(&p.pack_id);
                    gone.insert(p.pack_id);
                }
                Err(e) => return Err(e.into()),
            }
        }
        if gone.is_empty() {
            break;
        }
        if attempt == 2 {
            bail!("packs this folder shares with other files keep disappearing from Discord; run the sync again");
        }
        tracing::warn!(
            "{} the folder's files use are gone from Discord; their chunks go again",
            crate::render::plural(gone.len() as u64, "pack")
        );
        pending = to_read
            .iter()
            .filter(|i| read_files.remove(&i.path).is_some())
            .cloned()
            .collect();
    }

    // The tree.
    let mut packs: Vec<PackRef> = Vec::new();
    let mut slots: HashMap<[u8; PACK_ID_LEN], u32> = HashMap::new();
    let mut slot = |p: &PackRef| -> u32 {
        *slots.entry(p.pack_id).or_insert_with(|| {
            packs.push(p.clone());
            packs.len() as u32 - 1
        })
    };
    let unstable_paths: HashSet<&str> = unstable.iter().map(|s| s.path.as_str()).collect();
    let mut nodes: Vec<Node> = Vec::new();
    let mut seen: std::collections::BTreeMap<String, Seen> = Default::default();
    for it in &items {
        match it.kind {
            Kind::Dir => nodes.push(Node {
                path: it.path.clone(),
                kind: Kind::Dir,
                size: None,
                mtime: it.mtime,
                mode: Some(it.mode),
                sha256: None,
                chunks: Vec::new(),
                target: None,
            }),
            Kind::Symlink => nodes.push(Node {
                path: it.path.clone(),
                kind: Kind::Symlink,
                size: None,
                mtime: it.mtime,
                mode: None,
                sha256: None,
                chunks: Vec::new(),
                target: it.target.clone(),
            }),
            Kind::File => {
                if let Some((n, _, refs)) = reuse.get(&it.path) {
                    let chunks = n
                        .chunks
                        .iter()
                        .zip(refs)
                        .map(|(c, p)| ChunkRef {
                            pack: slot(p),
                            ..*c
                        })
                        .collect();
                    nodes.push(Node {
                        chunks,
                        mode: Some(it.mode),
                        ..n.clone()
                    });
                    seen.insert(it.path.clone(), seen_of(it));
                } else if let Some(f) = read_files.get(&it.path) {
                    let mut chunks = Vec::with_capacity(f.ids.len());
                    for id in &f.ids {
                        let Some((p, e)) = index.get(id) else {
                            bail!(
                                "chunk {} of {} is not in the index",
                                hex::encode(id),
                                f.path
                            );
                        };
                        let e: PackEntry = *e;
                        let pack = slot(p);
                        chunks.push(ChunkRef {
                            id: e.id,
                            pack,
                            offset: e.offset,
                            sealed_len: e.sealed_len,
                            plain_len: e.plain_len,
                            flags: e.flags,
                        });
                    }
                    nodes.push(Node {
                        path: it.path.clone(),
                        kind: Kind::File,
                        size: Some(f.size),
                        mtime: it.mtime,
                        mode: Some(it.mode),
                        sha256: Some(f.sha256.clone()),
                        chunks,
                        target: None,
                    });
                    seen.insert(it.path.clone(), seen_of(it));
                } else if unstable_paths.contains(it.path.as_str()) {
                    // Changing while read: its previous version stays, if it had one.
                    if let Some(n) = prev_snap.and_then(|s| s.node(&it.path)) {
                        if n.kind == Kind::File {
                            let old = prev_snap.map(|s| &s.packs);
                            let chunks = n
                                .chunks
                                .iter()
                                .filter_map(|c| {
                                    old.and_then(|o| o.get(c.pack as usize)).map(|p| ChunkRef {
                                        pack: slot(p),
                                        ..*c
                                    })
                                })
                                .collect();
                            nodes.push(Node {
                                chunks,
                                ..n.clone()
                            });
                        }
                    }
                }
            }
        }
    }
    report.skipped.extend(unstable);
    nodes.sort_by(|a, b| a.path.cmp(&b.path));
    // A folder whose parent was left out (unreadable) would break the tree rule: drop orphans.
    let dirs: HashSet<String> = nodes
        .iter()
        .filter(|n| n.kind == Kind::Dir)
        .map(|n| n.path.clone())
        .collect();
    nodes.retain(|n| {
        let mut at = n.path.as_str();
        while let Some(p) = snapshot::parent(at) {
            if !dirs.contains(p) {
                return false;
            }
            at = p;
        }
        true
    });
    report.files = nodes.iter().filter(|n| n.kind == Kind::File).count();
    report.dirs = nodes.iter().filter(|n| n.kind == Kind::Dir).count();
    if let Some(p) = prev_snap {
        let now: HashMap<&str, &Node> = nodes.iter().map(|n| (n.path.as_str(), n)).collect();
        for n in &nodes {
            match p.node(&n.path) {
                None if n.kind == Kind::File => report.new += 1,
                Some(o) if n.kind == Kind::File && o.sha256 != n.sha256 => report.changed += 1,
                _ => {}
            }
        }
        report.deleted = p
            .files
            .iter()
            .filter(|o| o.kind == Kind::File && !now.contains_key(o.path.as_str()))
            .count();
    } else {
        report.new = report.files;
    }

    let unchanged = prev_snap.is_some_and(|p| same_tree(p, &nodes, &packs));
    let seq = prev.as_ref().map_or(0, |l| l.snapshot.seq);
    if unchanged {
        ctx.folders.save_state(
            &folder.id,
            &State {
                format: LOCAL_FORMAT,
                seq,
                files: seen,
            },
        )?;
        ctx.folders.clear_rounds(&folder.id)?;
        return Ok(report);
    }
    let snap = Snapshot {
        format: SNAPSHOT_FORMAT,
        kind: "snapshot".into(),
        folder: folder.id.clone(),
        seq: seq + 1,
        parent: seq,
        time: began,
        host: ctx.host.clone(),
        name: folder.name.clone(),
        root: folder.root.clone(),
        packs,
        files: nodes,
        pieces: Vec::new(),
    };
    snap.check(&ctx.channels)
        .map_err(|e| anyhow!("the snapshot built is inconsistent ({e}); nothing was posted"))?;
    let (message, pieces) = post_snapshot(ctx, first_channel, &snap, limit).await?;
    report.messages += 1 + pieces.len() as u64;
    report.snapshot = Some(snap.seq);
    ctx.folders.save_snapshot(&Local {
        message,
        pieces,
        snapshot: snap.clone(),
    })?;
    ctx.folders.save_state(
        &folder.id,
        &State {
            format: LOCAL_FORMAT,
            seq: snap.seq,
            files: seen,
        },
    )?;
    ctx.folders.clear_rounds(&folder.id)?;
    tracing::info!(folder = %folder.id, seq = snap.seq, "snapshot posted");
    Ok(report)
}

/// Numbers past the highest recorded pack of a killed round that are looked for: more than can
/// have been in flight.
fn adopt_window(concurrency: usize) -> u64 {
    2 * concurrency.max(1) as u64 + 2
}

/// Looks on Discord for packs of this folder's killed rounds that were posted but never
/// recorded (the process died between Discord's reply and the record), by the names their
/// numbers give; one by a trusted author whose header opens is recorded. Returns how many.
async fn adopt_orphans<S: PartStore>(ctx: &Ctx<S>, folder_id: &str) -> Result<usize> {
    let rounds = ctx.folders.leftover_rounds(folder_id)?;
    if rounds.is_empty() || !ctx.store.reads_history() {
        return Ok(0);
    }
    let trusted = ctx.store.trusted_authors().await?;
    let mut adopted = 0;
    for (round_id, started, mut recs) in rounds {
        let since = started - time::Duration::minutes(10);
        let mut searched = 0u64;
        loop {
            let known: HashSet<u64> = recs.iter().map(|r| r.index).collect();
            let end =
                recs.iter().map(|r| r.index + 1).max().unwrap_or(0) + adopt_window(ctx.concurrency);
            if end <= searched {
                break;
            }
            let names: HashMap<String, u64> = (searched..end)
                .filter(|n| !known.contains(n))
                .map(|n| (ctx.keys.object_name(ObjectKind::Pack, &round_id, n), n))
                .collect();
            searched = end;
            let mut found_any = false;
            for &channel in &ctx.channels {
                let wanted = |name: &str| names.contains_key(name);
                for remote in ctx.store.find_parts(channel, &wanted, since).await? {
                    let Some(&n) = names.get(&remote.filename) else {
                        continue;
                    };
                    if !trusted.contains(&remote.author_id) || recs.iter().any(|r| r.index == n) {
                        continue;
                    }
                    let bytes = ctx.store.read_part(&remote).await?;
                    let header = match crate::repo::pack::PackReader::open(&ctx.keys, &bytes) {
                        Ok(r) => r.header().clone(),
                        Err(e) => {
                            tracing::warn!("pack {n} of sync round {round_id} does not open ({e}); not adopted");
                            continue;
                        }
                    };
                    let rec = PackRecord::adopted(
                        n,
                        ctx.keys.pack_id(&bytes),
                        bytes.len() as u64,
                        &remote,
                        &trusted,
                        &header.entries,
                    );
                    ctx.folders.save_pack(folder_id, &round_id, &rec)?;
                    recs.push(rec);
                    adopted += 1;
                    found_any = true;
                }
            }
            if !found_any {
                break;
            }
        }
    }
    Ok(adopted)
}

fn seen_of(it: &Item) -> Seen {
    Seen {
        size: it.size,
        mtime_ns: it.mtime_ns(),
        inode: it.inode,
    }
}

/// Whether `nodes` (chunks indexing `packs`) describe the same tree as `prev`.
fn same_tree(prev: &Snapshot, nodes: &[Node], packs: &[PackRef]) -> bool {
    if prev.files.len() != nodes.len() {
        return false;
    }
    prev.files.iter().zip(nodes).all(|(a, b)| {
        a.path == b.path
            && a.kind == b.kind
            && a.size == b.size
            && a.mtime == b.mtime
            && a.mode == b.mode
            && a.sha256 == b.sha256
            && a.target == b.target
            && a.chunks.len() == b.chunks.len()
            && a.chunks.iter().zip(&b.chunks).all(|(x, y)| {
                x.id == y.id
                    && x.offset == y.offset
                    && prev.packs.get(x.pack as usize).map(|p| p.attachment_id)
                        == packs.get(y.pack as usize).map(|p| p.attachment_id)
            })
    })
}

/// Posts the snapshot: its pieces each alone, then the head; returns where they are.
async fn post_snapshot<S: PartStore>(
    ctx: &Ctx<S>,
    channel_id: u64,
    snap: &Snapshot,
    budget: usize,
) -> Result<(MessageRef, Vec<MessageRef>)> {
    let split = snapshot::seal(&ctx.keys, snap, budget)
        .map_err(|e| anyhow!("the snapshot cannot be written: {e}"))?;
    let mut placed = Vec::new();
    let mut pieces = Vec::new();
    for p in &split.pieces {
        let r = post_one(ctx, channel_id, p.clone()).await?;
        placed.push((r.channel_id, r.message_id, r.attachment_id));
        pieces.push(MessageRef {
            channel_id: r.channel_id,
            message_id: r.message_id,
        });
    }
    let head = split
        .head(&ctx.keys, &placed)
        .map_err(|e| anyhow!("the snapshot cannot be written: {e}"))?;
    let r = post_one(ctx, channel_id, head).await?;
    Ok((
        MessageRef {
            channel_id: r.channel_id,
            message_id: r.message_id,
        },
        pieces,
    ))
}

async fn post_one<S: PartStore>(
    ctx: &Ctx<S>,
    channel_id: u64,
    object: crate::repo::entry::Sealed,
) -> Result<crate::store::RemotePart> {
    let mut posted = ctx
        .store
        .put_parts(PutMessage {
            channel_id,
            // Random: a snapshot posted again after a crash is never answered with an older one.
            nonce: hex::encode(rand::random::<[u8; 12]>()),
            attachments: vec![(object.name, Bytes::from(object.bytes))],
            newer_than: 0,
        })
        .await
        .context("the snapshot could not be posted")?;
    match (posted.pop(), posted.is_empty()) {
        (Some(r), true) => Ok(r),
        _ => bail!("a message came back with another number of attachments than sent"),
    }
}

/// Reads `files` (in order), packs their new chunks into the round's packs and posts them as
/// they fill, recording each; returns the files read whole with their chunk IDs.
#[allow(clippy::too_many_arguments)]
async fn pack_files<S: PartStore>(
    ctx: &Ctx<S>,
    folder_id: &str,
    round_id: &str,
    next_pack: &mut u64,
    limit: usize,
    files: Vec<Item>,
    index: &mut ChunkIndex,
    own: &mut HashSet<[u8; PACK_ID_LEN]>,
    report: &mut Report,
) -> Result<Packed> {
    let (tx, mut rx) = mpsc::channel::<PackJob>(1);
    let stop = ctx.cancel.child_token();
    let known: HashSet<ChunkId> = index.ids().copied().collect();
    let (keys, params, first, stop2) = (ctx.keys.clone(), ctx.chunker, *next_pack, stop.clone());
    let packer = tokio::task::spawn_blocking(move || {
        pack_thread(&keys, params, files, known, first, limit, &tx, &stop2)
    });
    let mut lanes = match ctx.store.upload_lanes().await {
        Ok(l) if l.is_empty() => None,
        Ok(l) => Some(Scheduler::new(l)),
        Err(e) => {
            stop.cancel();
            drop(rx);
            let _ = packer.await;
            return Err(e.into());
        }
    };
    let cap = ctx.concurrency.max(1);
    let mut inflight: JoinSet<(Option<Lane>, Result<PackRecord>)> = JoinSet::new();
    let mut reading = true;
    let mut failure: Option<anyhow::Error> = None;
    while reading || !inflight.is_empty() {
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => {
                inflight.abort_all();
                stop.cancel();
                drop(rx);
                let _ = packer.await;
                bail!("sync cancelled; the packs posted so far are kept, and the next round goes on from them");
            }
            Some(joined) = inflight.join_next(), if !inflight.is_empty() => {
                match joined {
                    Ok((lane, Ok(rec))) => {
                        if let (Some(l), Some(lane)) = (lanes.as_mut(), lane) {
                            l.done(lane);
                        }
                        report.packs += 1;
                        report.messages += 1;
                        report.pack_bytes += rec.size;
                        own.insert(rec.pack_id);
                        index.add_pack(rec.pack_ref(), rec.chunks.iter().map(|c| c.entry));
                    }
                    Ok((_, Err(e))) => {
                        failure.get_or_insert(e);
                        stop.cancel();
                        reading = false;
                    }
                    Err(j) if j.is_cancelled() => {}
                    Err(j) => {
                        failure.get_or_insert(anyhow!("a pack upload failed: {j}"));
                        stop.cancel();
                        reading = false;
                    }
                }
            }
            job = rx.recv(), if reading && inflight.len() < cap => match job {
                Some(job) => {
                    *next_pack = job.index + 1;
                    let name = ctx.keys.object_name(ObjectKind::Pack, round_id, job.index);
                    let lane = match lanes.as_mut() {
                        Some(l) => match l.pick(|lane| ctx.store.lane_ready(lane)) {
                            Some((lane, _)) => lane,
                            None => {
                                failure.get_or_insert(StoreError::NoLane.into());
                                stop.cancel();
                                reading = false;
                                continue;
                            }
                        },
                        None => Lane::Channel(ctx.channels[(job.index % ctx.channels.len() as u64) as usize]),
                    };
                    let on_lane = lanes.is_some().then_some(lane);
                    let (store, folders) = (ctx.store.clone(), ctx.folders.clone());
                    let (folder_id, round_id) = (folder_id.to_string(), round_id.to_string());
                    inflight.spawn(async move {
                        (on_lane, post_pack(store, folders, &folder_id, &round_id, name, lane, job).await)
                    });
                }
                None => reading = false,
            },
        }
    }
    drop(rx);
    let packed = packer
        .await
        .map_err(|e| anyhow!("the sync's packer failed: {e}"))?;
    if let Some(e) = failure {
        return Err(e);
    }
    packed
}

/// Posts one pack and records it as soon as Discord confirms it.
async fn post_pack<S: PartStore>(
    store: Arc<S>,
    folders: Folders,
    folder_id: &str,
    round_id: &str,
    name: String,
    lane: Lane,
    job: PackJob,
) -> Result<PackRecord> {
    let size = job.bytes.len() as u64;
    let remote = store
        .put_part_on(
            lane,
            PutPart {
                channel_id: 0,
                filename: name.clone(),
                nonce: name.chars().take(25).collect(),
                data: job.bytes,
                reload: None,
            },
        )
        .await?;
    let rec = PackRecord {
        format: FORMAT_V2,
        index: job.index,
        pack_id: job.pack_id,
        size,
        channel_id: remote.channel_id,
        message_id: remote.message_id,
        attachment_id: remote.attachment_id,
        attachment_name: name,
        uploaded_at: OffsetDateTime::now_utc(),
        chunks: job.chunks,
        webhook_id: match lane {
            Lane::Webhook(w) => Some(w),
            Lane::Channel(_) => None,
        },
    };
    let (f, r, fid, rid) = (
        folders,
        rec.clone(),
        folder_id.to_string(),
        round_id.to_string(),
    );
    tokio::task::spawn_blocking(move || f.save_pack(&fid, &rid, &r))
        .await
        .map_err(|e| anyhow!("the pack record writer failed: {e}"))??;
    Ok(rec)
}

/// A new chunk on its way from the reader to a sealing worker.
struct Work {
    id: ChunkId,
    data: Vec<u8>,
}

/// A chunk compressed and sealed, on its way to the packer.
struct SealedChunk {
    entry: PackEntry,
    blob: Vec<u8>,
}

/// Sealing workers: one per core (at most 4).
fn sealers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4))
}

/// The round's threads, for one pass over the files to read:
///
/// - the reader (this thread) reads each file, cuts and hashes it, computes each chunk's ID and
///   decides, in order, whether it is new (so a chunk seen twice is sealed once); a file whose
///   size or mtime changed while it was read is left out (unstable);
/// - [`sealers`] workers compress and seal the new chunks, dealt out in turn;
/// - the packer takes them back in the same turn, so in walk order, into the round's packs (the
///   same packs whatever the timing), and hands each full pack over.
#[allow(clippy::too_many_arguments)]
fn pack_thread(
    keys: &Keys,
    params: ChunkerParams,
    files: Vec<Item>,
    known: HashSet<ChunkId>,
    first: u64,
    limit: usize,
    tx: &mpsc::Sender<PackJob>,
    stop: &CancellationToken,
) -> Result<Packed> {
    let n = sealers();
    std::thread::scope(|s| {
        let mut to_sealers = Vec::with_capacity(n);
        let mut from_sealers = Vec::with_capacity(n);
        for _ in 0..n {
            let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<Work>(2);
            let (sealed_tx, sealed_rx) = std::sync::mpsc::sync_channel::<SealedChunk>(2);
            s.spawn(move || seal_chunks(keys, work_rx, sealed_tx));
            to_sealers.push(work_tx);
            from_sealers.push(sealed_rx);
        }
        let packer = s.spawn(move || pack_chunks(keys, limit, first, from_sealers, tx, stop));
        let read = read_files(keys, params, files, known, to_sealers, stop);
        let packed = packer
            .join()
            .map_err(|_| anyhow!("the sync's packer failed"))?;
        let mut read = read?;
        read.chunks_sent = packed?;
        Ok(read)
    })
}

/// The reader: each file cut, hashed and deduplicated in order; new chunks go to the sealers in
/// turn (the channels close when it returns, which ends the workers and the packer).
fn read_files(
    keys: &Keys,
    params: ChunkerParams,
    files: Vec<Item>,
    mut known: HashSet<ChunkId>,
    to_sealers: Vec<std::sync::mpsc::SyncSender<Work>>,
    stop: &CancellationToken,
) -> Result<Packed> {
    // On any error the packer must post nothing more: the stop is signalled before the
    // channels close.
    let stopped = || {
        stop.cancel();
        anyhow!("sync stopped")
    };
    let mut out = Packed {
        files: Vec::new(),
        unstable: Vec::new(),
        chunks_sent: 0,
    };
    let mut turn = 0usize;
    for item in files {
        if stop.is_cancelled() {
            return Err(stopped());
        }
        let file = match File::open(&item.abs) {
            Ok(f) => f,
            Err(e) => {
                out.unstable.push(Skipped {
                    path: item.path.clone(),
                    why: format!("cannot be read: {e}"),
                });
                continue;
            }
        };
        let chunks = match Chunker::new(
            BufReader::with_capacity(1 << 20, file),
            params,
            keys.chunker_seed(),
        ) {
            Ok(c) => c,
            Err(e) => {
                stop.cancel();
                return Err(anyhow!("{e}"));
            }
        };
        let mut sha = crate::hash::Sha256::default();
        let mut ids = Vec::new();
        let mut size = 0u64;
        let mut failed = None;
        for chunk in chunks {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    failed = Some(format!("cannot be read: {e}"));
                    break;
                }
            };
            sha.update(&chunk.data);
            size += chunk.data.len() as u64;
            let id = keys.chunk_id(&chunk.data);
            ids.push(id);
            if !known.insert(id) {
                continue;
            }
            if to_sealers[turn]
                .send(Work {
                    id,
                    data: chunk.data,
                })
                .is_err()
            {
                return Err(stopped());
            }
            turn = (turn + 1) % to_sealers.len();
        }
        // Stable: the same size, mtime, status-change time, device and inode after reading as
        // when walked (a write that puts the mtime back still moves the ctime).
        let after = std::fs::symlink_metadata(&item.abs);
        let stable = after.as_ref().is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.len() == item.size
                && super::walk::mtime_of(m) == item.mtime
                && super::walk::ctime_ns(m) == item.ctime_ns
                && m.dev() == item.dev
                && m.ino() == item.inode
                && size == item.size
        });
        if let Some(why) = failed {
            out.unstable.push(Skipped {
                path: item.path,
                why,
            });
        } else if !stable {
            out.unstable.push(Skipped {
                path: item.path,
                why: "it changed while it was read".into(),
            });
        } else {
            out.files.push(ReadFile {
                path: item.path,
                sha256: sha.finish_hex(),
                size,
                ids,
            });
        }
    }
    Ok(out)
}

/// A sealing worker: compresses (when that pays) and seals each chunk it is given.
fn seal_chunks(
    keys: &Keys,
    work: std::sync::mpsc::Receiver<Work>,
    sealed: std::sync::mpsc::SyncSender<SealedChunk>,
) {
    for w in work {
        let (flags, body) = crate::repo::compress::compress(&w.data);
        let blob = keys.seal_blob(&w.id, flags, &body);
        // A chunk is at most 16 MiB: a length that did not fit would make the packer refuse
        // the blob, never a wrong record.
        let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let out = SealedChunk {
            entry: PackEntry {
                id: w.id,
                offset: 0,
                sealed_len: len32(blob.len()),
                plain_len: len32(w.data.len()),
                flags,
            },
            blob,
        };
        if sealed.send(out).is_err() {
            return;
        }
    }
}

/// The packer: takes the sealed chunks back in the reader's turn, fills the round's packs and
/// hands each over; returns how many chunks it packed.
fn pack_chunks(
    keys: &Keys,
    limit: usize,
    first: u64,
    from_sealers: Vec<std::sync::mpsc::Receiver<SealedChunk>>,
    tx: &mpsc::Sender<PackJob>,
    stop: &CancellationToken,
) -> Result<u64> {
    let stopped = || anyhow!("sync stopped");
    let mut writer = PackWriter::new(keys, limit);
    let mut in_pack: Vec<PackChunk> = Vec::new();
    let mut index = first;
    let mut packed = 0u64;
    let send = |writer: PackWriter<'_>, in_pack: &mut Vec<PackChunk>, index: &mut u64| -> bool {
        let (bytes, _) = writer.finish();
        let job = PackJob {
            index: *index,
            pack_id: keys.pack_id(&bytes),
            bytes: Bytes::from(bytes),
            chunks: std::mem::take(in_pack),
        };
        *index += 1;
        !stop.is_cancelled() && tx.blocking_send(job).is_ok()
    };
    let mut turn = 0usize;
    // Each sealer's queue ends when the reader is done; the next turn's end is the end.
    while let Ok(chunk) = from_sealers[turn].recv() {
        turn = (turn + 1) % from_sealers.len();
        if !writer.is_empty() && !writer.would_fit_sealed(chunk.blob.len()) {
            let full = std::mem::replace(&mut writer, PackWriter::new(keys, limit));
            if !send(full, &mut in_pack, &mut index) {
                return Err(stopped());
            }
        }
        let entry = *writer
            .add_sealed(chunk.entry, &chunk.blob)
            .map_err(|e| anyhow!("a chunk does not fit an empty pack: {e}"))?;
        packed += 1;
        in_pack.push(PackChunk {
            entry,
            file_offset: None,
        });
    }
    if stop.is_cancelled() {
        return Err(stopped());
    }
    if !writer.is_empty() && !send(writer, &mut in_pack, &mut index) {
        return Err(stopped());
    }
    Ok(packed)
}
