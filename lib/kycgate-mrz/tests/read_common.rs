//! Shared helpers for the MRZ read tests: locating the evaluation data the CI provides.
#![allow(dead_code)]

use std::path::PathBuf;

use kycgate_mrz::parse::Today;

/// `$KYCGATE_EVAL_DIR/mrz`, defaulting to `../shared/eval/mrz` beside the repository; panics when missing, since CI provides it.
pub fn mrz_eval_dir() -> PathBuf {
    let base = std::env::var_os("KYCGATE_EVAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/eval"));
    let dir = base.join("mrz");
    assert!(dir.join("gt.tsv").is_file(), "MRZ evaluation data missing at {}", dir.display());
    dir
}

/// A fixed date so two-digit years resolve the same way on every run.
pub fn today() -> Today {
    Today { year: 2026, month: 1, day: 1 }
}
