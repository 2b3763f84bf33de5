//! A synced folder's snapshot (docs/sync.md 2): the whole tree at the end of one sync round,
//! every file's chunk list pointing into one packs table, sealed like a catalogue entry and split
//! into pieces when it would not fit one attachment.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::crypto::{Keys, ObjectKind};
use super::entry::{check_chunks, EntryError, Sealed};
use crate::catalog::snowflake;
use crate::catalog::{ChunkRef, PackRef};

/// The format snapshots are written in.
pub const SNAPSHOT_FORMAT: u32 = 2;

/// What a tree entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// One entry of the tree (2.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(with = "time::serde::rfc3339")]
    pub mtime: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// Where a piece is, in the head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceRef {
    #[serde(with = "snowflake")]
    pub channel_id: u64,
    #[serde(with = "snowflake")]
    pub message_id: u64,
    #[serde(with = "snowflake")]
    pub attachment_id: u64,
    pub sha256: String,
    pub files: u64,
}

/// The plaintext of a snapshot (or of its head, with `pieces` and no files).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub format: u32,
    pub kind: String,
    pub folder: String,
    pub seq: u64,
    pub parent: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    #[serde(default)]
    pub host: String,
    pub name: String,
    #[serde(default)]
    pub root: String,
    pub packs: Vec<PackRef>,
    pub files: Vec<Node>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pieces: Vec<PieceRef>,
}

/// A piece of a split snapshot (2.3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotPiece {
    pub format: u32,
    pub kind: String,
    pub folder: String,
    pub seq: u64,
    pub piece: u32,
    pub packs: Vec<PackRef>,
    pub files: Vec<Node>,
}

/// A sealed snapshot object opened.
#[derive(Debug)]
pub enum Opened {
    Snapshot(Snapshot),
    Piece(SnapshotPiece),
}

/// Whether `path` is a valid relative path of a snapshot: `/`-separated, no empty, `.` or `..`
/// component, no NUL or backslash, not absolute.
pub fn valid_path(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\0')
        && !path.contains('\\')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// The parent folder of a path, `None` at the top.
pub fn parent(path: &str) -> Option<&str> {
    path.rsplit_once('/').map(|(p, _)| p)
}

/// Opens a sealed snapshot or snapshot piece and checks its format.
pub fn open(keys: &Keys, sealed: &[u8]) -> Result<Opened, EntryError> {
    let (json, kind) = super::entry::open_json(keys, sealed, SNAPSHOT_FORMAT)?;
    match kind.as_str() {
        "snapshot" => super::entry::parse(&json).map(Opened::Snapshot),
        "snapshot-piece" => super::entry::parse(&json).map(Opened::Piece),
        other => Err(EntryError::Json(format!("kind {other:?}"))),
    }
}

impl Snapshot {
    /// The attachment name of this snapshot's head.
    pub fn object_name(&self, keys: &Keys) -> String {
        keys.object_name(ObjectKind::Snapshot, &self.folder, self.seq)
    }

    /// A file or folder by path.
    pub fn node(&self, path: &str) -> Option<&Node> {
        self.files
            .binary_search_by(|n| n.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.files[i])
    }

    /// Checks a whole snapshot (pieces joined) against the rules of 2.1, `channels` being the
    /// configured ones.
    pub fn check(&self, channels: &[u64]) -> Result<(), EntryError> {
        let bad = |m: String| Err(EntryError::Invalid(m));
        if !crate::catalog::is_valid_id(&self.folder) {
            return bad(format!("{:?} is not a folder ID", self.folder));
        }
        if self.seq == 0 {
            return bad("seq 0".into());
        }
        if self.parent >= self.seq {
            return bad("its parent is not an earlier snapshot".into());
        }
        let mut kinds: HashMap<&str, Kind> = HashMap::new();
        for n in &self.files {
            if !valid_path(&n.path) {
                return bad(format!("{:?} is not a relative path", n.path));
            }
            if kinds.insert(n.path.as_str(), n.kind).is_some() {
                return bad(format!("{:?} is listed twice", n.path));
            }
        }
        for n in &self.files {
            // Every ancestor listed as a folder: nothing under a file or a link.
            let mut at = n.path.as_str();
            while let Some(p) = parent(at) {
                match kinds.get(p) {
                    Some(Kind::Dir) => {}
                    Some(_) => return bad(format!("{:?} lies under a file or a link", n.path)),
                    None => return bad(format!("the folder of {:?} is not listed", n.path)),
                }
                at = p;
            }
            match n.kind {
                Kind::File => {
                    let (Some(size), Some(sha)) = (n.size, n.sha256.as_deref()) else {
                        return bad(format!("{:?} has no size or SHA-256", n.path));
                    };
                    if sha.len() != 64
                        || !sha
                            .bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                    {
                        return bad(format!("the SHA-256 of {:?} is not 64 hex", n.path));
                    }
                    check_chunks(&self.packs, &n.chunks, channels)?;
                    let total: u64 = n.chunks.iter().map(|c| u64::from(c.plain_len)).sum();
                    if total != size {
                        return bad(format!(
                            "the chunks of {:?} add up to {total} bytes, its size is {size}",
                            n.path
                        ));
                    }
                }
                Kind::Dir => {
                    if !n.chunks.is_empty() {
                        return bad(format!("the folder {:?} has chunks", n.path));
                    }
                }
                Kind::Symlink => {
                    if n.target
                        .as_deref()
                        .is_none_or(|t| t.is_empty() || t.contains('\0'))
                    {
                        return bad(format!("the link {:?} has no target", n.path));
                    }
                }
            }
        }
        if let Some(p) = self
            .packs
            .iter()
            .find(|p| !channels.contains(&p.channel_id))
        {
            return bad(format!(
                "a pack is in channel {}, which is not configured",
                p.channel_id
            ));
        }
        Ok(())
    }

    /// Every pack attachment the snapshot's files use.
    pub fn used_packs(&self) -> HashSet<u64> {
        self.files
            .iter()
            .flat_map(|n| &n.chunks)
            .filter_map(|c| self.packs.get(c.pack as usize))
            .map(|p| p.attachment_id)
            .collect()
    }
}

/// A snapshot ready to post: pieces first (each its own message), then the head.
#[derive(Debug)]
pub struct Split {
    pub pieces: Vec<Sealed>,
    counts: Vec<u64>,
    head: Snapshot,
}

/// Seals a snapshot whole when it fits `budget`, else as pieces then a head (2.3).
pub fn seal(keys: &Keys, snap: &Snapshot, budget: usize) -> Result<Split, EntryError> {
    let json = serde_json::to_vec(snap).map_err(|e| EntryError::Json(e.to_string()))?;
    if json.len() + keys.overhead() <= budget {
        return Ok(Split {
            pieces: Vec::new(),
            counts: Vec::new(),
            head: snap.clone(),
        });
    }
    let room = budget.saturating_sub(4096).max(1024);
    let mut pieces = Vec::new();
    let mut counts = Vec::new();
    let mut group: Vec<Node> = Vec::new();
    let mut size = 0usize;
    let mut groups: Vec<Vec<Node>> = Vec::new();
    for n in &snap.files {
        // A file's record, and at most one pack record (~200 bytes) per chunk it names.
        let len = serde_json::to_vec(n).map_or(0, |j| j.len()) + 200 * n.chunks.len() + 2;
        if !group.is_empty() && size + len > room {
            groups.push(std::mem::take(&mut group));
            size = 0;
        }
        size += len;
        group.push(n.clone());
    }
    if !group.is_empty() {
        groups.push(group);
    }
    for (i, files) in groups.into_iter().enumerate() {
        let mut packs: Vec<PackRef> = Vec::new();
        let mut map: HashMap<u32, u32> = HashMap::new();
        let files: Vec<Node> = files
            .into_iter()
            .map(|mut n| {
                for c in &mut n.chunks {
                    let at = *map.entry(c.pack).or_insert_with(|| {
                        packs.push(snap.packs[c.pack as usize].clone());
                        packs.len() as u32 - 1
                    });
                    c.pack = at;
                }
                n
            })
            .collect();
        let no = i as u32 + 1;
        counts.push(files.len() as u64);
        let piece = SnapshotPiece {
            format: SNAPSHOT_FORMAT,
            kind: "snapshot-piece".into(),
            folder: snap.folder.clone(),
            seq: snap.seq,
            piece: no,
            packs,
            files,
        };
        let json = serde_json::to_vec(&piece).map_err(|e| EntryError::Json(e.to_string()))?;
        pieces.push(Sealed {
            name: keys.object_name(
                ObjectKind::Piece,
                &snap.folder,
                (snap.seq << 32) + u64::from(no),
            ),
            bytes: keys.seal_entry(&json),
        });
    }
    let head = Snapshot {
        packs: Vec::new(),
        files: Vec::new(),
        ..snap.clone()
    };
    Ok(Split {
        pieces,
        counts,
        head,
    })
}

impl Split {
    /// The sealed head, given where each piece was posted.
    pub fn head(&self, keys: &Keys, posted: &[(u64, u64, u64)]) -> Result<Sealed, EntryError> {
        let mut head = self.head.clone();
        head.pieces = self
            .pieces
            .iter()
            .zip(posted)
            .zip(&self.counts)
            .map(
                |((p, &(channel_id, message_id, attachment_id)), &files)| PieceRef {
                    channel_id,
                    message_id,
                    attachment_id,
                    sha256: crate::hash::sha256_hex(&p.bytes),
                    files,
                },
            )
            .collect();
        let json = serde_json::to_vec(&head).map_err(|e| EntryError::Json(e.to_string()))?;
        Ok(Sealed {
            name: head.object_name(keys),
            bytes: keys.seal_entry(&json),
        })
    }
}

/// Joins a head and its opened pieces (in the head's order) into one snapshot.
pub fn join(head: Snapshot, pieces: Vec<SnapshotPiece>) -> Result<Snapshot, EntryError> {
    if head.pieces.len() != pieces.len() {
        return Err(EntryError::Invalid("pieces are missing".into()));
    }
    let mut whole = Snapshot {
        pieces: Vec::new(),
        ..head.clone()
    };
    for (n, (want, piece)) in head.pieces.iter().zip(pieces).enumerate() {
        if piece.folder != head.folder
            || piece.seq != head.seq
            || piece.piece as usize != n + 1
            || piece.files.len() as u64 != want.files
        {
            return Err(EntryError::Invalid(format!(
                "piece {} is not the one its head lists",
                n + 1
            )));
        }
        let base = whole.packs.len() as u32;
        for f in &piece.files {
            if f.chunks
                .iter()
                .any(|c| c.pack as usize >= piece.packs.len())
            {
                return Err(EntryError::Invalid(format!(
                    "piece {} names a pack it does not list",
                    n + 1
                )));
            }
        }
        whole.packs.extend(piece.packs);
        whole.files.extend(piece.files.into_iter().map(|mut f| {
            for c in &mut f.chunks {
                c.pack += base;
            }
            f
        }));
    }
    Ok(whole)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::crypto::RepoId;
    use crate::repo::keys::MasterKey;

    fn pack(n: u8) -> PackRef {
        PackRef {
            channel_id: 7,
            message_id: u64::from(n),
            attachment_id: u64::from(n),
            pack_id: [n; 16],
            size: 1000,
        }
    }

    fn file(path: &str, pack: u32) -> Node {
        Node {
            path: path.into(),
            kind: Kind::File,
            size: Some(5),
            mtime: OffsetDateTime::UNIX_EPOCH,
            mode: Some(0o644),
            sha256: Some("ab".repeat(32)),
            chunks: vec![ChunkRef {
                id: [pack as u8; 32],
                pack,
                offset: 0,
                sealed_len: 45,
                plain_len: 5,
                flags: 0,
            }],
            target: None,
        }
    }

    fn dir(path: &str) -> Node {
        Node {
            path: path.into(),
            kind: Kind::Dir,
            size: None,
            mtime: OffsetDateTime::UNIX_EPOCH,
            mode: Some(0o755),
            sha256: None,
            chunks: Vec::new(),
            target: None,
        }
    }

    fn snap(files: Vec<Node>, packs: Vec<PackRef>) -> Snapshot {
        Snapshot {
            format: SNAPSHOT_FORMAT,
            kind: "snapshot".into(),
            folder: "abcdefghjk".into(),
            seq: 2,
            parent: 1,
            time: OffsetDateTime::UNIX_EPOCH,
            host: "h".into(),
            name: "Notes".into(),
            root: "/n".into(),
            packs,
            files,
            pieces: Vec::new(),
        }
    }

    #[test]
    fn paths_are_relative_and_plain() {
        for good in ["a", "a/b", "a b/.c", "ü/x"] {
            assert!(valid_path(good), "{good}");
        }
        for bad in ["", "/a", "a/", "a//b", "./a", "a/..", "..", "a\\b", "a\0b"] {
            assert!(!valid_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn checks_the_tree() {
        let ok = snap(vec![dir("d"), file("d/a", 0)], vec![pack(1)]);
        ok.check(&[7]).unwrap();
        assert!(ok.check(&[8]).is_err(), "a pack in another channel");
        let orphan = snap(vec![file("d/a", 0)], vec![pack(1)]);
        assert!(orphan.check(&[7]).is_err(), "its folder is not listed");
        let twice = snap(vec![file("a", 0), file("a", 0)], vec![pack(1)]);
        assert!(twice.check(&[7]).is_err());
        let under_file = snap(vec![file("a", 0), file("a/b", 0)], vec![pack(1)]);
        assert!(under_file.check(&[7]).is_err());
        let escape = snap(vec![file("../a", 0)], vec![pack(1)]);
        assert!(escape.check(&[7]).is_err());
        let out_of_range = snap(vec![file("a", 3)], vec![pack(1)]);
        assert!(out_of_range.check(&[7]).is_err());
    }

    #[test]
    fn a_large_snapshot_splits_into_pieces_that_join_back() {
        let keys = Keys::derive(&MasterKey::random(), RepoId::random());
        let packs: Vec<PackRef> = (0..50).map(pack).collect();
        let files: Vec<Node> = (0..400)
            .map(|i| file(&format!("f{i:04}"), (i % 50) as u32))
            .collect();
        let whole = snap(files, packs);
        let split = seal(&keys, &whole, 16 * 1024).unwrap();
        assert!(split.pieces.len() > 2, "{}", split.pieces.len());
        let mut opened = Vec::new();
        let mut at = Vec::new();
        for (i, p) in split.pieces.iter().enumerate() {
            assert!(p.bytes.len() <= 16 * 1024);
            assert_eq!(keys.name_kind(&p.name), Some(ObjectKind::Piece));
            match open(&keys, &p.bytes).unwrap() {
                Opened::Piece(piece) => opened.push(piece),
                Opened::Snapshot(_) => panic!("a piece opened as a snapshot"),
            }
            at.push((7, 100 + i as u64, 200 + i as u64));
        }
        let head = split.head(&keys, &at).unwrap();
        assert_eq!(keys.name_kind(&head.name), Some(ObjectKind::Snapshot));
        let Opened::Snapshot(head) = open(&keys, &head.bytes).unwrap() else {
            panic!("the head is a snapshot");
        };
        let joined = join(head, opened).unwrap();
        joined.check(&[7]).unwrap();
        // Same files, same packs for every chunk.
        assert_eq!(joined.files.len(), whole.files.len());
        for (a, b) in joined.files.iter().zip(&whole.files) {
            assert_eq!(a.path, b.path);
            assert_eq!(
                joined.packs[a.chunks[0].pack as usize],
                whole.packs[b.chunks[0].pack as usize]
            );
        }
    }
}
