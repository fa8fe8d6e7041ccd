//! Several gateway instances sharing one real Redis: any instance answers for any task, and a
//! task whose instance died mid-run is reclaimed and finished by another one.
//!
//! Needs Redis (`KYCGATE_TEST_REDIS`, default redis://127.0.0.1:6379); `.ci/run` starts one.

use std::time::Duration;

use serde_json::json;
use crate::support::*;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_tasks_tokens_and_media() {
    let ns = namespace("shared");
    let opts = Options { store: redis_url(), namespace: ns, ..Options::default() };
    let a = TestGateway::start(opts.clone()).await;
    let b = TestGateway::start(opts).await;

    // A token from one instance works on the other (shared JWT secret).
    let r = reqwest::Client::new()
        .post(format!("{}/api/v3/accounts/token/obtain/", a.base))
        .json(&json!({ "username": USER, "password": PASSWORD }))
        .send()
        .await
        .expect("POST");
    let (_, pair) = json_of(r).await;
    let on_b = b.client_with(pair["access"].as_str());

    // Tasks submitted to either instance are visible, and finished, on both.
    let passport = eval_image("documents/passporteye_100_pass-uto.jpg");
    let mut ids = Vec::new();
    for gw in [&a, &b, &a, &b] {
        ids.push(gw.client().submit_ok("ocr_passport", vec![file("passport_image", passport.clone())]).await);
    }
    for (i, id) in ids.iter().enumerate() {
        let reader = if i % 2 == 0 { b.client() } else { a.client() };
        let (task, _) = reader.wait(id, Duration::from_secs(120)).await;
        assert_eq!(task["status"], "SUCCESS", "{task}");
        assert_eq!(task["result"]["data"]["document"]["documentNumber"], "L898902C3");
        // The portrait stored by whichever instance ran it is served by the other too.
        let url = task["result"]["data"]["document"]["portrait_url"].as_str().expect("portrait_url");
        let rel = url.split("/media/").nth(1).expect("media path");
        for gw in [&a, &b] {
            let r = reqwest::Client::new().get(format!("{}/media/{rel}", gw.base)).bearer_auth(KEY).send().await.expect("GET");
            assert_eq!(r.status().as_u16(), 200);
        }
    }
    // The user's own task, through the token, across instances.
    let id = a.client_with(pair["access"].as_str()).submit_ok("face_liveness", vec![file("image", eval_image("faces/deepface/img1.jpg"))]).await;
    let (task, _) = on_b.wait(&id, Duration::from_secs(60)).await;
    assert_eq!(task["status"], "SUCCESS");
    assert_eq!(b.client().task(&id).await.0, 404, "another owner saw the task");
    a.stop().await;
    b.stop().await;
}

/// On Redis a `kyc_passport` worker reads its selfie only once document OCR is done (the claim
/// leaves it in the store); the selfie checks still get it: the same verdicts as on the memory
/// store, which hands out whole inputs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kyc_selfie_read_after_ocr_gets_the_same_checks_as_a_whole_input() {
    let selfie = eval_image("faces/deepface/img1.jpg");
    let passport = eval_image("documents/passporteye_100_pass-uto.jpg");
    let mut results = Vec::new();
    for store in [redis_url(), "memory".to_string()] {
        let gw = TestGateway::start(Options { store, namespace: namespace("late-selfie"), ..Options::default() }).await;
        let form = vec![file("selfie_image", selfie.clone()), file("passport_image", passport.clone())];
        let id = gw.client().submit_ok("kyc_passport", form).await;
        let (task, _) = gw.client().wait(&id, Duration::from_secs(120)).await;
        assert_eq!(task["status"], "SUCCESS", "{task}");
        let data = &task["result"]["data"];
        let details = &data["details"];
        assert!(details["liveness"].is_object() && details["compare"].is_object(), "{task}");
        results.push((data["liveness"].clone(), data["compare"].clone(), details["compare"]["data"]["score"].clone()));
        gw.stop().await;
    }
    assert!(results[0].2.is_number(), "compare ran: {:?}", results[0]);
    assert_eq!(results[0], results[1], "Redis (selfie read late) and memory store answered alike");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_instance_dies_is_finished_by_another() {
    let ns = namespace("reclaim");
    // Instance A's liveness vendor hangs; instance B's answers. Same Redis, same namespace.
    let hanging = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/check_liveness"))
        .respond_with(vendor_answer("kbyai", "real.json").set_delay(Duration::from_secs(120)))
        .mount(&hanging)
        .await;
    let healthy = MockServer::start().await;
    Mock::given(method("POST")).and(path("/check_liveness")).respond_with(vendor_answer("kbyai", "real.json")).mount(&healthy).await;

    let dir_a = tempfile::tempdir().expect("tempdir");
    local_adapter(dir_a.path());
    vendor_adapter(dir_a.path(), "kbyai.toml", "vendor", &hanging.uri(), &[]);
    let dir_b = tempfile::tempdir().expect("tempdir");
    local_adapter(dir_b.path());
    vendor_adapter(dir_b.path(), "kbyai.toml", "vendor", &healthy.uri(), &[]);
    let routing = "[routing.liveness]\nchain = [{ provider = \"vendor\", timeout_ms = 300000 }]\n";
    let on_shared_redis = |dir: &std::path::Path| Options {
        store: redis_url(),
        namespace: ns.clone(),
        lease_secs: 2,
        ..Options::routed(dir, routing)
    };

    let a = TestGateway::start(on_shared_redis(dir_a.path())).await;
    let api = a.client();
    let id = api.submit_ok("face_liveness", vec![file("image", eval_image("faces/deepface/img1.jpg"))]).await;
    api.wait_for_status(&id, "STARTED", Duration::from_secs(30)).await;
    // A is inside the vendor call now; wait until the vendor has the request, then kill A.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while hanging.received_requests().await.expect("recorded").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "A never called its vendor");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.kill().await;
    // Nobody runs it now: it stays STARTED (read straight from Redis, as no instance is up).
    let observer = kycgate::tasks::store::redis::RedisStore::connect(&redis_url(), &ns, Default::default())
        .await
        .expect("Redis");
    let record = kycgate::tasks::store::TaskStore::get(&observer, id.parse().expect("uuid")).await.expect("get");
    assert_eq!(record.map(|r| r.status), Some(kycgate::tasks::TaskStatus::Started));

    // B starts later, takes over the task whose lease lapsed and finishes it (B may finish it
    // before this test's first look: its reclaim sweep runs as soon as it connects).
    let b = TestGateway::start(on_shared_redis(dir_b.path())).await;
    let (task, _) = b.client().wait(&id, Duration::from_secs(60)).await;
    assert_eq!(task["status"], "SUCCESS", "{task}");
    assert_eq!(task["result"]["data"]["liveness"]["result"], true);
    assert_eq!(healthy.received_requests().await.expect("recorded").len(), 1);
    b.stop().await;
}
