//! The partial file a download writes into, beside its destination: created exclusively and
//! readable by the user only, reopened on a later run only if it is plainly ours (a regular
//! file, not a link, owned by us, with no other name), and moved into place at the end without
//! replacing a file that appeared meanwhile unless the user forces it.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Longest file name most file systems take (ext4, APFS, NTFS: 255 bytes).
pub const NAME_MAX: usize = 255;
const SUFFIX: &str = ".dstore-partial";

/// The partial file's name for `target`: `.<name>.<id>.dstore-partial`, the name cut short so
/// the whole stays within [`NAME_MAX`]. The same on every run, so a download resumes.
pub fn partial_path(target: &Path, id: &str) -> PathBuf {
    let name = target
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().to_string());
    let room = NAME_MAX - (1 + 1 + id.len() + SUFFIX.len());
    let mut cut = name.len().min(room);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    target.with_file_name(format!(".{}.{id}{SUFFIX}", &name[..cut]))
}

/// Why the partial file cannot be used; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PartialError {
    #[error("cannot create a file in {}: {source}; choose a folder you can write to", .dir.display())]
    CannotCreate { dir: PathBuf, source: io::Error },
    #[error("{} is in the way ({why}), and dstore did not make it; remove it and run the command again", .path.display())]
    NotOurs { path: PathBuf, why: &'static str },
    #[error("cannot use the partial download {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// An open partial file.
#[derive(Debug)]
pub struct Partial {
    pub file: Arc<File>,
    pub path: PathBuf,
    /// Whether it was there from an earlier run (its verified parts are kept).
    pub resumed: bool,
}

impl Partial {
    /// Creates the partial file (0600, failing if anything is at its name), or reopens the one
    /// an earlier run left, and sizes it to `size`. Nothing is created when this fails.
    pub fn open(path: &Path, size: u64) -> Result<Self, PartialError> {
        let io_err = |source| PartialError::Io {
            path: path.to_path_buf(),
            source,
        };
        let (file, resumed) = match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => (create(path)?, false),
            Err(e) => return Err(io_err(e)),
            Ok(seen) => (reopen(path, &seen)?, true),
        };
        if file.metadata().map_err(io_err)?.len() != size {
            file.set_len(size).map_err(io_err)?;
        }
        Ok(Self {
            file: Arc::new(file),
            path: path.to_path_buf(),
            resumed,
        })
    }

    /// Gives the verified file its mtime and mode, and moves it to `target`: without `force`
    /// it never replaces a file that appeared there meanwhile (it stays here, verified).
    pub fn place(
        self,
        target: &Path,
        mtime: std::time::SystemTime,
        mode: u32,
        force: bool,
    ) -> Result<(), PlaceError> {
        let io_err = |source| PlaceError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.set_modified(mtime).map_err(io_err)?;
        self.file
            .set_permissions(Permissions::from_mode(mode))
            .map_err(io_err)?;
        self.file.sync_all().map_err(io_err)?;
        self.check_still_ours()?;
        if force {
            fs::rename(&self.path, target).map_err(|e| self.cannot_move(target, e))?;
        } else {
            self.link_no_clobber(target)?;
        }
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::catalog::sync_dir(dir).map_err(|e| self.cannot_move(target, e))?;
        }
        Ok(())
    }

    /// Links the file at `target` (which fails if anything is there), then drops the partial
    /// name. On a file system without hard links, a check then a rename.
    fn link_no_clobber(&self, target: &Path) -> Result<(), PlaceError> {
        let appeared = || PlaceError::Appeared {
            target: target.to_path_buf(),
            partial: self.path.clone(),
        };
        match fs::hard_link(&self.path, target) {
            Ok(()) => fs::remove_file(&self.path).map_err(|source| PlaceError::Leftover {
                target: target.to_path_buf(),
                partial: self.path.clone(),
                source,
            }),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(appeared()),
            Err(_) if fs::symlink_metadata(target).is_ok() => Err(appeared()),
            Err(_) => fs::rename(&self.path, target).map_err(|e| self.cannot_move(target, e)),
        }
    }

    /// The name still leads to the file written (nobody swapped it meanwhile).
    fn check_still_ours(&self) -> Result<(), PlaceError> {
        let open = self.file.metadata();
        let named = fs::symlink_metadata(&self.path);
        match (open, named) {
            (Ok(a), Ok(b)) if (a.dev(), a.ino()) == (b.dev(), b.ino()) => Ok(()),
            _ => Err(PlaceError::Io {
                path: self.path.clone(),
                source: io::Error::other("it was moved or replaced during the download"),
            }),
        }
    }

    fn cannot_move(&self, target: &Path, source: io::Error) -> PlaceError {
        PlaceError::Move {
            target: target.to_path_buf(),
            partial: self.path.clone(),
            source,
        }
    }
}

/// Why a verified download could not be put in place; the bytes stay in the partial file.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("{} appeared during the download and was left as it is; the verified file is in {}: run the same command with --force to replace it, or move it away and run the command again", .target.display(), .partial.display())]
    Appeared { target: PathBuf, partial: PathBuf },
    #[error("cannot move the download to {}: {source}; the verified file is in {}", .target.display(), .partial.display())]
    Move {
        target: PathBuf,
        partial: PathBuf,
        source: io::Error,
    },
    #[error("the download is in {}, but its partial name {} could not be removed ({source}); remove it yourself", .target.display(), .partial.display())]
    Leftover {
        target: PathBuf,
        partial: PathBuf,
        source: io::Error,
    },
    #[error("cannot finish the partial download {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// A new partial file, 0600 from its first instant. `create_new` (O_CREAT|O_EXCL) fails on
/// anything at the name, a symbolic link included, so it never writes through one.
fn create(path: &Path) -> Result<File, PartialError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => PartialError::NotOurs {
                path: path.to_path_buf(),
                why: "it appeared while the download started",
            },
            _ => PartialError::CannotCreate {
                dir: parent(path),
                source,
            },
        })
}

/// The partial file an earlier run left, opened only if it is a regular file owned by us with
/// no other name. It is checked again through the open handle (same device and inode as the
/// name showed), so a swap between the look and the open is caught.
fn reopen(path: &Path, seen: &fs::Metadata) -> Result<File, PartialError> {
    let not_ours = |why| PartialError::NotOurs {
        path: path.to_path_buf(),
        why,
    };
    let io_err = |source| PartialError::Io {
        path: path.to_path_buf(),
        source,
    };
    if seen.file_type().is_symlink() {
        return Err(not_ours("it is a symbolic link"));
    }
    if !seen.is_file() {
        return Err(not_ours("it is not a regular file"));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if (meta.dev(), meta.ino()) != (seen.dev(), seen.ino()) {
        return Err(not_ours("it changed while it was being opened"));
    }
    if meta.uid() != own_uid().map_err(io_err)? {
        return Err(not_ours("it belongs to another user"));
    }
    if meta.nlink() != 1 {
        return Err(not_ours("it has other names (hard links)"));
    }
    if meta.mode() & 0o077 != 0 {
        // Left by an earlier version, created with the umask's mode.
        file.set_permissions(Permissions::from_mode(0o600))
            .map_err(io_err)?;
    }
    Ok(file)
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The user files are created as: the owner of a file this process creates (no call for the
/// effective UID without `unsafe`), unlinked at once.
fn own_uid() -> io::Result<u32> {
    Ok(tempfile::tempfile()?.metadata()?.uid())
}

/// The mode a new file gets here (0666 less the umask), for files uploaded without a
/// recorded mode; the umask can only be read by creating a file with it.
pub fn default_file_mode() -> u32 {
    tempfile::Builder::new()
        .permissions(Permissions::from_mode(0o666))
        .tempfile()
        .and_then(|t| t.as_file().metadata())
        .map_or(0o644, |m| m.mode() & 0o777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_names_fit_and_are_stable() {
        let t = Path::new("/d/movie.mkv");
        assert_eq!(
            partial_path(t, "abcdefghjk"),
            Path::new("/d/.movie.mkv.abcdefghjk.dstore-partial")
        );
        let long = "é".repeat(200);
        let p = partial_path(&Path::new("/d").join(&long), "abcdefghjk");
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(name.len() <= NAME_MAX, "{}", name.len());
        assert_eq!(p, partial_path(&Path::new("/d").join(&long), "abcdefghjk"));
    }

    #[test]
    fn a_symlink_or_a_hard_link_at_the_partial_name_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let p = dir.path().join(".x.abcdefghjk.dstore-partial");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        let e = Partial::open(&p, 100).unwrap_err().to_string();
        assert!(
            e.contains("symbolic link") && e.contains("remove it"),
            "{e}"
        );
        fs::remove_file(&p).unwrap();
        fs::hard_link(&victim, &p).unwrap();
        let e = Partial::open(&p, 100).unwrap_err().to_string();
        assert!(e.contains("hard links"), "{e}");
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn a_new_partial_is_private_and_an_old_one_is_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".x.abcdefghjk.dstore-partial");
        let first = Partial::open(&p, 10).unwrap();
        assert!(!first.resumed);
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        drop(first);
        fs::set_permissions(&p, Permissions::from_mode(0o644)).unwrap();
        let again = Partial::open(&p, 10).unwrap();
        assert!(again.resumed);
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn placing_never_replaces_a_file_that_appeared_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x");
        let p = partial_path(&target, "abcdefghjk");
        let mtime = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 30);
        let part = Partial::open(&p, 3).unwrap();
        fs::write(&target, b"precious").unwrap();
        let e = part.place(&target, mtime, 0o640, false).unwrap_err();
        assert!(matches!(e, PlaceError::Appeared { .. }), "{e}");
        assert!(e.to_string().contains("--force"), "{e}");
        assert_eq!(fs::read(&target).unwrap(), b"precious");
        assert!(p.exists(), "the verified download is kept");
        let part = Partial::open(&p, 3).unwrap();
        part.place(&target, mtime, 0o640, true).unwrap();
        let meta = fs::metadata(&target).unwrap();
        assert_eq!((meta.len(), meta.mode() & 0o777), (3, 0o640));
        assert_eq!(meta.modified().unwrap(), mtime);
        assert!(!p.exists());
        fs::remove_file(&target).unwrap();
        Partial::open(&p, 3)
            .unwrap()
            .place(&target, mtime, 0o600, false)
            .unwrap();
        assert!(target.exists() && !p.exists());
    }
}
