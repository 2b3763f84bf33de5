//! Non-message routes: current user, channel, guild, and the undocumented attachment URL refresh.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::error::ApiError;
use super::{channel_guard, Need};
use crate::json;
use crate::shared::Shared;

/// Community code caps refresh batches at 50 (discord-api.md §2.2; enforcement UNCERTAIN).
const MAX_REFRESH: usize = 50;

fn ok_json(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

pub fn current_user(shared: &Shared) -> Response {
    ok_json(json::user(shared.bot_user_id))
}

pub fn channel(shared: &Shared, channel_id: u64) -> Result<Response, ApiError> {
    channel_guard(shared, channel_id, Need::Read)?;
    let v = shared.with_store(|s| {
        let last = s.all_messages(channel_id).last().map(|m| m.id);
        s.channel(channel_id).map(|c| json::channel(c, last))
    });
    v.map(ok_json).ok_or(ApiError::UNKNOWN_CHANNEL)
}

pub fn guild(shared: &Shared, guild_id: u64) -> Result<Response, ApiError> {
    let v = shared.with_store(|s| {
        s.guild(guild_id)
            .map(|g| json::guild(g, shared.bot_user_id))
    });
    v.map(ok_json).ok_or(ApiError::UNKNOWN_GUILD)
}

/// `POST /attachments/refresh-urls` (undocumented, discord-api.md §2.2): re-signs URLs of
/// attachments that still exist; others are left out of the answer.
pub async fn refresh_urls(shared: &Shared, body: Body) -> Result<Response, ApiError> {
    let bytes = axum::body::to_bytes(body, 256 * 1024)
        .await
        .map_err(|_| ApiError::TOO_LARGE)?;
    let parsed: Value = serde_json::from_slice(&bytes).map_err(|_| ApiError::INVALID_JSON)?;
    let Some(urls) = parsed.get("attachment_urls").and_then(Value::as_array) else {
        return Err(ApiError::invalid_field(
            "attachment_urls",
            "BASE_TYPE_REQUIRED",
            "This field is required",
        ));
    };
    if urls.len() > MAX_REFRESH {
        return Err(ApiError::invalid_field(
            "attachment_urls",
            "BASE_TYPE_MAX_LENGTH",
            "Must be 50 or fewer in length.",
        ));
    }
    let refreshed: Vec<Value> = urls
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|url| {
            let (cid, aid, name) = parse_attachment_url(url)?;
            let exists = shared.with_store(|s| {
                s.attachment(aid)
                    .is_some_and(|(m, a)| m.channel_id == cid && a.filename == name)
            });
            exists.then(
                || json!({ "original": url, "refreshed": shared.signer.url(cid, aid, &name) }),
            )
        })
        .collect();
    Ok(ok_json(json!({ "refreshed_urls": refreshed })))
}

/// `.../attachments/{cid}/{aid}/{filename}?...` on any host -> its three parts.
fn parse_attachment_url(url: &str) -> Option<(u64, u64, String)> {
    let path = url.split(['?', '#']).next()?;
    let rest = &path[path.find("/attachments/")? + "/attachments/".len()..];
    let mut parts = rest.split('/');
    let cid = parts.next()?.parse().ok()?;
    let aid = parts.next()?.parse().ok()?;
    let name = parts.next()?.to_string();
    parts.next().is_none().then_some((cid, aid, name))
}
