//! The message journal: one JSON line per created, deleted, edited or re-timed message, replayed on start.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::model::StoredMessage;

const FILE: &str = "journal.jsonl";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    Create {
        message: StoredMessage,
    },
    Delete {
        channel_id: u64,
        message_id: u64,
    },
    Retime {
        channel_id: u64,
        message_id: u64,
        timestamp_ms: u64,
    },
    /// A new content (a webhook message edit), at `edited_ms`.
    Edit {
        channel_id: u64,
        message_id: u64,
        content: String,
        edited_ms: u64,
    },
}

/// Append-only, so thousands of messages cost one line each instead of a rewrite per message.
#[derive(Debug)]
pub struct Journal {
    file: File,
}

impl Journal {
    /// Opens (or creates) the journal in `dir` and returns the events it already holds.
    /// A torn last line (the process died mid-write) is dropped and cut from the file.
    pub fn open(dir: &Path) -> anyhow::Result<(Journal, Vec<Event>)> {
        let path = dir.join(FILE);
        let bytes = if path.exists() {
            fs::read(&path).with_context(|| format!("reading {}", path.display()))?
        } else {
            Vec::new()
        };
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let mut events = Vec::new();
        for (n, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let ev = serde_json::from_slice(line)
                .with_context(|| format!("{} line {}", path.display(), n + 1))?;
            events.push(ev);
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if complete < bytes.len() {
            tracing::warn!(
                dropped = bytes.len() - complete,
                "ignoring a torn last journal line"
            );
            file.set_len(complete as u64)?;
        }
        Ok((Journal { file }, events))
    }

    /// Writes one event as one line with a single write. Not fsynced: a killed process loses
    /// nothing (the page cache survives it); only an OS crash could.
    pub fn append(&mut self, ev: &Event) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(ev)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tail_is_ignored_and_cut() {
        let dir = tempfile::tempdir().unwrap();
        let ev = Event::Delete {
            channel_id: 1,
            message_id: 2,
        };
        {
            let (mut j, evs) = Journal::open(dir.path()).unwrap();
            assert!(evs.is_empty());
            j.append(&ev).unwrap();
        }
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE))
            .unwrap();
        f.write_all(b"{\"ev\":\"del").unwrap();
        let (mut j, evs) = Journal::open(dir.path()).unwrap();
        assert_eq!(evs, vec![ev.clone()]);
        j.append(&ev).unwrap();
        let (_, evs) = Journal::open(dir.path()).unwrap();
        assert_eq!(evs.len(), 2);
    }
}
