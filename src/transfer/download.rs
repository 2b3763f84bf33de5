//! The download pipeline: every part fetched through its message (a fresh signed URL each
//! time), in parallel with bounded concurrency, hashed, and written at its offset into a partial
//! file beside the destination. Parts already right in the partial file are kept, so running the
//! same download again resumes it. The whole file's SHA-256 is computed on its own thread as the
//! written prefix grows, not in a second pass. Only a fully verified file is moved into place
//! ([`partial`]).

mod partial;

pub use partial::{default_file_mode, partial_path, Partial, PartialError, PlaceError, NAME_MAX};

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::catalog::{FileManifest, PartRecord};
use crate::hash::{sha256_hex, Sha256};
use crate::progress::Progress;
use crate::store::{PartStore, PartStream, RemotePart, StoreError};

/// How often a part whose bytes do not match its hash is fetched again.
const REFETCHES: u32 = 3;

/// A part that could not be brought back.
#[derive(Debug, Clone)]
pub struct LostPart {
    pub index: u64,
    pub offset: u64,
    pub length: u64,
    pub why: String,
}

impl std::fmt::Display for LostPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "part {} (bytes {}..{}): {}",
            self.index,
            self.offset,
            self.offset + self.length,
            self.why
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Store(StoreError),
    #[error("{} could not be downloaded: {}", crate::render::plural(.0.len() as u64, "part"), .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
    Lost(Vec<LostPart>),
    #[error("the downloaded file's SHA-256 is {got}, the manifest says {want}")]
    WholeHash { got: String, want: String },
    #[error("cannot write {path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DownloadError + '_ {
    move |e| DownloadError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Fetches a part until its bytes hash as recorded, or says why it cannot. The bytes stream
/// through in batches, hashed and (with `sink`) written at the part's offset, so memory holds a
/// batch, never the whole part.
pub async fn fetch_part<S: PartStore>(
    store: &S,
    p: &PartRecord,
    sink: Option<&Arc<File>>,
) -> Result<(), FetchError> {
    let mut last = String::new();
    for _ in 0..REFETCHES {
        let remote = locate_checked(store, p).await?;
        let stream = store
            .stream_part(&remote)
            .await
            .map_err(FetchError::from_store)?;
        match drain(stream, p, sink).await? {
            Ok(got) if got == p.sha256 => return Ok(()),
            Ok(got) => last = format!("its bytes hash to {got}, not {}", p.sha256),
            Err(why) => last = why,
        }
        tracing::warn!(
            "part {} arrived damaged ({last}); fetching it again",
            p.index
        );
    }
    Err(FetchError::Lost(format!("damaged on every try ({last})")))
}

/// Bytes hashed and written per blocking call.
const BATCH: usize = 1 << 20;

/// Hashes (and writes) one download of a part: its SHA-256, or why it fell short.
async fn drain(
    mut stream: PartStream,
    p: &PartRecord,
    sink: Option<&Arc<File>>,
) -> Result<Result<String, String>, FetchError> {
    let mut hasher = Sha256::default();
    let mut pos = 0u64;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let chunk = match stream.next().await {
            Some(Ok(chunk)) => Some(chunk),
            Some(Err(e)) => return Ok(Err(e.to_string())),
            None => None,
        };
        if let Some(c) = &chunk {
            if pos + (batch.len() + c.len()) as u64 > p.length {
                return Ok(Err("more bytes than the part holds".into()));
            }
            batch.extend_from_slice(c);
        }
        if batch.len() >= BATCH || (chunk.is_none() && !batch.is_empty()) {
            let out = sink.cloned();
            let offset = p.offset + pos;
            let len = batch.len() as u64;
            let (h, b, written) = tokio::task::spawn_blocking(move || {
                hasher.update(&batch);
                let written = out.map_or(Ok(()), |f| f.write_all_at(&batch, offset));
                batch.clear();
                (hasher, batch, written)
            })
            .await
            .map_err(|e| {
                FetchError::Fatal(StoreError::Protocol(format!(
                    "the download writer stopped: {e}"
                )))
            })?;
            written.map_err(|e| {
                FetchError::Fatal(StoreError::Protocol(format!(
                    "cannot write the download: {e}"
                )))
            })?;
            (hasher, batch, pos) = (h, b, pos + len);
        }
        if chunk.is_none() {
            break;
        }
    }
    if pos != p.length {
        return Ok(Err(format!("{pos} of {} bytes arrived", p.length)));
    }
    Ok(Ok(hasher.finish_hex()))
}

/// The part's message with a fresh URL, checked to hold the recorded number of bytes.
pub async fn locate_checked<S: PartStore>(
    store: &S,
    p: &PartRecord,
) -> Result<RemotePart, FetchError> {
    let remote = store
        .locate_part(p.channel_id, p.message_id, p.attachment_id)
        .await
        .map_err(FetchError::from_store)?;
    if remote.size != p.length {
        return Err(FetchError::Lost(format!(
            "Discord holds {} bytes, {} were stored",
            remote.size, p.length
        )));
    }
    Ok(remote)
}

/// Why a part fetch failed: the part is lost (others may still come), or everything must stop.
#[derive(Debug)]
pub enum FetchError {
    Lost(String),
    Fatal(StoreError),
}

impl FetchError {
    pub fn from_store(e: StoreError) -> Self {
        match e {
            StoreError::UnknownMessage { .. } => {
                Self::Lost("its message was deleted on Discord".into())
            }
            StoreError::ContentGone => Self::Lost("Discord no longer serves its content".into()),
            e => Self::Fatal(e),
        }
    }
}

/// Bytes of downloads in flight at most: the memory budget that bounds how many requests a
/// download keeps open (docs/lanes.md 3).
pub const DOWNLOAD_MEMORY: u64 = 96 * 1024 * 1024;

/// How many requests of up to `unit` bytes a download keeps in flight: as many as the memory
/// budget holds, so the link (not a fixed count) bounds it; never fewer than `configured`, the
/// `concurrency` setting, nor more than [`crate::config::MAX_CONCURRENCY`].
pub fn in_flight(configured: usize, unit: u64) -> usize {
    let max = crate::config::MAX_CONCURRENCY;
    let budget = (DOWNLOAD_MEMORY / unit.max(1)).min(max as u64) as usize;
    budget.max(configured).clamp(1, max)
}

/// Downloads `file` into the partial file, keeping parts already right there when it was
/// resumed. On success the partial file holds exactly the file, fsynced.
pub async fn download_into<S: PartStore>(
    store: Arc<S>,
    file: &FileManifest,
    parts: &[PartRecord],
    target: &Partial,
    concurrency: usize,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<(), DownloadError> {
    let partial = target.path.as_path();
    let out = target.file.clone();
    let todo = if target.resumed {
        already_there(&out, parts, progress)
            .await
            .map_err(io(partial))?
    } else {
        progress.set_parts(0, parts.len() as u64);
        parts.to_vec()
    };
    let (to_hasher, hasher) = prefix_hasher(out.try_clone().map_err(io(partial))?);
    let mut written = Written::default();
    let pending: std::collections::HashSet<u64> = todo.iter().map(|p| p.index).collect();
    for p in parts.iter().filter(|p| !pending.contains(&p.index)) {
        written.add(p.offset, p.length);
    }
    let _ = to_hasher.send(written.prefix);
    let mut lost = Vec::new();
    let mut results = stream::iter(todo)
        .map(|p| {
            let (store, out) = (store.clone(), out.clone());
            async move {
                let r = fetch_part(store.as_ref(), &p, Some(&out)).await;
                (p, r)
            }
        })
        .buffer_unordered(in_flight(
            concurrency,
            parts.iter().map(|p| p.length).max().unwrap_or(1),
        ));
    loop {
        let next = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(DownloadError::Cancelled),
            n = results.next() => n,
        };
        let Some((p, r)) = next else { break };
        match r {
            Ok(()) => {
                progress.part_done(p.length);
                let _ = to_hasher.send(written.add(p.offset, p.length));
            }
            Err(FetchError::Lost(why)) => lost.push(LostPart {
                index: p.index,
                offset: p.offset,
                length: p.length,
                why,
            }),
            Err(FetchError::Fatal(e)) => return Err(DownloadError::Store(e)),
        }
    }
    out.sync_all().map_err(io(partial))?;
    if !lost.is_empty() {
        lost.sort_by_key(|l| l.offset);
        return Err(DownloadError::Lost(lost));
    }
    drop(to_hasher);
    let stopped = || std::io::Error::other("the hashing thread stopped");
    let (got, hashed) = tokio::task::spawn_blocking(move || hasher.join())
        .await
        .map_err(|_| stopped())
        .and_then(|joined| joined.map_err(|_| stopped()))
        .and_then(|r| r)
        .map_err(io(partial))?;
    let want = file.sha256.clone().unwrap_or_default();
    if hashed != file.size || got != want {
        return Err(DownloadError::WholeHash { got, want });
    }
    Ok(())
}

/// The parts whose bytes are not yet right in the partial file; the others count as done.
async fn already_there(
    out: &Arc<File>,
    parts: &[PartRecord],
    progress: &Progress,
) -> std::io::Result<Vec<PartRecord>> {
    let (out, parts) = (out.clone(), parts.to_vec());
    let (todo, kept) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let mut todo = Vec::new();
        let mut kept = (0u64, 0u64);
        let mut buf = Vec::new();
        for p in parts {
            buf.resize(p.length as usize, 0);
            out.read_exact_at(&mut buf, p.offset)?;
            if sha256_hex(&buf) == p.sha256 {
                kept = (kept.0 + 1, kept.1 + p.length);
            } else {
                todo.push(p);
            }
        }
        Ok((todo, kept))
    })
    .await
    .map_err(std::io::Error::other)??;
    progress.set_parts(kept.0, kept.0 + todo.len() as u64);
    progress.set_position(kept.1);
    Ok(todo)
}

/// Hashes the partial file (through its own handle, never reopened by name) from its start up
/// to each contiguous end it is sent, so the whole file's SHA-256 is ready when the last part
/// lands. Returns the digest and how far it got.
fn prefix_hasher(
    f: File,
) -> (
    std::sync::mpsc::Sender<u64>,
    std::thread::JoinHandle<std::io::Result<(String, u64)>>,
) {
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let handle = std::thread::spawn(move || {
        let mut whole = Sha256::default();
        let mut at = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        for target in rx {
            while at < target {
                let n = ((target - at) as usize).min(buf.len());
                f.read_exact_at(&mut buf[..n], at)?;
                whole.update(&buf[..n]);
                at += n as u64;
            }
        }
        Ok((whole.finish_hex(), at))
    });
    (tx, handle)
}

/// Byte ranges written so far, and the end of the contiguous run from byte 0.
#[derive(Default)]
struct Written {
    pending: BTreeMap<u64, u64>,
    prefix: u64,
}

impl Written {
    fn add(&mut self, offset: u64, length: u64) -> u64 {
        self.pending.insert(offset, offset + length);
        while let Some(end) = self.pending.remove(&self.prefix) {
            self.prefix = end;
        }
        self.prefix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_advances_only_over_contiguous_parts() {
        let mut w = Written::default();
        assert_eq!(w.add(10, 10), 0);
        assert_eq!(w.add(30, 5), 0);
        assert_eq!(w.add(0, 10), 20);
        assert_eq!(w.add(20, 10), 35);
    }

    #[test]
    fn requests_in_flight_follow_the_memory_budget_not_a_fixed_count() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(in_flight(4, 8 * MIB), 12);
        assert_eq!(in_flight(4, 100 * MIB), 4, "never fewer than configured");
        assert_eq!(in_flight(1, 100 * MIB), 1);
        assert_eq!(in_flight(4, 1), crate::config::MAX_CONCURRENCY);
    }
}
