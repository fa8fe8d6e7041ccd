//! HTTP vendor adapters: runs a TOML-described vendor (`kind = "http"`) as a [`Provider`].
//!
//! The mechanics live here once: [`validate`] checks the spec, `request` encodes one request of
//! a sub-call, `auth` signs it or fetches its token, `response` classifies the answer and maps
//! it to the unified types. This file runs an endpoint: its steps in order (capturing values
//! for later ones), polling where the vendor is asynchronous, then the mapped answer. A vendor
//! is data.

pub mod validate;

mod auth;
pub mod aws_chain;
mod request;
mod response;
mod select;
mod template;
mod wire;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use reqwest::header::RETRY_AFTER;
use reqwest::Url;

pub use validate::{default_base_url_env, InvalidSpec, ValidatedHttpSpec};
pub use wire::Secret;

use self::request::Scope;
use self::response::Checked;
use self::wire::{Builtins, RawResponse};
use self::validate::{AwsKeys, Poll, RequestTpl, ResolvedAuth};
use super::spec::{HttpSpec, ProviderFile, ProviderSpec, SpecError};
use super::{Answer, Provider, ProviderError, SubCall, SubCallKind, Unavailable, Verdict};

/// Largest vendor answer read (portraits in base64 included).
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Where base-URL overrides and credentials are read from: the process environment in
/// production, a map in tests (so parallel tests never race on `set_var`).
pub trait EnvSource: Send + Sync {
    fn var(&self, key: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl EnvSource for HashMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

/// The one HTTP client every adapter shares (connection pools, TLS roots). Per-attempt time
/// limits are the routing stack's job; this only bounds connecting. It follows no redirect: a
/// vendor's 3xx to another origin would carry the vendor's API key (a header, a query parameter
/// or a signed body) to whoever it names, so a 3xx is an error ([`ProviderError::Redirect`]).
pub fn shared_client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| client_with(reqwest::redirect::Policy::none())).clone()
}

/// Most redirects a `redirects = "same_origin"` adapter follows for one request.
const MAX_REDIRECTS: usize = 5;

/// The client of adapters that opt into `redirects = "same_origin"`: it follows a redirect only
/// within the origin of the request that started the chain (scheme, host and port); any other
/// location stops the chain, and the 3xx is an error as with [`shared_client`].
pub fn same_origin_client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            client_with(reqwest::redirect::Policy::custom(|attempt| {
                let same = attempt.previous().first().is_some_and(|first| first.origin() == attempt.url().origin());
                if !same {
                    attempt.stop()
                } else if attempt.previous().len() > MAX_REDIRECTS {
                    attempt.error("too many redirects")
                } else {
                    attempt.follow()
                }
            }))
        })
        .clone()
}

/// The client for an adapter's redirect policy.
pub fn client_for(redirects: super::spec::Redirects) -> reqwest::Client {
    match redirects {
        super::spec::Redirects::None => shared_client(),
        super::spec::Redirects::SameOrigin => same_origin_client(),
    }
}

fn client_with(redirects: reqwest::redirect::Policy) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(redirects)
        .user_agent(concat!("kycgate/", env!("CARGO_PKG_VERSION")))
        .build()
        // Building only fails when the TLS backend cannot initialise; fall back to a client
        // that still follows no redirect rather than aborting start-up.
        .unwrap_or_else(|_| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default()
        })
}

/// Where request times come from (signatures, timestamps, token expiry). The system clock in
/// production; tests and replays fix it so signatures are reproducible.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// A liveness session created for the vendor's client SDK.
#[derive(Debug, Clone)]
pub struct LivenessSession {
    /// The vendor's session id: the device SDK runs against it, and
    /// [`HttpProvider::liveness_session_result`] fetches its verdict.
    pub id: String,
    /// The vendor's create answer (it may carry a client token the SDK needs).
    pub vendor: serde_json::Value,
}

/// A vendor run from its validated adapter.
#[derive(Clone)]
pub struct HttpProvider {
    name: String,
    spec: ValidatedHttpSpec,
    client: reqwest::Client,
    clock: Clock,
}

impl fmt::Debug for HttpProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProvider").field("name", &self.name).field("spec", &self.spec).finish_non_exhaustive()
    }
}

impl HttpProvider {
    /// Wraps an already validated adapter.
    pub fn new(name: impl Into<String>, spec: ValidatedHttpSpec, client: reqwest::Client) -> Self {
        Self { name: name.into(), spec, client, clock: Arc::new(SystemTime::now) }
    }

    /// Replaces the clock (tests and `providers test` pin it so SigV4 and HMAC signatures can be
    /// recomputed).
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Validates `spec` (base URL override and credentials read through `env`).
    pub fn from_spec(
        name: &str,
        spec: &HttpSpec,
        env: &dyn EnvSource,
        client: reqwest::Client,
    ) -> Result<Self, InvalidSpec> {
        Ok(Self::new(name, ValidatedHttpSpec::new(name, spec, env)?, client))
    }

    /// Builds the provider of an `http` file, with the process environment and the shared
    /// client of its redirect policy. Errors name the file.
    pub fn from_file(file: &ProviderFile) -> Result<Self, SpecError> {
        let redirects = match &file.spec {
            ProviderSpec::Http(spec) => spec.redirects,
            ProviderSpec::Local(_) => super::spec::Redirects::None,
        };
        Self::from_file_with(file, &ProcessEnv, client_for(redirects))
    }

    /// [`HttpProvider::from_file`] with an explicit environment and client.
    pub fn from_file_with(
        file: &ProviderFile,
        env: &dyn EnvSource,
        client: reqwest::Client,
    ) -> Result<Self, SpecError> {
        let invalid = |message: String| SpecError::Invalid { path: file.path.clone(), message };
        match &file.spec {
            ProviderSpec::Http(spec) => {
                Self::from_spec(&file.name, spec, env, client).map_err(|e| invalid(e.to_string()))
            }
            ProviderSpec::Local(_) => Err(invalid("not an http provider (kind = \"local\")".into())),
        }
    }

    /// The validated adapter.
    pub fn spec(&self) -> &ValidatedHttpSpec {
        &self.spec
    }

    /// Whether the adapter declares SDK liveness sessions (`[sessions.liveness]`).
    pub fn serves_liveness_sessions(&self) -> bool {
        self.spec.liveness_session.is_some()
    }

    /// Creates a liveness session at the vendor (AWS Face Liveness). The device runs the vendor's
    /// SDK against it; a single selfie cannot, which is why such vendors do not serve `liveness`.
    pub async fn create_liveness_session(&self) -> Result<LivenessSession, ProviderError> {
        let s = self.spec.liveness_session.as_ref().ok_or(ProviderError::Unsupported(SubCallKind::Liveness))?;
        if let Some(reason) = &self.spec.unavailable {
            return Err(ProviderError::Unavailable(reason.clone()));
        }
        let mut captures = BTreeMap::new();
        match self.exchange(&s.create, None, &mut captures).await? {
            Checked::Ok(json) => {
                let id = s
                    .create
                    .capture
                    .iter()
                    .find(|(name, _)| name == "session_id")
                    .map(|(name, f)| response::capture(&json, f, name))
                    .ok_or_else(|| ProviderError::Config("sessions.liveness.create captures no session_id".into()))??;
                Ok(LivenessSession { id, vendor: json })
            }
            Checked::Rejected(r, _) => {
                Err(ProviderError::Vendor { code: r.code.as_str().to_string(), message: r.message, retryable: false })
            }
        }
    }

    /// The verdict of a session, or `None` while it is still pending (the user has not
    /// finished in the SDK). Expired or failed sessions are errors.
    pub async fn liveness_session_result(&self, id: &str) -> Result<Option<Answer>, ProviderError> {
        let s = self.spec.liveness_session.as_ref().ok_or(ProviderError::Unsupported(SubCallKind::Liveness))?;
        if let Some(reason) = &self.spec.unavailable {
            return Err(ProviderError::Unavailable(reason.clone()));
        }
        let captures = BTreeMap::from([("session_id".to_string(), id.to_string())]);
        let raw = self.send_tpl(&s.result, None, None, &captures).await?;
        if (200..300).contains(&raw.status) {
            let json: Option<serde_json::Value> = serde_json::from_slice(&raw.body).ok();
            if json.as_ref().is_some_and(|j| wire::holds(&s.pending, j)) {
                return Ok(None);
            }
        }
        let answer = |verdict, raw| Answer { provider: self.name.clone(), verdict, raw: Some(raw) };
        match response::check(&self.spec, &s.result, raw)? {
            Checked::Ok(json) => {
                let verdict = response::map_answer(&s.mapping, &json, None)?;
                Ok(Some(answer(verdict, json)))
            }
            Checked::Rejected(r, json) => Ok(Some(answer(Verdict::Rejected(r), json))),
        }
    }

    /// One request/answer exchange of `tpl`, polled to completion when it is asynchronous.
    async fn exchange(
        &self,
        tpl: &RequestTpl,
        call: Option<&SubCall>,
        captures: &mut BTreeMap<String, String>,
    ) -> Result<Checked, ProviderError> {
        let raw = self.send_tpl(tpl, None, call, captures).await?;
        let raw = match &tpl.poll {
            None => raw,
            Some(poll) => self.poll(poll, raw, call, captures).await?,
        };
        let checked = response::check(&self.spec, tpl, raw.clone());
        if checked.is_err() && response::refuses_token(&self.spec, &raw) {
            if let ResolvedAuth::Token(source) = &self.spec.auth {
                // Revoked or expired early: the next attempt fetches a new token.
                source.invalidate().await;
            }
        }
        checked
    }

    /// Renders, authenticates and sends one request (to `url` when given, e.g. a poll URL).
    async fn send_tpl(
        &self,
        tpl: &RequestTpl,
        url: Option<Url>,
        call: Option<&SubCall>,
        captures: &BTreeMap<String, String>,
    ) -> Result<RawResponse, ProviderError> {
        let now = (self.clock)();
        let builtins = Builtins::at(now);
        let scope = Scope { vars: &self.spec.vars, captures, builtins: &builtins };
        let url = match url {
            Some(u) => u,
            None => request::url(&self.spec, tpl, &scope)?,
        };
        let mut req = request::build(&self.client, &self.spec, tpl, tpl.method.clone(), url, call, &scope)?;
        self.authorize(&mut req, now, &builtins).await?;
        let started = tokio::time::Instant::now();
        let raw = execute(&self.client, req).await?;
        tracing::debug!(
            provider = %self.name,
            request = %tpl.label,
            status = raw.status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Vendor answered"
        );
        Ok(raw)
    }

    /// Adds credentials that depend on the request or on a token endpoint.
    async fn authorize(&self, req: &mut reqwest::Request, now: SystemTime, builtins: &Builtins) -> Result<(), ProviderError> {
        match &self.spec.auth {
            ResolvedAuth::AwsSigv4 { service, region, credentials: AwsKeys::Static { access_key_id, secret_access_key, session_token } } => {
                auth::sign_sigv4(req, service, region, access_key_id, secret_access_key, session_token.as_ref(), now)
            }
            ResolvedAuth::AwsSigv4 { service, region, credentials: AwsKeys::Chain(chain) } => {
                let keys = chain.credentials(&self.client, now).await?;
                auth::sign_sigv4(req, service, region, &keys.access_key_id, &keys.secret_access_key, keys.session_token.as_ref(), now)
            }
            ResolvedAuth::Token(source) => {
                let spec = &self.spec;
                let classify = move |raw: RawResponse| response::error_of(spec, &raw);
                let (name, value) = source.header(&self.client, &self.spec.base_url, now, &classify).await?;
                req.headers_mut().insert(name, value);
                Ok(())
            }
            ResolvedAuth::Hmac { secrets, digests, signature, headers } => {
                auth::sign_hmac(req, secrets, digests, signature, headers, &self.spec.vars, builtins)
            }
            ResolvedAuth::None
            | ResolvedAuth::Header(..)
            | ResolvedAuth::Fields(_)
            | ResolvedAuth::Query(_)
            | ResolvedAuth::Basic(..) => Ok(()),
        }
    }

    /// Polls an asynchronous operation until `until` holds, honouring `Retry-After`, within the
    /// deadline. Returns the final answer (or the first error answer) for classification.
    async fn poll(
        &self,
        poll: &Poll,
        submit: RawResponse,
        call: Option<&SubCall>,
        captures: &mut BTreeMap<String, String>,
    ) -> Result<RawResponse, ProviderError> {
        if !(200..300).contains(&submit.status) {
            return Ok(submit);
        }
        let submit_json: Option<serde_json::Value> = serde_json::from_slice(&submit.body).ok();
        if submit_json.as_ref().is_some_and(|j| wire::holds(&poll.until, j)) {
            return Ok(submit);
        }
        let url = match &poll.url_header {
            Some(h) => {
                let loc = submit
                    .headers
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| ProviderError::Decode(format!("HTTP {} without a {h} header to poll", submit.status)))?;
                let url = self.spec.base_url.join(loc).map_err(|_| ProviderError::Decode(format!("{h} is not a URL")))?;
                // Credentials are only ever sent to the vendor's own origin.
                if url.origin() != self.spec.base_url.origin() {
                    return Err(ProviderError::Decode(format!("{h} points outside the vendor's base URL")));
                }
                Some(url)
            }
            None => {
                let json = submit_json.ok_or_else(|| ProviderError::Decode("submit answer is not JSON".into()))?;
                for (name, f) in &poll.capture {
                    captures.insert(name.clone(), response::capture(&json, f, name)?);
                }
                None
            }
        };
        let deadline = tokio::time::Instant::now() + poll.deadline;
        // The vendor's Retry-After wins over the interval, but `Retry-After: 0` on every answer
        // must not turn into a busy loop.
        let floor = poll.interval.min(Duration::from_millis(100));
        let pace = |retry_after: Option<Duration>| retry_after.map_or(poll.interval, |d| d.max(floor));
        let mut wait = pace(submit.retry_after);
        loop {
            if tokio::time::Instant::now() + wait > deadline {
                return Err(ProviderError::Timeout(poll.deadline));
            }
            tokio::time::sleep(wait).await;
            let raw = self.send_tpl(&poll.request, url.clone(), call, captures).await?;
            if raw.status == 429 {
                wait = pace(raw.retry_after);
                continue;
            }
            if !(200..300).contains(&raw.status) {
                return Ok(raw);
            }
            let json: serde_json::Value = serde_json::from_slice(&raw.body)
                .map_err(|_| ProviderError::Decode(format!("poll answer HTTP {} is not JSON", raw.status)))?;
            if wire::holds(&poll.until, &json) {
                return Ok(raw);
            }
            wait = pace(raw.retry_after);
        }
    }
}

/// Sends a built request and reads the answer (bounded).
async fn execute(client: &reqwest::Client, req: reqwest::Request) -> Result<RawResponse, ProviderError> {
    // `without_url`: the URL may carry credentials in its query.
    let transport = |e: reqwest::Error| ProviderError::Transport(e.without_url().to_string());
    read(client.execute(req).await.map_err(transport)?).await
}

/// Sends a request builder (token endpoints).
pub(crate) async fn send(req: reqwest::RequestBuilder) -> Result<RawResponse, ProviderError> {
    let transport = |e: reqwest::Error| ProviderError::Transport(e.without_url().to_string());
    read(req.send().await.map_err(transport)?).await
}

async fn read(mut resp: reqwest::Response) -> Result<RawResponse, ProviderError> {
    let transport = |e: reqwest::Error| ProviderError::Transport(e.without_url().to_string());
    let status = resp.status().as_u16();
    // A redirect the client did not follow (none are, or it left the origin). Its body is not
    // read: it is the vendor's (or an attacker's) text.
    if resp.status().is_redirection() {
        return Err(ProviderError::Redirect { status });
    }
    let retry_after =
        resp.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(response::parse_retry_after);
    if resp.content_length().is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(ProviderError::Decode(format!("answer larger than {MAX_BODY_BYTES} bytes")));
    }
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ProviderError::Decode(format!("answer larger than {MAX_BODY_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(RawResponse { status, retry_after, headers, body: body.into() })
}

#[async_trait::async_trait]
impl Provider for HttpProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn supports(&self, kind: SubCallKind) -> bool {
        self.spec.endpoints.contains_key(&kind)
    }

    fn cost_per_call(&self) -> f64 {
        self.spec.cost_per_call
    }

    fn peer(&self) -> Option<(String, u16)> {
        let base = &self.spec.base_url;
        Some((base.host_str()?.to_string(), base.port_or_known_default()?))
    }

    async fn call(&self, request: SubCall) -> Result<Answer, ProviderError> {
        let kind = request.kind();
        let ep = self.spec.endpoints.get(&kind).ok_or(ProviderError::Unsupported(kind))?;
        if let Some(reason) = &self.spec.unavailable {
            return Err(ProviderError::Unavailable(reason.clone()));
        }
        let answer = |verdict, raw| Answer { provider: self.name.clone(), verdict, raw: Some(raw) };
        let mut captures = BTreeMap::new();
        for step in &ep.steps {
            match self.exchange(step, Some(&request), &mut captures).await? {
                Checked::Ok(json) => {
                    for (name, f) in &step.capture {
                        let value = response::capture(&json, f, name)?;
                        captures.insert(name.clone(), value);
                    }
                }
                Checked::Rejected(r, json) => return Ok(answer(Verdict::Rejected(r), json)),
            }
        }
        match self.exchange(&ep.main, Some(&request), &mut captures).await? {
            Checked::Ok(json) => {
                let verdict = response::map_answer(&ep.mapping, &json, Some(&request))?;
                Ok(answer(verdict, json))
            }
            Checked::Rejected(r, json) => Ok(answer(Verdict::Rejected(r), json)),
        }
    }

    fn unavailable(&self, kind: SubCallKind) -> Option<Unavailable> {
        if !self.supports(kind) {
            return Some(Unavailable::because(format!("{} does not serve {kind}", self.name)));
        }
        self.spec.unavailable.clone().map(Unavailable::because)
    }
}
