//! dstore: store files on Discord as message attachments, with streamed, resumable, verified
//! transfers. The binary's REPL and one-shot commands sit on these modules.

pub mod catalog;
pub mod cli;
pub mod commands;
pub mod config;
pub mod emulated;
pub mod hash;
pub mod logging;
pub mod progress;
pub mod render;
pub mod repl;
pub mod repo;
pub mod store;
pub mod sync;
pub mod transfer;
pub mod web;

use tokio_util::sync::CancellationToken;

/// Runs one command with Ctrl-C wired to a clean cancel: manifests stay consistent and the
/// upload stays resumable.
pub async fn execute(session: &commands::Session, command: cli::Command) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let on_ctrl_c = cancel.clone();
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.cancel();
        }
    });
    let what = format!("{command:?}");
    tracing::debug!("running {what}");
    let started = std::time::Instant::now();
    let result = session.run(command, cancel).await;
    watcher.abort();
    tracing::debug!(
        "{what} ended after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if let Err(e) = &result {
        // For the log file; stderr shows the error once, from the caller.
        tracing::info!("{what} failed: {e:#}");
    }
    result
}
