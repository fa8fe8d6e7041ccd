//! Inputs this instance has just queued, kept for its own idle workers.
//!
//! A submit sends the images to Redis; a moment later one of the instance's workers, blocked in
//! `XREADGROUP`, is handed the task and would read the same bytes back (`HMGET`, then the late
//! selfie): hundreds of KB out of Redis and through the parser per task, for bytes the instance
//! still had. So a submit keeps its input here when a local worker is waiting for work, and a
//! claim takes it from here instead of reading it back.
//!
//! Nothing depends on a hit: Redis holds the input either way, and a miss (another instance's
//! worker won the entry, the entry aged out, the bound was reached) reads it from Redis as
//! before. Bounded three ways: no more entries than workers waiting when each was added (a busy
//! instance, such as 10,000 tasks in flight, keeps nothing), a byte budget, and an age past
//! which an entry is assumed claimed elsewhere.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::tasks::{TaskId, TaskInput};

/// How long an input is kept for a local worker; past it, a worker elsewhere has it.
const MAX_AGE: Duration = Duration::from_secs(10);

/// The inputs, oldest first, and the workers waiting to be handed one.
pub(super) struct RecentInputs {
    entries: Mutex<Entries>,
    /// Workers of this instance now blocked waiting for new work.
    waiting: AtomicUsize,
    max_bytes: usize,
}

#[derive(Default)]
struct Entries {
    queue: VecDeque<Entry>,
    bytes: usize,
}

struct Entry {
    id: TaskId,
    added: Instant,
    bytes: usize,
    input: TaskInput,
}

/// Counts one waiting worker for as long as it lives.
pub(super) struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RecentInputs {
    /// `max_bytes` of image bytes at most; 0 keeps nothing.
    pub(super) fn new(max_bytes: usize) -> Self {
        Self { entries: Mutex::new(Entries::default()), waiting: AtomicUsize::new(0), max_bytes }
    }

    /// Marks a worker as waiting for new work until the guard drops.
    pub(super) fn waiting(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(&self.waiting)
    }

    /// Keeps `input` of a task just queued, if a local worker is free to take it and it fits.
    /// Cloned only then (a busy instance, the common case under load, copies nothing).
    pub(super) fn keep(&self, id: TaskId, input: &TaskInput) {
        let bytes = usize::try_from(input.upload.image_bytes()).unwrap_or(usize::MAX);
        if self.max_bytes == 0 || bytes > self.max_bytes {
            return;
        }
        let now = Instant::now();
        let mut entries = self.lock();
        entries.expire(now);
        if entries.queue.len() >= self.waiting.load(Ordering::Relaxed) {
            return;
        }
        while entries.bytes + bytes > self.max_bytes {
            entries.pop_oldest();
        }
        entries.bytes += bytes;
        entries.queue.push_back(Entry { id, added: now, bytes, input: input.clone() });
    }

    /// Takes the kept input of `id`, if any. A linear search: the queue never holds more
    /// entries than workers were waiting.
    pub(super) fn take(&self, id: TaskId) -> Option<TaskInput> {
        let mut entries = self.lock();
        entries.expire(Instant::now());
        let at = entries.queue.iter().position(|e| e.id == id)?;
        let entry = entries.queue.remove(at)?;
        entries.bytes -= entry.bytes;
        Some(entry.input)
    }

    /// Forgets `id` (the task was deleted: its images must not outlive it here).
    pub(super) fn forget(&self, id: TaskId) {
        drop(self.take(id));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Every section leaves the queue and its byte count consistent before anything can
        // panic, so a poisoned lock's state is sound.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Entries {
    fn expire(&mut self, now: Instant) {
        while self.queue.front().is_some_and(|e| now.duration_since(e.added) > MAX_AGE) {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some(entry) = self.queue.pop_front() {
            self.bytes -= entry.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::ServiceInput;
    use bytes::Bytes;

    fn input(size: usize) -> TaskInput {
        TaskInput {
            upload: ServiceInput::from_roles(crate::tasks::ServiceKind::FaceLiveness, None, |_| {
                Some(Bytes::from(vec![0xAB; size]))
            })
            .expect("a liveness input"),
            owner: "o".into(),
            extend_data: false,
            trace_context: None,
            base_url: None,
        }
    }

    #[test]
    fn keeps_nothing_without_a_waiting_worker() {
        let recent = RecentInputs::new(1 << 20);
        let id = TaskId::new();
        recent.keep(id, &input(100));
        assert!(recent.take(id).is_none());
    }

    #[test]
    fn keeps_one_input_per_waiting_worker_and_hands_it_out_once() {
        let recent = RecentInputs::new(1 << 20);
        let guard = recent.waiting();
        let (a, b) = (TaskId::new(), TaskId::new());
        recent.keep(a, &input(100));
        recent.keep(b, &input(100));
        let got = recent.take(a).expect("kept for the waiting worker");
        assert_eq!(got, input(100));
        assert!(recent.take(a).is_none(), "handed out once");
        assert!(recent.take(b).is_none(), "one worker waiting: the second was not kept");
        drop(guard);
        recent.keep(b, &input(100));
        assert!(recent.take(b).is_none(), "nobody waits any more");
    }

    #[test]
    fn the_byte_budget_drops_the_oldest() {
        let recent = RecentInputs::new(250);
        let _guards: Vec<_> = (0..4).map(|_| recent.waiting()).collect();
        let ids: Vec<TaskId> = (0..3).map(|_| TaskId::new()).collect();
        for id in &ids {
            recent.keep(*id, &input(100));
        }
        assert!(recent.take(ids[0]).is_none(), "oldest dropped to fit the third");
        assert!(recent.take(ids[1]).is_some());
        assert!(recent.take(ids[2]).is_some());
        let big = TaskId::new();
        recent.keep(big, &input(300));
        assert!(recent.take(big).is_none(), "larger than the whole budget");
        assert_eq!(recent.lock().bytes, 0);
    }

    #[test]
    fn forget_drops_a_deleted_task() {
        let recent = RecentInputs::new(1 << 20);
        let _guard = recent.waiting();
        let id = TaskId::new();
        recent.keep(id, &input(10));
        recent.forget(id);
        assert!(recent.take(id).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn entries_age_out() {
        let recent = RecentInputs::new(1 << 20);
        let _guard = recent.waiting();
        let id = TaskId::new();
        recent.keep(id, &input(10));
        tokio::time::advance(MAX_AGE + Duration::from_millis(1)).await;
        assert!(recent.take(id).is_none());
        assert_eq!(recent.lock().bytes, 0);
    }
}
