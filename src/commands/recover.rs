//! `recover`.

use anyhow::{bail, Result};
use tokio_util::sync::CancellationToken;

use super::Session;

pub async fn recover(_s: &Session, _json: bool, _c: CancellationToken) -> Result<usize> {
    bail!("recover is not built yet")
}
