//! The one format a faked vendor is written in: routes, each answering with recorded replies in
//! turn. A vendor's recording (`providers/fixtures/<vendor>/replay.toml`) adds what
//! `kycgate providers test` needs to run it (the sub-call, the adapter's environment, a fixed
//! clock, the expected result); the simulator's scenario (`sim/vendors.toml`) serves recordings
//! by name or routes written inline, with faults on top.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::providers::SubCallKind;

/// Why a recording or scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct LoadError {
    pub path: PathBuf,
    pub reason: String,
}

impl LoadError {
    pub(crate) fn new(path: &Path, reason: impl std::fmt::Display) -> Self {
        Self { path: path.to_path_buf(), reason: reason.to_string() }
    }
}

/// One vendor endpoint: its replies are served in turn, cycling (a 202 then a 200 for a
/// submit-and-poll vendor; one reply for most).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default = "default_method")]
    pub method: String,
    /// Path after the vendor's base URL, e.g. `/facepp/v3/compare`. A trailing `*` matches any
    /// rest.
    pub path: String,
    pub replies: Vec<Reply>,
}

fn default_method() -> String {
    "POST".into()
}

/// One recorded reply.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    #[serde(default = "default_status")]
    pub status: u16,
    /// A recorded answer file, relative to the file this reply is written in.
    pub fixture: Option<PathBuf>,
    /// An inline JSON body (when there is no fixture).
    pub body: Option<serde_json::Value>,
    /// Answer headers; `{base}` in a value becomes the vendor's base URL.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_status() -> u16 {
    200
}

/// A vendor's recording: its routes, and how `kycgate providers test` runs the adapter on them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recording {
    /// The sub-call to run.
    pub call: SubCallKind,
    /// Document pages (1 or 2) for `document_ocr`.
    #[serde(default = "one")]
    pub pages: usize,
    /// The adapter's environment; `{base}` is the simulated vendor's base URL, `{fixtures}` this
    /// vendor's fixture directory. The base URL override is set automatically.
    #[serde(default)]
    pub env: HashMap<String, String>,
    /// Fixed request time (Unix ms) for signatures and token expiry; now by default.
    #[serde(default)]
    pub time_ms: Option<u64>,
    pub route: Vec<Route>,
    /// Subset of the result JSON the replay must produce.
    #[serde(default)]
    pub expect: Option<toml::Value>,
}

fn one() -> usize {
    1
}

impl Recording {
    /// The recording file of `vendor` under `fixtures`.
    pub fn path(fixtures: &Path, vendor: &str) -> PathBuf {
        fixtures.join(vendor).join("replay.toml")
    }

    /// Reads `fixtures/<vendor>/replay.toml`.
    pub fn load(fixtures: &Path, vendor: &str) -> Result<Self, LoadError> {
        let path = Self::path(fixtures, vendor);
        let text = std::fs::read_to_string(&path).map_err(|e| LoadError::new(&path, e))?;
        toml::from_str(&text).map_err(|e| LoadError::new(&path, e))
    }
}
