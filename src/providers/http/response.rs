//! Classifies a vendor answer (success, error envelope, rejection) and maps it to the unified
//! answer types. Pure: no IO, so it is tested table-style without a server.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;


use super::select::select;
use super::validate::{Mapping, RequestTpl, ValidatedHttpSpec};
use super::wire::{as_text, holds, image_for, toml_to_json, RawResponse};
use crate::providers::spec::{
    BoxFormat, BoxSpec, ErrorAction, ErrorRule, FieldRef, FieldSpec, ThresholdRef, Unmapped,
};
use crate::providers::{
    CompareAnswer, DocumentFields, LivenessAnswer, OcrAnswer, PartialDate, ProviderError, Rejection, Score, SubCall,
    Verdict,
};

/// A successful answer, or a final input rejection (with the JSON that caused it).
#[derive(Debug)]
pub(crate) enum Checked {
    Ok(Value),
    Rejected(Rejection, Value),
}

/// Longest vendor error code kept in an error.
const MAX_CODE: usize = 64;

/// The fixed reasons a vendor error carries instead of the vendor's message. Vendors echo their
/// input in messages ("no record for ERIKA MUSTERMANN, C01X00T47"), and an error's text reaches
/// the INFO log and the task's `providers` section: no vendor text is ever kept.
const REASON_RETRYABLE: &str = "the vendor asked for a retry";
const REASON_REFUSED: &str = "the vendor refused the request";
const REASON_ENVELOPE: &str = "the vendor answered with an error envelope";

/// The vendor's error code as an error keeps it: a short identifier (letters, digits, `_ . : -`,
/// at most [`MAX_CODE`] characters; inner spaces only in a code an error rule of the adapter
/// names, such as `No face`); anything else, as any body text, is replaced by `HTTP_<status>`.
pub(crate) fn safe_code(code: Option<&str>, status: u16, named_by_rule: bool) -> String {
    let ok = |c: &str| {
        !c.is_empty()
            && c.len() <= MAX_CODE
            && c.trim() == c
            && c.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | ':' | '-') || (named_by_rule && ch == ' '))
    };
    match code {
        Some(c) if ok(c) => c.to_string(),
        _ => format!("HTTP_{status}"),
    }
}

/// Classifies an answer of `tpl`: success (JSON), a final rejection, or an error.
pub(crate) fn check(spec: &ValidatedHttpSpec, tpl: &RequestTpl, raw: RawResponse) -> Result<Checked, ProviderError> {
    let json: Option<Value> = serde_json::from_slice(&raw.body).ok();
    let ok_status = (200..300).contains(&raw.status);
    let Some(json) = json else {
        if ok_status {
            return Err(ProviderError::Decode(format!("HTTP {} body is not JSON", raw.status)));
        }
        return Err(status_error(raw.status, raw.retry_after));
    };
    let success = spec.success.iter().chain(tpl.success.iter());
    if !ok_status || !success.clone().all(|c| holds(c, &json)) {
        return match classify_error(spec, raw.status, raw.retry_after, &json) {
            ErrorOutcome::Rejected(r) => Ok(Checked::Rejected(r, json)),
            ErrorOutcome::Error(e) => Err(e),
        };
    }
    if let Some((_, rejection)) = tpl.reject.iter().find(|(c, _)| holds(c, &json)) {
        return Ok(Checked::Rejected(rejection.clone(), json));
    }
    Ok(Checked::Ok(json))
}

/// A failed answer outside the request/response cycle (token endpoints) as an error.
pub(crate) fn error_of(spec: &ValidatedHttpSpec, raw: &RawResponse) -> ProviderError {
    match serde_json::from_slice::<Value>(&raw.body) {
        Ok(json) => match classify_error(spec, raw.status, raw.retry_after, &json) {
            ErrorOutcome::Error(e) => e,
            // "Rejected" only makes sense for a sub-call's input, not for a token.
            ErrorOutcome::Rejected(r) => {
                ProviderError::Vendor { code: r.code.as_str().to_string(), message: String::new(), retryable: false }
            }
        },
        Err(_) if (200..300).contains(&raw.status) => ProviderError::Decode("token answer is not JSON".into()),
        Err(_) => status_error(raw.status, raw.retry_after),
    }
}

enum ErrorOutcome {
    Rejected(Rejection),
    Error(ProviderError),
}

pub(crate) fn status_error(status: u16, retry_after: Option<Duration>) -> ProviderError {
    if status == 429 {
        ProviderError::RateLimited { retry_after }
    } else {
        ProviderError::Http { status, retry_after }
    }
}

/// Applies the vendor's error table; unmatched errors follow the HTTP status.
fn classify_error(spec: &ValidatedHttpSpec, status: u16, retry_after: Option<Duration>, json: &Value) -> ErrorOutcome {
    let code = spec.errors.code_pointer.as_deref().and_then(|p| select(json, p)).and_then(as_text);
    let rule = matching_rule(spec, status, code.as_deref());
    let named = rule.is_some_and(|r| r.code.is_some() || r.prefix.is_some() || r.suffix.is_some());
    let code_text = safe_code(code.as_deref(), status, named);
    let vendor = |reason: &str, retryable| {
        ErrorOutcome::Error(ProviderError::Vendor { code: code_text.clone(), message: reason.to_string(), retryable })
    };
    match rule.map(|r| (r.action, r.issue)) {
        Some((ErrorAction::Reject, Some(issue))) => ErrorOutcome::Rejected(Rejection::new(issue)),
        Some((ErrorAction::Retry | ErrorAction::Reauthenticate, _)) => vendor(REASON_RETRYABLE, true),
        Some((ErrorAction::RateLimited, _)) => ErrorOutcome::Error(ProviderError::RateLimited { retry_after }),
        Some((ErrorAction::Fatal, _)) | Some((ErrorAction::Reject, None)) => vendor(REASON_REFUSED, false),
        None if (200..300).contains(&status) => vendor(REASON_ENVELOPE, false),
        None => ErrorOutcome::Error(status_error(status, retry_after)),
    }
}

/// The first error rule matching the status and code.
fn matching_rule<'a>(spec: &'a ValidatedHttpSpec, status: u16, code: Option<&str>) -> Option<&'a ErrorRule> {
    spec.errors.rules.iter().find(|r| {
        r.status.is_none_or(|s| s == status)
            && r.code.as_deref().is_none_or(|c| code == Some(c))
            && r.prefix.as_deref().is_none_or(|p| code.is_some_and(|c| c.starts_with(p)))
            && r.suffix.as_deref().is_none_or(|p| code.is_some_and(|c| c.ends_with(p)))
    })
}

/// Whether a failed answer says the token was refused (HTTP 401, or a `reauthenticate` rule).
pub(crate) fn refuses_token(spec: &ValidatedHttpSpec, raw: &RawResponse) -> bool {
    if raw.status == 401 {
        return true;
    }
    let Ok(json) = serde_json::from_slice::<Value>(&raw.body) else { return false };
    let code = spec.errors.code_pointer.as_deref().and_then(|p| select(&json, p)).and_then(as_text);
    matching_rule(spec, raw.status, code.as_deref()).is_some_and(|r| r.action == ErrorAction::Reauthenticate)
}

// === Field extraction ===

fn decode_err(field: &str, f: &FieldSpec, what: &str) -> ProviderError {
    ProviderError::Decode(format!("{field} at `{}`: {what}", f.pointer))
}

/// The value at the pointer (or the first present fallback) after `map`. `None` when absent,
/// null or an empty string.
fn lookup(json: &Value, f: &FieldSpec, field: &str) -> Result<Option<Value>, ProviderError> {
    let present = |p: &String| {
        select(json, p).filter(|v| !v.is_null() && !matches!(v, Value::String(s) if s.trim().is_empty()))
    };
    let Some(v) = std::iter::once(&f.pointer).chain(f.or.iter()).find_map(present) else { return Ok(None) };
    let joined;
    let v = match (&f.join, v) {
        (Some(sep), Value::Array(items)) => {
            let parts: Vec<String> = items
                .iter()
                .filter_map(|item| match &f.item {
                    Some(p) => select(item, p),
                    None => Some(item),
                })
                .filter_map(as_text)
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect();
            if parts.is_empty() {
                return Ok(None);
            }
            joined = Value::String(parts.join(sep));
            &joined
        }
        _ => v,
    };
    let Some(map) = &f.map else { return Ok(Some(v.clone())) };
    let key = as_text(v).ok_or_else(|| decode_err(field, f, "mapped value is not a scalar"))?;
    match map.get(&key) {
        Some(mapped) => Ok(Some(toml_to_json(mapped))),
        None if f.unmapped == Unmapped::Absent => Ok(None),
        // The value is not in the table: refuse to guess a verdict.
        None => Err(decode_err(field, f, "value not in the adapter's `map`")),
    }
}

fn to_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// (raw, scaled) number.
fn number(json: &Value, f: &FieldSpec, field: &str) -> Result<Option<(f64, f64)>, ProviderError> {
    let Some(v) = lookup(json, f, field)? else { return Ok(None) };
    let raw = to_number(&v).ok_or_else(|| decode_err(field, f, "not a number"))?;
    let mut scaled = raw * f.scale.unwrap_or(1.0);
    if f.invert {
        scaled = 1.0 - scaled;
    }
    // Rounded to 12 decimals so `70 * 0.01` is 0.7, not 0.7000000000000001.
    let scaled = (scaled * 1e12).round() / 1e12;
    Ok(Some((raw, scaled)))
}

fn unit_number(json: &Value, f: &FieldSpec, field: &str) -> Result<Option<(f64, f64)>, ProviderError> {
    let n = number(json, f, field)?;
    if let Some((_, v)) = n {
        if !(-1e-9..=1.0 + 1e-9).contains(&v) {
            return Err(decode_err(field, f, "outside 0..1 after scaling (check `scale`)"));
        }
    }
    Ok(n.map(|(r, v)| (r, v.clamp(0.0, 1.0))))
}

fn boolean(json: &Value, f: &FieldSpec, field: &str) -> Result<Option<bool>, ProviderError> {
    let Some(v) = lookup(json, f, field)? else { return Ok(None) };
    match &v {
        Value::Bool(b) => Ok(Some(*b)),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        _ => Err(decode_err(field, f, "not a boolean (map it with `map`)")),
    }
}

fn text(json: &Value, f: &Option<FieldRef>, field: &str) -> Result<Option<String>, ProviderError> {
    let Some(FieldRef(f)) = f else { return Ok(None) };
    Ok(lookup(json, f, field)?.and_then(|v| as_text(&v)).map(|s| s.trim().to_string()).filter(|s| !s.is_empty()))
}

fn date(json: &Value, f: &Option<FieldRef>, field: &str) -> Result<Option<PartialDate>, ProviderError> {
    let Some(FieldRef(f)) = f else { return Ok(None) };
    let Some(v) = lookup(json, f, field)? else { return Ok(None) };
    let format = f.date_format.as_deref().unwrap_or("%Y-%m-%d");
    if format == "parts" {
        let part = |k: &str| v.get(k).and_then(to_number).map(|n| n as i64);
        let d = PartialDate {
            year: part("year").and_then(|y| i32::try_from(y).ok()),
            month: part("month").and_then(|m| u32::try_from(m).ok()).filter(|m| (1..=12).contains(m)),
            day: part("day").and_then(|d| u32::try_from(d).ok()).filter(|d| (1..=31).contains(d)),
        };
        return Ok((d != PartialDate::default()).then_some(d));
    }
    let s = as_text(&v).ok_or_else(|| decode_err(field, f, "date is not text"))?;
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    use chrono::Datelike as _;
    let parsed = chrono::NaiveDate::parse_from_str(s, format)
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, format).map(|dt| dt.date()))
        .map_err(|_| decode_err(field, f, "date does not match `date_format`"))?;
    Ok(Some(PartialDate::ymd(parsed.year(), parsed.month(), parsed.day())))
}

fn score_and_decision(
    json: &Value,
    score: &FieldRef,
    threshold: &Option<ThresholdRef>,
    decision: &Option<FieldRef>,
) -> Result<(Score, bool), ProviderError> {
    let (raw, value) = unit_number(json, &score.0, "score")?.ok_or_else(|| decode_err("score", &score.0, "missing"))?;
    let threshold = match threshold {
        None => None,
        Some(ThresholdRef::Constant(c)) => Some(*c),
        Some(ThresholdRef::Field(f)) => {
            Some(unit_number(json, f, "threshold")?.ok_or_else(|| decode_err("threshold", f, "missing"))?.1)
        }
    };
    let decided = match decision {
        Some(FieldRef(f)) => boolean(json, f, "decision")?.ok_or_else(|| decode_err("decision", f, "missing"))?,
        None => {
            let t = threshold.ok_or_else(|| ProviderError::Config("no threshold and no decision".into()))?;
            value >= t
        }
    };
    Ok((Score { value, threshold, raw: Some(raw) }, decided))
}

/// Reads a step's captures (text values) from its answer; a missing one is a decode error.
pub(crate) fn capture(json: &Value, f: &FieldSpec, name: &str) -> Result<String, ProviderError> {
    lookup(json, f, name)?
        .and_then(|v| as_text(&v))
        .ok_or_else(|| decode_err(&format!("capture `{name}`"), f, "missing"))
}

/// Maps a successful answer to the unified verdict; `call` supplies the pages a portrait box is
/// cropped from.
pub(crate) fn map_answer(mapping: &Mapping, json: &Value, call: Option<&SubCall>) -> Result<Verdict, ProviderError> {
    match mapping {
        Mapping::Liveness(m) => {
            let (score, is_live) = score_and_decision(json, &m.score, &m.threshold, &m.decision)?;
            let quality = match &m.quality {
                Some(q) => unit_number(json, &q.0, "quality")?.map(|(_, v)| v),
                None => None,
            };
            Ok(Verdict::Liveness(LivenessAnswer { is_live, score, quality }))
        }
        Mapping::Compare(m) => {
            let (score, is_match) = score_and_decision(json, &m.score, &m.threshold, &m.decision)?;
            Ok(Verdict::Compare(CompareAnswer { is_match, score }))
        }
        Mapping::Ocr(m) => {
            let mut fields = DocumentFields {
                format: text(json, &m.format, "format")?,
                document_code: text(json, &m.document_code, "document_code")?,
                issuing_state: text(json, &m.issuing_state, "issuing_state")?,
                nationality: text(json, &m.nationality, "nationality")?,
                surname: text(json, &m.surname, "surname")?,
                given_names: text(json, &m.given_names, "given_names")?,
                document_number: text(json, &m.document_number, "document_number")?,
                personal_number: text(json, &m.personal_number, "personal_number")?,
                date_of_birth: date(json, &m.date_of_birth, "date_of_birth")?,
                date_of_expiry: date(json, &m.date_of_expiry, "date_of_expiry")?,
                date_of_issue: date(json, &m.date_of_issue, "date_of_issue")?,
                sex: text(json, &m.sex, "sex")?,
                ..DocumentFields::default()
            };
            for f in &m.mrz_lines {
                if let Some(lines) = text(json, &Some(f.clone()), "mrz_lines")? {
                    fields.mrz_lines.extend(
                        lines.split(['\n', '^']).map(|l| l.trim().to_string()).filter(|l| !l.is_empty()),
                    );
                }
            }
            for (name, f) in &m.checks {
                if let Some(b) = boolean(json, &f.0, "checks")? {
                    fields.checks.insert(name.clone(), b);
                }
            }
            if let Some(f) = &m.valid {
                fields.valid = boolean(json, &f.0, "valid")?;
            }
            if let Some(f) = &m.confidence {
                fields.confidence = unit_number(json, &f.0, "confidence")?.map(|(_, v)| v);
            }
            let portrait = match (&m.portrait, &m.portrait_box) {
                (Some(f), _) => text(json, &Some(f.clone()), "portrait")?.map(|s| decode_portrait(&s, &f.0)).transpose()?,
                (None, Some(b)) => crop_portrait(json, b, call)?,
                (None, None) => None,
            };
            Ok(Verdict::Ocr(OcrAnswer { fields, portrait }))
        }
    }
}

fn decode_portrait(s: &str, f: &FieldSpec) -> Result<Bytes, ProviderError> {
    let data = s.split_once(";base64,").map_or(s, |(_, d)| d);
    // Decoded where the cleaned text lies (the bytes are shorter than their base64): one copy.
    let mut buf: Vec<u8> = data.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let len = base64_simd::STANDARD
        .decode_inplace(&mut buf)
        .map_err(|_| decode_err("portrait", f, "not base64"))?
        .len();
    buf.truncate(len);
    Ok(Bytes::from(buf))
}

/// Crops the box from its page and re-encodes it as JPEG. An absent box is no portrait.
fn crop_portrait(json: &Value, b: &BoxSpec, call: Option<&SubCall>) -> Result<Option<Bytes>, ProviderError> {
    let Some(v) = select(json, &b.pointer).filter(|v| !v.is_null()) else { return Ok(None) };
    let bad = |what: &str| ProviderError::Decode(format!("portrait_box at `{}`: {what}", b.pointer));
    let num = |v: Option<&Value>| v.and_then(to_number);
    // (left, top, right, bottom) in the box's own units.
    let (l, t, r, btm) = match b.format {
        BoxFormat::Vertices => {
            let pts: Vec<(f64, f64)> = v
                .as_array()
                .ok_or_else(|| bad("not a list of vertices"))?
                .iter()
                // Document AI omits a zero coordinate.
                .map(|p| (num(p.get("x")).unwrap_or(0.0), num(p.get("y")).unwrap_or(0.0)))
                .collect();
            if pts.is_empty() {
                return Err(bad("no vertices"));
            }
            let fold = |f: fn(f64, f64) -> f64, i: fn(&(f64, f64)) -> f64, init: f64| pts.iter().map(i).fold(init, f);
            (
                fold(f64::min, |p| p.0, f64::INFINITY),
                fold(f64::min, |p| p.1, f64::INFINITY),
                fold(f64::max, |p| p.0, f64::NEG_INFINITY),
                fold(f64::max, |p| p.1, f64::NEG_INFINITY),
            )
        }
        BoxFormat::Ltwh => {
            let g = |k: &str| num(v.get(k)).ok_or_else(|| bad("needs Left, Top, Width, Height"));
            let (l, t) = (g("Left")?, g("Top")?);
            (l, t, l + g("Width")?, t + g("Height")?)
        }
    };
    let page = image_for(call, b.page)?.ok_or_else(|| bad("the page is not in the request"))?;
    let img = kycgate_vision::decode::decode_image(&page.bytes, &kycgate_vision::decode::DecodeLimits::default())
        .map_err(|e| ProviderError::Decode(format!("page image for the portrait crop: {e}")))?;
    let (w, h) = (img.width() as f64, img.height() as f64);
    let (sx, sy) = if b.normalized { (w, h) } else { (1.0, 1.0) };
    let x0 = (l * sx).floor().clamp(0.0, w);
    let y0 = (t * sy).floor().clamp(0.0, h);
    let x1 = (r * sx).ceil().clamp(0.0, w);
    let y1 = (btm * sy).ceil().clamp(0.0, h);
    if x1 - x0 < 1.0 || y1 - y0 < 1.0 {
        return Err(bad("empty box"));
    }
    let crop = image::imageops::crop_imm(&img, x0 as u32, y0 as u32, (x1 - x0) as u32, (y1 - y0) as u32).to_image();
    let jpeg = kycgate_vision::decode::encode_jpeg(&crop, 90)
        .map_err(|e| ProviderError::Decode(format!("portrait crop cannot be encoded: {e}")))?;
    Ok(Some(Bytes::from(jpeg)))
}

/// Parses `Retry-After`: delay seconds, or an HTTP date.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::spec::Condition;
    use serde_json::json;

    fn field(p: &str) -> FieldSpec {
        FieldSpec { pointer: p.into(), ..FieldSpec::default() }
    }

    #[test]
    fn vendor_codes_are_short_identifiers_never_text() {
        assert_eq!(safe_code(Some("AuthFailure.SignatureFailure"), 400, false), "AuthFailure.SignatureFailure");
        assert_eq!(safe_code(Some("No face"), 200, true), "No face");
        assert_eq!(safe_code(Some("No record for ERIKA MUSTERMANN"), 404, false), "HTTP_404");
        assert_eq!(safe_code(Some("x\ny"), 400, true), "HTTP_400");
        assert_eq!(safe_code(Some(&"A".repeat(65)), 500, false), "HTTP_500");
        assert_eq!(safe_code(None, 502, false), "HTTP_502");
    }

    #[test]
    fn portraits_decode_from_plain_wrapped_or_data_url_base64() {
        let jpeg = b"\xff\xd8\xff\xe0 portrait bytes \xff\xd9".to_vec();
        let text = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &jpeg);
        let f = field("/portrait");
        assert_eq!(decode_portrait(&text, &f).unwrap(), jpeg);
        // MIME-style line breaks, as some vendors wrap it.
        let (head, tail) = text.split_at(8);
        assert_eq!(decode_portrait(&format!("{head}\r\n{tail}\n"), &f).unwrap(), jpeg);
        assert_eq!(decode_portrait(&format!("data:image/jpeg;base64,{text}"), &f).unwrap(), jpeg);
        for bad in ["not base64!", &text[1..], "====", "\u{e9}t\u{e9}"] {
            assert!(decode_portrait(bad, &f).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dates_in_vendor_formats() {
        let j = json!({"a": "1991-09-24", "b": "910924", "c": "09/24/1991", "d": {"year": 1991, "month": 9},
                       "e": "2027-01-14T00:00:00"});
        let check = |p: &str, fmt: &str| {
            date(&j, &Some(FieldRef(FieldSpec { date_format: Some(fmt.into()), ..field(p) })), "d").unwrap()
        };
        assert_eq!(check("/a", "%Y-%m-%d"), Some(PartialDate::ymd(1991, 9, 24)));
        assert_eq!(check("/b", "%y%m%d"), Some(PartialDate::ymd(1991, 9, 24)));
        assert_eq!(check("/c", "%m/%d/%Y"), Some(PartialDate::ymd(1991, 9, 24)));
        assert_eq!(check("/d", "parts"), Some(PartialDate { year: Some(1991), month: Some(9), day: None }));
        assert_eq!(check("/e", "%Y-%m-%dT%H:%M:%S"), Some(PartialDate::ymd(2027, 1, 14)));
        assert_eq!(check("/missing", "%Y-%m-%d"), None);
    }

    #[test]
    fn scaled_score_must_land_in_unit_range() {
        let j = json!({"s": 88.5, "t": "70"});
        let scaled = FieldSpec { scale: Some(0.01), ..field("/s") };
        assert_eq!(unit_number(&j, &scaled, "s").unwrap(), Some((88.5, 0.885)));
        assert!(matches!(unit_number(&j, &field("/s"), "s"), Err(ProviderError::Decode(_))));
        let t = FieldSpec { scale: Some(0.01), ..field("/t") };
        assert_eq!(unit_number(&j, &t, "t").unwrap(), Some((70.0, 0.7)));
    }

    #[test]
    fn enum_map_refuses_unknown_values() {
        let mut map = std::collections::BTreeMap::new();
        map.insert("Real".to_string(), toml::Value::Boolean(true));
        let f = FieldSpec { map: Some(map), ..field("/r") };
        assert_eq!(boolean(&json!({"r": "Real"}), &f, "d").unwrap(), Some(true));
        assert!(boolean(&json!({"r": "Maybe"}), &f, "d").is_err());
        let lenient = FieldSpec { unmapped: crate::providers::spec::Unmapped::Absent, ..f };
        assert_eq!(boolean(&json!({"r": "Maybe"}), &lenient, "d").unwrap(), None);
    }

    #[test]
    fn conditions() {
        let j = json!({"code": 28, "list": [], "msg": "x"});
        let c = |equals: Option<toml::Value>, present: Option<bool>, empty: Option<bool>, p: &str| Condition {
            pointer: p.into(),
            equals,
            one_of: None,
            present,
            empty,
        };
        assert!(holds(&c(Some(toml::Value::Integer(28)), None, None, "/code"), &j));
        assert!(holds(&c(Some(toml::Value::String("28".into())), None, None, "/code"), &j));
        assert!(holds(&c(None, Some(false), None, "/nope"), &j));
        assert!(holds(&c(None, None, Some(true), "/list"), &j));
        assert!(!holds(&c(None, None, Some(true), "/msg"), &j));
    }

    #[test]
    fn arrays_joined_into_text() {
        let j = json!({"names": [{"value": "ANNA"}, {"value": null}, {"value": "MARIA"}], "empty": []});
        let f = FieldSpec { join: Some(" ".into()), item: Some("/value".into()), ..field("/names") };
        assert_eq!(text(&j, &Some(FieldRef(f.clone())), "n").unwrap().as_deref(), Some("ANNA MARIA"));
        assert_eq!(text(&j, &Some(FieldRef(FieldSpec { pointer: "/empty".into(), ..f })), "n").unwrap(), None);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("1"), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
