//! Message routes: create (with nonce dedupe), get, list, delete and bulk delete (discord-api.md §1, §4).

use std::collections::HashSet;
use std::path::PathBuf;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::error::ApiError;
use super::upload::{self, Limits, TempFile, Upload};
use super::{channel_guard, Need};
use crate::json;
use crate::model::StoredMessage;
use crate::model::{Guild, StoredAttachment};
use crate::query::Query;
use crate::shared::Shared;
use crate::snowflake::now_ms;
use crate::stats::Lane;
use crate::store::{Page, Store};

/// Content limit in characters (discord-api.md §1.3).
const MAX_CONTENT: usize = 2000;
/// Nonce limit (Discord's docs: "up to 25 characters").
const MAX_NONCE: usize = 25;
/// Bulk delete refuses messages older than two weeks (discord-api.md §4).
const BULK_MAX_AGE_MS: u64 = 14 * 24 * 60 * 60 * 1000;

fn ok_json(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

pub(super) fn render(shared: &Shared, m: &StoredMessage) -> Response {
    ok_json(json::message(m, shared.bot_user_id, &shared.signer))
}

/// `POST /channels/{id}/messages`.
pub async fn create(
    shared: &Shared,
    channel_id: u64,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let guild = channel_guard(shared, channel_id, Need::Send)?;
    let limits = upload_limits(shared, &guild);
    let Upload { payload, files } = upload::read(headers, body, &limits).await?;
    let draft = Draft::parse(&payload, &files)?;
    let since = now_ms().saturating_sub(shared.config.nonce_window.as_millis() as u64);
    shared.with_store(|s| {
        if let Some(nonce) = draft.nonce.as_ref().filter(|_| draft.enforce_nonce) {
            if let Some(existing) = s.find_nonce(channel_id, nonce, since) {
                return Ok(render(shared, existing));
            }
        }
        let message = draft.into_message(s, channel_id, &files);
        let blobs = blob_moves(&message, &files);
        let resp = render(shared, &message);
        s.commit(message, blobs)?;
        shared.stats.message_created(Lane::Bot(channel_id));
        Ok(resp)
    })
}

/// The limits a create body in a channel of `guild` is read under (Execute Webhook's too).
pub(super) fn upload_limits(shared: &Shared, guild: &Guild) -> Limits {
    Limits {
        per_file: guild.file_limit(),
        request: shared.config.max_request_bytes,
        tmp_dir: shared.with_store(|s| s.tmp_dir()),
    }
}

/// Which temp file becomes which attachment's blob.
pub(super) fn blob_moves(message: &StoredMessage, files: &[TempFile]) -> Vec<(u64, PathBuf)> {
    message
        .attachments
        .iter()
        .zip(files)
        .map(|(a, f)| (a.id, f.path.clone()))
        .collect()
}

fn content_type(f: &TempFile) -> String {
    f.content_type
        .clone()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "application/octet-stream".into())
}

/// The parts of a create payload the emulator acts on.
pub(super) struct Draft {
    content: String,
    nonce: Option<Value>,
    enforce_nonce: bool,
    /// `attachments[].id` (as a string) -> requested filename.
    names: Vec<(String, String)>,
}

impl Draft {
    pub(super) fn parse(p: &Map<String, Value>, files: &[TempFile]) -> Result<Draft, ApiError> {
        let content = p
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if content.chars().count() > MAX_CONTENT {
            let msg = "Must be 2000 or fewer in length.";
            return Err(ApiError::invalid_field(
                "content",
                "BASE_TYPE_MAX_LENGTH",
                msg,
            ));
        }
        let nonce = parse_nonce(p.get("nonce"))?;
        let enforce = p.get("enforce_nonce");
        let enforce_nonce = matches!(enforce, Some(Value::Bool(true)))
            || enforce.and_then(Value::as_str) == Some("true");
        let names = p
            .get("attachments")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| {
                Some((
                    id_string(a.get("id")?)?,
                    a.get("filename")?.as_str()?.to_string(),
                ))
            })
            .collect();
        if content.trim().is_empty() && files.is_empty() && !has_extras(p) {
            return Err(ApiError::EMPTY_MESSAGE);
        }
        Ok(Draft {
            content,
            nonce,
            enforce_nonce,
            names,
        })
    }

    /// Allocates ids (message first, then attachments in part order) and builds the record.
    pub(super) fn into_message(
        self,
        s: &mut Store,
        channel_id: u64,
        files: &[TempFile],
    ) -> StoredMessage {
        let id = s.next_id();
        let attachments = files
            .iter()
            .map(|f| StoredAttachment {
                id: s.next_id(),
                filename: self.filename_for(f),
                size: f.size,
                content_type: content_type(f),
            })
            .collect();
        let Draft { content, nonce, .. } = self;
        StoredMessage {
            id,
            channel_id,
            content,
            nonce,
            timestamp_ms: now_ms(),
            attachments,
            author_id: None,
            webhook: None,
            edited_ms: None,
        }
    }

    fn filename_for(&self, f: &TempFile) -> String {
        let requested = self
            .names
            .iter()
            .find(|(id, _)| *id == f.index)
            .map(|(_, n)| n.as_str());
        upload::sanitize_filename(requested.or(f.filename.as_deref()).unwrap_or("unknown"))
    }
}

/// A nonce is a string of at most 25 characters or an integer.
fn parse_nonce(v: Option<&Value>) -> Result<Option<Value>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() > MAX_NONCE => {
            let msg = "Must be 25 or fewer in length.";
            Err(ApiError::invalid_field(
                "nonce",
                "BASE_TYPE_MAX_LENGTH",
                msg,
            ))
        }
        Some(v @ (Value::String(_) | Value::Number(_))) => Ok(Some(v.clone())),
        Some(_) => {
            let msg = "Nonce must be a string or integer.";
            Err(ApiError::invalid_field("nonce", "NONCE_TYPE_INVALID", msg))
        }
    }
}

/// Things other than content and files that make a message non-empty (discord-api.md §1.4).
fn has_extras(p: &Map<String, Value>) -> bool {
    let non_empty = |k: &str| {
        p.get(k)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    };
    ["embeds", "sticker_ids", "components"]
        .into_iter()
        .any(non_empty)
        || p.get("poll").is_some_and(|v| !v.is_null())
}

/// A snowflake or placeholder given as a JSON string or number.
fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `GET /channels/{id}/messages/{mid}`: URLs are signed afresh on every read (discord-api.md §2.2).
pub fn get(shared: &Shared, channel_id: u64, message_id: u64) -> Result<Response, ApiError> {
    channel_guard(shared, channel_id, Need::Read)?;
    shared
        .with_store(|s| s.message(channel_id, message_id).map(|m| render(shared, m)))
        .ok_or(ApiError::UNKNOWN_MESSAGE)
}

/// `GET /channels/{id}/messages?before|after|around&limit`, newest first.
pub fn list(shared: &Shared, channel_id: u64, q: &Query) -> Result<Response, ApiError> {
    channel_guard(shared, channel_id, Need::Read)?;
    let limit = match q.get("limit").filter(|l| !l.is_empty()) {
        None => 50,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                ApiError::invalid_field(
                    "limit",
                    "NUMBER_TYPE_MAX",
                    "Int value should be between 1 and 100.",
                )
            })?,
    };
    let page = page(q)?;
    let list = shared.with_store(|s| {
        s.list(channel_id, page, limit)
            .into_iter()
            .map(|m| json::message(m, shared.bot_user_id, &shared.signer))
            .collect::<Vec<_>>()
    });
    Ok(ok_json(Value::Array(list)))
}

/// Which of `around`, `before`, `after` applies; when several are given we take them in that order.
fn page(q: &Query) -> Result<Page, ApiError> {
    for (key, make) in [
        ("around", Page::Around as fn(u64) -> Page),
        ("before", Page::Before),
        ("after", Page::After),
    ] {
        if let Some(v) = q.get(key).filter(|v| !v.is_empty()) {
            let id = v.parse().map_err(|_| {
                ApiError::invalid_field(key, "NUMBER_TYPE_COERCE", "Value is not snowflake.")
            })?;
            return Ok(make(id));
        }
    }
    Ok(Page::Latest)
}

/// `DELETE /channels/{id}/messages/{mid}`: 204. Own messages need no extra permission.
pub fn delete(shared: &Shared, channel_id: u64, message_id: u64) -> Result<Response, ApiError> {
    channel_guard(shared, channel_id, Need::Read)?;
    match shared.with_store(|s| s.delete(channel_id, message_id))? {
        true => Ok(StatusCode::NO_CONTENT.into_response()),
        false => Err(ApiError::UNKNOWN_MESSAGE),
    }
}

/// `POST /channels/{id}/messages/bulk-delete` with `{"messages": [ids]}`: 204.
pub async fn bulk_delete(
    shared: &Shared,
    channel_id: u64,
    body: Body,
) -> Result<Response, ApiError> {
    channel_guard(shared, channel_id, Need::Manage)?;
    let ids = bulk_ids(body).await?;
    // Missing ids count toward the 2-100 bounds (discord-api.md §4).
    if !(2..=100).contains(&ids.len()) {
        return Err(ApiError::BULK_COUNT);
    }
    if ids.iter().collect::<HashSet<_>>().len() != ids.len() {
        return Err(ApiError::BULK_TOO_OLD);
    }
    let oldest_allowed = now_ms().saturating_sub(BULK_MAX_AGE_MS);
    shared.with_store(|s| -> Result<(), ApiError> {
        if ids
            .iter()
            .filter_map(|id| s.message(channel_id, *id))
            .any(|m| m.timestamp_ms < oldest_allowed)
        {
            return Err(ApiError::BULK_TOO_OLD);
        }
        for id in &ids {
            s.delete(channel_id, *id)?;
        }
        Ok(())
    })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The `messages` array of a bulk-delete body, as snowflakes.
async fn bulk_ids(body: Body) -> Result<Vec<u64>, ApiError> {
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|_| ApiError::TOO_LARGE)?;
    let parsed: Value = serde_json::from_slice(&bytes).map_err(|_| ApiError::INVALID_JSON)?;
    let Some(raw) = parsed.get("messages").and_then(Value::as_array) else {
        let msg = "This field is required";
        return Err(ApiError::invalid_field(
            "messages",
            "BASE_TYPE_REQUIRED",
            msg,
        ));
    };
    let ids: Vec<u64> = raw
        .iter()
        .filter_map(|v| id_string(v)?.parse().ok())
        .collect();
    if ids.len() != raw.len() {
        let msg = "Value is not snowflake.";
        return Err(ApiError::invalid_field(
            "messages",
            "NUMBER_TYPE_COERCE",
            msg,
        ));
    }
    Ok(ids)
}
