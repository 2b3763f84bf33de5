//! Crash-safe file writes: temp file in the same directory, fsync, rename, fsync the directory.
//! A kill at any instant leaves either the old file or the new one, never a torn one; what it
//! can leave is a temporary, whose name no loader reads and which [`remove_stale_temps`] clears.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Temporaries are `.tmp-XXXXXX.tmp`: hidden, and never `<index>.json` or `file.json`.
const TEMP_PREFIX: &str = ".tmp-";
const TEMP_SUFFIX: &str = ".tmp";

/// Writes `bytes` to `path` atomically. The file is readable by the user only (tempfile
/// creates it 0600), and so is any folder this creates.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    create_private_dir(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Creates a folder (and its missing parents) readable by the user only; an existing one is
/// left as it is.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Whether a name in a manifest folder is a temporary of [`write_atomic`] (today's `.tmp`
/// names and the `.tmp-XXXXXX.json` names of earlier versions).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) && (name.ends_with(TEMP_SUFFIX) || name.ends_with(".json"))
}

/// Removes the temporaries in `dir` last changed more than `older_than` ago: a write takes
/// milliseconds, so such a file was left by a process killed mid-write. Younger ones may be a
/// write in progress in another process and are kept. Returns how many were removed.
pub fn remove_stale_temps(dir: &Path, older_than: Duration) -> io::Result<usize> {
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        r => r?,
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        if !is_temp_name(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let meta = entry.metadata()?;
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok());
        if meta.is_file() && age.is_some_and(|a| a > older_than) {
            match fs::remove_file(entry.path()) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                Err(_) => {}
                Ok(()) => removed += 1,
            }
        }
    }
    Ok(removed)
}

/// Makes a rename durable by syncing the directory that holds it.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a").join("x.json");
        write_atomic(&p, b"first version, longer").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o600);
        assert_eq!(mode(p.parent().unwrap()), 0o700);
    }

    #[test]
    fn temporaries_are_never_manifest_names() {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..50 {
            let t = tempfile::Builder::new()
                .prefix(TEMP_PREFIX)
                .suffix(TEMP_SUFFIX)
                .tempfile_in(dir.path())
                .unwrap();
            let name = t.path().file_name().unwrap().to_string_lossy().to_string();
            assert!(is_temp_name(&name), "{name}");
            assert!(!name.ends_with(".json") && name != "file.json", "{name}");
        }
        assert!(
            is_temp_name(".tmp-a1B2c3.json"),
            "earlier versions' temporaries"
        );
        assert!(!is_temp_name("3.json") && !is_temp_name("file.json"));
    }

    #[test]
    fn only_stale_temporaries_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let put = |name: &str, age: u64| {
            let p = dir.path().join(name);
            let f = File::create(&p).unwrap();
            f.set_modified(SystemTime::now() - Duration::from_secs(age))
                .unwrap();
            p
        };
        let old = put(".tmp-old123.tmp", 3600);
        let old_json = put(".tmp-old456.json", 3600);
        let fresh = put(".tmp-new789.tmp", 0);
        let manifest = put("0.json", 3600);
        let n = remove_stale_temps(dir.path(), Duration::from_secs(300)).unwrap();
        assert_eq!(n, 2);
        assert!(!old.exists() && !old_json.exists());
        assert!(fresh.exists() && manifest.exists());
        assert_eq!(
            remove_stale_temps(&dir.path().join("gone"), Duration::ZERO).unwrap(),
            0
        );
    }
}
