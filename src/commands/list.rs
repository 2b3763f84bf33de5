//! `list`: every file in the catalogue, newest first.

use anyhow::Result;
use time::OffsetDateTime;

use super::{FileJson, Session};
use crate::render::{human_bytes, relative_age};

pub fn list(s: &Session, all: bool, json: bool) -> Result<()> {
    let mut rows = Vec::new();
    let mut hidden = std::collections::HashSet::new();
    let mut not_shown = 0u64;
    for entry in s.catalog.all()? {
        match entry {
            Ok(m) if m.hidden && !all => not_shown += 1,
            Ok(m) => {
                if m.hidden {
                    hidden.insert(m.id.clone());
                }
                rows.push(FileJson::of(&s.catalog, &m));
            }
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let hidden_note = match not_shown {
        0 => String::new(),
        1 => "1 file is hidden by `delete --keep-remote`; `list --all` shows it.".to_string(),
        n => format!("{n} files are hidden by `delete --keep-remote`; `list --all` shows them."),
    };
    if rows.is_empty() {
        if not_shown == 0 {
            println!("No files yet; `upload <path>` stores one.");
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
    Ok(())
}

fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut t: String = s.chars().take(width - 1).collect();
    t.push('…');
    t
}
