//! `info <id>`.

use anyhow::{bail, Result};

use super::Session;

pub fn info(_s: &Session, _id: &str, _json: bool) -> Result<()> {
    bail!("info is not built yet")
}
