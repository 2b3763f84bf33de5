//! Request entry point: routing, faults, auth, rate limits, then the route handlers.

mod error;
mod messages;
mod resources;
mod upload;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request};
use axum::response::{IntoResponse, Response};

pub use error::ApiError;

use crate::cdn::{self, CdnRequest, Tamper};
use crate::faults::{FaultAction, FaultRoute};
use crate::model::{Access, Guild};
use crate::query::Query;
use crate::ratelimit::{self, BucketKind, Limited};
use crate::shared::Shared;

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
        _ => (None, true),
    };
    match (route, allowed) {
        (Some(_), false) => Route::MethodNotAllowed,
        (Some(r), true) => r,
        (None, _) => Route::NotFound,
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
            _ => return None,
        })
    }
}

/// Handles one request and records it in the stats.
pub async fn handle(shared: &Shared, req: Request<Body>) -> Outcome {
    shared.stats.request();
    let route = classify(req.method(), req.uri().path());
    // `Any` faults match every request, routes without a fault kind included.
    let fault = shared
        .faults
        .take(route.fault_route().unwrap_or(FaultRoute::Any));
    let outcome = with_fault(shared, route, fault, req).await;
    match &outcome {
        Outcome::Reply(resp) => shared.stats.response(resp.status().as_u16()),
        Outcome::Drop => shared.stats.reset(),
    }
    outcome
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
            let mut resp = ratelimit::too_many_requests(Limited {
                retry_after,
                global,
            });
            if let Some((kind, _)) = route.bucket() {
                let state = ratelimit::BucketState {
                    limit: 5,
                    remaining: 0,
                    reset_after: retry_after,
                    bucket: ratelimit::bucket_hash(kind),
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

/// `body` at `rate` bytes per second, in slices of at most a tenth of a second each.
fn trickle(body: Body, rate: u64) -> Body {
    use futures_util::StreamExt;
    let slice = (rate / 10).max(1) as usize;
    let slices = body.into_data_stream().flat_map(move |chunk| {
        let pieces: Vec<Result<bytes::Bytes, axum::Error>> = match chunk {
            Ok(mut c) => {
                let mut out = Vec::new();
                while !c.is_empty() {
                    out.push(Ok(c.split_to(slice.min(c.len()))));
                }
                out
            }
            Err(e) => vec![Err(e)],
        };
        futures_util::stream::iter(pieces)
    });
    let paced = slices.then(move |piece| async move {
        let len = piece.as_ref().map_or(0, |p| p.len());
        tokio::time::sleep(std::time::Duration::from_secs_f64(len as f64 / rate as f64)).await;
        piece
    });
    Body::from_stream(paced)
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
        Some(l) => ratelimit::too_many_requests(l),
        None => run(shared, route, &parts.headers, &query, body)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    };
    ratelimit::add_headers(resp.headers_mut(), &state);
    resp
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
        Route::Cdn { .. } | Route::MethodNotAllowed | Route::NotFound => Err(ApiError::NOT_FOUND),
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
