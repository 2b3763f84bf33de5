//! `versions <synced path>` (docs/sync.md 4): every version of a synced file, from the folder's
//! snapshots: where its content changed, and where it was deleted.

use anyhow::{bail, Result};
use serde::Serialize;
use time::OffsetDateTime;

use super::Session;
use crate::render::human_bytes;
use crate::repo::snapshot::Kind;

/// One version of a file, or its deletion.
#[derive(Debug, Clone, Serialize)]
pub struct Version {
    /// The first snapshot holding this content (or missing the file, when deleted).
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub host: String,
    pub deleted: bool,
    pub size: u64,
    pub sha256: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub mtime: OffsetDateTime,
}

/// The versions of `path` in `folder`'s snapshots, oldest first.
pub fn versions(s: &Session, folder: &crate::sync::Folder, path: &str) -> Result<Vec<Version>> {
    let mut out: Vec<Version> = Vec::new();
    for l in super::sync::folders(s).snapshots(&folder.id)? {
        let snap = &l.snapshot;
        let node = snap.node(path).filter(|n| n.kind == Kind::File);
        let last = out.last();
        match node {
            Some(n) => {
                let same = last.is_some_and(|v| !v.deleted && v.sha256 == n.sha256);
                if !same {
                    out.push(Version {
                        seq: snap.seq,
                        time: snap.time,
                        host: snap.host.clone(),
                        deleted: false,
                        size: n.size.unwrap_or(0),
                        sha256: n.sha256.clone(),
                        mtime: n.mtime,
                    });
                }
            }
            None => {
                if last.is_some_and(|v| !v.deleted) {
                    out.push(Version {
                        seq: snap.seq,
                        time: snap.time,
                        host: snap.host.clone(),
                        deleted: true,
                        size: 0,
                        sha256: None,
                        mtime: snap.time,
                    });
                }
            }
        }
    }
    Ok(out)
}

pub fn command(s: &Session, spec: &str, json: bool) -> Result<()> {
    let (folder, path) = super::sync::resolve_or_fail(s, spec)?;
    if path.is_empty() {
        bail!(
            "name a file inside the folder: `versions {}/<path>`",
            folder.name
        );
    }
    let list = versions(s, &folder, &path)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if list.is_empty() {
        bail!(
            "{}/{path} is in no snapshot of {} ({})",
            folder.name,
            folder.name,
            folder.id
        );
    }
    let fmt = time::format_description::well_known::Rfc3339;
    println!("{}/{path}:", folder.name);
    for v in &list {
        let when = v.time.format(&fmt).unwrap_or_default();
        if v.deleted {
            println!("  snapshot {:>4}  {when}  deleted", v.seq);
        } else {
            println!(
                "  snapshot {:>4}  {when}  {:>10}  sha256 {}",
                v.seq,
                human_bytes(v.size),
                v.sha256.as_deref().map_or("", |h| &h[..h.len().min(16)])
            );
        }
    }
    println!(
        "`restore {}/{path} --at TIME` writes a version.",
        folder.name
    );
    Ok(())
}
