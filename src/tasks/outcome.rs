//! How a task ended, as a closed set. Produced by the pipeline and the worker (and by the
//! stores for a task that can never run), stored with the record, and rendered to Progeny's
//! `result` object (status code, wording) in one place: `api::result`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::TaskStatus;

/// The Progeny `data` sections a run produced (`document`, `liveness`, `compare`, `details`,
/// `issues`, `providers`, `extended`, …), built by `pipeline::merge`.
pub type ResultData = Map<String, Value>;

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TaskOutcome {
    /// Every check answered and none raised an issue.
    Passed { data: ResultData },
    /// Every check answered, and some raised an issue about the input (no face, MRZ checksum,
    /// face not registered, …), listed under `data.issues`. A failed check, not a failed task.
    Flagged { data: ResultData },
    /// At least one check got no answer from any provider; `data` holds what did answer.
    Unanswered { data: ResultData },
    /// The task could not run at all.
    Failed { reason: FailureReason },
}

/// Why a task could not run at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// Its input expired before a worker claimed it.
    InputExpired,
    /// Its stored input could not be decoded.
    InputCorrupt,
    /// The task store failed while the task ran; the text says how.
    Store(String),
    /// The run panicked.
    Panicked,
}

impl TaskOutcome {
    /// The task's final status: a task whose checks all answered succeeded, whatever they said.
    pub fn status(&self) -> TaskStatus {
        match self {
            Self::Passed { .. } | Self::Flagged { .. } => TaskStatus::Success,
            Self::Unanswered { .. } | Self::Failed { .. } => TaskStatus::Failure,
        }
    }

    /// The data sections of a run, if it got that far.
    pub fn data(&self) -> Option<&ResultData> {
        match self {
            Self::Passed { data } | Self::Flagged { data } | Self::Unanswered { data } => Some(data),
            Self::Failed { .. } => None,
        }
    }
}

impl From<FailureReason> for TaskOutcome {
    fn from(reason: FailureReason) -> Self {
        Self::Failed { reason }
    }
}
