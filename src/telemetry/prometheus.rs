//! Prometheus text exposition of the OTel SDK's metrics, for `GET /metrics`.
//!
//! Why render ourselves: `opentelemetry-prometheus` pulls in the `prometheus` crate (and its
//! protobuf stack) and renames instruments (unit and `_total` suffixes); reading the SDK's own
//! aggregation through a [`ManualReader`] keeps one source of truth for OTLP and the scrape,
//! keeps names exactly as declared in [`super::metrics`], and costs ~100 lines.

use std::fmt::Write as _;

use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;

use super::metrics::SharedReader;

/// The current value of every instrument, in the Prometheus text format (0.0.4).
pub fn render() -> String {
    render_from(&super::metrics::installed().reader)
}

fn render_from(reader: &SharedReader) -> String {
    let mut rm = ResourceMetrics::default();
    if let Err(err) = reader.collect(&mut rm) {
        tracing::warn!(error = %err, "Collecting metrics failed");
    }
    let mut out = String::new();
    for scope in rm.scope_metrics() {
        for metric in scope.metrics() {
            let name = prometheus_name(metric.name(), metric.unit());
            let name = name.as_str();
            match metric.data() {
                AggregatedMetrics::U64(d) => write_data(&mut out, name, metric.description(), d, |v| v.to_string()),
                AggregatedMetrics::I64(d) => write_data(&mut out, name, metric.description(), d, |v| v.to_string()),
                AggregatedMetrics::F64(d) => write_data(&mut out, name, metric.description(), d, |v| fmt_f64(*v)),
            }
        }
    }
    out
}

fn write_data<T: Copy>(out: &mut String, name: &str, help: &str, data: &MetricData<T>, fmt: impl Fn(&T) -> String) {
    let kind = match data {
        MetricData::Sum(s) if s.is_monotonic() => "counter",
        MetricData::Sum(_) | MetricData::Gauge(_) => "gauge",
        MetricData::Histogram(_) => "histogram",
        // Not used by kycgate's instruments.
        MetricData::ExponentialHistogram(_) => return,
    };
    let _ = writeln!(out, "# HELP {name} {}", help.replace('\\', "\\\\").replace('\n', "\\n"));
    let _ = writeln!(out, "# TYPE {name} {kind}");
    match data {
        MetricData::Sum(s) => {
            for p in s.data_points() {
                let _ = writeln!(out, "{name}{} {}", labels(p.attributes(), None), fmt(&p.value()));
            }
        }
        MetricData::Gauge(g) => {
            for p in g.data_points() {
                let _ = writeln!(out, "{name}{} {}", labels(p.attributes(), None), fmt(&p.value()));
            }
        }
        MetricData::Histogram(h) => {
            for p in h.data_points() {
                let attrs: Vec<&KeyValue> = p.attributes().collect();
                let mut cumulative = 0u64;
                for (bound, count) in p.bounds().zip(p.bucket_counts()) {
                    cumulative += count;
                    let le = fmt_f64(bound);
                    let _ = writeln!(out, "{name}_bucket{} {cumulative}", labels(attrs.iter().copied(), Some(&le)));
                }
                let _ = writeln!(out, "{name}_bucket{} {}", labels(attrs.iter().copied(), Some("+Inf")), p.count());
                let _ = writeln!(out, "{name}_sum{} {}", labels(attrs.iter().copied(), None), fmt(&p.sum()));
                let _ = writeln!(out, "{name}_count{} {}", labels(attrs.iter().copied(), None), p.count());
            }
        }
        MetricData::ExponentialHistogram(_) => {}
    }
}

/// `{k="v",…}` with Prometheus escaping, sorted by key for stable output.
fn labels<'a>(attrs: impl Iterator<Item = &'a KeyValue>, le: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = attrs
        .map(|kv| {
            let v = match &kv.value {
                Value::String(s) => s.as_str().to_string(),
                other => other.to_string(),
            };
            (sanitize(kv.key.as_str()), v)
        })
        .collect();
    pairs.sort();
    if let Some(le) = le {
        pairs.push(("le".into(), le.into()));
    }
    if pairs.is_empty() {
        return String::new();
    }
    let body: Vec<String> = pairs
        .into_iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// An OpenTelemetry instrument name as Prometheus spells it: characters outside
/// `[a-zA-Z0-9_:]` become `_`, and a seconds unit not already in a dotted name is suffixed
/// (`http.server.request.duration` → `http_server_request_duration_seconds`). kycgate's own
/// names are already Prometheus names and pass unchanged.
fn prometheus_name(name: &str, unit: &str) -> String {
    let mut out = sanitize(name);
    if name.contains('.') && unit == "s" && !out.ends_with("_seconds") {
        out.push_str("_seconds");
    }
    out
}

/// Replaces every character Prometheus does not allow in names and label keys with `_`.
fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == ':' { c } else { '_' }).collect()
}

fn fmt_f64(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.is_nan() {
        "NaN".into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry::KeyValue;
    use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};

    use super::*;

    #[test]
    fn counters_gauges_and_histograms_in_text_format() {
        let reader = SharedReader::new(ManualReader::builder().build());
        let provider = SdkMeterProvider::builder().with_reader(reader.clone()).build();
        let meter = provider.meter("test");
        let c = meter.u64_counter("x_requests_total").with_description("Requests").build();
        c.add(2, &[KeyValue::new("route", "/a/{id}"), KeyValue::new("quote", "say \"hi\"")]);
        let h = meter.f64_histogram("x_seconds").with_boundaries(vec![0.1, 1.0]).build();
        h.record(0.05, &[]);
        h.record(0.5, &[]);
        h.record(5.0, &[]);
        let g = meter.i64_up_down_counter("x_in_flight").build();
        g.add(1, &[]);

        let text = render_from(&reader);
        assert!(text.contains("# TYPE x_requests_total counter\n"), "{text}");
        assert!(text.contains(r#"x_requests_total{quote="say \"hi\"",route="/a/{id}"} 2"#), "{text}");
        assert!(text.contains("# TYPE x_seconds histogram\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"0.1\"} 1\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"1\"} 2\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("x_seconds_sum 5.55\n"), "{text}");
        assert!(text.contains("x_seconds_count 3\n"), "{text}");
        assert!(text.contains("# TYPE x_in_flight gauge\nx_in_flight 1\n"), "{text}");

        let d = meter.f64_histogram("http.server.request.duration").with_unit("s").with_boundaries(vec![1.0]).build();
        d.record(0.5, &[KeyValue::new("http.request.method", "GET")]);
        let text = render_from(&reader);
        assert!(text.contains("# TYPE http_server_request_duration_seconds histogram\n"), "{text}");
        assert!(text.contains("http_server_request_duration_seconds_count{http_request_method=\"GET\"} 1\n"), "{text}");
    }

    /// Sub-millisecond attempts (a vendor on the same host) land in their own buckets.
    #[test]
    fn attempt_histogram_resolves_sub_millisecond_attempts() {
        let reader = SharedReader::new(ManualReader::builder().build());
        let provider = SdkMeterProvider::builder().with_reader(reader.clone()).build();
        let metrics = super::super::metrics::Metrics::for_tests(&provider.meter("test"));
        for seconds in [0.0003, 0.0008, 0.004] {
            metrics.attempt_duration.record(seconds, &[]);
        }
        let text = render_from(&reader);
        let name = crate::telemetry::metrics::PROVIDER_ATTEMPT_DURATION;
        assert!(text.contains(&format!("{name}_bucket{{le=\"0.0005\"}} 1\n")), "{text}");
        assert!(text.contains(&format!("{name}_bucket{{le=\"0.001\"}} 2\n")), "{text}");
        assert!(text.contains(&format!("{name}_bucket{{le=\"0.005\"}} 3\n")), "{text}");
    }
}
