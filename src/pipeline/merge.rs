//! Turning routed sub-call answers into the Progeny result JSON. Pure: no IO, no clock (the
//! caller passes `today`), so every shape is table-tested.

use chrono::{Datelike, NaiveDate};
use serde_json::{json, Map, Value};

use crate::providers::{CompareAnswer, DocumentFields, IssueCode, LivenessAnswer, PartialDate, Rejection, Verdict};
use crate::routing::{AttemptOutcome, Routed};

/// Collected `issues`: section → code → message.
#[derive(Debug, Default)]
pub struct Issues(Map<String, Value>);

impl Issues {
    pub fn add(&mut self, section: &str, code: &str, message: &str) {
        let entry = self.0.entry(section.to_string()).or_insert_with(|| json!({}));
        if let Some(obj) = entry.as_object_mut() {
            obj.insert(code.to_string(), json!(message));
        }
    }

    pub fn add_rejection(&mut self, section: &str, r: &Rejection) {
        self.add(section, r.code.as_str(), &r.message);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

/// What one sub-call concluded, reduced to what merging needs.
pub enum Outcome<'a, T> {
    Answer(&'a T),
    Rejected(&'a Rejection),
    /// No provider answered (all failed or none configured).
    Failed(String),
}

pub fn liveness_of(r: &Routed) -> Outcome<'_, LivenessAnswer> {
    match r.answer.as_ref().map(|a| &a.verdict) {
        Some(Verdict::Liveness(l)) => Outcome::Answer(l),
        Some(Verdict::Rejected(rej)) => Outcome::Rejected(rej),
        Some(_) => Outcome::Failed("provider answered with the wrong kind of result".into()),
        None => Outcome::Failed(failure_reason(r)),
    }
}

pub fn compare_of(r: &Routed) -> Outcome<'_, CompareAnswer> {
    match r.answer.as_ref().map(|a| &a.verdict) {
        Some(Verdict::Compare(c)) => Outcome::Answer(c),
        Some(Verdict::Rejected(rej)) => Outcome::Rejected(rej),
        Some(_) => Outcome::Failed("provider answered with the wrong kind of result".into()),
        None => Outcome::Failed(failure_reason(r)),
    }
}

fn failure_reason(r: &Routed) -> String {
    r.attempts
        .last()
        .map(|a| format!("{} {}: {}", a.provider, a.outcome, a.reason.clone().unwrap_or_default()))
        .unwrap_or_else(|| "no provider is configured for this check".into())
}

fn provider_of(r: &Routed) -> Option<&str> {
    r.answer.as_ref().map(|a| a.provider.as_str())
}

/// Every provider was passed over because a model it needs is not installed: the check was not
/// performed, which is not a negative verdict.
fn not_performed(r: &Routed) -> bool {
    !r.attempts.is_empty()
        && r.attempts.iter().all(|a| a.outcome == AttemptOutcome::Skipped && a.code == Some(IssueCode::ModelUnavailable))
}

/// The section of a check no provider answered: `MODEL_UNAVAILABLE` with `result: null` when it
/// could not be performed for want of a model, else `PROVIDER_FAILED`.
fn failed_section(r: &Routed, section: &str, why: String, issues: &mut Issues) -> Value {
    if not_performed(r) {
        let code = IssueCode::ModelUnavailable;
        issues.add(section, code.as_str(), code.default_message());
        return json!({ "result": null, "error": code.default_message(), "error_code": code.as_str() });
    }
    issues.add(section, IssueCode::ProviderFailed.as_str(), IssueCode::ProviderFailed.default_message());
    json!({ "result": false, "error": why, "error_code": IssueCode::ProviderFailed.as_str() })
}

/// Progeny's `liveness` object: `{"result", "data": {"score", "quality", "probability"}}`, or
/// `{"result": false, "error", "error_code"}` on an input problem.
pub fn liveness_section(r: &Routed, issues: &mut Issues) -> (Value, bool) {
    match liveness_of(r) {
        Outcome::Answer(l) => {
            let mut data = json!({
                "score": l.score.raw.unwrap_or(l.score.value),
                "probability": l.score.value,
                "threshold": l.score.threshold,
                "provider": provider_of(r),
            });
            if let (Some(q), Some(obj)) = (l.quality, data.as_object_mut()) {
                obj.insert("quality".into(), json!(q));
            }
            (json!({ "result": l.is_live, "data": data }), l.is_live)
        }
        Outcome::Rejected(rej) => {
            issues.add_rejection("liveness", rej);
            (json!({ "result": false, "error": rej.message, "error_code": rej.code.as_str() }), false)
        }
        Outcome::Failed(why) => (failed_section(r, "liveness", why, issues), false),
    }
}

/// Face-compare detail: `{"result", "data": {"score", "threshold", "similarity", "provider"}}`.
pub fn compare_section(r: &Routed, section: &str, issues: &mut Issues) -> (Value, bool) {
    match compare_of(r) {
        Outcome::Answer(c) => (
            json!({
                "result": c.is_match,
                "data": {
                    "score": c.score.value,
                    "threshold": c.score.threshold,
                    "raw_score": c.score.raw,
                    "provider": provider_of(r),
                }
            }),
            c.is_match,
        ),
        Outcome::Rejected(rej) => {
            issues.add_rejection(section, rej);
            (json!({ "result": false, "error": rej.message, "error_code": rej.code.as_str() }), false)
        }
        Outcome::Failed(why) => (failed_section(r, section, why, issues), false),
    }
}

/// `authenticate_face`'s `authentication` object; Progeny gives its numbers as strings.
pub fn authentication_section(c: &CompareAnswer) -> Value {
    let raw = c.score.raw.unwrap_or(c.score.value);
    json!({
        "result": c.is_match,
        "data": {
            "matchScore": format!("{raw:.4}"),
            "scorePercent": format!("{:.1}", c.score.value * 100.0),
            "threshold": c.score.threshold,
        }
    })
}

fn date_str(d: Option<PartialDate>) -> String {
    d.unwrap_or_default().to_string()
}

/// Whole years between `birth` and `today`.
pub fn age(birth: NaiveDate, today: NaiveDate) -> Option<i32> {
    let mut years = today.year() - birth.year();
    if (today.month(), today.day()) < (birth.month(), birth.day()) {
        years -= 1;
    }
    (years >= 0).then_some(years)
}

/// The documented `document` object, plus kycgate's added keys (codes, MRZ, checks).
/// `portrait` is the relative media path when a portrait was stored.
pub fn document_section(
    f: &DocumentFields,
    portrait: Option<(&str, &str)>,
    today: NaiveDate,
) -> Value {
    let birth = f.date_of_birth.and_then(PartialDate::to_naive);
    let expiry = f.date_of_expiry.and_then(PartialDate::to_naive);
    let nationality = f.nationality.as_deref().map(|code| {
        kycgate_mrz::nationality::demonym(code).map(str::to_string).unwrap_or_else(|| code.to_string())
    });
    let mut doc = json!({
        "is_valid": f.valid.unwrap_or(false),
        "is_expired": expiry.is_some_and(|e| e < today),
        "dateOfBirth": date_str(f.date_of_birth),
        "age": birth.and_then(|b| age(b, today)),
        "firstName": f.given_names,
        "lastName": f.surname,
        "dateOfIssue": date_str(f.date_of_issue),
        "dateOfExpiry": date_str(f.date_of_expiry),
        "documentNumber": f.document_number,
        "sex": f.sex,
        "nationality": nationality,
        "portrait": portrait.map(|p| p.0),
        "portrait_url": portrait.map(|p| p.1),
        "nationalityCode": f.nationality,
        "issuingState": f.issuing_state,
        "documentCode": f.document_code,
        "format": f.format,
        "personalNumber": f.personal_number,
        "confidence": f.confidence,
    });
    if let Some(obj) = doc.as_object_mut() {
        if !f.mrz_lines.is_empty() {
            obj.insert("mrz".into(), json!({ "lines": f.mrz_lines, "checks": f.checks }));
        }
        if !f.disagreements.is_empty() {
            obj.insert("disagreements".into(), json!(f.disagreements));
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn ages_count_whole_years() {
        assert_eq!(age(d(1991, 9, 24), d(2021, 9, 23)), Some(29));
        assert_eq!(age(d(1991, 9, 24), d(2021, 9, 24)), Some(30));
        assert_eq!(age(d(2030, 1, 1), d(2021, 9, 24)), None);
    }

    #[test]
    fn document_matches_progeny_shape() {
        let f = DocumentFields {
            surname: Some("PERFILOVA".into()),
            given_names: Some("VALERIA".into()),
            document_number: Some("XX008080".into()),
            nationality: Some("UKR".into()),
            sex: Some("F".into()),
            date_of_birth: Some(PartialDate::ymd(1991, 9, 24)),
            date_of_expiry: Some(PartialDate::ymd(2023, 9, 25)),
            valid: Some(true),
            ..Default::default()
        };
        let v = document_section(&f, Some(("images/services/ocr_passport/a.jpg", "http://h/media/images/services/ocr_passport/a.jpg")), d(2022, 1, 1));
        assert_eq!(v["dateOfBirth"], "1991-9-24");
        assert_eq!(v["dateOfExpiry"], "2023-9-25");
        assert_eq!(v["dateOfIssue"], "None-None-None");
        assert_eq!(v["age"], 30);
        assert_eq!(v["nationality"], "UKRAINIAN");
        assert_eq!(v["nationalityCode"], "UKR");
        assert_eq!(v["is_valid"], true);
        assert_eq!(v["is_expired"], false);
        assert_eq!(v["firstName"], "VALERIA");
        assert_eq!(v["portrait"], "images/services/ocr_passport/a.jpg");
        let expired = document_section(&f, None, d(2024, 1, 1));
        assert_eq!(expired["is_expired"], true);
        assert_eq!(expired["portrait"], Value::Null);
    }
}
