//! The format-2 upload pipeline (docs/format.md 4, 5, 8): a reader thread cuts the source into
//! content-defined chunks, hashes the whole file, skips every chunk the repository already holds,
//! and compresses and seals the rest into packs; packs are posted with bounded concurrency under
//! opaque names, and each is recorded (`parts/<n>.json`) the moment Discord confirms it. Once
//! every chunk is stored the file's chunk list is resolved through the index and the file is
//! complete; its sealed catalogue entry is posted after.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::chunker::{Buffers, ChunkBytes, Chunker, ChunkerParams};
use super::crypto::{ChunkId, Keys, ObjectKind, PACK_ID_LEN};
use super::index::ChunkIndex;
use super::pack::{pack_limit, PackEntry, PackWriter, ENTRY_LEN, HEADER_FIXED, TRAILER_LEN};
use crate::catalog::{Catalog, FileManifest, PackChunk, PackRecord, Status, FORMAT_V2};
use crate::progress::Progress;
use crate::store::lanes::{in_flight_budget, Pick, Scheduler};
use crate::store::{Lane, PartStore, PutPart, StoreError};
use crate::transfer::{check_source, check_unchanged, UploadError};

/// Spare pack buffers kept for the next packs. A buffer is only made when none is spare, so
/// keeping spares never raises the peak above the most packs held at once.
const SPARE_PACKS: usize = 8;

/// How many times one pack may fail on a lane before the upload stops with its error.
const LANE_TRIES: u32 = 4;

/// Per-file limits by boost tier, largest first (discord-api.md §1.1): after a 413 the next
/// smaller one is tried.
const TIER_LIMITS: [u64; 3] = [104_857_600, 52_428_800, 10_485_760];

/// What a format-2 upload runs with.
pub struct Upload2<S> {
    pub store: Arc<S>,
    pub catalog: Catalog,
    pub keys: Keys,
    pub chunker: ChunkerParams,
    /// Packs in flight at most; `None` for as many as the lanes take within the memory budget.
    pub concurrency: Option<usize>,
    pub cancel: CancellationToken,
    /// The largest attachment every channel accepts (the part size in force).
    pub attachment_limit: u64,
}

/// What an upload did, for the summary line and the benchmark.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Chunks of the file, and those already stored (in the repository or earlier in the file).
    pub chunks: u64,
    pub deduplicated: u64,
    /// Plaintext bytes of the chunks this run sealed, and their sealed length.
    pub new_plain: u64,
    pub new_sealed: u64,
    /// Packs posted by this run and their bytes.
    pub packs: u64,
    pub pack_bytes: u64,
}

/// One pack the reader finished: its number in this file's upload, bytes, ID and chunks.
struct PackJob {
    index: u64,
    bytes: Bytes,
    pack_id: [u8; PACK_ID_LEN],
    chunks: Vec<PackChunk>,
    /// Bytes of the file the reader went through since the previous pack (stored or not).
    covered: u64,
}

/// What the reader found once it went through the whole file.
struct ReadEnd {
    sha256: String,
    size: u64,
    ids: Vec<ChunkId>,
    stats: Stats,
    /// File bytes after the last pack (deduplicated chunks only).
    tail: u64,
}

/// The smallest pack able to hold the largest chunk stored raw.
fn smallest_pack(keys: &Keys, chunker: &ChunkerParams) -> u64 {
    (chunker.max as usize
        + keys.overhead()
        + keys.overhead()
        + HEADER_FIXED
        + ENTRY_LEN
        + TRAILER_LEN) as u64
}

/// Uploads the chunks of `file` that the repository does not hold, given the packs this file's
/// upload already recorded (`records`), until the file is complete.
pub async fn run<S: PartStore>(
    ctx: &Upload2<S>,
    mut file: FileManifest,
    records: Vec<PackRecord>,
    progress: &Progress,
) -> Result<(FileManifest, Stats), UploadError> {
    let began = check_source(&file)?;
    if file.channels.is_empty() {
        return Err(UploadError::Inconsistent(
            "file.json names no channel to store packs in".into(),
        ));
    }
    let mut limit = ctx.attachment_limit;
    let mut index = ChunkIndex::build(&ctx.catalog)?;
    let mut next = 0;
    // Packs this file's upload posted; any other pack an entry relies on is checked on Discord
    // before the file is complete (another machine may have deleted it).
    let mut own: HashSet<[u8; PACK_ID_LEN]> = HashSet::new();
    for r in &records {
        index.add_pack(r.pack_ref(), r.chunks.iter().map(|c| c.entry));
        next = next.max(r.index + 1);
        own.insert(r.pack_id);
    }
    let mut stats = Stats::default();
    let mut rechecks = 0;
    loop {
        let packs = pack_limit(limit as usize) as u64;
        let needed = smallest_pack(&ctx.keys, &ctx.chunker);
        if packs < needed {
            // After a 413 the limit fell below what a chunk needs: Discord's limit is the cause.
            if limit < ctx.attachment_limit {
                return Err(UploadError::CannotShrink(limit));
            }
            return Err(UploadError::PackTooSmall {
                limit: packs,
                needed,
            });
        }
        check_unchanged(&file.source_path, &began)?;
        progress.set_position(0);
        match round(
            ctx,
            &file,
            &mut index,
            &mut own,
            &mut next,
            packs as usize,
            progress,
        )
        .await?
        {
            Round::Done(end) => {
                check_unchanged(&file.source_path, &began)?;
                if end.size != file.size {
                    return Err(crate::store::SourceChanged::new(
                        &file.source_path,
                        format!(
                            "it is {} bytes now, {} when the upload began",
                            end.size, file.size
                        ),
                    )
                    .into());
                }
                let (packs, chunks) = index.resolve(&end.ids).map_err(|id| {
                    UploadError::Internal(format!(
                        "chunk {} was neither stored nor found in the index",
                        hex::encode(id)
                    ))
                })?;
                let missing = missing_packs(ctx.store.as_ref(), &packs, &own).await?;
                if !missing.is_empty() {
                    rechecks += 1;
                    if rechecks > 2 {
                        return Err(UploadError::Inconsistent(
                            "packs this file shares with others keep disappearing from Discord while it uploads".into(),
                        ));
                    }
                    tracing::warn!(
                        "{} this file shares with others are gone from Discord; sending their chunks again",
                        crate::render::plural(missing.len() as u64, "pack")
                    );
                    for id in &missing {
                        index.remove_pack(id);
                    }
                    continue;
                }
                let s = end.stats;
                stats.chunks = s.chunks;
                stats.deduplicated = s.deduplicated;
                stats.new_plain += s.new_plain;
                stats.new_sealed += s.new_sealed;
                stats.packs += s.packs;
                stats.pack_bytes += s.pack_bytes;
                progress.part_done(end.tail);
                file.sha256 = Some(end.sha256);
                file.packs = packs;
                file.chunks = chunks;
                file.status = Status::Complete;
                file.updated_at = OffsetDateTime::now_utc();
                ctx.catalog.save_file(&file)?;
                progress.finish();
                return Ok((file, stats));
            }
            Round::Shrink(refused) => {
                limit = TIER_LIMITS
                    .iter()
                    .copied()
                    .find(|t| *t < refused)
                    .unwrap_or(refused / 2);
                tracing::warn!(
                    "Discord refused a pack of {refused} bytes (413); continuing with packs for a limit of {limit} bytes"
                );
            }
        }
    }
}

/// The packs of `packs` not in `own` that are gone from Discord (or changed size).
async fn missing_packs<S: PartStore>(
    store: &S,
    packs: &[crate::catalog::PackRef],
    own: &HashSet<[u8; PACK_ID_LEN]>,
) -> Result<Vec<[u8; PACK_ID_LEN]>, UploadError> {
    let mut missing = Vec::new();
    for p in packs.iter().filter(|p| !own.contains(&p.pack_id)) {
        match store
            .locate_part(p.channel_id, p.message_id, p.attachment_id)
            .await
        {
            Ok(r) if r.size == p.size => {}
            // Without a bot, a pack no webhook of this machine posted cannot be told from a gone
            // one: its chunks are sent again.
            Ok(_)
            | Err(StoreError::UnknownMessage { .. })
            | Err(StoreError::NotByWebhooks { .. })
            | Err(StoreError::ContentGone) => missing.push(p.pack_id),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(missing)
}

enum Round {
    Done(ReadEnd),
    Shrink(u64),
}

/// One pass over the file: the reader thread feeds finished packs, which are posted here.
async fn round<S: PartStore>(
    ctx: &Upload2<S>,
    file: &FileManifest,
    index: &mut ChunkIndex,
    own: &mut HashSet<[u8; PACK_ID_LEN]>,
    next: &mut u64,
    pack_size: usize,
    progress: &Progress,
) -> Result<Round, UploadError> {
    let (tx, mut rx) = mpsc::channel::<PackJob>(1);
    let stop = ctx.cancel.child_token();
    let known: HashSet<ChunkId> = index.ids().copied().collect();
    // Each pack goes to the lane that can take it soonest (a store without lanes: pack n goes
    // to channel n mod len).
    let mut lanes = match ctx.store.upload_lanes().await {
        Ok(l) if l.is_empty() => None,
        Ok(l) => Some(Scheduler::new(l)),
        Err(e) => return Err(e.into()),
    };
    // With lanes, a pack leaves only when a lane can send it at once, so as many may be in
    // flight as the lanes allow, within the memory budget (and the user's `concurrency`).
    let budget = in_flight_budget(pack_size as u64);
    let cap = match (&lanes, ctx.concurrency) {
        (_, Some(n)) => n.clamp(1, budget),
        (Some(_), None) => budget,
        (None, None) => budget.min(crate::config::DEFAULT_CONCURRENCY),
    };
    let reader = {
        let (keys, params, path, stop) = (
            ctx.keys.clone(),
            ctx.chunker,
            file.source_path.clone(),
            stop.clone(),
        );
        let first = *next;
        tokio::task::spawn_blocking(move || {
            read(ReadCtx {
                path,
                keys,
                params,
                known,
                first,
                pack_size,
                tx,
                buffers: Buffers::new(compressors() + 2),
                // Those in flight and the one being filled (which waits, once full, for a
                // slot to free: the packer fills one far faster than a lane sends one).
                pack_buffers: PackBuffers::new(cap + 1, stop.clone()),
                stop,
            })
        })
    };

    let mut inflight: JoinSet<(Option<Lane>, Result<PackRecord, Failed>)> = JoinSet::new();
    let mut covered: HashMap<u64, u64> = HashMap::new();
    // Packs a lane failed to post, to go again (on the soonest lane).
    let mut again: VecDeque<PackJob> = VecDeque::new();
    let mut tries: HashMap<u64, u32> = HashMap::new();
    let mut reading = true;
    let mut refused: Option<u64> = None;
    let mut failure: Option<UploadError> = None;
    let mut posted = Stats::default();
    while reading || !inflight.is_empty() || (!again.is_empty() && failure.is_none()) {
        // When the soonest lane can take the next waiting pack.
        let mut wake: Option<tokio::time::Instant> = None;
        while failure.is_none() && inflight.len() < cap && !again.is_empty() {
            let lane = match lanes.as_mut() {
                None => None,
                Some(l) => match l.pick_now(
                    |lane| ctx.store.lane_ready(lane),
                    |lane| ctx.store.reserve_lane(lane),
                ) {
                    Pick::Now(lane) => Some(lane),
                    Pick::Later(at) => {
                        wake = Some(at);
                        break;
                    }
                    Pick::None => {
                        failure.get_or_insert(StoreError::NoLane.into());
                        stop.cancel();
                        reading = false;
                        break;
                    }
                },
            };
            let Some(job) = again.pop_front() else { break };
            inflight.spawn(launch(ctx, file, lane, job));
        }
        if let Some(l) = lanes.as_ref() {
            // The rate the lanes allow, and whether packs wait for it (a lane's limit).
            let rate = ctx.store.lanes_rate(&l.live_lanes());
            progress.set_forecast(rate.map(|r| crate::progress::Forecast {
                rate: r * pack_size as f64,
                discord: wake.is_some(),
            }));
        }
        if failure.is_some() {
            again.clear();
        }
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => {
                inflight.abort_all();
                stop.cancel();
                return Err(UploadError::Cancelled);
            }
            Some(joined) = inflight.join_next(), if !inflight.is_empty() => {
                let err = match joined {
                    Ok((lane, Ok(rec))) => {
                        if let (Some(l), Some(lane)) = (lanes.as_mut(), lane) {
                            l.done(lane);
                        }
                        progress.part_done(covered.remove(&rec.index).unwrap_or(0));
                        posted.packs += 1;
                        posted.pack_bytes += rec.size;
                        own.insert(rec.pack_id);
                        index.add_pack(rec.pack_ref(), rec.chunks.iter().map(|c| c.entry));
                        continue;
                    }
                    Ok((lane, Err(Failed { err: UploadError::Store(StoreError::PartTooLarge { size }), .. }))) => {
                        if let (Some(l), Some(lane)) = (lanes.as_mut(), lane) {
                            l.done(lane);
                        }
                        refused = Some(refused.map_or(size, |r| r.min(size)));
                        reading = false;
                        stop.cancel();
                        continue;
                    }
                    Ok((Some(lane), Err(Failed { err, job: Some(job) }))) if !err.is_fatal() && failure.is_none() => {
                        // A lane's failure is that lane's: the pack goes again, perhaps elsewhere.
                        let Some(l) = lanes.as_mut() else { continue };
                        if let UploadError::Store(StoreError::Ambiguous { webhook }) = &err {
                            note_lost_reply(&ctx.catalog, &file.id, job.index, *webhook);
                        }
                        let dead = matches!(err, UploadError::Store(StoreError::DeadWebhook { .. }));
                        if dead {
                            l.dead(lane);
                        } else {
                            l.failed(lane);
                            let n = tries.entry(job.index).or_default();
                            *n += 1;
                            if *n >= LANE_TRIES {
                                stop.cancel();
                                failure.get_or_insert(err);
                                reading = false;
                                continue;
                            }
                            tracing::warn!(pack = job.index, %lane, "posting a pack failed ({err}); it goes again on the lane that can take it soonest");
                        }
                        if l.live() == 0 {
                            stop.cancel();
                            failure.get_or_insert(StoreError::NoLane.into());
                            reading = false;
                            continue;
                        }
                        again.push_back(job);
                        continue;
                    }
                    Ok((_, Err(Failed { err, .. }))) => err,
                    // Aborted after a fatal error: if Discord kept the pack, `resume` finds it
                    // by its name.
                    Err(j) if j.is_cancelled() => continue,
                    Err(j) => UploadError::Internal(format!("a pack upload failed: {j}")),
                };
                if err.is_fatal() {
                    inflight.abort_all();
                }
                stop.cancel();
                failure.get_or_insert(err);
                reading = false;
            }
            _ = sleep_until_some(wake), if wake.is_some() => {}
            job = rx.recv(), if reading && inflight.len() < cap && again.is_empty() => match job {
                Some(job) => {
                    *next = job.index + 1;
                    covered.insert(job.index, job.covered);
                    // Launched at the top of the loop, on the lane that can take it now.
                    again.push_back(job);
                }
                None => reading = false,
            },
        }
    }
    drop(rx);
    let end = reader
        .await
        .map_err(|j| UploadError::Internal(format!("the source reader failed: {j}")))?;
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some(size) = refused {
        return Ok(Round::Shrink(size));
    }
    let mut end = match end? {
        Some(end) => end,
        None => return Err(UploadError::Cancelled),
    };
    end.stats.packs = posted.packs;
    end.stats.pack_bytes = posted.pack_bytes;
    Ok(Round::Done(end))
}

struct ReadCtx {
    path: PathBuf,
    keys: Keys,
    params: ChunkerParams,
    known: HashSet<ChunkId>,
    first: u64,
    pack_size: usize,
    tx: mpsc::Sender<PackJob>,
    stop: CancellationToken,
    /// Compressed-body buffers, and pack buffers, for reuse (chunks are ranges of the
    /// chunker's windows).
    buffers: Buffers,
    pack_buffers: PackBuffers,
}

/// Pack buffers, reused, and at most `limit` of them alive at once (being filled, waiting to
/// leave, in flight or waiting to go again): the reader waits for one to come back before it
/// fills another, so an upload holds a bounded number of packs whatever the link's speed.
#[derive(Clone)]
struct PackBuffers {
    spare: Buffers,
    /// Buffers out of the pool, and the signal that one came back.
    alive: Arc<(std::sync::Mutex<usize>, std::sync::Condvar)>,
    limit: usize,
    stop: CancellationToken,
}

impl PackBuffers {
    fn new(limit: usize, stop: CancellationToken) -> Self {
        PackBuffers {
            spare: Buffers::new(SPARE_PACKS),
            alive: Arc::default(),
            limit: limit.max(1),
            stop,
        }
    }

    /// A buffer, once fewer than `limit` are alive; `None` when the upload stopped meanwhile.
    fn take(&self) -> Option<Vec<u8>> {
        let (lock, freed) = &*self.alive;
        let mut alive = lock.lock().ok()?;
        loop {
            if self.stop.is_cancelled() {
                return None;
            }
            if *alive < self.limit {
                *alive += 1;
                return Some(self.spare.take());
            }
            // Woken when a buffer comes back; the timeout notices a stop.
            alive = freed
                .wait_timeout(alive, std::time::Duration::from_millis(50))
                .ok()?
                .0;
        }
    }

    /// Gives a buffer back, for the next pack (which overwrites what it holds).
    fn give(&self, buf: Vec<u8>) {
        self.spare.give_as_is(buf);
        let (lock, freed) = &*self.alive;
        if let Ok(mut alive) = lock.lock() {
            *alive = alive.saturating_sub(1);
        }
        freed.notify_one();
    }
}

/// A new chunk on its way from the reader to a compressing worker.
struct Work {
    id: ChunkId,
    offset: u64,
    data: ChunkBytes,
    /// Bytes of stored chunks the reader went through since the new chunk before this one.
    skipped: u64,
}

/// A chunk compressed (when that pays), on its way to the packer, which seals it into a pack.
struct Compressed {
    id: ChunkId,
    flags: u8,
    plain_len: usize,
    file_offset: u64,
    /// Its body: the compressed bytes, or the chunk's own where the chunker read them.
    body: Body,
    /// The file bytes it stands for in the progress: its own and the skipped ones before it.
    covered: u64,
}

/// Compressing workers: one per core (at most 4), so compression runs beside the reader's
/// chunking and hashing.
fn compressors() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4))
}

/// The upload's threads, for one pass over the file; `None` when stopped:
///
/// - the reader (this thread) reads, cuts chunks, hashes the whole file, computes each chunk's
///   ID and decides, in file order, whether it is new (so a chunk seen twice is sealed once);
/// - [`compressors`] workers compress the new chunks, which the reader deals out in turn;
/// - the packer takes them back in the same turn, so in file order, and seals each straight
///   into its place in a pack (the same packs whatever the timing; sealing out of place costs
///   what sealing in place does, so a chunk's bytes are not copied into the pack on top), and
///   hands each finished pack with its ID to the async side.
///
/// Each hand-over holds one item, so memory stays a few chunks and packs whatever the file size.
fn read(mut c: ReadCtx) -> Result<Option<ReadEnd>, UploadError> {
    let known = std::mem::take(&mut c.known);
    let c = c;
    let n = compressors();
    std::thread::scope(|s| {
        let mut to_workers = Vec::with_capacity(n);
        let mut from_workers = Vec::with_capacity(n);
        let mut workers = Vec::with_capacity(n);
        for _ in 0..n {
            let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<Work>(1);
            let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<Compressed>(1);
            let buffers = &c.buffers;
            workers.push(s.spawn(move || compress_chunks(buffers, work_rx, done_tx)));
            to_workers.push(work_tx);
            from_workers.push(done_rx);
        }
        let packer = s.spawn(|| pack_chunks(&c, from_workers));
        let scanned = scan(&c, known, to_workers);
        if !matches!(scanned, Ok(Some(_))) {
            // Stopped or failed: the packer posts nothing more.
            c.stop.cancel();
        }
        let panicked = |what: &str| UploadError::Internal(format!("the upload's {what} failed"));
        let mut workers_ok = true;
        for w in workers {
            workers_ok &= w.join().is_ok();
        }
        let packed = packer.join().map_err(|_| panicked("packer"))?;
        let Some(mut end) = scanned? else {
            return Ok(None);
        };
        let Some(sealed) = packed? else {
            return Ok(None);
        };
        if !workers_ok {
            return Err(panicked("compressing worker"));
        }
        end.stats.new_plain = sealed.new_plain;
        end.stats.new_sealed = sealed.new_sealed;
        Ok(Some(end))
    })
}

/// The reader: chunk, hash the whole file, compute chunk IDs and deduplicate, in file order;
/// each new chunk goes to the next sealer in turn.
fn scan(
    c: &ReadCtx,
    mut known: HashSet<ChunkId>,
    to_workers: Vec<std::sync::mpsc::SyncSender<Work>>,
) -> Result<Option<ReadEnd>, UploadError> {
    let file = File::open(&c.path).map_err(|e| UploadError::source(&c.path, e))?;
    // The chunker reads into windows of its own and hands out chunks as ranges of them: no
    // buffer in between, no copy of a chunk on its way to the packer.
    let mut chunks = Chunker::new(file, c.params, c.keys.chunker_seed())
        // The repository's config is checked when it is opened: bounds out of range here are a bug.
        .map_err(|e| UploadError::Internal(e.to_string()))?;
    let mut sha = crate::hash::Sha256::default();
    let mut ids = Vec::new();
    let mut stats = Stats::default();
    let mut size = 0u64;
    let mut skipped = 0u64;
    let mut turn = 0usize;
    while let Some(chunk) = chunks.next_shared() {
        if c.stop.is_cancelled() {
            return Ok(None);
        }
        let chunk = chunk.map_err(|e| UploadError::source(&c.path, e))?;
        let len = chunk.data.len() as u64;
        sha.update(&chunk.data);
        size += len;
        let id = c.keys.chunk_id(&chunk.data);
        ids.push(id);
        stats.chunks += 1;
        if !known.insert(id) {
            stats.deduplicated += 1;
            skipped += len;
            continue;
        }
        let work = Work {
            id,
            offset: chunk.offset,
            data: chunk.data,
            skipped: std::mem::take(&mut skipped),
        };
        if to_workers[turn].send(work).is_err() {
            return Ok(None);
        }
        turn = (turn + 1) % to_workers.len();
    }
    Ok(Some(ReadEnd {
        sha256: sha.finish_hex(),
        size,
        ids,
        stats,
        tail: skipped,
    }))
}

/// A chunk's body on its way to the packer.
enum Body {
    /// Compressed, in a pooled buffer.
    Compressed(Vec<u8>),
    /// Stored raw: the chunk's bytes in the chunker's window.
    Raw(ChunkBytes),
}

impl std::ops::Deref for Body {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Body::Compressed(v) => v,
            Body::Raw(b) => b,
        }
    }
}

/// A compressing worker: compresses (when that pays) each chunk it is given; the compressed
/// body goes on, or (stored raw) the chunk itself, and its compressed buffer back to `buffers`.
fn compress_chunks(
    buffers: &Buffers,
    work: std::sync::mpsc::Receiver<Work>,
    done: std::sync::mpsc::SyncSender<Compressed>,
) {
    for w in work {
        let mut compressed = buffers.take_for(zstd::zstd_safe::compress_bound(w.data.len()));
        let flags = super::compress::compress_into(&w.data, &mut compressed);
        let plain_len = w.data.len();
        let body = if flags & super::compress::FLAG_ZSTD != 0 {
            Body::Compressed(compressed)
        } else {
            buffers.give(compressed);
            Body::Raw(w.data)
        };
        let out = Compressed {
            id: w.id,
            flags,
            plain_len,
            file_offset: w.offset,
            covered: w.skipped + plain_len as u64,
            body,
        };
        if done.send(out).is_err() {
            return;
        }
    }
}

/// A pack's buffer that goes back to its pool when the last handle on the pack's bytes is
/// dropped (once the request that sent it is done with them).
struct PackBuffer {
    bytes: Vec<u8>,
    pool: PackBuffers,
}

impl AsRef<[u8]> for PackBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for PackBuffer {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.bytes));
    }
}

/// What the packer sealed.
struct Packed {
    new_plain: u64,
    new_sealed: u64,
}

/// The packer: takes the chunks back from the compressing workers in the reader's turn (file order),
/// fills packs and hands each to the async side; `None` when stopped.
fn pack_chunks(
    c: &ReadCtx,
    from_workers: Vec<std::sync::mpsc::Receiver<Compressed>>,
) -> Result<Option<Packed>, UploadError> {
    let fresh = || {
        let buf = c.pack_buffers.take()?;
        Some(PackWriter::with_buffer(&c.keys, c.pack_size, buf))
    };
    let Some(mut writer) = fresh() else {
        return Ok(None);
    };
    let mut in_pack: Vec<PackChunk> = Vec::new();
    let mut index = c.first;
    let mut covered = 0u64;
    let mut packed = Packed {
        new_plain: 0,
        new_sealed: 0,
    };
    let send = |writer: PackWriter<'_>,
                in_pack: &mut Vec<PackChunk>,
                index: &mut u64,
                covered: &mut u64|
     -> bool {
        if c.stop.is_cancelled() {
            return false;
        }
        let (bytes, _header) = writer.finish();
        let job = PackJob {
            index: *index,
            pack_id: c.keys.pack_id(&bytes),
            bytes: Bytes::from_owner(PackBuffer {
                bytes,
                pool: c.pack_buffers.clone(),
            }),
            chunks: std::mem::take(in_pack),
            covered: std::mem::take(covered),
        };
        *index += 1;
        c.tx.blocking_send(job).is_ok()
    };
    let mut turn = 0usize;
    // Each worker's queue ends when the reader is done with it; the next turn's end is the end.
    while let Ok(chunk) = from_workers[turn].recv() {
        turn = (turn + 1) % from_workers.len();
        if !writer.is_empty() && !writer.would_fit_body(chunk.body.len()) {
            let Some(next) = fresh() else {
                return Ok(None);
            };
            let full = std::mem::replace(&mut writer, next);
            if !send(full, &mut in_pack, &mut index, &mut covered) {
                return Ok(None);
            }
        }
        let entry: PackEntry = *writer
            .add_sealing(chunk.id, chunk.flags, chunk.plain_len, &chunk.body)
            // The pack was checked to have room just above (a chunk is at most 16 MiB, the
            // chunker's largest maximum): a refusal here is a bug.
            .map_err(|e| UploadError::Internal(e.to_string()))?;
        if let Body::Compressed(buf) = chunk.body {
            c.buffers.give(buf);
        }
        covered += chunk.covered;
        packed.new_plain += u64::from(entry.plain_len);
        packed.new_sealed += u64::from(entry.sealed_len);
        in_pack.push(PackChunk {
            entry,
            file_offset: Some(chunk.file_offset),
        });
    }
    if c.stop.is_cancelled() {
        return Ok(None);
    }
    if !writer.is_empty() && !send(writer, &mut in_pack, &mut index, &mut covered) {
        return Ok(None);
    }
    Ok(Some(packed))
}

/// The nonce of pack `n`'s message: the start of its opaque name (Discord allows 25 characters),
/// the same on every retry and resume, and saying nothing about the file.
fn nonce_of(name: &str) -> String {
    name.chars().take(25).collect()
}

/// A pack that was not posted: why, and (on a lane, when another lane may take it) the pack.
struct Failed {
    err: UploadError,
    job: Option<PackJob>,
}

type Posting = std::pin::Pin<
    Box<dyn std::future::Future<Output = (Option<Lane>, Result<PackRecord, Failed>)> + Send>,
>;

/// The task posting `job`: on `lane` (picked by the scheduler, its slot taken), or (without
/// lanes) on channel n mod len.
fn launch<S: PartStore>(
    ctx: &Upload2<S>,
    file: &FileManifest,
    lane: Option<Lane>,
    job: PackJob,
) -> Posting {
    let (store, catalog) = (ctx.store.clone(), ctx.catalog.clone());
    let Some(lane) = lane else {
        let channel = file.channels[(job.index % file.channels.len() as u64) as usize];
        let post = post_pack(
            store,
            catalog,
            &ctx.keys,
            file,
            job,
            Lane::Channel(channel),
            false,
        );
        return Box::pin(async move { (None, post.await) });
    };
    let post = post_pack(store, catalog, &ctx.keys, file, job, lane, true);
    Box::pin(async move { (Some(lane), post.await) })
}

/// Notes a webhook post of pack `pack` that lost its reply (a copy may stay on Discord until a
/// `prune` with a bot token); a note that cannot be written is a warning, not a failure.
fn note_lost_reply(catalog: &Catalog, id: &str, pack: u64, webhook: u64) {
    let lost = crate::catalog::LostReply {
        pack,
        webhook,
        at: OffsetDateTime::now_utc(),
    };
    if let Err(e) = catalog.note_lost_reply(id, lost) {
        tracing::warn!("the lost reply of pack {pack} could not be noted: {e}");
    }
}

/// Sleeps until `at`; never ends without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Posts one pack on `lane` and records it as soon as Discord has confirmed it. On one lane
/// of several (`on_lanes`), a failure gives the pack back for another try.
fn post_pack<S: PartStore>(
    store: Arc<S>,
    catalog: Catalog,
    keys: &Keys,
    file: &FileManifest,
    job: PackJob,
    lane: Lane,
    on_lanes: bool,
) -> impl std::future::Future<Output = Result<PackRecord, Failed>> + Send + 'static {
    let id = file.id.clone();
    let name = keys.object_name(ObjectKind::Pack, &id, job.index);
    let failed = |err: UploadError| Failed { err, job: None };
    async move {
        let size = job.bytes.len() as u64;
        let (index, pack_id) = (job.index, job.pack_id);
        let (data, keep, chunks) = if on_lanes {
            (job.bytes.clone(), Some(job), None)
        } else {
            // The only handle on the bytes: the request takes them without a copy.
            (job.bytes, None, Some(job.chunks))
        };
        let posted = store
            .put_part_on(
                lane,
                PutPart {
                    channel_id: 0,
                    filename: name.clone(),
                    nonce: nonce_of(&name),
                    data,
                    reload: None,
                },
            )
            .await;
        let remote = match posted {
            Ok(remote) => remote,
            Err(e) => {
                return Err(Failed {
                    err: e.into(),
                    job: keep,
                })
            }
        };
        let chunks = match (chunks, keep) {
            (Some(chunks), _) => chunks,
            (None, Some(job)) => job.chunks,
            (None, None) => {
                return Err(failed(UploadError::Internal(
                    "a pack lost its chunk list".into(),
                )))
            }
        };
        let rec = PackRecord {
            format: FORMAT_V2,
            index,
            pack_id,
            size,
            channel_id: remote.channel_id,
            message_id: remote.message_id,
            attachment_id: remote.attachment_id,
            attachment_name: name,
            uploaded_at: OffsetDateTime::now_utc(),
            chunks,
            webhook_id: match lane {
                Lane::Webhook(w) => Some(w),
                Lane::Channel(_) => None,
            },
        };
        let (c, r) = (catalog, rec.clone());
        tokio::task::spawn_blocking(move || c.save_pack(&id, &r))
            .await
            .map_err(|j| {
                failed(UploadError::Internal(format!(
                    "the pack record writer failed: {j}"
                )))
            })?
            .map_err(|e| failed(e.into()))?;
        Ok(rec)
    }
}

/// Numbers past the highest known pack that resume looks for: more than can be in flight.
const ADOPT_WINDOW: u64 = 2 * crate::config::MAX_CONCURRENCY as u64 + 2;

/// Looks on Discord for packs of `file` that were posted but never recorded (the process died
/// between Discord's reply and the record), by the names their numbers give; a pack by this
/// bot whose header opens with this repository's keys is recorded (its chunks then count as
/// stored, so they are never sent twice). Returns how many were adopted.
pub async fn adopt_orphans<S: PartStore>(
    store: &S,
    catalog: &Catalog,
    keys: &Keys,
    file: &FileManifest,
    records: &mut Vec<PackRecord>,
) -> Result<usize, UploadError> {
    if file.channels.is_empty() {
        return Ok(0);
    }
    if !store.reads_history() {
        tracing::info!(id = %file.id, "no bot token: unrecorded packs cannot be looked for in channel history");
        return Ok(0);
    }
    let since = file
        .created_at
        .checked_sub(time::Duration::minutes(10))
        .unwrap_or(file.created_at);
    let trusted = store.trusted_authors().await?;
    let mut adopted = 0;
    let mut searched_to = 0u64;
    loop {
        let known: HashSet<u64> = records.iter().map(|r| r.index).collect();
        let top = records.iter().map(|r| r.index + 1).max().unwrap_or(0);
        let end = top + ADOPT_WINDOW;
        if end <= searched_to {
            return Ok(adopted);
        }
        // Candidate names for the numbers not yet recorded, looked for in every channel: with
        // lanes a pack goes wherever it could leave soonest (docs/lanes.md 4).
        let names: HashMap<String, u64> = (searched_to..end)
            .filter(|n| !known.contains(n))
            .map(|n| (keys.object_name(ObjectKind::Pack, &file.id, n), n))
            .collect();
        searched_to = end;
        let mut found_any = false;
        for &channel in &file.channels {
            let is_wanted = |name: &str| names.contains_key(name);
            for remote in store.find_parts(channel, &is_wanted, since).await? {
                let Some(&n) = names.get(&remote.filename) else {
                    continue;
                };
                if !trusted.contains(&remote.author_id) {
                    tracing::warn!(
                        message = remote.message_id,
                        "a pack named like pack {n} of {} was not posted by this bot; not adopted",
                        file.id
                    );
                    continue;
                }
                if records.iter().any(|r| r.index == n) {
                    continue;
                }
                let bytes = store.read_part(&remote).await?;
                let header = match super::pack::PackReader::open(keys, &bytes) {
                    Ok(r) => r.header().clone(),
                    Err(e) => {
                        tracing::warn!(
                            "pack {n} of {} found on Discord does not open ({e}); not adopted",
                            file.id
                        );
                        continue;
                    }
                };
                let rec = PackRecord::adopted(
                    n,
                    keys.pack_id(&bytes),
                    bytes.len() as u64,
                    &remote,
                    &trusted,
                    &header.entries,
                );
                catalog.save_pack(&file.id, &rec)?;
                tracing::info!(id = %file.id, pack = n, "adopted a pack found on Discord");
                records.push(rec);
                adopted += 1;
                found_any = true;
            }
        }
        if !found_any {
            return Ok(adopted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// No more than `limit` pack buffers are out at once: the next taker waits until one comes
    /// back, and gives up once the upload stops.
    #[test]
    fn pack_buffers_bound_the_packs_alive() {
        let stop = CancellationToken::new();
        let pool = PackBuffers::new(2, stop.clone());
        let a = pool.take().expect("the first");
        let _b = pool.take().expect("the second");
        let (p, s) = (pool.clone(), stop.clone());
        let waiter = std::thread::spawn(move || {
            let got = p.take();
            (got.is_some(), s.is_cancelled())
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(!waiter.is_finished(), "a third buffer was handed out");
        pool.give(a);
        let (got, stopped) = waiter.join().unwrap();
        assert!(got && !stopped, "the buffer given back went to the waiter");

        let (p, s) = (pool.clone(), stop.clone());
        let waiter = std::thread::spawn(move || p.take().is_none());
        std::thread::sleep(Duration::from_millis(100));
        s.cancel();
        assert!(waiter.join().unwrap(), "a stopped upload's taker gives up");
    }
}
