//! The local catalogue: one folder per file under `<data-dir>/files/<id>/`, holding `file.json`
//! and `parts/<index>.json`, each written atomically right after the fact it records.

mod atomic;
mod id;
pub mod layout;
mod manifest;
pub mod packs;
pub(crate) use manifest::snowflake;
pub mod remote;

use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

pub use atomic::{create_private_dir, sync_dir, write_atomic};
pub use id::{is_valid_id, new_file_id};
pub use manifest::{
    attachment_name, mode_of, parse_attachment_name, FileManifest, MessageRef, PartRecord,
    SourceStamp, Status, FORMAT_VERSION,
};
pub use packs::{ChunkRef, PackChunk, PackRecord, PackRef, FORMAT_V2};

#[derive(Debug, Error)]
pub enum CatalogError {
    #[error("no file with ID {0:?}; `list` shows the IDs you have")]
    UnknownId(String),
    #[error("the manifest {path} is damaged ({reason}); it was left as it is")]
    Corrupt { path: PathBuf, reason: String },
    #[error("the manifest {path} has format {found}, newer than this dstore understands; upgrade dstore")]
    NewerFormat { path: PathBuf, found: u32 },
    #[error("cannot access {path}: {source}; check that the data dir exists and is writable (--data-dir or DSTORE_DATA_DIR moves it)")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{0} is in use by another dstore process; wait for it to finish or stop it, then try again"
    )]
    Busy(String),
    #[error("cannot encode the manifest {path}: {reason}; nothing was written")]
    Encode { path: PathBuf, reason: String },
}

/// A temporary older than this was left by a process killed mid-write (a write takes
/// milliseconds); younger ones may belong to a write in progress in another process.
const STALE_TEMP_AGE: Duration = Duration::from_secs(5 * 60);

/// The index of a part manifest named `<index>.json` (digits as `format!` writes them), or
/// `None` for anything else: temporaries, moved-aside `.corrupt` files, `01.json`, `+1.json`.
fn part_index(name: &str) -> Option<u64> {
    let index: u64 = name.strip_suffix(".json")?.parse().ok()?;
    (format!("{index}.json") == name).then_some(index)
}

fn encode<T: serde::Serialize>(path: &Path, value: &T) -> Result<Vec<u8>, CatalogError> {
    serde_json::to_vec_pretty(value).map_err(|e| CatalogError::Encode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Held while a command changes a file; the OS releases it when the process ends, however it
/// ends (a kill included), so it can never be left stale.
#[derive(Debug)]
pub struct FileLock(#[allow(dead_code)] fs::File);

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CatalogError + '_ {
    move |source| CatalogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The parts of a file found on disk, and part manifests that could not be read.
#[derive(Debug, Default)]
pub struct LoadedParts {
    pub parts: Vec<PartRecord>,
    /// Damaged part manifests, moved aside to `<name>.corrupt`; their parts are looked for on
    /// Discord again by `resume`.
    pub quarantined: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    files: PathBuf,
}

impl Catalog {
    /// Opens the catalogue in `data_dir`, creating it readable by the user only. An existing
    /// data dir keeps its mode (it may be a folder the user chose and shares); the `files`
    /// folder, which only dstore writes, is made private if it is not.
    pub fn open(data_dir: &Path) -> Result<Self, CatalogError> {
        let files = data_dir.join("files");
        create_private_dir(&files).map_err(io_err(&files))?;
        let meta = fs::metadata(&files).map_err(io_err(&files))?;
        if meta.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(&files, fs::Permissions::from_mode(0o700))
                .map_err(io_err(&files))?;
        }
        Ok(Self { files })
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.files.join(id)
    }

    /// Whether a file with this ID exists.
    pub fn contains(&self, id: &str) -> bool {
        is_valid_id(id) && self.dir(id).join("file.json").exists()
    }

    /// A fresh ID no file in this catalogue has.
    pub fn fresh_id(&self) -> String {
        loop {
            let id = new_file_id();
            if !self.dir(&id).exists() {
                return id;
            }
        }
    }

    pub fn save_file(&self, m: &FileManifest) -> Result<(), CatalogError> {
        let path = self.dir(&m.id).join("file.json");
        let json = encode(&path, m)?;
        write_atomic(&path, &json).map_err(io_err(&path))
    }

    pub fn load_file(&self, id: &str) -> Result<FileManifest, CatalogError> {
        if !is_valid_id(id) {
            return Err(CatalogError::UnknownId(id.to_string()));
        }
        let path = self.dir(id).join("file.json");
        let bytes = match fs::read(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(CatalogError::UnknownId(id.to_string()))
            }
            r => r.map_err(io_err(&path))?,
        };
        parse_versioned(&path, &bytes, FORMAT_V2)
    }

    /// Notes that a webhook post of pack `lost.pack` of file `id` lost its reply with no bot to
    /// look for the message: Discord may hold a copy no record names (docs/lanes.md 3), which
    /// a `prune` with a bot token removes.
    pub fn note_lost_reply(&self, id: &str, lost: LostReply) -> Result<(), CatalogError> {
        let path = self.dir(id).join(LOST_REPLIES);
        let mut all = self.lost_replies(id);
        all.push(lost);
        let json = serde_json::to_vec_pretty(&all).map_err(|e| CatalogError::Encode {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &json).map_err(io_err(&path))
    }

    /// The lost replies noted for file `id` (none if the note is missing or unreadable).
    pub fn lost_replies(&self, id: &str) -> Vec<LostReply> {
        let path = self.dir(id).join(LOST_REPLIES);
        fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Every lost reply noted on this machine, with its file's ID.
    pub fn all_lost_replies(&self) -> Result<Vec<(String, LostReply)>, CatalogError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.files).map_err(io_err(&self.files))? {
            let entry = entry.map_err(io_err(&self.files))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if is_valid_id(&name) {
                out.extend(
                    self.lost_replies(&name)
                        .into_iter()
                        .map(|l| (name.clone(), l)),
                );
            }
        }
        Ok(out)
    }

    /// Drops the lost replies of file `id` noted before `before` (a prune has removed any copy
    /// they left).
    pub fn forget_lost_replies(
        &self,
        id: &str,
        before: time::OffsetDateTime,
    ) -> Result<(), CatalogError> {
        let path = self.dir(id).join(LOST_REPLIES);
        let all = self.lost_replies(id);
        let kept: Vec<LostReply> = all.iter().filter(|l| l.at >= before).cloned().collect();
        if kept.len() == all.len() {
            return Ok(());
        }
        if kept.is_empty() {
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&path)(e)),
                _ => Ok(()),
            };
        }
        let json = serde_json::to_vec_pretty(&kept).map_err(|e| CatalogError::Encode {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &json).map_err(io_err(&path))
    }

    /// Records pack `rec.index` of a format-2 file.
    pub fn save_pack(&self, id: &str, rec: &PackRecord) -> Result<(), CatalogError> {
        let path = self
            .dir(id)
            .join("parts")
            .join(format!("{}.json", rec.index));
        let json = encode(&path, rec)?;
        write_atomic(&path, &json).map_err(io_err(&path))
    }

    /// Reads every pack record of a format-2 file, by index; damaged ones are moved aside, never
    /// deleted (`resume` looks for their packs on Discord again).
    pub fn load_packs(&self, id: &str) -> Result<Vec<PackRecord>, CatalogError> {
        let (mut packs, _) =
            self.load_records::<PackRecord>(id, FORMAT_V2, "pack record", "pack")?;
        packs.retain(|p| p.format == FORMAT_V2);
        packs.sort_by_key(|p| p.index);
        Ok(packs)
    }

    /// Reads every record in `files/<id>/parts/` (`<index>.json`, nothing else: temporaries of a
    /// write in progress are never read) of format at most `newest`; damaged ones are moved
    /// aside to `<index>.json.corrupt`, never deleted, and returned beside the others.
    fn load_records<T: serde::de::DeserializeOwned>(
        &self,
        id: &str,
        newest: u32,
        what: &str,
        thing: &str,
    ) -> Result<(Vec<T>, Vec<PathBuf>), CatalogError> {
        let dir = self.dir(id).join("parts");
        let (mut out, mut quarantined) = (Vec::new(), Vec::new());
        let entries = match fs::read_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((out, quarantined)),
            r => r.map_err(io_err(&dir))?,
        };
        for entry in entries {
            let entry = entry.map_err(io_err(&dir))?;
            if part_index(&entry.file_name().to_string_lossy()).is_none() {
                continue;
            }
            let path = entry.path();
            let bytes = fs::read(&path).map_err(io_err(&path))?;
            match parse_versioned::<T>(&path, &bytes, newest) {
                Ok(p) => out.push(p),
                Err(CatalogError::Corrupt { .. }) => {
                    let aside = path.with_extension("json.corrupt");
                    fs::rename(&path, &aside).map_err(io_err(&path))?;
                    tracing::warn!(
                        "the {what} {} was damaged; moved it to {} and will look for that {thing} on Discord",
                        path.display(),
                        aside.display()
                    );
                    quarantined.push(aside);
                }
                Err(e) => return Err(e),
            }
        }
        Ok((out, quarantined))
    }

    pub fn save_part(&self, id: &str, p: &PartRecord) -> Result<(), CatalogError> {
        let path = self.dir(id).join("parts").join(format!("{}.json", p.index));
        let json = encode(&path, p)?;
        write_atomic(&path, &json).map_err(io_err(&path))
    }

    /// Reads every part manifest (`<index>.json`, nothing else: temporaries of a write in
    /// progress are never read); damaged ones are moved aside, never deleted.
    pub fn load_parts(&self, id: &str) -> Result<LoadedParts, CatalogError> {
        let (mut parts, quarantined) =
            self.load_records::<PartRecord>(id, FORMAT_VERSION, "part manifest", "part")?;
        parts.sort_by_key(|p| p.offset);
        Ok(LoadedParts { parts, quarantined })
    }

    /// The indices of the recorded parts, from file names alone (for `list`).
    pub fn part_indices(&self, id: &str) -> std::collections::HashSet<u64> {
        fs::read_dir(self.dir(id).join("parts"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| part_index(&e.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every readable file manifest, newest first; damaged ones are returned as errors.
    pub fn all(&self) -> Result<Vec<Result<FileManifest, CatalogError>>, CatalogError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.files).map_err(io_err(&self.files))? {
            let entry = entry.map_err(io_err(&self.files))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if is_valid_id(&name) && entry.path().join("file.json").exists() {
                out.push(self.load_file(&name));
            }
        }
        out.sort_by_key(|r| match r {
            Ok(m) => std::cmp::Reverse(Some(m.created_at)),
            Err(_) => std::cmp::Reverse(None),
        });
        Ok(out)
    }

    /// Forgets one part manifest once its message is gone from Discord; a missing one is fine.
    pub fn remove_part(&self, id: &str, index: u64) -> Result<(), CatalogError> {
        let path = self.dir(id).join("parts").join(format!("{index}.json"));
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Removes a file's folder. The folder is first renamed to `.deleting-<id>`, which no
    /// listing reads, so a kill half-way never leaves a file with some of its manifests; the
    /// next removal of that ID clears such a leftover.
    pub fn remove_file(&self, id: &str) -> Result<(), CatalogError> {
        if !is_valid_id(id) {
            return Err(CatalogError::UnknownId(id.to_string()));
        }
        let dir = self.dir(id);
        let aside = self.files.join(format!(".deleting-{id}"));
        remove_tree(&aside)?;
        match fs::rename(&dir, &aside) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(CatalogError::UnknownId(id.to_string()))
            }
            r => r.map_err(io_err(&dir))?,
        }
        atomic::sync_dir(&self.files).map_err(io_err(&self.files))?;
        remove_tree(&aside)
    }

    /// Takes the file's lock, or says another process holds it. With the lock held, the
    /// temporaries a killed writer left in the file's folders are cleared.
    pub fn lock(&self, id: &str) -> Result<FileLock, CatalogError> {
        if !self.contains(id) {
            return Err(CatalogError::UnknownId(id.to_string()));
        }
        let path = self.dir(id).join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(CatalogError::Busy(id.to_string())),
            Err(fs::TryLockError::Error(e)) => return Err(io_err(&path)(e)),
        }
        self.clear_stale_temps(id);
        Ok(FileLock(file))
    }

    /// Removes leftovers of killed writes; failing to is worth a line, not a failed command.
    fn clear_stale_temps(&self, id: &str) {
        for dir in [self.dir(id), self.dir(id).join("parts")] {
            match atomic::remove_stale_temps(&dir, STALE_TEMP_AGE) {
                Ok(0) => {}
                Ok(n) => tracing::debug!(
                    "removed {} left in {}",
                    crate::render::plural(n as u64, "temporary file"),
                    dir.display()
                ),
                Err(e) => tracing::warn!(
                    "cannot clear temporary files left in {}: {e}",
                    dir.display()
                ),
            }
        }
    }

    /// IDs of every file, for completion.
    pub fn ids(&self) -> Vec<String> {
        fs::read_dir(&self.files)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| is_valid_id(n))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Removes a folder and all it holds; one already gone is fine.
fn remove_tree(dir: &Path) -> Result<(), CatalogError> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(dir)(e)),
        _ => Ok(()),
    }
}

/// Parses a manifest, telling a damaged file from one written by a newer dstore.
/// Parses a manifest whose `format` is at most `newest`.
fn parse_versioned<T: serde::de::DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
    newest: u32,
) -> Result<T, CatalogError> {
    #[derive(serde::Deserialize)]
    struct Version {
        format: u32,
    }
    match serde_json::from_slice::<Version>(bytes) {
        Ok(v) if v.format > newest => {
            return Err(CatalogError::NewerFormat {
                path: path.to_path_buf(),
                found: v.format,
            })
        }
        _ => {}
    }
    serde_json::from_slice(bytes).map_err(|e| CatalogError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Where a file's lost webhook replies are noted, in its folder.
const LOST_REPLIES: &str = "lost-replies.json";

/// A webhook post whose reply was lost after its body was sent, with no bot token to look for
/// the message: Discord may keep a copy of the pack that no record names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LostReply {
    /// The pack's number in the file's upload (its attachment name follows from it).
    pub pack: u64,
    pub webhook: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: time::OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn sample(id: &str) -> FileManifest {
        FileManifest {
            name: "a b.bin".into(),
            source_path: "/tmp/a b.bin".into(),
            channels: vec![1234567890123456789],
            ..FileManifest::fixture(id, 25, 10)
        }
    }

    fn part(index: u64) -> PartRecord {
        PartRecord {
            format: FORMAT_VERSION,
            index,
            offset: index * 10,
            length: 10,
            sha256: "00".into(),
            channel_id: 1,
            message_id: 2,
            attachment_id: 3,
            attachment_name: "x".into(),
            uploaded_at: OffsetDateTime::now_utc(),
        }
    }

    #[test]
    fn manifests_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(dir.path()).unwrap();
        let id = c.fresh_id();
        let m = sample(&id);
        c.save_file(&m).unwrap();
        assert_eq!(c.load_file(&id).unwrap(), m);
        let (p0, p1) = (part(0), part(1));
        c.save_part(&id, &p1).unwrap();
        c.save_part(&id, &p0).unwrap();
        let loaded = c.load_parts(&id).unwrap();
        assert_eq!(loaded.parts, vec![p0, p1]);
        assert_eq!(c.part_indices(&id).len(), 2);
        let text =
            std::fs::read_to_string(dir.path().join("files").join(&id).join("file.json")).unwrap();
        assert!(
            text.contains("\"1234567890123456789\""),
            "snowflakes are strings: {text}"
        );
    }

    #[test]
    fn damaged_part_is_moved_aside_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(dir.path()).unwrap();
        let id = c.fresh_id();
        c.save_file(&sample(&id)).unwrap();
        c.save_part(&id, &part(0)).unwrap();
        let bad = dir
            .path()
            .join("files")
            .join(&id)
            .join("parts")
            .join("1.json");
        std::fs::write(&bad, b"{\"format\":1,\"ind").unwrap();
        let loaded = c.load_parts(&id).unwrap();
        assert_eq!(loaded.parts.len(), 1);
        assert_eq!(loaded.quarantined.len(), 1);
        assert!(!bad.exists());
        assert_eq!(
            std::fs::read(&loaded.quarantined[0]).unwrap(),
            b"{\"format\":1,\"ind"
        );
    }

    /// A write in progress (or one a kill cut short) leaves a temporary beside the manifests:
    /// it is never read as a part, never moved aside, never counted.
    #[test]
    fn temporaries_and_strays_are_not_part_manifests() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(dir.path()).unwrap();
        let id = c.fresh_id();
        c.save_file(&sample(&id)).unwrap();
        c.save_part(&id, &part(0)).unwrap();
        let parts = dir.path().join("files").join(&id).join("parts");
        let half = b"{\"format\":1,\"index\":1,";
        let strays = [
            ".tmp-Ab3xYz.json",
            ".tmp-Ab3xYz.tmp",
            "01.json",
            "+1.json",
            "x.json",
        ];
        for name in strays {
            std::fs::write(parts.join(name), half).unwrap();
        }
        let loaded = c.load_parts(&id).unwrap();
        assert_eq!(loaded.parts.len(), 1);
        assert!(loaded.quarantined.is_empty(), "{:?}", loaded.quarantined);
        for name in strays {
            assert!(parts.join(name).exists(), "{name} was left alone");
        }
        assert_eq!(c.part_indices(&id).into_iter().collect::<Vec<_>>(), [0]);
    }

    /// A reader (`info`, `verify`) running while a writer saves parts never sees a write in
    /// progress, so it never moves one aside and the writer never fails.
    #[test]
    fn a_reader_never_disturbs_a_concurrent_writer() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(dir.path()).unwrap();
        let id = c.fresh_id();
        c.save_file(&sample(&id)).unwrap();
        c.save_part(&id, &part(0)).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let mut reads = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                    let loaded = c.load_parts(&id).unwrap();
                    assert!(loaded.quarantined.is_empty(), "{:?}", loaded.quarantined);
                    reads += 1;
                }
            });
            for round in 0..300 {
                c.save_part(&id, &part(round % 3)).unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            reader.join().unwrap();
        });
    }

    #[test]
    fn taking_the_lock_clears_only_stale_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(dir.path()).unwrap();
        let id = c.fresh_id();
        c.save_file(&sample(&id)).unwrap();
        c.save_part(&id, &part(0)).unwrap();
        let root = dir.path().join("files").join(&id);
        let put = |p: PathBuf, age: u64| {
            let f = std::fs::File::create(&p).unwrap();
            let at = std::time::SystemTime::now() - Duration::from_secs(age);
            f.set_modified(at).unwrap();
            p
        };
        let killed = put(root.join(".tmp-k1lled.tmp"), 3600);
        let killed_part = put(root.join("parts").join(".tmp-k2lled.json"), 3600);
        let writing = put(root.join("parts").join(".tmp-wr1te.tmp"), 0);
        let lock = c.lock(&id).unwrap();
        assert!(!killed.exists() && !killed_part.exists());
        assert!(writing.exists(), "a write in progress elsewhere is kept");
        assert_eq!(c.load_parts(&id).unwrap().parts.len(), 1);
        drop(lock);
    }

    #[test]
    fn the_catalogue_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("new").join("data");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        Catalog::open(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("files")), 0o700);
        // Made by an earlier version with the umask's mode: tightened.
        std::fs::set_permissions(data.join("files"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let c = Catalog::open(&data).unwrap();
        assert_eq!(mode(&data.join("files")), 0o700);
        let id = c.fresh_id();
        c.save_file(&sample(&id)).unwrap();
        let _lock = c.lock(&id).unwrap();
        assert_eq!(mode(&data.join("files").join(&id)), 0o700);
        assert_eq!(mode(&data.join("files").join(&id).join("file.json")), 0o600);
        assert_eq!(mode(&data.join("files").join(&id).join(".lock")), 0o600);
    }

    #[test]
    fn removing_parts_and_files_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(dir.path()).unwrap();
        let id = c.fresh_id();
        c.save_file(&sample(&id)).unwrap();
        c.save_part(&id, &part(0)).unwrap();
        c.save_part(&id, &part(1)).unwrap();
        c.remove_part(&id, 0).unwrap();
        c.remove_part(&id, 0).unwrap();
        assert_eq!(c.part_indices(&id).into_iter().collect::<Vec<_>>(), [1]);
        // A leftover of a removal killed half-way does not stop the next one.
        std::fs::create_dir_all(dir.path().join("files").join(format!(".deleting-{id}"))).unwrap();
        c.remove_file(&id).unwrap();
        assert!(!c.contains(&id));
        assert_eq!(
            std::fs::read_dir(dir.path().join("files")).unwrap().count(),
            0
        );
        assert!(matches!(
            c.remove_file(&id),
            Err(CatalogError::UnknownId(_))
        ));
    }

    #[test]
    fn unknown_newer_and_hostile_ids() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(dir.path()).unwrap();
        assert!(matches!(
            c.load_file("abcdefghjk"),
            Err(CatalogError::UnknownId(_))
        ));
        assert!(matches!(
            c.load_file("../../etc"),
            Err(CatalogError::UnknownId(_))
        ));
        let id = c.fresh_id();
        let mut m = sample(&id);
        m.format = 99;
        c.save_file(&m).unwrap();
        assert!(matches!(
            c.load_file(&id),
            Err(CatalogError::NewerFormat { found: 99, .. })
        ));
    }
}
