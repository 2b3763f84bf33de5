//! Reading a Create Message body: multipart (files streamed to temp files) or plain JSON.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use dstore_direct::InOrderWriter;
use serde_json::{Map, Value};

use super::error::ApiError;

/// At most 10 attachments per message (discord-api.md §1.3).
pub const MAX_FILES: usize = 10;
/// `payload_json` and plain JSON bodies are small; this only stops abuse.
const MAX_JSON: usize = 4 * 1024 * 1024;

/// Limits that apply while the body is read.
#[derive(Debug, Clone)]
pub struct Limits {
    pub per_file: u64,
    pub request: Option<u64>,
    pub tmp_dir: PathBuf,
}

/// A `files[n]` part saved to a temp file; the file is removed on drop unless moved away first.
#[derive(Debug)]
pub struct TempFile {
    pub index: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub size: u64,
    pub path: PathBuf,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Debug, Default)]
pub struct Upload {
    pub payload: Map<String, Value>,
    pub files: Vec<TempFile>,
}

/// Reads the whole body. On a size error the rest is still drained, so the client gets the
/// 413 instead of a broken pipe halfway through its upload.
pub async fn read(headers: &HeaderMap, body: Body, limits: &Limits) -> Result<Upload, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/json") {
        let bytes = axum::body::to_bytes(body, MAX_JSON)
            .await
            .map_err(|_| ApiError::TOO_LARGE)?;
        let payload = parse_object(&bytes)?;
        return Ok(Upload {
            payload,
            files: Vec::new(),
        });
    }
    // discord-api.md §1.4: any other content type is rejected as an invalid form body.
    let Ok(boundary) = multer::parse_boundary(content_type) else {
        return Err(ApiError::invalid_field(
            "_",
            "CONTENT_TYPE_INVALID",
            "Expected a JSON or multipart body.",
        ));
    };
    let mut reader = Reader {
        limits,
        upload: Upload::default(),
        total: 0,
        too_large: false,
        extra_files: 0,
    };
    let mut parts = multer::Multipart::new(body.into_data_stream(), boundary);
    while let Some(field) = parts
        .next_field()
        .await
        .map_err(|_| ApiError::BAD_REQUEST)?
    {
        reader.field(field).await?;
    }
    if reader.too_large {
        return Err(ApiError::TOO_LARGE);
    }
    if reader.extra_files > 0 {
        return Err(ApiError::TOO_MANY_ATTACHMENTS);
    }
    Ok(reader.upload)
}

fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ApiError::INVALID_JSON),
    }
}

struct Reader<'a> {
    limits: &'a Limits,
    upload: Upload,
    total: u64,
    too_large: bool,
    extra_files: usize,
}

impl Reader<'_> {
    async fn field(&mut self, mut field: multer::Field<'static>) -> Result<(), ApiError> {
        let name = field.name().unwrap_or("").to_string();
        if let Some(index) = file_index(&name) {
            return self.file(field, index).await;
        }
        let mut text = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|_| ApiError::BAD_REQUEST)? {
            self.count(chunk.len());
            if text.len() + chunk.len() > MAX_JSON {
                return Err(ApiError::TOO_LARGE);
            }
            text.extend_from_slice(&chunk);
        }
        if name == "payload_json" {
            let payload = parse_object(&text)?;
            self.upload.payload.extend(payload);
        } else {
            // discord-api.md §1.4: fields may also come as plain form fields (`content`, `tts`, ...).
            self.upload.payload.insert(
                name,
                Value::String(String::from_utf8_lossy(&text).into_owned()),
            );
        }
        Ok(())
    }

    async fn file(
        &mut self,
        mut field: multer::Field<'static>,
        index: String,
    ) -> Result<(), ApiError> {
        let keep = !self.too_large && self.upload.files.len() < MAX_FILES;
        if self.upload.files.len() >= MAX_FILES {
            self.extra_files += 1;
        }
        let path = self
            .limits
            .tmp_dir
            .join(format!("{:016x}", rand::random::<u64>()));
        let mut temp = TempFile {
            index,
            filename: field.file_name().map(str::to_string),
            content_type: field.content_type().map(|m| m.to_string()),
            size: 0,
            path,
        };
        let mut out = if keep {
            Some(BlobWriter::create(&temp.path).await?)
        } else {
            None
        };
        while let Some(chunk) = field.chunk().await.map_err(|_| ApiError::BAD_REQUEST)? {
            self.count(chunk.len());
            temp.size += chunk.len() as u64;
            if temp.size > self.limits.per_file {
                self.too_large = true;
                out = None;
            }
            if let Some(w) = out.as_mut() {
                w.write(&chunk).await?;
            }
        }
        if let Some(w) = out {
            w.finish().await?;
            self.upload.files.push(temp);
        }
        Ok(())
    }

    fn count(&mut self, n: usize) {
        self.total += n as u64;
        if self.limits.request.is_some_and(|cap| self.total > cap) {
            self.too_large = true;
        }
    }
}

/// An attachment's temp file, written in 1 MiB pieces on the blocking pool, around the page
/// cache where the file system allows: a stored attachment is read back seldom, and copying
/// every byte into fresh page-cache pages was most of the emulator's CPU time in a large
/// upload, time taken from the client on the same machine.
struct BlobWriter {
    writer: Option<InOrderWriter>,
    pending: Vec<u8>,
    at: u64,
}

/// Bytes gathered before each write, and the direct writer's stage.
const PIECE: usize = 1 << 20;

fn io_error(e: impl Into<anyhow::Error>) -> ApiError {
    ApiError::from(e.into())
}

impl BlobWriter {
    async fn create(path: &Path) -> Result<BlobWriter, ApiError> {
        let path = path.to_path_buf();
        let writer = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::create_new(&path)?;
            Ok::<_, std::io::Error>(InOrderWriter::with_stage(Arc::new(file), &path, PIECE))
        })
        .await
        .map_err(io_error)?
        .map_err(io_error)?;
        Ok(BlobWriter {
            writer: Some(writer),
            pending: Vec::with_capacity(PIECE),
            at: 0,
        })
    }

    async fn write(&mut self, mut data: &[u8]) -> Result<(), ApiError> {
        while !data.is_empty() {
            let n = (PIECE - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.pending.len() == PIECE {
                self.write_pending(false).await?;
            }
        }
        Ok(())
    }

    /// Writes what is gathered (and, with `last`, everything staged).
    async fn write_pending(&mut self, last: bool) -> Result<(), ApiError> {
        let (mut w, pending, at) = (
            self.writer
                .take()
                .ok_or_else(|| io_error(anyhow::anyhow!("an earlier write failed")))?,
            std::mem::take(&mut self.pending),
            self.at,
        );
        let (w, mut pending) = tokio::task::spawn_blocking(move || {
            w.write_at(&pending, at)?;
            if last {
                w.flush()?;
            }
            Ok::<_, std::io::Error>((w, pending))
        })
        .await
        .map_err(io_error)?
        .map_err(io_error)?;
        self.at += pending.len() as u64;
        pending.clear();
        (self.writer, self.pending) = (Some(w), pending);
        Ok(())
    }

    async fn finish(mut self) -> Result<(), ApiError> {
        self.write_pending(true).await
    }
}

/// `files[3]` -> `"3"`; a bare `file` or `files` part gets index `"0"`-style numbering later.
fn file_index(name: &str) -> Option<String> {
    if let Some(rest) = name
        .strip_prefix("files[")
        .and_then(|r| r.strip_suffix(']'))
    {
        return Some(rest.to_string());
    }
    (name == "file" || name.starts_with("file[")).then(|| name.to_string())
}

/// Discord rewrites some filenames (rules undocumented, discord-api.md §1.5); we keep
/// `[A-Za-z0-9._-]` and replace everything else with `_`.
pub fn sanitize_filename(name: &str) -> String {
    let cleaned: String = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        "unknown".into()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames() {
        assert_eq!(sanitize_filename("k3f9x2ab7q.5.part"), "k3f9x2ab7q.5.part");
        assert_eq!(sanitize_filename("my file (1).txt"), "my_file__1_.txt");
        assert_eq!(sanitize_filename("../.."), "unknown");
        assert_eq!(file_index("files[42]").as_deref(), Some("42"));
        assert_eq!(file_index("payload_json"), None);
    }
}
