//! Value types and predicates the engine's modules share, in one leaf so the arrows between
//! `validate`, `auth`, `request` and `response` point one way: a resolved secret, the raw answer,
//! the per-request built-ins, which image a slot means, and condition tests on an answer.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::select::select;
use crate::providers::spec::{Condition, ImageSource};
use crate::providers::{Image, ProviderError, SubCall};

/// A resolved secret. Debug never prints it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub(crate) fn new(value: String) -> Self {
        Self(value)
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What came back over the wire, before interpretation.
#[derive(Debug, Clone)]
pub(crate) struct RawResponse {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Values every template may use, fixed once per request so a signature and the header carrying
/// its timestamp agree.
#[derive(Debug, Clone)]
pub(crate) struct Builtins {
    pub timestamp: String,
    pub timestamp_ms: String,
    pub uuid: String,
    /// UTC date of the request, `YYYY-MM-DD` and `YYYYMMDD` (signature scopes).
    pub date: String,
    pub date_compact: String,
}

impl Builtins {
    pub(crate) fn at(now: SystemTime) -> Self {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let day = chrono::DateTime::<chrono::Utc>::from(now).date_naive();
        Self {
            timestamp: since.as_secs().to_string(),
            timestamp_ms: since.as_millis().to_string(),
            uuid: crate::ids::new_v4().to_string(),
            date: day.format("%Y-%m-%d").to_string(),
            date_compact: day.format("%Y%m%d").to_string(),
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<String> {
        match name {
            "timestamp" => Some(self.timestamp.clone()),
            "timestamp_ms" => Some(self.timestamp_ms.clone()),
            "uuid" => Some(self.uuid.clone()),
            "date" => Some(self.date.clone()),
            "date_compact" => Some(self.date_compact.clone()),
            _ => None,
        }
    }
}

/// The image a body slot refers to; `None` for an absent optional page (`back`).
/// `call` is `None` for session requests, which send no image.
pub(crate) fn image_for(call: Option<&SubCall>, source: ImageSource) -> Result<Option<&Image>, ProviderError> {
    let Some(call) = call else {
        return Err(ProviderError::Config(format!("image source {source:?} in a request without images")));
    };
    let mismatch = || ProviderError::Config(format!("image source {source:?} does not exist in a {} call", call.kind()));
    match (call, source) {
        (SubCall::Liveness { image }, ImageSource::Image) => Ok(Some(image)),
        (SubCall::FaceCompare { probe, .. }, ImageSource::Probe) => Ok(Some(probe)),
        (SubCall::FaceCompare { reference, .. }, ImageSource::Reference) => Ok(Some(reference)),
        (SubCall::DocumentOcr { pages }, ImageSource::Front) => pages.first().map(Some).ok_or_else(mismatch),
        (SubCall::DocumentOcr { pages }, ImageSource::Back) => Ok(pages.get(1)),
        _ => Err(mismatch()),
    }
}

// === Conditions ===

/// Strings as they are; numbers and booleans as their text.
pub(crate) fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(crate) fn toml_to_json(v: &toml::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn same(a: &Value, b: &toml::Value) -> bool {
    let b = toml_to_json(b);
    match (a, &b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => as_text(a).is_some_and(|t| as_text(&b).is_some_and(|u| t == u)),
    }
}

/// Evaluates a condition against the answer.
pub(crate) fn holds(c: &Condition, json: &Value) -> bool {
    let v = select(json, &c.pointer).filter(|v| !v.is_null());
    if let Some(expected) = &c.equals {
        return v.is_some_and(|v| same(v, expected));
    }
    if let Some(options) = &c.one_of {
        return v.is_some_and(|v| options.iter().any(|o| same(v, o)));
    }
    if let Some(present) = c.present {
        return v.is_some() == present;
    }
    if let Some(empty) = c.empty {
        let is_empty = match v {
            None => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(o)) => o.is_empty(),
            Some(_) => false,
        };
        return is_empty == empty;
    }
    false
}
