//! What a task costs Redis, counted on a private `redis-server` (its `INFO commandstats` is
//! ours alone): commands per task must not grow with the number of tasks in flight, since
//! reclaiming is a per-instance sweep, not a walk of the pending list on every claim.
//! The figures are printed (`--nocapture`) for docs/ARCHITECTURE.md.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use kycgate::tasks::store::redis::{RedisOptions, RedisStore};
use kycgate::tasks::store::{StoreOptions, TaskStore, Ttls};
use kycgate::tasks::{now_ms, ServiceInput, TaskId, TaskInput, TaskOutcome, TaskRecord};

use crate::store_conformance::eventually;
use crate::store_outage::{free_port, Server};

/// Tasks measured per scenario.
const N: u64 = 50;

fn input() -> TaskInput {
    with_images(Bytes::from_static(&[0xff, 0xd8, 0xff, 0x01]), Bytes::from_static(&[0xff, 0xd8, 0xff, 0x02]))
}

fn with_images(selfie: Bytes, passport: Bytes) -> TaskInput {
    TaskInput {
        upload: ServiceInput::KycPassport { selfie, passport },
        owner: "alice".into(),
        extend_data: false,
        trace_context: None,
        base_url: None,
    }
}

/// Calls per command since the last reset (INFO / CONFIG themselves left out).
fn command_stats(conn: &mut redis::Connection) -> BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO").arg("commandstats").query(conn).expect("INFO");
    info.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok()?;
            Some((name.to_string(), calls))
        })
        .filter(|(name, _)| !name.starts_with("info") && !name.starts_with("config"))
        .collect()
}

/// Runs `N` tasks through submit → claim → start → complete with `held` other deliveries
/// in flight (claimed, not finished); returns Redis commands per task and their breakdown.
async fn per_task(server: &Server, held: usize) -> (f64, BTreeMap<String, u64>) {
    let (calls, _, stats) = run(server, held, input).await;
    (calls, stats)
}

/// The loop of `per_task` with inputs from `make`; returns commands per task, Redis CPU µs per
/// task, and the command breakdown.
async fn run(server: &Server, held: usize, make: impl Fn() -> TaskInput) -> (f64, f64, BTreeMap<String, u64>) {
    let ttls = Ttls { task: Duration::from_secs(600), face: Duration::from_secs(600), lease: Duration::from_secs(30) };
    let ns = crate::support::namespace("costs");
    let store = RedisStore::open(&server.url(), &ns, ttls, RedisOptions::default(), StoreOptions::default())
        .await
        .expect("connect");
    for _ in 0..held {
        let inp = input();
        store.submit(TaskRecord::new(TaskId::new(), &inp, now_ms()), inp).await.expect("submit");
        store.claim("holder", Duration::ZERO).await.expect("claim").expect("queued");
    }
    let mut conn = redis::Client::open(server.url()).expect("url").get_connection().expect("connect");
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut conn).expect("RESETSTAT");
    let cpu_before = server_cpu(&mut conn);
    for _ in 0..N {
        let inp = make();
        let id = TaskId::new();
        store.submit(TaskRecord::new(id, &inp, now_ms()), inp).await.expect("submit");
        let claimed = store.claim("w1", Duration::ZERO).await.expect("claim").expect("queued");
        assert_eq!(claimed.id, id);
        store.start("w1", &claimed).await.expect("start");
        store.heartbeat("w1", &claimed).await.expect("heartbeat");
        store.complete("w1", &claimed, TaskOutcome::Passed { data: serde_json::Map::new() }).await.expect("complete");
    }
    let usec = (server_cpu(&mut conn) - cpu_before) * 1e6;
    let stats = command_stats(&mut conn);
    let total: u64 = stats.values().sum();
    (total as f64 / N as f64, usec / N as f64, stats)
}

/// The server process's CPU seconds (user + system) from `INFO cpu`.
fn server_cpu(conn: &mut redis::Connection) -> f64 {
    let info: String = redis::cmd("INFO").arg("cpu").query(conn).expect("INFO cpu");
    info.lines()
        .filter(|l| l.starts_with("used_cpu_user:") || l.starts_with("used_cpu_sys:"))
        .filter_map(|l| l.split_once(':').and_then(|(_, v)| v.trim().parse::<f64>().ok()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_commands_per_task_do_not_grow_with_tasks_in_flight() {
    let server = Server::start(free_port());
    server.ready().await;
    let (alone, breakdown) = per_task(&server, 0).await;
    let (crowded, _) = per_task(&server, 256).await;
    eprintln!("Redis commands per task (submit, claim, start, 1 heartbeat, complete; script-internal commands included):");
    eprintln!("  nothing else in flight: {alone:.2}");
    eprintln!("  256 deliveries in flight: {crowded:.2}");
    eprintln!("  breakdown over {N} tasks: {breakdown:?}");
    // With a real KYC upload (selfie + passport page): Redis CPU per task, for the record only
    // (speed is not asserted here).
    let selfie = Bytes::from(crate::support::eval_image("faces/deepface/img1.jpg"));
    let passport = Bytes::from(crate::support::eval_image("documents/passporteye_100_pass-uto.jpg"));
    let size = selfie.len() + passport.len();
    let (_, usec, _) = run(&server, 0, || with_images(selfie.clone(), passport.clone())).await;
    eprintln!("  Redis CPU per task with {size} bytes of images: {usec:.0} µs (INFO cpu, user + sys)");
    assert!(!breakdown.contains_key("xautoclaim"), "claims must not walk the pending list: {breakdown:?}");
    assert!(!breakdown.contains_key("xgroup|create"), "the group is created once, at connect: {breakdown:?}");
    // A reclaim sweep may fall inside one run: allow it, nothing per task.
    assert!(crowded <= alone + 1.0, "commands per task grew with tasks in flight: {alone:.2} -> {crowded:.2}");
    assert!(alone <= 45.0, "{alone:.2} commands per task: {breakdown:?}");
}

/// Claims `submitted`'s task on `claimer` while it is already blocked waiting for work, after
/// `submitter` queued it; returns what the claim got and the Redis commands it all took.
async fn claim_while_waiting(
    server: &Server,
    submitter: &RedisStore,
    claimer: &RedisStore,
    submitted: TaskInput,
) -> (kycgate::tasks::store::Claimed, BTreeMap<String, u64>) {
    let mut conn = redis::Client::open(server.url()).expect("url").get_connection().expect("connect");
    let waiting = {
        let claimer = claimer.clone();
        tokio::spawn(async move { claimer.claim("w1", Duration::from_secs(5)).await })
    };
    // The task must be queued while the claim is blocked in XREADGROUP: wait until this
    // private server reports a blocked client.
    let url = server.url();
    eventually(Duration::from_secs(5), "the claim blocked waiting for work", || {
        let url = url.clone();
        async move {
            let mut conn = redis::Client::open(url).expect("url").get_connection().expect("connect");
            let info: String = redis::cmd("INFO").arg("clients").query(&mut conn).expect("INFO clients");
            info.lines()
                .find_map(|l| l.strip_prefix("blocked_clients:"))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .is_some_and(|n| n >= 1)
        }
    })
    .await;
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut conn).expect("RESETSTAT");
    let id = TaskId::new();
    submitter.submit(TaskRecord::new(id, &submitted, now_ms()), submitted).await.expect("submit");
    let claimed = waiting.await.expect("claim task").expect("claim").expect("handed out");
    assert_eq!(claimed.id, id);
    (claimed, command_stats(&mut conn))
}

/// `kycgate_store_input_reads_total{source}` as `/metrics` shows it now (the process's counter:
/// other tests in this process may add to it, so callers compare at-least deltas).
fn input_reads(source: &str) -> f64 {
    let label = format!("source=\"{source}\"");
    crate::support::metric_sum(&kycgate::telemetry::prometheus::render(), "kycgate_store_input_reads_total", &label)
}

async fn open(server: &Server, ns: &str, recent_inputs_max_bytes: usize) -> RedisStore {
    let ttls = Ttls { task: Duration::from_secs(600), face: Duration::from_secs(600), lease: Duration::from_secs(30) };
    let opts = RedisOptions { recent_inputs_max_bytes, ..RedisOptions::default() };
    RedisStore::open(&server.url(), ns, ttls, opts, StoreOptions::default()).await.expect("connect")
}

/// A worker of the instance that queued a task takes its input from that instance, whole,
/// instead of reading back from Redis the bytes the submit just sent; any other worker (or
/// with the budget at 0) reads it from Redis as before, selfie left there until needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_worker_is_handed_the_input_without_reading_it_back() {
    let server = Server::start(free_port());
    server.ready().await;
    let selfie = Bytes::from(crate::support::eval_image("faces/deepface/img1.jpg"));
    let passport = Bytes::from(crate::support::eval_image("documents/passporteye_100_pass-uto.jpg"));
    let upload = || with_images(selfie.clone(), passport.clone());

    let ns = crate::support::namespace("recent");
    let (a, b) = (open(&server, &ns, 32 << 20).await, open(&server, &ns, 32 << 20).await);
    let kept = input_reads("kept");
    let (claimed, stats) = claim_while_waiting(&server, &a, &a, upload()).await;
    assert!(input_reads("kept") >= kept + 1.0, "the kept input is counted");
    assert_eq!(claimed.input, upload(), "the whole input, selfie included");
    assert!(!claimed.late_selfie);
    assert!(!stats.contains_key("hmget"), "the input was read back: {stats:?}");

    // Another instance's worker: read from Redis, the selfie late.
    let read_back = input_reads("redis");
    let (claimed, stats) = claim_while_waiting(&server, &a, &b, upload()).await;
    assert!(input_reads("redis") >= read_back + 1.0, "the read back is counted");
    assert!(claimed.late_selfie);
    assert_eq!(claimed.input.upload.images().iter().find(|(r, _)| *r == "passport").map(|(_, b)| (*b).clone()), Some(passport.clone()));
    assert_eq!(stats.get("hmget"), Some(&1), "{stats:?}");
    let late = b.late_image(claimed.id, "selfie").await.expect("late selfie").expect("kept in Redis");
    assert_eq!(late, selfie);

    // Turned off: the same instance reads it back too.
    let ns = crate::support::namespace("recent-off");
    let off = open(&server, &ns, 0).await;
    let (claimed, stats) = claim_while_waiting(&server, &off, &off, upload()).await;
    assert!(claimed.late_selfie);
    assert_eq!(stats.get("hmget"), Some(&1), "{stats:?}");
}
