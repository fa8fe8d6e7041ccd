//! HTTP vendor adapters: runs a TOML-described vendor (`kind = "http"`) as a [`Provider`].
//!
//! The mechanics live here once: [`validate`] checks the spec, [`request`] encodes a sub-call,
//! [`response`] classifies the answer and maps it to the unified types. A vendor is data.

pub mod validate;

mod request;
mod response;

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::header::RETRY_AFTER;

pub use validate::{default_base_url_env, InvalidSpec, Secret, ValidatedHttpSpec};

use super::spec::{HttpSpec, ProviderFile, ProviderSpec, SpecError};
use super::{Answer, Provider, ProviderError, SubCall, SubCallKind};

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
/// limits are the routing stack's job; this only bounds connecting.
pub fn shared_client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .pool_idle_timeout(Duration::from_secs(60))
                .user_agent(concat!("kycgate/", env!("CARGO_PKG_VERSION")))
                .build()
                // Building only fails when the TLS backend cannot initialise; fall back to
                // reqwest's defaults rather than aborting start-up.
                .unwrap_or_default()
        })
        .clone()
}

/// A vendor run from its validated adapter.
#[derive(Debug, Clone)]
pub struct HttpProvider {
    name: String,
    spec: ValidatedHttpSpec,
    client: reqwest::Client,
}

impl HttpProvider {
    /// Wraps an already validated adapter.
    pub fn new(name: impl Into<String>, spec: ValidatedHttpSpec, client: reqwest::Client) -> Self {
        Self { name: name.into(), spec, client }
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
    /// client. Errors name the file.
    pub fn from_file(file: &ProviderFile) -> Result<Self, SpecError> {
        Self::from_file_with(file, &ProcessEnv, shared_client())
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

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<response::RawResponse, ProviderError> {
        // `without_url`: the URL may carry credentials in its query.
        let transport = |e: reqwest::Error| ProviderError::Transport(e.without_url().to_string());
        let mut resp = request.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let retry_after =
            resp.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(response::parse_retry_after);
        if resp.content_length().is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(ProviderError::Decode(format!("answer larger than {MAX_BODY_BYTES} bytes")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(ProviderError::Decode(format!("answer larger than {MAX_BODY_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(response::RawResponse { status, retry_after, body: body.into() })
    }
}

#[async_trait::async_trait]
impl Provider for HttpProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn supports(&self, kind: SubCallKind) -> bool {
        self.spec.endpoints.contains_key(&kind)
    }

    async fn call(&self, request: SubCall) -> Result<Answer, ProviderError> {
        let kind = request.kind();
        let ep = self.spec.endpoints.get(&kind).ok_or(ProviderError::Unsupported(kind))?;
        if let Some(reason) = &self.spec.unavailable {
            return Err(ProviderError::Unavailable(reason.clone()));
        }
        let builder = request::build(&self.client, &self.spec, ep, &request)?;
        let raw = self.send(builder).await?;
        response::interpret(&self.name, &self.spec, ep, raw)
    }

    fn unavailable_reason(&self, kind: SubCallKind) -> Option<String> {
        if !self.supports(kind) {
            return Some(format!("{} does not serve {kind}", self.name));
        }
        self.spec.unavailable.clone()
    }
}
