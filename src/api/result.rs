//! Progeny's task `result` object, rendered from a [`TaskOutcome`]: the one place that knows
//! a task's status codes and failure wording. A leaf: it depends on `tasks` only, so the worker
//! (metric labels) and `verify` render the same way `GET task/` does.

use serde_json::{json, Value};

use crate::tasks::{FailureReason, TaskOutcome};

/// The Progeny `status` of a finished task: 200 all checks answered cleanly, 400 a check raised
/// an issue about the input, 503 a check (or the store) could not be reached, 500 the task
/// could not run.
pub fn status_code(outcome: &TaskOutcome) -> u16 {
    match outcome {
        TaskOutcome::Passed { .. } => 200,
        TaskOutcome::Flagged { .. } => 400,
        TaskOutcome::Unanswered { .. } | TaskOutcome::Failed { reason: FailureReason::Store(_) } => 503,
        TaskOutcome::Failed { .. } => 500,
    }
}

/// `{"status": <code>, "data": {…}}`; a task that could not run has `data.error`.
pub fn render(outcome: &TaskOutcome) -> Value {
    let data = match outcome {
        TaskOutcome::Passed { data } | TaskOutcome::Flagged { data } | TaskOutcome::Unanswered { data } => {
            Value::Object(data.clone())
        }
        TaskOutcome::Failed { reason } => json!({ "error": failure_message(reason) }),
    };
    json!({ "status": status_code(outcome), "data": data })
}

/// What a client reads when its task could not run.
fn failure_message(reason: &FailureReason) -> String {
    match reason {
        FailureReason::InputExpired => "task input expired before it could run".into(),
        FailureReason::InputCorrupt => "task input could not be decoded".into(),
        FailureReason::Store(why) => why.clone(),
        FailureReason::Panicked => "internal error while running the task".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_renders_its_documented_shape() {
        let data: crate::tasks::outcome::ResultData =
            serde_json::from_value(json!({ "liveness": { "result": true } })).expect("object");
        let cases = [
            (TaskOutcome::Passed { data: data.clone() }, json!({ "status": 200, "data": { "liveness": { "result": true } } })),
            (TaskOutcome::Flagged { data: data.clone() }, json!({ "status": 400, "data": { "liveness": { "result": true } } })),
            (TaskOutcome::Unanswered { data }, json!({ "status": 503, "data": { "liveness": { "result": true } } })),
            (
                FailureReason::InputExpired.into(),
                json!({ "status": 500, "data": { "error": "task input expired before it could run" } }),
            ),
            (FailureReason::InputCorrupt.into(), json!({ "status": 500, "data": { "error": "task input could not be decoded" } })),
            (
                FailureReason::Store("store: task store unavailable: down".into()).into(),
                json!({ "status": 503, "data": { "error": "store: task store unavailable: down" } }),
            ),
            (FailureReason::Panicked.into(), json!({ "status": 500, "data": { "error": "internal error while running the task" } })),
        ];
        for (outcome, wire) in cases {
            assert_eq!(render(&outcome), wire, "{outcome:?}");
        }
    }
}
