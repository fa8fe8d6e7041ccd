//! `HttpSpec` → `ValidatedHttpSpec`: URLs parsed, pointers, templates and date formats checked,
//! header names compiled, credentials and vars resolved. Done once at start-up so bad adapters
//! fail early.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use reqwest::{Method, Url};

use super::auth::{Digest, GoogleSource, TokenSource};
use super::aws_chain::AwsChain;
use super::wire::Secret;
use super::select;
use super::template::Template;
use super::EnvSource;
use crate::providers::spec::{
    AuthSpec, BodySpec, BoxSpec, CompareMapping, Condition, Credential, DigestAlgorithm, DigestSpec, EndpointSpec,
    ErrorAction, ErrorRule, ErrorSpec, FieldRef, FieldSpec, HttpSpec, ImageSource, LivenessMapping, OAuthGrant,
    OcrMapping, PollSpec, RejectRule, StepSpec, ThresholdRef, TokenField, VarSpec,
};
use crate::providers::{Rejection, SubCallKind};

/// An adapter that does not make sense (the message names the offending key).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSpec(pub String);

fn invalid(msg: impl Into<String>) -> InvalidSpec {
    InvalidSpec(msg.into())
}

/// Authentication with its secrets resolved.
#[derive(Debug, Clone)]
pub(crate) enum ResolvedAuth {
    None,
    /// A complete header (name, sensitive value).
    Header(HeaderName, HeaderValue),
    Fields(Vec<(String, Secret)>),
    Query(Vec<(String, Secret)>),
    Basic(Secret, Secret),
    AwsSigv4 { service: String, region: String, credentials: AwsKeys },
    /// A cached token from a token endpoint (shared by clones of the spec).
    Token(Arc<TokenSource>),
    Hmac { secrets: BTreeMap<String, Secret>, digests: Vec<Digest>, signature: Digest, headers: Vec<(HeaderName, Template)> },
}

/// Where a SigV4 adapter's keys come from.
#[derive(Debug, Clone)]
pub(crate) enum AwsKeys {
    /// Named in the adapter file.
    Static { access_key_id: Secret, secret_access_key: Secret, session_token: Option<Secret> },
    /// The AWS default credential chain, shared by clones of the spec (one cache).
    Chain(Arc<AwsChain>),
}

/// The answer mapping of one endpoint, per sub-call.
#[derive(Debug, Clone)]
pub(crate) enum Mapping {
    Liveness(LivenessMapping),
    Compare(CompareMapping),
    /// Boxed: far larger than the score mappings.
    Ocr(Box<OcrMapping>),
}

/// Polling, checked.
#[derive(Debug, Clone)]
pub(crate) struct Poll {
    /// Take the URL from this header of the submit answer, or else render `request.path`.
    pub url_header: Option<HeaderName>,
    /// Captures read from the submit answer for the poll path.
    pub capture: Vec<(String, FieldSpec)>,
    pub interval: Duration,
    pub deadline: Duration,
    pub until: Condition,
    /// The poll request itself: method, path, the adapter's headers, no body.
    pub request: Box<RequestTpl>,
}

/// One request of an endpoint (a step, or the endpoint's own), ready to render.
#[derive(Debug, Clone)]
pub(crate) struct RequestTpl {
    /// Where it is in the file, for error messages (`endpoints.face_compare.steps[0]`).
    pub label: String,
    pub method: Method,
    pub path: Template,
    pub query: Vec<(String, Template)>,
    pub headers: Vec<(HeaderName, Template)>,
    pub body: BodySpec,
    pub success: Vec<Condition>,
    pub poll: Option<Poll>,
    pub reject: Vec<(Condition, Rejection)>,
    pub capture: Vec<(String, FieldSpec)>,
}

/// One endpoint: optional steps, then the request whose answer is mapped.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub steps: Vec<RequestTpl>,
    pub main: RequestTpl,
    pub mapping: Mapping,
}

/// A checked SDK liveness session: create, then fetch the result.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub create: RequestTpl,
    pub result: RequestTpl,
    pub pending: Condition,
    pub mapping: Mapping,
}

/// A checked adapter. Built once, shared by every call.
#[derive(Debug, Clone)]
pub struct ValidatedHttpSpec {
    pub(crate) base_url: Url,
    pub(crate) vars: BTreeMap<String, String>,
    pub(crate) auth: ResolvedAuth,
    pub(crate) success: Vec<Condition>,
    pub(crate) errors: ErrorSpec,
    pub(crate) endpoints: BTreeMap<SubCallKind, Endpoint>,
    pub(crate) liveness_session: Option<Session>,
    /// Set when a credential or var is missing: the adapter is valid but cannot be called.
    pub(crate) unavailable: Option<String>,
    /// The auth signs the body bytes: multipart bodies are built in memory, not streamed.
    pub(crate) signs_body: bool,
    /// The client may send a body twice (it follows same-origin 307/308 redirects, or signing
    /// reads the built body): such bodies stay resendable `Bytes` for the whole exchange.
    pub(crate) resends_body: bool,
    /// Declared cost of one answered call (`cost_per_call`, 0 when absent).
    pub(crate) cost_per_call: f64,
}

/// Names every request template may use besides vars and captures.
pub(crate) const BUILTINS: &[&str] = &["timestamp", "timestamp_ms", "uuid", "date", "date_compact"];
/// Names only signing templates may use (they describe the request being signed).
pub(crate) const REQUEST_BUILTINS: &[&str] = &["method", "path", "query", "path_query", "host", "body"];

impl ValidatedHttpSpec {
    /// Validates `spec` for the provider `name`, reading the base URL override, vars and
    /// credentials through `env`. A missing credential or var does not fail validation: it makes
    /// the provider unavailable (reported by `/readyz` and skipped by routing).
    pub fn new(name: &str, spec: &HttpSpec, env: &dyn EnvSource) -> Result<Self, InvalidSpec> {
        let mut unavailable = None;
        let mut vars = BTreeMap::new();
        for (k, v) in &spec.vars {
            if !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || BUILTINS.contains(&k.as_str()) {
                return Err(invalid(format!("vars.{k}: a var name is letters, digits and `_`, and not a built-in ({BUILTINS:?})")));
            }
            match v {
                VarSpec::Literal(s) => {
                    vars.insert(k.clone(), s.clone());
                }
                VarSpec::Env { env: var, default } => match env.var(var).filter(|s| !s.is_empty()).or_else(|| default.clone()) {
                    Some(s) => {
                        vars.insert(k.clone(), s);
                    }
                    None => {
                        unavailable.get_or_insert(format!("setting environment variable {var} (vars.{k}) is not set"));
                    }
                },
            }
        }
        let var_known = |n: &str| spec.vars.contains_key(n);

        let url_var = spec.base_url_env.clone().unwrap_or_else(|| default_base_url_env(name));
        let base_tpl = Template::parse(&spec.base_url).map_err(|e| invalid(format!("base_url: {e}")))?;
        base_tpl.check_names(&var_known).map_err(|n| invalid(format!("base_url uses `${{{n}}}`, which is not in `vars`")))?;
        let base = match env.var(&url_var).filter(|v| !v.trim().is_empty()) {
            Some(b) => b,
            // A missing var already made the adapter unavailable; keep a parseable placeholder.
            None => base_tpl.render(&|n| vars.get(n).cloned()).unwrap_or_else(|_| "http://unavailable.invalid".into()),
        };
        let base_url = Url::parse(base.trim())
            .map_err(|e| invalid(format!("base_url `{base}` (from {url_var} or the file): {e}")))?;
        if !matches!(base_url.scheme(), "http" | "https") {
            return Err(invalid(format!("base_url must be http or https, not `{}`", base_url.scheme())));
        }

        check_auth(&spec.auth, &var_known)?;
        let auth = match resolve_auth(&spec.auth, env, &vars) {
            Ok(a) => a,
            Err(missing) => {
                unavailable.get_or_insert(missing);
                ResolvedAuth::None
            }
        };
        for c in &spec.success {
            check_condition(c, "success")?;
        }
        check_errors(&spec.errors)?;
        let has_token = matches!(spec.auth, AuthSpec::Oauth2 { .. } | AuthSpec::Token(_));
        if !has_token && spec.errors.rules.iter().any(|r| r.action == ErrorAction::Reauthenticate) {
            return Err(invalid("errors.rules: action `reauthenticate` needs a token auth (`oauth2` or `token`)"));
        }
        let common = header_templates(&spec.headers, "headers", &var_known)?;

        let ctx_signs_body = signs_body(&spec.auth);
        let ctx = Ctx { common: &common, vars: &spec.vars };
        let mut endpoints = BTreeMap::new();
        if let Some(ep) = &spec.endpoints.liveness {
            let e = endpoint(&ctx, ep, SubCallKind::Liveness, Mapping::Liveness(ep.response.clone()))?;
            check_score_mapping(&ep.response.score, &ep.response.threshold, &ep.response.decision, "endpoints.liveness.response")?;
            if let Some(q) = &ep.response.quality {
                check_field(&q.0, "endpoints.liveness.response.quality")?;
            }
            endpoints.insert(SubCallKind::Liveness, e);
        }
        if let Some(ep) = &spec.endpoints.face_compare {
            let e = endpoint(&ctx, ep, SubCallKind::FaceCompare, Mapping::Compare(ep.response.clone()))?;
            check_score_mapping(&ep.response.score, &ep.response.threshold, &ep.response.decision, "endpoints.face_compare.response")?;
            endpoints.insert(SubCallKind::FaceCompare, e);
        }
        if let Some(ep) = &spec.endpoints.document_ocr {
            let e = endpoint(&ctx, ep, SubCallKind::DocumentOcr, Mapping::Ocr(Box::new(ep.response.clone())))?;
            check_ocr_mapping(&ep.response)?;
            endpoints.insert(SubCallKind::DocumentOcr, e);
        }
        let liveness_session = match &spec.sessions.liveness {
            None => None,
            Some(sess) => Some(session(&ctx, sess)?),
        };
        if endpoints.is_empty() && liveness_session.is_none() {
            return Err(invalid("`endpoints` declares no sub-call (liveness, face_compare, document_ocr)"));
        }
        Ok(Self {
            base_url,
            vars,
            auth,
            success: spec.success.clone(),
            errors: spec.errors.clone(),
            endpoints,
            liveness_session,
            unavailable,
            signs_body: ctx_signs_body,
            resends_body: ctx_signs_body || spec.redirects != crate::providers::spec::Redirects::None,
            cost_per_call: spec.cost_per_call.unwrap_or(0.0),
        })
    }

    /// The sub-calls this adapter has an endpoint for.
    pub fn serves(&self) -> impl Iterator<Item = SubCallKind> + '_ {
        self.endpoints.keys().copied()
    }

    /// The effective base URL (after the environment override).
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// Why the adapter cannot be called (a credential or var is missing), if so.
    pub fn unavailable_reason(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }
}

/// `KYCGATE_<NAME>_BASE_URL`, with the name upper-cased and `-` turned into `_`.
pub fn default_base_url_env(name: &str) -> String {
    format!("KYCGATE_{}_BASE_URL", name.to_ascii_uppercase().replace(['-', '.', ' '], "_"))
}

/// What every request of the adapter shares.
struct Ctx<'a> {
    common: &'a [(HeaderName, Template)],
    vars: &'a BTreeMap<String, VarSpec>,
}

/// Whether the auth covers the body bytes (SigV4, or `${body}` in an HMAC input).
fn signs_body(auth: &AuthSpec) -> bool {
    match auth {
        AuthSpec::AwsSigv4 { .. } => true,
        AuthSpec::Hmac { digests, signature, .. } => std::iter::once(signature)
            .chain(digests.iter())
            .any(|d| d.input.contains("${body}") || d.key.as_deref().is_some_and(|k| k.contains("${body}"))),
        _ => false,
    }
}

/// The request-shaped keys of an endpoint or a step.
struct RequestParts<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a BTreeMap<String, String>,
    headers: &'a BTreeMap<String, String>,
    body: &'a BodySpec,
    success: &'a [Condition],
    poll: &'a Option<PollSpec>,
    reject: &'a [RejectRule],
    capture: Option<&'a BTreeMap<String, FieldRef>>,
}

fn endpoint<R>(ctx: &Ctx<'_>, ep: &EndpointSpec<R>, kind: SubCallKind, mapping: Mapping) -> Result<Endpoint, InvalidSpec> {
    let at = format!("endpoints.{kind}");
    let mut captured: BTreeSet<String> = BTreeSet::new();
    let mut sources: Vec<ImageSource> = Vec::new();
    let mut steps = Vec::new();
    for (i, s) in ep.steps.iter().enumerate() {
        steps.push(step_request(ctx, &format!("{at}.steps[{i}]"), s, &mut captured, &mut sources)?);
    }
    let parts = RequestParts {
        method: &ep.method,
        path: &ep.path,
        query: &ep.query,
        headers: &ep.headers,
        body: &ep.body,
        success: &ep.success,
        poll: &ep.poll,
        reject: &ep.reject,
        capture: None,
    };
    let main = request(ctx, &at, &parts, &mut captured, &mut sources)?;

    let allowed: &[ImageSource] = match kind {
        SubCallKind::Liveness => &[ImageSource::Image],
        SubCallKind::FaceCompare => &[ImageSource::Probe, ImageSource::Reference],
        SubCallKind::DocumentOcr => &[ImageSource::Front, ImageSource::Back],
    };
    if sources.is_empty() {
        return Err(invalid(format!("{at}.body sends no image")));
    }
    for s in &sources {
        if !allowed.contains(s) {
            return Err(invalid(format!("{at}.body.images: source `{s:?}` is not an input of {kind} (use {allowed:?})")));
        }
    }
    for required in allowed.iter().filter(|s| **s != ImageSource::Back) {
        if !sources.contains(required) {
            return Err(invalid(format!("{at}.body never sends the {required:?} image")));
        }
    }
    if let Mapping::Ocr(m) = &mapping {
        if let Some(b) = &m.portrait_box {
            if !allowed.contains(&b.page) {
                return Err(invalid(format!("{at}.response.portrait_box.page `{:?}` is not an input of {kind}", b.page)));
            }
        }
    }
    Ok(Endpoint { steps, main, mapping })
}

fn session(ctx: &Ctx<'_>, s: &crate::providers::spec::SessionSpec) -> Result<Session, InvalidSpec> {
    let at = "sessions.liveness";
    let mut captured = BTreeSet::new();
    let mut sources = Vec::new();
    let create = step_request(ctx, &format!("{at}.create"), &s.create, &mut captured, &mut sources)?;
    if !captured.contains("session_id") {
        return Err(invalid(format!("{at}.create must `capture` a `session_id`")));
    }
    let result = step_request(ctx, &format!("{at}.result"), &s.result, &mut captured, &mut sources)?;
    if !sources.is_empty() {
        return Err(invalid(format!("{at}: session requests send no image (the vendor's SDK captures it)")));
    }
    check_condition(&s.pending, &format!("{at}.pending"))?;
    check_score_mapping(&s.response.score, &s.response.threshold, &s.response.decision, &format!("{at}.response"))?;
    if let Some(q) = &s.response.quality {
        check_field(&q.0, &format!("{at}.response.quality"))?;
    }
    Ok(Session { create, result, pending: s.pending.clone(), mapping: Mapping::Liveness(s.response.clone()) })
}

fn step_request(
    ctx: &Ctx<'_>,
    at: &str,
    s: &StepSpec,
    captured: &mut BTreeSet<String>,
    sources: &mut Vec<ImageSource>,
) -> Result<RequestTpl, InvalidSpec> {
    let StepSpec { name: _, method, path, query, headers, body, success, poll, reject, capture } = s;
    let parts = RequestParts { method, path, query, headers, body, success, poll, reject, capture: Some(capture) };
    request(ctx, at, &parts, captured, sources)
}

/// Checks one request; `captured` gains its captures, `sources` its images.
fn request(
    ctx: &Ctx<'_>,
    at: &str,
    p: &RequestParts<'_>,
    captured: &mut BTreeSet<String>,
    sources: &mut Vec<ImageSource>,
) -> Result<RequestTpl, InvalidSpec> {
    let method = Method::from_bytes(p.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| invalid(format!("{at}.method `{}` is not an HTTP method", p.method)))?;
    if !p.path.starts_with('/') {
        return Err(invalid(format!("{at}.path must start with `/`, got `{}`", p.path)));
    }
    let known = |n: &str| ctx.vars.contains_key(n) || captured.contains(n) || BUILTINS.contains(&n);
    let unknown = |key: &str, n: String| {
        invalid(format!("{at}.{key} uses `${{{n}}}`: not a var, a capture of an earlier step, or a built-in ({BUILTINS:?})"))
    };
    let path = Template::parse(p.path).map_err(|e| invalid(format!("{at}.path: {e}")))?;
    path.check_names(&known).map_err(|n| unknown("path", n))?;
    let mut query = Vec::new();
    for (k, v) in p.query {
        let t = Template::parse(v).map_err(|e| invalid(format!("{at}.query.{k}: {e}")))?;
        t.check_names(&known).map_err(|n| unknown("query", n))?;
        query.push((k.clone(), t));
    }
    let mut headers = ctx.common.to_vec();
    for (name, t) in header_templates(p.headers, &format!("{at}.headers"), &known)? {
        headers.retain(|(n, _)| *n != name);
        headers.push((name, t));
    }

    match p.body {
        BodySpec::Multipart { images, fields } => {
            for (k, v) in fields {
                let t = Template::parse(v).map_err(|e| invalid(format!("{at}.body.fields.{k}: {e}")))?;
                t.check_names(&known).map_err(|n| unknown("body.fields", n))?;
            }
            sources.extend(images.iter().map(|i| i.source));
        }
        BodySpec::Json { images, fields } => {
            for i in images {
                check_pointer(&i.pointer, &format!("{at}.body.images"))?;
                if i.pointer.is_empty() || i.pointer.contains('[') {
                    return Err(invalid(format!("{at}.body.images: `{}` must be a plain pointer inside the body", i.pointer)));
                }
                for m in i.mime_pointer.iter().chain(i.also.keys()) {
                    check_pointer(m, &format!("{at}.body.images"))?;
                    if m.is_empty() || m.contains('[') {
                        return Err(invalid(format!("{at}.body.images: `{m}` must be a plain pointer inside the body")));
                    }
                }
                for (k, v) in &i.also {
                    check_toml_templates(v, &format!("{at}.body.images.also.{k}"), &known)?;
                }
            }
            check_toml_templates(&toml::Value::Table(fields.clone()), &format!("{at}.body.fields"), &known)?;
            sources.extend(images.iter().map(|i| i.source));
        }
        BodySpec::Raw { source, content_type } => {
            if let Some(ct) = content_type {
                HeaderValue::from_str(ct).map_err(|_| invalid(format!("{at}.body.content_type `{ct}` is not a header value")))?;
            }
            sources.push(*source);
        }
        BodySpec::None => {}
    }
    for c in p.success {
        check_condition(c, &format!("{at}.success"))?;
    }
    let mut reject = Vec::new();
    for RejectRule { when, issue, message } in p.reject {
        check_condition(when, &format!("{at}.reject"))?;
        let mut r = Rejection::new(*issue);
        if let Some(m) = message {
            r.message = m.clone();
        }
        reject.push((when.clone(), r));
    }
    let poll = match p.poll {
        None => None,
        Some(poll) => Some(check_poll(ctx, poll, &format!("{at}.poll"), &known)?),
    };
    let mut capture = Vec::new();
    for (k, f) in p.capture.into_iter().flatten() {
        check_name(k, &format!("{at}.capture"))?;
        check_field(&f.0, &format!("{at}.capture.{k}"))?;
        capture.push((k.clone(), f.0.clone()));
    }
    captured.extend(capture.iter().map(|(k, _)| k.clone()));
    Ok(RequestTpl {
        label: at.to_string(),
        method,
        path,
        query,
        headers,
        body: p.body.clone(),
        success: p.success.to_vec(),
        poll,
        reject,
        capture,
    })
}

fn check_name(k: &str, at: &str) -> Result<(), InvalidSpec> {
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || BUILTINS.contains(&k) {
        return Err(invalid(format!("{at}: `{k}` is not a usable name (letters, digits, `_`, not a built-in)")));
    }
    Ok(())
}

fn check_poll(ctx: &Ctx<'_>, p: &PollSpec, at: &str, known: &dyn Fn(&str) -> bool) -> Result<Poll, InvalidSpec> {
    let PollSpec { url_header, path, capture, method, interval_ms, deadline_ms, until } = p;
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| invalid(format!("{at}.method `{method}` is not an HTTP method")))?;
    let mut caps = Vec::new();
    for (k, f) in capture {
        check_name(k, &format!("{at}.capture"))?;
        check_field(&f.0, &format!("{at}.capture.{k}"))?;
        caps.push((k.clone(), f.0.clone()));
    }
    let (url_header, path) = match (url_header, path) {
        (Some(h), None) => {
            (Some(HeaderName::from_bytes(h.as_bytes()).map_err(|_| invalid(format!("{at}.url_header `{h}` is not a header name")))?), None)
        }
        (None, Some(path)) => {
            if !path.starts_with('/') {
                return Err(invalid(format!("{at}.path must start with `/`")));
            }
            let t = Template::parse(path).map_err(|e| invalid(format!("{at}.path: {e}")))?;
            t.check_names(&|n| known(n) || caps.iter().any(|(k, _)| k == n))
                .map_err(|n| invalid(format!("{at}.path uses `${{{n}}}`, which is neither known nor in `{at}.capture`")))?;
            (None, Some(t))
        }
        _ => return Err(invalid(format!("{at}: give exactly one of `url_header`, `path`"))),
    };
    if *interval_ms == 0 || *deadline_ms < *interval_ms {
        return Err(invalid(format!("{at}: `interval_ms` must be > 0 and at most `deadline_ms`")));
    }
    check_condition(until, &format!("{at}.until"))?;
    let request = RequestTpl {
        label: at.to_string(),
        method,
        path: path.unwrap_or_else(|| Template::literal("/")),
        query: Vec::new(),
        headers: ctx.common.to_vec(),
        body: BodySpec::None,
        success: Vec::new(),
        poll: None,
        reject: Vec::new(),
        capture: Vec::new(),
    };
    Ok(Poll {
        url_header,
        capture: caps,
        interval: Duration::from_millis(*interval_ms),
        deadline: Duration::from_millis(*deadline_ms),
        until: until.clone(),
        request: Box::new(request),
    })
}

/// Every string in a TOML tree must be a valid template over known names.
fn check_toml_templates(v: &toml::Value, at: &str, known: &dyn Fn(&str) -> bool) -> Result<(), InvalidSpec> {
    match v {
        toml::Value::String(s) => {
            let t = Template::parse(s).map_err(|e| invalid(format!("{at}: {e}")))?;
            t.check_names(known).map_err(|n| invalid(format!("{at} uses unknown `${{{n}}}`")))
        }
        toml::Value::Array(a) => a.iter().try_for_each(|x| check_toml_templates(x, at, known)),
        toml::Value::Table(t) => t.iter().try_for_each(|(k, x)| check_toml_templates(x, &format!("{at}.{k}"), known)),
        _ => Ok(()),
    }
}

fn header_templates(
    h: &BTreeMap<String, String>,
    at: &str,
    known: &dyn Fn(&str) -> bool,
) -> Result<Vec<(HeaderName, Template)>, InvalidSpec> {
    let mut out = Vec::new();
    for (k, v) in h {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| invalid(format!("{at}: bad header name `{k}`")))?;
        let t = Template::parse(v).map_err(|e| invalid(format!("{at}.{k}: {e}")))?;
        t.check_names(known).map_err(|n| invalid(format!("{at}.{k} uses unknown `${{{n}}}`")))?;
        if t.is_literal() {
            HeaderValue::from_str(v).map_err(|_| invalid(format!("{at}: bad value for header `{k}`")))?;
        }
        out.push((name, t));
    }
    Ok(out)
}

/// Static checks of the auth table (templates, header names), before any secret is read.
fn check_auth(auth: &AuthSpec, var_known: &dyn Fn(&str) -> bool) -> Result<(), InvalidSpec> {
    match auth {
        AuthSpec::AwsSigv4 { service, region, access_key_id, secret_access_key, .. } => {
            if service.is_empty() {
                return Err(invalid("auth.service is empty"));
            }
            if access_key_id.is_some() != secret_access_key.is_some() {
                return Err(invalid(
                    "auth: give both access_key_id and secret_access_key, or neither (the AWS default credential chain)",
                ));
            }
            let t = Template::parse(region).map_err(|e| invalid(format!("auth.region: {e}")))?;
            t.check_names(var_known).map_err(|n| invalid(format!("auth.region uses `${{{n}}}`, which is not in `vars`")))
        }
        AuthSpec::Oauth2 { token_url, grant, client_id, client_secret, service_account, .. } => {
            let t = Template::parse(token_url).map_err(|e| invalid(format!("auth.token_url: {e}")))?;
            t.check_names(var_known).map_err(|n| invalid(format!("auth.token_url uses `${{{n}}}`, which is not in `vars`")))?;
            match grant {
                OAuthGrant::ClientCredentials if client_id.is_none() || client_secret.is_none() => {
                    Err(invalid("auth: grant `client_credentials` needs `client_id` and `client_secret`"))
                }
                OAuthGrant::JwtBearer if service_account.is_none() => {
                    Err(invalid("auth: grant `jwt_bearer` needs `service_account` (the key JSON)"))
                }
                _ => Ok(()),
            }
        }
        AuthSpec::Token(t) => {
            let known = |n: &str| var_known(n) || t.secrets.contains_key(n) || BUILTINS.contains(&n);
            Template::parse(&t.url)
                .map_err(|e| invalid(format!("auth.url: {e}")))?
                .check_names(var_known)
                .map_err(|n| invalid(format!("auth.url uses `${{{n}}}`, which is not in `vars`")))?;
            for (k, f) in &t.fields {
                match f {
                    TokenField::Digest(d) => check_digest(d, &format!("auth.fields.{k}"), &known, &[])?,
                    TokenField::Value(v) => check_toml_templates(v, &format!("auth.fields.{k}"), &known)?,
                }
            }
            for c in &t.success {
                check_condition(c, "auth.success")?;
            }
            check_pointer(&t.token_pointer, "auth.token_pointer")?;
            for p in t.expires_in_pointer.iter().chain(t.expires_at_pointer.iter()) {
                check_pointer(p, "auth.expires_*_pointer")?;
            }
            if let Some(h) = &t.header {
                HeaderName::from_bytes(h.as_bytes()).map_err(|_| invalid(format!("auth.header `{h}` is not a header name")))?;
            }
            Ok(())
        }
        AuthSpec::Hmac { secrets, digests, signature, headers } => {
            let mut names: Vec<&str> = Vec::new();
            for (i, d) in digests.iter().enumerate() {
                let at = format!("auth.digests[{i}]");
                let Some(name) = d.name.as_deref() else {
                    return Err(invalid(format!("{at}: an intermediate digest needs `name`")));
                };
                check_name(name, &at)?;
                let known = |n: &str| {
                    var_known(n)
                        || secrets.contains_key(n)
                        || BUILTINS.contains(&n)
                        || REQUEST_BUILTINS.contains(&n)
                        || names.contains(&n)
                };
                check_digest(d, &at, &known, &names)?;
                names.push(name);
            }
            let known = |n: &str| {
                var_known(n)
                    || secrets.contains_key(n)
                    || BUILTINS.contains(&n)
                    || REQUEST_BUILTINS.contains(&n)
                    || names.contains(&n)
            };
            check_digest(signature, "auth.signature", &known, &names)?;
            if headers.is_empty() {
                return Err(invalid("auth.headers: put `${signature}` in at least one header"));
            }
            let with_sig = |n: &str| known(n) || n == "signature";
            if signature.name.is_some() {
                return Err(invalid("auth.signature: `name` only applies to `auth.digests` entries"));
            }
            header_templates(headers, "auth.headers", &with_sig)?;
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_digest(d: &DigestSpec, at: &str, known: &dyn Fn(&str) -> bool, earlier: &[&str]) -> Result<(), InvalidSpec> {
    Template::parse(&d.input)
        .map_err(|e| invalid(format!("{at}.input: {e}")))?
        .check_names(known)
        .map_err(|n| invalid(format!("{at}.input uses unknown `${{{n}}}`")))?;
    if let Some(kd) = &d.key_digest {
        if d.key.is_some() || d.algorithm == DigestAlgorithm::Sha256 {
            return Err(invalid(format!("{at}: `key_digest` is an HMAC key, instead of `key`")));
        }
        if !earlier.contains(&kd.as_str()) {
            return Err(invalid(format!("{at}.key_digest `{kd}` is not an earlier entry of `auth.digests`")));
        }
        return Ok(());
    }
    match (&d.key, d.algorithm) {
        (None, DigestAlgorithm::HmacSha256 | DigestAlgorithm::HmacSha1) => {
            Err(invalid(format!("{at}: an HMAC needs `key` or `key_digest`")))
        }
        (Some(_), DigestAlgorithm::Sha256) => Err(invalid(format!("{at}: `key` only applies to HMAC algorithms"))),
        (Some(k), _) => Template::parse(k)
            .map_err(|e| invalid(format!("{at}.key: {e}")))?
            .check_names(known)
            .map_err(|n| invalid(format!("{at}.key uses unknown `${{{n}}}`"))),
        (None, _) => Ok(()),
    }
}

/// Resolves every credential; `Err` names the first missing one (never its value).
fn resolve_auth(auth: &AuthSpec, env: &dyn EnvSource, vars: &BTreeMap<String, String>) -> Result<ResolvedAuth, String> {
    let render = |s: &str| -> Result<String, String> {
        Template::parse(s)?.render(&|n| vars.get(n).cloned()).map_err(|n| format!("var `{n}` is not set"))
    };
    Ok(match auth {
        AuthSpec::None => ResolvedAuth::None,
        AuthSpec::Header { name, value, prefix } => {
            let secret = resolve(value, env)?;
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("bad auth header name `{name}`"))?;
            let mut v = HeaderValue::from_str(&format!("{}{}", prefix.as_deref().unwrap_or(""), secret.expose()))
                .map_err(|_| format!("credential for header `{name}` is not a valid header value"))?;
            v.set_sensitive(true);
            ResolvedAuth::Header(header, v)
        }
        AuthSpec::Fields { fields } => ResolvedAuth::Fields(
            fields.iter().map(|(k, c)| Ok((k.clone(), resolve(c, env)?))).collect::<Result<_, String>>()?,
        ),
        AuthSpec::Query { params } => ResolvedAuth::Query(
            params.iter().map(|(k, c)| Ok((k.clone(), resolve(c, env)?))).collect::<Result<_, String>>()?,
        ),
        AuthSpec::Basic { username, password } => ResolvedAuth::Basic(resolve(username, env)?, resolve(password, env)?),
        AuthSpec::Bearer { token } => {
            let secret = resolve(token, env)?;
            let mut v = HeaderValue::from_str(&format!("Bearer {}", secret.expose()))
                .map_err(|_| "bearer credential is not a valid header value".to_string())?;
            v.set_sensitive(true);
            ResolvedAuth::Header(AUTHORIZATION, v)
        }
        AuthSpec::AwsSigv4 { service, region, access_key_id, secret_access_key, session_token } => {
            let region = render(region)?;
            let credentials = match (access_key_id, secret_access_key) {
                (Some(id), Some(secret)) => AwsKeys::Static {
                    access_key_id: resolve(id, env)?,
                    secret_access_key: resolve(secret, env)?,
                    // Optional: long-term keys have no session token.
                    session_token: session_token.as_ref().and_then(|c| resolve(c, env).ok()),
                },
                _ => AwsKeys::Chain(Arc::new(AwsChain::from_env(env, &region))),
            };
            ResolvedAuth::AwsSigv4 { service: service.clone(), region, credentials }
        }
        AuthSpec::Oauth2 { token_url, grant: OAuthGrant::GoogleDefault, scope, refresh_before_s, .. } => {
            let url = Url::parse(&render(token_url)?).map_err(|e| format!("auth.token_url: {e}"))?;
            let source = GoogleSource::find(env)?;
            ResolvedAuth::Token(Arc::new(TokenSource::google(url, source, scope.clone(), Duration::from_secs(*refresh_before_s))))
        }
        AuthSpec::Oauth2 { token_url, grant, client_id, client_secret, service_account, scope, client_auth, refresh_before_s } => {
            let url = Url::parse(&render(token_url)?).map_err(|e| format!("auth.token_url: {e}"))?;
            let opt = |c: &Option<Credential>| c.as_ref().map(|c| resolve(c, env)).transpose();
            ResolvedAuth::Token(Arc::new(TokenSource::oauth2(
                url,
                *grant,
                opt(client_id)?,
                opt(client_secret)?,
                opt(service_account)?,
                scope.clone(),
                *client_auth,
                Duration::from_secs(*refresh_before_s),
            )?))
        }
        AuthSpec::Token(t) => {
            let secrets =
                t.secrets.iter().map(|(k, c)| Ok((k.clone(), resolve(c, env)?))).collect::<Result<BTreeMap<_, _>, String>>()?;
            ResolvedAuth::Token(Arc::new(TokenSource::custom(t, render(&t.url)?, secrets, vars.clone())?))
        }
        AuthSpec::Hmac { secrets, digests, signature, headers } => {
            let secrets =
                secrets.iter().map(|(k, c)| Ok((k.clone(), resolve(c, env)?))).collect::<Result<BTreeMap<_, _>, String>>()?;
            let mut hs = Vec::new();
            for (k, v) in headers {
                let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("bad auth header `{k}`"))?;
                hs.push((name, Template::parse(v)?));
            }
            let digests = digests.iter().map(Digest::new).collect::<Result<Vec<_>, String>>()?;
            ResolvedAuth::Hmac { secrets, digests, signature: Digest::new(signature)?, headers: hs }
        }
    })
}

fn resolve(c: &Credential, env: &dyn EnvSource) -> Result<Secret, String> {
    match c {
        Credential::Env(var) => env
            .var(var)
            .filter(|v| !v.is_empty())
            .map(Secret::new)
            .ok_or_else(|| format!("credential environment variable {var} is not set")),
        Credential::File(path) => read_secret_file(path),
        Credential::EnvFile(var) => match env.var(var).filter(|v| !v.is_empty()) {
            Some(path) => read_secret_file(Path::new(&path)),
            None => Err(format!("credential environment variable {var} (a file path) is not set")),
        },
    }
}

fn read_secret_file(path: &Path) -> Result<Secret, String> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Ok(Secret::new(s.trim().to_string())),
        Ok(_) => Err(format!("credential file {} is empty", path.display())),
        Err(e) => Err(format!("credential file {} cannot be read: {}", path.display(), e.kind())),
    }
}

fn check_pointer(p: &str, at: &str) -> Result<(), InvalidSpec> {
    select::check(p).map_err(|e| invalid(format!("{at}: {e}")))
}

fn check_condition(c: &Condition, at: &str) -> Result<(), InvalidSpec> {
    check_pointer(&c.pointer, at)?;
    let set = [c.equals.is_some(), c.one_of.is_some(), c.present.is_some(), c.empty.is_some()];
    if set.iter().filter(|s| **s).count() != 1 {
        return Err(invalid(format!(
            "{at}: condition on `{}` needs exactly one of `equals`, `one_of`, `present`, `empty`",
            c.pointer
        )));
    }
    Ok(())
}

fn check_errors(e: &ErrorSpec) -> Result<(), InvalidSpec> {
    if let Some(p) = &e.code_pointer {
        check_pointer(p, "errors.code_pointer")?;
    }
    if let Some(p) = &e.message_pointer {
        check_pointer(p, "errors.message_pointer")?;
    }
    for (i, ErrorRule { code, prefix, suffix, status, action, issue }) in e.rules.iter().enumerate() {
        let at = format!("errors.rules[{i}]");
        let by_code = code.is_some() || prefix.is_some() || suffix.is_some();
        if !by_code && status.is_none() {
            return Err(invalid(format!("{at}: give at least one of `code`, `prefix`, `suffix`, `status`")));
        }
        if by_code && e.code_pointer.is_none() {
            return Err(invalid(format!("{at} matches a code but `errors.code_pointer` is not set")));
        }
        match (action, issue) {
            (ErrorAction::Reject, None) => return Err(invalid(format!("{at}: action `reject` needs `issue`"))),
            (ErrorAction::Reject, Some(_)) | (_, None) => {}
            (_, Some(_)) => return Err(invalid(format!("{at}: `issue` only applies to action `reject`"))),
        }
    }
    Ok(())
}

fn check_field(f: &FieldSpec, at: &str) -> Result<(), InvalidSpec> {
    check_pointer(&f.pointer, at)?;
    if let Some(p) = &f.item {
        check_pointer(p, &format!("{at}.item"))?;
        if f.join.is_none() {
            return Err(invalid(format!("{at}.item only applies with `join`")));
        }
    }
    for p in &f.or {
        check_pointer(p, &format!("{at}.or"))?;
    }
    if let Some(s) = f.scale {
        if !s.is_finite() || s == 0.0 {
            return Err(invalid(format!("{at}.scale must be a finite non-zero number")));
        }
    }
    if let Some(fmt) = &f.date_format {
        if fmt != "parts" {
            let bad = chrono::format::StrftimeItems::new(fmt).any(|i| matches!(i, chrono::format::Item::Error));
            if bad {
                return Err(invalid(format!("{at}.date_format `{fmt}` is not a valid chrono format")));
            }
        }
    }
    Ok(())
}

fn check_score_mapping(
    score: &FieldRef,
    threshold: &Option<ThresholdRef>,
    decision: &Option<FieldRef>,
    at: &str,
) -> Result<(), InvalidSpec> {
    check_field(&score.0, &format!("{at}.score"))?;
    match threshold {
        Some(ThresholdRef::Field(f)) => check_field(f, &format!("{at}.threshold"))?,
        Some(ThresholdRef::Constant(c)) if !(0.0..=1.0).contains(c) => {
            return Err(invalid(format!("{at}.threshold {c} is not on the 0..1 scale")))
        }
        _ => {}
    }
    if let Some(d) = decision {
        check_field(&d.0, &format!("{at}.decision"))?;
    }
    if threshold.is_none() && decision.is_none() {
        return Err(invalid(format!("{at}: give `threshold` or `decision` (or both)")));
    }
    Ok(())
}

fn check_ocr_mapping(m: &OcrMapping) -> Result<(), InvalidSpec> {
    let at = "endpoints.document_ocr.response";
    let plain = [
        ("format", &m.format),
        ("document_code", &m.document_code),
        ("issuing_state", &m.issuing_state),
        ("nationality", &m.nationality),
        ("surname", &m.surname),
        ("given_names", &m.given_names),
        ("document_number", &m.document_number),
        ("personal_number", &m.personal_number),
        ("sex", &m.sex),
        ("valid", &m.valid),
        ("confidence", &m.confidence),
        ("portrait", &m.portrait),
    ];
    for (k, f) in plain {
        if let Some(f) = f {
            check_field(&f.0, &format!("{at}.{k}"))?;
        }
    }
    for (k, f) in [("date_of_birth", &m.date_of_birth), ("date_of_expiry", &m.date_of_expiry), ("date_of_issue", &m.date_of_issue)] {
        if let Some(f) = f {
            check_field(&f.0, &format!("{at}.{k}"))?;
            if f.0.date_format.is_none() {
                return Err(invalid(format!("{at}.{k} needs `date_format`")));
            }
        }
    }
    for f in &m.mrz_lines {
        check_field(&f.0, &format!("{at}.mrz_lines"))?;
    }
    for (k, f) in &m.checks {
        check_field(&f.0, &format!("{at}.checks.{k}"))?;
    }
    if let Some(BoxSpec { pointer, .. }) = &m.portrait_box {
        check_pointer(pointer, &format!("{at}.portrait_box"))?;
        if m.portrait.is_some() {
            return Err(invalid(format!("{at}: give `portrait` or `portrait_box`, not both")));
        }
    }
    Ok(())
}
