//! W3C trace context in and out: from request headers, into the stored task, back out in the
//! worker (possibly another instance), so one task is one trace.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The `traceparent` of `span`, when it belongs to an OpenTelemetry trace (export enabled).
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of the trace named by `traceparent` (a stored task's context).
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(tp) = traceparent else { return };
    let carrier = HashMap::from([("traceparent".to_string(), tp.to_string())]);
    set_parent_from(span, &carrier);
}

/// Makes `span` a child of the caller's trace when the request carries `traceparent`.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) else { return };
    let mut carrier = HashMap::from([("traceparent".to_string(), tp.to_string())]);
    if let Some(ts) = headers.get("tracestate").and_then(|v| v.to_str().ok()) {
        carrier.insert("tracestate".into(), ts.to_string());
    }
    set_parent_from(span, &carrier);
}

fn set_parent_from(span: &tracing::Span, carrier: &HashMap<String, String>) {
    let cx = TraceContextPropagator::new().extract(carrier);
    if cx.span().span_context().is_valid() {
        // Fails only when OTel is not installed: then there is no trace to join.
        let _ = span.set_parent(cx);
    }
}
