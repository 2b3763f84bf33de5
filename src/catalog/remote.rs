//! The manifest dstore posts to Discord when a file is complete, `<file-id>.manifest.json`:
//! everything needed to download the file from a new machine, and nothing that would let a
//! reader of the channel post to it (no token, no webhook URL) nor the local source path.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{FileManifest, MessageRef, PartRecord, Status, FORMAT_VERSION};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteManifest {
    pub format: u32,
    pub id: String,
    pub name: String,
    pub size: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub mtime: OffsetDateTime,
    pub sha256: String,
    pub part_size: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Hidden by `delete --keep-remote`; a recovered file stays hidden.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
    /// The source's permission bits, given back on download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    pub parts: Vec<PartRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "it has format {0}, newer than this dstore understands ({FORMAT_VERSION}); upgrade dstore"
    )]
    Newer(u32),
    #[error("it is damaged ({0})")]
    Damaged(String),
}

pub fn manifest_name(id: &str) -> String {
    format!("{id}.manifest.json")
}

/// The file ID in a manifest attachment's name.
pub fn parse_manifest_name(name: &str) -> Option<&str> {
    name.strip_suffix(".manifest.json")
        .filter(|id| super::is_valid_id(id))
}

impl RemoteManifest {
    pub fn of(file: &FileManifest, parts: &[PartRecord]) -> Self {
        Self {
            format: FORMAT_VERSION,
            id: file.id.clone(),
            name: file.name.clone(),
            size: file.size,
            mtime: file.mtime,
            sha256: file.sha256.clone().unwrap_or_default(),
            part_size: file.part_size,
            created_at: file.created_at,
            hidden: file.hidden,
            mode: file.mode,
            parts: parts.to_vec(),
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, RemoteError> {
        #[derive(Deserialize)]
        struct Version {
            format: u32,
        }
        if let Ok(v) = serde_json::from_slice::<Version>(bytes) {
            if v.format > FORMAT_VERSION {
                return Err(RemoteError::Newer(v.format));
            }
        }
        let m: Self =
            serde_json::from_slice(bytes).map_err(|e| RemoteError::Damaged(e.to_string()))?;
        let mut at = 0;
        let mut parts = m.parts.clone();
        parts.sort_by_key(|p| p.offset);
        for p in &parts {
            if p.offset != at {
                return Err(RemoteError::Damaged(format!(
                    "part {} starts at byte {}",
                    p.index, p.offset
                )));
            }
            at += p.length;
        }
        if at != m.size || m.id.is_empty() {
            return Err(RemoteError::Damaged(
                "its parts do not cover the file".into(),
            ));
        }
        Ok(m)
    }

    /// The local manifests for a file recovered from Discord.
    pub fn into_local(self, found: MessageRef) -> (FileManifest, Vec<PartRecord>) {
        let mut channels: Vec<u64> = self.parts.iter().map(|p| p.channel_id).collect();
        channels.sort_unstable();
        channels.dedup();
        if channels.is_empty() {
            channels.push(found.channel_id);
        }
        let file = FileManifest {
            format: FORMAT_VERSION,
            id: self.id,
            name: self.name,
            source_path: Default::default(),
            size: self.size,
            mtime: self.mtime,
            sha256: Some(self.sha256),
            part_size: self.part_size,
            layout: Vec::new(),
            channels,
            status: Status::Complete,
            created_at: self.created_at,
            updated_at: OffsetDateTime::now_utc(),
            hidden: self.hidden,
            remote_manifest: Some(found),
            mode: self.mode,
            source_stamp: None,
        };
        (file, self.parts)
    }
}
