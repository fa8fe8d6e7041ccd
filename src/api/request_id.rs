//! `X-Request-Id`: the caller's (or its proxy's) id is kept when it is a plain token, otherwise a
//! UUID is made; it is returned on every response and recorded on the request's server span, so
//! a client's report can be matched to the gateway's log lines.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use crate::telemetry::http::RequestId;

/// The header, as proxies (nginx `$request_id`, Envoy) name it.
pub const HEADER: &str = "x-request-id";

/// Longest id kept from a request; longer ones are replaced.
const MAX_LEN: usize = 128;

/// Axum middleware (`middleware::from_fn`), outermost, so errors and timeouts carry the id too.
pub async fn propagate(mut req: Request, next: Next) -> Response {
    let kept = req.headers().get(HEADER).and_then(|v| v.to_str().ok()).filter(|v| acceptable(v));
    let id = kept.map_or_else(|| crate::ids::new_v4().to_string(), str::to_string);
    // `acceptable` admits visible ASCII only, and a UUID is that too.
    let value = HeaderValue::from_str(&id).ok();
    req.extensions_mut().insert(RequestId(id));
    let mut response = next.run(req).await;
    if let Some(value) = value {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

/// A plain token: it goes into log lines, so no spaces, quotes or control characters.
fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'='))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_plain_tokens_are_kept() {
        use super::acceptable;
        assert!(acceptable("3f2c9a1e-7b7e-4c55-9a0b-1d2e3f4a5b6c"));
        assert!(acceptable("req_42:edge/1"));
        for bad in ["", "has space", "quote\"", "new\nline", &"x".repeat(129)] {
            assert!(!acceptable(bad), "{bad:?}");
        }
    }
}
