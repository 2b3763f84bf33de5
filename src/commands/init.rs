//! `dstore init`, and the repository as every format-2 command gets it: opened once per session
//! (so a prompt session asks the passphrase once), or created by the first upload.

use std::sync::Arc;

use anyhow::{bail, Result};

use super::Session;
use crate::repo::repository::{self, Initialised, Place, Repository};

impl Session {
    /// Where the repository lives: the first configured channel, this data dir, and the
    /// configuration's passphrase file.
    pub fn repository_place(&self) -> Result<Place> {
        let store = self.store()?;
        let Some(&channel) = self.config.channels.first() else {
            bail!("no channel configured: set `channels` in the config file or DSTORE_CHANNELS");
        };
        Ok(Place {
            store,
            channel,
            data_dir: self.config.data_dir.clone(),
            passphrase_file: self.config.passphrase_file.clone(),
        })
    }

    /// The repository if one exists (local copy in <data-dir>/repo/ or a config on Discord),
    /// opened; None if neither.
    pub async fn repository(&self) -> Result<Option<Arc<Repository>>> {
        let mut cached = self.repo.lock().await;
        if let Some(r) = cached.as_ref() {
            return Ok(Some(r.clone()));
        }
        let place = self.repository_place()?;
        let Some(opened) = repository::open(&place, &self.secrets, false).await? else {
            return Ok(None);
        };
        let r = Arc::new(opened.repository);
        *cached = Some(r.clone());
        Ok(Some(r))
    }

    /// For `upload`: the repository, opened; if none exists, initialises it: on a terminal after
    /// asking, in a script when a passphrase source is set (or the config turns encryption off).
    pub async fn repository_for_upload(&self) -> Result<Arc<Repository>> {
        if let Some(r) = self.repository().await? {
            return Ok(r);
        }
        let encryption = self.config.encryption;
        // The `--emulator` demo keeps a passphrase of its own: it creates its repository unasked.
        if self.secrets.interactive() && self.config.passphrase_file.is_none() {
            if !ask_yes("No repository on Discord yet; create one now? [y/N] ").await? {
                bail!("nothing uploaded: there is no repository yet; `dstore init` creates one");
            }
            return init(self, !encryption).await;
        }
        let place = self.repository_place()?;
        if encryption && !repository::script_passphrase(&place, &self.secrets).await {
            bail!(
                "there is no repository on Discord yet and no passphrase to create one with: run \
                 `dstore init` on a terminal, or set DSTORE_PASSPHRASE (or DSTORE_PASSPHRASE_FILE, \
                 DSTORE_PASSPHRASE_COMMAND) and upload again"
            );
        }
        let made = self.initialise(&place, encryption).await?;
        for line in describe(&made, place.channel) {
            eprintln!("{line}");
        }
        Ok(made.repository_arc)
    }

    /// Replaces the cached repository (after a key command opened it afresh).
    pub(super) async fn cache_repository(&self, repository: Repository) {
        *self.repo.lock().await = Some(Arc::new(repository));
    }

    async fn initialise(&self, place: &Place, encryption: bool) -> Result<Made> {
        let mut cached = self.repo.lock().await;
        let made = repository::init(place, &self.secrets, encryption).await?;
        let repository_arc = Arc::new(made.repository.clone());
        *cached = Some(repository_arc.clone());
        Ok(Made {
            made,
            repository_arc,
        })
    }
}

/// What `initialise` made, and the repository as cached.
struct Made {
    made: Initialised,
    repository_arc: Arc<Repository>,
}

/// `dstore init`: creates the repository and says what it made.
pub async fn init(s: &Session, no_encryption: bool) -> Result<Arc<Repository>> {
    let place = s.repository_place()?;
    let made = s
        .initialise(&place, s.config.encryption && !no_encryption)
        .await?;
    for line in describe(&made, place.channel) {
        println!("{line}");
    }
    Ok(made.repository_arc)
}

/// The lines saying what `init` made: the repository and key IDs, and the reminder.
fn describe(made: &Made, channel: u64) -> Vec<String> {
    let r = &made.made.repository;
    let mut lines = Vec::new();
    match &r.key_id {
        Some(key) => {
            lines.push(format!(
                "Initialised an encrypted repository {} in channel {channel} (key {key}).",
                r.config.repo_id
            ));
            lines.push(
                "Keep the passphrase safe: it cannot be recovered, and without it nothing stored here can be read."
                    .into(),
            );
        }
        None => lines.push(format!(
            "Initialised an unencrypted repository {} in channel {channel}: no passphrase, and Discord holds readable bytes.",
            r.config.repo_id
        )),
    }
    if made.made.orphans_removed > 0 {
        lines.push(format!(
            "Removed {} left by an interrupted `dstore init` (without a config they open nothing).",
            crate::render::plural(made.made.orphans_removed as u64, "key file")
        ));
    }
    lines
}

/// Asks a yes/no question on the terminal; true only for `y` or `yes`. Ctrl-C or Ctrl-D answers no.
pub(super) async fn ask_yes(question: &str) -> Result<bool> {
    let question = question.to_string();
    let answer = tokio::task::spawn_blocking(move || {
        let mut editor = rustyline::DefaultEditor::new()?;
        match editor.readline(&question) {
            Ok(line) => Ok(Some(line)),
            Err(
                rustyline::error::ReadlineError::Interrupted | rustyline::error::ReadlineError::Eof,
            ) => Ok(None),
            Err(e) => Err(e),
        }
    })
    .await??;
    Ok(answer.is_some_and(|a| matches!(a.trim().to_ascii_lowercase().as_str(), "y" | "yes")))
}
