//! The page, its assets (embedded: the dashboard works offline), and the JSON API: the files,
//! the figures, a download streamed back, a delete.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;

use super::{ApiError, App};
use crate::catalog::{CatalogError, Status, FORMAT_V2};

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLES: &str = include_str!("assets/app.css");
const ICON: &str = include_str!("assets/icon.svg");

/// How long the figures are kept when nothing changed (they list the packs on Discord).
const STATS_FOR: Duration = Duration::from_secs(60);

/// `GET /`: the page, with the CSRF token its script sends back.
pub async fn index(State(app): State<Arc<App>>) -> Html<String> {
    Html(INDEX.replace("{{csrf}}", app.guard.csrf()))
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn styles() -> Response {
    asset("text/css; charset=utf-8", STYLES)
}

pub async fn icon() -> Response {
    asset("image/svg+xml", ICON)
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "there is nothing at this address")
}

/// The page shown for a refusal outside the API.
pub fn refusal_page(why: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><meta charset=utf-8><title>dstore</title><link rel=stylesheet href=/app.css>\
         <main class=refusal><h1>dstore</h1><p>{}.</p></main>",
        escape(why)
    ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn catalog_error(e: anyhow::Error) -> ApiError {
    match e.downcast_ref::<CatalogError>() {
        Some(CatalogError::UnknownId(_)) => ApiError::new(StatusCode::NOT_FOUND, format!("{e:#}")),
        _ => ApiError::internal(format!("{e:#}")),
    }
}

/// `GET /api/files`: the files `list` shows, and the synced folders with their snapshots.
pub async fn files(State(app): State<Arc<App>>) -> Result<Json<serde_json::Value>, ApiError> {
    let session = app.session.clone();
    let (files, folders) = tokio::task::spawn_blocking(move || {
        let files = crate::commands::web::files(&session)?;
        let folders = crate::commands::web::folders(&session)?;
        anyhow::Ok((files, folders))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(catalog_error)?;
    Ok(Json(
        serde_json::json!({ "files": files, "folders": folders }),
    ))
}

/// `GET /api/stats`: the figures of `stats`, kept a minute unless something changed.
pub async fn stats(State(app): State<Arc<App>>) -> Result<Json<serde_json::Value>, ApiError> {
    let mut cached = app.stats.lock().await;
    if let Some((at, v)) = cached.as_ref() {
        if at.elapsed() < STATS_FOR {
            return Ok(Json(v.clone()));
        }
    }
    let row = crate::commands::web::stats(&app.session)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("{e:#}")))?;
    let v = serde_json::to_value(row).map_err(ApiError::internal)?;
    *cached = Some((Instant::now(), v.clone()));
    Ok(Json(v))
}

/// `Content-Disposition` for `name`: a plain ASCII fallback and the UTF-8 name (RFC 6266).
fn disposition(name: &str) -> String {
    let safe = crate::commands::download::safe_name(name);
    let ascii: String = safe
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in safe.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// `GET /api/files/:id/download`: the file streamed from Discord as it is verified.
pub async fn download(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let s = &app.session;
    let file = s
        .catalog
        .load_file(&id)
        .map_err(|e| catalog_error(e.into()))?;
    if file.status != Status::Complete {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{id} is an incomplete upload; `resume {id}` finishes it"),
        ));
    }
    let store = s
        .store()
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("{e:#}")))?;
    let concurrency = s.config.concurrency;
    let body = if file.format == FORMAT_V2 {
        let keys = crate::commands::web::keys_of(s, &id)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("{e:#}")))?;
        super::stream::v2(store, keys, &file, &s.config.channels, concurrency)
            .map_err(|e| ApiError::new(StatusCode::CONFLICT, e.to_string()))?
    } else {
        let parts = s
            .catalog
            .load_parts(&id)
            .map_err(|e| catalog_error(e.into()))?
            .parts;
        super::stream::v1(store, &file, parts, concurrency)
            .map_err(|e| ApiError::new(StatusCode::CONFLICT, e))?
    };
    let logged = {
        use futures::StreamExt;
        let id = id.clone();
        body.map(move |item| {
            item.map_err(|e| {
                tracing::warn!(id = %id, "a download from the dashboard failed: {e}");
                std::io::Error::other(e)
            })
        })
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, file.size.to_string()),
            (header::CONTENT_DISPOSITION, disposition(&file.name)),
        ],
        Body::from_stream(logged),
    )
        .into_response())
}

/// `POST /api/files/:id/delete`: deleted from Discord and the catalogue (the page asked first).
pub async fn delete(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let name = app
        .session
        .catalog
        .load_file(&id)
        .map_err(|e| catalog_error(e.into()))?
        .name;
    crate::commands::web::delete(&app.session, &id)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("{e:#}")))?;
    app.changed();
    app.hub
        .send("deleted", &serde_json::json!({ "id": id, "name": name }));
    Ok(Json(serde_json::json!({ "deleted": id })))
}

#[derive(serde::Deserialize)]
pub struct RestoreQuery {
    seq: u64,
}

/// `POST /api/folders/:id/restore?seq=N`: that snapshot of a synced folder into a new folder.
pub async fn restore(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<RestoreQuery>,
) -> Result<Json<crate::commands::web::RestoredRow>, ApiError> {
    let done =
        crate::commands::web::restore_version(&app.session, &id, q.seq, app.cancel.child_token())
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("{e:#}")))?;
    let Some(done) = done else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "there is no such synced folder or snapshot on this machine",
        ));
    };
    app.hub.send("restored", &done);
    Ok(Json(done))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_are_quoted_safely() {
        assert_eq!(
            disposition("a b.txt"),
            "attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt"
        );
        let d = disposition("é\"x\\.bin");
        assert!(d.starts_with("attachment; filename=\"__x_.bin\"; "), "{d}");
        assert!(d.ends_with("''%C3%A9%22x_.bin"), "{d}");
        assert!(!refusal_page("<script>").0.contains("<script>"));
    }
}
