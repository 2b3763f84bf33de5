//! Request entry point: routing, faults, auth, rate limits, then the route handlers.

mod error;
mod messages;
mod resources;
mod upload;
mod webhooks;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request};
use axum::response::{IntoResponse, Response};

pub use error::ApiError;

use crate::cdn::{self, CdnRequest, Tamper};
use crate::faults::{FaultAction, FaultRoute};
use crate::link;
use crate::model::{Access, Guild};
use crate::query::Query;
use crate::ratelimit::{self, BucketKind, Limited, Scope};
use crate::shared::Shared;
use crate::stats::Lane;
use webhooks::{HookAction, HookToken};

/// What the connection should do with a request's outcome.
pub enum Outcome {
    Reply(Response),
    /// Close the connection without a (complete) response.
    Drop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    CurrentUser,
    GetChannel(u64),
    GetGuild(u64),
    CreateMessage(u64),
    ListMessages(u64),
    GetMessage(u64, u64),
    DeleteMessage(u64, u64),
    BulkDelete(u64),
    RefreshUrls,
    CreateWebhook(u64),
    ListWebhooks(u64),
    /// The token routes `/webhooks/{id}/{token}[/messages/{mid}]`.
    Webhook {
        id: u64,
        token: HookToken,
        action: HookAction,
    },
    Cdn {
        channel_id: u64,
        attachment_id: u64,
        filename: String,
    },
    MethodNotAllowed,
    NotFound,
}

/// Maps method + path to a route. Both `/api/v10` and `/api/v9` are served (discord-api.md §4).
fn classify(method: &Method, path: &str) -> Route {
    let get = method == Method::GET;
    if let Some(rest) = path.strip_prefix("/attachments/") {
        return classify_cdn(method, rest);
    }
    let Some(rest) = path
        .strip_prefix("/api/v10/")
        .or_else(|| path.strip_prefix("/api/v9/"))
    else {
        return Route::NotFound;
    };
    let seg: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let id = |s: &str| s.parse::<u64>().ok();
    let (route, allowed) = match seg[..] {
        ["users", "@me"] => (Some(Route::CurrentUser), get),
        ["guilds", g] => (id(g).map(Route::GetGuild), get),
        ["channels", c] => (id(c).map(Route::GetChannel), get),
        ["channels", c, "messages"] if method == Method::POST => {
            (id(c).map(Route::CreateMessage), true)
        }
        ["channels", c, "messages"] => (id(c).map(Route::ListMessages), get),
        ["channels", c, "messages", "bulk-delete"] => {
            (id(c).map(Route::BulkDelete), method == Method::POST)
        }
        ["channels", c, "messages", m] if method == Method::DELETE => (
            id(c).zip(id(m)).map(|(c, m)| Route::DeleteMessage(c, m)),
            true,
        ),
        ["channels", c, "messages", m] => {
            (id(c).zip(id(m)).map(|(c, m)| Route::GetMessage(c, m)), get)
        }
        ["attachments", "refresh-urls"] => (Some(Route::RefreshUrls), method == Method::POST),
        ["channels", c, "webhooks"] if method == Method::POST => {
            (id(c).map(Route::CreateWebhook), true)
        }
        ["channels", c, "webhooks"] => (id(c).map(Route::ListWebhooks), get),
        ["webhooks", w, t, ..] => return classify_webhook(method, id(w), t, &seg[3..]),
        _ => (None, true),
    };
    match (route, allowed) {
        (Some(_), false) => Route::MethodNotAllowed,
        (Some(r), true) => r,
        (None, _) => Route::NotFound,
    }
}

/// `/webhooks/{id}/{token}` (GET, DELETE, POST) and `.../messages/{mid}` (GET, PATCH, DELETE).
fn classify_webhook(method: &Method, id: Option<u64>, token: &str, rest: &[&str]) -> Route {
    let message = match rest {
        [] => None,
        ["messages", m] => match m.parse::<u64>() {
            Ok(m) => Some(m),
            Err(_) => return Route::NotFound,
        },
        _ => return Route::NotFound,
    };
    let Some(id) = id else {
        return Route::NotFound;
    };
    let action = match (method.as_str(), message) {
        ("GET", None) => HookAction::Get,
        ("DELETE", None) => HookAction::Delete,
        ("POST", None) => HookAction::Execute,
        ("GET", Some(m)) => HookAction::GetMessage(m),
        ("PATCH", Some(m)) => HookAction::EditMessage(m),
        ("DELETE", Some(m)) => HookAction::DeleteMessage(m),
        _ => return Route::MethodNotAllowed,
    };
    Route::Webhook {
        id,
        token: HookToken(token.to_string()),
        action,
    }
}

/// `/attachments/{cid}/{aid}/{filename}`, GET or HEAD.
fn classify_cdn(method: &Method, rest: &str) -> Route {
    let seg: Vec<&str> = rest.split('/').collect();
    let [cid, aid, name] = seg[..] else {
        return Route::NotFound;
    };
    let (Ok(channel_id), Ok(attachment_id)) = (cid.parse(), aid.parse()) else {
        return Route::NotFound;
    };
    if method != Method::GET && method != Method::HEAD {
        return Route::MethodNotAllowed;
    }
    Route::Cdn {
        channel_id,
        attachment_id,
        filename: name.to_string(),
    }
}

impl Route {
    fn fault_route(&self) -> Option<FaultRoute> {
        Some(match self {
            Route::CreateMessage(_) => FaultRoute::CreateMessage,
            Route::GetMessage(..) => FaultRoute::GetMessage,
            Route::ListMessages(_) => FaultRoute::ListMessages,
            Route::DeleteMessage(..) => FaultRoute::DeleteMessage,
            Route::BulkDelete(_) => FaultRoute::BulkDelete,
            Route::GetChannel(_) => FaultRoute::GetChannel,
            Route::Cdn { .. } => FaultRoute::Cdn,
            Route::Webhook {
                action: HookAction::Execute,
                id,
                ..
            } => FaultRoute::ExecuteWebhookOf(*id),
            Route::Webhook { .. } | Route::CreateWebhook(_) | Route::ListWebhooks(_) => {
                return None
            }
            Route::CurrentUser | Route::GetGuild(_) | Route::RefreshUrls => return None,
            Route::MethodNotAllowed | Route::NotFound => return None,
        })
    }

    /// The bucket kind and its top-level resource (discord-api.md §3.1).
    fn bucket(&self) -> Option<(BucketKind, u64)> {
        Some(match *self {
            Route::CurrentUser => (BucketKind::CurrentUser, 0),
            Route::GetChannel(c) => (BucketKind::GetChannel, c),
            Route::GetGuild(g) => (BucketKind::GetGuild, g),
            Route::CreateMessage(c) => (BucketKind::CreateMessage, c),
            Route::ListMessages(c) => (BucketKind::ListMessages, c),
            Route::GetMessage(c, _) => (BucketKind::GetMessage, c),
            Route::DeleteMessage(c, _) => (BucketKind::DeleteMessage, c),
            Route::BulkDelete(c) => (BucketKind::BulkDelete, c),
            Route::RefreshUrls => (BucketKind::RefreshUrls, 0),
            Route::CreateWebhook(c) => (BucketKind::CreateWebhook, c),
            Route::ListWebhooks(c) => (BucketKind::ListWebhooks, c),
            Route::Webhook { id, action, .. } => (action.bucket(), id),
            _ => return None,
        })
    }
}

/// Handles one request and records it in the stats.
pub async fn handle(shared: &Shared, req: Request<Body>) -> Outcome {
    shared.stats.request();
    let route = classify(req.method(), req.uri().path());
    let lane = lane(shared, &route);
    // `Any` faults match every request, routes without a fault kind included.
    let fault = shared
        .faults
        .take(route.fault_route().unwrap_or(FaultRoute::Any));
    let outcome = with_fault(shared, route, fault, req).await;
    match &outcome {
        Outcome::Reply(resp) => {
            let scope = match resp
                .headers()
                .get("x-ratelimit-scope")
                .map(|v| v.as_bytes())
            {
                Some(b"user") => Some(Scope::User),
                Some(b"global") => Some(Scope::Global),
                Some(b"shared") => Some(Scope::Shared),
                _ => None,
            };
            shared.stats.response(resp.status().as_u16(), scope, lane)
        }
        Outcome::Drop => shared.stats.reset(),
    }
    outcome
}

/// The lane a request counts for in the per-lane stats: a bot create, or a webhook's route.
fn lane(shared: &Shared, route: &Route) -> Option<Lane> {
    match *route {
        Route::CreateMessage(c) => Some(Lane::Bot(c)),
        Route::Webhook { id, .. } => shared.with_store(|s| {
            s.webhook(id).map(|w| Lane::Webhook {
                webhook_id: id,
                channel_id: w.channel_id,
            })
        }),
        _ => None,
    }
}

async fn with_fault(
    shared: &Shared,
    route: Route,
    fault: Option<FaultAction>,
    req: Request<Body>,
) -> Outcome {
    match fault {
        Some(FaultAction::Status(code)) => return Outcome::Reply(error::html_status(code)),
        Some(FaultAction::RateLimit {
            retry_after,
            global,
        }) => {
            // As the limiter's own refusals: the body read to the end first, so the 429 reaches
            // the client as an answer when it is counted, not once a stalled upload gives up.
            drain(req.into_body()).await;
            let scope = if global { Scope::Global } else { Scope::User };
            let mut resp = ratelimit::too_many_requests(Limited { retry_after, scope });
            if let Some((kind, major)) = route.bucket() {
                let state = ratelimit::BucketState {
                    limit: 5,
                    remaining: 0,
                    reset_after: retry_after,
                    at: std::time::Instant::now(),
                    bucket: ratelimit::bucket_hash(kind, major),
                };
                ratelimit::add_headers(resp.headers_mut(), &state);
            }
            return Outcome::Reply(resp);
        }
        Some(FaultAction::Reset) => return Outcome::Drop,
        Some(FaultAction::Stall(d)) => tokio::time::sleep(d).await,
        _ => {}
    }
    let tamper = match fault {
        Some(FaultAction::CorruptBytes) => Tamper::Corrupt,
        Some(FaultAction::CutOff) => Tamper::CutOff,
        Some(FaultAction::IgnoreRange) => Tamper::IgnoreRange,
        _ => Tamper::None,
    };
    // A trickle paces each direction on its own, at its rate.
    let trickle = |b, rate| link::paced(b, vec![link::Pacer::new(rate)]);
    let req = match fault {
        Some(FaultAction::Trickle(rate)) => req.map(|b| trickle(b, rate)),
        _ => req,
    };
    let resp = dispatch(shared, route, req, tamper).await;
    match fault {
        Some(FaultAction::Trickle(rate)) => Outcome::Reply(resp.map(|b| trickle(b, rate))),
        Some(FaultAction::ResetAfterCommit) => Outcome::Drop,
        Some(FaultAction::StallAfterCommit(d)) => {
            tokio::time::sleep(d).await;
            Outcome::Reply(resp)
        }
        _ => Outcome::Reply(resp),
    }
}

async fn dispatch(shared: &Shared, route: Route, req: Request<Body>, tamper: Tamper) -> Response {
    let (parts, body) = req.into_parts();
    let query = Query::parse(parts.uri.query().unwrap_or(""));
    if let Route::Cdn {
        channel_id,
        attachment_id,
        ref filename,
    } = route
    {
        let cdn_req = CdnRequest {
            channel_id,
            attachment_id,
            filename,
            path: parts.uri.path(),
            query,
            method: parts.method.clone(),
            tamper,
        };
        return cdn::serve(shared, cdn_req, &parts.headers).await;
    }
    if let Route::Webhook { id, token, action } = &route {
        return webhooks::token_route(shared, *id, token, *action, &parts.headers, &query, body)
            .await;
    }
    if !authorized(shared, &parts.headers) {
        return ApiError::UNAUTHORIZED.into_response();
    }
    let Some((kind, major)) = route.bucket() else {
        let err = if route == Route::MethodNotAllowed {
            ApiError::METHOD_NOT_ALLOWED
        } else {
            ApiError::NOT_FOUND
        };
        return err.into_response();
    };
    let (state, limited) = shared
        .limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .check(kind, major);
    let mut resp = match limited {
        Some(l) => {
            drain(body).await;
            ratelimit::too_many_requests(l)
        }
        None => run(shared, route, &parts.headers, &query, body)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    };
    ratelimit::add_headers(resp.headers_mut(), &state);
    resp
}

/// Reads a refused request's body to the end, keeping none of it, so the refusal reaches the
/// client as an answer, not as a connection closed under a body still being sent (as a 413 is).
pub(super) async fn drain(body: Body) {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    while let Some(Ok(_)) = stream.next().await {}
}

async fn run(
    shared: &Shared,
    route: Route,
    headers: &HeaderMap,
    q: &Query,
    body: Body,
) -> Result<Response, ApiError> {
    match route {
        Route::CurrentUser => Ok(resources::current_user(shared)),
        Route::GetChannel(c) => resources::channel(shared, c),
        Route::GetGuild(g) => resources::guild(shared, g),
        Route::CreateMessage(c) => messages::create(shared, c, headers, body).await,
        Route::ListMessages(c) => messages::list(shared, c, q),
        Route::GetMessage(c, m) => messages::get(shared, c, m),
        Route::DeleteMessage(c, m) => messages::delete(shared, c, m),
        Route::BulkDelete(c) => messages::bulk_delete(shared, c, body).await,
        Route::RefreshUrls => resources::refresh_urls(shared, body).await,
        Route::CreateWebhook(c) => webhooks::create(shared, c, body).await,
        Route::ListWebhooks(c) => webhooks::list(shared, c),
        Route::Cdn { .. } | Route::Webhook { .. } | Route::MethodNotAllowed | Route::NotFound => {
            Err(ApiError::NOT_FOUND)
        }
    }
}

/// `Authorization: Bot <token>` exactly (discord-api.md §4 "Required headers").
fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let expected = format!("Bot {}", shared.token);
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == expected)
}

/// What a route needs from the channel's access setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    Read,
    Send,
    Manage,
}

/// Checks the channel exists and the bot may do `need` there; returns its guild.
pub(crate) fn channel_guard(
    shared: &Shared,
    channel_id: u64,
    need: Need,
) -> Result<Guild, ApiError> {
    shared.with_store(|s| {
        let channel = s.channel(channel_id).ok_or(ApiError::UNKNOWN_CHANNEL)?;
        match (channel.access, need) {
            (Access::NoAccess, _) => return Err(ApiError::MISSING_ACCESS),
            (Access::NoPermission, Need::Send | Need::Manage) => {
                return Err(ApiError::MISSING_PERMISSIONS)
            }
            _ => {}
        }
        s.guild(channel.guild_id)
            .cloned()
            .ok_or(ApiError::UNKNOWN_CHANNEL)
    })
}
