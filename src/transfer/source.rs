//! Noticing that the source file changed under an upload: at the start of each run against
//! what `file.json` recorded, and before the file is marked complete against what the source
//! looked like when the run began, so a file edited in place half-way is never stored as a
//! mix of old and new bytes.

use std::path::Path;

use time::OffsetDateTime;

use super::UploadError;
use crate::catalog::{FileManifest, SourceStamp};
use crate::store::SourceChanged;

/// What the source looked like at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    size: u64,
    mtime: Option<OffsetDateTime>,
    stamp: Option<SourceStamp>,
}

fn snapshot(path: &Path) -> std::io::Result<Snapshot> {
    let meta = std::fs::metadata(path)?;
    Ok(Snapshot {
        size: meta.len(),
        mtime: meta.modified().map(OffsetDateTime::from).ok(),
        stamp: SourceStamp::of(&meta),
    })
}

/// Checks that the source is the file `file.json` describes (size, modification time, and on
/// Unix the same device and inode), and returns how it looks now, for [`check_unchanged`].
///
/// The change time recorded at upload is deliberately not compared: it moves on a `chmod`, a
/// `chown`, a new hard link or a backup tool's attribute write, none of which changes a byte,
/// and a run cannot store bytes it has not checked: every part already on Discord is read
/// again and must hash as recorded, and the whole-file SHA-256 is computed afresh from this
/// run's reads. So what a run marks complete is the file as that run read it, and
/// [`check_unchanged`] (which does compare the change time) makes sure it did not move while
/// it was read. Device and inode are compared because another file put at the same path (an
/// editor saving by rename, a restore from backup) is not the file being uploaded.
pub fn check_source(file: &FileManifest) -> Result<Snapshot, UploadError> {
    let path = &file.source_path;
    let now = snapshot(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => UploadError::Source {
            path: path.display().to_string(),
            reason: "it is no longer there; put it back to resume".into(),
        },
        _ => UploadError::source(path, e),
    })?;
    let changed = |what: String| Err(SourceChanged::new(path, what).into());
    if now.size != file.size {
        return changed(format!("its size is {} bytes, not {}", now.size, file.size));
    }
    if now.mtime != Some(file.mtime) {
        return changed("its modification time differs".into());
    }
    if let (Some(was), Some(is)) = (file.source_stamp, now.stamp) {
        if (was.dev, was.ino) != (is.dev, is.ino) {
            return changed("another file is at that path now".into());
        }
    }
    Ok(now)
}

/// Checks that nothing about the source moved since `began`: any write changes the change time
/// on Unix, even one that set the modification time back afterwards. (Linux 6.13 and later
/// give a change made after a `stat` a strictly newer time; older kernels and some file systems
/// tick every few milliseconds, so a write in the same tick as the last change before `began`
/// can go unseen.)
pub fn check_unchanged(path: &Path, began: &Snapshot) -> Result<(), UploadError> {
    let changed = |what: &str| Err(SourceChanged::new(path, what).into());
    let now = match snapshot(path) {
        Ok(now) => now,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return changed("it was moved or deleted")
        }
        Err(e) => return Err(UploadError::source(path, e)),
    };
    if now == *began {
        return Ok(());
    }
    if now.size != began.size {
        return changed("its size changed");
    }
    if now.mtime != began.mtime {
        return changed("it was modified");
    }
    match (began.stamp, now.stamp) {
        (Some(a), Some(b)) if (a.dev, a.ino) != (b.dev, b.ino) => {
            changed("another file is at that path now")
        }
        _ => changed("its change time moved: it was written to, or its attributes changed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn a_write_that_restores_the_mtime_is_still_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        std::fs::write(&path, b"0123456789").unwrap();
        let began = snapshot(&path).unwrap();
        assert!(check_unchanged(&path, &began).is_ok());
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::File::options().write(true).open(&path).unwrap();
            f.seek(SeekFrom::Start(4)).unwrap();
            f.write_all(b"x").unwrap();
            f.set_modified(mtime).unwrap();
        }
        let err = check_unchanged(&path, &began).unwrap_err();
        assert!(matches!(err, UploadError::SourceChanged(_)), "{err}");
        assert!(err.to_string().contains("change time"), "{err}");
    }
}
