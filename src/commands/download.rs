//! `download <id> [dest]`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use tokio_util::sync::CancellationToken;

use super::Session;

pub async fn download(
    _s: &Session,
    _id: &str,
    _dest: Option<&Path>,
    _force: bool,
    _json: bool,
    _c: CancellationToken,
) -> Result<PathBuf> {
    bail!("download is not built yet")
}
