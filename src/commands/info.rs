//! `info <id>`: everything the catalogue knows of one file, its parts, and the command to run
//! next; `--json` for scripts.

use anyhow::Result;
use serde::Serialize;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

use super::{FileJson, Session};
use crate::catalog::remote::uncovered;
use crate::catalog::{FileManifest, MessageRef, PartRecord, Status};
use crate::render::{human_bytes, relative_age};

/// Parts shown in the text table; `--json` lists them all.
const TABLE_ROWS: usize = 20;

#[derive(Serialize)]
struct InfoJson {
    #[serde(flatten)]
    file: FileJson,
    part_size: u64,
    source_path: String,
    channels: Vec<String>,
    hidden: bool,
    /// The message holding the file's manifest for `recover`, once posted.
    remote_manifest: Option<MessageRef>,
    parts: Vec<PartJson>,
    next: String,
}

/// Snowflakes as strings, as everywhere in dstore's JSON (they exceed 2^53).
#[derive(Serialize)]
struct PartJson {
    index: u64,
    offset: u64,
    length: u64,
    sha256: String,
    channel_id: String,
    message_id: String,
    attachment_id: String,
}

pub fn info(s: &Session, id: &str, json: bool) -> Result<()> {
    if !s.catalog.contains(id) {
        if let Some((folder, path)) = super::sync::resolve(s, id)? {
            return info_synced(s, &folder, &path, json);
        }
    }
    let file = s.catalog.load_file(id)?;
    if file.format == crate::catalog::FORMAT_V2 {
        return info_v2(s, &file, json);
    }
    let loaded = s.catalog.load_parts(id)?;
    for path in &loaded.quarantined {
        eprintln!(
            "warning: a damaged part manifest was moved to {}; `resume {id}` finds that part on Discord again",
            path.display()
        );
    }
    let unrecorded = match file.status {
        Status::Complete => uncovered(&loaded.parts, file.size),
        Status::Incomplete => Vec::new(),
    };
    for (from, to) in &unrecorded {
        eprintln!(
            "warning: bytes {from}..{to} of {id} have no part record; `resume {id}` restores it from Discord"
        );
    }
    let parts = loaded.parts;
    let next = if unrecorded.is_empty() {
        next_command(&file)
    } else {
        format!("resume {id}")
    };
    let summary = FileJson::of(&s.catalog, &file);
    if json {
        let out = InfoJson {
            file: summary,
            part_size: file.part_size,
            source_path: file.source_path.display().to_string(),
            channels: file.channels.iter().map(u64::to_string).collect(),
            hidden: file.hidden,
            remote_manifest: file.remote_manifest,
            parts: parts.iter().map(part_json).collect(),
            next,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    print_details(&file, &summary);
    print_parts(&parts);
    println!();
    println!("Next: `{next}`");
    Ok(())
}

#[derive(Serialize)]
struct Info2Json {
    #[serde(flatten)]
    file: FileJson,
    format: u32,
    source_path: String,
    channels: Vec<String>,
    hidden: bool,
    remote_manifest: Option<MessageRef>,
    entry_version: Option<u64>,
    chunks: usize,
    /// Sealed bytes of the file's chunks as stored (compressed where it paid).
    stored_bytes: u64,
    packs: Vec<crate::catalog::PackRef>,
    /// Packs this file's upload posted (some hold chunks other files use too).
    packs_posted: usize,
    next: String,
}

/// Sealed bytes of a format-2 file's chunks as stored (compressed where it paid).
pub(super) fn stored_bytes(file: &FileManifest) -> u64 {
    file.chunks.iter().map(|c| u64::from(c.sealed_len)).sum()
}

/// `info` of a format-2 file: its chunks and the packs they live in.
fn info_v2(s: &Session, file: &FileManifest, json: bool) -> Result<()> {
    let posted = s.catalog.load_packs(&file.id)?;
    let summary = FileJson::of(&s.catalog, file);
    let stored = stored_bytes(file);
    let next = next_command(file);
    if json {
        let out = Info2Json {
            file: summary,
            format: file.format,
            source_path: file.source_path.display().to_string(),
            channels: file.channels.iter().map(u64::to_string).collect(),
            hidden: file.hidden,
            remote_manifest: file.remote_manifest,
            entry_version: file.entry_version,
            chunks: file.chunks.len(),
            stored_bytes: stored,
            packs: file.packs.clone(),
            packs_posted: posted.len(),
            next,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    print_details(file, &summary);
    println!();
    if file.status == Status::Complete {
        let own: std::collections::HashSet<_> = posted.iter().map(|p| p.pack_id).collect();
        let shared = file
            .packs
            .iter()
            .filter(|p| !own.contains(&p.pack_id))
            .count();
        println!(
            "Format 2: {} in {} ({} of them posted by other uploads), {} stored ({:.0}% of the size).",
            crate::render::plural(file.chunks.len() as u64, "chunk"),
            crate::render::plural(file.packs.len() as u64, "pack"),
            shared,
            human_bytes(stored),
            if file.size == 0 { 100.0 } else { stored as f64 * 100.0 / file.size as f64 }
        );
    } else {
        println!(
            "Format 2: {} posted so far; `resume {}` sends only the chunks not yet stored.",
            crate::render::plural(posted.len() as u64, "pack"),
            file.id
        );
    }
    println!();
    println!("Next: `{next}`");
    Ok(())
}

/// What to run next: `resume` for an unfinished upload (or one missing part records), else
/// `download`, or `undelete` first for a hidden file.
fn next_command(file: &FileManifest) -> String {
    match (file.status, file.hidden) {
        (Status::Incomplete, _) => format!("resume {}", file.id),
        (Status::Complete, true) => format!("undelete {}", file.id),
        (Status::Complete, false) => format!("download {}", file.id),
    }
}

fn part_json(p: &PartRecord) -> PartJson {
    PartJson {
        index: p.index,
        offset: p.offset,
        length: p.length,
        sha256: p.sha256.clone(),
        channel_id: p.channel_id.to_string(),
        message_id: p.message_id.to_string(),
        attachment_id: p.attachment_id.to_string(),
    }
}

fn print_details(file: &FileManifest, summary: &FileJson) {
    let now = OffsetDateTime::now_utc();
    let created = file
        .created_at
        .to_offset(UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
        ))
        .unwrap_or_else(|_| file.created_at.to_string());
    let hidden = if file.hidden {
        ", hidden by `delete --keep-remote`"
    } else {
        ""
    };
    let channels: Vec<String> = file.channels.iter().map(u64::to_string).collect();
    let rows = [
        ("Name", file.name.clone()),
        ("ID", file.id.clone()),
        (
            "Size",
            format!("{} ({} bytes)", human_bytes(file.size), file.size),
        ),
        (
            "SHA-256",
            file.sha256
                .clone()
                .unwrap_or_else(|| "not known until the upload has read the whole file".into()),
        ),
        (
            "Status",
            format!(
                "{}, {}/{}{hidden}",
                file.status.as_str(),
                summary.parts_done,
                crate::render::plural(
                    summary.parts_total,
                    if file.format == crate::catalog::FORMAT_V2 {
                        "pack"
                    } else {
                        "part"
                    }
                )
            ),
        ),
        (
            "Created",
            format!("{created} ({})", relative_age(file.created_at, now)),
        ),
        (
            "Part size",
            if file.format == crate::catalog::FORMAT_V2 {
                "packs of up to the channel's attachment limit (format 2)".to_string()
            } else {
                format!("{} ({} bytes)", human_bytes(file.part_size), file.part_size)
            },
        ),
        (
            "Source",
            if file.source_path.as_os_str().is_empty() {
                "unknown (recovered from Discord)".to_string()
            } else {
                file.source_path.display().to_string()
            },
        ),
        ("Channels", channels.join(", ")),
        (
            "Manifest",
            file.remote_manifest.map_or_else(
                || "not on Discord yet (posted when the upload completes)".into(),
                |r| {
                    format!(
                        "message {} in channel {} (for `recover`)",
                        r.message_id, r.channel_id
                    )
                },
            ),
        ),
    ];
    for (key, value) in rows {
        println!("{:<10} {value}", format!("{key}:"));
    }
}

fn print_parts(parts: &[PartRecord]) {
    println!();
    if parts.is_empty() {
        println!("No parts on Discord yet.");
        return;
    }
    let (iw, ow, lw) = parts.iter().fold((5, 6, 6), |(i, o, l), p| {
        (
            i.max(p.index.to_string().len()),
            o.max(p.offset.to_string().len()),
            l.max(p.length.to_string().len()),
        )
    });
    println!(
        "{:>iw$}  {:>ow$}  {:>lw$}  {:<20}  MESSAGE",
        "INDEX", "OFFSET", "LENGTH", "CHANNEL"
    );
    for p in parts.iter().take(TABLE_ROWS) {
        println!(
            "{:>iw$}  {:>ow$}  {:>lw$}  {:<20}  {}",
            p.index, p.offset, p.length, p.channel_id, p.message_id
        );
    }
    if parts.len() > TABLE_ROWS {
        println!(
            "... {} more (info --json lists all)",
            parts.len() - TABLE_ROWS
        );
    }
}

/// `info <synced path>`: the file as the latest snapshot holds it, and its versions.
fn info_synced(s: &Session, folder: &crate::sync::Folder, path: &str, json: bool) -> Result<()> {
    let local = super::sync::snapshot_at(s, folder, None)?;
    let snap = &local.snapshot;
    let versions = super::versions::versions(s, folder, path)?;
    let node = snap.node(path);
    if node.is_none() && versions.is_empty() {
        anyhow::bail!(
            "{}/{path} is in no snapshot of {} ({})",
            folder.name,
            folder.name,
            folder.id
        );
    }
    if json {
        let value = serde_json::json!({
            "folder": folder.id,
            "folder_name": folder.name,
            "path": path,
            "seq": snap.seq,
            "type": node.map(|n| n.kind),
            "size": node.and_then(|n| n.size),
            "mtime": node.map(|n| n.mtime.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()),
            "mode": node.and_then(|n| n.mode),
            "sha256": node.and_then(|n| n.sha256.clone()),
            "chunks": node.map_or(0, |n| n.chunks.len()),
            "versions": versions,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let now = OffsetDateTime::now_utc();
    println!("Synced path  {}/{path}", folder.name);
    println!(
        "Folder       {} ({})",
        folder.id,
        if folder.root.is_empty() {
            "synced on another machine"
        } else {
            folder.root.as_str()
        }
    );
    match node {
        Some(n) => {
            println!("Type         {:?}", n.kind);
            if let Some(size) = n.size {
                println!("Size         {} ({size} bytes)", human_bytes(size));
            }
            println!("Modified     {}", relative_age(n.mtime, now));
            if let Some(mode) = n.mode {
                println!("Mode         {mode:o}");
            }
            if let Some(sha) = &n.sha256 {
                println!("SHA-256      {sha}");
            }
            if n.kind == crate::repo::snapshot::Kind::File {
                println!("Chunks       {}", n.chunks.len());
            }
        }
        None => println!("State        deleted (in no file of snapshot {})", snap.seq),
    }
    println!(
        "Versions     {}",
        versions.iter().filter(|v| !v.deleted).count()
    );
    for v in &versions {
        let what = if v.deleted {
            "deleted".to_string()
        } else {
            human_bytes(v.size)
        };
        println!(
            "  snapshot {:>4}  {:<12}  {what}",
            v.seq,
            relative_age(v.time, now)
        );
    }
    println!(
        "Next         download {}/{path}   |   versions {}/{path}",
        folder.name, folder.name
    );
    Ok(())
}
