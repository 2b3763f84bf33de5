//! `verify [--full] <id>`.

use anyhow::{bail, Result};
use tokio_util::sync::CancellationToken;

use super::Session;

pub async fn verify(
    _s: &Session,
    _id: &str,
    _full: bool,
    _json: bool,
    _c: CancellationToken,
) -> Result<()> {
    bail!("verify is not built yet")
}
