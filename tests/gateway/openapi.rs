//! The OpenAPI reference (`GET /api/v3/openapi.json`) against the live server: every route of
//! the router is documented and every documented operation is routed; every documented example
//! validates against its schema, and every example pair (request example `N` → response example
//! `N`) is sent and answered exactly so; real answers validate against the schemas; every
//! authenticated operation refuses a request without credentials as documented.

use std::time::Duration;

use serde_json::{json, Value};
use template::Template;

use crate::support::*;

/// The router's `(method, path template)` pairs, read from the source that builds it.
fn router_routes() -> Vec<(String, String)> {
    let src = std::fs::read_to_string(repo().join("src/api/mod.rs")).expect("src/api/mod.rs");
    let mut out = Vec::new();
    for call in src.split(".route(\"").skip(1) {
        let Some((path, rest)) = call.split_once('"') else { continue };
        // The handlers of this route: up to the closing of `.route(…)`'s line.
        let args = rest.lines().next().unwrap_or_default();
        for m in ["get", "post", "put", "delete", "patch"] {
            let direct = format!(" {m}(");
            let chained = format!(".{m}(");
            if args.contains(&direct) || args.contains(&chained) {
                out.push((m.to_string(), path.to_string()));
            }
        }
    }
    assert!(out.len() >= 10, "could not read the routes from src/api/mod.rs: {out:?}");
    out
}

/// Path templates, `{name}` one segment, `{*name}` the rest; without a trailing slash.
mod template {
    pub struct Template(Vec<String>);

    impl Template {
        pub fn new(path: &str) -> Self {
            Self(path.trim_end_matches('/').split('/').map(str::to_string).collect())
        }

        /// Whether a concrete path (or a documented one, whose `{param}` is one segment) fits.
        pub fn matches(&self, path: &str) -> bool {
            let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
            for (i, t) in self.0.iter().enumerate() {
                if t.starts_with("{*") {
                    return segs.len() > i;
                }
                match segs.get(i) {
                    Some(s) if t.starts_with('{') || s == t => {}
                    _ => return false,
                }
            }
            segs.len() == self.0.len()
        }
    }
}

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            out.push((method.clone(), path.clone(), op.clone()));
        }
    }
    out
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").expect("local ref");
            let target = &doc["components"]["schemas"][name];
            assert!(target.is_object(), "dangling $ref {r}");
            target
        }
        None => schema,
    }
}

/// A small JSON Schema check: type, enum, required, properties, additionalProperties, items,
/// oneOf, format uuid.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(options) = schema["oneOf"].as_array() {
        let fits = options.iter().filter(|s| validate(doc, s, value, at).is_ok()).count();
        return if fits == 1 { Ok(()) } else { Err(format!("{at}: {fits} oneOf branches fit {value}")) };
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() {
        let fits = types.iter().any(|t| match *t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            other => panic!("schema type {other} not handled"),
        });
        if !fits {
            return Err(format!("{at}: {value} is not {types:?}"));
        }
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            return Err(format!("{at}: {value} not in {allowed:?}"));
        }
    }
    if schema["format"] == "uuid" && value.is_string() && uuid::Uuid::parse_str(value.as_str().unwrap_or_default()).is_err() {
        return Err(format!("{at}: {value} is not a UUID"));
    }
    if let Some(obj) = value.as_object() {
        for key in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !obj.contains_key(key) {
                return Err(format!("{at}: required `{key}` missing in {value}"));
            }
        }
        let props = schema["properties"].as_object();
        for (k, v) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => validate(doc, s, v, &format!("{at}.{k}"))?,
                None if schema["additionalProperties"].is_object() => {
                    validate(doc, &schema["additionalProperties"], v, &format!("{at}.{k}"))?
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(schema)) = (value.as_array(), schema.get("items")) {
        for (i, v) in items.iter().enumerate() {
            validate(doc, schema, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

fn json_schema_of(op: &Value, code: &str) -> Option<Value> {
    op["responses"][code]["content"]["application/json"]["schema"].as_object().map(|s| Value::Object(s.clone()))
}

/// A request for `op` at `path` filled from the request examples named `name` (or none).
fn request(api: &Api, method: &str, path: &str, op: &Value, name: Option<&str>, authenticated: bool) -> reqwest::RequestBuilder {
    let mut url_path = path.to_string();
    let mut query = Vec::new();
    let mut headers = Vec::new();
    for p in op["parameters"].as_array().into_iter().flatten() {
        let pname = p["name"].as_str().expect("parameter name");
        let value = name.and_then(|n| p["examples"][n]["value"].as_str()).unwrap_or("x").to_string();
        match p["in"].as_str() {
            Some("path") => url_path = url_path.replace(&format!("{{{pname}}}"), &value),
            Some("query") => query.push((pname.to_string(), value)),
            // Optional headers are sent only when the example names a value.
            Some("header") => {
                if let Some(v) = name.and_then(|n| p["examples"][n]["value"].as_str()) {
                    headers.push((pname.to_string(), v.to_string()));
                }
            }
            other => panic!("parameter location {other:?}"),
        }
    }
    let url = format!("{}{url_path}", api.base);
    let mut req = match method {
        "get" => api.http.get(url),
        "post" => api.http.post(url),
        "delete" => api.http.delete(url),
        other => panic!("method {other}"),
    };
    for (k, v) in headers {
        req = req.header(k, v);
    }
    if !query.is_empty() {
        req = req.query(&query);
    }
    if authenticated {
        req = req.bearer_auth(api.key.clone().expect("key"));
    }
    let content = &op["requestBody"]["content"];
    if let Some(n) = name {
        if let Some(v) = content["multipart/form-data"]["examples"][n]["value"].as_object() {
            let mut form = reqwest::multipart::Form::new();
            for (k, v) in v {
                form = form.text(k.clone(), v.as_str().expect("text field").to_string());
            }
            req = req.multipart(form);
        } else if let Some(v) = content["application/json"]["examples"][n].get("value") {
            req = req.json(v);
        }
    }
    req
}

/// Whether `op` can be sent with no input at all.
fn needs_no_input(op: &Value) -> bool {
    op["parameters"].as_array().is_none_or(|ps| ps.iter().all(|p| p["required"] != true)) && op["requestBody"]["required"] != true
}

fn is_authenticated(doc: &Value, op: &Value) -> bool {
    let security = op.get("security").unwrap_or(&doc["security"]);
    security.as_array().is_some_and(|s| !s.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_matches_the_router_and_the_live_answers() {
    let gw = TestGateway::start(Options::default()).await;
    let api = gw.client();
    let anonymous = gw.client_with(None);
    let (code, doc) = anonymous.get("/api/v3/openapi.json").await;
    assert_eq!(code, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let ops = operations(&doc);

    // Every route is documented, every documented operation routed.
    let routes = router_routes();
    for (method, template) in &routes {
        let t = Template::new(template);
        assert!(
            ops.iter().any(|(m, p, _)| m == method && t.matches(p)),
            "route {method} {template} is not in the OpenAPI document"
        );
    }
    for (method, path, _) in &ops {
        assert!(
            routes.iter().any(|(m, t)| m == method && Template::new(t).matches(path)),
            "documented {method} {path} is not routed"
        );
    }
    // All seven services, by name.
    for service in kycgate::tasks::ServiceKind::ALL {
        assert!(doc["paths"][format!("/api/v3/services/{}/", service.as_str())]["post"].is_object(), "{service}");
    }
    let mut ids: Vec<&str> = ops.iter().map(|(_, _, op)| op["operationId"].as_str().expect("operationId")).collect();
    ids.sort();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "operationIds must be unique");

    let mut sent = 0;
    for (method, path, op) in &ops {
        let authenticated = is_authenticated(&doc, op);
        for (code, response) in op["responses"].as_object().expect("responses") {
            let Some(examples) = response["content"]["application/json"]["examples"].as_object() else { continue };
            let schema = json_schema_of(op, code).expect("an example has a schema");
            for (name, example) in examples {
                let value = &example["value"];
                if let Err(e) = validate(&doc, &schema, value, &format!("{method} {path} {code} {name}")) {
                    panic!("documented example does not fit its schema: {e}");
                }
                let has_request = op["parameters"].as_array().into_iter().flatten().any(|p| p["examples"].get(name).is_some())
                    || op["requestBody"]["content"].as_object().into_iter().flatten().any(|(_, c)| c["examples"].get(name).is_some());
                if code == "401" && name == "no_credentials" {
                    continue; // sent for every operation below
                }
                if !has_request && !needs_no_input(op) {
                    continue; // needs real input: checked with real requests below
                }
                let resp = request(&api, method, path, op, Some(name), authenticated).send().await.expect("send");
                let (status, body) = json_of(resp).await;
                assert_eq!(status.to_string(), *code, "{method} {path} example {name}: {body}");
                assert_eq!(&body, value, "{method} {path} example {name}");
                sent += 1;
            }
        }
        if authenticated {
            let resp = request(&anonymous, method, path, op, None, false).send().await.expect("send");
            let (status, body) = json_of(resp).await;
            assert_eq!(status, 401, "{method} {path} without credentials: {body}");
            let schema = json_schema_of(op, "401").unwrap_or_else(|| panic!("{method} {path} documents no 401"));
            validate(&doc, &schema, &body, &format!("{method} {path} 401")).expect("401 fits");
        }
    }
    assert!(sent >= 20, "only {sent} example pairs were sent");

    // Real answers against the schemas.
    let check = |path: &str, method: &str, code: u16, body: &Value| {
        let op = &doc["paths"][path][method];
        let schema = json_schema_of(op, &code.to_string()).unwrap_or_else(|| panic!("{method} {path} documents no {code}"));
        validate(&doc, &schema, body, &format!("{method} {path} {code}")).unwrap_or_else(|e| panic!("{e}"));
    };
    let (code, created) = api.submit("face_liveness", vec![file("image", eval_image("faces/deepface/img1.jpg"))]).await;
    check("/api/v3/services/face_liveness/", "post", code, &created);
    let id = created["id"].as_str().expect("id");
    let (code, task) = api.task(id).await;
    check("/api/v3/services/task/", "get", code, &task);
    let (finished, _) = api.wait(id, Duration::from_secs(60)).await;
    check("/api/v3/services/task/", "get", 200, &finished);
    let (code, list) = api.get("/api/v3/services/tasks/?limit=1").await;
    check("/api/v3/services/tasks/", "get", code, &list);
    assert_eq!(list["results"][0]["id"], id, "{list}");
    let (code, routing) = gw.client_with(Some(OPERATOR_KEY)).get("/api/v3/admin/routing/").await;
    check("/api/v3/admin/routing/", "get", code, &routing);
    assert!(!finished["result"].is_null());
    let tokens = api
        .http
        .post(format!("{}/api/v3/accounts/token/obtain/", gw.base))
        .json(&json!({ "username": USER, "password": PASSWORD }))
        .send()
        .await
        .expect("POST");
    let (code, pair) = json_of(tokens).await;
    check("/api/v3/accounts/token/obtain/", "post", code, &pair);
    let (code, health) = anonymous.get("/healthz").await;
    check("/healthz", "get", code, &health);
    let (code, ready) = anonymous.get("/readyz").await;
    check("/readyz", "get", code, &ready);
    check("/api/v3/openapi.json", "get", 200, &doc);
    let metrics = reqwest::get(format!("{}/metrics", gw.base)).await.expect("GET");
    let ct = metrics.headers()["content-type"].to_str().expect("ascii").to_string();
    assert!(doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"].get(ct.split(';').next().expect("type")).is_some(), "{ct}");
    gw.stop().await;
}
