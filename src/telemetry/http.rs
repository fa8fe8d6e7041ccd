//! HTTP server telemetry: one span per request following the OpenTelemetry HTTP semantic
//! conventions, joined to the caller's trace, and the request counter.

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use tracing::field::Empty;
use tracing::Instrument as _;

use super::metrics::metrics;

/// Route label for requests no route matched: keeps the label set closed.
const UNMATCHED: &str = "unmatched";

/// The method as a label: one of the methods of RFC 9110 and PATCH, or `_OTHER` (OpenTelemetry
/// HTTP semantic conventions). Any token is a valid method, so the raw string would let a
/// client add one metric series per request (`M000123X /healthz`).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

/// The status as a label: a real status code (100–599) or 0, so the set stays closed whatever a
/// handler builds.
pub fn status_label(status: u16) -> u16 {
    if (100..=599).contains(&status) { status } else { 0 }
}

/// Probes and scrapes arrive every few seconds from every prober: counted, never traced (they
/// would bury the task traces).
const UNTRACED: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// Axum middleware (`middleware::from_fn`): server span + `kycgate_http_requests_total`.
/// Uses the matched route template (`/api/v3/services/{service}/`), never the raw path, for the
/// span name and the label, so cardinality stays bounded.
pub async fn server_span(req: Request, next: Next) -> Response {
    let method = method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().map_or(UNMATCHED, |m| m.as_str()).to_string();
    if UNTRACED.contains(&route.as_str()) {
        let response = next.run(req).await;
        metrics().http_request(&route, method, status_label(response.status().as_u16()));
        return response;
    }
    let span = tracing::info_span!(
        "http.server",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = %route,
        url.path = %req.uri().path(),
        url.scheme = "http",
        http.response.status_code = Empty,
    );
    super::propagation::set_parent_from_headers(&span, req.headers());
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    // Semantic conventions: 5xx is a server error; 4xx is the client's and leaves status unset.
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    metrics().http_request(&route, method, status_label(status));
    response
}
