//! Moving files: splitting into parts, hashing, and the upload pipeline with resume.

mod adopt;
pub mod download;
mod reader;
mod source;
mod upload;

use std::path::Path;

use thiserror::Error;

use crate::catalog::CatalogError;
use crate::store::{SourceChanged, StoreError};

pub use adopt::adopt_orphans;
pub use source::{check_source, check_unchanged};
pub use upload::{run_upload, UploadCtx};

#[derive(Debug, Error)]
pub enum UploadError {
    #[error("cancelled")]
    Cancelled,
    /// Any failure talking to Discord except a changed source, which is always
    /// [`UploadError::SourceChanged`] (see the `From` impl).
    #[error("{0}")]
    Store(StoreError),
    #[error(transparent)]
    SourceChanged(#[from] SourceChanged),
    #[error("cannot read {path}: {reason}")]
    Source { path: String, reason: String },
    #[error("{0}")]
    Catalog(#[from] CatalogError),
    #[error("Discord refuses parts of even {0} bytes; check the server's upload limit")]
    CannotShrink(u64),
    #[error("packs of at most {limit} bytes cannot hold the repository's largest chunk ({needed} bytes with its framing); raise `part_size` or leave it at `auto`")]
    PackTooSmall { limit: u64, needed: u64 },
    #[error("the manifests of this file disagree about its parts ({0}); `info` shows them, and `upload` stores the file afresh under a new ID")]
    Inconsistent(String),
    /// A task of the pipeline panicked: a bug, reported as an error rather than a crash.
    #[error("dstore hit an internal error ({0}); please report it")]
    Internal(String),
}

impl From<StoreError> for UploadError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Source(changed) => Self::SourceChanged(changed),
            e => Self::Store(e),
        }
    }
}

impl UploadError {
    /// Errors after which no other part can succeed: stop every part in flight at once.
    pub fn is_fatal(&self) -> bool {
        match self {
            UploadError::Store(e) => e.is_fatal(),
            UploadError::SourceChanged(_)
            | UploadError::Source { .. }
            | UploadError::Catalog(_)
            | UploadError::Internal(_) => true,
            UploadError::Cancelled
            | UploadError::CannotShrink(_)
            | UploadError::PackTooSmall { .. }
            | UploadError::Inconsistent(_) => false,
        }
    }

    pub fn source(path: &Path, e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            return SourceChanged::new(path, "it is shorter now").into();
        }
        Self::Source {
            path: path.display().to_string(),
            reason: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_change_noticed_by_the_store_is_the_one_source_changed_error() {
        let from_store = UploadError::from(StoreError::from(SourceChanged::new("/x", "why")));
        let direct = UploadError::from(SourceChanged::new("/x", "why"));
        assert!(matches!(from_store, UploadError::SourceChanged(_)));
        assert_eq!(from_store.to_string(), direct.to_string());
    }
}
