//! The commands: each parses nothing itself, calls the library, and renders the result for a
//! person or as JSON.

mod delete;
pub mod delete2;
pub mod download;
mod duplicate;
pub mod entries;
pub mod forget;
mod help;
mod info;
pub mod init;
pub mod key;
mod list;
pub mod prune;
mod publish;
pub mod rebuild;
pub mod recover;
pub mod recover2;
mod repair;
pub mod restore;
pub mod stats;
pub mod sync;
pub mod upload;
pub mod upload2;
pub mod verify;
pub mod versions;
pub mod web;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, FileManifest, Status};
use crate::cli::Command;
use crate::config::Config;
use crate::progress::ProgressMode;
use crate::store::BotStore;

pub use help::{help_text, suggest, unknown as unknown_command};

/// What every command runs with.
pub struct Session {
    pub config: Config,
    pub catalog: Catalog,
    pub progress: ProgressMode,
    store: std::sync::OnceLock<Arc<BotStore>>,
    /// Where passphrases come from (the process environment and the terminal; tests set others).
    pub secrets: crate::repo::repository::Secrets,
    /// The format-2 repository once opened, so a prompt session asks the passphrase once.
    repo: tokio::sync::Mutex<Option<Arc<crate::repo::repository::Repository>>>,
    /// No result lines on stdout: the dashboard's session, whose uploads run in the background
    /// of the prompt and report through the page instead.
    pub quiet: bool,
}

impl Session {
    pub fn new(config: Config, progress: ProgressMode) -> Result<Self> {
        let catalog = Catalog::open(&config.data_dir)?;
        Ok(Self {
            config,
            catalog,
            progress,
            store: std::sync::OnceLock::new(),
            secrets: crate::repo::repository::Secrets::process(),
            repo: tokio::sync::Mutex::new(None),
            quiet: false,
        })
    }

    /// A result line for the person at the terminal (none in a quiet session).
    pub fn say(&self, line: std::fmt::Arguments<'_>) {
        if !self.quiet {
            println!("{line}");
        }
    }

    /// The Discord store, built on first use (so `list` works offline and without a token).
    pub fn store(&self) -> Result<Arc<BotStore>> {
        if let Some(s) = self.store.get() {
            return Ok(s.clone());
        }
        self.config.require_remote()?;
        let s = Arc::new(BotStore::new(&self.config)?);
        Ok(self.store.get_or_init(|| s).clone())
    }

    /// Refuses `command` (which reads channel history) when only webhooks are configured.
    pub fn require_bot(&self, command: &str) -> Result<()> {
        if self.config.token.is_empty() && !self.config.webhooks.is_empty() {
            anyhow::bail!(
                "`{command}` needs a bot token, because only a bot can read the channel history the catalogue is in (webhooks cannot); set `token` in the config file or DSTORE_TOKEN and run it again"
            );
        }
        Ok(())
    }

    /// The progress line of a transfer of `total_bytes`: none while `--json` writes stdout on
    /// a terminal (the JSON is the output), else as the session shows progress.
    pub fn progress_bar(
        &self,
        json: bool,
        label: &str,
        total_bytes: u64,
    ) -> crate::progress::Progress {
        let mode = if json && self.progress == ProgressMode::Bar {
            ProgressMode::Hidden
        } else {
            self.progress
        };
        crate::progress::Progress::new(mode, label, total_bytes)
    }

    /// Runs one command; `cancel` fires on Ctrl-C.
    pub async fn run(&self, command: Command, cancel: CancellationToken) -> Result<()> {
        match command {
            Command::Upload { paths, force, json } => {
                self.upload_all(&paths, force, json, cancel).await
            }
            Command::Resume { id, json } => upload::resume(self, &id, json, cancel).await.map(drop),
            Command::List { all, tree, json } => list::list(self, all, tree, json),
            Command::Download {
                id,
                dest,
                force,
                json,
            } => download::download(self, &id, dest.as_deref(), force, json, cancel)
                .await
                .map(drop),
            Command::Verify { id, full, json } => {
                verify::verify(self, &id, full, json, cancel).await
            }
            Command::Info { id, json } => info::info(self, &id, json),
            Command::Delete {
                id,
                yes,
                keep_remote,
            } => delete::delete(self, &id, yes, keep_remote).await,
            Command::Undelete { id } => delete::undelete(self, &id).await,
            Command::Recover { json } => {
                self.require_bot("recover")?;
                recover::recover(self, json, cancel).await.map(drop)
            }
            Command::Init { no_encryption } => init::init(self, no_encryption).await.map(drop),
            Command::Key { action } => key::key(self, action).await,
            Command::Prune {
                dry_run,
                grace_hours,
            } => {
                let Some(repo) = self.repository().await? else {
                    anyhow::bail!("there is no format-2 repository here or on Discord, so nothing to prune; `dstore init` creates one");
                };
                let opts = prune::PruneOpts {
                    grace: std::time::Duration::from_secs_f64(grace_hours * 3600.0),
                    dry_run,
                    ..prune::PruneOpts::default()
                };
                let report =
                    prune::prune(self, &upload2::RepoKeys::from(repo.as_ref()), opts).await?;
                println!("{}", report.summary(dry_run));
                Ok(())
            }
            Command::Stats { json } => stats::stats(self, json).await,
            Command::Sync {
                dir,
                more: _,
                once,
                rescan,
                json,
            } => {
                sync::command(
                    self,
                    &dir,
                    once,
                    json,
                    std::time::Duration::from_secs(rescan.max(1)),
                    cancel,
                )
                .await
            }
            Command::Versions { path, json } => versions::command(self, &path, json),
            Command::Forget {
                folder,
                keep_last,
                keep_hourly,
                keep_daily,
                keep_weekly,
                keep_monthly,
                keep_yearly,
                dry_run,
            } => {
                let policy = forget::Policy {
                    last: keep_last,
                    hourly: keep_hourly,
                    daily: keep_daily,
                    weekly: keep_weekly,
                    monthly: keep_monthly,
                    yearly: keep_yearly,
                };
                forget::command(self, &folder, &policy, dry_run).await
            }
            Command::Restore {
                what,
                dest,
                at,
                force,
            } => restore::command(self, &what, dest.as_deref(), at, force, cancel).await,
            Command::Web(args) => web::command(self, &args, cancel).await,
            Command::RebuildIndex => {
                self.require_bot("rebuild-index")?;
                rebuild::command(self).await
            }
        }
    }
}

impl Session {
    /// Uploads each path in turn; one that fails is reported and the others still go. A file
    /// already stored whole (same size and SHA-256) is named, not sent again, unless `force`.
    async fn upload_all(
        &self,
        paths: &[PathBuf],
        force: bool,
        json: bool,
        cancel: CancellationToken,
    ) -> Result<()> {
        let mut failed = 0usize;
        let mut last_err = None;
        // Format-2 files uploaded whole whose entries wait to share a message (docs/format.md
        // 7.2): posted when a message would be full, and at the end.
        let mut waiting = Waiting::default();
        for (i, path) in paths.iter().enumerate() {
            if cancel.is_cancelled() {
                let left = paths.len() - i;
                eprintln!(
                    "error: cancelled; {} not uploaded",
                    crate::render::plural(left as u64, "file")
                );
                failed += left;
                break;
            }
            let batch = (paths.len() > 1).then_some(&mut waiting);
            let result = self
                .upload_one(path, force, json, cancel.clone(), batch)
                .await;
            if let Err(e) = result {
                failed += 1;
                if paths.len() > 1 {
                    eprintln!("error: {e:#}");
                }
                last_err = Some(e);
            }
        }
        // Posted even after a cancel: those files are stored whole, and this makes them
        // recoverable (a failure is a warning naming `resume <id>`).
        if let Err(e) = waiting.post(self).await {
            failed += 1;
            eprintln!("error: {e:#}");
            last_err = Some(e);
        }
        match (failed, last_err) {
            (0, _) => Ok(()),
            (_, Some(e)) if paths.len() == 1 => Err(e),
            (n, _) if n == paths.len() => anyhow::bail!("all {n} uploads failed (see above)"),
            (n, _) => anyhow::bail!(
                "{n} of {} failed (see above); the others are stored",
                crate::render::plural(paths.len() as u64, "upload")
            ),
        }
    }

    /// Uploads one path. A format-2 file's entry is posted at once, or, with `batch`, left to
    /// wait there for the files after it.
    async fn upload_one(
        &self,
        path: &Path,
        force: bool,
        json: bool,
        cancel: CancellationToken,
        batch: Option<&mut Waiting>,
    ) -> Result<()> {
        if !force {
            if let Some(m) = duplicate::find(&self.catalog, path, &cancel).await? {
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&FileJson::of(&self.catalog, &m))?
                    );
                } else {
                    println!(
                        "{} is already stored as {} ({}, same size and SHA-256); `upload --force` stores it again.",
                        path.display(),
                        m.id,
                        m.name
                    );
                }
                return Ok(());
            }
        }
        if self.config.format == crate::config::StorageFormat::V2 {
            let repo = self.repository_for_upload().await?;
            let keys = upload2::RepoKeys::from(repo.as_ref());
            let Some(batch) = batch else {
                return upload2::upload(self, &keys, path, json, cancel)
                    .await
                    .map(drop);
            };
            let done = upload2::upload_unposted(self, &keys, path, json, cancel).await?;
            return batch.add(self, keys, done).await;
        }
        upload::upload(self, path, json, cancel).await.map(drop)
    }
}

/// Format-2 files of one `upload` whose catalogue entries wait to be posted together.
#[derive(Default)]
struct Waiting {
    repo: Option<upload2::RepoKeys>,
    files: Vec<upload2::Unposted>,
    /// The sealed entries' sizes, about, and what one message may hold (asked once).
    bytes: usize,
    budget: Option<usize>,
}

impl Waiting {
    /// Adds a file; posts the waiting entries when a message is full (10 entries, or the byte
    /// budget), first if this one would overfill it.
    async fn add(
        &mut self,
        s: &Session,
        repo: upload2::RepoKeys,
        done: upload2::Unposted,
    ) -> Result<()> {
        if self.budget.is_none() {
            // Unknown (Discord unreachable): the entry is posted at once, and that post says why
            // it failed.
            self.budget = upload2::attachment_limit(s)
                .await
                .ok()
                .map(|l| crate::repo::pack::pack_limit(l as usize));
        }
        let budget = self.budget.unwrap_or(0);
        let len = done.entry_len();
        let mut result = Ok(());
        if !self.files.is_empty() && self.bytes.saturating_add(len) > budget {
            result = self.post(s).await;
        }
        self.repo = Some(repo);
        self.bytes = self.bytes.saturating_add(len);
        self.files.push(done);
        if self.files.len() >= crate::store::MAX_ATTACHMENTS || self.bytes >= budget {
            result = result.and(self.post(s).await);
        }
        result
    }

    /// Posts every waiting entry and reports the files.
    async fn post(&mut self, s: &Session) -> Result<()> {
        let files = std::mem::take(&mut self.files);
        self.bytes = 0;
        match self.repo.as_ref() {
            Some(repo) if !files.is_empty() => upload2::finish(s, repo, files).await.map(drop),
            _ => Ok(()),
        }
    }
}

/// The JSON shape of one file (`--json` on upload, resume and list).
#[derive(Debug, Serialize)]
pub struct FileJson {
    pub id: String,
    pub name: String,
    pub size: u64,
    pub sha256: Option<String>,
    pub parts_total: u64,
    pub parts_done: u64,
    pub status: Status,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
}

impl FileJson {
    pub fn of(catalog: &Catalog, m: &FileManifest) -> Self {
        let done = catalog.part_indices(&m.id);
        if m.format == crate::catalog::FORMAT_V2 {
            // Format 2: the packs the file's chunks live in once complete (some may be other
            // files'), else the packs its upload has posted so far.
            let packs = if m.status == Status::Complete {
                m.packs.len() as u64
            } else {
                done.len() as u64
            };
            return FileJson {
                id: m.id.clone(),
                name: m.name.clone(),
                size: m.size,
                sha256: m.sha256.clone(),
                parts_total: packs,
                parts_done: packs,
                status: m.status,
                created_at: m.created_at,
            };
        }
        let pending = m
            .planned()
            .iter()
            .filter(|s| !done.contains(&s.index))
            .count();
        FileJson {
            id: m.id.clone(),
            name: m.name.clone(),
            size: m.size,
            sha256: m.sha256.clone(),
            parts_total: (done.len() + pending) as u64,
            parts_done: done.len() as u64,
            status: m.status,
            created_at: m.created_at,
        }
    }
}
