//! The web dashboard (`web`): an axum server on 127.0.0.1 only, its page, styles and script
//! embedded in the binary (no build step, no CDN). Every request passes [`guard`] first. It
//! is a client of the commands like the prompt is: the files `list` shows, `stats`, uploads
//! through the normal pipeline, downloads through the verified path ([`stream`]), deletes.

mod api;
mod events;
mod guard;
mod stream;
mod upload;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::commands::Session;
pub use guard::{CSP, CSRF_HEADER};

/// What the handlers share.
pub(crate) struct App {
    session: Arc<Session>,
    guard: guard::Guard,
    hub: events::Hub,
    /// Where uploads are received: `<data dir>/web/uploads`.
    uploads: PathBuf,
    /// Fires when the dashboard stops.
    cancel: CancellationToken,
    /// The last `stats`, until something changes (they list the packs on Discord).
    stats: tokio::sync::Mutex<Option<(std::time::Instant, serde_json::Value)>>,
}

impl App {
    /// Something changed: the figures are computed again when next asked.
    fn changed(&self) {
        if let Ok(mut s) = self.stats.try_lock() {
            *s = None;
        }
    }
}

/// A refusal or failure as the API answers it: a status and `{"error": sentence}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

/// A running dashboard; dropping it stops it too.
pub struct Running {
    addr: SocketAddr,
    url: String,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// The address to open, with the access token.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The lines that tell a person what to open.
    pub fn banner(&self, how_to_stop: &str) -> String {
        format!(
            "Dashboard on http://{}/ (this machine only). Open this address, which holds its access token:\n  {}\n{how_to_stop}",
            self.addr, self.url
        )
    }

    /// Stops serving: open pages are let go, transfers under way get a few seconds.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Serves the dashboard for `session` on 127.0.0.1:`port` (0: a free port).
pub async fn start(session: Arc<Session>, port: u16) -> Result<Running> {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
                "port {port} on 127.0.0.1 is in use; `web --port N` serves on another"
            ),
            _ => anyhow::anyhow!("cannot listen on 127.0.0.1:{port}: {e}"),
        })?;
    let addr = listener
        .local_addr()
        .context("cannot learn the dashboard's port")?;
    let cancel = CancellationToken::new();
    let app = Arc::new(App {
        uploads: session.config.data_dir.join("web").join("uploads"),
        session,
        guard: guard::Guard::new(addr.port()),
        hub: events::Hub::new(),
        cancel: cancel.clone(),
        stats: tokio::sync::Mutex::new(None),
    });
    let (catalog, uploads) = (app.session.catalog.clone(), app.uploads.clone());
    let _ = tokio::task::spawn_blocking(move || upload::sweep(&catalog, &uploads)).await;
    events::watch_catalog(app.clone());
    let url = app.guard.url();
    let router = routes(app);
    let stop = cancel.clone();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::warn!("the dashboard stopped: {e}");
        }
    });
    tracing::info!(%addr, "dashboard started");
    Ok(Running {
        addr,
        url,
        cancel,
        task: Some(task),
    })
}

fn routes(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(api::index))
        .route("/app.js", get(api::script))
        .route("/app.css", get(api::styles))
        .route("/icon.svg", get(api::icon))
        .route("/api/files", get(api::files))
        .route("/api/stats", get(api::stats))
        .route("/api/events", get(events::stream))
        .route(
            "/api/upload",
            post(upload::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/files/:id/download", get(api::download))
        .route("/api/files/:id/delete", post(api::delete))
        .route("/api/folders/:id/restore", post(api::restore))
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

/// Every request: the checks of [`guard::Guard::check`], then the hardening headers.
async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let verdict = app.guard.check(
        req.method(),
        req.uri().path(),
        req.uri().query(),
        req.headers(),
    );
    let mut resp = match verdict {
        guard::Verdict::Pass => next.run(req).await,
        guard::Verdict::Exchange => {
            let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
            if let Ok(v) = HeaderValue::from_str(&app.guard.set_cookie()) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        guard::Verdict::Refuse(status, why) => {
            // The path only: a query may hold a token.
            tracing::debug!(path = req.uri().path(), %status, "refused: {why}");
            if req.uri().path().starts_with("/api/") {
                ApiError::new(status, why).into_response()
            } else {
                (status, api::refusal_page(why)).into_response()
            }
        }
    };
    guard::harden(resp.headers_mut());
    resp
}
