//! `recover`: rebuilds the local catalogue from the manifests dstore posted to Discord. It pages
//! through every configured channel, skips files it already knows, and can be run again safely.

use anyhow::{bail, Result};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::{FileJson, Session};
use crate::catalog::remote::{parse_manifest_name, RemoteManifest};
use crate::catalog::MessageRef;
use crate::render::human_bytes;
use crate::store::PartStore;

pub async fn recover(s: &Session, json: bool, cancel: CancellationToken) -> Result<usize> {
    let store = s.store()?;
    let mut recovered = Vec::new();
    let mut problems = 0;
    let is_manifest = |name: &str| parse_manifest_name(name).is_some();
    for &channel in &s.config.channels {
        let found = tokio::select! {
            _ = cancel.cancelled() => bail!("recover cancelled; run it again to continue"),
            f = store.find_parts(channel, &is_manifest, OffsetDateTime::UNIX_EPOCH) => f?,
        };
        for remote in found {
            let Some(id) = parse_manifest_name(&remote.filename) else {
                continue;
            };
            if s.catalog.contains(id) || recovered.iter().any(|m: &FileJson| m.id == id) {
                continue;
            }
            if cancel.is_cancelled() {
                bail!("recover cancelled; run it again to continue");
            }
            let bytes = store.read_part(&remote).await?;
            let manifest = match RemoteManifest::parse(&bytes) {
                Ok(m) if m.id == id => m,
                Ok(_) => {
                    eprintln!(
                        "warning: the manifest in message {} names another file; skipped",
                        remote.message_id
                    );
                    problems += 1;
                    continue;
                }
                Err(e) => {
                    eprintln!(
                        "warning: the manifest of {id} in message {}: {e}; skipped",
                        remote.message_id
                    );
                    problems += 1;
                    continue;
                }
            };
            let at = MessageRef {
                channel_id: remote.channel_id,
                message_id: remote.message_id,
            };
            let (file, parts) = manifest.into_local(at);
            // Parts first: file.json is what makes the file exist, so a kill here is redone.
            for p in &parts {
                s.catalog.save_part(&file.id, p)?;
            }
            s.catalog.save_file(&file)?;
            tracing::info!(id = %file.id, "recovered from Discord");
            if !json {
                println!(
                    "Recovered {} ({}) as {}.",
                    file.name,
                    human_bytes(file.size),
                    file.id
                );
            }
            recovered.push(FileJson::of(&s.catalog, &file));
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&recovered)?);
    } else if recovered.is_empty() {
        println!("Nothing to recover: every file on Discord is already in the catalogue.");
    } else {
        println!(
            "Recovered {}; `list` shows {}.",
            crate::render::plural(recovered.len() as u64, "file"),
            if recovered.len() == 1 { "it" } else { "them" }
        );
    }
    if problems > 0 {
        bail!(
            "{} on Discord could not be used (see the warnings above)",
            crate::render::plural(problems as u64, "manifest")
        );
    }
    Ok(recovered.len())
}
