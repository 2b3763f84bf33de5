//! Who may talk to the dashboard: a random access token, given once in the URL and exchanged
//! for an HttpOnly, SameSite=Strict cookie; the Host header must name loopback at our port
//! (against DNS rebinding); an Origin, when sent, must be ours, and every state-changing
//! request must carry one and the CSRF token. Every answer gets a strict Content-Security-Policy.

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};

/// The CSRF token's header.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Scripts, styles and everything else only from this server, as files (no inline script or
/// style), never framed, forms and connections only to it.
pub const CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// The secrets of one running dashboard; never logged (Debug shows none of them).
pub struct Guard {
    /// In the URL printed to open: `/?token=...`.
    token: String,
    /// The cookie's value once the token was shown.
    cookie: String,
    /// Sent back in [`CSRF_HEADER`] by the page's script on every state-changing request.
    csrf: String,
    port: u16,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// What to do with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// The right token in the URL: set the cookie and redirect to the URL without it.
    Exchange,
    Refuse(StatusCode, &'static str),
}

/// 32 random bytes in hex.
fn random_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Equal, in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Guard {
    pub fn new(port: u16) -> Self {
        Guard {
            token: random_secret(),
            cookie: random_secret(),
            csrf: random_secret(),
            port,
        }
    }

    /// The address to open, token included.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/?token={}", self.port, self.token)
    }

    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Cookies are not kept apart by port: each dashboard names its own.
    fn cookie_name(&self) -> String {
        format!("dstore_{}", self.port)
    }

    /// The `Set-Cookie` of the exchange.
    pub fn set_cookie(&self) -> String {
        format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            self.cookie_name(),
            self.cookie
        )
    }

    /// Whether `host` (a Host header) names this server on a loopback name.
    fn host_ok(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .any(|name| host == format!("{name}:{}", self.port))
    }

    fn origin_ok(&self, origin: &str) -> bool {
        origin
            .strip_prefix("http://")
            .is_some_and(|host| self.host_ok(host))
    }

    fn has_cookie(&self, headers: &HeaderMap) -> bool {
        let name = self.cookie_name();
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(k, v)| k == name && same(v.as_bytes(), self.cookie.as_bytes()))
    }

    /// The `token` parameter of a query string, if any.
    fn token_in(query: Option<&str>) -> Option<&str> {
        query?
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v)
    }

    /// The checks, in order: Host, Origin, the token or cookie, then for a state change the
    /// Origin's presence and the CSRF token.
    pub fn check(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Verdict {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        if !text(header::HOST.as_str()).is_some_and(|h| self.host_ok(h)) {
            return Verdict::Refuse(
                StatusCode::FORBIDDEN,
                "this dashboard answers only to 127.0.0.1, localhost or [::1] at its own port",
            );
        }
        let origin = text(header::ORIGIN.as_str());
        if origin.is_some_and(|o| !self.origin_ok(o)) {
            return Verdict::Refuse(
                StatusCode::FORBIDDEN,
                "requests from other sites are refused",
            );
        }
        if path == "/" && *method == Method::GET {
            if let Some(token) = Self::token_in(query) {
                if same(token.as_bytes(), self.token.as_bytes()) {
                    return Verdict::Exchange;
                }
                return Verdict::Refuse(
                    StatusCode::UNAUTHORIZED,
                    "this access token is not the dashboard's; open the address `web` printed",
                );
            }
        }
        if !self.has_cookie(headers) {
            return Verdict::Refuse(
                StatusCode::UNAUTHORIZED,
                "not signed in; open the address `web` printed (it holds the access token)",
            );
        }
        if *method != Method::GET && *method != Method::HEAD {
            if origin.is_none() {
                return Verdict::Refuse(
                    StatusCode::FORBIDDEN,
                    "a change needs the Origin header of this dashboard",
                );
            }
            if !text(CSRF_HEADER).is_some_and(|t| same(t.as_bytes(), self.csrf.as_bytes())) {
                return Verdict::Refuse(
                    StatusCode::FORBIDDEN,
                    "a change needs the dashboard's CSRF token; reload the page",
                );
            }
        }
        Verdict::Pass
    }
}

/// The headers every answer carries.
pub fn harden(headers: &mut HeaderMap) {
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(headers, "content-security-policy", CSP);
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "x-frame-options", "DENY");
    set(headers, "referrer-policy", "no-referrer");
    set(headers, "cross-origin-opener-policy", "same-origin");
    set(headers, "cross-origin-resource-policy", "same-origin");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, "cache-control", "no-store");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_order_of_the_checks() {
        let g = Guard::new(5000);
        let cookie = format!("a=b; dstore_5000={}", g.cookie);
        let token = format!("token={}", g.token);
        let get = Method::GET;
        let ok = headers(&[("host", "localhost:5000"), ("cookie", &cookie)]);
        assert_eq!(g.check(&get, "/api/files", None, &ok), Verdict::Pass);
        let rebinding = headers(&[("host", "evil.example:5000"), ("cookie", &cookie)]);
        assert!(matches!(
            g.check(&get, "/", Some(&token), &rebinding),
            Verdict::Refuse(StatusCode::FORBIDDEN, _)
        ));
        let other_port = headers(&[("host", "127.0.0.1:5001"), ("cookie", &cookie)]);
        assert!(matches!(
            g.check(&get, "/", None, &other_port),
            Verdict::Refuse(..)
        ));
        let fresh = headers(&[("host", "127.0.0.1:5000")]);
        assert_eq!(g.check(&get, "/", Some(&token), &fresh), Verdict::Exchange);
        assert!(matches!(
            g.check(&get, "/", Some("token=00"), &fresh),
            Verdict::Refuse(StatusCode::UNAUTHORIZED, _)
        ));
        assert!(matches!(
            g.check(&get, "/api/files", Some(&token), &fresh),
            Verdict::Refuse(StatusCode::UNAUTHORIZED, _)
        ));
        let wrong_cookie = headers(&[("host", "127.0.0.1:5000"), ("cookie", "dstore_5000=00")]);
        assert!(matches!(
            g.check(&get, "/", None, &wrong_cookie),
            Verdict::Refuse(..)
        ));
        let post = Method::POST;
        let csrf = g.csrf.clone();
        let change = |origin: &str, csrf: &str| {
            headers(&[
                ("host", "127.0.0.1:5000"),
                ("cookie", &cookie),
                ("origin", origin),
                (CSRF_HEADER, csrf),
            ])
        };
        assert_eq!(
            g.check(
                &post,
                "/api/upload",
                None,
                &change("http://127.0.0.1:5000", &csrf)
            ),
            Verdict::Pass
        );
        for (origin, token) in [
            ("http://evil.example", csrf.as_str()),
            ("https://127.0.0.1:5000", csrf.as_str()),
            ("null", csrf.as_str()),
            ("http://127.0.0.1:5000", "nope"),
        ] {
            assert!(matches!(
                g.check(&post, "/api/upload", None, &change(origin, token)),
                Verdict::Refuse(StatusCode::FORBIDDEN, _)
            ));
        }
        let no_origin = headers(&[
            ("host", "127.0.0.1:5000"),
            ("cookie", &cookie),
            (CSRF_HEADER, &csrf),
        ]);
        assert!(matches!(
            g.check(&post, "/api/upload", None, &no_origin),
            Verdict::Refuse(..)
        ));
    }

    #[test]
    fn secrets_are_fresh_and_never_shown_by_debug() {
        let (a, b) = (Guard::new(1), Guard::new(1));
        assert_ne!(a.token, b.token);
        assert_ne!(a.token, a.cookie);
        let shown = format!("{a:?}");
        assert!(
            !shown.contains(&a.token) && !shown.contains(&a.cookie) && !shown.contains(&a.csrf)
        );
        assert!(a.url().ends_with(&a.token));
        assert!(a.set_cookie().contains("HttpOnly; SameSite=Strict"));
    }
}
