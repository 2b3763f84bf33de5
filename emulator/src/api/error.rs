//! Discord's JSON error bodies `{"message", "code"[, "errors"]}` (discord-api.md §4 error table).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub message: &'static str,
    pub errors: Option<Value>,
}

const fn err(status: StatusCode, code: u32, message: &'static str) -> ApiError {
    ApiError {
        status,
        code,
        message,
        errors: None,
    }
}

impl ApiError {
    pub const UNAUTHORIZED: ApiError = err(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    pub const NOT_FOUND: ApiError = err(StatusCode::NOT_FOUND, 0, "404: Not Found");
    pub const METHOD_NOT_ALLOWED: ApiError =
        err(StatusCode::METHOD_NOT_ALLOWED, 0, "405: Method Not Allowed");
    pub const BAD_REQUEST: ApiError = err(StatusCode::BAD_REQUEST, 0, "400: Bad Request");
    pub const UNKNOWN_CHANNEL: ApiError = err(StatusCode::NOT_FOUND, 10003, "Unknown Channel");
    pub const UNKNOWN_GUILD: ApiError = err(StatusCode::NOT_FOUND, 10004, "Unknown Guild");
    pub const UNKNOWN_MESSAGE: ApiError = err(StatusCode::NOT_FOUND, 10008, "Unknown Message");
    pub const UNKNOWN_WEBHOOK: ApiError = err(StatusCode::NOT_FOUND, 10015, "Unknown Webhook");
    /// discord-api.md §4: the code exists; its status (401) is believed, not known.
    pub const INVALID_WEBHOOK_TOKEN: ApiError =
        err(StatusCode::UNAUTHORIZED, 50027, "Invalid Webhook Token");
    /// 15 per channel (discord-api.md §3.2); code from Discord's JSON error code table.
    pub const MAX_WEBHOOKS: ApiError = err(
        StatusCode::BAD_REQUEST,
        30007,
        "Maximum number of webhooks reached (15)",
    );
    pub const MISSING_ACCESS: ApiError = err(StatusCode::FORBIDDEN, 50001, "Missing Access");
    pub const MISSING_PERMISSIONS: ApiError =
        err(StatusCode::FORBIDDEN, 50013, "Missing Permissions");
    /// discord-api.md §1.2.
    pub const TOO_LARGE: ApiError = err(
        StatusCode::PAYLOAD_TOO_LARGE,
        40005,
        "Request entity too large",
    );
    /// discord-api.md §1.3; the HTTP status is a guess (400).
    pub const TOO_MANY_ATTACHMENTS: ApiError = err(
        StatusCode::BAD_REQUEST,
        30015,
        "Maximum number of attachments in a message reached (10)",
    );
    pub const EMPTY_MESSAGE: ApiError = err(
        StatusCode::BAD_REQUEST,
        50006,
        "Cannot send an empty message",
    );
    pub const INVALID_JSON: ApiError = err(
        StatusCode::BAD_REQUEST,
        50109,
        "The request body contains invalid JSON.",
    );
    pub const BULK_COUNT: ApiError = err(
        StatusCode::BAD_REQUEST,
        50016,
        "Provided too few or too many messages to delete. Must provide at least 2 and fewer than 100 messages to delete.",
    );
    pub const BULK_TOO_OLD: ApiError = err(
        StatusCode::BAD_REQUEST,
        50034,
        "You can only bulk delete messages that are under 14 days old.",
    );
    pub const INTERNAL: ApiError = err(
        StatusCode::INTERNAL_SERVER_ERROR,
        0,
        "500: Internal Server Error",
    );

    /// 50035 "Invalid Form Body" with one field error, nested the way Discord nests them.
    pub fn invalid_field(field: &str, code: &str, message: &str) -> ApiError {
        let errors = json!({ field: { "_errors": [{ "code": code, "message": message }] } });
        ApiError {
            errors: Some(errors),
            ..err(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body")
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "message": self.message, "code": self.code });
        if let Some(errors) = self.errors {
            body["errors"] = errors;
        }
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        tracing::error!(error = %e, "emulator storage failure");
        ApiError::INTERNAL
    }
}

/// A 5xx as an edge proxy sends it: HTML, not JSON (serenity then reports code -1, §5.3).
pub fn html_status(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let reason = status.canonical_reason().unwrap_or("Error");
    let code = status.as_u16();
    let html = format!(
        "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
    );
    (status, [(header::CONTENT_TYPE, "text/html")], html).into_response()
}
