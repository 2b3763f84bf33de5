//! Paths typed at the prompt read as in a shell: `~` and `~/...` are the home folder, and in
//! `upload` paths `*`, `?` and `[...]` match files (sorted, as a shell lists them).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::cli::Command;

/// `cmd` with its path arguments expanded; `home` is the home folder, if known.
pub fn command(cmd: Command, home: Option<&Path>) -> Result<Command> {
    Ok(match cmd {
        Command::Upload { paths, force, json } => {
            let mut out = Vec::new();
            for p in paths {
                out.extend(glob(&tilde(&p, home)?)?);
            }
            Command::Upload {
                paths: out,
                force,
                json,
            }
        }
        Command::Download {
            id,
            dest,
            force,
            json,
        } => Command::Download {
            id,
            dest: dest.map(|d| tilde(&d, home)).transpose()?,
            force,
            json,
        },
        Command::Sync {
            dir,
            more,
            once,
            rescan,
            json,
        } => Command::Sync {
            dir: tilde(&dir, home)?,
            more,
            once,
            rescan,
            json,
        },
        Command::Restore {
            what,
            dest,
            at,
            force,
        } => Command::Restore {
            what,
            dest: dest.map(|d| tilde(&d, home)).transpose()?,
            at,
            force,
        },
        other => other,
    })
}

/// `~` → the home folder, `~/x` → `<home>/x`; other paths as given.
pub fn tilde(path: &Path, home: Option<&Path>) -> Result<PathBuf> {
    let text = path.to_string_lossy();
    let rest = match text.as_ref() {
        "~" => "",
        t if t.starts_with("~/") => &t[2..],
        _ => return Ok(path.to_path_buf()),
    };
    let Some(home) = home else {
        bail!("`~` is the home folder, but HOME is not set; write the full path");
    };
    let trailing_slash = text.ends_with('/') && !rest.is_empty();
    let mut out = home.join(rest);
    if trailing_slash && !out.as_os_str().to_string_lossy().ends_with('/') {
        // `download ID ~/new/` means a folder: keep the slash that says so.
        out = PathBuf::from(format!("{}/", out.display()));
    }
    Ok(out)
}

/// The files a pattern matches, sorted; a path without `*`, `?` or `[` as given. A pattern that
/// matches nothing is an error, unless a file has that very name.
pub fn glob(path: &Path) -> Result<Vec<PathBuf>> {
    let text = path.to_string_lossy();
    if !text.contains(['*', '?', '[']) {
        return Ok(vec![path.to_path_buf()]);
    }
    let matches = match glob::glob(&text) {
        Ok(paths) => {
            let mut m: Vec<PathBuf> = paths.flatten().collect();
            m.sort();
            m
        }
        Err(e) => bail!("`{text}` is not a valid pattern: {}", e.msg),
    };
    if !matches.is_empty() {
        return Ok(matches);
    }
    if path.exists() {
        return Ok(vec![path.to_path_buf()]);
    }
    bail!("no file matches `{text}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tilde_is_the_home_folder() {
        let home = Path::new("/home/me");
        assert_eq!(tilde(Path::new("~"), Some(home)).unwrap(), home);
        assert_eq!(
            tilde(Path::new("~/a/b.bin"), Some(home)).unwrap(),
            Path::new("/home/me/a/b.bin")
        );
        assert_eq!(
            tilde(Path::new("~/new/"), Some(home))
                .unwrap()
                .to_string_lossy(),
            "/home/me/new/"
        );
        for as_is in ["~user/x", "a/~/b", "x~"] {
            assert_eq!(
                tilde(Path::new(as_is), Some(home)).unwrap(),
                Path::new(as_is)
            );
        }
        assert!(tilde(Path::new("~/x"), None).is_err());
    }

    #[test]
    fn patterns_match_sorted_files_and_no_match_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["b.bin", "a.bin", "c.txt", "[x].bin"] {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        let d = dir.path().display();
        let got = glob(Path::new(&format!("{d}/*.bin"))).unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        assert_eq!(names, ["[x].bin", "a.bin", "b.bin"]);
        assert_eq!(glob(Path::new(&format!("{d}/?.txt"))).unwrap().len(), 1);
        // A name with brackets that exists is taken as it is.
        assert_eq!(glob(Path::new(&format!("{d}/[x].bin"))).unwrap().len(), 1);
        let e = glob(Path::new(&format!("{d}/*.iso")))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("no file matches"), "{e}");
        assert_eq!(
            glob(Path::new("plain.bin")).unwrap(),
            [PathBuf::from("plain.bin")]
        );
    }
}
