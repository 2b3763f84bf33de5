//! The sealed catalogue (docs/format.md section 7): one entry per complete file, its metadata and
//! ordered chunk list sealed with the catalogue key, split into pieces when it would not fit one
//! attachment.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::crypto::{CryptoError, Keys};
use crate::catalog::snowflake;
use crate::catalog::{ChunkRef, FileManifest, PackRef};

/// The storage format entries are written in.
pub const ENTRY_FORMAT: u32 = 2;

/// The plaintext of a catalogue entry (7.1); a head of a split entry has `pieces` and no chunks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub format: u32,
    pub kind: String,
    pub id: String,
    pub version: u64,
    pub name: String,
    pub size: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub mtime: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    pub sha256: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
    pub packs: Vec<PackRef>,
    pub chunks: Vec<ChunkRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pieces: Vec<PieceRef>,
}

/// A piece of a split entry (7.3): part of the chunk list, with its own packs table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Piece {
    pub format: u32,
    pub kind: String,
    pub id: String,
    pub version: u64,
    pub piece: u32,
    pub packs: Vec<PackRef>,
    pub chunks: Vec<ChunkRef>,
}

/// Where a piece is, in the head: its message, and the SHA-256 of its sealed attachment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceRef {
    #[serde(with = "snowflake")]
    pub channel_id: u64,
    #[serde(with = "snowflake")]
    pub message_id: u64,
    #[serde(with = "snowflake")]
    pub attachment_id: u64,
    pub sha256: String,
    pub chunks: u64,
}

/// What is wrong with an entry. Each a sentence fragment naming the entry's attachment.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("it does not open with this repository's key (another repository's, damaged, or not dstore's)")]
    Open(#[from] CryptoError),
    #[error("it is not a catalogue entry ({0})")]
    Json(String),
    #[error("it was written by a newer dstore (format {0}); upgrade dstore to read it")]
    Newer(u32),
    #[error("it is inconsistent: {0}")]
    Invalid(String),
}

/// A sealed object opened: an entry (or a head) or a piece.
#[derive(Debug)]
pub enum Opened {
    Entry(Entry),
    Piece(Piece),
}

/// Opens a sealed catalogue object (an entry, a snapshot or a piece of either) and checks its
/// `format` against `format`; returns its JSON and its `kind` for the caller to parse.
pub fn open_json(keys: &Keys, sealed: &[u8], format: u32) -> Result<(Vec<u8>, String), EntryError> {
    let json = keys.open_entry(sealed)?;
    #[derive(Deserialize)]
    struct Probe {
        format: u32,
        kind: String,
    }
    let probe: Probe =
        serde_json::from_slice(&json).map_err(|e| EntryError::Json(e.to_string()))?;
    if probe.format > format {
        return Err(EntryError::Newer(probe.format));
    }
    if probe.format != format {
        return Err(EntryError::Json(format!("format {}", probe.format)));
    }
    Ok((json, probe.kind))
}

/// Parses an opened object's JSON as `T`.
pub fn parse<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, EntryError> {
    serde_json::from_slice(json).map_err(|e| EntryError::Json(e.to_string()))
}

/// Opens a sealed entry or piece and checks its format; [`Entry::check`] checks the rest.
pub fn open(keys: &Keys, sealed: &[u8]) -> Result<Opened, EntryError> {
    let (json, kind) = open_json(keys, sealed, ENTRY_FORMAT)?;
    match kind.as_str() {
        "entry" => parse(&json).map(Opened::Entry),
        "piece" => parse(&json).map(Opened::Piece),
        other => Err(EntryError::Json(format!("kind {other:?}"))),
    }
}

impl Entry {
    /// The entry of a complete format-2 file at `version`.
    pub fn of(file: &FileManifest, version: u64) -> Entry {
        Entry {
            format: ENTRY_FORMAT,
            kind: "entry".into(),
            id: file.id.clone(),
            version,
            name: file.name.clone(),
            size: file.size,
            mtime: file.mtime,
            mode: file.mode,
            sha256: file.sha256.clone().unwrap_or_default(),
            created_at: file.created_at,
            hidden: file.hidden,
            packs: file.packs.clone(),
            chunks: file.chunks.clone(),
            pieces: Vec::new(),
        }
    }

    /// Checks a whole entry (pieces joined) against the rules of 7.1, `channels` being the
    /// configured ones.
    pub fn check(&self, channels: &[u64]) -> Result<(), EntryError> {
        let bad = |m: String| Err(EntryError::Invalid(m));
        if !crate::catalog::is_valid_id(&self.id) {
            return bad(format!("{:?} is not a file ID", self.id));
        }
        if self.version == 0 {
            return bad("version 0".into());
        }
        if self.name.is_empty()
            || self.name.contains('/')
            || self.name.contains('\0')
            || self.name == "."
            || self.name == ".."
        {
            return bad(format!("{:?} is not a file name", self.name));
        }
        if self.sha256.len() != 64
            || !self
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return bad("its SHA-256 is not 64 lowercase hex characters".into());
        }
        check_chunks(&self.packs, &self.chunks, channels)?;
        let total: u64 = self.chunks.iter().map(|c| u64::from(c.plain_len)).sum();
        if total != self.size {
            return bad(format!(
                "its chunks add up to {total} bytes, its size is {}",
                self.size
            ));
        }
        Ok(())
    }

    /// The file manifest `recover` writes for this entry (checked first).
    pub fn to_manifest(&self, channels: Vec<u64>, at: crate::catalog::MessageRef) -> FileManifest {
        FileManifest {
            format: crate::catalog::FORMAT_V2,
            id: self.id.clone(),
            name: self.name.clone(),
            source_path: std::path::PathBuf::new(),
            size: self.size,
            mtime: self.mtime,
            sha256: Some(self.sha256.clone()),
            part_size: 0,
            layout: Vec::new(),
            channels,
            status: crate::catalog::Status::Complete,
            created_at: self.created_at,
            updated_at: OffsetDateTime::now_utc(),
            hidden: self.hidden,
            remote_manifest: Some(at),
            mode: self.mode,
            source_stamp: None,
            entry_version: Some(self.version),
            packs: self.packs.clone(),
            chunks: self.chunks.clone(),
        }
    }
}

/// Every chunk's pack in range and its blob inside that pack; every pack in a configured channel.
pub fn check_chunks(
    packs: &[PackRef],
    chunks: &[ChunkRef],
    channels: &[u64],
) -> Result<(), EntryError> {
    if let Some(p) = packs.iter().find(|p| !channels.contains(&p.channel_id)) {
        return Err(EntryError::Invalid(format!(
            "a pack is in channel {}, which is not configured",
            p.channel_id
        )));
    }
    for (n, c) in chunks.iter().enumerate() {
        let Some(p) = packs.get(c.pack as usize) else {
            return Err(EntryError::Invalid(format!(
                "chunk {n} names pack {}, which the entry does not list",
                c.pack
            )));
        };
        if c.offset
            .checked_add(u64::from(c.sealed_len))
            .is_none_or(|end| end > p.size)
        {
            return Err(EntryError::Invalid(format!(
                "chunk {n} lies outside its pack"
            )));
        }
    }
    Ok(())
}

/// A sealed object ready to post: its attachment name and bytes.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Seals an entry whole when it fits `budget` bytes, else as pieces then a head (7.3): returns
/// the pieces (to post first, in order) and a function that seals the head once the pieces'
/// places are known.
pub fn seal(keys: &Keys, entry: &Entry, budget: usize) -> Result<Split, EntryError> {
    let json = serde_json::to_vec(entry).map_err(|e| EntryError::Json(e.to_string()))?;
    if json.len() + keys.overhead() <= budget {
        return Ok(Split {
            pieces: Vec::new(),
            chunk_counts: Vec::new(),
            head: entry.clone(),
        });
    }
    // Each chunk record is at most ~150 bytes of JSON, each pack record ~170: pieces of chunks
    // sized so that even with a pack per chunk they stay inside the budget.
    let per_piece = (budget.saturating_sub(4096) / 330).max(1);
    let mut pieces = Vec::new();
    let mut chunk_counts = Vec::new();
    for (n, slice) in entry.chunks.chunks(per_piece).enumerate() {
        let mut packs: Vec<PackRef> = Vec::new();
        let mut map = std::collections::HashMap::new();
        let chunks = slice
            .iter()
            .map(|c| {
                let original = &entry.packs[c.pack as usize];
                let at = *map.entry(c.pack).or_insert_with(|| {
                    packs.push(original.clone());
                    packs.len() as u32 - 1
                });
                ChunkRef { pack: at, ..*c }
            })
            .collect();
        let piece_no = n as u32 + 1;
        let piece = Piece {
            format: ENTRY_FORMAT,
            kind: "piece".into(),
            id: entry.id.clone(),
            version: entry.version,
            piece: piece_no,
            packs,
            chunks,
        };
        let json = serde_json::to_vec(&piece).map_err(|e| EntryError::Json(e.to_string()))?;
        pieces.push(Sealed {
            name: keys.object_name(
                super::crypto::ObjectKind::Piece,
                &entry.id,
                (entry.version << 32) + u64::from(piece_no),
            ),
            bytes: keys.seal_entry(&json),
        });
        chunk_counts.push(slice.len() as u64);
    }
    let head = Entry {
        packs: Vec::new(),
        chunks: Vec::new(),
        ..entry.clone()
    };
    Ok(Split {
        pieces,
        chunk_counts,
        head,
    })
}

/// An entry ready to post: pieces first, then the head.
#[derive(Debug)]
pub struct Split {
    pub pieces: Vec<Sealed>,
    chunk_counts: Vec<u64>,
    head: Entry,
}

impl Split {
    /// The sealed head, given where each piece was posted (`(channel, message, attachment)`).
    pub fn head(&self, keys: &Keys, posted: &[(u64, u64, u64)]) -> Result<Sealed, EntryError> {
        let mut head = self.head.clone();
        head.pieces = self
            .pieces
            .iter()
            .zip(posted)
            .zip(&self.chunk_counts)
            .map(
                |((p, &(channel_id, message_id, attachment_id)), &chunks)| PieceRef {
                    channel_id,
                    message_id,
                    attachment_id,
                    sha256: crate::hash::sha256_hex(&p.bytes),
                    chunks,
                },
            )
            .collect();
        let json = serde_json::to_vec(&head).map_err(|e| EntryError::Json(e.to_string()))?;
        Ok(Sealed {
            name: keys.object_name(super::crypto::ObjectKind::Entry, &head.id, head.version),
            bytes: keys.seal_entry(&json),
        })
    }
}

/// Joins a head and its opened pieces (in the head's order) into one entry, checking that each
/// piece is the one the head lists.
pub fn join(head: Entry, pieces: Vec<Piece>) -> Result<Entry, EntryError> {
    if head.pieces.len() != pieces.len() {
        return Err(EntryError::Invalid("pieces are missing".into()));
    }
    let mut entry = Entry {
        pieces: Vec::new(),
        ..head.clone()
    };
    for (n, (want, piece)) in head.pieces.iter().zip(pieces).enumerate() {
        if piece.id != head.id
            || piece.version != head.version
            || piece.piece as usize != n + 1
            || piece.chunks.len() as u64 != want.chunks
        {
            return Err(EntryError::Invalid(format!(
                "piece {} is not the one its head lists",
                n + 1
            )));
        }
        check_chunks(&piece.packs, &piece.chunks, &head_channels(&piece.packs))?;
        let base = entry.packs.len() as u32;
        entry.packs.extend(piece.packs);
        entry
            .chunks
            .extend(piece.chunks.into_iter().map(|c| ChunkRef {
                pack: c.pack + base,
                ..c
            }));
    }
    Ok(entry)
}

fn head_channels(packs: &[PackRef]) -> Vec<u64> {
    packs.iter().map(|p| p.channel_id).collect()
}

#[cfg(test)]
#[path = "entry_tests.rs"]
mod tests;
