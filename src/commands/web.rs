//! `web [--port N]`: the dashboard (src/web/) over this session. `dstore web` serves until
//! Ctrl-C; at the prompt it runs in the background until `web stop` (src/repl/). Also what the
//! dashboard asks of the commands: the files `list` shows, the figures of `stats`, an upload
//! through the same pipeline as `upload`, a delete as `delete --yes` does it.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Result};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{FileJson, Session};
use crate::catalog::{FileManifest, FORMAT_V2};
use crate::cli::{WebAction, WebArgs};
use crate::config::StorageFormat;
use crate::progress::ProgressMode;
use crate::repo::repository::Secrets;

/// `dstore web`: serves until `cancel` (Ctrl-C).
pub async fn command(s: &Session, args: &WebArgs, cancel: CancellationToken) -> Result<()> {
    if let Some(WebAction::Stop) = args.action {
        bail!(
            "`web stop` stops the dashboard started at the prompt; `dstore web` stops with Ctrl-C"
        );
    }
    let running = start(s, args.port).await?;
    println!("{}", running.banner("Ctrl-C stops it."));
    cancel.cancelled().await;
    running.stop().await;
    println!("Dashboard stopped.");
    Ok(())
}

/// Starts the dashboard on 127.0.0.1:`port` (0: any free port) over a session sharing this
/// one's catalogue, Discord store and opened repository.
pub async fn start(s: &Session, port: u16) -> Result<crate::web::Running> {
    let shared = Arc::new(s.for_web().await?);
    crate::web::start(shared, port).await
}

impl Session {
    /// A session for the dashboard: the same configuration, catalogue, store and repository,
    /// no progress on the terminal, and passphrases only from the environment or the
    /// configured file (nothing in the background ever asks on the terminal). The repository
    /// is opened here, in the foreground, where its passphrase can still be asked.
    async fn for_web(&self) -> Result<Session> {
        let repo = if self.config.require_remote().is_ok() {
            match self.repository().await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("warning: the format-2 repository could not be opened ({e:#}); the dashboard shows this machine's catalogue, and format-2 transfers fail until it opens");
                    None
                }
            }
        } else {
            None
        };
        let store = std::sync::OnceLock::new();
        if let Some(st) = self.store.get() {
            let _ = store.set(st.clone());
        }
        Ok(Session {
            config: self.config.clone(),
            catalog: self.catalog.clone(),
            progress: ProgressMode::Hidden,
            store,
            secrets: if self.secrets.interactive() {
                secrets_without_terminal()
            } else {
                self.secrets.clone()
            },
            repo: tokio::sync::Mutex::new(repo),
            quiet: true,
        })
    }
}

/// The passphrase sources of the environment, never the terminal.
fn secrets_without_terminal() -> Secrets {
    let vars: Vec<(&str, String)> = [
        "DSTORE_PASSPHRASE",
        "DSTORE_PASSPHRASE_FILE",
        "DSTORE_PASSPHRASE_COMMAND",
    ]
    .into_iter()
    .filter_map(|k| std::env::var(k).ok().map(|v| (k, v)))
    .collect();
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Secrets::given(&pairs)
}

/// One file as the dashboard shows it: what `list --json` gives, and more of `info`.
#[derive(Debug, Serialize)]
pub struct FileRow {
    #[serde(flatten)]
    pub file: FileJson,
    pub format: u32,
    pub hidden: bool,
    /// Format 2: the sealed bytes of its chunks (compressed where it paid).
    pub stored_bytes: Option<u64>,
    /// The age in words, as `list` says it.
    pub age: String,
}

/// The files `list` shows, newest first.
pub fn files(s: &Session) -> Result<Vec<FileRow>> {
    let now = time::OffsetDateTime::now_utc();
    let (files, _) = super::list::shown(s, false)?;
    Ok(files
        .iter()
        .map(|m| FileRow {
            file: FileJson::of(&s.catalog, m),
            format: m.format,
            hidden: m.hidden,
            stored_bytes: (m.format == FORMAT_V2).then(|| super::info::stored_bytes(m)),
            age: crate::render::relative_age(m.created_at, now),
        })
        .collect())
}

/// The figures of `stats`, and whether the repository is encrypted (`None` without one).
#[derive(Debug, Serialize)]
pub struct StatsRow {
    #[serde(flatten)]
    pub stats: super::stats::Stats,
    pub encryption: Option<bool>,
    /// The storage format new uploads use.
    pub format: u32,
}

pub async fn stats(s: &Session) -> Result<StatsRow> {
    let stats = super::stats::compute(s).await?;
    let encryption = s.repo.lock().await.as_ref().map(|r| r.config.encryption);
    Ok(StatsRow {
        stats,
        encryption,
        format: match s.config.format {
            StorageFormat::V2 => 2,
            _ => 1,
        },
    })
}

/// What an upload from the dashboard stored: the file, and whether it was stored already
/// (same size and SHA-256), so nothing was sent.
pub struct Uploaded {
    pub file: FileManifest,
    pub already: bool,
}

/// Uploads the regular file at `path` as `upload <path>` does, in the session's format.
pub async fn upload(s: &Session, path: &Path, cancel: CancellationToken) -> Result<Uploaded> {
    if let Some(file) = super::duplicate::find(&s.catalog, path, &cancel).await? {
        return Ok(Uploaded {
            file,
            already: true,
        });
    }
    let file = if s.config.format == StorageFormat::V2 {
        let repo = s.repository_for_upload().await?;
        let keys = super::upload2::RepoKeys::from(repo.as_ref());
        super::upload2::upload(s, &keys, path, false, cancel).await?
    } else {
        super::upload::upload(s, path, false, cancel).await?
    };
    Ok(Uploaded {
        file,
        already: false,
    })
}

/// Deletes file `id` from Discord and the catalogue, as `delete --yes <id>` does.
pub async fn delete(s: &Session, id: &str) -> Result<()> {
    super::delete::delete(s, id, true, false).await
}

/// The repository's keys, for a format-2 download (an error naming the problem without one).
pub async fn keys_of(s: &Session, id: &str) -> Result<crate::repo::crypto::Keys> {
    super::download::repository_keys(s, id).await
}

/// One synced folder as the dashboard shows it: its latest snapshot's files, each with how
/// many versions the snapshots hold, and the snapshots a restore can pick.
#[derive(Debug, Serialize)]
pub struct FolderRow {
    pub id: String,
    pub name: String,
    /// Its path on this machine; empty when synced on another one.
    pub path: String,
    /// When the latest snapshot was taken.
    #[serde(with = "time::serde::rfc3339::option")]
    pub time: Option<time::OffsetDateTime>,
    pub size: u64,
    pub files: Vec<SyncedFile>,
    /// Oldest first.
    pub versions: Vec<SnapshotRow>,
}

#[derive(Debug, Serialize)]
pub struct SyncedFile {
    pub path: String,
    pub size: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub mtime: time::OffsetDateTime,
    /// Its versions as `versions <folder>/<path>` counts them (deletions aside).
    pub versions: u64,
    pub status: &'static str,
}

#[derive(Debug, Serialize)]
pub struct SnapshotRow {
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub time: time::OffsetDateTime,
    pub host: String,
    pub files: u64,
}

/// Every synced folder with a snapshot on this machine.
pub fn folders(s: &Session) -> Result<Vec<FolderRow>> {
    use crate::repo::snapshot::Kind;
    let records = super::sync::folders(s);
    let mut out = Vec::new();
    for f in records.all()? {
        let snaps = records.snapshots(&f.id)?;
        let Some(latest) = snaps.last() else {
            continue;
        };
        // One pass over the snapshots, oldest first, with the rule of `versions`: a new
        // version wherever a file's content differs from the one before (or it comes back).
        let mut seen: std::collections::HashMap<&str, (Option<&String>, u64)> = Default::default();
        for l in &snaps {
            let present: std::collections::HashSet<&str> =
                l.snapshot.files.iter().map(|n| n.path.as_str()).collect();
            for n in l.snapshot.files.iter().filter(|n| n.kind == Kind::File) {
                let e = seen.entry(n.path.as_str()).or_insert((None, 0));
                if e.1 == 0 || e.0 != n.sha256.as_ref() {
                    e.1 += 1;
                }
                e.0 = n.sha256.as_ref();
            }
            for (path, e) in seen.iter_mut() {
                if !present.contains(path) {
                    e.0 = None;
                }
            }
        }
        let files: Vec<SyncedFile> = latest
            .snapshot
            .files
            .iter()
            .filter(|n| n.kind == Kind::File)
            .map(|n| SyncedFile {
                path: n.path.clone(),
                size: n.size.unwrap_or(0),
                mtime: n.mtime,
                versions: seen.get(n.path.as_str()).map_or(1, |e| e.1),
                status: "synced",
            })
            .collect();
        out.push(FolderRow {
            id: f.id.clone(),
            name: f.name.clone(),
            path: f.root.clone(),
            time: Some(latest.snapshot.time),
            size: files.iter().map(|f| f.size).sum(),
            files,
            versions: snaps
                .iter()
                .map(|l| SnapshotRow {
                    seq: l.snapshot.seq,
                    time: l.snapshot.time,
                    host: l.snapshot.host.clone(),
                    files: l
                        .snapshot
                        .files
                        .iter()
                        .filter(|n| n.kind == Kind::File)
                        .count() as u64,
                })
                .collect(),
        });
    }
    Ok(out)
}

/// What a restore from the dashboard wrote, and where.
#[derive(Debug, Serialize)]
pub struct RestoredRow {
    pub path: String,
    pub files: usize,
    pub dirs: usize,
    pub links: usize,
    pub bytes: u64,
}

/// Restores snapshot `seq` of the synced folder `id` (both checked against this machine's
/// records) into a new folder that did not exist: beside the original, `<name> (restored
/// <seq>)`, or under `<data dir>/restored/` for a folder synced elsewhere. Nothing is
/// overwritten; every file is verified as `restore` does it.
pub async fn restore_version(
    s: &Session,
    id: &str,
    seq: u64,
    cancel: CancellationToken,
) -> Result<Option<RestoredRow>> {
    let records = super::sync::folders(s);
    let Some(folder) = records.all()?.into_iter().find(|f| f.id == id) else {
        return Ok(None);
    };
    if !records.seqs(&folder.id).contains(&seq) {
        return Ok(None);
    }
    let Some(local) = records.snapshot(&folder.id, seq)? else {
        return Ok(None);
    };
    let Some(repo) = s.repository().await? else {
        bail!("there is no format-2 repository here or on Discord, so nothing to restore");
    };
    let keys = super::upload2::RepoKeys::from(repo.as_ref());
    let snap = &local.snapshot;
    let parent = match Path::new(&folder.root).parent() {
        Some(p) if !folder.root.is_empty() => p.to_path_buf(),
        _ => s.config.data_dir.join("restored"),
    };
    std::fs::create_dir_all(&parent)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))?;
    let base = super::download::safe_name(&format!("{} (restored {seq})", folder.name));
    let dest = (1..1000)
        .map(|i| match i {
            1 => parent.join(&base),
            i => parent.join(format!("{base} {i}")),
        })
        .find(|p| std::fs::symlink_metadata(p).is_err())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no free name for the restored folder in {}",
                parent.display()
            )
        })?;
    let nodes = crate::sync::restore::select(snap, "")?;
    let job = crate::sync::restore::Restore {
        store: s.store()?,
        keys: &keys.keys,
        channels: &s.config.channels,
        concurrency: s.config.concurrency,
        cancel: &cancel,
        force: false,
    };
    let done = job.run(snap, &nodes, &dest).await?;
    Ok(Some(RestoredRow {
        path: dest.display().to_string(),
        files: done.files,
        dirs: done.dirs,
        links: done.links,
        bytes: done.bytes,
    }))
}
