//! `delete` and `undelete`.

use anyhow::{bail, Result};

use super::Session;

pub async fn delete(_s: &Session, _id: &str, _yes: bool, _keep_remote: bool) -> Result<()> {
    bail!("delete is not built yet")
}

pub async fn undelete(_s: &Session, _id: &str) -> Result<()> {
    bail!("undelete is not built yet")
}
