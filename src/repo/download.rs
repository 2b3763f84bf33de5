//! Getting a format-2 file back (docs/format.md 4, 5, 7.1, 8): the chunk list of `file.json`
//! checked before any request, grouped into `Range` requests of adjacent blobs, fetched with
//! bounded concurrency, each blob opened (tag, decompression, chunk ID) before its plaintext is
//! written at its place in the file, and the whole file's SHA-256 checked last. `verify --full`
//! runs the same path writing nothing. Resuming needs no record of its own: a chunk already in
//! the partial file is kept when its bytes still hash to its chunk ID.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::chunker::Buffers;
use super::compress::RESERVED_FLAGS;
use super::crypto::Keys;
use super::pack::{is_raw, open_blob_in_place, open_raw_blob_to, OpenedBlob};
use crate::catalog::{ChunkRef, FileManifest, PackRef};
use crate::hash::Sha256;
use crate::progress::Progress;
use crate::store::{PartStore, RemotePart, StoreError};
use dstore_direct::InOrderWriter;

/// The most sealed bytes one `Range` request asks for, and the most plaintext one group opens
/// (a single chunk larger than this is a group alone). Small enough that the last requests of
/// a download still spread over several connections, large enough that requests stay few.
pub const MAX_RANGE: u64 = 4 * 1024 * 1024;

/// Bytes a download holds at most in ranges in flight and groups waiting to be hashed (or
/// `concurrency` ranges, if more): eight ranges, twice the connections that fill a link whose
/// connections each carry a quarter of it, and little enough that the window with the key
/// derivation's memory stays the largest thing a download holds.
const WINDOW: u64 = 8 * MAX_RANGE;

/// Decompression buffers worth keeping for `file` with a window of `window` bytes.
fn spare_buffers(window: u64, file: &FileManifest) -> usize {
    let avg = file.size / (file.chunks.len() as u64).max(1);
    (window / avg.max(64 * 1024)).clamp(4, 256) as usize
}

/// How often a range that arrived short or did not open is fetched again.
const REFETCHES: u32 = 3;

/// One chunk of a group: its index in the file's chunk list, its record, where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub index: usize,
    pub chunk: ChunkRef,
    pub file_offset: u64,
}

impl Piece {
    /// The chunk's bytes in the file.
    pub fn file_range(&self) -> Range<u64> {
        self.file_offset..self.file_offset + u64::from(self.chunk.plain_len)
    }
}

/// One `Range` request: consecutive chunks of the file lying end to end in one pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub pack: u32,
    pub range: Range<u64>,
    pub pieces: Vec<Piece>,
}

impl Group {
    /// The most bytes the group holds at once: its fetched range or its plaintext.
    fn held_len(&self) -> u64 {
        (self.range.end - self.range.start).max(self.plain_len())
    }

    /// The group from its piece `i` on.
    fn rest_from(&self, i: usize) -> Group {
        let pieces = self.pieces[i..].to_vec();
        let start = pieces.first().map_or(self.range.end, |p| p.chunk.offset);
        Group {
            pack: self.pack,
            range: start..self.range.end,
            pieces,
        }
    }

    fn plain_len(&self) -> u64 {
        self.pieces
            .iter()
            .map(|p| u64::from(p.chunk.plain_len))
            .sum()
    }
}

/// Bytes a download may hold in fetched and opened groups, taken in file order.
#[derive(Clone)]
struct Window {
    permits: Arc<tokio::sync::Semaphore>,
    /// Permits in all; each is [`WINDOW_UNIT`] bytes.
    size: u32,
}

/// The window's grain: a KiB.
const WINDOW_UNIT: u64 = 1024;

impl Window {
    fn new(bytes: u64) -> Self {
        let size = (bytes / WINDOW_UNIT).clamp(1, u64::from(u32::MAX >> 4)) as u32;
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(size as usize)),
            size,
        }
    }

    /// Waits until `bytes` fit beside what is held. A group larger than the whole window takes
    /// all of it (it then goes alone), so every group can go.
    async fn take(&self, bytes: u64) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let n = bytes.div_ceil(WINDOW_UNIT).clamp(1, u64::from(self.size)) as u32;
        // The semaphore is never closed: `None` cannot happen while the window lives.
        self.permits.clone().acquire_many_owned(n).await.ok()
    }
}

/// Groups the chunks, in file order, into requests: a chunk joins the group before it when it
/// starts in the same pack where that group ends, and the group stays within `cap` sealed and
/// `cap` plain bytes.
pub fn group(chunks: &[ChunkRef], cap: u64) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    let mut file_offset = 0u64;
    let mut plain_in_last = 0u64;
    for (index, c) in chunks.iter().enumerate() {
        let piece = Piece {
            index,
            chunk: *c,
            file_offset,
        };
        file_offset += u64::from(c.plain_len);
        let end = c.offset + u64::from(c.sealed_len);
        let joins = out.last().is_some_and(|g| {
            g.pack == c.pack
                && g.range.end == c.offset
                && end - g.range.start <= cap
                && plain_in_last + u64::from(c.plain_len) <= cap
        });
        if joins {
            let g = out.last_mut().expect("checked above");
            g.range.end = end;
            g.pieces.push(piece);
            plain_in_last += u64::from(c.plain_len);
        } else {
            out.push(Group {
                pack: c.pack,
                range: c.offset..end,
                pieces: vec![piece],
            });
            plain_in_last = u64::from(c.plain_len);
        }
    }
    out
}

/// Why a format-2 file could not be brought back or checked. Each is one sentence.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("cancelled")]
    Cancelled,
    #[error("the record of {id} (file.json) is damaged: {why}; nothing was fetched (run `recover` to rewrite it from Discord)")]
    Manifest { id: String, why: String },
    #[error(
        "pack {pack} of this file ({id}) is gone from Discord; the file cannot be rebuilt from it"
    )]
    PackGone { id: String, pack: u32 },
    #[error("the pack {pack} of this file ({id}) changed on Discord: it holds {got} bytes, {want} were recorded; the file cannot be rebuilt from it")]
    PackChanged {
        id: String,
        pack: u32,
        got: u64,
        want: u64,
    },
    #[error("chunk {index} (bytes {}..{}) of {id} failed its check: the pack was altered or is not this file's", .bytes.start, .bytes.end)]
    Chunk {
        id: String,
        index: usize,
        bytes: Range<u64>,
    },
    #[error("the rebuilt file's SHA-256 is {got}, but {id} was stored with {want}: the record does not describe these chunks")]
    WholeHash {
        id: String,
        got: String,
        want: String,
    },
    #[error("{0}")]
    Store(StoreError),
    #[error("cannot write {}: {reason}", .path.display())]
    Io { path: PathBuf, reason: String },
}

/// Checks `file.json`'s chunk list before any request (a damaged or hand-edited record must
/// not send requests anywhere): pack indices in range, every blob inside its pack, the
/// plaintext lengths summing to the size, no flag of a newer dstore, every pack in one of
/// `channels`, and a SHA-256 to check against.
pub fn check_manifest(file: &FileManifest, channels: &[u64]) -> Result<(), RebuildError> {
    let bad = |why: String| RebuildError::Manifest {
        id: file.id.clone(),
        why,
    };
    if file.sha256.as_deref().is_none_or(|h| h.len() != 64) {
        return Err(bad("it has no SHA-256 of the whole file".into()));
    }
    for (i, p) in file.packs.iter().enumerate() {
        if !channels.contains(&p.channel_id) {
            return Err(bad(format!(
                "pack {i} is in channel {}, which is not one of the configured channels",
                p.channel_id
            )));
        }
    }
    let mut total = 0u64;
    for (i, c) in file.chunks.iter().enumerate() {
        let Some(pack) = file.packs.get(c.pack as usize) else {
            return Err(bad(format!(
                "chunk {i} names pack {}, but the file has {} packs",
                c.pack,
                file.packs.len()
            )));
        };
        let end = c.offset.checked_add(u64::from(c.sealed_len));
        if end.is_none_or(|end| end > pack.size) {
            return Err(bad(format!(
                "chunk {i} lies at bytes {}..{} of pack {}, which has only {} bytes",
                c.offset,
                c.offset.saturating_add(u64::from(c.sealed_len)),
                c.pack,
                pack.size
            )));
        }
        if c.flags & RESERVED_FLAGS != 0 {
            return Err(bad(format!(
                "chunk {i} has flags {:#04x}, written by a newer dstore (upgrade dstore)",
                c.flags
            )));
        }
        total += u64::from(c.plain_len);
    }
    if total != file.size {
        return Err(bad(format!(
            "its chunks hold {total} bytes, but the file has {}",
            file.size
        )));
    }
    Ok(())
}

/// Where the plaintext goes: the partial file, and whether an earlier run may have filled some
/// of it (then chunks whose bytes there hash to their ID are kept, not fetched).
#[derive(Clone)]
pub struct Sink {
    pub file: Arc<File>,
    pub path: PathBuf,
    pub resumed: bool,
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Chunks checked (opened, or found right in the partial file).
    pub chunks: u64,
    /// Of those, the ones kept from an earlier run.
    pub kept: u64,
    /// Range requests answered.
    pub requests: u64,
    /// Sealed bytes fetched.
    pub fetched: u64,
}

/// What one rebuild runs with.
pub struct Rebuild<'a, S> {
    pub store: Arc<S>,
    pub keys: &'a Keys,
    pub file: &'a FileManifest,
    pub channels: &'a [u64],
    pub concurrency: usize,
    pub progress: &'a Progress,
    pub cancel: &'a CancellationToken,
}

/// The shared state of one rebuild's tasks.
struct Ctx<S> {
    store: Arc<S>,
    keys: Keys,
    id: String,
    packs: Vec<PackRef>,
    located: Vec<OnceCell<RemotePart>>,
    sink: Option<Sink>,
    /// Decompression buffers, reused from group to group.
    buffers: Buffers,
    /// Receive buffers, reused from range to range.
    received: Received,
}

/// Spare receive buffers: a range's bytes land in the buffer of one already hashed, so a
/// download does not fault in fresh pages for every request. Holds no more than the window.
#[derive(Clone)]
struct Received {
    spare: Arc<std::sync::Mutex<Vec<bytes::BytesMut>>>,
    keep: usize,
}

impl Received {
    fn new(keep: usize) -> Self {
        Self {
            spare: Arc::default(),
            keep,
        }
    }

    fn take(&self) -> bytes::BytesMut {
        let spare = self.spare.lock().ok().and_then(|mut s| s.pop());
        spare.unwrap_or_default()
    }

    fn give(&self, buf: bytes::BytesMut) {
        if buf.capacity() == 0 {
            return;
        }
        if let Ok(mut s) = self.spare.lock() {
            if s.len() < self.keep {
                s.push(buf);
            }
        }
    }
}

/// What one group's task gives back.
enum Done {
    /// The plaintexts as the partial file of an earlier run holds them, each hashing to its ID.
    Kept(Plain),
    /// The plaintexts, fetched and opened (the group has a compressed chunk).
    Opened(Plain),
    /// The sealed bytes of a group of raw chunks as fetched: opened where they are written, in
    /// file order, straight into the writer's stage (no copy of the plaintext in between).
    Sealed(bytes::Bytes),
}

/// A group's plaintexts in order: raw chunks decrypted where they were fetched, the others in
/// buffers of their own (decompressed, or read back from the partial file).
struct Plain {
    fetched: bytes::BytesMut,
    pieces: Vec<PlainAt>,
}

enum PlainAt {
    Fetched(Range<usize>),
    Own(Vec<u8>),
}

impl Plain {
    fn owned(pieces: Vec<Vec<u8>>) -> Plain {
        Plain {
            fetched: bytes::BytesMut::new(),
            pieces: pieces.into_iter().map(PlainAt::Own).collect(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.pieces.iter().map(|p| match p {
            PlainAt::Fetched(r) => &self.fetched[r.clone()],
            PlainAt::Own(v) => &v[..],
        })
    }

    /// Gives the buffers of their own back for the next group's decompression, and the
    /// fetched one for the next range (when given).
    fn recycle(self, buffers: &Buffers, received: Option<&Received>) {
        if let Some(r) = received {
            r.give(self.fetched);
        }
        for p in self.pieces {
            if let PlainAt::Own(v) = p {
                buffers.give(v);
            }
        }
    }
}

/// A spawned task, aborted when dropped (an early return stops the others).
struct Task<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for Task<T> {
    type Output = Result<T, tokio::task::JoinError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

fn stopped(e: impl std::fmt::Display) -> RebuildError {
    RebuildError::Store(StoreError::Protocol(format!(
        "a download task stopped: {e}"
    )))
}

impl<S: PartStore> Rebuild<'_, S> {
    /// Fetches and opens every chunk, writing each into `sink` (when given) at its place, and
    /// checks the whole file's SHA-256. On success the sink holds exactly the file, fsynced.
    pub async fn run(&self, sink: Option<Sink>) -> Result<Summary, RebuildError> {
        check_manifest(self.file, self.channels)?;
        let groups = group(&self.file.chunks, MAX_RANGE);
        let window_len = WINDOW.max(self.concurrency as u64 * MAX_RANGE);
        let ctx = Arc::new(Ctx {
            store: self.store.clone(),
            keys: self.keys.clone(),
            id: self.file.id.clone(),
            packs: self.file.packs.clone(),
            located: self.file.packs.iter().map(|_| OnceCell::new()).collect(),
            sink: sink.clone(),
            // As many as the window holds of the file's average chunk, so few are freed and
            // allocated again.
            buffers: Buffers::new(spare_buffers(window_len, self.file)),
            received: Received::new((WINDOW / MAX_RANGE) as usize),
        });
        self.progress.set_parts(0, groups.len() as u64);
        // Requests in flight, and the bytes they and the groups waiting to be hashed may hold:
        // a group takes its share of the window, in file order, before its request leaves, and
        // gives it back once hashed, so memory stays bounded whatever the groups' sizes while
        // the link, not a count, bounds the transfer.
        let window = Window::new(window_len);
        // In file order (`buffered`), so the whole file is hashed as it comes, never read again.
        let mut results = stream::iter(groups)
            .then(|g| {
                let window = window.clone();
                async move {
                    let share = window.take(g.held_len()).await;
                    (g, share)
                }
            })
            .map(|(g, share)| {
                let ctx = ctx.clone();
                Task(tokio::spawn(async move {
                    let r = ctx.group(&g).await;
                    (g, r, share)
                }))
            })
            .buffered(crate::config::MAX_CONCURRENCY)
            .boxed();
        let mut hasher = Some(Sha256::default());
        // Fetched chunks come in file order: written around the page cache where the file
        // system allows (the dstore-direct crate), each with the sink its errors name.
        let mut writer = sink
            .clone()
            .map(|s| (InOrderWriter::new(s.file.clone(), &s.path), s));
        let mut summary = Summary::default();
        loop {
            let next = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(RebuildError::Cancelled),
                n = results.next() => n,
            };
            let Some(joined) = next else { break };
            let (g, done, share) = joined.map_err(stopped)?;
            let done = done?;
            summary.chunks += g.pieces.len() as u64;
            match &done {
                Done::Kept(_) => summary.kept += g.pieces.len() as u64,
                Done::Opened(_) | Done::Sealed(_) => {
                    summary.requests += 1;
                    summary.fetched += g.range.end - g.range.start;
                }
            }
            self.progress.part_done(g.plain_len());
            let (mut h, mut w) = (
                hasher.take().expect("put back after every group"),
                writer.take(),
            );
            // Raw chunks are opened here, in file order, into the writer's stage; a chunk that
            // does not open sends it and the rest of its group the way of compressed chunks.
            let (plain, rest, write) = match done {
                Done::Kept(plain) => (plain, g, false),
                Done::Opened(plain) => (plain, g, true),
                Done::Sealed(bytes) => {
                    let (keys, buffers, received) =
                        (ctx.keys.clone(), ctx.buffers.clone(), ctx.received.clone());
                    let (g2, h2, w2, opened) = tokio::task::spawn_blocking(move || {
                        let opened = open_into(&keys, &g, &bytes, &mut h, w.as_mut(), &buffers);
                        if let Ok(Ok(())) = opened {
                            if let Ok(buf) = bytes.try_into_mut() {
                                received.give(buf);
                            }
                        }
                        (g, h, w, opened)
                    })
                    .await
                    .map_err(stopped)?;
                    (h, w) = (h2, w2);
                    match opened? {
                        Ok(()) => {
                            drop(share);
                            (hasher, writer) = (Some(h), w);
                            continue;
                        }
                        Err(failed) => {
                            tracing::warn!(
                                "chunk {} of {} did not open; fetching it again",
                                g2.pieces[failed].index,
                                self.file.id
                            );
                            let rest = g2.rest_from(failed);
                            (ctx.fetch(&rest).await?, rest, true)
                        }
                    }
                }
            };
            let (buffers, received) = (ctx.buffers.clone(), ctx.received.clone());
            // Fetched chunks are written here, in file order, one group at a time: concurrent
            // writes to one file contend for its inode lock in the kernel, and each chunk is
            // written while the hash has just brought it into the cache.
            let (h2, w2) = tokio::task::spawn_blocking(move || {
                for (bytes, p) in plain.iter().zip(&rest.pieces) {
                    h.update(bytes);
                    if let (Some((w, sink)), true) = (&mut w, write) {
                        w.write_at(bytes, p.file_offset).map_err(|e| sink.io(e))?;
                    }
                }
                plain.recycle(&buffers, Some(&received));
                Ok::<_, RebuildError>((h, w))
            })
            .await
            .map_err(stopped)??;
            drop(share);
            (hasher, writer) = (Some(h2), w2);
        }
        if let Some((mut w, sink)) = writer {
            tokio::task::spawn_blocking(move || {
                w.flush().map_err(|e| sink.io(e))?;
                tracing::debug!(direct = w.direct_bytes(), "written around the page cache");
                Ok::<_, RebuildError>(())
            })
            .await
            .map_err(stopped)??;
        }
        let got = hasher.expect("put back after every group").finish_hex();
        let want = self.file.sha256.clone().unwrap_or_default();
        if got != want {
            return Err(RebuildError::WholeHash {
                id: self.file.id.clone(),
                got,
                want,
            });
        }
        if let Some(sink) = &sink {
            sink.file.sync_all().map_err(|e| sink.io(e))?;
        }
        Ok(summary)
    }
}

impl Sink {
    fn io(&self, e: std::io::Error) -> RebuildError {
        RebuildError::Io {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }
}

impl<S: PartStore> Ctx<S> {
    /// One group: kept from the partial file when every chunk there hashes to its ID, else
    /// fetched and opened.
    async fn group(self: &Arc<Self>, g: &Group) -> Result<Done, RebuildError> {
        if let Some(plain) = self.already_there(g).await? {
            return Ok(Done::Kept(Plain::owned(plain)));
        }
        // Written by the caller, in file order, once hashed.
        if g.pieces.iter().all(|p| is_raw(&p.chunk.entry())) {
            return Ok(Done::Sealed(self.fetch_sealed(g).await?));
        }
        Ok(Done::Opened(self.fetch(g).await?))
    }

    /// The group's chunks as the partial file of an earlier run holds them, if all are right.
    async fn already_there(&self, g: &Group) -> Result<Option<Vec<Vec<u8>>>, RebuildError> {
        let Some(sink) = self.sink.clone().filter(|s| s.resumed) else {
            return Ok(None);
        };
        let (keys, pieces) = (self.keys.clone(), g.pieces.clone());
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(pieces.len());
            for p in &pieces {
                let mut buf = vec![0u8; p.chunk.plain_len as usize];
                sink.file
                    .read_exact_at(&mut buf, p.file_offset)
                    .map_err(|e| sink.io(e))?;
                // The chunk ID is the proof: a keyed hash (SHA-256 unencrypted) of the plaintext.
                if keys.chunk_id(&buf) != p.chunk.id {
                    return Ok(None);
                }
                out.push(buf);
            }
            Ok(Some(out))
        })
        .await
        .map_err(stopped)?
    }

    /// The pack's attachment with a fresh URL, asked once per pack.
    async fn pack(&self, index: u32) -> Result<&RemotePart, RebuildError> {
        let p = &self.packs[index as usize];
        self.located[index as usize]
            .get_or_try_init(|| locate(self.store.as_ref(), &self.id, index, p))
            .await
    }

    fn store_error(&self, pack: u32, e: StoreError) -> RebuildError {
        store_error(&self.id, pack, e)
    }

    /// The group's sealed bytes, in a spare receive buffer; a range that arrives short is
    /// fetched again a few times.
    async fn fetch_sealed(&self, g: &Group) -> Result<bytes::Bytes, RebuildError> {
        let remote = self.pack(g.pack).await?;
        let mut attempt = 1;
        loop {
            let buf = self.received.take();
            match self
                .store
                .read_range_into(remote, g.range.clone(), buf)
                .await
            {
                Ok(bytes) => return Ok(bytes),
                Err(e @ (StoreError::CutOff(_) | StoreError::GaveUp { .. }))
                    if attempt < REFETCHES =>
                {
                    tracing::warn!(
                        "bytes {:?} of pack {} arrived short ({e}); fetching them again",
                        g.range,
                        g.pack
                    );
                    attempt += 1;
                }
                Err(e) => return Err(self.store_error(g.pack, e)),
            }
        }
    }

    /// Fetches the group's range and opens every chunk in it; a range that arrives short or
    /// does not open is fetched again a few times before it counts as damaged.
    async fn fetch(&self, g: &Group) -> Result<Plain, RebuildError> {
        let mut failure = None;
        for attempt in 1..=REFETCHES {
            let bytes = self.fetch_sealed(g).await?;
            let (keys, pieces, start) = (self.keys.clone(), g.pieces.clone(), g.range.start);
            let (buffers, received) = (self.buffers.clone(), self.received.clone());
            let opened = tokio::task::spawn_blocking(move || {
                open_all(&keys, &pieces, start, bytes, &buffers, &received)
            })
            .await
            .map_err(stopped)?;
            match opened {
                Ok(plain) => return Ok(plain),
                Err(piece) => {
                    tracing::warn!(
                        "chunk {} of {} did not open (try {attempt} of {REFETCHES})",
                        piece.index,
                        self.id
                    );
                    failure = Some(piece);
                }
            }
        }
        let piece = failure.unwrap_or(g.pieces[0]);
        Err(RebuildError::Chunk {
            id: self.id.clone(),
            index: piece.index,
            bytes: piece.file_range(),
        })
    }
}

/// Opens each chunk of a group from the group's bytes (which start at `start` in the pack), in
/// place: their plaintexts, or the first chunk that failed.
fn open_all(
    keys: &Keys,
    pieces: &[Piece],
    start: u64,
    bytes: bytes::Bytes,
    buffers: &Buffers,
    received: &Received,
) -> Result<Plain, Piece> {
    // The only handle on a fetched body: decrypted where it lies, else copied once.
    let mut fetched = bytes
        .try_into_mut()
        .unwrap_or_else(|shared| bytes::BytesMut::from(&shared[..]));
    let mut out = Vec::with_capacity(pieces.len());
    for p in pieces {
        let from = (p.chunk.offset - start) as usize;
        let at = from..from + p.chunk.sealed_len as usize;
        let Some(blob) = fetched.get_mut(at.clone()) else {
            Plain {
                fetched,
                pieces: out,
            }
            .recycle(buffers, None);
            return Err(*p);
        };
        let mut plain = buffers.take_for(p.chunk.plain_len as usize);
        match open_blob_in_place(keys, &p.chunk.entry(), blob, &mut plain) {
            Ok(OpenedBlob::InPlace(r)) => {
                buffers.give(plain);
                out.push(PlainAt::Fetched(from + r.start..from + r.end));
            }
            Ok(OpenedBlob::Decompressed) => out.push(PlainAt::Own(plain)),
            Err(_) => {
                buffers.give(plain);
                Plain {
                    fetched,
                    pieces: out,
                }
                .recycle(buffers, None);
                return Err(*p);
            }
        }
    }
    if !out.iter().any(|p| matches!(p, PlainAt::Fetched(_))) {
        // Every chunk was decompressed into a buffer of its own: the fetched buffer goes back
        // now, for the next range, not after the group is hashed.
        received.give(std::mem::take(&mut fetched));
    }
    Ok(Plain {
        fetched,
        pieces: out,
    })
}

/// Opens the raw chunks of a fetched group (`bytes`, its whole range) in file order, each
/// decrypted straight into the room the writer keeps for it (or, where it keeps none, or with no
/// writer, into a buffer then written), hashed into `h` and written only once its tag and chunk
/// ID checked. `Err(i)` when chunk `i` did not open: the ones before it are done.
fn open_into(
    keys: &Keys,
    g: &Group,
    bytes: &[u8],
    h: &mut Sha256,
    mut w: Option<&mut (InOrderWriter, Sink)>,
    buffers: &Buffers,
) -> Result<Result<(), usize>, RebuildError> {
    for (i, p) in g.pieces.iter().enumerate() {
        let from = (p.chunk.offset - g.range.start) as usize;
        let Some(blob) = bytes.get(from..from + p.chunk.sealed_len as usize) else {
            return Ok(Err(i));
        };
        let entry = p.chunk.entry();
        let len = p.chunk.plain_len as usize;
        if let Some((writer, sink)) = w.as_deref_mut() {
            if let Some(room) = writer.reserve(p.file_offset, len).map_err(|e| sink.io(e))? {
                if open_raw_blob_to(keys, &entry, blob, room).is_err() {
                    return Ok(Err(i));
                }
                h.update(room);
                writer.commit(len).map_err(|e| sink.io(e))?;
                continue;
            }
        }
        let mut buf = buffers.take_for(len);
        buf.resize(len, 0);
        if open_raw_blob_to(keys, &entry, blob, &mut buf).is_err() {
            buffers.give(buf);
            return Ok(Err(i));
        }
        h.update(&buf);
        if let Some((writer, sink)) = w.as_deref_mut() {
            writer
                .write_at(&buf, p.file_offset)
                .map_err(|e| sink.io(e))?;
        }
        buffers.give(buf);
    }
    Ok(Ok(()))
}

/// Pack `index` of file `id` on Discord, with a fresh URL, checked to have its recorded size.
async fn locate<S: PartStore>(
    store: &S,
    id: &str,
    index: u32,
    p: &PackRef,
) -> Result<RemotePart, RebuildError> {
    let found = store
        .locate_part(p.channel_id, p.message_id, p.attachment_id)
        .await
        .map_err(|e| store_error(id, index, e))?;
    if found.size != p.size {
        return Err(RebuildError::PackChanged {
            id: id.to_string(),
            pack: index,
            got: found.size,
            want: p.size,
        });
    }
    Ok(found)
}

fn store_error(id: &str, pack: u32, e: StoreError) -> RebuildError {
    match e {
        StoreError::UnknownMessage { .. } | StoreError::ContentGone => RebuildError::PackGone {
            id: id.to_string(),
            pack,
        },
        e => RebuildError::Store(e),
    }
}

/// `verify` without `--full`: each pack the file uses, looked up on Discord. The problems
/// found, by pack index, each a sentence; the number of packs checked.
pub async fn check_packs<S: PartStore>(
    store: &S,
    file: &FileManifest,
    channels: &[u64],
    concurrency: usize,
) -> Result<(Vec<(u32, String)>, usize), RebuildError> {
    check_manifest(file, channels)?;
    let used: std::collections::BTreeSet<u32> = file.chunks.iter().map(|c| c.pack).collect();
    let checked = used.len();
    let mut found: Vec<(u32, String)> = Vec::new();
    let mut checks = stream::iter(used)
        .map(|i| async move {
            let r = locate(store, &file.id, i, &file.packs[i as usize]).await;
            (i, r)
        })
        .buffer_unordered(concurrency.max(1));
    while let Some((i, r)) = checks.next().await {
        match r {
            Ok(_) => {}
            Err(e @ (RebuildError::PackGone { .. } | RebuildError::PackChanged { .. })) => {
                found.push((i, e.to_string()))
            }
            Err(e) => return Err(e),
        }
    }
    found.sort();
    Ok((found, checked))
}

#[cfg(test)]
#[path = "download_tests.rs"]
mod tests;
