//! `GET /api/v3/openapi.json`: the OpenAPI 3.1 reference of every route.
//!
//! Built in code from what the handlers themselves use (the services and their form fields from
//! `api::services`, DRF messages, task states, the result status codes), not written by hand, so
//! it cannot drift from the forms. Examples are paired by name: a request example `N` (form
//! fields, JSON body or query parameters) produces the response example `N` under its status;
//! `tests/gateway/openapi.rs` sends every pair to a live server, checks every route of the
//! router is documented (and every documented one routed), and validates live answers against
//! the schemas. Why not `utoipa`: the responses are built as JSON values (`serde_json::json!`),
//! not typed structs a derive could read, and the proc-macro stack would cost every build.

use std::sync::OnceLock;

use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Map, Value};

use super::services::{field, image_fields, messages};
use super::tasks::list_messages;
use crate::tasks::store::TaskQuery;
use crate::tasks::{ServiceKind, TaskStatus};

/// The document, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

/// Unauthenticated, like `/healthz`: the API's shape is public.
pub async fn serve() -> impl IntoResponse {
    Json(document().clone())
}

/// `#/components/schemas/<name>`.
fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A JSON response with a schema and named examples.
fn json_response(description: &str, schema: &str, examples: &[(&str, Value)]) -> Value {
    let mut content = json!({ "schema": schema_ref(schema) });
    if !examples.is_empty() {
        let ex: Map<String, Value> = examples.iter().map(|(n, v)| (n.to_string(), json!({ "value": v }))).collect();
        content["examples"] = Value::Object(ex);
    }
    json!({ "description": description, "content": { "application/json": content } })
}

fn detail(text: &str) -> Value {
    json!({ "detail": text })
}

/// The answers every authenticated operation may give besides its own.
fn auth_responses(responses: &mut Map<String, Value>) {
    responses.insert(
        "401".into(),
        json_response(
            "No credentials, or credentials not valid",
            "Detail",
            &[("no_credentials", detail("Authentication credentials were not provided."))],
        ),
    );
}

fn build() -> Value {
    let mut paths = Map::new();
    for service in ServiceKind::ALL {
        paths.insert(format!("/api/v3/services/{}/", service.as_str()), json!({ "post": service_operation(service) }));
    }
    paths.insert("/api/v3/services/task/".into(), json!({ "get": task_operation(), "delete": task_delete() }));
    paths.insert("/api/v3/services/tasks/".into(), json!({ "get": task_list() }));
    paths.insert("/api/v3/services/faces/".into(), json!({ "delete": faces_erase() }));
    paths.insert("/api/v3/accounts/token/obtain/".into(), json!({ "post": token_obtain() }));
    paths.insert("/api/v3/accounts/token/refresh/".into(), json!({ "post": token_refresh() }));
    paths.insert("/media/{path}".into(), json!({ "get": media() }));
    paths.insert("/api/v3/admin/reload/".into(), json!({ "post": admin_reload() }));
    paths.insert("/api/v3/admin/routing/".into(), json!({ "get": admin_routing() }));
    paths.insert(
        "/healthz".into(),
        json!({ "get": {
            "operationId": "healthz",
            "summary": "Liveness probe: the process serves HTTP",
            "tags": ["operations"],
            "security": [],
            "responses": { "200": json_response("Serving", "Health", &[("healthy", json!({ "status": "ok" }))]) },
        }}),
    );
    paths.insert(
        "/readyz".into(),
        json!({ "get": {
            "operationId": "readyz",
            "summary": "Readiness: the store answers and every sub-call has a usable provider",
            "tags": ["operations"],
            "security": [],
            "responses": {
                "200": json_response("Ready", "Readiness", &[]),
                "503": json_response("Not ready (the body says what is missing)", "Readiness", &[]),
            },
        }}),
    );
    paths.insert(
        "/metrics".into(),
        json!({ "get": {
            "operationId": "metrics",
            "summary": "Prometheus text exposition (no personal data: labels are closed sets)",
            "tags": ["operations"],
            "security": [],
            "responses": { "200": {
                "description": "Metrics in the Prometheus text format 0.0.4",
                "content": { "text/plain": { "schema": { "type": "string" } } },
            }},
        }}),
    );
    paths.insert(
        "/api/v3/openapi.json".into(),
        json!({ "get": {
            "operationId": "openapi",
            "summary": "This document",
            "tags": ["operations"],
            "security": [],
            "responses": { "200": json_response("The OpenAPI 3.1 document", "OpenApiDocument", &[]) },
        }}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "kycgate",
            "version": env!("CARGO_PKG_VERSION"),
            "summary": "KYC gateway speaking the Progeny v3 API",
            "description": "Every service is a two-step call: POST the images (multipart/form-data), get a task id, \
                then GET the task until its status is SUCCESS or FAILURE. Every `/api/v3/…` route also answers \
                without its trailing slash. Every response carries an `X-Request-Id` header (the request's, when it sent a \
                plain one, else a generated UUID).",
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" },
        },
        "servers": [{ "url": "/" }],
        "security": [{ "bearer": [] }],
        "tags": [
            { "name": "services", "description": "Progeny v3 services (asynchronous tasks)" },
            { "name": "tasks", "description": "Task results and the media they link to" },
            { "name": "accounts", "description": "JWT tokens for users" },
            { "name": "operations", "description": "Probes, metrics, this document and admin" },
        ],
        "paths": paths,
        "components": components(),
    })
}

fn service_operation(service: ServiceKind) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for &name in image_fields(service) {
        properties.insert(name.into(), json!({ "type": "string", "format": "binary", "description": "A PNG or JPEG image" }));
        required.push(name);
    }
    if service == ServiceKind::AuthenticateFace {
        properties.insert(
            field::UUID.into(),
            json!({ "type": "string", "format": "uuid", "description": "The `data.uuid` of a register_face task" }),
        );
        required.push(field::UUID);
    }
    properties.insert(
        field::EXTEND_DATA.into(),
        json!({
            "type": "string",
            "description": "Include the providers' raw answers under result.data.extended (true/false/1/0/yes/no; default false)",
            "default": "false",
        }),
    );
    // Posting no field at all: every required one is reported, at once.
    let mut missing = Map::new();
    for &name in image_fields(service) {
        missing.insert(name.into(), json!([messages::NO_FILE]));
    }
    if service == ServiceKind::AuthenticateFace {
        missing.insert(field::UUID.into(), json!([messages::REQUIRED]));
    }
    // A text value where a file belongs, and an extend_data that is not a boolean.
    let first = image_fields(service)[0];
    let mut wrong = missing.clone();
    wrong.insert(first.into(), json!([messages::NOT_A_FILE]));
    wrong.insert(field::EXTEND_DATA.into(), json!([messages::INVALID_BOOL]));
    let mut wrong_request = Map::new();
    wrong_request.insert(first.into(), json!("not a file"));
    wrong_request.insert(field::EXTEND_DATA.into(), json!("maybe"));
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json_response(
            "Accepted: the task id to poll",
            "TaskCreated",
            &[("accepted", json!({ "id": "efe46711-b1d8-43f1-9d02-7a54c43b79a2" }))],
        ),
    );
    responses.insert(
        "400".into(),
        json_response(
            "Field errors, every field at once (DRF shape)",
            "FieldErrors",
            &[("no_files", Value::Object(missing)), ("text_instead_of_file", Value::Object(wrong))],
        ),
    );
    auth_responses(&mut responses);
    responses.insert("413".into(), json_response("The body is larger than server.max_body_bytes", "Detail", &[]));
    responses.insert("415".into(), json_response("Not multipart/form-data", "Detail", &[]));
    responses.insert(
        "422".into(),
        json_response("The `Idempotency-Key` was used before with a different form", "Detail", &[]),
    );
    responses.insert(
        "429".into(),
        json_response(
            "A queue bound is reached (store.max_queued_tasks, max_queued_bytes, max_queued_per_owner); \
             retry after the `Retry-After` header's seconds",
            "Detail",
            &[],
        ),
    );
    responses.insert(
        "503".into(),
        json_response("The task store is unreachable, or too many webhook deliveries are pending: retry later", "Detail", &[]),
    );
    json!({
        "operationId": service.as_str(),
        "summary": format!("Start a {} task", service.as_str()),
        "tags": ["services"],
        "parameters": [{
            "name": "Idempotency-Key",
            "in": "header",
            "required": false,
            "description": "1 to 255 visible ASCII characters: the same key with the same form returns the same task id for 24 h",
            "schema": { "type": "string", "minLength": 1, "maxLength": 255 },
        }],
        "requestBody": {
            "required": true,
            "content": { "multipart/form-data": {
                "schema": { "type": "object", "properties": properties, "required": required },
                "examples": {
                    "no_files": { "value": {} },
                    "text_instead_of_file": { "value": wrong_request },
                },
            }},
        },
        "responses": responses,
    })
}

/// `GET` and `DELETE task/`: the same `id` parameter, the same 400/404/401 answers.
fn task_by_id(operation_id: &str, summary: &str, success: (&str, Value)) -> Value {
    let mut responses = Map::new();
    responses.insert(success.0.into(), success.1);
    responses.insert(
        "400".into(),
        json_response(
            "Missing or malformed id",
            "FieldErrors",
            &[("missing_id", json!({ "id": [messages::REQUIRED] })), ("not_a_uuid", json!({ "id": [messages::INVALID_UUID] }))],
        ),
    );
    responses.insert(
        "404".into(),
        json_response("No such task for this caller (another caller's task is not found either)", "Detail", &[("unknown", detail("Not found."))]),
    );
    auth_responses(&mut responses);
    json!({
        "operationId": operation_id,
        "summary": summary,
        "tags": ["tasks"],
        "parameters": [{
            "name": "id",
            "in": "query",
            "required": true,
            "schema": { "type": "string", "format": "uuid" },
            "examples": {
                "missing_id": { "value": "" },
                "not_a_uuid": { "value": "2188" },
                "unknown": { "value": "00000000-0000-4000-8000-000000000000" },
            },
        }],
        "responses": responses,
    })
}

fn task_operation() -> Value {
    task_by_id(
        "get_task",
        "A task's status and, once finished, its result",
        ("200", json_response("The task; `result` is null until it finished", "Task", &[])),
    )
}

fn task_delete() -> Value {
    task_by_id(
        "delete_task",
        "Erase a task and everything kept for it, now",
        ("204", json!({ "description": "Erased: record, result, uploaded images, portraits" })),
    )
}

/// `GET tasks/`: every parameter has a value in every example (empty = absent), so each
/// example pair is one exact request.
fn task_list() -> Value {
    let statuses: Vec<&str> =
        [TaskStatus::Pending, TaskStatus::Started, TaskStatus::Success, TaskStatus::Failure].map(TaskStatus::as_str).to_vec();
    let services: Vec<&str> = ServiceKind::ALL.iter().map(|s| s.as_str()).collect();
    let param = |name: &str, description: &str, schema: Value, bad: &str, too_large: &str| {
        json!({
            "name": name,
            "in": "query",
            "required": false,
            "description": description,
            "schema": schema,
            "examples": {
                "none_yet": { "value": "" },
                "bad_parameters": { "value": bad },
                "limit_too_large": { "value": too_large },
            },
        })
    };
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json_response(
            "The caller's tasks, newest first; `next` is the following page's cursor (null: no more)",
            "TaskList",
            &[("none_yet", json!({ "results": [], "next": null }))],
        ),
    );
    responses.insert(
        "400".into(),
        json_response(
            "Bad parameters, every one at once (DRF shape)",
            "FieldErrors",
            &[
                (
                    "bad_parameters",
                    json!({
                        "status": [list_messages::not_a_choice("DONE")],
                        "service": [list_messages::not_a_choice("passport")],
                        "limit": [list_messages::LIMIT_MIN],
                        "cursor": [list_messages::INVALID_CURSOR],
                    }),
                ),
                ("limit_too_large", json!({ "limit": [list_messages::LIMIT_MAX] })),
            ],
        ),
    );
    responses.insert("503".into(), json_response("The task store is unreachable: retry later", "Detail", &[]));
    auth_responses(&mut responses);
    json!({
        "operationId": "list_tasks",
        "summary": "The caller's recent tasks (unexpired), newest first, filtered and paged; delete one with DELETE task/",
        "tags": ["tasks"],
        "parameters": [
            param("status", "Only tasks in this state", json!({ "type": "string", "enum": statuses }), "DONE", ""),
            param("service", "Only tasks of this service", json!({ "type": "string", "enum": services }), "passport", ""),
            param(
                "limit",
                "Tasks per page",
                json!({ "type": "integer", "minimum": 1, "maximum": TaskQuery::MAX_LIMIT, "default": TaskQuery::DEFAULT_LIMIT }),
                "0",
                "101",
            ),
            param(
                "cursor",
                "The previous page's `next` (opaque). A page may hold fewer than `limit` tasks while `next` is set.",
                json!({ "type": "string" }),
                "x",
                "",
            ),
        ],
        "responses": responses,
    })
}

fn faces_erase() -> Value {
    let mut responses = Map::new();
    responses.insert("204".into(), json!({ "description": "Every face this caller registered is erased" }));
    auth_responses(&mut responses);
    json!({
        "operationId": "erase_faces",
        "summary": "Erase every face registered by the caller (register_face)",
        "tags": ["tasks"],
        "responses": responses,
    })
}

/// The content types the token endpoints read.
fn form_body(properties: Value, required: &[&str], examples: Value) -> Value {
    let schema = json!({ "type": "object", "properties": properties, "required": required });
    json!({
        "required": true,
        "content": {
            "application/json": { "schema": schema, "examples": examples },
            "application/x-www-form-urlencoded": { "schema": schema },
            "multipart/form-data": { "schema": schema },
        },
    })
}

fn token_obtain() -> Value {
    json!({
        "operationId": "token_obtain",
        "summary": "Username and password → access and refresh tokens (simplejwt)",
        "tags": ["accounts"],
        "security": [],
        "requestBody": form_body(
            json!({ "username": { "type": "string" }, "password": { "type": "string", "format": "password" } }),
            &["username", "password"],
            json!({
                "wrong_password": { "value": { "username": "nobody", "password": "wrong" } },
                "missing_password": { "value": { "username": "nobody" } },
            }),
        ),
        "responses": {
            "200": json_response("Tokens (access lives auth.access_ttl_secs)", "TokenPair", &[]),
            "400": json_response("Missing fields", "FieldErrors", &[("missing_password", json!({ "password": [messages::REQUIRED] }))]),
            "401": json_response(
                "Wrong credentials",
                "Detail",
                &[("wrong_password", detail("No active account found with the given credentials"))],
            ),
        },
    })
}

fn token_refresh() -> Value {
    json!({
        "operationId": "token_refresh",
        "summary": "A refresh token → new tokens (the refresh token rotates: each works once)",
        "tags": ["accounts"],
        "security": [],
        "requestBody": form_body(
            json!({ "refresh": { "type": "string" } }),
            &["refresh"],
            json!({ "invalid": { "value": { "refresh": "not-a-token" } } }),
        ),
        "responses": {
            "200": json_response("New tokens", "TokenPair", &[]),
            "400": json_response("Missing field", "FieldErrors", &[]),
            "401": json_response("Invalid, expired or already used", "Detail", &[("invalid", detail("Token is invalid or expired"))]),
        },
    })
}

fn media() -> Value {
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({ "description": "The portrait (JPEG)", "content": { "image/jpeg": { "schema": { "type": "string", "format": "binary" } } } }),
    );
    responses.insert(
        "404".into(),
        json_response("Unknown, expired, or another caller's", "Detail", &[("unknown", detail("Not found."))]),
    );
    auth_responses(&mut responses);
    json!({
        "operationId": "get_media",
        "summary": "A portrait a task result links to (`document.portrait_url`), same owner and lifetime as the task",
        "tags": ["tasks"],
        "parameters": [{
            "name": "path",
            "in": "path",
            "required": true,
            "description": "The task result's `document.portrait` path",
            "schema": { "type": "string" },
            "examples": { "unknown": { "value": "images/services/ocr_passport/0.jpg" } },
        }],
        "responses": responses,
    })
}

/// The `403` of an operator-only route called with another key.
fn operator_only(responses: &mut Map<String, Value>) {
    responses.insert(
        "403".into(),
        json_response(
            "The API key is not an operator's",
            "Detail",
            &[("not_an_operator", detail("You do not have permission to perform this action."))],
        ),
    );
}

fn admin_reload() -> Value {
    let mut responses = Map::new();
    responses.insert("200".into(), json_response("Reloaded: the chains now in force", "Reloaded", &[]));
    operator_only(&mut responses);
    responses.insert("422".into(), json_response("The files on disk were refused; the running configuration is kept", "ReloadRefused", &[]));
    auth_responses(&mut responses);
    json!({
        "operationId": "admin_reload",
        "summary": "Re-read routing and the adapters (as SIGHUP does); API keys with role = \"operator\" only",
        "tags": ["operations"],
        "requestBody": {
            "required": false,
            "content": { "application/json": { "schema": { "type": "object" }, "examples": { "not_an_operator": { "value": {} } } } },
        },
        "responses": responses,
    })
}

fn admin_routing() -> Value {
    let mut responses = Map::new();
    responses.insert("200".into(), json_response("The routing in force and each provider's state", "RoutingOverview", &[]));
    operator_only(&mut responses);
    auth_responses(&mut responses);
    json!({
        "operationId": "admin_routing",
        "summary": "Per sub-call: the chain, split, rules, hedge and consensus as configured; per provider its circuit, \
            latency percentiles and error rate over its last 256 attempts on this instance, and today's spend against \
            its daily budget. API keys with role = \"operator\" only",
        "tags": ["operations"],
        "responses": responses,
    })
}

fn components() -> Value {
    let statuses: Vec<&str> =
        [TaskStatus::Pending, TaskStatus::Started, TaskStatus::Success, TaskStatus::Failure].map(TaskStatus::as_str).to_vec();
    json!({
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key (auth.api_keys, --api-key, KYCGATE_API_KEYS) or a JWT access token from token/obtain",
            },
        },
        "schemas": {
            "TaskCreated": {
                "type": "object",
                "required": ["id"],
                "properties": { "id": { "type": "string", "format": "uuid" } },
            },
            "Task": {
                "type": "object",
                "required": ["id", "status", "result"],
                "properties": {
                    "id": { "type": "string", "format": "uuid" },
                    "status": { "type": "string", "enum": statuses,
                        "description": "PENDING (queued), STARTED (running), SUCCESS (finished, even when a check failed), FAILURE (the task could not run)" },
                    "result": { "oneOf": [schema_ref("TaskResult"), { "type": "null" }] },
                },
            },
            "TaskResult": {
                "type": "object",
                "required": ["status", "data"],
                "properties": {
                    "status": { "type": "integer", "enum": [200, 400, 500, 503],
                        "description": "200 every check answered cleanly; 400 a check raised an issue about the input; 503 a check could not be reached; 500 the task could not run (data.error)" },
                    "data": { "type": "object", "properties": {
                        "liveness": { "description": "face_liveness: {result, data{…}} (or error/error_code); kyc_*: a boolean" },
                        "compare": { "type": "boolean" },
                        "authentication": { "type": "object" },
                        "uuid": { "type": "string", "description": "register_face: the registered face" },
                        "document": { "type": "object", "description": "MRZ fields, is_valid, is_expired, portrait, portrait_url (Progeny's names and formats)" },
                        "issues": { "type": "object", "description": "sub-call → code → message" },
                        "details": { "type": "object", "description": "scores, thresholds, ISO codes (kycgate's additions)" },
                        "providers": { "type": "object", "description": "sub-call → every attempt (provider, outcome, latency_ms)" },
                        "extended": { "type": "object", "description": "with extend_data: sub-call → provider → raw answer" },
                        "error": { "type": "string", "description": "why a task could not run (status 500/503)" },
                    }},
                },
            },
            "TaskList": {
                "type": "object",
                "required": ["results", "next"],
                "properties": {
                    "results": { "type": "array", "items": schema_ref("TaskSummary") },
                    "next": { "type": ["string", "null"], "description": "Cursor of the next page; null when no further task matches" },
                },
            },
            "TaskSummary": {
                "type": "object",
                "required": ["id", "service", "status", "created_at", "finished_at"],
                "properties": {
                    "id": { "type": "string", "format": "uuid" },
                    "service": { "type": "string", "enum": ServiceKind::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>() },
                    "status": { "type": "string", "enum": statuses },
                    "created_at": { "type": "string", "format": "date-time" },
                    "finished_at": { "type": ["string", "null"], "format": "date-time" },
                },
            },
            "RoutingOverview": {
                "type": "object",
                "required": ["sub_calls"],
                "properties": { "sub_calls": { "type": "array", "items": schema_ref("SubCallRouting") } },
            },
            "SubCallRouting": {
                "type": "object",
                "required": ["sub_call", "chain", "split", "rules", "hedge", "consensus", "providers"],
                "properties": {
                    "sub_call": { "type": "string", "enum": ["liveness", "face_compare", "document_ocr"] },
                    "chain": { "type": "array", "items": { "type": "object" }, "description": "[[routing.<sub_call>.chain]] entries as configured" },
                    "split": { "type": "array", "items": { "type": "object" } },
                    "rules": { "type": "array", "items": { "type": "object" } },
                    "hedge": { "type": ["object", "null"] },
                    "consensus": { "type": ["object", "null"] },
                    "providers": { "type": "array", "items": schema_ref("ProviderState") },
                },
            },
            "ProviderState": {
                "type": "object",
                "required": ["provider", "circuit", "recent", "spend"],
                "properties": {
                    "provider": { "type": "string" },
                    "circuit": { "type": "string", "enum": ["closed", "half_open", "open"] },
                    "recent": {
                        "type": "object",
                        "required": ["calls", "p50_ms", "p95_ms", "p99_ms", "error_rate"],
                        "properties": {
                            "calls": { "type": "integer" },
                            "p50_ms": { "type": ["number", "null"] },
                            "p95_ms": { "type": ["number", "null"] },
                            "p99_ms": { "type": ["number", "null"] },
                            "error_rate": { "type": ["number", "null"] },
                        },
                    },
                    "spend": {
                        "type": "object",
                        "required": ["cost_per_call", "spent_today", "daily_budget"],
                        "properties": {
                            "cost_per_call": { "type": "number" },
                            "spent_today": { "type": ["number", "null"], "description": "null without a daily budget" },
                            "daily_budget": { "type": ["number", "null"] },
                        },
                    },
                },
            },
            "FieldErrors": {
                "type": "object",
                "description": "Django REST framework field errors: field → messages",
                "additionalProperties": { "type": "array", "items": { "type": "string" } },
            },
            "Detail": { "type": "object", "required": ["detail"], "properties": { "detail": { "type": "string" } } },
            "TokenPair": {
                "type": "object",
                "required": ["refresh", "access"],
                "properties": { "refresh": { "type": "string" }, "access": { "type": "string" } },
            },
            "Health": { "type": "object", "required": ["status"], "properties": { "status": { "type": "string", "enum": ["ok"] } } },
            "Readiness": {
                "type": "object",
                "required": ["ready", "store", "sub_calls", "circuits"],
                "properties": {
                    "ready": { "type": "boolean" },
                    "store": { "type": "string" },
                    "sub_calls": { "type": "object", "additionalProperties": { "type": "string" } },
                    "circuits": { "type": "object", "additionalProperties": { "type": "object" } },
                },
            },
            "Reloaded": {
                "type": "object",
                "required": ["reloaded", "routing"],
                "properties": {
                    "reloaded": { "type": "boolean", "enum": [true] },
                    "routing": { "type": "object", "additionalProperties": { "type": "array", "items": { "type": "string" } } },
                },
            },
            "ReloadRefused": {
                "type": "object",
                "required": ["reloaded", "detail", "problems"],
                "properties": {
                    "reloaded": { "type": "boolean", "enum": [false] },
                    "detail": { "type": "string" },
                    "problems": { "type": "array", "items": { "type": "string", "description": "file:line:column: message" } },
                },
            },
            "OpenApiDocument": {
                "type": "object",
                "required": ["openapi", "info", "paths"],
                "properties": { "openapi": { "type": "string" }, "info": { "type": "object" }, "paths": { "type": "object" } },
            },
        },
    })
}
