//! `restore <folder>[/<sub>] [dest] [--at TIME]` (docs/sync.md 4): a synced folder, or one file or
//! subfolder of it, as a snapshot holds it, every file verified.

use std::path::{Path, PathBuf};

use anyhow::Result;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::upload2::RepoKeys;
use super::Session;
use crate::render::{human_bytes, plural};
use crate::sync::restore::{select, Restore, Restored};

/// Restores `spec` as it was at `at` (default: the latest snapshot) into `dest` (default:
/// `./<name>` of what is restored).
pub async fn restore(
    s: &Session,
    repo: &RepoKeys,
    spec: &str,
    dest: Option<&Path>,
    at: Option<OffsetDateTime>,
    force: bool,
    cancel: CancellationToken,
) -> Result<(Restored, PathBuf)> {
    let (folder, sub) = super::sync::resolve_or_fail(s, spec)?;
    let local = super::sync::snapshot_at(s, &folder, at)?;
    let snap = &local.snapshot;
    let nodes = select(snap, &sub)?;
    let single_file = !sub.is_empty()
        && nodes.len() == 1
        && snap
            .node(&sub)
            .is_some_and(|n| n.kind != crate::repo::snapshot::Kind::Dir);
    let own_name = if sub.is_empty() {
        snap.name.clone()
    } else {
        sub.rsplit('/').next().unwrap_or(&sub).to_string()
    };
    let dest = match dest {
        Some(d) => d.to_path_buf(),
        None if single_file => PathBuf::from("."),
        None => PathBuf::from(&own_name),
    };
    let job = Restore {
        store: s.store()?,
        keys: &repo.keys,
        channels: &s.config.channels,
        concurrency: s.config.concurrency,
        cancel: &cancel,
        force,
    };
    let done = job.run(snap, &nodes, &dest).await?;
    Ok((done, dest))
}

/// The command: restores and says what it wrote.
#[allow(clippy::too_many_arguments)]
pub async fn command(
    s: &Session,
    spec: &str,
    dest: Option<&Path>,
    at: Option<OffsetDateTime>,
    force: bool,
    cancel: CancellationToken,
) -> Result<()> {
    let Some(repo) = s.repository().await? else {
        anyhow::bail!("there is no format-2 repository here or on Discord, so nothing to restore");
    };
    let repo = RepoKeys::from(repo.as_ref());
    let (done, dest) = restore(s, &repo, spec, dest, at, force, cancel).await?;
    println!(
        "Restored {} ({}), {} and {} into {}; every file verified.",
        plural(done.files as u64, "file"),
        human_bytes(done.bytes),
        plural(done.dirs as u64, "folder"),
        plural(done.links as u64, "link"),
        dest.display()
    );
    Ok(())
}
