//! The public API end to end: the real gateway on a loopback port (memory store, local
//! provider on real images), driven over HTTP. Covers every documented 400, auth and tokens,
//! task lifecycle, owner isolation, portrait media and `extend_data`.

use std::time::Duration;

use serde_json::{json, Value};
use crate::support::*;

const INVALID_IMAGE: &str =
    "Upload a valid image. The file you uploaded was either not an image or a corrupted image.";
const NO_FILE: &str = "No file was submitted.";
const NOT_A_FILE: &str = "The submitted data was not a file. Check the encoding type on the form.";

/// The ICAO 9303 TD3 specimen (Utopia, Anna Maria Eriksson) with its portrait.
const PASSPORT: &str = "documents/passporteye_100_pass-uto.jpg";

/// A PNG whose header claims `w`×`h` pixels: a decompression bomb as far as a decoder knows.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut bytes = png(1);
    // Signature (8) + chunk length (4) + "IHDR" (4), then width and height; CRC over type+data.
    bytes[16..20].copy_from_slice(&w.to_be_bytes());
    bytes[20..24].copy_from_slice(&h.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    bytes
}

fn truncated_jpeg() -> Vec<u8> {
    let mut jpeg = eval_image(PASSPORT);
    jpeg.truncate(jpeg.len() / 3);
    jpeg
}

fn field_errors(body: &Value) -> Vec<(String, Vec<String>)> {
    let obj = body.as_object().unwrap_or_else(|| panic!("not an object: {body}"));
    obj.iter()
        .map(|(k, v)| {
            let msgs = v.as_array().unwrap_or_else(|| panic!("{k}: not a list: {body}"));
            (k.clone(), msgs.iter().map(|m| m.as_str().expect("message").to_string()).collect())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_400_is_reported_at_once() {
    let gw = TestGateway::start(Options::default()).await;
    let api = gw.client();

    // Nothing submitted: both files named, DRF wording, nothing else.
    let (code, body) = api.submit("kyc_passport", vec![]).await;
    assert_eq!(code, 400);
    assert_eq!(body, json!({ "selfie_image": [NO_FILE], "passport_image": [NO_FILE] }));

    // Text where a file belongs, and a file that is not an image: both reported together.
    let (code, body) = api
        .submit("kyc_passport", vec![text("selfie_image", "me.jpg"), file("passport_image", b"just some text, not an image".to_vec())])
        .await;
    assert_eq!(code, 400);
    assert_eq!(body, json!({ "selfie_image": [NOT_A_FILE], "passport_image": [INVALID_IMAGE] }));

    // Unsupported format and a truncated JPEG (the header parses, the data does not).
    let (code, body) = api
        .submit("ocr_card", vec![file("front_id", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec()), file("back_id", truncated_jpeg())])
        .await;
    assert_eq!(code, 400);
    assert_eq!(
        body,
        json!({
            "front_id": ["File extension \u{201c}gif\u{201d} is not allowed. Allowed extensions are: png, jpeg, jpg."],
            "back_id": [INVALID_IMAGE],
        })
    );

    // A decompression bomb is refused from its header.
    let (code, body) = api.submit("face_liveness", vec![file("image", png_claiming(60_000, 60_000))]).await;
    assert_eq!(code, 400);
    let errs = field_errors(&body);
    assert_eq!(errs.len(), 1, "{body}");
    assert_eq!(errs[0].0, "image");
    assert!(errs[0].1[0].contains("60000x60000"), "{body}");

    // Empty file part.
    let (code, body) = api.submit("face_liveness", vec![file("image", Vec::new())]).await;
    assert_eq!((code, body), (400, json!({ "image": ["The submitted file is empty."] })));

    // Non-file fields: required, UUID syntax, boolean syntax, and an unknown registered face.
    let face = eval_image("faces/deepface/img1.jpg");
    let (code, body) = api.submit("authenticate_face", vec![file("image", face.clone()), text("extend_data", "maybe")]).await;
    assert_eq!(code, 400);
    assert_eq!(body, json!({ "uuid": ["This field is required."], "extend_data": ["Must be a valid boolean."] }));
    let (code, body) = api.submit("authenticate_face", vec![file("image", face.clone()), text("uuid", "not-a-uuid")]).await;
    assert_eq!((code, body), (400, json!({ "uuid": ["Must be a valid UUID."] })));
    let unknown = uuid::Uuid::new_v4().to_string();
    let (code, body) = api.submit("authenticate_face", vec![file("image", face.clone()), text("uuid", &unknown)]).await;
    assert_eq!((code, body), (400, json!({ "uuid": ["No registered face with this uuid."] })));

    // Not multipart at all.
    let resp = api
        .http
        .post(format!("{}/api/v3/services/face_liveness/", gw.base))
        .bearer_auth(KEY)
        .json(&json!({ "image": "aGVsbG8=" }))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 415);

    // Unknown service: JSON 404.
    let (code, body) = api.submit("palm_reading", vec![file("image", face)]).await;
    assert_eq!(code, 404);
    assert!(body["detail"].is_string(), "{body}");

    // Task lookups: missing, malformed and unknown ids.
    assert_eq!(api.get("/api/v3/services/task/").await, (400, json!({ "id": ["This field is required."] })));
    assert_eq!(api.task("12345").await, (400, json!({ "id": ["Must be a valid UUID."] })));
    let (code, body) = api.task(&uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(code, 404);
    assert!(body["detail"].is_string(), "{body}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused_whole() {
    let gw = TestGateway::start(Options {
        extra_toml: "[images]\nmax_bytes = 100000\n".into(),
        ..Options::default()
    })
    .await;
    let api = gw.client();
    // Over the per-file limit: a field error naming the sizes.
    let big = eval_image(PASSPORT);
    assert!(big.len() > 100_000);
    let (code, body) = api.submit("ocr_passport", vec![file("passport_image", big.clone())]).await;
    assert_eq!(code, 400);
    let msg = body["passport_image"][0].as_str().expect("field error");
    assert!(msg.starts_with("Ensure this file size does not exceed 100000 bytes"), "{msg}");
    gw.stop().await;

    // Over the whole-body limit: 413 before any parsing.
    let gw = TestGateway::start(Options {
        server_toml: "max_body_bytes = 50000".into(),
        ..Options::default()
    })
    .await;
    let (code, body) = gw.client().submit("ocr_passport", vec![file("passport_image", big)]).await;
    assert_eq!(code, 413, "{body}");
    assert!(body["detail"].is_string(), "{body}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_keys_tokens_and_rotation() {
    let gw = TestGateway::start(Options::default()).await;
    let face = || file("image", eval_image("faces/deepface/img1.jpg"));

    // No credentials or a wrong key: 401 with a JSON detail, even while a large upload is
    // still being sent (the server reads it before answering, so the client gets the answer).
    let large = eval_image(PASSPORT);
    for key in [None, Some("wrong-key")] {
        let (code, body) = gw.client_with(key).submit("kyc_passport", vec![file("passport_image", large.clone()), file("selfie_image", large.clone())]).await;
        assert_eq!(code, 401, "{body}");
        assert!(body["detail"].is_string(), "{body}");
        let (code, _) = gw.client_with(key).task(&uuid::Uuid::new_v4().to_string()).await;
        assert_eq!(code, 401);
    }

    // Token obtain: the documented 400 and 401, then a pair.
    let http = reqwest::Client::new();
    let obtain = format!("{}/api/v3/accounts/token/obtain/", gw.base);
    let r = http.post(&obtain).multipart(reqwest::multipart::Form::new().text("username", USER)).send().await.expect("POST");
    assert_eq!(json_of(r).await, (400, json!({ "password": ["This field is required."] })));
    let r = http.post(&obtain).json(&json!({ "username": USER, "password": "nope" })).send().await.expect("POST");
    assert_eq!(json_of(r).await, (401, json!({ "detail": "No active account found with the given credentials" })));
    let r = http.post(&obtain).json(&json!({ "username": USER, "password": PASSWORD })).send().await.expect("POST");
    let (code, pair) = json_of(r).await;
    assert_eq!(code, 200, "{pair}");
    let access = pair["access"].as_str().expect("access").to_string();
    let refresh = pair["refresh"].as_str().expect("refresh").to_string();

    // The access token works like a key; its tasks belong to the user.
    let user = gw.client_with(Some(&access));
    let id = user.submit_ok("face_liveness", vec![face()]).await;
    assert_eq!(user.task(&id).await.0, 200);
    assert_eq!(gw.client().task(&id).await.0, 404, "the key's owner must not see the user's task");

    // Refresh rotates: the new pair works, the spent refresh token does not.
    let refresh_url = format!("{}/api/v3/accounts/token/refresh/", gw.base);
    let r = http.post(&refresh_url).json(&json!({ "refresh": refresh })).send().await.expect("POST");
    let (code, rotated) = json_of(r).await;
    assert_eq!(code, 200, "{rotated}");
    assert_ne!(rotated["refresh"], pair["refresh"]);
    let again = gw.client_with(rotated["access"].as_str());
    assert_eq!(again.task(&id).await.0, 200);
    let r = http.post(&refresh_url).json(&json!({ "refresh": refresh })).send().await.expect("POST");
    assert_eq!(r.status().as_u16(), 401, "a spent refresh token was accepted");
    // A refresh token is not an access token.
    assert_eq!(gw.client_with(rotated["refresh"].as_str()).task(&id).await.0, 401);
    gw.stop().await;
}

/// With `[worker] threads`, task work runs on a runtime of its own at a lower priority: the
/// local provider's whole `kyc_passport` still runs there, and stopping the gateway ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kyc_passport_on_a_task_runtime_of_its_own() {
    let gw = TestGateway::start(Options { worker_toml: "threads = 1\nnice = 5".into(), ..Options::default() }).await;
    let api = gw.client();
    let id = api.submit_ok("kyc_passport", kyc_specimen("false")).await;
    let (task, _) = api.wait(&id, Duration::from_secs(120)).await;
    assert_eq!(task["status"], "SUCCESS", "{task}");
    assert_eq!(task["result"]["data"]["document"]["documentNumber"], "L898902C3", "{task}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kyc_passport_lifecycle_media_and_isolation() {
    let gw = TestGateway::start(Options::default()).await;
    let api = gw.client();
    let other = gw.client_with(Some(OTHER_KEY));

    let id = api.submit_ok("kyc_passport", kyc_specimen("true")).await;
    // Someone else's id is indistinguishable from an unknown one.
    assert_eq!(other.task(&id).await.0, 404);

    let (task, seen) = api.wait(&id, Duration::from_secs(120)).await;
    let order = ["PENDING", "STARTED", "SUCCESS"];
    let ranks: Vec<usize> = seen.iter().map(|s| order.iter().position(|o| o == s).expect("known status")).collect();
    assert!(ranks.windows(2).all(|w| w[0] < w[1]), "status went backwards: {seen:?}");
    assert_eq!(task["id"], json!(id));
    assert_eq!(task["status"], "SUCCESS", "{task}");
    let result = &task["result"];
    assert_eq!(result["status"], 200, "{result}");
    let data = &result["data"];

    // The documented document object, from the MRZ of the ICAO specimen.
    let doc = &data["document"];
    assert_eq!(doc["documentNumber"], "L898902C3", "{doc}");
    assert_eq!(doc["lastName"], "ERIKSSON");
    assert_eq!(doc["firstName"], "ANNA MARIA");
    assert_eq!(doc["dateOfBirth"], "1974-8-12");
    assert_eq!(doc["dateOfExpiry"], "2012-4-15");
    assert_eq!(doc["dateOfIssue"], "None-None-None");
    assert_eq!(doc["sex"], "F");
    assert_eq!(doc["is_valid"], true);
    assert_eq!(doc["is_expired"], true);
    assert!(doc["age"].as_u64().is_some_and(|a| a >= 52), "{doc}");
    assert!(doc["nationality"].as_str().is_some_and(|n| !n.is_empty() && n != "UTO"), "{doc}");

    // A different person: live selfie, no match, each with its score.
    assert_eq!(data["compare"], false, "{data}");
    assert!(data["liveness"].is_boolean());
    assert!(data["details"]["compare"]["data"].is_object() || data["details"]["compare"].is_object(), "{data}");

    // Who answered, and the raw payloads under extended.<sub-call>.<provider>.
    for sub in ["document_ocr", "liveness", "face_compare"] {
        let attempts = data["providers"][sub].as_array().unwrap_or_else(|| panic!("no attempts for {sub}: {data}"));
        assert_eq!(attempts[0]["provider"], "local");
        assert_eq!(attempts[0]["outcome"], "ok");
        assert!(data["extended"][sub].get("local").is_some(), "no extended.{sub}.local: {data}");
    }

    // The portrait: a relative path and an absolute URL on this gateway, behind auth, per owner.
    let rel = doc["portrait"].as_str().expect("portrait");
    assert!(rel.starts_with("images/services/kyc_passport/") && rel.ends_with(".jpg"), "{rel}");
    let url = doc["portrait_url"].as_str().expect("portrait_url");
    assert_eq!(url, format!("{}/media/{rel}", gw.base));
    let fetched = api.http.get(url).bearer_auth(KEY).send().await.expect("GET media");
    assert_eq!(fetched.status().as_u16(), 200);
    let jpeg = fetched.bytes().await.expect("bytes");
    let portrait = image::load_from_memory(&jpeg).expect("portrait decodes");
    assert!(portrait.width() >= 64 && portrait.height() >= 64);
    assert_eq!(api.http.get(url).send().await.expect("GET").status().as_u16(), 401);
    assert_eq!(api.http.get(url).bearer_auth(OTHER_KEY).send().await.expect("GET").status().as_u16(), 404);

    // Without extend_data there is no `extended`.
    let id = api.submit_ok("ocr_passport", vec![file("passport_image", eval_image(PASSPORT))]).await;
    let (task, _) = api.wait(&id, Duration::from_secs(120)).await;
    assert_eq!(task["result"]["data"]["document"]["documentNumber"], "L898902C3");
    assert!(task["result"]["data"].get("extended").is_none(), "{task}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_then_authenticate_the_same_and_another_person() {
    let gw = TestGateway::start(Options::default()).await;
    let api = gw.client();
    // Same person (deepface person01: img1, img2; pairs.csv same=1), and someone else (img3).
    let (a, b) = ("faces/deepface/img1.jpg", "faces/deepface/img2.jpg");
    let someone_else = "faces/deepface/img3.jpg";

    let id = api.submit_ok("register_face", vec![file("image", eval_image(a))]).await;
    let (task, _) = api.wait(&id, Duration::from_secs(60)).await;
    assert_eq!(task["result"]["status"], 200, "{task}");
    let face = task["result"]["data"]["uuid"].as_str().expect("registered uuid").to_string();

    let id = api.submit_ok("authenticate_face", vec![file("image", eval_image(b)), text("uuid", &face)]).await;
    let (task, _) = api.wait(&id, Duration::from_secs(60)).await;
    let auth = &task["result"]["data"]["authentication"];
    assert_eq!(auth["result"], true, "{task}");
    // Documented as numbers in strings.
    assert!(auth["data"]["matchScore"].as_str().is_some_and(|s| s.parse::<f64>().is_ok()), "{auth}");
    assert!(auth["data"]["scorePercent"].as_str().is_some_and(|s| s.parse::<f64>().is_ok()), "{auth}");

    // Someone else against the registered face.
    let id = api.submit_ok("authenticate_face", vec![file("image", eval_image(someone_else)), text("uuid", &face)]).await;
    let (task, _) = api.wait(&id, Duration::from_secs(60)).await;
    assert_eq!(task["result"]["data"]["authentication"]["result"], false, "{task}");

    // Registered faces are per owner too.
    let (code, body) = gw
        .client_with(Some(OTHER_KEY))
        .submit("authenticate_face", vec![file("image", eval_image(b)), text("uuid", &face)])
        .await;
    assert_eq!((code, body), (400, json!({ "uuid": ["No registered face with this uuid."] })));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_face_is_a_400_result_with_the_documented_issue() {
    let gw = TestGateway::start(Options::default()).await;
    let api = gw.client();
    let id = api.submit_ok("face_liveness", vec![file("image", png(320))]).await;
    let (task, _) = api.wait(&id, Duration::from_secs(60)).await;
    assert_eq!(task["status"], "SUCCESS");
    let result = &task["result"];
    assert_eq!(result["status"], 400, "{result}");
    assert_eq!(result["data"]["liveness"]["result"], false);
    assert_eq!(result["data"]["liveness"]["error_code"], "FACE_NOT_FOUND");
    assert!(result["data"]["issues"]["liveness"]["FACE_NOT_FOUND"].is_string(), "{result}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let gw = TestGateway::start(Options::default()).await;
    let api = gw.client_with(None);
    assert_eq!(api.get("/healthz").await, (200, json!({ "status": "ok" })));
    let (code, body) = api.get("/readyz").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["store"], "ok");
    for sub in ["liveness", "face_compare", "document_ocr"] {
        assert_eq!(body["sub_calls"][sub], "ok", "{body}");
        assert_eq!(body["circuits"][sub]["local"], "closed", "{body}");
    }
    gw.stop().await;
}
