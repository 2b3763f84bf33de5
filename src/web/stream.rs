//! A download streamed to the browser with no copy on this machine, verified as the command's
//! download is: format 2 through the same chunk grouping and record checks as
//! `repo::download::Rebuild` (each chunk opened: tag, decompression and chunk ID, before its
//! bytes go out), format 1 part by part, each part's SHA-256 checked before it goes out. The
//! whole file's SHA-256 is checked last, and the last piece is held back until it matches: a
//! mismatch ends the response short of its Content-Length, so the browser sees a failed
//! download, never a complete wrong file.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::OnceCell;

use crate::catalog::{FileManifest, PackRef, PartRecord};
use crate::hash::{sha256_hex, Sha256};
use crate::repo::crypto::Keys;
use crate::repo::download::{check_manifest, group, Group, RebuildError, MAX_RANGE};
use crate::repo::pack::open_blob;
use crate::store::{PartStore, RemotePart, StoreError};
use crate::transfer::download::{locate_checked, FetchError};

/// How often a piece that arrived short or damaged is fetched again (as the command does).
const REFETCHES: u32 = 3;

/// Why the stream stopped; said to the log, the browser sees the cut.
pub type Failure = String;

/// The verified plaintext pieces of a file, in order.
type Pieces = BoxStream<'static, Result<Vec<Bytes>, Failure>>;

/// A spawned task, aborted when dropped (the browser went away: stop fetching).
struct Task<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn join<T>(t: Task<Result<T, Failure>>) -> Result<T, Failure> {
    let mut t = t;
    (&mut t.0)
        .await
        .map_err(|e| format!("a download task stopped: {e}"))?
}

/// The file's bytes as a stream of verified pieces; `Err` ends it early.
pub fn verified(
    pieces: Pieces,
    id: String,
    want: String,
) -> BoxStream<'static, Result<Bytes, Failure>> {
    struct St {
        pieces: Pieces,
        hasher: Option<Sha256>,
        held: Option<Vec<Bytes>>,
        out: VecDeque<Bytes>,
        done: bool,
        id: String,
        want: String,
    }
    let st = St {
        pieces,
        hasher: Some(Sha256::default()),
        held: None,
        out: VecDeque::new(),
        done: false,
        id,
        want,
    };
    stream::unfold(st, |mut st| async move {
        loop {
            if let Some(b) = st.out.pop_front() {
                return Some((Ok(b), st));
            }
            if st.done {
                return None;
            }
            match st.pieces.next().await {
                Some(Ok(piece)) => {
                    let mut h = st.hasher.take()?;
                    let (h, piece) = tokio::task::spawn_blocking(move || {
                        for b in &piece {
                            h.update(b);
                        }
                        (h, piece)
                    })
                    .await
                    .ok()?;
                    st.hasher = Some(h);
                    if let Some(before) = st.held.replace(piece) {
                        st.out.extend(before);
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
                None => {
                    st.done = true;
                    let got = st.hasher.take()?.finish_hex();
                    if got != st.want {
                        let e = RebuildError::WholeHash {
                            id: st.id.clone(),
                            got,
                            want: st.want.clone(),
                        };
                        return Some((Err(e.to_string()), st));
                    }
                    st.out.extend(st.held.take().unwrap_or_default());
                }
            }
        }
    })
    .boxed()
}

/// Format 2: the record checked before any request, then the groups of adjacent chunks
/// fetched `concurrency` at a time and opened, in file order.
pub fn v2<S: PartStore>(
    store: Arc<S>,
    keys: Keys,
    file: &FileManifest,
    channels: &[u64],
    concurrency: usize,
) -> Result<BoxStream<'static, Result<Bytes, Failure>>, RebuildError> {
    check_manifest(file, channels)?;
    let ctx = Arc::new(Ctx {
        store,
        keys,
        id: file.id.clone(),
        packs: file.packs.clone(),
        located: file.packs.iter().map(|_| OnceCell::new()).collect(),
    });
    let pieces = stream::iter(group(&file.chunks, MAX_RANGE))
        .map(move |g| {
            let ctx = ctx.clone();
            join(Task(tokio::spawn(async move { ctx.fetch(&g).await })))
        })
        .buffered(concurrency.max(1))
        .boxed();
    let want = file.sha256.clone().unwrap_or_default();
    Ok(verified(pieces, file.id.clone(), want))
}

struct Ctx<S> {
    store: Arc<S>,
    keys: Keys,
    id: String,
    packs: Vec<PackRef>,
    located: Vec<OnceCell<RemotePart>>,
}

impl<S: PartStore> Ctx<S> {
    /// The pack's attachment with a fresh URL and its recorded size, asked once per pack.
    async fn pack(&self, index: u32) -> Result<&RemotePart, Failure> {
        let p = &self.packs[index as usize];
        self.located[index as usize]
            .get_or_try_init(|| async {
                let found = self
                    .store
                    .locate_part(p.channel_id, p.message_id, p.attachment_id)
                    .await
                    .map_err(|e| format!("pack {index} of {}: {e}", self.id))?;
                if found.size != p.size {
                    return Err(format!(
                        "pack {index} of {} holds {} bytes, {} were recorded",
                        self.id, found.size, p.size
                    ));
                }
                Ok(found)
            })
            .await
    }

    /// One group's range, fetched and every chunk in it opened; fetched again a few times
    /// when it arrives short or does not open.
    async fn fetch(&self, g: &Group) -> Result<Vec<Bytes>, Failure> {
        let remote = self.pack(g.pack).await?;
        let mut last = String::new();
        for _ in 0..REFETCHES {
            let bytes = match self.store.read_range(remote, g.range.clone()).await {
                Ok(b) => b,
                Err(e @ (StoreError::CutOff(_) | StoreError::GaveUp { .. })) => {
                    last = e.to_string();
                    continue;
                }
                Err(e) => return Err(format!("pack {} of {}: {e}", g.pack, self.id)),
            };
            let (keys, pieces, start) = (self.keys.clone(), g.pieces.clone(), g.range.start);
            let opened = tokio::task::spawn_blocking(move || {
                pieces
                    .iter()
                    .map(|p| {
                        let from = (p.chunk.offset - start) as usize;
                        let blob = bytes
                            .get(from..from + p.chunk.sealed_len as usize)
                            .ok_or(p.index)?;
                        open_blob(&keys, &p.chunk.entry(), blob)
                            .map(Bytes::from)
                            .map_err(|_| p.index)
                    })
                    .collect::<Result<Vec<Bytes>, usize>>()
            })
            .await
            .map_err(|e| format!("a download task stopped: {e}"))?;
            match opened {
                Ok(plain) => return Ok(plain),
                Err(index) => last = format!("chunk {index} failed its check"),
            }
            tracing::warn!(
                "a range of {} did not open ({last}); fetching it again",
                self.id
            );
        }
        Err(format!("{} could not be read: {last}", self.id))
    }
}

/// Format 1: the parts in offset order, `concurrency` at a time, each whole in memory until
/// its SHA-256 matches (a part is at most the channel's attachment limit).
pub fn v1<S: PartStore>(
    store: Arc<S>,
    file: &FileManifest,
    mut parts: Vec<PartRecord>,
    concurrency: usize,
) -> Result<BoxStream<'static, Result<Bytes, Failure>>, Failure> {
    parts.sort_by_key(|p| p.offset);
    let mut at = 0u64;
    for p in &parts {
        if p.offset != at {
            return Err(format!(
                "the part records of {} do not cover bytes {at}..{}; `resume {}` restores them",
                file.id, p.offset, file.id
            ));
        }
        at += p.length;
    }
    if at != file.size {
        return Err(format!(
            "the part records of {} cover {at} of {} bytes; `resume {}` restores them",
            file.id, file.size, file.id
        ));
    }
    let pieces = stream::iter(parts)
        .map(move |p| {
            let store = store.clone();
            join(Task(tokio::spawn(
                async move { part(store.as_ref(), &p).await },
            )))
        })
        .buffered(concurrency.max(1))
        .boxed();
    let want = file.sha256.clone().unwrap_or_default();
    Ok(verified(pieces, file.id.clone(), want))
}

/// One format-1 part, fetched until its bytes hash as recorded.
async fn part<S: PartStore>(store: &S, p: &PartRecord) -> Result<Vec<Bytes>, Failure> {
    let mut last = String::new();
    for _ in 0..REFETCHES {
        let remote = match locate_checked(store, p).await {
            Ok(r) => r,
            Err(FetchError::Lost(why)) => return Err(format!("part {}: {why}", p.index)),
            Err(FetchError::Fatal(e)) => return Err(format!("part {}: {e}", p.index)),
        };
        match store.read_part(&remote).await {
            Ok(bytes) if bytes.len() as u64 == p.length => {
                let (hash, bytes) =
                    tokio::task::spawn_blocking(move || (sha256_hex(&bytes), bytes))
                        .await
                        .map_err(|e| format!("a download task stopped: {e}"))?;
                if hash == p.sha256 {
                    return Ok(vec![bytes]);
                }
                last = format!("its bytes hash to {hash}, not {}", p.sha256);
            }
            Ok(bytes) => last = format!("{} of {} bytes arrived", bytes.len(), p.length),
            Err(e @ (StoreError::CutOff(_) | StoreError::GaveUp { .. })) => last = e.to_string(),
            Err(e) => return Err(format!("part {}: {e}", p.index)),
        }
        tracing::warn!(
            "part {} arrived damaged ({last}); fetching it again",
            p.index
        );
    }
    Err(format!(
        "part {} was damaged on every try ({last})",
        p.index
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(parts: &[&'static [u8]]) -> Pieces {
        let parts: Vec<Result<Vec<Bytes>, Failure>> = parts
            .iter()
            .map(|p| Ok(vec![Bytes::from_static(p)]))
            .collect();
        stream::iter(parts).boxed()
    }

    async fn collect(s: BoxStream<'static, Result<Bytes, Failure>>) -> (Vec<u8>, Option<Failure>) {
        let mut out = Vec::new();
        let mut s = s;
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    #[tokio::test]
    async fn the_last_piece_waits_for_the_whole_hash() {
        let want = sha256_hex(b"abcdef");
        let (got, err) = collect(verified(pieces(&[b"ab", b"cd", b"ef"]), "x".into(), want)).await;
        assert_eq!((got.as_slice(), err), (&b"abcdef"[..], None));
        // A wrong whole hash: everything but the last piece went out, then the error.
        let wrong = sha256_hex(b"abcdeX");
        let (got, err) = collect(verified(pieces(&[b"ab", b"cd", b"ef"]), "x".into(), wrong)).await;
        assert_eq!(got, b"abcd");
        assert!(err.unwrap().contains("SHA-256"));
        let (got, err) = collect(verified(pieces(&[]), "x".into(), sha256_hex(b""))).await;
        assert!(got.is_empty() && err.is_none());
    }
}
