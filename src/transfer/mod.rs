//! Moving files: splitting into parts, hashing, and the upload pipeline with resume.

mod adopt;
pub mod download;
mod reader;
mod upload;

use std::path::Path;

use thiserror::Error;

use crate::catalog::CatalogError;
use crate::store::StoreError;

pub use adopt::adopt_orphans;
pub use upload::{check_source, run_upload, UploadCtx};

#[derive(Debug, Error)]
pub enum UploadError {
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the source file has changed since the upload started ({0}); nothing was overwritten: restore the original file or start a new `upload`")]
    SourceChanged(String),
    #[error("cannot read {path}: {reason}")]
    Source { path: String, reason: String },
    #[error("{0}")]
    Catalog(#[from] CatalogError),
    #[error("Discord refuses parts of even {0} bytes; check the server's upload limit")]
    CannotShrink(u64),
    #[error("the manifests of this file disagree about its parts ({0}); `info` shows them, and `upload` stores the file afresh under a new ID")]
    Inconsistent(String),
    /// A task of the pipeline panicked: a bug, reported as an error rather than a crash.
    #[error("dstore hit an internal error ({0}); please report it")]
    Internal(String),
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
            | UploadError::Inconsistent(_) => false,
        }
    }

    pub fn source(path: &Path, e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            return Self::SourceChanged("it is shorter now".into());
        }
        Self::Source {
            path: path.display().to_string(),
            reason: e.to_string(),
        }
    }
}
