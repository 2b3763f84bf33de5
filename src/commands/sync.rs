//! `sync DIR` (docs/sync.md 4): one round with `--once`, else rounds until Ctrl-C; and what the
//! other commands use to name a synced folder or path.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::upload2::{attachment_limit, RepoKeys};
use super::Session;
use crate::store::BotStore;
use crate::sync::round::{round, Ctx, Report};
use crate::sync::{Folder, Folders, Local};

/// The records of every synced folder of this session's data dir.
pub fn folders(s: &Session) -> Folders {
    Folders::new(&s.config.data_dir)
}

/// What a round runs with, for this session.
pub async fn context(
    s: &Session,
    repo: &RepoKeys,
    cancel: CancellationToken,
) -> Result<Ctx<BotStore>> {
    Ok(Ctx {
        store: s.store()?,
        catalog: s.catalog.clone(),
        folders: folders(s),
        keys: repo.keys.clone(),
        chunker: repo.chunker,
        channels: s.config.channels.clone(),
        attachment_limit: attachment_limit(s).await?,
        concurrency: s.config.concurrency,
        data_dir: s.config.data_dir.clone(),
        host: crate::sync::host_name(),
        cancel,
    })
}

/// The folder synced from `dir` (created on first use).
pub fn folder_for(s: &Session, dir: &Path) -> Result<Folder> {
    let root = std::fs::canonicalize(dir)
        .with_context(|| format!("cannot sync {}: it cannot be opened", dir.display()))?;
    if !root.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    folders(s).for_root(&root)
}

/// One round over `dir`.
pub async fn sync_once(
    s: &Session,
    repo: &RepoKeys,
    dir: &Path,
    cancel: CancellationToken,
) -> Result<Report> {
    let folder = folder_for(s, dir)?;
    let ctx = context(s, repo, cancel).await?;
    round(&ctx, &folder).await
}

/// `sync DIR [--once]`.
pub async fn command(
    s: &Session,
    dir: &Path,
    once: bool,
    json: bool,
    rescan: std::time::Duration,
    cancel: CancellationToken,
) -> Result<()> {
    let repo = s.repository_for_upload().await?;
    let repo = RepoKeys::from(repo.as_ref());
    let folder = folder_for(s, dir)?;
    let ctx = context(s, &repo, cancel.clone()).await?;
    if once {
        let report = round(&ctx, &folder).await?;
        if json {
            let value = serde_json::json!({
                "folder": folder.id,
                "name": folder.name,
                "root": folder.root,
                "report": report,
            });
            println!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            println!("{}", report.line(&folder.name));
        }
        return Ok(());
    }
    println!("Syncing {} as {}; Ctrl-C stops.", folder.root, folder.id);
    crate::sync::watch::run(&ctx, &folder, rescan, &mut |line| println!("{line}")).await
}

/// A synced folder, and a path inside it ("" for the whole folder), from what the user typed:
/// `<folder id>:<path>`, a folder's local path (or a path inside it), or `<folder>/<path>` with
/// the folder named by its ID or name.
pub fn resolve(s: &Session, spec: &str) -> Result<Option<(Folder, String)>> {
    let folders = folders(s);
    let all = folders.all()?;
    if let Some((id, rest)) = spec.split_once(':') {
        if let Some(f) = all.iter().find(|f| f.id == id) {
            return Ok(Some((f.clone(), rest.trim_matches('/').to_string())));
        }
    }
    if let Some(f) = folders.find(spec)? {
        return Ok(Some((f, String::new())));
    }
    // A local path inside a synced folder.
    let abs = if Path::new(spec).is_absolute() {
        PathBuf::from(spec)
    } else {
        std::env::current_dir()
            .map(|d| d.join(spec))
            .unwrap_or_else(|_| PathBuf::from(spec))
    };
    let abs = std::fs::canonicalize(&abs).unwrap_or(abs);
    for f in all.iter().filter(|f| !f.root.is_empty()) {
        if let Ok(rest) = abs.strip_prefix(&f.root) {
            if let Some(rest) = rest.to_str() {
                return Ok(Some((f.clone(), rest.to_string())));
            }
        }
    }
    // `<folder>/<path>`.
    let mut cut = 0;
    while let Some(at) = spec[cut..].find('/') {
        let (head, rest) = spec.split_at(cut + at);
        if let Some(f) = folders.find(head)? {
            return Ok(Some((f, rest.trim_matches('/').to_string())));
        }
        cut += at + 1;
    }
    Ok(None)
}

/// [`resolve`], or an error naming what is known.
pub fn resolve_or_fail(s: &Session, spec: &str) -> Result<(Folder, String)> {
    match resolve(s, spec)? {
        Some(r) => Ok(r),
        None => {
            let names: Vec<String> = folders(s)
                .all()?
                .into_iter()
                .map(|f| format!("{} ({})", f.name, f.id))
                .collect();
            if names.is_empty() {
                bail!("{spec:?} is not a synced folder or path; no folder is synced here (`sync DIR` syncs one, `recover` finds those synced elsewhere)");
            }
            bail!(
                "{spec:?} is not a synced folder or path; the synced folders are {}",
                names.join(", ")
            )
        }
    }
}

/// The snapshot of `folder` as it was at `at` (the latest with `time <= at`), or the latest.
pub fn snapshot_at(s: &Session, folder: &Folder, at: Option<OffsetDateTime>) -> Result<Local> {
    let all = folders(s).snapshots(&folder.id)?;
    let pick = match at {
        None => all.into_iter().next_back(),
        Some(t) => all.into_iter().rev().find(|l| l.snapshot.time <= t),
    };
    match (pick, at) {
        (Some(l), _) => Ok(l),
        (None, None) => bail!(
            "{} ({}) has no snapshot yet; `sync` it first (or `recover` to find those posted elsewhere)",
            folder.name,
            folder.id
        ),
        (None, Some(t)) => bail!(
            "{} ({}) has no snapshot from {} or before",
            folder.name,
            folder.id,
            t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
        ),
    }
}

/// A point in time: RFC 3339, a date (midnight UTC), or an age (`90s`, `15m`, `2h`, `3d`, `1w`).
pub fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    use time::format_description::well_known::Rfc3339;
    let t = text.trim();
    if let Ok(at) = OffsetDateTime::parse(t, &Rfc3339) {
        return Ok(at);
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(t, &date_format) {
        return Ok(d.midnight().assume_utc());
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => 0,
    };
    match n.parse::<i64>() {
        Ok(n) if secs > 0 => Ok(OffsetDateTime::now_utc() - time::Duration::seconds(n * secs)),
        _ => Err(format!(
            "{text:?} is not a time: give RFC 3339 (2026-12-02T03:20:00Z), a date (2026-12-02) or an age (2h, 3d)"
        )),
    }
}
