//! Folder sync (docs/sync.md): a folder's local records (section 5), the walk and its ignores,
//! a sync round that packs the new chunks of every changed file together and posts one snapshot,
//! restore of a snapshot's tree, and the watcher.

pub mod restore;
pub mod round;
pub mod walk;
pub mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::catalog::{write_atomic, MessageRef, PackRecord};
use crate::repo::index::ChunkIndex;
use crate::repo::snapshot::Snapshot;

/// The format of the local sync records.
pub const LOCAL_FORMAT: u32 = 1;

/// `folder.json`: a synced folder as this machine knows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Folder {
    pub format: u32,
    pub id: String,
    /// The folder's absolute path here; empty for a folder recovered from another machine.
    pub root: String,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// What the last round read of one file: a file with the same size, mtime and inode is not read
/// again (its chunks are the state's snapshot's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub size: u64,
    /// Nanoseconds since the epoch.
    pub mtime_ns: i128,
    pub inode: u64,
}

/// `state.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub format: u32,
    /// The snapshot whose records hold the chunks of the files below.
    pub seq: u64,
    pub files: BTreeMap<String, Seen>,
}

/// `snapshots/<seq>.json`: a posted snapshot and where it is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Local {
    pub message: MessageRef,
    #[serde(default)]
    pub pieces: Vec<MessageRef>,
    pub snapshot: Snapshot,
}

/// The sync records under `<data-dir>/sync/`.
#[derive(Clone, Debug)]
pub struct Folders {
    dir: PathBuf,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("{} is damaged", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    if let Some(dir) = path.parent() {
        crate::catalog::create_private_dir(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let bytes = serde_json::to_vec(value)?;
    write_atomic(path, &bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Numbered JSON files (`<n>.json`) of a folder, in order.
fn numbered(dir: &Path) -> Vec<u64> {
    let mut out: Vec<u64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse().ok())
        })
        .collect();
    out.sort_unstable();
    out
}

impl Folders {
    pub fn new(data_dir: &Path) -> Folders {
        Folders {
            dir: data_dir.join("sync"),
        }
    }

    fn folder_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Every folder this machine knows.
    pub fn all(&self) -> Result<Vec<Folder>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let id = e.file_name().to_string_lossy().to_string();
            if !crate::catalog::is_valid_id(&id) {
                continue;
            }
            if let Some(f) = read_json::<Folder>(&e.path().join("folder.json"))? {
                out.push(f);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    pub fn load(&self, id: &str) -> Result<Option<Folder>> {
        read_json(&self.folder_dir(id).join("folder.json"))
    }

    pub fn save(&self, f: &Folder) -> Result<()> {
        write_json(&self.folder_dir(&f.id).join("folder.json"), f)
    }

    /// The folder synced from `root` (an absolute, canonical path), or a new one.
    pub fn for_root(&self, root: &Path) -> Result<Folder> {
        let text = root.to_string_lossy().to_string();
        if let Some(f) = self.all()?.into_iter().find(|f| f.root == text) {
            return Ok(f);
        }
        let f = Folder {
            format: LOCAL_FORMAT,
            id: crate::catalog::new_file_id(),
            root: text,
            name: root
                .file_name()
                .map_or_else(|| "folder".into(), |n| n.to_string_lossy().to_string()),
            created_at: OffsetDateTime::now_utc(),
        };
        self.save(&f)?;
        Ok(f)
    }

    /// A folder named by its local path, its ID, or its name (when unique).
    pub fn find(&self, name: &str) -> Result<Option<Folder>> {
        let all = self.all()?;
        if let Some(f) = all.iter().find(|f| f.id == name) {
            return Ok(Some(f.clone()));
        }
        if let Ok(canon) = std::fs::canonicalize(name) {
            let text = canon.to_string_lossy();
            if let Some(f) = all.iter().find(|f| f.root == text) {
                return Ok(Some(f.clone()));
            }
        }
        let by_name: Vec<&Folder> = all.iter().filter(|f| f.name == name).collect();
        match by_name.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some((*one).clone())),
            many => anyhow::bail!(
                "{} synced folders are named {name:?} ({}); name one by its ID",
                many.len(),
                many.iter()
                    .map(|f| f.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Takes the folder's lock for one round, or says another process is in a round of it: two
    /// rounds of one folder never run at once on this machine (each starts from the snapshot the
    /// other left).
    pub fn lock(&self, id: &str) -> Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.folder_dir(id);
        crate::catalog::create_private_dir(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "another dstore is syncing folder {id} right now; this round was left to it"
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }

    pub fn state(&self, id: &str) -> Result<State> {
        Ok(
            read_json(&self.folder_dir(id).join("state.json"))?.unwrap_or(State {
                format: LOCAL_FORMAT,
                ..State::default()
            }),
        )
    }

    pub fn save_state(&self, id: &str, s: &State) -> Result<()> {
        write_json(&self.folder_dir(id).join("state.json"), s)
    }

    /// The seqs of the snapshots this machine holds, oldest first.
    pub fn seqs(&self, id: &str) -> Vec<u64> {
        numbered(&self.folder_dir(id).join("snapshots"))
    }

    /// A snapshot this machine holds, checked as one from Discord is (paths, pack indices,
    /// sizes): a damaged or edited file must never send a restore outside its destination.
    /// Which channels its packs are in is checked where they are read.
    pub fn snapshot(&self, id: &str, seq: u64) -> Result<Option<Local>> {
        let path = self
            .folder_dir(id)
            .join("snapshots")
            .join(format!("{seq}.json"));
        let Some(local) = read_json::<Local>(&path)? else {
            return Ok(None);
        };
        let snap = &local.snapshot;
        let channels: Vec<u64> = snap.packs.iter().map(|p| p.channel_id).collect();
        let checked = if snap.folder != id || snap.seq != seq {
            Err(format!(
                "it holds snapshot {} of folder {}",
                snap.seq, snap.folder
            ))
        } else {
            snap.check(&channels).map_err(|e| e.to_string())
        };
        match checked {
            Ok(()) => Ok(Some(local)),
            Err(why) => anyhow::bail!(
                "{} is damaged ({why}); remove it and run `recover` to fetch the snapshot from Discord again",
                path.display()
            ),
        }
    }

    /// Every snapshot this machine holds of the folder, oldest first.
    pub fn snapshots(&self, id: &str) -> Result<Vec<Local>> {
        let mut out = Vec::new();
        for seq in self.seqs(id) {
            if let Some(l) = self.snapshot(id, seq)? {
                out.push(l);
            }
        }
        Ok(out)
    }

    pub fn latest(&self, id: &str) -> Result<Option<Local>> {
        match self.seqs(id).last() {
            Some(&seq) => self.snapshot(id, seq),
            None => Ok(None),
        }
    }

    pub fn save_snapshot(&self, l: &Local) -> Result<()> {
        write_json(
            &self
                .folder_dir(&l.snapshot.folder)
                .join("snapshots")
                .join(format!("{}.json", l.snapshot.seq)),
            l,
        )
    }

    pub fn remove_snapshot(&self, id: &str, seq: u64) -> Result<()> {
        let path = self
            .folder_dir(id)
            .join("snapshots")
            .join(format!("{seq}.json"));
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }

    fn round_dir(&self, id: &str, round: &str) -> PathBuf {
        self.folder_dir(id).join("rounds").join(round)
    }

    /// Records that a round began (before it posts anything).
    pub fn begin_round(&self, id: &str, round: &str) -> Result<()> {
        #[derive(Serialize)]
        struct Round<'a> {
            format: u32,
            id: &'a str,
            #[serde(with = "time::serde::rfc3339")]
            started_at: OffsetDateTime,
        }
        write_json(
            &self.round_dir(id, round).join("round.json"),
            &Round {
                format: LOCAL_FORMAT,
                id: round,
                started_at: OffsetDateTime::now_utc(),
            },
        )
    }

    pub fn save_pack(&self, id: &str, round: &str, rec: &PackRecord) -> Result<()> {
        write_json(
            &self
                .round_dir(id, round)
                .join(format!("{}.json", rec.index)),
            rec,
        )
    }

    /// The rounds of a folder that left records (killed before their snapshot): each round's ID,
    /// when it began, and its pack records.
    pub fn leftover_rounds(
        &self,
        id: &str,
    ) -> Result<Vec<(String, OffsetDateTime, Vec<PackRecord>)>> {
        #[derive(Deserialize)]
        struct Round {
            id: String,
            #[serde(with = "time::serde::rfc3339")]
            started_at: OffsetDateTime,
        }
        let mut out = Vec::new();
        for r in std::fs::read_dir(self.folder_dir(id).join("rounds"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let Some(round) = read_json::<Round>(&r.path().join("round.json"))? else {
                continue;
            };
            let mut recs = Vec::new();
            for n in numbered(&r.path()) {
                if let Some(rec) = read_json::<PackRecord>(&r.path().join(format!("{n}.json")))? {
                    recs.push(rec);
                }
            }
            out.push((round.id, round.started_at, recs));
        }
        Ok(out)
    }

    /// Every pack record of every round of every folder.
    pub fn all_packs(&self) -> Result<Vec<PackRecord>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            for r in std::fs::read_dir(e.path().join("rounds"))
                .into_iter()
                .flatten()
                .flatten()
            {
                for n in numbered(&r.path()) {
                    if let Some(rec) = read_json::<PackRecord>(&r.path().join(format!("{n}.json")))?
                    {
                        out.push(rec);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Removes the records of every round of a folder: once a snapshot is posted, the chunks it
    /// uses are in it, and a pack no snapshot names is an orphan for `prune`.
    pub fn clear_rounds(&self, id: &str) -> Result<()> {
        let dir = self.folder_dir(id).join("rounds");
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", dir.display())),
        }
    }

    /// Every pack attachment this machine's sync records rely on: the local snapshots' and the
    /// packs of rounds not finished.
    pub fn used_packs(&self) -> Result<std::collections::HashSet<u64>> {
        let mut out = std::collections::HashSet::new();
        for f in self.all()? {
            for l in self.snapshots(&f.id)? {
                out.extend(l.snapshot.packs.iter().map(|p| p.attachment_id));
            }
        }
        for rec in self.all_packs()? {
            out.insert(rec.attachment_id);
        }
        Ok(out)
    }

    /// Adds every chunk of the folders' snapshots and round records to `index`.
    pub fn add_to_index(&self, index: &mut ChunkIndex) -> Result<()> {
        for f in self.all()? {
            for l in self.snapshots(&f.id)? {
                for n in &l.snapshot.files {
                    index.add_file(&l.snapshot.packs, &n.chunks);
                }
            }
        }
        for rec in self.all_packs()? {
            index.add_pack(rec.pack_ref(), rec.chunks.iter().map(|c| c.entry));
        }
        Ok(())
    }
}

/// The host name of this machine, or empty.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}
