//! The API behind the console's *Tasks* and *Routing* views, over HTTP against a real gateway:
//! `GET /api/v3/services/tasks/` (filters, paging, owner isolation, limits, deletion through
//! `DELETE task/`) on the memory store and on Redis, and the operator-only
//! `GET /api/v3/admin/routing/`.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// Follows `next` from `first_query` until it is null; returns every task in order and the page sizes.
async fn every_page(api: &Api, first_query: &str) -> (Vec<Value>, Vec<usize>) {
    let (mut tasks, mut sizes) = (Vec::new(), Vec::new());
    let mut query = first_query.to_string();
    for _ in 0..50 {
        let (code, page) = api.get(&format!("/api/v3/services/tasks/?{query}")).await;
        assert_eq!(code, 200, "{page}");
        let results = page["results"].as_array().expect("results").clone();
        sizes.push(results.len());
        tasks.extend(results);
        match page["next"].as_str() {
            Some(next) => query = format!("{first_query}&cursor={next}"),
            None => {
                assert!(page["next"].is_null(), "{page}");
                return (tasks, sizes);
            }
        }
    }
    panic!("the list never ended");
}

fn ids(tasks: &[Value]) -> Vec<String> {
    tasks.iter().map(|t| t["id"].as_str().expect("id").to_string()).collect()
}

async fn list_filters_pages_and_deletes(opts: Options) {
    let gw = TestGateway::start(opts).await;
    let api = gw.client();
    let other = gw.client_with(Some(OTHER_KEY));
    let image = || vec![file("image", png(64))];
    let mut mine = Vec::new();
    for service in ["face_liveness", "register_face", "face_liveness", "register_face", "face_liveness"] {
        mine.push(api.submit_ok(service, image()).await);
        // Tasks created in the same millisecond have no order between them (the list orders by
        // creation ms, then id), and a submit can now take less than one: let the clock tick so
        // each task is newer than the last.
        let answered = kycgate::tasks::now_ms();
        while kycgate::tasks::now_ms() <= answered {
            tokio::task::yield_now().await;
        }
    }
    let theirs = other.submit_ok("face_liveness", image()).await;
    for id in &mine {
        api.wait(id, Duration::from_secs(60)).await;
    }

    // Everything, newest first; pages of two give the same list.
    let (all, sizes) = every_page(&api, "").await;
    assert_eq!(sizes, [5]);
    let listed: HashSet<String> = ids(&all).into_iter().collect();
    assert_eq!(listed, mine.iter().cloned().collect::<HashSet<_>>(), "exactly the caller's tasks");
    let created: Vec<&str> = all.iter().map(|t| t["created_at"].as_str().expect("created_at")).collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "newest first: {created:?}");
    assert_eq!(ids(&all).last(), Some(&mine[0]), "the first submitted comes last");
    for t in &all {
        assert!(t["finished_at"].is_string(), "a finished task says when: {t}");
        assert!(t["status"] == "SUCCESS" || t["status"] == "FAILURE", "{t}");
    }
    let (paged, sizes) = every_page(&api, "limit=2").await;
    assert_eq!(ids(&paged), ids(&all));
    assert_eq!(sizes, [2, 2, 1]);

    // Filters.
    let (faces, _) = every_page(&api, "service=register_face").await;
    assert_eq!(faces.len(), 2);
    assert!(faces.iter().all(|t| t["service"] == "register_face"));
    let mut by_status = 0;
    for status in ["PENDING", "STARTED", "SUCCESS", "FAILURE"] {
        let (some, _) = every_page(&api, &format!("status={status}&limit=1")).await;
        assert!(some.iter().all(|t| t["status"] == status), "{some:?}");
        by_status += some.len();
    }
    assert_eq!(by_status, 5, "every task has one status");
    let (code, page) = api.get("/api/v3/services/tasks/?status=success&service=face_liveness").await;
    assert_eq!(code, 200, "{page}");
    assert!(page["results"].as_array().expect("results").iter().all(|t| t["service"] == "face_liveness"));

    // Owners see their own only.
    let (theirs_listed, _) = every_page(&other, "").await;
    assert_eq!(ids(&theirs_listed), std::slice::from_ref(&theirs));

    // Bad parameters: DRF field errors, all at once; other methods 405; no credential 401.
    for (query, field, message) in [
        ("limit=0", "limit", "Ensure this value is greater than or equal to 1."),
        ("limit=101", "limit", "Ensure this value is less than or equal to 100."),
        ("limit=two", "limit", "A valid integer is required."),
        ("cursor=abc", "cursor", "Invalid cursor."),
        ("status=DONE", "status", "\"DONE\" is not a valid choice."),
        ("service=selfie", "service", "\"selfie\" is not a valid choice."),
    ] {
        let (code, body) = api.get(&format!("/api/v3/services/tasks/?{query}")).await;
        assert_eq!(code, 400, "{query}: {body}");
        assert_eq!(body[field][0], message, "{query}: {body}");
    }
    let (code, body) = api.get("/api/v3/services/tasks/?limit=0&status=x").await;
    assert_eq!((code, body.as_object().map(|o| o.len())), (400, Some(2)), "{body}");
    let post = api.http.post(format!("{}/api/v3/services/tasks/", gw.base)).bearer_auth(KEY).send().await.expect("POST");
    assert_eq!(post.status().as_u16(), 405);
    let (code, _) = gw.client_with(None).get("/api/v3/services/tasks/").await;
    assert_eq!(code, 401);

    // Deletion (the console's delete button): gone from the list at once.
    let gone = &mine[2];
    let del = api.http.delete(format!("{}/api/v3/services/task/?id={gone}", gw.base)).bearer_auth(KEY).send().await.expect("DELETE");
    assert_eq!(del.status().as_u16(), 204);
    let (left, _) = every_page(&api, "").await;
    assert_eq!(left.len(), 4);
    assert!(!ids(&left).contains(gone));
    // Someone else's task cannot be deleted through it.
    let del = other.http.delete(format!("{}/api/v3/services/task/?id={}", gw.base, mine[0])).bearer_auth(OTHER_KEY).send().await.expect("DELETE");
    assert_eq!(del.status().as_u16(), 404);
    assert_eq!(every_page(&api, "").await.0.len(), 4);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_list_on_memory() {
    list_filters_pages_and_deletes(Options::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_list_on_redis() {
    list_filters_pages_and_deletes(Options { store: redis_url(), ..Options::default() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routing_shows_chains_circuits_latency_and_spend_to_operators_only() {
    let routing = "[routing.liveness]\nchain = [{ provider = \"local\", cost_per_call = 0.25, daily_budget = 10.0 }]\n";
    let gw = TestGateway::start(Options { extra_toml: routing.into(), ..Options::default() }).await;
    let (code, body) = gw.client().get("/api/v3/admin/routing/").await;
    assert_eq!((code, &body["detail"]), (403, &Value::from("You do not have permission to perform this action.")));
    let (code, _) = gw.client_with(None).get("/api/v3/admin/routing/").await;
    assert_eq!(code, 401);
    let operator = gw.client_with(Some(OPERATOR_KEY));

    let (code, before) = operator.get("/api/v3/admin/routing").await;
    assert_eq!(code, 200, "{before}");
    let subs = before["sub_calls"].as_array().expect("sub_calls");
    let names: Vec<&str> = subs.iter().map(|s| s["sub_call"].as_str().expect("name")).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let liveness = |doc: &Value| doc["sub_calls"].as_array().expect("sub_calls").iter().find(|s| s["sub_call"] == "liveness").cloned().expect("liveness");
    let live = liveness(&before);
    assert_eq!(live["chain"][0]["provider"], "local");
    assert_eq!(live["chain"][0]["daily_budget"], 10.0);
    assert_eq!(live["split"], Value::Array(vec![]));
    assert!(live["hedge"].is_null());
    let local = &live["providers"][0];
    assert_eq!((&local["provider"], &local["circuit"]), (&Value::from("local"), &Value::from("closed")));
    assert_eq!(local["recent"]["calls"], 0);
    assert!(local["recent"]["p50_ms"].is_null());
    assert_eq!(local["spend"]["spent_today"], 0.0);

    let api = gw.client();
    for _ in 0..2 {
        let id = api.submit_ok("face_liveness", vec![file("image", eval_image("faces/deepface/img1.jpg"))]).await;
        api.wait(&id, Duration::from_secs(60)).await;
    }
    let (_, after) = operator.get("/api/v3/admin/routing/").await;
    let local = &liveness(&after)["providers"][0];
    assert_eq!(local["recent"]["calls"], 2, "{local}");
    let (p50, p99) = (local["recent"]["p50_ms"].as_f64().expect("p50"), local["recent"]["p99_ms"].as_f64().expect("p99"));
    assert!(p50 > 0.0 && p50 <= p99, "{local}");
    assert_eq!(local["recent"]["error_rate"], 0.0);
    assert_eq!(local["spend"]["spent_today"], 0.5, "two answered calls at 0.25");
    assert_eq!(local["spend"]["daily_budget"], 10.0);
    gw.stop().await;
}
