//! Consensus: combine several providers' answers to one sub-call into one answer. Face compare
//! follows a policy (all / any / mean); document OCR compares field by field and never picks
//! silently: a disagreement is listed (field names only) and lowers the confidence.
//!
//! Pure: takes answers, returns an answer. A rejection (e.g. no face) from any provider is an
//! input problem and wins; the combined answer is named `a+b` and carries each raw payload.

use serde_json::{Map, Value};

use super::config::ConsensusPolicy;
use crate::providers::{Answer, CompareAnswer, DocumentFields, OcrAnswer, Score, Verdict};

/// How much a disagreement lowers the OCR confidence.
const DISAGREEMENT_CONFIDENCE_FACTOR: f64 = 0.5;

/// Combines `answers` (in chain order). `None` when there is nothing to combine.
pub fn combine(policy: ConsensusPolicy, answers: Vec<Answer>) -> Option<Answer> {
    if answers.len() <= 1 {
        return answers.into_iter().next();
    }
    if let Some(rejected) = answers.iter().find(|a| matches!(a.verdict, Verdict::Rejected(_))) {
        return Some(rejected.clone());
    }
    let provider = answers.iter().map(|a| a.provider.as_str()).collect::<Vec<_>>().join("+");
    let mut raw = Map::new();
    for a in &answers {
        raw.insert(a.provider.clone(), a.raw.clone().unwrap_or(Value::Null));
    }
    let verdict = match &answers[0].verdict {
        Verdict::Compare(_) => {
            let scores: Vec<&CompareAnswer> = answers
                .iter()
                .filter_map(|a| match &a.verdict {
                    Verdict::Compare(c) => Some(c),
                    _ => None,
                })
                .collect();
            Verdict::Compare(compare(policy, &scores))
        }
        Verdict::Ocr(_) => {
            let reads: Vec<&OcrAnswer> = answers
                .iter()
                .filter_map(|a| match &a.verdict {
                    Verdict::Ocr(o) => Some(o),
                    _ => None,
                })
                .collect();
            Verdict::Ocr(ocr(&reads))
        }
        // Liveness consensus is not offered (config validation refuses it); keep the first.
        other => other.clone(),
    };
    Some(Answer { provider, verdict, raw: Some(Value::Object(raw)) })
}

fn compare(policy: ConsensusPolicy, answers: &[&CompareAnswer]) -> CompareAnswer {
    let by_value = |a: &&&CompareAnswer, b: &&&CompareAnswer| a.score.value.total_cmp(&b.score.value);
    match policy {
        ConsensusPolicy::All => {
            let weakest = answers.iter().min_by(by_value).map(|a| a.score.clone());
            CompareAnswer { is_match: answers.iter().all(|a| a.is_match), score: weakest.unwrap_or_else(zero) }
        }
        ConsensusPolicy::Any => {
            let strongest = answers.iter().max_by(by_value).map(|a| a.score.clone());
            CompareAnswer { is_match: answers.iter().any(|a| a.is_match), score: strongest.unwrap_or_else(zero) }
        }
        ConsensusPolicy::Mean => {
            let n = answers.len().max(1) as f64;
            let value = answers.iter().map(|a| a.score.value).sum::<f64>() / n;
            let thresholds: Vec<f64> = answers.iter().filter_map(|a| a.score.threshold).collect();
            // Without every provider's threshold, the mean of their decisions decides.
            let (threshold, is_match) = if thresholds.len() == answers.len() {
                let t = thresholds.iter().sum::<f64>() / n;
                (Some(t), value >= t)
            } else {
                (None, answers.iter().filter(|a| a.is_match).count() * 2 > answers.len())
            };
            CompareAnswer { is_match, score: Score { value, threshold, raw: None } }
        }
    }
}

fn zero() -> Score {
    Score { value: 0.0, threshold: None, raw: None }
}

/// The first read, completed with fields only later reads have, and every field on which two
/// reads differ listed in `disagreements`.
fn ocr(reads: &[&OcrAnswer]) -> OcrAnswer {
    let Some(first) = reads.first() else {
        return OcrAnswer { fields: DocumentFields::default(), portrait: None };
    };
    let mut fields = first.fields.clone();
    let mut portrait = first.portrait.clone();
    let mut disagree: Vec<String> = Vec::new();
    let norm = |s: &str| s.trim().to_ascii_uppercase().replace(['<', ' '], "");
    for other in &reads[1..] {
        let o = &other.fields;
        let texts: [(&str, &mut Option<String>, &Option<String>); 7] = [
            ("document_number", &mut fields.document_number, &o.document_number),
            ("surname", &mut fields.surname, &o.surname),
            ("given_names", &mut fields.given_names, &o.given_names),
            ("nationality", &mut fields.nationality, &o.nationality),
            ("issuing_state", &mut fields.issuing_state, &o.issuing_state),
            ("sex", &mut fields.sex, &o.sex),
            ("personal_number", &mut fields.personal_number, &o.personal_number),
        ];
        for (name, mine, theirs) in texts {
            match (mine.as_deref(), theirs.as_deref()) {
                (Some(a), Some(b)) if norm(a) != norm(b) => disagree.push(name.to_string()),
                (None, Some(b)) => *mine = Some(b.to_string()),
                _ => {}
            }
        }
        let dates = [
            ("date_of_birth", &mut fields.date_of_birth, &o.date_of_birth),
            ("date_of_expiry", &mut fields.date_of_expiry, &o.date_of_expiry),
            ("date_of_issue", &mut fields.date_of_issue, &o.date_of_issue),
        ];
        for (name, mine, theirs) in dates {
            match (mine.as_ref(), theirs.as_ref()) {
                (Some(a), Some(b)) if a != b => disagree.push(name.to_string()),
                (None, Some(b)) => *mine = Some(*b),
                _ => {}
            }
        }
        if portrait.is_none() {
            portrait = other.portrait.clone();
        }
    }
    disagree.sort();
    disagree.dedup();
    if !disagree.is_empty() {
        fields.confidence = Some(fields.confidence.unwrap_or(1.0) * DISAGREEMENT_CONFIDENCE_FACTOR);
    }
    fields.disagreements = disagree;
    OcrAnswer { fields, portrait }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{IssueCode, PartialDate, Rejection};

    fn cmp(provider: &str, is_match: bool, value: f64) -> Answer {
        Answer {
            provider: provider.into(),
            verdict: Verdict::Compare(CompareAnswer { is_match, score: Score { value, threshold: Some(0.5), raw: None } }),
            raw: Some(serde_json::json!({ "v": value })),
        }
    }

    fn is_match(a: &Option<Answer>) -> bool {
        matches!(a.as_ref().map(|a| &a.verdict), Some(Verdict::Compare(c)) if c.is_match)
    }

    #[test]
    fn compare_policies() {
        let two = || vec![cmp("a", true, 0.9), cmp("b", false, 0.3)];
        assert!(!is_match(&combine(ConsensusPolicy::All, two())));
        assert!(is_match(&combine(ConsensusPolicy::Any, two())));
        let mean = combine(ConsensusPolicy::Mean, two()).expect("answer");
        assert_eq!(mean.provider, "a+b");
        assert!(matches!(mean.verdict, Verdict::Compare(ref c) if c.is_match && (c.score.value - 0.6).abs() < 1e-9));
        assert_eq!(mean.raw.expect("raw")["b"]["v"], 0.3);
    }

    #[test]
    fn a_rejection_wins() {
        let rej = Answer { provider: "b".into(), verdict: Verdict::Rejected(Rejection::new(IssueCode::FaceNotFound)), raw: None };
        let got = combine(ConsensusPolicy::Any, vec![cmp("a", true, 0.9), rej]).expect("answer");
        assert!(matches!(got.verdict, Verdict::Rejected(_)));
    }

    #[test]
    fn ocr_disagreement_is_flagged_and_lowers_confidence() {
        let read = |p: &str, number: &str, birth: Option<PartialDate>| Answer {
            provider: p.into(),
            verdict: Verdict::Ocr(OcrAnswer {
                fields: DocumentFields {
                    document_number: Some(number.into()),
                    surname: Some("ERIKSSON".into()),
                    date_of_birth: birth,
                    confidence: Some(0.9),
                    ..Default::default()
                },
                portrait: None,
            }),
            raw: None,
        };
        let same = combine(ConsensusPolicy::All, vec![read("a", "L898902C3", None), read("b", "L898902C3", Some(PartialDate::ymd(1974, 8, 12)))]);
        let Some(Verdict::Ocr(o)) = same.map(|a| a.verdict) else { panic!("ocr") };
        assert!(o.fields.disagreements.is_empty());
        assert_eq!(o.fields.date_of_birth, Some(PartialDate::ymd(1974, 8, 12)), "filled from the second read");
        assert_eq!(o.fields.confidence, Some(0.9));

        let differ = combine(ConsensusPolicy::All, vec![read("a", "L898902C3", None), read("b", "L898902C8", None)]);
        let Some(Verdict::Ocr(o)) = differ.map(|a| a.verdict) else { panic!("ocr") };
        assert_eq!(o.fields.disagreements, ["document_number"]);
        assert_eq!(o.fields.document_number.as_deref(), Some("L898902C3"), "the first read is kept, flagged");
        assert_eq!(o.fields.confidence, Some(0.45));
    }
}
