//! Background syncs at the prompt (docs/sync.md 4): `sync <dir>` watches a folder while the
//! prompt goes on, each round's line printed above the line being typed (rustyline's external
//! printer); `sync status` and `sync stop [dir]`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::commands::upload2::RepoKeys;
use crate::commands::Session;
use crate::render::relative_age;
use crate::sync::Folder;

/// Where a background sync's lines go: above the prompt on a terminal, else stdout.
pub type Printer = Arc<Mutex<Box<dyn FnMut(String) + Send>>>;

/// One folder being synced in the background.
struct Running {
    folder: Folder,
    since: OffsetDateTime,
    last: Arc<Mutex<String>>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// The prompt's background syncs.
pub struct Background {
    printer: Printer,
    running: Vec<Running>,
}

impl Background {
    pub fn new(printer: Printer) -> Self {
        Background {
            printer,
            running: Vec::new(),
        }
    }

    /// `sync <dir>`, `sync status`, `sync stop [dir]` at the prompt.
    pub fn command(
        &mut self,
        rt: &tokio::runtime::Runtime,
        session: &Session,
        dir: &Path,
        more: Option<&Path>,
        rescan: Duration,
    ) -> Result<()> {
        self.running.retain(|r| !r.task.is_finished());
        match dir.to_str() {
            Some("status") if more.is_none() => {
                self.status();
                Ok(())
            }
            Some("stop") => self.stop(rt, session, more),
            _ => self.start(rt, session, dir, rescan),
        }
    }

    fn status(&self) {
        if self.running.is_empty() {
            println!("No folder is being synced; `sync <dir>` starts one.");
            return;
        }
        let now = OffsetDateTime::now_utc();
        for r in &self.running {
            let last = r.last.lock().map(|l| l.clone()).unwrap_or_default();
            println!(
                "{} ({}): watching {} since {}; {}",
                r.folder.name,
                r.folder.id,
                r.folder.root,
                relative_age(r.since, now),
                if last.is_empty() {
                    "first round running".to_string()
                } else {
                    format!("last round: {last}")
                }
            );
        }
    }

    fn stop(
        &mut self,
        rt: &tokio::runtime::Runtime,
        session: &Session,
        which: Option<&Path>,
    ) -> Result<()> {
        let chosen: Vec<usize> = match which {
            None => (0..self.running.len()).collect(),
            Some(d) => {
                let spec = d.to_string_lossy();
                let Some((f, _)) = crate::commands::sync::resolve(session, &spec)? else {
                    bail!("{spec:?} is not a synced folder");
                };
                self.running
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.folder.id == f.id)
                    .map(|(i, _)| i)
                    .collect()
            }
        };
        if chosen.is_empty() {
            println!("No such folder is being synced.");
            return Ok(());
        }
        for i in chosen.into_iter().rev() {
            let r = self.running.remove(i);
            r.cancel.cancel();
            // A round stops at its next pack; what was posted is kept for the next sync.
            let _ = rt.block_on(r.task);
            println!("Stopped syncing {} ({}).", r.folder.name, r.folder.root);
        }
        Ok(())
    }

    fn start(
        &mut self,
        rt: &tokio::runtime::Runtime,
        session: &Session,
        dir: &Path,
        rescan: Duration,
    ) -> Result<()> {
        let folder = crate::commands::sync::folder_for(session, dir)?;
        if self.running.iter().any(|r| r.folder.id == folder.id) {
            bail!(
                "{} is already being synced; `sync status` shows it",
                folder.root
            );
        }
        let repo = rt.block_on(session.repository_for_upload())?;
        let repo = RepoKeys::from(repo.as_ref());
        let cancel = CancellationToken::new();
        let ctx = rt.block_on(crate::commands::sync::context(
            session,
            &repo,
            cancel.clone(),
        ))?;
        let last = Arc::new(Mutex::new(String::new()));
        let (printer, last2, f2) = (self.printer.clone(), last.clone(), folder.clone());
        let task = rt.spawn(async move {
            let mut say = |line: String| {
                if let Ok(mut l) = last2.lock() {
                    *l = line.clone();
                }
                if let Ok(mut p) = printer.lock() {
                    (p)(line);
                }
            };
            if let Err(e) = crate::sync::watch::run(&ctx, &f2, rescan, &mut say).await {
                say(format!("{}: sync stopped: {e:#}", f2.name));
            }
        });
        println!(
            "Syncing {} as {} in the background; `sync status`, `sync stop` control it.",
            folder.root, folder.id
        );
        self.running.push(Running {
            folder,
            since: OffsetDateTime::now_utc(),
            last,
            cancel,
            task,
        });
        Ok(())
    }

    /// Stops every background sync (leaving the prompt).
    pub fn stop_all(&mut self, rt: &tokio::runtime::Runtime) {
        for r in self.running.drain(..) {
            r.cancel.cancel();
            let _ = rt.block_on(r.task);
        }
    }
}
