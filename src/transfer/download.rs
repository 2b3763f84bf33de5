//! The download pipeline: every part fetched through its message (a fresh signed URL each
//! time), in parallel with bounded concurrency, hashed, and written at its offset into a partial
//! file beside the destination. Parts already right in the partial file are kept, so running the
//! same download again resumes it. Only a fully verified file is renamed into place.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::catalog::{FileManifest, PartRecord};
use crate::progress::Progress;
use crate::store::{PartStore, RemotePart, StoreError};

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
    #[error("{} part(s) could not be downloaded: {}", .0.len(), .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
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

/// Fetches a part until its bytes hash as recorded, or says why it cannot.
pub async fn fetch_verified<S: PartStore>(
    store: &S,
    p: &PartRecord,
) -> Result<bytes::Bytes, FetchError> {
    let mut last = String::new();
    for _ in 0..REFETCHES {
        let remote = locate_checked(store, p).await?;
        let bytes = store
            .read_part(&remote)
            .await
            .map_err(FetchError::from_store)?;
        let got = hex::encode(Sha256::digest(&bytes));
        if got == p.sha256 {
            return Ok(bytes);
        }
        last = format!("its bytes hash to {got}, not {}", p.sha256);
        tracing::warn!("part {} arrived damaged; fetching it again", p.index);
    }
    Err(FetchError::Lost(format!("damaged on every try ({last})")))
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

/// Downloads `file` into `partial`, keeping parts already right there. On success the partial
/// file holds exactly the file, fsynced.
pub async fn download_into<S: PartStore>(
    store: Arc<S>,
    file: &FileManifest,
    parts: &[PartRecord],
    partial: &Path,
    concurrency: usize,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<(), DownloadError> {
    let resuming = partial.exists();
    let out = Arc::new(open_partial(partial, file.size).map_err(io(partial))?);
    let todo = if resuming {
        already_there(&out, parts, progress)
            .await
            .map_err(io(partial))?
    } else {
        progress.set_parts(0, parts.len() as u64);
        parts.to_vec()
    };
    let mut lost = Vec::new();
    let mut results = stream::iter(todo)
        .map(|p| {
            let (store, out) = (store.clone(), out.clone());
            async move {
                let r = fetch_verified(store.as_ref(), &p).await;
                (p, r.map(|b| (b, out)))
            }
        })
        .buffer_unordered(concurrency);
    loop {
        let next = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(DownloadError::Cancelled),
            n = results.next() => n,
        };
        let Some((p, r)) = next else { break };
        match r {
            Ok((bytes, out)) => {
                let offset = p.offset;
                tokio::task::spawn_blocking(move || out.write_all_at(&bytes, offset))
                    .await
                    .expect("writer does not panic")
                    .map_err(io(partial))?;
                progress.part_done(p.length);
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
    let want = file.sha256.clone().unwrap_or_default();
    let path = partial.to_path_buf();
    let got = tokio::task::spawn_blocking(move || hash_file(&path))
        .await
        .expect("hasher does not panic")
        .map_err(io(partial))?;
    if got != want {
        return Err(DownloadError::WholeHash { got, want });
    }
    Ok(())
}

fn open_partial(path: &Path, size: u64) -> std::io::Result<File> {
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    if f.metadata()?.len() != size {
        f.set_len(size)?;
    }
    Ok(f)
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
            if hex::encode(Sha256::digest(&buf)) == p.sha256 {
                kept = (kept.0 + 1, kept.1 + p.length);
            } else {
                todo.push(p);
            }
        }
        Ok((todo, kept))
    })
    .await
    .expect("checker does not panic")?;
    progress.set_parts(kept.0, kept.0 + todo.len() as u64);
    progress.set_position(kept.1);
    Ok(todo)
}

pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}
