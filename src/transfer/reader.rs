//! Reads the source file in offset order on a blocking thread: hashes each part, checks parts
//! already stored against their recorded SHA-256, and hands the others to the uploaders through
//! a channel of one, so memory holds about (concurrency + 1) parts. The whole file's SHA-256 is
//! computed on a second thread, so the two digests run side by side.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::UploadError;
use crate::catalog::layout::PartSpan;
use crate::hash::{sha256_hex, Sha256};
use crate::store::SourceChanged;

/// A span of the file and what is known of it.
#[derive(Clone, Debug)]
pub enum Item {
    /// Stored on Discord already; its bytes must still hash to this.
    Stored(PartSpan, String),
    /// To upload.
    Pending(PartSpan),
}

impl Item {
    pub fn span(&self) -> PartSpan {
        match self {
            Item::Stored(s, _) | Item::Pending(s) => *s,
        }
    }
}

/// A part read and hashed, ready to post.
pub struct Job {
    pub span: PartSpan,
    pub data: Bytes,
    pub sha256: String,
}

/// Starts the reader; it returns the whole file's SHA-256 once every item has been read.
pub fn spawn(
    path: PathBuf,
    items: Vec<Item>,
    tx: mpsc::Sender<Job>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<Result<Option<String>, UploadError>> {
    tokio::task::spawn_blocking(move || {
        let mut file = File::open(&path).map_err(|e| UploadError::source(&path, e))?;
        let (to_whole, hashed, whole) = whole_file_hasher()
            .map_err(|e| UploadError::Internal(format!("cannot start the hashing thread: {e}")))?;
        for item in items {
            if cancel.is_cancelled() {
                return Ok(None);
            }
            let span = item.span();
            let data =
                Bytes::from(read_span(&mut file, span).map_err(|e| UploadError::source(&path, e))?);
            if to_whole.send(data.clone()).is_err() {
                return Ok(None);
            }
            let sha256 = sha256_hex(&data);
            // Wait for the whole-file digest to let go of this part, so the uploader holds the
            // only handle and its first attempt needs no copy.
            if hashed.recv().is_err() {
                return Ok(None);
            }
            match item {
                Item::Stored(_, want) if want != sha256 => {
                    let what = format!(
                        "bytes {}..{} no longer match part {} already stored",
                        span.offset,
                        span.end(),
                        span.index
                    );
                    return Err(SourceChanged::new(&path, what).into());
                }
                Item::Stored(..) => {}
                Item::Pending(span) => {
                    let job = Job { span, data, sha256 };
                    if tx.blocking_send(job).is_err() {
                        return Ok(None); // the uploaders stopped
                    }
                }
            }
        }
        drop(to_whole);
        let sha = whole
            .join()
            .map_err(|_| UploadError::Internal("the whole-file hasher stopped".into()))?;
        Ok(Some(sha))
    })
}

/// Parts in, "dropped it" out, and the thread that ends with the whole file's SHA-256.
type Hasher = (
    std::sync::mpsc::SyncSender<Bytes>,
    std::sync::mpsc::Receiver<()>,
    std::thread::JoinHandle<String>,
);

/// A thread that hashes the parts it is sent, in order, into the whole file's SHA-256, and says
/// when it has dropped each one.
fn whole_file_hasher() -> std::io::Result<Hasher> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Bytes>(1);
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<()>(1);
    let handle = std::thread::Builder::new()
        .name("dstore-hash".into())
        .spawn(move || {
            let mut whole = Sha256::default();
            for data in rx {
                whole.update(&data);
                drop(data);
                if done_tx.send(()).is_err() {
                    break;
                }
            }
            whole.finish_hex()
        })?;
    Ok((tx, done_rx, handle))
}

/// Reads exactly the bytes of `span`.
pub fn read_span(file: &mut File, span: PartSpan) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(span.offset))?;
    let mut data = Vec::with_capacity(span.length as usize);
    file.take(span.length).read_to_end(&mut data)?;
    if data.len() as u64 != span.length {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the file is shorter than when the upload started",
        ));
    }
    Ok(data)
}
