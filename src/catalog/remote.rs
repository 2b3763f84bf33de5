//! A file's catalogue entry on Discord: everything needed to download the file from a new
//! machine, and nothing that would let a reader of the channel post to it (no token, no webhook
//! URL) nor the local source path.
//!
//! An entry is one message whose attachment is `<file-id>.manifest.json` (the head). When the
//! part list does not fit one attachment under the channel's size limit (past some 30,000 parts
//! at 10 MiB), the part records go into continuation attachments `<file-id>.manifest.<n>.json`
//! (n = 1, 2, ...), each in its own message posted before the head, and the head (format 2)
//! lists every piece by channel, message, attachment and SHA-256, in order: the head is the
//! commit point, and a reader knows from it alone when it has every piece.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::manifest::snowflake;
use super::{layout, FileManifest, MessageRef, PartRecord, Status, FORMAT_VERSION};

/// An entry whose parts are all in its head.
pub const SINGLE_FORMAT: u32 = 1;
/// An entry whose parts are in continuation pieces listed by the head.
pub const SPLIT_FORMAT: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Every part of the file (in a split entry's head: none, they are in the pieces).
    pub parts: Vec<PartRecord>,
    /// A split entry's continuation pieces, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pieces: Vec<PieceRef>,
}

/// Where one continuation piece of a split entry is, and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceRef {
    #[serde(with = "snowflake")]
    pub channel_id: u64,
    #[serde(with = "snowflake")]
    pub message_id: u64,
    #[serde(with = "snowflake")]
    pub attachment_id: u64,
    pub sha256: String,
    /// How many part records it holds.
    pub parts: u64,
}

/// `<file-id>.manifest.<n>.json`: some of a split entry's part records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Piece {
    pub format: u32,
    pub id: String,
    pub piece: u64,
    pub parts: Vec<PartRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "it has format {0}, newer than this dstore understands ({SPLIT_FORMAT}); upgrade dstore"
    )]
    Newer(u32),
    #[error("it is damaged ({0})")]
    Damaged(String),
    #[error("its part records do not cover the file ({0})")]
    Untiled(String),
    #[error("the file is not complete yet")]
    Incomplete,
    #[error("it points into channel {0}, which is not one of the configured channels")]
    ForeignChannel(u64),
}

/// What an attachment name says about a catalogue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryName<'a> {
    Head(&'a str),
    Piece(&'a str, u64),
}

impl<'a> EntryName<'a> {
    pub fn parse(name: &'a str) -> Option<Self> {
        let (id, rest) = name.split_once('.')?;
        if !super::is_valid_id(id) {
            return None;
        }
        let rest = rest.strip_prefix("manifest.")?;
        if rest == "json" {
            return Some(Self::Head(id));
        }
        let n = rest.strip_suffix(".json")?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self::Piece(id, n.parse().ok().filter(|&n| n > 0)?))
    }

    pub fn id(&self) -> &'a str {
        match *self {
            Self::Head(id) | Self::Piece(id, _) => id,
        }
    }
}

pub fn manifest_name(id: &str) -> String {
    format!("{id}.manifest.json")
}

pub fn piece_name(id: &str, n: u64) -> String {
    format!("{id}.manifest.{n}.json")
}

/// The file ID in a head attachment's name.
pub fn parse_manifest_name(name: &str) -> Option<&str> {
    match EntryName::parse(name)? {
        EntryName::Head(id) => Some(id),
        EntryName::Piece(..) => None,
    }
}

/// An entry ready to post: the pieces first (none for a single entry), then the head, which
/// [`Encoded::head`] builds once the pieces' places on Discord are known.
#[derive(Debug)]
pub struct Encoded {
    pub pieces: Vec<Vec<u8>>,
    manifest: RemoteManifest,
}

impl Encoded {
    /// The head's bytes, naming the pieces where they were posted (in order).
    pub fn head(&self, posted: Vec<PieceRef>) -> Vec<u8> {
        let mut head = self.manifest.clone();
        if !self.pieces.is_empty() {
            head.format = SPLIT_FORMAT;
            head.parts = Vec::new();
            head.pieces = posted;
        }
        to_json(&head)
    }
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Plain structs of strings and numbers: serialising cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

impl RemoteManifest {
    /// The entry of a complete file whose parts are `parts`; refused unless they tile it.
    pub fn of(file: &FileManifest, parts: &[PartRecord]) -> Result<Self, RemoteError> {
        let sha256 = match (&file.sha256, file.status) {
            (Some(sha), Status::Complete) => sha.clone(),
            _ => return Err(RemoteError::Incomplete),
        };
        let mut parts = parts.to_vec();
        parts.sort_by_key(|p| p.offset);
        let m = Self {
            format: SINGLE_FORMAT,
            id: file.id.clone(),
            name: file.name.clone(),
            size: file.size,
            mtime: file.mtime,
            sha256,
            part_size: file.part_size,
            created_at: file.created_at,
            hidden: file.hidden,
            mode: file.mode,
            parts,
            pieces: Vec::new(),
        };
        m.check_tiling()?;
        Ok(m)
    }

    /// Whether the parts cover every byte of the file exactly once.
    pub fn check_tiling(&self) -> Result<(), RemoteError> {
        if self.id.is_empty() || !super::is_valid_id(&self.id) {
            return Err(RemoteError::Damaged("it has no valid file ID".into()));
        }
        let mut parts: Vec<&PartRecord> = self.parts.iter().collect();
        parts.sort_by_key(|p| p.offset);
        let mut at = 0;
        for p in parts {
            if p.offset != at || p.length == 0 {
                return Err(RemoteError::Untiled(format!(
                    "part {} starts at byte {}, where byte {at} was expected",
                    p.index, p.offset
                )));
            }
            at = at.checked_add(p.length).ok_or_else(|| {
                RemoteError::Damaged(format!("part {} ends past any file", p.index))
            })?;
        }
        if at != self.size {
            return Err(RemoteError::Untiled(format!(
                "bytes {at}..{} have no part",
                self.size
            )));
        }
        Ok(())
    }

    /// Splits the entry so that every attachment is at most `budget` bytes; `None` when even
    /// the head alone does not fit.
    pub fn encode(&self, budget: usize) -> Option<Encoded> {
        let whole = to_json(self);
        if whole.len() <= budget {
            return Some(Encoded {
                pieces: Vec::new(),
                manifest: self.clone(),
            });
        }
        let pieces = self.pieces_within(budget)?;
        let encoded = Encoded {
            pieces,
            manifest: self.clone(),
        };
        // The head's size with the longest possible references.
        let worst = PieceRef {
            channel_id: u64::MAX,
            message_id: u64::MAX,
            attachment_id: u64::MAX,
            sha256: "0".repeat(64),
            parts: u64::MAX,
        };
        let head = encoded.head(vec![worst; encoded.pieces.len()]);
        (head.len() <= budget).then_some(encoded)
    }

    /// The part records in pieces of at most `budget` bytes each.
    fn pieces_within(&self, budget: usize) -> Option<Vec<Vec<u8>>> {
        let overhead = to_json(&Piece {
            format: SPLIT_FORMAT,
            id: self.id.clone(),
            piece: u64::MAX,
            parts: Vec::new(),
        })
        .len();
        let mut pieces = Vec::new();
        let mut current: Vec<PartRecord> = Vec::new();
        let mut size = overhead;
        for p in &self.parts {
            let len = to_json(p).len() + 1;
            if overhead + len > budget {
                return None;
            }
            if size + len > budget {
                pieces.push(std::mem::take(&mut current));
                size = overhead;
            }
            size += len;
            current.push(p.clone());
        }
        pieces.push(current);
        Some(
            pieces
                .into_iter()
                .zip(1..)
                .map(|(parts, piece)| {
                    to_json(&Piece {
                        format: SPLIT_FORMAT,
                        id: self.id.clone(),
                        piece,
                        parts,
                    })
                })
                .collect(),
        )
    }

    /// Reads a head. A single entry is checked whole; a split one is checked by [`Self::join`].
    pub fn parse(bytes: &[u8]) -> Result<Self, RemoteError> {
        check_format(bytes)?;
        let m: Self =
            serde_json::from_slice(bytes).map_err(|e| RemoteError::Damaged(e.to_string()))?;
        match (m.format, m.pieces.is_empty()) {
            (SINGLE_FORMAT, true) => m.check_tiling().map(|()| m),
            (SPLIT_FORMAT, false) if m.parts.is_empty() => Ok(m),
            _ => Err(RemoteError::Damaged(
                "its format and its pieces disagree".into(),
            )),
        }
    }

    /// A split head with its pieces' bytes, in the head's order: the whole entry, checked.
    pub fn join(mut self, pieces: &[Vec<u8>]) -> Result<Self, RemoteError> {
        if pieces.len() != self.pieces.len() {
            return Err(RemoteError::Damaged(format!(
                "{} of its {} pieces were found",
                pieces.len(),
                self.pieces.len()
            )));
        }
        for ((bytes, r), n) in pieces.iter().zip(&self.pieces).zip(1..) {
            if crate::hash::sha256_hex(bytes) != r.sha256 {
                return Err(RemoteError::Damaged(format!(
                    "piece {n} has another SHA-256"
                )));
            }
            check_format(bytes)?;
            let piece: Piece = serde_json::from_slice(bytes)
                .map_err(|e| RemoteError::Damaged(format!("piece {n}: {e}")))?;
            if piece.id != self.id || piece.piece != n || piece.parts.len() as u64 != r.parts {
                return Err(RemoteError::Damaged(format!(
                    "piece {n} belongs to another entry"
                )));
            }
            self.parts.extend(piece.parts);
        }
        self.check_tiling()?;
        Ok(self)
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
            entry_version: None,
            packs: Vec::new(),
            chunks: Vec::new(),
        };
        (file, self.parts)
    }
}

fn check_format(bytes: &[u8]) -> Result<(), RemoteError> {
    #[derive(Deserialize)]
    struct Version {
        format: u32,
    }
    match serde_json::from_slice::<Version>(bytes) {
        Ok(v) if v.format > SPLIT_FORMAT => Err(RemoteError::Newer(v.format)),
        _ => Ok(()),
    }
}

/// Which messages count as dstore's own: posted by one of `authors` (the bot's user; configured
/// webhooks' IDs join here), in one of `channels` (the configured ones).
#[derive(Debug, Clone, Default)]
pub struct Trust {
    authors: HashSet<u64>,
    channels: HashSet<u64>,
}

impl Trust {
    pub fn new(
        authors: impl IntoIterator<Item = u64>,
        channels: impl IntoIterator<Item = u64>,
    ) -> Self {
        Self {
            authors: authors.into_iter().collect(),
            channels: channels.into_iter().collect(),
        }
    }

    /// Whether a message by `author` is one of ours.
    pub fn author(&self, author: u64) -> bool {
        self.authors.contains(&author)
    }

    /// Whether `channel` is a configured one.
    pub fn channel(&self, channel: u64) -> bool {
        self.channels.contains(&channel)
    }

    /// Every part and piece an entry names must be in a configured channel.
    pub fn check_refs(&self, m: &RemoteManifest) -> Result<(), RemoteError> {
        let named = m.parts.iter().map(|p| p.channel_id);
        match named
            .chain(m.pieces.iter().map(|p| p.channel_id))
            .find(|c| !self.channel(*c))
        {
            Some(c) => Err(RemoteError::ForeignChannel(c)),
            None => Ok(()),
        }
    }
}

/// The byte ranges of a file of `size` bytes that `parts` leave uncovered.
pub fn uncovered(parts: &[PartRecord], size: u64) -> Vec<(u64, u64)> {
    let spans: Vec<(u64, u64)> = parts.iter().map(|p| (p.offset, p.length)).collect();
    layout::gaps(&spans, size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::FORMAT_VERSION;

    fn file(id: &str, size: u64, part_size: u64) -> (FileManifest, Vec<PartRecord>) {
        let m = FileManifest {
            sha256: Some("ab".repeat(32)),
            status: Status::Complete,
            ..FileManifest::fixture(id, size, part_size)
        };
        let parts = m
            .planned()
            .into_iter()
            .map(|s| PartRecord {
                format: FORMAT_VERSION,
                index: s.index,
                offset: s.offset,
                length: s.length,
                sha256: "cd".repeat(32),
                channel_id: 7,
                message_id: 1000 + s.index,
                attachment_id: 2000 + s.index,
                attachment_name: crate::catalog::attachment_name(id, s.index),
                uploaded_at: m.created_at,
            })
            .collect();
        (m, parts)
    }

    #[test]
    fn an_entry_whose_parts_do_not_tile_the_file_is_never_built() {
        let (m, mut parts) = file("abcdefghjk", 100, 10);
        assert!(RemoteManifest::of(&m, &parts).is_ok());
        parts.remove(4);
        let e = RemoteManifest::of(&m, &parts).unwrap_err();
        assert!(matches!(e, RemoteError::Untiled(_)), "{e}");
        assert!(e.to_string().contains("part 5 starts at byte 50"), "{e}");
        parts.pop();
        parts.pop();
        let (_, all) = file("abcdefghjk", 100, 10);
        let mut incomplete = m.clone();
        incomplete.status = Status::Incomplete;
        assert!(matches!(
            RemoteManifest::of(&incomplete, &all),
            Err(RemoteError::Incomplete)
        ));
        let mut no_end = all.clone();
        no_end.pop();
        let e = RemoteManifest::of(&m, &no_end).unwrap_err();
        assert!(e.to_string().contains("bytes 90..100 have no part"), "{e}");
    }

    #[test]
    fn a_large_entry_splits_into_pieces_and_joins_back() {
        let (m, parts) = file("abcdefghjk", 300 * 10, 10);
        let entry = RemoteManifest::of(&m, &parts).unwrap();
        let whole = to_json(&entry).len();
        assert!(entry.encode(whole).unwrap().pieces.is_empty());
        let budget = 8 * 1024;
        let enc = entry.encode(budget).unwrap();
        assert!(enc.pieces.len() > 5, "{}", enc.pieces.len());
        assert!(enc.pieces.iter().all(|p| p.len() <= budget));
        let refs: Vec<PieceRef> = enc
            .pieces
            .iter()
            .zip(0..)
            .map(|(bytes, n)| PieceRef {
                channel_id: 7,
                message_id: 5000 + n,
                attachment_id: 6000 + n,
                sha256: crate::hash::sha256_hex(bytes),
                parts: serde_json::from_slice::<Piece>(bytes).unwrap().parts.len() as u64,
            })
            .collect();
        let head_bytes = enc.head(refs);
        assert!(head_bytes.len() <= budget);
        let head = RemoteManifest::parse(&head_bytes).unwrap();
        assert_eq!(head.format, SPLIT_FORMAT);
        let joined = head.clone().join(&enc.pieces).unwrap();
        assert_eq!(joined.parts, entry.parts);
        assert_eq!(
            (joined.id.as_str(), joined.size),
            (entry.id.as_str(), entry.size)
        );
        // A missing, swapped or altered piece is refused.
        assert!(head.clone().join(&enc.pieces[1..]).is_err());
        let mut swapped = enc.pieces.clone();
        swapped.swap(0, 1);
        assert!(head.clone().join(&swapped).is_err());
        let mut altered = enc.pieces.clone();
        altered[2][10] ^= 1;
        assert!(head.join(&altered).is_err());
        // Too small for even one part record.
        assert!(entry.encode(200).is_none());
    }

    #[test]
    fn entry_names() {
        assert_eq!(
            EntryName::parse("abcdefghjk.manifest.json"),
            Some(EntryName::Head("abcdefghjk"))
        );
        assert_eq!(
            EntryName::parse(&piece_name("abcdefghjk", 12)),
            Some(EntryName::Piece("abcdefghjk", 12))
        );
        for bad in [
            "abcdefghjk.manifest.0.json",
            "abcdefghjk.manifest.x.json",
            "abcdefghjk.manifest..json",
            "abcdefghjk.3.part",
            "../../etc.manifest.json",
            "abcdefghjk.manifest.+1.json",
        ] {
            assert_eq!(EntryName::parse(bad), None, "{bad}");
        }
        assert_eq!(parse_manifest_name(&piece_name("abcdefghjk", 1)), None);
    }

    #[test]
    fn trust_needs_our_author_and_configured_channels() {
        let (m, parts) = file("abcdefghjk", 30, 10);
        let entry = RemoteManifest::of(&m, &parts).unwrap();
        let trust = Trust::new([42], [7]);
        assert!(trust.author(42) && !trust.author(43));
        assert!(trust.check_refs(&entry).is_ok());
        let elsewhere = Trust::new([42], [8]);
        assert!(matches!(
            elsewhere.check_refs(&entry),
            Err(RemoteError::ForeignChannel(7))
        ));
    }
}
