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
