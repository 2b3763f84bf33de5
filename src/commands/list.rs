//! `list`: every file in the catalogue, newest first.

use anyhow::Result;
use time::OffsetDateTime;

use super::{FileJson, Session};
use crate::catalog::FileManifest;
use crate::render::{human_bytes, relative_age};

/// The files `list` shows, in the catalogue's order (newest first), and how many it leaves
/// out as hidden by `delete --keep-remote` (none with `all`). Damaged records are warned of.
pub(super) fn shown(s: &Session, all: bool) -> Result<(Vec<FileManifest>, u64)> {
    let mut files = Vec::new();
    let mut not_shown = 0u64;
    for entry in s.catalog.all()? {
        match entry {
            Ok(m) if m.hidden && !all => not_shown += 1,
            Ok(m) => files.push(m),
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    Ok((files, not_shown))
}

pub fn list(s: &Session, all: bool, tree: bool, json: bool) -> Result<()> {
    let (files, not_shown) = shown(s, all)?;
    let hidden: std::collections::HashSet<String> = files
        .iter()
        .filter(|m| m.hidden)
        .map(|m| m.id.clone())
        .collect();
    let rows: Vec<FileJson> = files.iter().map(|m| FileJson::of(&s.catalog, m)).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let hidden_note = match not_shown {
        0 => String::new(),
        1 => "1 file is hidden by `delete --keep-remote`; `list --all` shows it.".to_string(),
        n => format!("{n} files are hidden by `delete --keep-remote`; `list --all` shows them."),
    };
    let synced = synced_folders(s)?;
    if rows.is_empty() && !synced.is_empty() {
        if not_shown > 0 {
            println!("{hidden_note}");
        }
        print_synced(&synced, tree);
        return Ok(());
    }
    if rows.is_empty() {
        if not_shown == 0 {
            println!(
                "No files yet; `upload <path>` stores one, `sync <dir>` keeps a folder stored."
            );
        } else {
            println!("No files to show: {hidden_note}");
        }
        return Ok(());
    }
    let now = OffsetDateTime::now_utc();
    let name_w = rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 40);
    // `--all` marks the files `delete --keep-remote` hid.
    let status_w = if hidden.is_empty() { 10 } else { 19 };
    println!(
        "{:<10}  {:<name_w$}  {:>10}  {:>11}  {:<status_w$}  CREATED",
        "ID", "NAME", "SIZE", "PARTS", "STATUS"
    );
    for r in rows {
        let mark = if hidden.contains(&r.id) {
            " (hidden)"
        } else {
            ""
        };
        println!(
            "{:<10}  {:<name_w$}  {:>10}  {:>11}  {:<status_w$}  {}",
            r.id,
            truncate(&r.name, name_w),
            human_bytes(r.size),
            format!("{}/{}", r.parts_done, r.parts_total),
            format!("{}{mark}", r.status.as_str()),
            relative_age(r.created_at, now),
        );
    }
    if not_shown > 0 {
        println!("{hidden_note}");
    }
    if !synced.is_empty() {
        println!();
        print_synced(&synced, tree);
    }
    Ok(())
}

/// Each synced folder with its latest snapshot.
fn synced_folders(s: &Session) -> Result<Vec<(crate::sync::Folder, crate::sync::Local)>> {
    let folders = super::sync::folders(s);
    let mut out = Vec::new();
    for f in folders.all()? {
        if let Some(l) = folders.latest(&f.id)? {
            out.push((f, l));
        }
    }
    Ok(out)
}

/// The files of each synced folder's latest snapshot, by synced path; `tree` draws the tree.
fn print_synced(synced: &[(crate::sync::Folder, crate::sync::Local)], tree: bool) {
    use crate::repo::snapshot::Kind;
    let now = OffsetDateTime::now_utc();
    for (f, l) in synced {
        let snap = &l.snapshot;
        let files = snap.files.iter().filter(|n| n.kind == Kind::File);
        let total: u64 = files.clone().filter_map(|n| n.size).sum();
        println!(
            "Synced folder {} ({}): snapshot {}, {}, {} files, {}{}",
            f.name,
            f.id,
            snap.seq,
            relative_age(snap.time, now),
            files.count(),
            human_bytes(total),
            if f.root.is_empty() {
                " (synced on another machine)".to_string()
            } else {
                format!(", from {}", f.root)
            }
        );
        if tree {
            println!("{}/", f.name);
            for n in &snap.files {
                let depth = n.path.matches('/').count();
                let name = n.path.rsplit('/').next().unwrap_or(&n.path);
                let indent = "    ".repeat(depth);
                match n.kind {
                    Kind::Dir => println!("{indent}├── {name}/"),
                    Kind::File => {
                        println!("{indent}├── {name}  {}", human_bytes(n.size.unwrap_or(0)))
                    }
                    Kind::Symlink => println!(
                        "{indent}├── {name} -> {}",
                        n.target.as_deref().unwrap_or_default()
                    ),
                }
            }
            continue;
        }
        for n in snap.files.iter().filter(|n| n.kind != Kind::Dir) {
            let size = match n.kind {
                Kind::File => human_bytes(n.size.unwrap_or(0)),
                _ => format!("-> {}", n.target.as_deref().unwrap_or_default()),
            };
            println!(
                "  {:<50}  {:>10}  {}",
                format!("{}/{}", f.name, n.path),
                size,
                relative_age(n.mtime, now)
            );
        }
    }
}

fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut t: String = s.chars().take(width - 1).collect();
    t.push('…');
    t
}
