//! One conformance suite every task store passes: each case runs against `MemoryStore` and
//! `RedisStore` (Redis at `$KYCGATE_TEST_REDIS`, default `redis://127.0.0.1:6379`, one fresh
//! namespace per test, keys deleted afterwards). An unreachable Redis fails the Redis cases.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kycgate::tasks::store::memory::MemoryStore;
use kycgate::tasks::store::redis::{RedisOptions, RedisStore};
use kycgate::tasks::store::{
    Claimed, FullScope, Idempotency, ListCursor, QueueLimits, SharedStore, StoreError, StoreOptions, Submitted,
    TaskMedia, TaskQuery, Ttls,
};
use kycgate::tasks::{
    now_ms, FailureReason, ServiceInput, ServiceKind, TaskId, TaskInput, TaskOutcome, TaskRecord, TaskStatus,
};
use serde_json::json;
use tokio::time::Instant;

use crate::support::{namespace, redis_url};

// === backends ===

/// Opens stores of one kind; `open` may be called several times per test.
#[async_trait::async_trait]
trait Backend: Send + Sync {
    async fn open(&self, ttls: Ttls) -> SharedStore {
        self.open_with(ttls, StoreOptions::default()).await
    }

    /// A store with explicit bounds / retention.
    async fn open_with(&self, ttls: Ttls, opts: StoreOptions) -> SharedStore;

    /// Whether the task's input is still stored, when the backend lets a test look.
    async fn input_present(&self, id: TaskId) -> Option<bool>;

    /// Whether a claim of a `kyc_*` task leaves its selfie in the store (`Claimed::late_selfie`).
    fn keeps_selfie_back(&self) -> bool;
}

struct Memory;

#[async_trait::async_trait]
impl Backend for Memory {
    async fn open_with(&self, ttls: Ttls, opts: StoreOptions) -> SharedStore {
        Arc::new(MemoryStore::with_options(ttls, opts))
    }

    async fn input_present(&self, _id: TaskId) -> Option<bool> {
        // Private state; `memory.rs` unit tests cover input deletion.
        None
    }

    fn keeps_selfie_back(&self) -> bool {
        false
    }
}

/// A Redis namespace private to one test; its keys are deleted on drop.
struct Redis {
    url: String,
    ns: String,
}

impl Redis {
    fn new() -> Self {
        Self { url: redis_url(), ns: namespace("store") }
    }

    fn raw(&self) -> redis::Connection {
        let client = redis::Client::open(self.url.as_str()).expect("valid KYCGATE_TEST_REDIS URL");
        client.get_connection_with_timeout(Duration::from_secs(2)).unwrap_or_else(|e| {
            panic!("Redis at {} is unreachable ({e}): start redis-server or set KYCGATE_TEST_REDIS", self.url)
        })
    }
}

#[async_trait::async_trait]
impl Backend for Redis {
    async fn open_with(&self, ttls: Ttls, opts: StoreOptions) -> SharedStore {
        match RedisStore::open(&self.url, &self.ns, ttls, RedisOptions::default(), opts).await {
            Ok(store) => Arc::new(store),
            Err(e) => {
                panic!("Redis at {} is unreachable ({e}): start redis-server or set KYCGATE_TEST_REDIS", self.url)
            }
        }
    }

    async fn input_present(&self, id: TaskId) -> Option<bool> {
        let exists: bool =
            redis::cmd("EXISTS").arg(format!("{}:input:{id}", self.ns)).query(&mut self.raw()).expect("EXISTS");
        Some(exists)
    }

    fn keeps_selfie_back(&self) -> bool {
        true
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else { return };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) else { return };
        let keys: Vec<String> = match redis::cmd("KEYS").arg(format!("{}:*", self.ns)).query(&mut conn) {
            Ok(keys) => keys,
            Err(_) => return,
        };
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

// === helpers ===

const LONG: Duration = Duration::from_secs(3600);

fn ttls(task: Duration, lease: Duration) -> Ttls {
    Ttls { task, face: task, lease }
}

fn input(owner: &str) -> TaskInput {
    TaskInput {
        upload: ServiceInput::KycPassport {
            selfie: Bytes::from_static(&[0x89, 0x50, 0x00]),
            passport: Bytes::from_static(&[0xff, 0xd8, 0x00, 0x01]),
        },
        owner: owner.to_owned(),
        extend_data: true,
        trace_context: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned()),
        base_url: Some("https://kyc.example".to_owned()),
    }
}

async fn submit(store: &SharedStore, owner: &str) -> TaskId {
    let id = TaskId::new();
    let inp = input(owner);
    store.submit(TaskRecord::new(id, &inp, now_ms()), inp).await.expect("submit");
    id
}

/// A `Passed` outcome whose data is `value` (an object).
fn passed(value: serde_json::Value) -> TaskOutcome {
    TaskOutcome::Passed { data: serde_json::from_value(value).expect("an object") }
}

/// A portrait to keep with a task's outcome.
fn portrait(key: &str, bytes: &'static [u8]) -> TaskMedia {
    TaskMedia { key: key.to_owned(), bytes: Bytes::from_static(bytes) }
}

async fn claim_now(store: &SharedStore, worker: &str) -> Option<Claimed> {
    store.claim(worker, Duration::ZERO).await.expect("claim")
}

async fn status(store: &SharedStore, id: TaskId) -> TaskStatus {
    store.get(id).await.expect("get").expect("record exists").status
}

/// Polls `check` every 50 ms until it holds or `limit` passes (tokio time: paused for memory).
pub(crate) async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// === cases ===

async fn submit_then_get(b: &dyn Backend) {
    let store = b.open(ttls(LONG, LONG)).await;
    let id = TaskId::new();
    let inp = input("alice");
    let record = TaskRecord::new(id, &inp, now_ms());
    store.submit(record.clone(), inp).await.unwrap();
    assert_eq!(store.get(id).await.unwrap(), Some(record.clone()));

    // A second submit of the same id is refused and changes nothing.
    let err = store.submit(record.clone(), input("alice")).await.unwrap_err();
    assert!(matches!(err, StoreError::IllegalTransition { from: TaskStatus::Pending, to: TaskStatus::Pending }));
    assert_eq!(store.get(id).await.unwrap(), Some(record));

    // The input comes back intact with the claim.
    let claimed = claim_now(&store, "w1").await.expect("queued");
    assert_eq!(claimed.id, id);
    assert_eq!(claimed.deliveries, 1);
    assert_eq!(claimed.late_selfie, b.keeps_selfie_back(), "a kyc_* selfie stays in the store until asked for");
    assert_eq!(whole(&store, claimed).await, input("alice"), "every field, every image byte");
    assert!(claim_now(&store, "w1").await.is_none(), "delivered once only");
}

/// A claimed input with its late selfie (if any) read back in.
async fn whole(store: &SharedStore, claimed: Claimed) -> TaskInput {
    let mut input = claimed.input;
    if claimed.late_selfie {
        let selfie = store.late_image(claimed.id, "selfie").await.unwrap().expect("the selfie is still stored");
        match &mut input.upload {
            ServiceInput::KycPassport { selfie: s, .. } | ServiceInput::KycCard { selfie: s, .. } => {
                assert!(s.is_empty(), "a late selfie is not also in the claimed input");
                *s = selfie;
            }
            other => panic!("only kyc_* selfies are read late, not {:?}", other.kind()),
        }
    }
    input
}

/// Only a `kyc_*` selfie is kept back (the other services need every image at once); it is read
/// on demand, as often as needed, and is gone with its task.
async fn a_late_selfie_is_read_on_demand_and_gone_with_its_task(b: &dyn Backend) {
    let store = b.open(ttls(LONG, LONG)).await;
    let liveness = TaskInput { upload: ServiceInput::FaceLiveness { selfie: Bytes::from_static(b"\xff\xd8selfie") }, ..input("alice") };
    let id = TaskId::new();
    store.submit(TaskRecord::new(id, &liveness, now_ms()), liveness.clone()).await.unwrap();
    let claimed = claim_now(&store, "w1").await.expect("queued");
    assert!(!claimed.late_selfie, "face_liveness has nothing to do before its selfie");
    assert_eq!(claimed.input, liveness);

    let id = submit(&store, "alice").await;
    let claimed = claim_now(&store, "w1").await.expect("queued");
    assert_eq!(claimed.late_selfie, b.keeps_selfie_back());
    if claimed.late_selfie {
        let want = Bytes::from_static(&[0x89, 0x50, 0x00]);
        assert_eq!(store.late_image(id, "selfie").await.unwrap(), Some(want.clone()));
        assert_eq!(store.late_image(id, "selfie").await.unwrap(), Some(want), "read again (a retry, a fallback)");
        assert!(store.delete("alice", id).await.unwrap());
        assert_eq!(store.late_image(id, "selfie").await.unwrap(), None, "deleted with its task");
    }
}

async fn unknown_id_is_none(b: &dyn Backend) {
    let store = b.open(ttls(LONG, LONG)).await;
    assert_eq!(store.get(TaskId::new()).await.unwrap(), None);
    store.ping().await.unwrap();
}

async fn status_is_monotonic_and_finished_is_final(b: &dyn Backend) {
    let store = b.open(ttls(LONG, LONG)).await;
    let id = submit(&store, "alice").await;
    let claimed = claim_now(&store, "w1").await.unwrap();
    assert_eq!(status(&store, id).await, TaskStatus::Pending);

    store.start("w1", &claimed).await.unwrap();
    assert_eq!(status(&store, id).await, TaskStatus::Started);
    store.start("w1", &claimed).await.unwrap(); // Started -> Started is allowed.

    // (Completing with a non-final status cannot be written: every `TaskOutcome` is final.)
    let outcome = passed(json!({"score": 0.987_654_321_012_345_6, "items": [], "empty": {}}));
    store.complete("w1", &claimed, outcome.clone()).await.unwrap();
    let rec = store.get(id).await.unwrap().unwrap();
    assert_eq!(rec.status, TaskStatus::Success);
    assert_eq!(rec.outcome, Some(outcome.clone()), "outcome stored verbatim");
    assert!(rec.updated_ms >= rec.created_ms);

    let err = store.complete("w1", &claimed, FailureReason::Panicked.into()).await.unwrap_err();
    assert!(matches!(err, StoreError::IllegalTransition { from: TaskStatus::Success, to: TaskStatus::Failure }));
    let err = store.start("w1", &claimed).await.unwrap_err();
    assert!(matches!(err, StoreError::IllegalTransition { from: TaskStatus::Success, to: TaskStatus::Started }));
    let rec = store.get(id).await.unwrap().unwrap();
    assert_eq!((rec.status, rec.outcome), (TaskStatus::Success, Some(outcome)), "finished task unchanged");

    // Pending -> Failure directly is allowed.
    let id2 = submit(&store, "alice").await;
    let c2 = claim_now(&store, "w1").await.unwrap();
    assert_eq!(c2.id, id2);
    store.complete("w1", &c2, FailureReason::Panicked.into()).await.unwrap();
    assert_eq!(status(&store, id2).await, TaskStatus::Failure);
}

async fn claim_is_fifo_and_each_task_goes_to_one_worker(b: &dyn Backend) {
    let store = b.open(ttls(LONG, LONG)).await;
    let ids = [submit(&store, "a").await, submit(&store, "b").await, submit(&store, "c").await];
    let mut got = Vec::new();
    for worker in ["w1", "w2", "w3"] {
        let c = claim_now(&store, worker).await.expect("queued task");
        assert_eq!(c.deliveries, 1);
        got.push(c.id);
    }
    assert_eq!(got, ids, "oldest first");
    assert!(claim_now(&store, "w4").await.is_none());
}

async fn competing_workers_never_share_a_live_lease(b: &dyn Backend) {
    let store = b.open(ttls(LONG, LONG)).await;
    let mut submitted = HashSet::new();
    for i in 0..20 {
        submitted.insert(submit(&store, &format!("owner{i}")).await);
    }
    let mut workers = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        workers.push(tokio::spawn(async move {
            let name = format!("worker-{w}");
            let mut mine = Vec::new();
            while let Some(c) = store.claim(&name, Duration::from_millis(200)).await.expect("claim") {
                mine.push(c.id);
            }
            mine
        }));
    }
    let mut seen = HashSet::new();
    for w in workers {
        for id in w.await.unwrap() {
            assert!(seen.insert(id), "task {id} handed to two workers");
        }
    }
    assert_eq!(seen, submitted, "every task delivered exactly once");
}

async fn claim_waits_for_work(b: &dyn Backend) {
    let store = b.open(ttls(LONG, LONG)).await;
    let t0 = Instant::now();
    assert!(store.claim("w1", Duration::from_millis(300)).await.unwrap().is_none());
    assert!(t0.elapsed() >= Duration::from_millis(250), "claim returned before its wait: {:?}", t0.elapsed());

    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.claim("w1", Duration::from_secs(10)).await })
    };
    // Give the claim time to park, so the submit has to wake it (virtual time on memory; on
    // Redis the claim passes either way, parked or not).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t1 = Instant::now();
    let id = submit(&store, "alice").await;
    let claimed = waiter.await.unwrap().unwrap().expect("woken by submit");
    assert_eq!(claimed.id, id);
    assert!(t1.elapsed() < Duration::from_secs(5), "took {:?}", t1.elapsed());
}

async fn expired_lease_is_reclaimed_and_old_worker_loses_it(b: &dyn Backend) {
    let store = b.open(ttls(LONG, Duration::from_millis(800))).await;
    let id = submit(&store, "alice").await;
    let old = claim_now(&store, "w1").await.unwrap();
    store.start("w1", &old).await.unwrap();
    assert!(claim_now(&store, "w2").await.is_none(), "lease still live");

    let t0 = Instant::now();
    let new = store.claim("w2", Duration::from_secs(10)).await.unwrap().expect("reclaimed after lease");
    assert!(t0.elapsed() < Duration::from_secs(5), "reclaim took {:?}", t0.elapsed());
    assert_eq!(new.id, id);
    assert_eq!(new.deliveries, 2);
    assert_eq!(new.input, old.input);

    assert!(matches!(store.heartbeat("w1", &old).await, Err(StoreError::LeaseLost)));
    assert!(matches!(store.start("w1", &old).await, Err(StoreError::LeaseLost)));
    let err = store.complete("w1", &old, passed(json!({"by": "w1"}))).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost));
    let rec = store.get(id).await.unwrap().unwrap();
    assert_eq!((rec.status, rec.outcome), (TaskStatus::Started, None), "old worker wrote nothing");

    store.start("w2", &new).await.unwrap();
    store.complete("w2", &new, passed(json!({"by": "w2"}))).await.unwrap();
    assert_eq!(store.get(id).await.unwrap().unwrap().outcome, Some(passed(json!({"by": "w2"}))));

    // Acknowledged: never handed out again, even after another lease period.
    assert!(store.claim("w3", Duration::from_millis(1500)).await.unwrap().is_none());
}

async fn heartbeat_keeps_the_lease(b: &dyn Backend) {
    let store = b.open(ttls(LONG, Duration::from_millis(800))).await;
    let id = submit(&store, "alice").await;
    let held = claim_now(&store, "w1").await.unwrap();
    // Three lease periods, heartbeating every 200 ms while a rival keeps asking.
    let until = Instant::now() + Duration::from_millis(2400);
    while Instant::now() < until {
        store.heartbeat("w1", &held).await.unwrap();
        assert!(store.claim("w2", Duration::from_millis(200)).await.unwrap().is_none(), "stolen despite heartbeat");
    }
    store.heartbeat("w1", &held).await.unwrap();
    // Heartbeats stop: the rival gets it.
    let stolen = store.claim("w2", Duration::from_secs(10)).await.unwrap().expect("reclaimed");
    assert_eq!((stolen.id, stolen.deliveries), (id, 2));
}

async fn complete_deletes_the_input(b: &dyn Backend) {
    let store = b.open(ttls(LONG, LONG)).await;
    let id = submit(&store, "alice").await;
    assert_ne!(b.input_present(id).await, Some(false));
    let c = claim_now(&store, "w1").await.unwrap();
    store.complete("w1", &c, passed(json!({}))).await.unwrap();
    assert_ne!(b.input_present(id).await, Some(true), "input images must not outlive the task");
    let stats = store.queue_stats().await.unwrap();
    assert_eq!(stats.pending, 0);
}

async fn a_claim_says_when_its_task_was_submitted(b: &dyn Backend) {
    let store = b.open(ttls(LONG, LONG)).await;
    let before = now_ms();
    submit(&store, "alice").await;
    let c = claim_now(&store, "w1").await.unwrap();
    let submitted = c.submitted_ms.expect("the submit time, for the task-duration metric");
    // Redis stamps it with its own clock (the same machine here): allow a little skew.
    assert!((before - 1_000..=now_ms() + 1_000).contains(&submitted), "{submitted} not near {before}");
}

async fn records_expire(b: &dyn Backend) {
    let store = b.open(ttls(Duration::from_millis(1000), LONG)).await;
    let id = submit(&store, "alice").await;
    assert!(store.get(id).await.unwrap().is_some());
    let t0 = Instant::now();
    eventually(Duration::from_secs(5), "record expiry", || async { store.get(id).await.unwrap().is_none() }).await;
    assert!(t0.elapsed() >= Duration::from_millis(700), "expired too early: {:?}", t0.elapsed());
    assert_ne!(b.input_present(id).await, Some(true), "input expires with the record");
    // The queued entry of an expired task is not handed out.
    assert!(claim_now(&store, "w1").await.is_none());
    assert_eq!(store.queue_stats().await.unwrap().pending, 0);
}

async fn media_and_faces_round_trip_and_expire(b: &dyn Backend) {
    let store = b.open(ttls(Duration::from_millis(1000), LONG)).await;
    let jpeg = Bytes::from_static(&[0xff, 0xd8, 0x00, 0xff, 0xd9]);
    store.put_media("portrait-1", jpeg.clone()).await.unwrap();
    assert_eq!(store.get_media("portrait-1").await.unwrap(), Some(jpeg.clone()));
    assert_eq!(store.get_media("portrait-2").await.unwrap(), None);

    store.put_face("alice", "face-1", jpeg.clone()).await.unwrap();
    store.put_face("a:b", "c", Bytes::from_static(b"ab")).await.unwrap();
    assert_eq!(store.get_face("alice", "face-1").await.unwrap(), Some(jpeg));
    assert_eq!(store.get_face("bob", "face-1").await.unwrap(), None, "faces are owner-scoped");
    assert_eq!(store.get_face("a", "b:c").await.unwrap(), None, "owner/uuid pairs do not collide");
    assert_eq!(store.get_face("a:b", "c").await.unwrap(), Some(Bytes::from_static(b"ab")));

    eventually(Duration::from_secs(5), "media and face expiry", || async {
        store.get_media("portrait-1").await.unwrap().is_none()
            && store.get_face("alice", "face-1").await.unwrap().is_none()
    })
    .await;
}

async fn queue_stats_count_undelivered_work(b: &dyn Backend) {
    let store = b.open(ttls(LONG, LONG)).await;
    let empty = store.queue_stats().await.unwrap();
    assert_eq!((empty.pending, empty.oldest_pending_age), (0, None));

    submit(&store, "a").await;
    submit(&store, "b").await;
    let stats = store.queue_stats().await.unwrap();
    assert_eq!(stats.pending, 2);
    assert!(stats.oldest_pending_age.expect("age") < Duration::from_secs(10));
    eventually(Duration::from_secs(5), "oldest age grows", || async {
        store.queue_stats().await.unwrap().oldest_pending_age.is_some_and(|a| a >= Duration::from_millis(300))
    })
    .await;

    let c = claim_now(&store, "w1").await.unwrap();
    assert_eq!(store.queue_stats().await.unwrap().pending, 1);
    store.complete("w1", &c, passed(json!({}))).await.unwrap();
    assert_eq!(store.queue_stats().await.unwrap().pending, 1);
    claim_now(&store, "w1").await.unwrap();
    let stats = store.queue_stats().await.unwrap();
    assert_eq!((stats.pending, stats.oldest_pending_age), (0, None));
}


async fn idempotent_submit_returns_the_first_task(b: &dyn Backend) {
    let store = b.open(ttls(LONG, LONG)).await;
    let key = |fp: &str| Idempotency { key: "order-7".into(), fingerprint: fp.into() };
    let submit_keyed = |owner: &'static str, fp: &'static str| {
        let store = store.clone();
        async move {
            let inp = input(owner);
            let id = TaskId::new();
            (id, store.submit_with(TaskRecord::new(id, &inp, now_ms()), inp, Some(&key(fp))).await)
        }
    };
    let (first, r) = submit_keyed("alice", "fp-1").await;
    assert_eq!(r.unwrap(), Submitted::Created);
    // The client retries (say after a 503 that came after the store had the task): same task.
    let (retry, r) = submit_keyed("alice", "fp-1").await;
    assert_eq!(r.unwrap(), Submitted::Existing(first));
    assert_eq!(store.get(retry).await.unwrap(), None, "the retry stored nothing");
    // The same key with another request is refused.
    let (_, r) = submit_keyed("alice", "fp-2").await;
    assert!(matches!(r, Err(StoreError::IdempotencyConflict)), "{r:?}");
    // Keys are per owner.
    let (bobs, r) = submit_keyed("bob", "fp-2").await;
    assert_eq!(r.unwrap(), Submitted::Created);
    // Queued once each: the task never runs twice.
    let mut claimed = vec![claim_now(&store, "w1").await.unwrap().id, claim_now(&store, "w1").await.unwrap().id];
    claimed.sort();
    let mut expected = vec![first, bobs];
    expected.sort();
    assert_eq!(claimed, expected);
    assert!(claim_now(&store, "w1").await.is_none());
    assert_eq!(store.queue_stats().await.unwrap().pending, 0);
}

async fn bounds_refuse_until_tasks_finish(b: &dyn Backend) {
    // Image bytes are bounded: two inputs of 7 bytes do not fit in 10. (On Redis both store
    // objects below share the namespace's counts, as two instances would.)
    let limits = QueueLimits { max_tasks: 3, max_bytes: 10, max_per_owner: 2, retry_after: Duration::from_secs(7) };
    let small = b.open_with(ttls(LONG, LONG), StoreOptions { limits, ..StoreOptions::default() }).await;
    let d = submit(&small, "dave").await;
    let inp = input("erin");
    let err = small.submit(TaskRecord::new(TaskId::new(), &inp, now_ms()), inp).await.unwrap_err();
    assert!(matches!(err, StoreError::Full { scope: FullScope::Queue, .. }), "{err:?}");
    assert!(small.delete("dave", d).await.unwrap());

    let limits = QueueLimits { max_bytes: 1 << 20, ..limits };
    let store = b.open_with(ttls(LONG, LONG), StoreOptions { limits, ..StoreOptions::default() }).await;
    let a1 = submit(&store, "alice").await;
    submit(&store, "alice").await;
    let inp = input("alice");
    let err = store.submit(TaskRecord::new(TaskId::new(), &inp, now_ms()), inp).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Full { scope: FullScope::Owner, retry_after } if retry_after == Duration::from_secs(7)),
        "{err:?}"
    );
    submit(&store, "bob").await;
    let inp = input("carol");
    let err = store.submit(TaskRecord::new(TaskId::new(), &inp, now_ms()), inp).await.unwrap_err();
    assert!(matches!(err, StoreError::Full { scope: FullScope::Queue, .. }), "{err:?}");

    // A finished task frees its place: alice may submit again.
    let c = claim_now(&store, "w1").await.unwrap();
    assert_eq!(c.id, a1);
    store.start("w1", &c).await.unwrap();
    store.complete("w1", &c, passed(json!({}))).await.unwrap();
    let again = submit(&store, "alice").await;
    // So does a deleted one.
    assert!(store.delete("alice", again).await.unwrap());
    submit(&store, "alice").await;
}

async fn delete_erases_the_task_and_its_worker_loses_it(b: &dyn Backend) {
    let store = b.open(ttls(LONG, LONG)).await;
    let key = Idempotency { key: "k".into(), fingerprint: "fp".into() };
    let id = TaskId::new();
    let inp = input("alice");
    store.submit_with(TaskRecord::new(id, &inp, now_ms()), inp, Some(&key)).await.unwrap();
    let held = claim_now(&store, "w1").await.unwrap();
    store.start("w1", &held).await.unwrap();

    assert!(!store.delete("bob", id).await.unwrap(), "someone else's task is not found");
    assert!(!store.delete("alice", TaskId::new()).await.unwrap());
    assert!(store.get(id).await.unwrap().is_some());

    assert!(store.delete("alice", id).await.unwrap());
    assert_eq!(store.get(id).await.unwrap(), None);
    assert_eq!(store.get_media("alice/images/p.jpg").await.unwrap(), None, "its portrait went with it");
    assert_ne!(b.input_present(id).await, Some(true));
    assert!(matches!(store.heartbeat("w1", &held).await, Err(StoreError::LeaseLost)));
    let late = store.complete_with("w1", &held, passed(json!({})), &[portrait("alice/images/q.jpg", b"late")]).await;
    assert!(late.is_err(), "nothing is written back: {late:?}");
    assert_eq!(store.get(id).await.unwrap(), None);
    assert_eq!(store.get_media("alice/images/q.jpg").await.unwrap(), None, "nor its portrait");
    assert!(!store.delete("alice", id).await.unwrap(), "deleting twice is a 404");
    // The idempotency key went too: the same request makes a new task.
    let inp = input("alice");
    let fresh = TaskId::new();
    let r = store.submit_with(TaskRecord::new(fresh, &inp, now_ms()), inp, Some(&key)).await.unwrap();
    assert_eq!(r, Submitted::Created);
    assert_eq!(claim_now(&store, "w2").await.map(|c| c.id), Some(fresh), "the deleted task is never handed out");
}

async fn task_media_lives_and_dies_with_its_task(b: &dyn Backend) {
    let store = b.open(ttls(Duration::from_millis(1000), LONG)).await;
    // Kept with the outcome, as long as the task.
    let id = submit(&store, "alice").await;
    let held = claim_now(&store, "w1").await.unwrap();
    let media = [portrait("m1", b"jpeg"), portrait("m2", b"back")];
    store.complete_with("w1", &held, passed(json!({})), &media).await.unwrap();
    assert_eq!(status(&store, id).await, TaskStatus::Success);
    assert_eq!(store.get_media("m1").await.unwrap(), Some(Bytes::from_static(b"jpeg")));
    assert_eq!(store.get_media("m2").await.unwrap(), Some(Bytes::from_static(b"back")));
    eventually(Duration::from_secs(5), "media expiry with the task", || async {
        store.get_media("m1").await.unwrap().is_none() && store.get_media("m2").await.unwrap().is_none()
    })
    .await;

    // Deleted with it.
    let store = b.open(ttls(LONG, LONG)).await;
    let id = submit(&store, "alice").await;
    let held = claim_now(&store, "w1").await.unwrap();
    store.complete_with("w1", &held, passed(json!({})), &[portrait("alice/p.jpg", b"jpeg")]).await.unwrap();
    assert!(store.get_media("alice/p.jpg").await.unwrap().is_some());
    assert!(store.delete("alice", id).await.unwrap());
    assert_eq!(store.get_media("alice/p.jpg").await.unwrap(), None, "its portrait went with it");

    // Never stored with an outcome that is not: a lost lease, or a second completion.
    let id = submit(&store, "alice").await;
    let held = claim_now(&store, "w1").await.unwrap();
    let stolen = store.complete_with("w2", &held, passed(json!({})), &[portrait("m3", b"x")]).await;
    assert!(matches!(stolen, Err(StoreError::LeaseLost)), "{stolen:?}");
    assert_eq!(store.get_media("m3").await.unwrap(), None, "not by a worker that does not hold it");
    store.complete("w1", &held, passed(json!({}))).await.unwrap();
    let again = store.complete_with("w1", &held, passed(json!({})), &[portrait("m4", b"x")]).await;
    assert!(matches!(again, Err(StoreError::IllegalTransition { .. })), "{again:?}");
    assert_eq!(store.get_media("m4").await.unwrap(), None, "not on a finished task");
    assert_eq!(status(&store, id).await, TaskStatus::Success);
}

async fn erase_faces_takes_only_the_owners(b: &dyn Backend) {
    let store = b.open(ttls(LONG, LONG)).await;
    let jpeg = Bytes::from_static(b"face");
    for (owner, uuid) in [("alice", "f1"), ("alice", "f2"), ("bob", "f3"), ("alice*", "f4"), ("alice:x", "f5")] {
        store.put_face(owner, uuid, jpeg.clone()).await.unwrap();
    }
    assert_eq!(store.erase_faces("alice").await.unwrap(), 2);
    assert_eq!(store.get_face("alice", "f1").await.unwrap(), None);
    assert_eq!(store.get_face("alice", "f2").await.unwrap(), None);
    assert_eq!(store.get_face("bob", "f3").await.unwrap(), Some(jpeg.clone()));
    assert_eq!(store.get_face("alice*", "f4").await.unwrap(), Some(jpeg.clone()), "glob characters are literal");
    assert_eq!(store.get_face("alice:x", "f5").await.unwrap(), Some(jpeg));
    assert_eq!(store.erase_faces("alice").await.unwrap(), 0);
}

async fn retention_is_per_owner(b: &dyn Backend) {
    let mut opts = StoreOptions::default();
    opts.retention.insert("brief".into(), Duration::from_millis(1000));
    let store = b.open_with(ttls(LONG, LONG), opts).await;
    let short = submit(&store, "brief").await;
    let long = submit(&store, "alice").await;
    let t0 = Instant::now();
    eventually(Duration::from_secs(5), "the short-retention task expires", || async {
        store.get(short).await.unwrap().is_none()
    })
    .await;
    assert!(t0.elapsed() >= Duration::from_millis(500), "expired too early: {:?}", t0.elapsed());
    assert!(store.get(long).await.unwrap().is_some(), "the global TTL still holds for others");
}

/// Submits a task of `owner` created at `created_ms`, of `service` (kyc_passport or face_liveness).
async fn submit_at(store: &SharedStore, owner: &str, created_ms: i64, liveness: bool) -> ListCursor {
    let mut inp = input(owner);
    if liveness {
        inp.upload = ServiceInput::FaceLiveness { selfie: Bytes::from_static(&[0xff, 0xd8, 0x00]) };
    }
    let record = TaskRecord::new(TaskId::new(), &inp, created_ms);
    let at = ListCursor::of(&record);
    store.submit(record, inp).await.expect("submit");
    at
}

/// Every page of `query` for `owner`, followed to the end: the ids in order, and the page sizes.
async fn all_pages(store: &SharedStore, owner: &str, query: TaskQuery) -> (Vec<TaskId>, Vec<usize>) {
    let (mut ids, mut sizes) = (Vec::new(), Vec::new());
    let mut query = query;
    for _ in 0..100 {
        let page = store.list(owner, &query).await.expect("list");
        assert!(page.tasks.len() <= query.limit, "a page larger than its limit");
        sizes.push(page.tasks.len());
        ids.extend(page.tasks.iter().map(|t| t.id));
        match page.next {
            Some(next) => query.after = Some(next),
            None => return (ids, sizes),
        }
    }
    panic!("list never ended");
}

async fn list_pages_newest_first_filters_and_isolates_owners(b: &dyn Backend) {
    let store = b.open(ttls(LONG, LONG)).await;
    let base = now_ms();
    let mut alice = Vec::new();
    for i in 0..5 {
        alice.push(submit_at(&store, "alice", base + i, i % 2 == 1).await);
    }
    // Two tasks in the same millisecond still have one order (by id).
    alice.push(submit_at(&store, "alice", base + 4, false).await);
    let bob = [submit_at(&store, "bob", base, false).await, submit_at(&store, "bob", base + 9, true).await];
    let mut newest_first = alice.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    let expected: Vec<TaskId> = newest_first.iter().map(|c| c.id).collect();

    let page = store.list("alice", &TaskQuery::default()).await.unwrap();
    assert_eq!(page.tasks.iter().map(|t| t.id).collect::<Vec<_>>(), expected);
    assert_eq!(page.next, None);
    let first = &page.tasks[0];
    assert_eq!((first.created_ms, first.status, first.finished_ms), (base + 4, TaskStatus::Pending, None));
    // Pages of two, following `next`: the same tasks, once each, in the same order.
    let (ids, sizes) = all_pages(&store, "alice", TaskQuery { limit: 2, ..TaskQuery::default() }).await;
    assert_eq!(ids, expected);
    assert_eq!(sizes, [2, 2, 2]);
    // Filters: service, then status once a task finished.
    let only = TaskQuery { service: Some(ServiceKind::FaceLiveness), ..TaskQuery::default() };
    let (ids, _) = all_pages(&store, "alice", only).await;
    assert_eq!(ids, [alice[3].id, alice[1].id]);
    let (ids, _) = all_pages(&store, "alice", TaskQuery { service: Some(ServiceKind::KycPassport), limit: 1, ..TaskQuery::default() }).await;
    assert_eq!(ids.len(), 4);
    let done = claim_now(&store, "w1").await.expect("queued");
    assert_eq!(done.id, alice[0].id, "FIFO: the oldest");
    store.complete("w1", &done, passed(json!({}))).await.unwrap();
    let page = store.list("alice", &TaskQuery { status: Some(TaskStatus::Success), ..TaskQuery::default() }).await.unwrap();
    assert_eq!(page.tasks.len(), 1);
    assert_eq!((page.tasks[0].id, page.tasks[0].status), (alice[0].id, TaskStatus::Success));
    assert!(page.tasks[0].finished_ms.is_some_and(|f| f >= base), "{:?}", page.tasks[0]);
    let pending = store.list("alice", &TaskQuery { status: Some(TaskStatus::Pending), ..TaskQuery::default() }).await.unwrap();
    assert_eq!(pending.tasks.len(), 5);
    assert!(!pending.tasks.iter().any(|t| t.id == alice[0].id));
    // Owners see only their own.
    let (ids, _) = all_pages(&store, "bob", TaskQuery::default()).await;
    assert_eq!(ids, [bob[1].id, bob[0].id]);
    assert_eq!(store.list("carol", &TaskQuery::default()).await.unwrap().tasks, []);
    // A cursor from someone else's list only says where to start: still the caller's tasks.
    let (ids, _) = all_pages(&store, "bob", TaskQuery { after: Some(alice[5]), ..TaskQuery::default() }).await;
    assert_eq!(ids, [bob[0].id]);
    // Limits outside 1..=100 are clamped, not an error.
    assert_eq!(store.list("alice", &TaskQuery { limit: 0, ..TaskQuery::default() }).await.unwrap().tasks.len(), 1);
}

async fn a_sparse_filter_pages_within_the_read_budget(b: &dyn Backend) {
    let store = b.open(ttls(LONG, LONG)).await;
    let base = now_ms();
    // The one liveness task is the oldest, under more kyc tasks than one page may read.
    let wanted = submit_at(&store, "alice", base, true).await;
    let skipped = TaskQuery::READ_BUDGET + 50;
    for i in 1..=skipped {
        submit_at(&store, "alice", base + i as i64, false).await;
    }
    let query = TaskQuery { service: Some(ServiceKind::FaceLiveness), ..TaskQuery::default() };
    let first = store.list("alice", &query).await.unwrap();
    assert!(first.tasks.is_empty(), "the budget ends the first page early");
    assert!(first.next.is_some(), "with a cursor to go on from");
    let (ids, sizes) = all_pages(&store, "alice", query).await;
    assert_eq!(ids, [wanted.id], "followed to the end, the match is found once");
    assert_eq!(sizes, [0, 1]);
}

async fn list_forgets_deleted_and_expired_tasks(b: &dyn Backend) {
    let store = b.open(ttls(Duration::from_millis(1000), LONG)).await;
    let gone = submit(&store, "alice").await;
    let kept = submit(&store, "alice").await;
    assert!(store.delete("alice", gone).await.unwrap());
    let page = store.list("alice", &TaskQuery::default()).await.unwrap();
    assert_eq!(page.tasks.iter().map(|t| t.id).collect::<Vec<_>>(), [kept]);
    eventually(Duration::from_secs(5), "the expired task leaves the list", || async {
        store.list("alice", &TaskQuery::default()).await.unwrap().tasks.is_empty()
    })
    .await;
}

// === the suite, once per backend ===

// The memory store keeps time with tokio's clock: its cases run on a paused clock, so lease
// expiry, heartbeats and TTLs take no real time. Redis keeps its own (real) time.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod on_memory {
            $(
                #[tokio::test(start_paused = true)]
                async fn $case() {
                    super::$case(&super::Memory).await;
                }
            )*
        }
        mod on_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = super::Redis::new();
                    super::$case(&backend).await;
                }
            )*
        }
    };
}

suite!(
    submit_then_get,
    unknown_id_is_none,
    status_is_monotonic_and_finished_is_final,
    claim_is_fifo_and_each_task_goes_to_one_worker,
    competing_workers_never_share_a_live_lease,
    claim_waits_for_work,
    expired_lease_is_reclaimed_and_old_worker_loses_it,
    heartbeat_keeps_the_lease,
    complete_deletes_the_input,
    a_claim_says_when_its_task_was_submitted,
    records_expire,
    media_and_faces_round_trip_and_expire,
    queue_stats_count_undelivered_work,
    idempotent_submit_returns_the_first_task,
    bounds_refuse_until_tasks_finish,
    delete_erases_the_task_and_its_worker_loses_it,
    task_media_lives_and_dies_with_its_task,
    erase_faces_takes_only_the_owners,
    retention_is_per_owner,
    list_pages_newest_first_filters_and_isolates_owners,
    list_forgets_deleted_and_expired_tasks,
    a_sparse_filter_pages_within_the_read_budget,
    a_late_selfie_is_read_on_demand_and_gone_with_its_task,
);

// === Redis-only behaviour ===

/// Two gateway instances (two store objects) share one queue and never double-deliver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_instances_share_one_queue() {
    let backend = Redis::new();
    let a = backend.open(ttls(LONG, LONG)).await;
    let b = backend.open(ttls(LONG, LONG)).await;
    let id = submit(&a, "alice").await;
    assert_eq!(b.get(id).await.unwrap().map(|r| r.id), Some(id));
    let c = claim_now(&b, "instance-b").await.expect("visible to the other instance");
    assert_eq!(c.id, id);
    assert!(claim_now(&a, "instance-a").await.is_none());
    b.complete("instance-b", &c, passed(json!({"ok": true}))).await.unwrap();
    assert_eq!(a.get(id).await.unwrap().unwrap().status, TaskStatus::Success);
}

/// A task whose input vanished before it was claimed is failed with the documented result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_expired_input_fails_the_task() {
    let backend = Redis::new();
    let store = backend.open(ttls(LONG, LONG)).await;
    let id = submit(&store, "alice").await;
    let _: () = redis::cmd("DEL").arg(format!("{}:input:{id}", backend.ns)).query(&mut backend.raw()).unwrap();
    assert!(claim_now(&store, "w1").await.is_none());
    let rec = store.get(id).await.unwrap().unwrap();
    assert_eq!(rec.status, TaskStatus::Failure);
    let result = rec.outcome.as_ref().map(kycgate::api::result::render);
    assert_eq!(result, Some(json!({"status": 500, "data": {"error": "task input expired before it could run"}})));
    assert_eq!(store.queue_stats().await.unwrap().pending, 0);
}

/// The stores' keys all live under the namespace, so tests and deployments can share a Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_stay_in_their_namespace() {
    let backend = Redis::new();
    let store = backend.open(ttls(LONG, LONG)).await;
    let id = submit(&store, "alice").await;
    store.put_media("m", Bytes::from_static(b"x")).await.unwrap();
    store.put_face("alice", "u", Bytes::from_static(b"y")).await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}:*", backend.ns)).query(&mut backend.raw()).unwrap();
    assert!(keys.contains(&format!("{}:task:{id}", backend.ns)), "{keys:?}");
    assert!(keys.contains(&format!("{}:input:{id}", backend.ns)), "{keys:?}");
    assert!(keys.contains(&format!("{}:queue", backend.ns)), "{keys:?}");
    assert!(keys.contains(&format!("{}:media:m", backend.ns)), "{keys:?}");
    assert!(keys.contains(&format!("{}:face:alice:u", backend.ns)), "{keys:?}");
    assert!(keys.contains(&format!("{}:inflight:owner:alice", backend.ns)), "{keys:?}");
    // Everything personal carries a TTL (the queue and the in-flight counts hold task ids only).
    let bookkeeping = [":queue", ":inflight", ":inflight:bytes"].map(|k| format!("{}{k}", backend.ns));
    for key in keys.iter().filter(|k| !bookkeeping.contains(k)) {
        let ttl: i64 = redis::cmd("PTTL").arg(key).query(&mut backend.raw()).unwrap();
        assert!(ttl > 0, "{key} has no TTL");
    }
}

/// Alice's `kyc_passport` with real images (a deepface selfie and a passport page), and its selfie.
fn real_kyc_input() -> (TaskInput, Bytes) {
    let selfie = Bytes::from(crate::support::eval_image("faces/deepface/img1.jpg"));
    let passport = Bytes::from(crate::support::eval_image("documents/passporteye_100_pass-uto.jpg"));
    let input = TaskInput { upload: ServiceInput::KycPassport { selfie: selfie.clone(), passport }, ..input("alice") };
    (input, selfie)
}

/// Images are stored as raw bytes (no base64): Redis holds at most 1.2x the uploaded bytes for a
/// queued input, and the image fields are the bytes themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keeps_images_as_raw_bytes() {
    let backend = Redis::new();
    let store = backend.open(ttls(LONG, LONG)).await;
    let (inp, selfie) = real_kyc_input();
    let raw = inp.upload.image_bytes() as f64;
    let id = TaskId::new();
    store.submit(TaskRecord::new(id, &inp, now_ms()), inp.clone()).await.unwrap();
    let key = format!("{}:input:{id}", backend.ns);
    let used: u64 = redis::cmd("MEMORY").arg("USAGE").arg(&key).arg("SAMPLES").arg(0).query(&mut backend.raw()).unwrap();
    eprintln!("input of {raw} image bytes uses {used} bytes in Redis ({:.3}x)", used as f64 / raw);
    assert!(used as f64 <= 1.2 * raw, "{used} bytes in Redis for {raw} bytes of images");
    // A kyc_* selfie is kept under `late:` (a claim's `HMGET` of the `img:` fields leaves it).
    let stored: Vec<u8> = redis::cmd("HGET").arg(&key).arg("late:selfie").query(&mut backend.raw()).unwrap();
    assert!(stored == selfie, "the selfie field is the uploaded bytes");
    let claimed = claim_now(&store, "w1").await.unwrap();
    assert!(claimed.late_selfie);
    assert_eq!(whole(&store, claimed).await, inp);
}

/// A store URL naming another database: submits (framed by the store itself, not redis-rs)
/// select it too, so the input lands where the workers read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_store_on_another_database_submits_there() {
    let base = redis_url();
    let info = redis::Client::open(base.as_str()).expect("valid KYCGATE_TEST_REDIS URL").get_connection_info().clone();
    let db = if info.redis.db == 7 { 6 } else { 7 };
    let url = match base.rsplit_once('/') {
        Some((head, tail)) if tail.parse::<i64>().is_ok() => format!("{head}/{db}"),
        _ => format!("{}/{db}", base.trim_end_matches('/')),
    };
    let backend = Redis { url, ns: namespace("store") };
    let store = backend.open(ttls(LONG, LONG)).await;
    let (inp, _) = real_kyc_input();
    let id = TaskId::new();
    store.submit(TaskRecord::new(id, &inp, now_ms()), inp.clone()).await.unwrap();
    assert_eq!(backend.input_present(id).await, Some(true), "input in database {db}");
    let claimed = claim_now(&store, "w1").await.expect("queued in that database");
    assert_eq!(claimed.id, id);
    assert_eq!(whole(&store, claimed).await, inp);
}

/// A kyc_* input queued by an earlier version (its selfie among the `img:` fields) is claimed
/// whole, so tasks queued before an upgrade still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_an_input_with_its_selfie_in_img_comes_whole() {
    let backend = Redis::new();
    let store = backend.open(ttls(LONG, LONG)).await;
    let id = submit(&store, "alice").await;
    let key = format!("{}:input:{id}", backend.ns);
    let selfie: Vec<u8> = redis::cmd("HGET").arg(&key).arg("late:selfie").query(&mut backend.raw()).unwrap();
    let _: () = redis::cmd("HDEL").arg(&key).arg("late:selfie").query(&mut backend.raw()).unwrap();
    let _: () = redis::cmd("HSET").arg(&key).arg("img:selfie").arg(selfie).query(&mut backend.raw()).unwrap();
    let claimed = claim_now(&store, "w1").await.expect("queued");
    assert!(!claimed.late_selfie);
    assert_eq!(claimed.input, input("alice"));
}

/// An input left in the pre-hash format (a JSON string with base64 images) is failed as
/// corrupt with a clear result, not run and not retried forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_old_format_input_fails_as_corrupt() {
    let backend = Redis::new();
    let store = backend.open(ttls(LONG, LONG)).await;
    let id = submit(&store, "alice").await;
    let key = format!("{}:input:{id}", backend.ns);
    let _: () = redis::cmd("DEL").arg(&key).query(&mut backend.raw()).unwrap();
    let _: () = redis::cmd("SET").arg(&key).arg(r#"{"upload":{"service":"face_liveness","selfie":"anBlZw=="}}"#).query(&mut backend.raw()).unwrap();
    assert!(claim_now(&store, "w1").await.is_none());
    let rec = store.get(id).await.unwrap().unwrap();
    assert_eq!(rec.outcome, Some(TaskOutcome::Failed { reason: FailureReason::InputCorrupt }));
    assert_eq!(store.queue_stats().await.unwrap().pending, 0);
}

/// An input whose images survive without its header is failed as corrupt, not as expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_an_input_without_its_header_fails_as_corrupt() {
    let backend = Redis::new();
    let store = backend.open(ttls(LONG, LONG)).await;
    let id = submit(&store, "alice").await;
    let key = format!("{}:input:{id}", backend.ns);
    let _: () = redis::cmd("HDEL").arg(&key).arg("header").query(&mut backend.raw()).unwrap();
    assert!(claim_now(&store, "w1").await.is_none());
    let rec = store.get(id).await.unwrap().unwrap();
    assert_eq!(rec.outcome, Some(TaskOutcome::Failed { reason: FailureReason::InputCorrupt }));
}

/// Deleting a task leaves nothing of it in Redis: no key names it, no key holds its portrait,
/// no stream entry, in-flight count or idempotency key refers to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_nothing_of_a_deleted_task_remains() {
    let backend = Redis::new();
    let store = backend.open(ttls(LONG, LONG)).await;
    // One finished task with a portrait, one still queued, each with an idempotency key.
    let mut gone = Vec::new();
    for name in ["erase-me", "erase-me-too"] {
        let id = TaskId::new();
        let inp = input("alice");
        let key = Idempotency { key: name.into(), fingerprint: "f".into() };
        store.submit_with(TaskRecord::new(id, &inp, now_ms()), inp, Some(&key)).await.unwrap();
        gone.push(id);
    }
    let held = claim_now(&store, "w1").await.unwrap();
    assert_eq!(held.id, gone[0]);
    let media = "alice/images/services/kyc_passport/secret-token.jpg";
    store.complete_with("w1", &held, passed(json!({})), &[portrait(media, b"portrait")]).await.unwrap();
    assert!(store.get_media(media).await.unwrap().is_some());
    let keep = submit(&store, "alice").await;
    for id in &gone {
        assert!(store.delete("alice", *id).await.unwrap());
    }

    let mut conn = backend.raw();
    let mut cursor = 0u64;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(format!("{}:*", backend.ns)).query(&mut conn).unwrap();
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let ids: Vec<String> = gone.iter().map(|id| id.to_string()).collect();
    let names_one = |text: &str| ids.iter().any(|id| text.contains(id.as_str()));
    assert!(!keys.iter().any(|k| names_one(k) || k.contains("secret-token") || k.contains(":idem:")), "{keys:?}");
    // Nor does any value: the stream, the in-flight set and byte counts.
    for k in &keys {
        let kind: String = redis::cmd("TYPE").arg(k).query(&mut conn).unwrap();
        let dump: Vec<Vec<u8>> = match kind.as_str() {
            "stream" => {
                let entries: redis::Value = redis::cmd("XRANGE").arg(k).arg("-").arg("+").query(&mut conn).unwrap();
                vec![format!("{entries:?}").into_bytes()]
            }
            "zset" => redis::cmd("ZRANGE").arg(k).arg(0).arg(-1).query(&mut conn).unwrap(),
            "hash" => redis::cmd("HKEYS").arg(k).query(&mut conn).unwrap(),
            _ => Vec::new(),
        };
        for v in dump {
            assert!(!names_one(&String::from_utf8_lossy(&v)), "{k} still refers to a deleted task");
        }
    }
    assert!(store.get(keep).await.unwrap().is_some(), "the other task is untouched");
}

/// Two gateway instances (two store objects) share one owner's quota through Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_instances_share_the_owner_quota() {
    let backend = Redis::new();
    let limits = QueueLimits { max_per_owner: 2, ..QueueLimits::default() };
    let opts = StoreOptions { limits, ..StoreOptions::default() };
    let a = backend.open_with(ttls(LONG, LONG), opts.clone()).await;
    let b = backend.open_with(ttls(LONG, LONG), opts).await;
    submit(&a, "alice").await;
    let on_b = submit(&b, "alice").await;
    for store in [&a, &b] {
        let inp = input("alice");
        let err = store.submit(TaskRecord::new(TaskId::new(), &inp, now_ms()), inp).await.unwrap_err();
        assert!(matches!(err, StoreError::Full { scope: FullScope::Owner, .. }), "{err:?}");
    }
    let staged: Vec<String> = redis::cmd("KEYS").arg(format!("{}:upload:*", backend.ns)).query(&mut backend.raw()).unwrap();
    assert!(staged.is_empty(), "a refused submit left its images behind: {staged:?}");
    submit(&a, "bob").await;
    assert!(a.delete("alice", on_b).await.unwrap());
    submit(&b, "alice").await;
}
