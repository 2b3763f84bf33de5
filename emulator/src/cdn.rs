//! The attachment CDN: signed, expiring URLs (discord-api.md §2) and serving blobs with Range support.

use std::io::SeekFrom;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use crate::query::Query;
use crate::shared::Shared;
use crate::snowflake::now_ms;

/// The body Discord's CDN sends for expired or deleted attachments (discord-api.md §2.2).
pub const GONE: &str = "This content is no longer available.";

/// Signs and checks `?ex=&is=&hm=&` URLs. The HMAC scheme is ours; Discord's is unknown.
#[derive(Debug, Clone)]
pub struct Signer {
    pub base_url: String,
    pub secret: Vec<u8>,
    pub ttl: Duration,
}

impl Signer {
    /// A URL valid from now for the configured TTL, in Discord's shape (note the trailing `&`).
    pub fn url(&self, channel_id: u64, attachment_id: u64, filename: &str) -> String {
        let path = format!("/attachments/{channel_id}/{attachment_id}/{filename}");
        let issued = now_ms() / 1000;
        let (ex, is) = (
            format!("{:x}", issued + self.ttl.as_secs()),
            format!("{issued:x}"),
        );
        let hm = hex::encode(self.mac(&path, &ex, &is).finalize().into_bytes());
        format!("{}{path}?ex={ex}&is={is}&hm={hm}&", self.base_url)
    }

    /// True when `hm` signs (path, ex, is) and `ex` is not in the past.
    pub fn valid(&self, path: &str, q: &Query) -> bool {
        let (Some(ex), Some(is), Some(hm)) = (q.get("ex"), q.get("is"), q.get("hm")) else {
            return false;
        };
        let (Ok(expires), Ok(sig)) = (u64::from_str_radix(ex, 16), hex::decode(hm)) else {
            return false;
        };
        expires >= now_ms() / 1000 && self.mac(path, ex, is).verify_slice(&sig).is_ok()
    }

    fn mac(&self, path: &str, ex: &str, is: &str) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(format!("{path}\n{ex}\n{is}").as_bytes());
        mac
    }
}

/// What one CDN request asks for.
pub struct CdnRequest<'a> {
    pub channel_id: u64,
    pub attachment_id: u64,
    pub filename: &'a str,
    pub path: &'a str,
    pub query: Query,
    pub method: Method,
    pub tamper: Tamper,
}

/// What a fault does to the bytes served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    None,
    /// Some bytes flipped, same length.
    Corrupt,
    /// Half the bytes, then the connection drops (the full length is still announced).
    CutOff,
    /// The whole body with 200, whatever `Range` asked.
    IgnoreRange,
}

/// Serves an attachment, or the "no longer available" 404 for anything stale, forged or deleted.
pub async fn serve(shared: &Shared, req: CdnRequest<'_>, headers: &HeaderMap) -> Response {
    if !shared.signer.valid(req.path, &req.query) {
        return gone();
    }
    let found = shared.with_store(|s| {
        let (msg, att) = s.attachment(req.attachment_id)?;
        let ours = msg.channel_id == req.channel_id && att.filename == req.filename;
        ours.then(|| (att.size, att.content_type.clone(), s.blob_path(att.id)))
    });
    let Some((size, content_type, blob)) = found else {
        return gone();
    };
    let range = match headers
        .get(header::RANGE)
        .filter(|_| req.tamper != Tamper::IgnoreRange)
        .and_then(|v| v.to_str().ok())
        .map(|r| parse_range(r, size))
    {
        None | Some(RangeSpec::Whole) => None,
        Some(RangeSpec::Part(a, b)) => Some((a, b)),
        Some(RangeSpec::Unsatisfiable) => return unsatisfiable(size),
    };
    let (start, end) = range.unwrap_or((0, size.saturating_sub(1)));
    let len = if size == 0 { 0 } else { end - start + 1 };
    let body = match req.method {
        Method::HEAD => Ok(Body::empty()),
        _ => body(&blob, start, len, req.tamper).await,
    };
    let Ok(body) = body else { return gone() };
    if req.method != Method::HEAD {
        shared.stats.cdn_download(range.is_some(), len);
    }
    let mut resp = Response::new(body);
    *resp.status_mut() = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let octets = HeaderValue::from_static("application/octet-stream");
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type).unwrap_or(octets),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if range.is_some() {
        let value = format!("bytes {start}-{end}/{size}");
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&value).expect("ascii"),
        );
    }
    resp
}

/// Streams `len` bytes from `start`, so large attachments are never held in memory.
/// A tampered read (fault injection, test-sized) is buffered first.
async fn body(
    blob: &std::path::Path,
    start: u64,
    len: u64,
    tamper: Tamper,
) -> std::io::Result<Body> {
    let mut file = tokio::fs::File::open(blob).await?;
    file.seek(SeekFrom::Start(start)).await?;
    let mut reader = file.take(len);
    if matches!(tamper, Tamper::None | Tamper::IgnoreRange) {
        return Ok(Body::from_stream(ReaderStream::with_capacity(
            reader,
            256 * 1024,
        )));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    reader.read_to_end(&mut bytes).await?;
    if tamper == Tamper::CutOff {
        bytes.truncate(bytes.len() / 2);
        use futures_util::StreamExt;
        let half = futures_util::stream::iter([Ok(bytes::Bytes::from(bytes))]);
        // A pause first, so the headers and the first half reach the client before the cut.
        let cut = futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "cut off by a fault",
            ))
        });
        return Ok(Body::from_stream(half.chain(cut)));
    }
    for i in [0, bytes.len() / 2, bytes.len().saturating_sub(1)] {
        if let Some(b) = bytes.get_mut(i) {
            *b ^= 0xA5;
        }
    }
    Ok(Body::from(bytes))
}

#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=a-b`, `a-` or `-n` range (inclusive ends). Multiple or malformed ranges are
/// ignored and the whole body is sent, which RFC 9110 allows.
fn parse_range(spec: &str, size: u64) -> RangeSpec {
    let Some(r) = spec.trim().strip_prefix("bytes=") else {
        return RangeSpec::Whole;
    };
    let Some((a, b)) = r.split_once('-').filter(|_| !r.contains(',')) else {
        return RangeSpec::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(a), Ok(b)) if a <= b => (a, b.min(size.saturating_sub(1))),
        (Ok(a), Err(_)) if b.is_empty() => (a, size.saturating_sub(1)),
        (Err(_), Ok(n)) if a.is_empty() => match n {
            0 => return RangeSpec::Unsatisfiable,
            n => (size.saturating_sub(n), size.saturating_sub(1)),
        },
        _ => return RangeSpec::Whole,
    };
    if size == 0 || start >= size {
        return RangeSpec::Unsatisfiable;
    }
    RangeSpec::Part(start, end)
}

fn unsatisfiable(size: u64) -> Response {
    let mut resp = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
    resp.headers_mut().insert(
        header::CONTENT_RANGE,
        HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
    );
    resp
}

/// 404 `text/plain` "This content is no longer available." (status believed 404, discord-api.md §2.2).
pub fn gone() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain")],
        GONE,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeSpec::Part(0, 9));
        assert_eq!(parse_range("bytes=90-200", 100), RangeSpec::Part(90, 99));
        assert_eq!(parse_range("bytes=10-", 100), RangeSpec::Part(10, 99));
        assert_eq!(parse_range("bytes=-10", 100), RangeSpec::Part(90, 99));
        assert_eq!(parse_range("bytes=-200", 100), RangeSpec::Part(0, 99));
        assert_eq!(parse_range("bytes=100-", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeSpec::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeSpec::Whole);
        assert_eq!(parse_range("items=0-1", 100), RangeSpec::Whole);
    }

    #[test]
    fn signature_covers_path_and_times() {
        let s = Signer {
            base_url: "http://x".into(),
            secret: vec![7; 32],
            ttl: Duration::from_secs(60),
        };
        let url = s.url(1, 2, "a.part");
        let (path, query) = url.trim_start_matches("http://x").split_once('?').unwrap();
        assert!(s.valid(path, &Query::parse(query)));
        assert!(!s.valid("/attachments/1/3/a.part", &Query::parse(query)));
        let tampered = query.replacen("ex=", "ex=1", 1);
        assert!(!s.valid(path, &Query::parse(&tampered)));
    }
}
