//! The walk of a synced folder (docs/sync.md 3.1): links not followed, `.dstoreignore` files in
//! gitignore syntax honoured, editor swap files, temporary and partial files always skipped.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::repo::snapshot::{valid_path, Kind};

/// The per-folder ignore file.
pub const IGNORE_FILE: &str = ".dstoreignore";

/// One thing found in the folder.
#[derive(Clone, Debug)]
pub struct Item {
    /// Relative, `/`-separated.
    pub path: String,
    pub abs: PathBuf,
    pub kind: Kind,
    pub size: u64,
    pub mtime: OffsetDateTime,
    pub mode: u32,
    pub inode: u64,
    /// The device and the status-change time: with size, mtime and inode, what tells that a
    /// file was written while it was read, even by a writer that put its mtime back.
    pub dev: u64,
    pub ctime_ns: i128,
    pub target: Option<String>,
}

impl Item {
    pub fn mtime_ns(&self) -> i128 {
        self.mtime.unix_timestamp_nanos()
    }
}

/// Whether a file name is one of the temporary or partial files never synced.
pub fn builtin_ignored(name: &str) -> bool {
    let ends = |s: &str| name.ends_with(s);
    // Editor swap and backup files.
    // Bytes, not a str slice: a name's last four bytes may cut a character in two.
    let bytes = name.as_bytes();
    (bytes.first() == Some(&b'.') && bytes.len() > 4 && {
        let tail = &bytes[bytes.len() - 4..];
        tail.starts_with(b".sw") && tail[3].is_ascii_lowercase()
    }) || ends(".swp")
        || ends(".swo")
        || ends(".swx")
        || ends("~")
        || (name.starts_with('#') && name.ends_with('#') && name.len() > 1)
        || name.starts_with(".#")
        || name == "4913"
        // Partial downloads (browsers, dstore's own) and temporary files.
        || ends(".part")
        || ends(".crdownload")
        || ends(".download")
        || ends(".dstore-partial")
        || ends(".tmp")
        || ends(".temp")
        || name.starts_with("~$")
        || (name.starts_with(".~lock.") && name.ends_with('#'))
        // dstore's own atomic-write temporaries.
        || name.starts_with(".tmp-")
}

/// A problem met on the walk that leaves one path out (the round says so).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Skipped {
    pub path: String,
    pub why: String,
}

/// Everything under `root` that is synced, sorted by path; `exclude` (the data dir) is skipped.
pub fn walk(root: &Path, exclude: &Path) -> (Vec<Item>, Vec<Skipped>) {
    let exclude = std::fs::canonicalize(exclude).unwrap_or_else(|_| exclude.to_path_buf());
    let mut items = Vec::new();
    let mut skipped = Vec::new();
    let walker = ignore::WalkBuilder::new(root)
        .standard_filters(false)
        .hidden(false)
        .follow_links(false)
        .add_custom_ignore_filename(IGNORE_FILE)
        .filter_entry(move |e| {
            let name = e.file_name().to_string_lossy();
            !builtin_ignored(&name) && e.path() != exclude
        })
        .build();
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                skipped.push(Skipped {
                    path: String::new(),
                    why: e.to_string(),
                });
                continue;
            }
        };
        if entry.depth() == 0 {
            continue;
        }
        let abs = entry.path().to_path_buf();
        let Ok(rel) = abs.strip_prefix(root) else {
            continue;
        };
        let Some(path) = rel.to_str().map(str::to_string) else {
            skipped.push(Skipped {
                path: rel.to_string_lossy().to_string(),
                why: "its name is not UTF-8".into(),
            });
            continue;
        };
        if !valid_path(&path) {
            skipped.push(Skipped {
                path,
                why: "its name cannot be stored (a backslash or NUL)".into(),
            });
            continue;
        }
        let meta = match std::fs::symlink_metadata(&abs) {
            Ok(m) => m,
            Err(e) => {
                // Gone since it was listed: the next round sees what is there.
                if e.kind() != std::io::ErrorKind::NotFound {
                    skipped.push(Skipped {
                        path,
                        why: e.to_string(),
                    });
                }
                continue;
            }
        };
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_symlink() {
            Kind::Symlink
        } else {
            continue;
        };
        let target = if kind == Kind::Symlink {
            match std::fs::read_link(&abs) {
                Ok(t) => match t.to_str() {
                    Some(t) if !t.is_empty() => Some(t.to_string()),
                    _ => {
                        skipped.push(Skipped {
                            path,
                            why: "its link target is not UTF-8".into(),
                        });
                        continue;
                    }
                },
                Err(e) => {
                    skipped.push(Skipped {
                        path,
                        why: e.to_string(),
                    });
                    continue;
                }
            }
        } else {
            None
        };
        items.push(Item {
            path,
            abs,
            kind,
            size: if kind == Kind::File { meta.len() } else { 0 },
            mtime: mtime_of(&meta),
            mode: meta.permissions().mode() & 0o7777,
            inode: meta.ino(),
            dev: meta.dev(),
            ctime_ns: ctime_ns(&meta),
            target,
        });
    }
    items.sort_by(|a, b| a.path.cmp(&b.path));
    (items, skipped)
}

/// A file's status-change time in nanoseconds.
pub fn ctime_ns(meta: &std::fs::Metadata) -> i128 {
    i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec())
}

/// A file's mtime, to the nanosecond.
pub fn mtime_of(meta: &std::fs::Metadata) -> OffsetDateTime {
    let ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    OffsetDateTime::from_unix_timestamp_nanos(ns).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_and_partial_files_are_ignored() {
        for name in [
            ".a.txt.swp",
            ".a.swo",
            ".notes.swx",
            "a.txt~",
            "#a.txt#",
            ".#a.txt",
            "4913",
            "movie.mkv.part",
            "x.crdownload",
            "data.tmp",
            "~$report.docx",
            ".~lock.report.odt#",
            ".big.iso.k3f9x2ab7q.dstore-partial",
        ] {
            assert!(builtin_ignored(name), "{name}");
        }
        for name in [
            "a.txt",
            ".bashrc",
            "part",
            "notes.md",
            ".dstoreignore",
            "swap",
            // Names whose last four bytes cut a character: judged, not a panic.
            ".é€",
            ".a€.sw",
        ] {
            assert!(!builtin_ignored(name), "{name}");
        }
    }

    #[test]
    fn walks_without_following_links_and_honours_dstoreignore() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join("build")).unwrap();
        std::fs::write(root.join("a/b/c.txt"), b"c").unwrap();
        std::fs::write(root.join("a/keep.log"), b"k").unwrap();
        std::fs::write(root.join("a/drop.log"), b"d").unwrap();
        std::fs::write(root.join("build/out"), b"o").unwrap();
        std::fs::write(root.join("x.tmp"), b"t").unwrap();
        std::fs::write(root.join(".dstoreignore"), b"build/\n*.log\n!keep.log\n").unwrap();
        std::os::unix::fs::symlink("a", root.join("link")).unwrap();
        let (items, skipped) = walk(root, &root.join(".dstore"));
        assert!(skipped.is_empty(), "{skipped:?}");
        let paths: Vec<&str> = items.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                ".dstoreignore",
                "a",
                "a/b",
                "a/b/c.txt",
                "a/keep.log",
                "link"
            ]
        );
        let link = items.iter().find(|i| i.path == "link").unwrap();
        assert_eq!(
            (link.kind, link.target.as_deref()),
            (Kind::Symlink, Some("a"))
        );
    }
}
