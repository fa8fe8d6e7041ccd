//! The table `kycgate models fetch` ends with: per model, ready or missing, the source that
//! produced it, and otherwise why each source that could have produced it did not.

use std::fmt::Write as _;

use crate::manifest::Source;
use crate::store::{FetchOutcome, ModelError, SourceAttempt, SourceFailure};

/// `ready` or `missing`, the word the table and the progress lines use.
pub fn state_word(outcome: &FetchOutcome) -> &'static str {
    if outcome.result.is_ok() {
        "ready"
    } else {
        "missing"
    }
}

/// Why a model is missing, in one line: the failures of the sources that could have produced it.
/// A model dir or cache that simply does not hold the file is the normal state of a fresh
/// machine, so those are named only when nothing else was tried.
pub fn why_missing(err: &ModelError) -> String {
    let attempts = err.attempts();
    if attempts.is_empty() {
        return err.to_string();
    }
    let expected_miss = |a: &&SourceAttempt| {
        matches!(a.source, Source::Dir | Source::Cache)
            && matches!(a.failure, SourceFailure::NoModelDir | SourceFailure::NotFound(_))
    };
    let telling: Vec<&SourceAttempt> = attempts.iter().filter(|a| !expected_miss(a)).collect();
    let shown: Vec<&SourceAttempt> = if telling.is_empty() { attempts.iter().collect() } else { telling };
    shown
        .iter()
        .map(|a| format!("{}: {}", a.source, a.failure))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The closing table, one row per model in manifest order, then a count line.
pub fn table(outcomes: &[FetchOutcome]) -> String {
    let rows: Vec<[String; 4]> = outcomes
        .iter()
        .map(|o| match &o.result {
            Ok(f) => [o.name.clone(), state_word(o).into(), f.source.to_string(), String::new()],
            Err(e) => [o.name.clone(), state_word(o).into(), "-".into(), why_missing(e)],
        })
        .collect();
    let header = ["model", "state", "source", "why not"];
    let width = |i: usize| rows.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    let mut out = String::new();
    for r in std::iter::once(header.map(String::from)).chain(rows) {
        let line = format!("{:<w0$}  {:<w1$}  {:<w2$}  {}", r[0], r[1], r[2], r[3]);
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let ready = outcomes.iter().filter(|o| o.result.is_ok()).count();
    let _ = writeln!(out, "{ready} of {} models ready", outcomes.len());
    out
}
