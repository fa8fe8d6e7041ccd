//! `HttpSpec` → `ValidatedHttpSpec`: URLs parsed, pointers and date formats checked, header names
//! compiled, credentials resolved. Done once at start-up so bad adapters fail early.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use reqwest::{Method, Url};

use super::EnvSource;
use crate::providers::spec::{
    AuthSpec, BodySpec, CompareMapping, Condition, Credential, EndpointSpec, ErrorAction, ErrorRule,
    ErrorSpec, FieldRef, FieldSpec, HttpSpec, ImageSource, LivenessMapping, OcrMapping, RejectRule,
    ThresholdRef,
};
use crate::providers::{Rejection, SubCallKind};

/// An adapter that does not make sense (the message names the offending key).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSpec(pub String);

fn invalid(msg: impl Into<String>) -> InvalidSpec {
    InvalidSpec(msg.into())
}

/// A resolved secret. Debug never prints it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
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
}

/// The answer mapping of one endpoint, per sub-call.
#[derive(Debug, Clone)]
pub(crate) enum Mapping {
    Liveness(LivenessMapping),
    Compare(CompareMapping),
    /// Boxed: far larger than the score mappings.
    Ocr(Box<OcrMapping>),
}

/// One endpoint, ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: BodySpec,
    pub reject: Vec<(Condition, Rejection)>,
    pub mapping: Mapping,
}

/// A checked adapter. Built once, shared by every call.
#[derive(Debug, Clone)]
pub struct ValidatedHttpSpec {
    pub(crate) base_url: Url,
    pub(crate) auth: ResolvedAuth,
    pub(crate) success: Vec<Condition>,
    pub(crate) errors: ErrorSpec,
    pub(crate) endpoints: BTreeMap<SubCallKind, Endpoint>,
    /// Set when a credential is missing: the adapter is valid but cannot be called.
    pub(crate) unavailable: Option<String>,
}

impl ValidatedHttpSpec {
    /// Validates `spec` for the provider `name`, reading the base URL override and credentials
    /// through `env`. A missing credential does not fail validation: it makes the provider
    /// unavailable (reported by `/readyz` and skipped by routing).
    pub fn new(name: &str, spec: &HttpSpec, env: &dyn EnvSource) -> Result<Self, InvalidSpec> {
        let url_var = spec.base_url_env.clone().unwrap_or_else(|| default_base_url_env(name));
        let base = env.var(&url_var).filter(|v| !v.trim().is_empty()).unwrap_or_else(|| spec.base_url.clone());
        let base_url = Url::parse(base.trim())
            .map_err(|e| invalid(format!("base_url `{base}` (from {url_var} or the file): {e}")))?;
        if !matches!(base_url.scheme(), "http" | "https") {
            return Err(invalid(format!("base_url must be http or https, not `{}`", base_url.scheme())));
        }

        let mut unavailable = None;
        let auth = resolve_auth(&spec.auth, env).unwrap_or_else(|missing| {
            unavailable = Some(missing);
            ResolvedAuth::None
        });
        for c in &spec.success {
            check_condition(c, "success")?;
        }
        check_errors(&spec.errors)?;
        let common = header_map(&spec.headers, "headers")?;

        let mut endpoints = BTreeMap::new();
        if let Some(ep) = &spec.endpoints.liveness {
            let e = endpoint(&base_url, &common, ep, SubCallKind::Liveness, Mapping::Liveness(ep.response.clone()))?;
            check_score_mapping(&ep.response.score, &ep.response.threshold, &ep.response.decision, "liveness")?;
            if let Some(q) = &ep.response.quality {
                check_field(&q.0, "endpoints.liveness.response.quality")?;
            }
            endpoints.insert(SubCallKind::Liveness, e);
        }
        if let Some(ep) = &spec.endpoints.face_compare {
            let e = endpoint(&base_url, &common, ep, SubCallKind::FaceCompare, Mapping::Compare(ep.response.clone()))?;
            check_score_mapping(&ep.response.score, &ep.response.threshold, &ep.response.decision, "face_compare")?;
            endpoints.insert(SubCallKind::FaceCompare, e);
        }
        if let Some(ep) = &spec.endpoints.document_ocr {
            let e = endpoint(&base_url, &common, ep, SubCallKind::DocumentOcr, Mapping::Ocr(Box::new(ep.response.clone())))?;
            check_ocr_mapping(&ep.response)?;
            endpoints.insert(SubCallKind::DocumentOcr, e);
        }
        if endpoints.is_empty() {
            return Err(invalid("`endpoints` declares no sub-call (liveness, face_compare, document_ocr)"));
        }
        Ok(Self { base_url, auth, success: spec.success.clone(), errors: spec.errors.clone(), endpoints, unavailable })
    }

    /// The sub-calls this adapter has an endpoint for.
    pub fn serves(&self) -> impl Iterator<Item = SubCallKind> + '_ {
        self.endpoints.keys().copied()
    }

    /// The effective base URL (after the environment override).
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// Why the adapter cannot be called (a credential is missing), if so.
    pub fn unavailable_reason(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }
}

/// `KYCGATE_<NAME>_BASE_URL`, with the name upper-cased and `-` turned into `_`.
pub fn default_base_url_env(name: &str) -> String {
    format!("KYCGATE_{}_BASE_URL", name.to_ascii_uppercase().replace(['-', '.', ' '], "_"))
}

fn endpoint<R>(
    base: &Url,
    common: &HeaderMap,
    ep: &EndpointSpec<R>,
    kind: SubCallKind,
    mapping: Mapping,
) -> Result<Endpoint, InvalidSpec> {
    let at = format!("endpoints.{kind}");
    let method = Method::from_bytes(ep.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| invalid(format!("{at}.method `{}` is not an HTTP method", ep.method)))?;
    if !ep.path.starts_with('/') {
        return Err(invalid(format!("{at}.path must start with `/`, got `{}`", ep.path)));
    }
    // Join keeping the base URL's own path prefix (`http://host/prefix` + `/api/x`).
    let mut url = base.clone();
    let joined = format!("{}{}", base.path().trim_end_matches('/'), ep.path);
    url.set_path(&joined);
    if !ep.query.is_empty() {
        url.query_pairs_mut().extend_pairs(ep.query.iter());
    }
    let mut headers = common.clone();
    headers.extend(header_map(&ep.headers, &format!("{at}.headers"))?);

    let allowed: &[ImageSource] = match kind {
        SubCallKind::Liveness => &[ImageSource::Image],
        SubCallKind::FaceCompare => &[ImageSource::Probe, ImageSource::Reference],
        SubCallKind::DocumentOcr => &[ImageSource::Front, ImageSource::Back],
    };
    let sources: Vec<ImageSource> = match &ep.body {
        BodySpec::Multipart { images, .. } => images.iter().map(|i| i.source).collect(),
        BodySpec::Json { images, .. } => {
            for i in images {
                check_pointer(&i.pointer, &format!("{at}.body.images"))?;
                if i.pointer.is_empty() {
                    return Err(invalid(format!("{at}.body.images: the pointer cannot be the whole body")));
                }
            }
            images.iter().map(|i| i.source).collect()
        }
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

    let mut reject = Vec::new();
    for RejectRule { when, issue, message } in &ep.reject {
        check_condition(when, &format!("{at}.reject"))?;
        let mut r = Rejection::new(*issue);
        if let Some(m) = message {
            r.message = m.clone();
        }
        reject.push((when.clone(), r));
    }
    Ok(Endpoint { method, url, headers, body: ep.body.clone(), reject, mapping })
}

fn header_map(h: &BTreeMap<String, String>, at: &str) -> Result<HeaderMap, InvalidSpec> {
    let mut map = HeaderMap::new();
    for (k, v) in h {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| invalid(format!("{at}: bad header name `{k}`")))?;
        let value = HeaderValue::from_str(v).map_err(|_| invalid(format!("{at}: bad value for header `{k}`")))?;
        map.insert(name, value);
    }
    Ok(map)
}

/// Resolves every credential; `Err` names the first missing one (never its value).
fn resolve_auth(auth: &AuthSpec, env: &dyn EnvSource) -> Result<ResolvedAuth, String> {
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
    })
}

fn resolve(c: &Credential, env: &dyn EnvSource) -> Result<Secret, String> {
    match c {
        Credential::Env(var) => env
            .var(var)
            .filter(|v| !v.is_empty())
            .map(Secret)
            .ok_or_else(|| format!("credential environment variable {var} is not set")),
        Credential::File(path) => read_secret_file(path),
    }
}

fn read_secret_file(path: &Path) -> Result<Secret, String> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Ok(Secret(s.trim().to_string())),
        Ok(_) => Err(format!("credential file {} is empty", path.display())),
        Err(e) => Err(format!("credential file {} cannot be read: {}", path.display(), e.kind())),
    }
}

fn check_pointer(p: &str, at: &str) -> Result<(), InvalidSpec> {
    if p.is_empty() || p.starts_with('/') {
        Ok(())
    } else {
        Err(invalid(format!("{at}: `{p}` is not a JSON pointer (it must start with `/`)")))
    }
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
    for (i, ErrorRule { code, prefix, status, action, issue }) in e.rules.iter().enumerate() {
        let at = format!("errors.rules[{i}]");
        if code.is_none() && prefix.is_none() && status.is_none() {
            return Err(invalid(format!("{at}: give at least one of `code`, `prefix`, `status`")));
        }
        if (code.is_some() || prefix.is_some()) && e.code_pointer.is_none() {
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
    kind: &str,
) -> Result<(), InvalidSpec> {
    let at = format!("endpoints.{kind}.response");
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
    Ok(())
}
