//! `recover`: rebuilds the local catalogue from the catalogue entries dstore posted to Discord.
//! It pages through every configured channel, trusts only entries this bot posted (others are
//! reported and skipped), keeps the newest sound entry of each file, skips files it already
//! knows, and can be run again safely.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::entries::{read_entry, scan, trust};
use super::{FileJson, Session};
use crate::catalog::remote::parse_manifest_name;
use crate::catalog::MessageRef;
use crate::render::human_bytes;
use crate::store::RemotePart;

pub async fn recover(s: &Session, json: bool, cancel: CancellationToken) -> Result<usize> {
    let store = s.store()?;
    // The repository first: a wrong passphrase is said before anything is written.
    let repo = s.repository().await?;
    let trust = trust(s, &store).await?;
    let is_head = |name: &str| parse_manifest_name(name).is_some();
    let found = tokio::select! {
        _ = cancel.cancelled() => bail!("recover cancelled; run it again to continue"),
        f = scan(&store, &trust, &s.config.channels, &is_head, OffsetDateTime::UNIX_EPOCH) => f?,
    };
    found.warn_strangers("a catalogue entry");
    // Each file's heads, newest first (snowflakes grow with time, across channels too).
    let mut heads: BTreeMap<String, Vec<RemotePart>> = BTreeMap::new();
    for r in found.ours {
        if let Some(id) = parse_manifest_name(&r.filename) {
            heads.entry(id.to_string()).or_default().push(r);
        }
    }
    let mut recovered = Vec::new();
    let mut problems = 0;
    for (id, mut heads) in heads {
        if s.catalog.contains(&id) {
            continue;
        }
        heads.sort_by_key(|r| std::cmp::Reverse(r.message_id));
        let mut chosen = None;
        for head in &heads {
            if cancel.is_cancelled() {
                bail!("recover cancelled; run it again to continue");
            }
            match read_entry(&store, &trust, head).await {
                Ok(m) => {
                    chosen = Some((head, m));
                    break;
                }
                Err(why) => eprintln!(
                    "warning: the catalogue entry of {id} in message {} cannot be used: {why}; skipped",
                    head.message_id
                ),
            }
        }
        let Some((head, manifest)) = chosen else {
            problems += 1;
            continue;
        };
        if heads.len() > 1 {
            tracing::info!(id = %id, entries = heads.len(), kept = head.message_id, "kept the newest catalogue entry");
        }
        let at = MessageRef {
            channel_id: head.channel_id,
            message_id: head.message_id,
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
    if let Some(repo) = repo {
        let keys = super::upload2::RepoKeys::from(repo.as_ref());
        let (more, skipped) = super::recover2::recover(s, &keys, json, cancel).await?;
        recovered.extend(more);
        problems += skipped;
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
            "{problems} catalogue entr{} on Discord could not be used (see the warnings above)",
            if problems == 1 { "y" } else { "ies" }
        );
    }
    Ok(recovered.len())
}
