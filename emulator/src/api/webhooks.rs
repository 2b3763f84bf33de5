//! Webhooks: create and list them (bot routes), and the token routes: get, delete, execute, and
//! a webhook's own messages (discord-api.md §1.4, §3.2, §5.6).

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::error::ApiError;
use super::messages::{self, Draft};
use super::upload::{self, Upload};
use super::{channel_guard, Need};
use crate::json;
use crate::model::{StoredMessage, Webhook, WebhookAuthor};
use crate::query::Query;
use crate::ratelimit::{self, BucketKind};
use crate::shared::Shared;
use crate::stats::Lane;

/// Content limit in characters, as on create (discord-api.md §1.3).
const MAX_CONTENT: usize = 2000;
/// Webhook and username lengths (D-WH: 1-80 characters).
const NAME_CHARS: std::ops::RangeInclusive<usize> = 1..=80;

/// A webhook token from a path. Its `Debug` hides it, as any credential.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct HookToken(pub String);

impl std::fmt::Debug for HookToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HookToken(..)")
    }
}

/// What a request to `/webhooks/{id}/{token}[/messages/{mid}]` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HookAction {
    Get,
    Delete,
    Execute,
    GetMessage(u64),
    EditMessage(u64),
    DeleteMessage(u64),
}

impl HookAction {
    pub fn bucket(self) -> BucketKind {
        match self {
            HookAction::Get => BucketKind::GetWebhook,
            HookAction::Delete => BucketKind::DeleteWebhook,
            HookAction::Execute => BucketKind::ExecuteWebhook,
            HookAction::GetMessage(_) => BucketKind::GetWebhookMessage,
            HookAction::EditMessage(_) => BucketKind::EditWebhookMessage,
            HookAction::DeleteMessage(_) => BucketKind::DeleteWebhookMessage,
        }
    }
}

fn ok_json(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

/// `POST /channels/{id}/webhooks` with `{"name": ..}`: needs Manage Webhooks (the channel's
/// access setting stands for it, like Manage Messages).
pub async fn create(shared: &Shared, channel_id: u64, body: Body) -> Result<Response, ApiError> {
    channel_guard(shared, channel_id, Need::Manage)?;
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|_| ApiError::TOO_LARGE)?;
    let parsed: Value = serde_json::from_slice(&bytes).map_err(|_| ApiError::INVALID_JSON)?;
    let name = match parsed.get("name").and_then(Value::as_str) {
        Some(n) => checked_name("name", n)?,
        None => {
            let msg = "This field is required";
            return Err(ApiError::invalid_field("name", "BASE_TYPE_REQUIRED", msg));
        }
    };
    let made = shared.with_store(|s| s.add_webhook(channel_id, &name))?;
    let hook = made.ok_or(ApiError::MAX_WEBHOOKS)?;
    Ok(ok_json(json::webhook(
        &hook,
        shared.bot_user_id,
        true,
        &shared.signer.base_url,
    )))
}

/// `GET /channels/{id}/webhooks`, oldest first.
pub fn list(shared: &Shared, channel_id: u64) -> Result<Response, ApiError> {
    channel_guard(shared, channel_id, Need::Manage)?;
    let hooks = shared.with_store(|s| {
        s.webhooks_of(channel_id)
            .into_iter()
            .map(|w| json::webhook(w, shared.bot_user_id, true, &shared.signer.base_url))
            .collect::<Vec<_>>()
    });
    Ok(ok_json(Value::Array(hooks)))
}

fn checked_name(field: &str, name: &str) -> Result<String, ApiError> {
    if NAME_CHARS.contains(&name.chars().count()) {
        return Ok(name.to_string());
    }
    let msg = "Must be between 1 and 80 in length.";
    Err(ApiError::invalid_field(field, "BASE_TYPE_BAD_LENGTH", msg))
}

/// A token route: no bot auth (any `Authorization` header is ignored, discord-api.md §5.6), the
/// webhook's own rate limits, then the action.
pub async fn token_route(
    shared: &Shared,
    webhook_id: u64,
    token: &HookToken,
    action: HookAction,
    headers: &HeaderMap,
    q: &Query,
    body: Body,
) -> Response {
    let hook = match find(shared, webhook_id, token) {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    let shared_cap = (action == HookAction::Execute).then_some(hook.channel_id);
    let (state, limited) = shared
        .limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .check_webhook(action.bucket(), webhook_id, shared_cap);
    let mut resp = match limited {
        Some(l) => {
            super::drain(body).await;
            ratelimit::too_many_requests(l)
        }
        None => run(shared, &hook, action, headers, q, body)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    };
    ratelimit::add_headers(resp.headers_mut(), &state);
    resp
}

/// The webhook, if `token` is its token: 404 10015 for an unknown id, 401 50027 for a wrong token.
fn find(shared: &Shared, webhook_id: u64, token: &HookToken) -> Result<Webhook, ApiError> {
    let hook = shared
        .with_store(|s| s.webhook(webhook_id).cloned())
        .ok_or(ApiError::UNKNOWN_WEBHOOK)?;
    match hook.token == token.0 {
        true => Ok(hook),
        false => Err(ApiError::INVALID_WEBHOOK_TOKEN),
    }
}

async fn run(
    shared: &Shared,
    hook: &Webhook,
    action: HookAction,
    headers: &HeaderMap,
    q: &Query,
    body: Body,
) -> Result<Response, ApiError> {
    match action {
        HookAction::Get => Ok(ok_json(json::webhook(
            hook,
            shared.bot_user_id,
            false,
            &shared.signer.base_url,
        ))),
        HookAction::Delete => {
            shared.with_store(|s| s.delete_webhook(hook.id))?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        HookAction::Execute => execute(shared, hook, headers, q, body).await,
        HookAction::GetMessage(m) => {
            let found = shared.with_store(|s| own_message(s, hook, m).cloned());
            let m = found.ok_or(ApiError::UNKNOWN_MESSAGE)?;
            Ok(messages::render(shared, &m))
        }
        HookAction::EditMessage(m) => edit(shared, hook, m, headers, body).await,
        HookAction::DeleteMessage(m) => {
            shared.with_store(|s| -> Result<(), ApiError> {
                own_message(s, hook, m).ok_or(ApiError::UNKNOWN_MESSAGE)?;
                s.delete(hook.channel_id, m)?;
                Ok(())
            })?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}

/// A message of the webhook's channel that this webhook posted.
pub(super) fn own_message<'s>(
    s: &'s crate::store::Store,
    hook: &Webhook,
    message_id: u64,
) -> Option<&'s StoredMessage> {
    s.message(hook.channel_id, message_id)
        .filter(|m| m.webhook.as_ref().is_some_and(|w| w.id == hook.id))
}

/// `POST /webhooks/{id}/{token}[?wait=true]`: the body is read exactly as Create Message's; a
/// `nonce` is ignored, as Execute Webhook has none (discord-api.md §3.2).
async fn execute(
    shared: &Shared,
    hook: &Webhook,
    headers: &HeaderMap,
    q: &Query,
    body: Body,
) -> Result<Response, ApiError> {
    let wait = flag(q, "wait")?;
    if q.get("thread_id").is_some_and(|t| !t.is_empty()) {
        // Text channels here have no threads, so no thread id names one.
        return Err(ApiError::UNKNOWN_CHANNEL);
    }
    let guild = shared
        .with_store(|s| s.guild(hook.guild_id).cloned())
        .ok_or(ApiError::UNKNOWN_WEBHOOK)?;
    let limits = messages::upload_limits(shared, &guild);
    let Upload { mut payload, files } = upload::read(headers, body, &limits).await?;
    payload.remove("nonce");
    payload.remove("enforce_nonce");
    let username = match payload.get("username").and_then(Value::as_str) {
        Some(name) => checked_name("username", name)?,
        None => hook.name.clone(),
    };
    let draft = Draft::parse(&payload, &files)?;
    let message = shared.with_store(|s| -> Result<StoredMessage, ApiError> {
        let mut message = draft.into_message(s, hook.channel_id, &files);
        message.author_id = Some(hook.id);
        message.webhook = Some(WebhookAuthor {
            id: hook.id,
            username,
        });
        let blobs = messages::blob_moves(&message, &files);
        s.commit(message.clone(), blobs)?;
        Ok(message)
    })?;
    shared.stats.message_created(Lane::Webhook {
        webhook_id: hook.id,
        channel_id: hook.channel_id,
    });
    match wait {
        true => Ok(messages::render(shared, &message)),
        false => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// `PATCH /webhooks/{id}/{token}/messages/{mid}`: a new `content` (JSON or `payload_json`).
/// Only the content can be edited here; files or an `attachments` list are refused.
async fn edit(
    shared: &Shared,
    hook: &Webhook,
    message_id: u64,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let guild = shared
        .with_store(|s| s.guild(hook.guild_id).cloned())
        .ok_or(ApiError::UNKNOWN_WEBHOOK)?;
    let limits = messages::upload_limits(shared, &guild);
    let Upload { payload, files } = upload::read(headers, body, &limits).await?;
    if !files.is_empty() || payload.contains_key("attachments") {
        let msg = "The emulator edits a message's content only.";
        return Err(ApiError::invalid_field("attachments", "UNSUPPORTED", msg));
    }
    let content = match payload.get("content") {
        None => None,
        Some(Value::Null) => Some(String::new()),
        Some(Value::String(c)) => Some(c.clone()),
        Some(_) => {
            let msg = "Could not interpret input as a string.";
            return Err(ApiError::invalid_field(
                "content",
                "STRING_TYPE_CONVERT",
                msg,
            ));
        }
    };
    if content
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_CONTENT)
    {
        let msg = "Must be 2000 or fewer in length.";
        return Err(ApiError::invalid_field(
            "content",
            "BASE_TYPE_MAX_LENGTH",
            msg,
        ));
    }
    let edited = shared.with_store(|s| -> Result<StoredMessage, ApiError> {
        let m = own_message(s, hook, message_id).ok_or(ApiError::UNKNOWN_MESSAGE)?;
        let content = content.unwrap_or_else(|| m.content.clone());
        if content.trim().is_empty() && m.attachments.is_empty() {
            return Err(ApiError::EMPTY_MESSAGE);
        }
        s.edit(hook.channel_id, message_id, content)?;
        s.message(hook.channel_id, message_id)
            .cloned()
            .ok_or(ApiError::UNKNOWN_MESSAGE)
    })?;
    Ok(messages::render(shared, &edited))
}

/// A boolean query parameter: `true`/`false` (any case), `1`/`0`, absent or empty = false.
fn flag(q: &Query, key: &str) -> Result<bool, ApiError> {
    match q.get(key).map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(_) => {
            let msg = "Value must be one of {True, False}.";
            Err(ApiError::invalid_field(key, "BOOLEAN_TYPE_COERCE", msg))
        }
    }
}
