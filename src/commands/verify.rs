//! `verify [--full] <id>`: is every part still on Discord with its recorded size (and, with
//! `--full`, its recorded hash)? Names every missing or damaged part; fails if any is.

use anyhow::{bail, Result};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::Session;
use crate::catalog::remote::uncovered;
use crate::catalog::{FileManifest, LoadedParts, PartRecord, Status, FORMAT_V2};
use crate::progress::{Progress, ProgressMode};
use crate::repo::crypto::Keys;
use crate::repo::download::{check_manifest, check_packs, Rebuild, RebuildError};
use crate::store::PartStore;
use crate::transfer::download::{fetch_part, locate_checked, FetchError};

#[derive(Debug, Serialize)]
struct Problem {
    index: u64,
    offset: u64,
    length: u64,
    problem: String,
}

pub async fn verify(
    s: &Session,
    id: &str,
    full: bool,
    json: bool,
    cancel: CancellationToken,
) -> Result<()> {
    let file = s.catalog.load_file(id)?;
    if file.format == FORMAT_V2 {
        let keys = super::download::repository_keys(s, id).await?;
        return verify_v2(s, &keys, &file, full, json, cancel).await;
    }
    let loaded = s.catalog.load_parts(id)?;
    let records = record_problems(&file, &loaded);
    let parts = loaded.parts;
    let store = s.store()?;
    let checks = stream::iter(parts.iter())
        .map(|p| {
            let store = store.clone();
            async move { (p, check(store.as_ref(), p, full).await) }
        })
        .buffer_unordered(s.config.concurrency);
    let mut problems = Vec::new();
    let mut checks = std::pin::pin!(checks);
    loop {
        let next = tokio::select! {
            biased;
            _ = cancel.cancelled() => bail!("verify of {id} cancelled"),
            n = checks.next() => n,
        };
        let Some((p, r)) = next else { break };
        match r {
            Ok(()) => {}
            Err(FetchError::Lost(why)) => problems.push(Problem {
                index: p.index,
                offset: p.offset,
                length: p.length,
                problem: why,
            }),
            Err(FetchError::Fatal(e)) => bail!("verify of {id} stopped: {e}"),
        }
    }
    problems.sort_by_key(|p| p.offset);
    let what = if full { "size and SHA-256" } else { "size" };
    if json {
        let v = serde_json::json!({
            "id": file.id, "ok": problems.is_empty() && records.is_empty(), "full": full,
            "parts_checked": parts.len(), "problems": problems, "record_problems": records,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if problems.is_empty() && records.is_empty() {
        let (name, id) = (&file.name, &file.id);
        match parts.len() {
            0 => println!("{name} ({id}) is empty: it has no parts to check."),
            1 => println!("The one part of {name} ({id}) is on Discord with its recorded {what}."),
            n => println!(
                "All {n} parts of {name} ({id}) are on Discord with their recorded {what}."
            ),
        }
    } else {
        for r in &records {
            println!("{r}");
        }
        for p in &problems {
            println!(
                "part {} (bytes {}..{}): {}",
                p.index,
                p.offset,
                p.offset + p.length,
                p.problem
            );
        }
    }
    if !records.is_empty() {
        bail!(
            "{id} has {} missing or damaged on disk{}; `resume {id}` restores the records from Discord",
            crate::render::plural(records.len() as u64, "part record"),
            if problems.is_empty() {
                String::new()
            } else {
                format!(
                    ", and {} of its recorded parts are missing or damaged on Discord",
                    problems.len()
                )
            }
        );
    }
    if !problems.is_empty() {
        bail!(
            "{} of {} of {id} {} missing or damaged",
            problems.len(),
            crate::render::plural(parts.len() as u64, "part"),
            if problems.len() == 1 { "is" } else { "are" }
        );
    }
    Ok(())
}

/// `verify` of a format-2 file: every pack it uses is on Discord with its recorded size; with
/// `full`, every chunk is also fetched and opened and the whole SHA-256 checked (the download's
/// own path, writing nothing).
pub async fn verify_v2(
    s: &Session,
    keys: &Keys,
    file: &FileManifest,
    full: bool,
    json: bool,
    cancel: CancellationToken,
) -> Result<()> {
    let id = &file.id;
    if file.status != Status::Complete {
        bail!("{id} is an incomplete upload; run `resume {id}` to finish it, then verify it");
    }
    check_manifest(file, &s.config.channels)?;
    let store = s.store()?;
    let (problems, packs) = tokio::select! {
        biased;
        _ = cancel.cancelled() => bail!("verify of {id} cancelled"),
        r = check_packs(store.as_ref(), file, &s.config.channels, s.config.concurrency) => r?,
    };
    let mut problems: Vec<String> = problems.into_iter().map(|(_, p)| p).collect();
    let mut chunks = 0;
    if full && problems.is_empty() {
        let progress = Progress::new(ProgressMode::Hidden, &format!("verify {id}"), file.size);
        let rebuild = Rebuild {
            store,
            keys,
            file,
            channels: &s.config.channels,
            concurrency: s.config.concurrency,
            progress: &progress,
            cancel: &cancel,
        };
        match rebuild.run(None).await {
            Ok(done) => chunks = done.chunks,
            Err(RebuildError::Cancelled) => bail!("verify of {id} cancelled"),
            Err(e @ RebuildError::Store(_)) => bail!("verify of {id} stopped: {e}"),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if json {
        let v = serde_json::json!({
            "id": file.id, "ok": problems.is_empty(), "full": full,
            "packs_checked": packs, "chunks_checked": chunks, "problems": problems,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if problems.is_empty() {
        let name = &file.name;
        let packs_text = crate::render::plural(packs as u64, "pack");
        if full {
            println!("All {} of {name} ({id}) opened and checked from its {packs_text} on Discord; SHA-256 verified.", crate::render::plural(chunks, "chunk"));
        } else if packs == 0 {
            println!("{name} ({id}) is empty: it has no packs to check.");
        } else if packs == 1 {
            println!("The one pack of {name} ({id}) is on Discord with its recorded size.");
        } else {
            println!("All {packs_text} of {name} ({id}) are on Discord with their recorded size.");
        }
    } else {
        for p in &problems {
            println!("{p}");
        }
    }
    match problems.len() {
        0 => Ok(()),
        1 => bail!("{}", problems[0]),
        n => bail!(
            "{n} of the {} of {id} are missing or changed on Discord",
            crate::render::plural(packs as u64, "pack")
        ),
    }
}

/// Part manifests on disk that are damaged, and for a complete file the bytes no record
/// covers: every one a part `verify` could not check.
fn record_problems(file: &FileManifest, loaded: &LoadedParts) -> Vec<String> {
    let mut out: Vec<String> = loaded
        .quarantined
        .iter()
        .map(|p| format!("the part manifest {} is damaged (moved aside)", p.display()))
        .collect();
    if file.status == Status::Complete {
        out.extend(
            uncovered(&loaded.parts, file.size)
                .into_iter()
                .map(|(from, to)| format!("bytes {from}..{to}: no part record on disk")),
        );
    }
    out
}

async fn check<S: PartStore>(store: &S, p: &PartRecord, full: bool) -> Result<(), FetchError> {
    if full {
        fetch_part(store, p, None).await
    } else {
        locate_checked(store, p).await.map(drop)
    }
}
