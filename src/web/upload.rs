//! An upload from the browser: the body streamed to a private file under the data dir (never
//! held in memory), after a check that it fits in the free space, its name one plain path
//! component; then the normal upload pipeline, its progress told to the open pages. The
//! received copy is removed when the pipeline is done, or kept as the source of an upload
//! stopped half-way (for `resume <id>`) until the dashboard next starts after it finished or
//! went.

use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use futures::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::events::Progress;
use super::{ApiError, App};

/// Room left free on the data dir's file system beyond the upload itself (the catalogue and
/// logs must still be written).
const SPARE: u64 = 64 * 1024 * 1024;
/// At most this many progress events a second per upload.
const EVERY: Duration = Duration::from_millis(200);
/// The longest file name most file systems take (bytes).
const NAME_MAX: usize = 255;

#[derive(Deserialize)]
pub struct UploadQuery {
    name: String,
    /// The page's key for this upload, echoed in its progress events.
    #[serde(default)]
    key: String,
}

/// `name` if it is one ordinary path component: not empty, `.` or `..`, no `/`, `\`, NUL or
/// control character, at most 255 bytes.
pub fn one_component(name: &str) -> Option<&str> {
    let plain = !name.is_empty()
        && name.len() <= NAME_MAX
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control());
    let mut parts = Path::new(name).components();
    let single = matches!(parts.next(), Some(Component::Normal(_))) && parts.next().is_none();
    (plain && single).then_some(name)
}

/// A page's upload key: letters, digits and `-`, at most 64.
fn key_ok(key: &str) -> bool {
    key.len() <= 64 && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Bytes free for an unprivileged user on the file system of `dir`.
fn free_space(dir: &Path) -> std::io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    #[allow(clippy::useless_conversion)]
    Ok(u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size())))
}

/// A fresh private folder for one upload: `<data dir>/web/uploads/<random>/`.
fn private_dir(root: &Path) -> std::io::Result<PathBuf> {
    crate::catalog::create_private_dir(root)?;
    let dir = root.join(hex::encode(rand::random::<[u8; 12]>()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map(|()| dir)
}

use std::os::unix::fs::DirBuilderExt;

/// Removes the received copy and its folder when dropped, however the upload ends.
struct Received(PathBuf);

impl Received {
    /// Keeps the copy after all.
    fn keep(mut self) {
        self.0 = PathBuf::new();
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `POST /api/upload?name=N&key=K` with the file as the raw body.
pub async fn upload(
    State(app): State<Arc<App>>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(name) = one_component(&q.name) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the file name must be one plain name: no `/`, `\\`, control characters, `.` or `..`, at most 255 bytes",
        ));
    };
    let key = if key_ok(&q.key) { q.key.as_str() } else { "" };
    let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return Err(ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "an upload must say its size (Content-Length)",
        ));
    };
    let root = app.uploads.clone();
    let dir = tokio::task::spawn_blocking(move || {
        crate::catalog::create_private_dir(&root)?;
        let free = free_space(&root)?;
        if len.saturating_add(SPARE) > free {
            return Ok(Err(free));
        }
        private_dir(&root).map(Ok)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?
    .map_err(|free| {
        ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            format!(
                "{name} ({}) does not fit in the {} free on this machine's data folder",
                crate::render::human_bytes(len),
                crate::render::human_bytes(free.saturating_sub(SPARE))
            ),
        )
    })?;
    let received = Received(dir.clone());
    let path = dir.join(name);
    receive(&app, body, &path, name, key, len).await?;
    let result = store(&app, path.clone(), name, key, len).await;
    if result.is_err() && resumable(&app.session.catalog, &path) {
        // An upload stopped half-way: its copy is its source, kept for `resume <id>`.
        received.keep();
    }
    result
}

/// Whether an unfinished upload's record names the received file as its source.
fn resumable(catalog: &crate::catalog::Catalog, path: &Path) -> bool {
    let Ok(path) = std::fs::canonicalize(path) else {
        return false;
    };
    catalog.all().is_ok_and(|all| {
        all.into_iter()
            .flatten()
            .any(|m| m.status == crate::catalog::Status::Incomplete && m.source_path == path)
    })
}

/// Removes the received copies no unfinished upload needs any more (finished by `resume`,
/// deleted, or never recorded); run when the dashboard starts.
pub fn sweep(catalog: &crate::catalog::Catalog, root: &Path) {
    let Ok(dirs) = std::fs::read_dir(root) else {
        return;
    };
    let sources: Vec<PathBuf> = catalog
        .all()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .filter(|m| m.status == crate::catalog::Status::Incomplete)
        .map(|m| m.source_path)
        .collect();
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    for d in dirs.flatten() {
        let dir = root.join(d.file_name());
        if !sources.iter().any(|s| s.starts_with(&dir)) {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Writes the body to a new private file at `path`, exactly `len` bytes.
async fn receive(
    app: &App,
    body: Body,
    path: &Path,
    name: &str,
    key: &str,
    len: u64,
) -> Result<(), ApiError> {
    let mut out = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await
        .map_err(ApiError::internal)?;
    let mut got = 0u64;
    let mut last = Instant::now();
    let mut frames = body.into_data_stream();
    let tell = |phase, done| {
        app.hub.progress(&Progress {
            key,
            name,
            phase,
            done,
            total: len,
            id: None,
            message: None,
        })
    };
    tell("receiving", 0);
    while let Some(frame) = frames.next().await {
        let frame = frame.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the upload was cut off: {e}"),
            )
        })?;
        got += frame.len() as u64;
        if got > len {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "the upload sent more bytes than its Content-Length",
            ));
        }
        out.write_all(&frame).await.map_err(ApiError::internal)?;
        if last.elapsed() >= EVERY {
            last = Instant::now();
            tell("receiving", got);
        }
    }
    if got != len {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the upload stopped after {got} of {len} bytes"),
        ));
    }
    out.sync_all().await.map_err(ApiError::internal)?;
    Ok(())
}

/// The normal upload of the received file, in a task of its own (a page that goes away does
/// not stop it), its progress and its end told to the pages.
async fn store(
    app: &Arc<App>,
    path: PathBuf,
    name: &str,
    key: &str,
    len: u64,
) -> Result<Json<serde_json::Value>, ApiError> {
    let hub = app.hub.clone();
    let (k, n) = (key.to_string(), name.to_string());
    let last = Mutex::new(Instant::now() - EVERY);
    let watch: crate::progress::Watch = Arc::new(move |done, total| {
        let mut at = last.lock().unwrap_or_else(|e| e.into_inner());
        if at.elapsed() < EVERY && done < total {
            return;
        }
        *at = Instant::now();
        hub.progress(&Progress {
            key: &k,
            name: &n,
            phase: "storing",
            done,
            total,
            id: None,
            message: None,
        });
    });
    let session = app.session.clone();
    let cancel = app.cancel.child_token();
    let task = tokio::spawn(crate::progress::watched(watch, async move {
        crate::commands::web::upload(&session, &path, cancel).await
    }));
    let outcome = task
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| format!("{e:#}"));
    let tell = |phase, id: Option<&str>, message: Option<&str>| {
        app.hub.progress(&Progress {
            key,
            name,
            phase,
            done: len,
            total: len,
            id,
            message,
        })
    };
    match outcome {
        Ok(up) => {
            tell("done", Some(&up.file.id), None);
            app.changed();
            app.hub.send(
                "added",
                &serde_json::json!({"id": up.file.id, "name": up.file.name, "already": up.already}),
            );
            Ok(Json(serde_json::json!({
                "id": up.file.id,
                "name": up.file.name,
                "size": up.file.size,
                "sha256": up.file.sha256,
                "already": up.already,
            })))
        }
        Err(e) => {
            tracing::warn!("an upload from the dashboard failed: {e}");
            tell("failed", None, Some(&e));
            app.changed();
            Err(ApiError::new(StatusCode::BAD_GATEWAY, e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_plain_component_is_a_name() {
        for good in ["a.bin", "photo 1.jpg", "..a", "a..", ".hidden", "é.txt"] {
            assert_eq!(one_component(good), Some(good), "{good}");
        }
        let long = "x".repeat(256);
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../a",
            "/etc/passwd",
            "a\\b",
            "a\0b",
            "a\nb",
            long.as_str(),
        ] {
            assert_eq!(one_component(bad), None, "{bad:?}");
        }
        assert!(key_ok("u-123abc") && !key_ok("a b") && !key_ok(&"k".repeat(65)));
    }
}
