//! Live updates: every change the dashboard makes or sees (a file added or deleted, an
//! upload's progress, the catalogue changed by another command) goes to every open page as a
//! server-sent event.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::stream::{self, Stream};
use serde::Serialize;
use tokio::sync::broadcast;

use super::App;
use crate::catalog::Catalog;
use crate::sync::Folders;

/// How often the catalogue is looked at for changes made outside the dashboard.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// One event: its name (`added`, `deleted`, `progress`, `changed`) and JSON data.
#[derive(Clone, Debug)]
pub struct Event {
    pub name: &'static str,
    pub data: String,
}

/// Where events are sent from; each open page holds a receiver.
#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Event>,
}

/// What a `progress` event says of one upload.
#[derive(Debug, Serialize)]
pub struct Progress<'a> {
    /// The key the page gave the upload.
    pub key: &'a str,
    pub name: &'a str,
    /// `receiving` (the browser sends it), `storing` (to Discord), `done`, `failed`.
    pub phase: &'a str,
    pub done: u64,
    pub total: u64,
    pub id: Option<&'a str>,
    pub message: Option<&'a str>,
}

impl Hub {
    pub fn new() -> Self {
        Hub {
            tx: broadcast::channel(256).0,
        }
    }

    pub fn send(&self, name: &'static str, data: &impl Serialize) {
        if let Ok(data) = serde_json::to_string(data) {
            // No page open: nobody to tell.
            let _ = self.tx.send(Event { name, data });
        }
    }

    pub fn progress(&self, p: &Progress<'_>) {
        self.send("progress", p);
    }

    fn watched(&self) -> bool {
        self.tx.receiver_count() > 0
    }
}

/// `GET /api/events`: the event stream, until the page goes or the dashboard stops. A page
/// that fell behind is told the catalogue changed, so it reloads the list.
pub async fn stream(
    State(app): State<Arc<App>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = app.hub.tx.subscribe();
    let cancel = app.cancel.clone();
    let hello = stream::once(async { Ok(SseEvent::default().event("hello").data("{}")) });
    let events = stream::unfold((rx, cancel), |(mut rx, cancel)| async move {
        let e = tokio::select! {
            () = cancel.cancelled() => return None,
            e = rx.recv() => e,
        };
        let event = match e {
            Ok(e) => SseEvent::default().event(e.name).data(e.data),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                SseEvent::default().event("changed").data("{}")
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), (rx, cancel)))
    });
    use futures::StreamExt;
    Sse::new(hello.chain(events)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// What the catalogue holds, in short: each file's ID, status, visibility and last change, and
/// each synced folder's snapshots.
fn fingerprint(catalog: &Catalog, folders: &Folders) -> Vec<String> {
    let mut out: Vec<String> = catalog
        .all()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .map(|m| format!("{} {:?} {} {}", m.id, m.status, m.hidden, m.updated_at))
        .collect();
    for f in folders.all().unwrap_or_default() {
        out.push(format!("{} {:?}", f.id, folders.seqs(&f.id)));
    }
    out
}

/// Tells open pages when the catalogue changes by another command (the prompt, another
/// process), looking only while a page is open (a page that connects loads the list anyway).
pub fn watch_catalog(app: Arc<App>) {
    let catalog = app.session.catalog.clone();
    let folders = Folders::new(&app.session.config.data_dir);
    let cancel = app.cancel.clone();
    tokio::spawn(async move {
        // From the start, so a change before the first page connects is seen too.
        let (c, f) = (catalog.clone(), folders.clone());
        let mut last = tokio::task::spawn_blocking(move || fingerprint(&c, &f))
            .await
            .ok();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(WATCH_EVERY) => {}
            }
            if !app.hub.watched() {
                continue;
            }
            let (c, f) = (catalog.clone(), folders.clone());
            let Ok(now) = tokio::task::spawn_blocking(move || fingerprint(&c, &f)).await else {
                continue;
            };
            if last.as_ref().is_some_and(|l| *l != now) {
                app.changed();
                app.hub.send("changed", &serde_json::json!({}));
            }
            last = Some(now);
        }
    });
}
