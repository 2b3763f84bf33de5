//! The watcher (docs/sync.md 7): a round at start, then one each time file-system notifications
//! settle, and one every `rescan` in any case, as a safety net for missed events.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Result};
use notify::RecursiveMode;
use notify_debouncer_full::{new_debouncer, DebounceEventResult};

use super::round::{round, Ctx};
use super::walk::builtin_ignored;
use super::Folder;
use crate::store::PartStore;

/// How long events must have stopped before a round starts.
pub const SETTLE: Duration = Duration::from_secs(2);

/// The default time between full rescans.
pub const RESCAN: Duration = Duration::from_secs(300);

/// Whether an event on `path` can change what is synced: not inside the data dir, not a
/// temporary or partial file.
fn relevant(path: &Path, data_dir: &Path) -> bool {
    if path.starts_with(data_dir) {
        return false;
    }
    !path
        .file_name()
        .is_some_and(|n| builtin_ignored(&n.to_string_lossy()))
}

/// Rounds over `folder` until `ctx.cancel` fires; each round's line (or error) goes to `say`.
pub async fn run<S: PartStore>(
    ctx: &Ctx<S>,
    folder: &Folder,
    rescan: Duration,
    say: &mut (dyn FnMut(String) + Send),
) -> Result<()> {
    let root = PathBuf::from(&folder.root);
    let data_dir = std::fs::canonicalize(&ctx.data_dir).unwrap_or_else(|_| ctx.data_dir.clone());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
    let filter_dir = data_dir.clone();
    let mut debouncer = new_debouncer(SETTLE, None, move |res: DebounceEventResult| {
        let wanted = match res {
            Ok(events) => events
                .iter()
                .any(|e| e.paths.iter().any(|p| relevant(p, &filter_dir))),
            // An overflow or error: a full rescan says what changed.
            Err(_) => true,
        };
        if wanted {
            let _ = tx.send(true);
        }
    })
    .map_err(|e| anyhow!("cannot watch {}: {e}", root.display()))?;
    debouncer
        .watch(&root, RecursiveMode::Recursive)
        .map_err(|e| anyhow!("cannot watch {}: {e}", root.display()))?;
    loop {
        if ctx.cancel.is_cancelled() {
            return Ok(());
        }
        // A file still changing (or a failed round) is looked at again soon.
        let again_soon = match round(ctx, folder).await {
            Ok(report) => {
                if report.snapshot.is_some() || !report.skipped.is_empty() {
                    say(report.line(&folder.name));
                }
                !report.skipped.is_empty()
            }
            Err(e) if ctx.cancel.is_cancelled() => {
                tracing::info!("sync stopped: {e:#}");
                return Ok(());
            }
            Err(e) => {
                say(format!("{}: sync round failed: {e:#}", folder.name));
                true
            }
        };
        let wait = if again_soon { SETTLE * 2 } else { rescan };
        tokio::select! {
            _ = ctx.cancel.cancelled() => return Ok(()),
            got = rx.recv() => {
                if got.is_none() {
                    return Err(anyhow!("the watcher of {} stopped", root.display()));
                }
                // Events keep coming while a file is written: wait until they settle.
                loop {
                    tokio::select! {
                        _ = ctx.cancel.cancelled() => return Ok(()),
                        more = rx.recv() => if more.is_none() { break },
                        _ = tokio::time::sleep(SETTLE) => break,
                    }
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
