//! The on-disk JSON formats: `file.json` per file and `parts/<index>.json` per stored part.
//! Both carry a format version; a newer version than this build knows is reported, not guessed.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::layout::{self, PartSpan, Segment};
use super::packs::{ChunkRef, PackRef};

/// The manifest format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Incomplete,
    Complete,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Incomplete => "incomplete",
            Status::Complete => "complete",
        }
    }
}

/// `files/<id>/file.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileManifest {
    pub format: u32,
    pub id: String,
    pub name: String,
    pub source_path: PathBuf,
    pub size: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub mtime: OffsetDateTime,
    /// SHA-256 of the whole file, hex; known once every byte has been read.
    pub sha256: Option<String>,
    /// The part size in force now (smaller than at the start after a 413); 0 in format 2,
    /// whose packs are not byte ranges of the file.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub part_size: u64,
    /// Where each part index lies; see [`layout`]. Empty in format 2.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layout: Vec<Segment>,
    /// The channels parts go to, part `i` to `channels[i % len]`.
    #[serde(with = "snowflakes")]
    pub channels: Vec<u64>,
    pub status: Status,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Hidden from `list` by `delete --keep-remote`; its parts stay on Discord.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
    /// The message holding this file's manifest on Discord (see `recover`), once posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_manifest: Option<MessageRef>,
    /// The source's permission bits (Unix mode & 0o7777) at upload, given back on download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// What identifies the source beyond size and mtime, to notice it was edited or replaced
    /// while it uploads; `None` for recovered files and on platforms without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_stamp: Option<SourceStamp>,
    /// Format 2: the version of the catalogue entry `remote_manifest` names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_version: Option<u64>,
    /// Format 2, once complete: the packs the chunks live in, as in the catalogue entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packs: Vec<PackRef>,
    /// Format 2, once complete: the file's chunks in file order, as in the catalogue entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkRef>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The source file's change time, device and inode when the upload began (Unix).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStamp {
    pub ctime_sec: i64,
    pub ctime_nsec: i64,
    pub dev: u64,
    pub ino: u64,
}

impl SourceStamp {
    /// The stamp of a file as `metadata` describes it.
    pub fn of(meta: &std::fs::Metadata) -> Option<Self> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Some(Self {
                ctime_sec: meta.ctime(),
                ctime_nsec: meta.ctime_nsec(),
                dev: meta.dev(),
                ino: meta.ino(),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            None
        }
    }
}

/// A file's permission bits, for recording at upload.
pub fn mode_of(meta: &std::fs::Metadata) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Some(meta.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

/// Where a message is on Discord.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRef {
    #[serde(with = "snowflake")]
    pub channel_id: u64,
    #[serde(with = "snowflake")]
    pub message_id: u64,
}

#[cfg(test)]
impl FileManifest {
    /// A manifest for tests: file `id` of `size` bytes in `part_size` parts, not yet complete,
    /// on channel 7, its times all now.
    pub(crate) fn fixture(id: &str, size: u64, part_size: u64) -> Self {
        let now = OffsetDateTime::now_utc();
        FileManifest {
            format: FORMAT_VERSION,
            id: id.into(),
            name: "f.bin".into(),
            source_path: "/tmp/f.bin".into(),
            size,
            mtime: now,
            sha256: None,
            part_size,
            layout: layout::initial(size, part_size),
            channels: vec![7],
            status: Status::Incomplete,
            created_at: now,
            updated_at: now,
            hidden: false,
            remote_manifest: None,
            mode: None,
            source_stamp: None,
            entry_version: None,
            packs: Vec::new(),
            chunks: Vec::new(),
        }
    }
}

impl FileManifest {
    /// The channel part `index` goes to; `None` if the manifest names no channel.
    pub fn channel_for(&self, index: u64) -> Option<u64> {
        let n = self.channels.len() as u64;
        (n > 0).then(|| self.channels[(index % n) as usize])
    }

    /// The span of part `index`: where it lies in the file, whether or not the current plan
    /// still uses it (a part stored before a shrink keeps its place).
    pub fn span(&self, index: u64) -> Option<PartSpan> {
        self.layout
            .iter()
            .find(|s| index >= s.first_index && index - s.first_index < s.count())
            .and_then(|s| s.parts().nth((index - s.first_index) as usize))
    }

    /// Parts the current layout plans, in offset order: a tiling of the file. None for a
    /// layout that cannot describe the file (a damaged `file.json`; the upload reports it).
    pub fn planned(&self) -> Vec<PartSpan> {
        if layout::problem(&self.layout, self.size).is_some() {
            return Vec::new();
        }
        layout::planned(&self.layout)
    }
}

/// `files/<id>/parts/<index>.json`: one part Discord confirmed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub format: u32,
    pub index: u64,
    pub offset: u64,
    pub length: u64,
    pub sha256: String,
    #[serde(with = "snowflake")]
    pub channel_id: u64,
    #[serde(with = "snowflake")]
    pub message_id: u64,
    #[serde(with = "snowflake")]
    pub attachment_id: u64,
    pub attachment_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub uploaded_at: OffsetDateTime,
}

impl PartRecord {
    pub fn span(&self) -> PartSpan {
        PartSpan {
            index: self.index,
            offset: self.offset,
            length: self.length,
        }
    }
}

/// The attachment name of a part: the file ID and index, nothing of the file itself.
pub fn attachment_name(file_id: &str, index: u64) -> String {
    format!("{file_id}.{index}.part")
}

/// The index in an attachment name made by [`attachment_name`] for `file_id`.
pub fn parse_attachment_name(file_id: &str, name: &str) -> Option<u64> {
    name.strip_prefix(file_id)?
        .strip_prefix('.')?
        .strip_suffix(".part")?
        .parse()
        .ok()
}

/// Snowflakes are strings in JSON, as Discord writes them (they exceed 2^53).
pub(crate) mod snowflake {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

mod snowflakes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|n| n.to_string()))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| t.parse().map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_names_round_trip_and_reject_others() {
        let n = attachment_name("k3f9x2ab7q", 41);
        assert_eq!(n, "k3f9x2ab7q.41.part");
        assert_eq!(parse_attachment_name("k3f9x2ab7q", &n), Some(41));
        assert_eq!(parse_attachment_name("otherid123", &n), None);
        assert_eq!(
            parse_attachment_name("k3f9x2ab7q", "k3f9x2ab7q.x.part"),
            None
        );
    }
}
