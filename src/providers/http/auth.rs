//! Authentication that needs code rather than a constant header: AWS Signature V4 (signed by the
//! `aws-sigv4` crate), cached tokens (OAuth2 and vendor token exchanges) and digest / HMAC
//! signing over a canonical string. The adapter only says which and with what.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use reqwest::{Method, Url};
use serde_json::Value;

use super::select::select;
use super::template::Template;
use super::wire::{holds, Builtins, RawResponse, Secret};
use crate::providers::spec::{
    ClientAuth, Condition, DigestAlgorithm, DigestEncoding, DigestSpec, OAuthGrant, TimeUnit, TokenEncoding, TokenField,
    TokenSpec,
};
use crate::providers::ProviderError;

// === Digest ===

/// A compiled [`DigestSpec`].
#[derive(Debug, Clone)]
pub(crate) struct Digest {
    pub name: Option<String>,
    algorithm: DigestAlgorithm,
    input: Template,
    key: Option<Template>,
    key_digest: Option<String>,
    encoding: DigestEncoding,
    uppercase: bool,
}

impl Digest {
    pub(crate) fn new(spec: &DigestSpec) -> Result<Self, String> {
        Ok(Self {
            name: spec.name.clone(),
            algorithm: spec.algorithm,
            input: Template::parse(&spec.input)?,
            key: spec.key.as_deref().map(Template::parse).transpose()?,
            key_digest: spec.key_digest.clone(),
            encoding: spec.encoding,
            uppercase: spec.uppercase,
        })
    }

    /// Whether the canonical string or key refers to `name`.
    pub(crate) fn uses(&self, name: &str) -> bool {
        self.input.names().chain(self.key.iter().flat_map(|k| k.names())).any(|n| n == name)
    }

    /// Renders the canonical string and digests it, encoded.
    pub(crate) fn compute(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ProviderError> {
        Ok(self.encode(&self.raw(lookup, &BTreeMap::new(), None)?))
    }

    /// The raw digest; `prior` holds the raw bytes of earlier named digests (for `key_digest`).
    /// `body` is the request's exact bytes for `${body}` (binary images stay binary).
    pub(crate) fn raw(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
        prior: &BTreeMap<String, Vec<u8>>,
        body: Option<&[u8]>,
    ) -> Result<Vec<u8>, ProviderError> {
        let missing = |n: String| ProviderError::Config(format!("signature uses `${{{n}}}`, which has no value"));
        let input = self
            .input
            .render_bytes(&|n| match (n, body) {
                ("body", Some(b)) => Some(b.to_vec()),
                _ => lookup(n).map(String::into_bytes),
            })
            .map_err(missing)?;
        let key: Vec<u8> = match (&self.key_digest, &self.key) {
            (Some(d), _) => prior
                .get(d)
                .cloned()
                .ok_or_else(|| ProviderError::Config(format!("key_digest `{d}` is not an earlier digest")))?,
            (None, Some(k)) => k.render(lookup).map_err(missing)?.into_bytes(),
            (None, None) => Vec::new(),
        };
        Ok(match self.algorithm {
            DigestAlgorithm::Sha256 => ring::digest::digest(&ring::digest::SHA256, &input).as_ref().to_vec(),
            DigestAlgorithm::HmacSha256 => {
                ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key), &input).as_ref().to_vec()
            }
            DigestAlgorithm::HmacSha1 => ring::hmac::sign(
                &ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &key),
                &input,
            )
            .as_ref()
            .to_vec(),
        })
    }

    /// Encodes a raw digest as the adapter asked (hex by default).
    pub(crate) fn encode(&self, bytes: &[u8]) -> String {
        match self.encoding {
            DigestEncoding::Hex if self.uppercase => hex::encode_upper(bytes),
            DigestEncoding::Hex => hex::encode(bytes),
            DigestEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }
}

// === Request signing ===

/// Signs `req` with AWS Signature V4 at `now`. The body must be buffered (validation refuses
/// multipart with this auth).
pub(crate) fn sign_sigv4(
    req: &mut reqwest::Request,
    service: &str,
    region: &str,
    access_key_id: &Secret,
    secret_access_key: &Secret,
    session_token: Option<&Secret>,
    now: SystemTime,
) -> Result<(), ProviderError> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let sig_err = |e: &dyn std::fmt::Display| ProviderError::Config(format!("SigV4 signing failed: {e}"));
    let identity = aws_credential_types::Credentials::new(
        access_key_id.expose(),
        secret_access_key.expose(),
        session_token.map(|t| t.expose().to_string()),
        None,
        "kycgate",
    )
    .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| sig_err(&e))?
        .into();
    let added: Vec<(String, String)> = {
        let body = req.body().and_then(|b| b.as_bytes()).unwrap_or(&[]);
        let headers: Vec<(&str, &str)> =
            req.headers().iter().filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v))).collect();
        let signable = SignableRequest::new(req.method().as_str(), req.url().as_str(), headers.into_iter(), SignableBody::Bytes(body))
            .map_err(|e| sig_err(&e))?;
        let (instructions, _) = sign(signable, &params).map_err(|e| sig_err(&e))?.into_parts();
        instructions.headers().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    for (k, v) in added {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| sig_err(&e))?;
        let mut value = HeaderValue::from_str(&v).map_err(|e| sig_err(&e))?;
        value.set_sensitive(name == AUTHORIZATION || k.eq_ignore_ascii_case("x-amz-security-token"));
        req.headers_mut().insert(name, value);
    }
    Ok(())
}

/// Signs `req` by rendering the canonical string over the request and adding `headers`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sign_hmac(
    req: &mut reqwest::Request,
    secrets: &BTreeMap<String, Secret>,
    digests: &[Digest],
    signature: &Digest,
    headers: &[(HeaderName, Template)],
    vars: &BTreeMap<String, String>,
    builtins: &Builtins,
) -> Result<(), ProviderError> {
    let url = req.url().clone();
    let path = url.path().to_string();
    let query = url.query().unwrap_or("").to_string();
    let path_query = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
        None => url.host_str().unwrap_or("").to_string(),
    };
    let body: Vec<u8> = match req.body() {
        None => Vec::new(),
        Some(b) => match b.as_bytes() {
            Some(bytes) => bytes.to_vec(),
            None if signature.uses("body") || digests.iter().any(|d| d.uses("body")) => {
                return Err(ProviderError::Config("the signature covers the body but the body is streamed".into()))
            }
            None => Vec::new(),
        },
    };
    let method = req.method().as_str().to_string();
    let lookup = |n: &str| -> Option<String> {
        match n {
            "method" => Some(method.clone()),
            "path" => Some(path.clone()),
            "query" => Some(query.clone()),
            "path_query" => Some(path_query.clone()),
            "host" => Some(host.clone()),
            // Header templates see the body as text; digests get its exact bytes.
            "body" => Some(String::from_utf8_lossy(&body).into_owned()),
            _ => secrets.get(n).map(|s| s.expose().to_string()).or_else(|| vars.get(n).cloned()).or_else(|| builtins.get(n)),
        }
    };
    // Intermediate digests, in order: encoded for templates, raw for later keys.
    let mut raw: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut encoded: BTreeMap<String, String> = BTreeMap::new();
    for d in digests {
        let bytes = d.raw(&|n| encoded.get(n).cloned().or_else(|| lookup(n)), &raw, Some(&body))?;
        if let Some(name) = &d.name {
            encoded.insert(name.clone(), d.encode(&bytes));
            raw.insert(name.clone(), bytes);
        }
    }
    let with_digests = |n: &str| encoded.get(n).cloned().or_else(|| lookup(n));
    let sig = signature.encode(&signature.raw(&with_digests, &raw, Some(&body))?);
    for (name, t) in headers {
        let v = t
            .render(&|n| if n == "signature" { Some(sig.clone()) } else { with_digests(n) })
            .map_err(|n| ProviderError::Config(format!("auth header uses `${{{n}}}`, which has no value")))?;
        let mut value =
            HeaderValue::from_str(&v).map_err(|_| ProviderError::Config(format!("auth header {name} is not a header value")))?;
        value.set_sensitive(true);
        req.headers_mut().insert(name.clone(), value);
    }
    Ok(())
}

// === Tokens ===

/// A token endpoint plus its cache. One refresh at a time: callers queue on the mutex and the
/// first one fetches, the rest reuse its token.
#[derive(Debug)]
pub(crate) struct TokenSource {
    kind: TokenKind,
    refresh_before: Duration,
    header: HeaderName,
    prefix: String,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

#[derive(Debug, Clone)]
struct Cached {
    value: HeaderValue,
    expires: SystemTime,
    /// Refresh this long before `expires`.
    margin: Duration,
}

// One per provider, built at start-up: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum TokenKind {
    OAuth2 {
        url: Url,
        grant: OAuthGrant,
        client_id: Option<Secret>,
        client_secret: Option<Secret>,
        service_account: Option<ServiceAccount>,
        scope: Option<String>,
        client_auth: ClientAuth,
    },
    Custom(Box<CustomToken>),
    /// Google Application Default Credentials (`grant = "google_default"`).
    Google { token_url: Url, source: GoogleSource, scope: Option<String> },
}

/// Where Application Default Credentials were found, decided when the adapter is loaded.
#[derive(Debug)]
pub(crate) enum GoogleSource {
    /// A service-account key: an RS256 assertion exchanged at the token URL.
    ServiceAccount(ServiceAccount),
    /// `gcloud auth application-default login`: a refresh token exchanged at the token URL.
    AuthorizedUser { client_id: Secret, client_secret: Secret, refresh_token: Secret },
    /// The metadata server's token for the attached service account.
    Metadata { url: Url },
}

impl GoogleSource {
    /// Resolves ADC from `env` the way Google's libraries do. `Err` only for a key file that
    /// is named but unusable (a missing or malformed file must not silently fall through).
    pub(crate) fn find(env: &dyn super::EnvSource) -> Result<Self, String> {
        let var = |k: &str| env.var(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        if let Some(path) = var("GOOGLE_APPLICATION_CREDENTIALS") {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("GOOGLE_APPLICATION_CREDENTIALS names a file that cannot be read: {}", e.kind()))?;
            return Self::from_key_file(&text);
        }
        let config_dir = var("CLOUDSDK_CONFIG").or_else(|| var("HOME").map(|h| format!("{h}/.config/gcloud")));
        if let Some(dir) = config_dir {
            let well_known = std::path::Path::new(&dir).join("application_default_credentials.json");
            if let Ok(text) = std::fs::read_to_string(&well_known) {
                return Self::from_key_file(&text);
            }
        }
        let host = var("GCE_METADATA_HOST").unwrap_or_else(|| "metadata.google.internal".into());
        let url = Url::parse(&format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/token"))
            .map_err(|_| "GCE_METADATA_HOST is not a host name".to_string())?;
        Ok(Self::Metadata { url })
    }

    fn from_key_file(text: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(text).map_err(|_| "the Google credentials file is not JSON".to_string())?;
        let field = |k: &str| {
            v.get(k).and_then(Value::as_str).map(str::to_string).ok_or_else(|| format!("the Google credentials file has no `{k}`"))
        };
        match v.get("type").and_then(Value::as_str) {
            Some("service_account") => Ok(Self::ServiceAccount(ServiceAccount {
                client_email: field("client_email")?,
                private_key: Secret::new(field("private_key")?),
            })),
            Some("authorized_user") => Ok(Self::AuthorizedUser {
                client_id: Secret::new(field("client_id")?),
                client_secret: Secret::new(field("client_secret")?),
                refresh_token: Secret::new(field("refresh_token")?),
            }),
            _ => Err("the Google credentials file is neither `service_account` nor `authorized_user`".into()),
        }
    }
}

#[derive(Debug)]
struct CustomToken {
    /// Absolute, or a path on the adapter's base URL.
    url: String,
    method: Method,
    encoding: TokenEncoding,
    fields: Vec<(String, TokenField, Option<Digest>)>,
    secrets: BTreeMap<String, Secret>,
    vars: BTreeMap<String, String>,
    success: Vec<Condition>,
    token_pointer: String,
    expires_in_pointer: Option<String>,
    expires_at_pointer: Option<String>,
    expires_at_unit: TimeUnit,
    default_ttl: Duration,
}

/// The parts of a Google-style service-account key used for the JWT-bearer grant.
pub(crate) struct ServiceAccount {
    client_email: String,
    private_key: Secret,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount").field("client_email", &self.client_email).finish_non_exhaustive()
    }
}

impl TokenSource {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn oauth2(
        url: Url,
        grant: OAuthGrant,
        client_id: Option<Secret>,
        client_secret: Option<Secret>,
        service_account: Option<Secret>,
        scope: Option<String>,
        client_auth: ClientAuth,
        refresh_before: Duration,
    ) -> Result<Self, String> {
        let service_account = match service_account {
            None => None,
            Some(key) => {
                let v: Value = serde_json::from_str(key.expose()).map_err(|_| "service_account is not a JSON key file".to_string())?;
                let field = |k: &str| {
                    v.get(k).and_then(Value::as_str).map(str::to_string).ok_or_else(|| format!("service_account has no `{k}`"))
                };
                Some(ServiceAccount { client_email: field("client_email")?, private_key: Secret::new(field("private_key")?) })
            }
        };
        Ok(Self {
            kind: TokenKind::OAuth2 { url, grant, client_id, client_secret, service_account, scope, client_auth },
            refresh_before,
            header: AUTHORIZATION,
            prefix: "Bearer ".into(),
            cache: tokio::sync::Mutex::new(None),
        })
    }

    pub(crate) fn google(token_url: Url, source: GoogleSource, scope: Option<String>, refresh_before: Duration) -> Self {
        Self {
            kind: TokenKind::Google { token_url, source, scope },
            refresh_before,
            header: AUTHORIZATION,
            prefix: "Bearer ".into(),
            cache: tokio::sync::Mutex::new(None),
        }
    }

    pub(crate) fn custom(
        spec: &TokenSpec,
        url: String,
        secrets: BTreeMap<String, Secret>,
        vars: BTreeMap<String, String>,
    ) -> Result<Self, String> {
        let method = Method::from_bytes(spec.method.to_ascii_uppercase().as_bytes()).map_err(|_| "auth.method".to_string())?;
        let mut fields = Vec::new();
        for (k, f) in &spec.fields {
            let digest = match f {
                TokenField::Digest(d) => Some(Digest::new(d)?),
                TokenField::Value(_) => None,
            };
            fields.push((k.clone(), f.clone(), digest));
        }
        let header = match &spec.header {
            Some(h) => HeaderName::from_bytes(h.as_bytes()).map_err(|_| format!("auth.header `{h}`"))?,
            None => AUTHORIZATION,
        };
        let prefix = spec.prefix.clone().unwrap_or_else(|| if header == AUTHORIZATION { "Bearer ".into() } else { String::new() });
        Ok(Self {
            kind: TokenKind::Custom(Box::new(CustomToken {
                url,
                method,
                encoding: spec.encoding,
                fields,
                secrets,
                vars,
                success: spec.success.clone(),
                token_pointer: spec.token_pointer.clone(),
                expires_in_pointer: spec.expires_in_pointer.clone(),
                expires_at_pointer: spec.expires_at_pointer.clone(),
                expires_at_unit: spec.expires_at_unit,
                default_ttl: Duration::from_secs(spec.default_ttl_s),
            })),
            refresh_before: Duration::from_secs(spec.refresh_before_s),
            header,
            prefix,
            cache: tokio::sync::Mutex::new(None),
        })
    }

    /// The header carrying a valid token, fetching one when none is cached or it expires within
    /// `refresh_before`. `classify` turns a failed token answer into a provider error.
    pub(crate) async fn header(
        &self,
        client: &reqwest::Client,
        base: &Url,
        now: SystemTime,
        classify: &(dyn Fn(RawResponse) -> ProviderError + Sync),
    ) -> Result<(HeaderName, HeaderValue), ProviderError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref() {
            if now + c.margin < c.expires {
                return Ok((self.header.clone(), c.value.clone()));
            }
        }
        let (token, expires) = self.fetch(client, base, now, classify).await?;
        let mut value = HeaderValue::from_str(&format!("{}{token}", self.prefix))
            .map_err(|_| ProviderError::Decode("token is not a valid header value".into()))?;
        value.set_sensitive(true);
        // A token shorter-lived than twice the margin is refreshed at half its life instead of
        // on every call.
        let lifetime = expires.duration_since(now).unwrap_or_default();
        let margin = self.refresh_before.min(lifetime / 2);
        *cache = Some(Cached { value: value.clone(), expires, margin });
        Ok((self.header.clone(), value))
    }

    /// Drops the cached token (the vendor refused it).
    pub(crate) async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    async fn fetch(
        &self,
        client: &reqwest::Client,
        base: &Url,
        now: SystemTime,
        classify: &(dyn Fn(RawResponse) -> ProviderError + Sync),
    ) -> Result<(String, SystemTime), ProviderError> {
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        match &self.kind {
            TokenKind::OAuth2 { url, grant, client_id, client_secret, service_account, scope, client_auth } => {
                let mut form: Vec<(&str, String)> = Vec::new();
                let mut req = client.post(url.clone());
                match grant {
                    OAuthGrant::ClientCredentials => {
                        form.push(("grant_type", "client_credentials".into()));
                        let (id, secret) = match (client_id, client_secret) {
                            (Some(i), Some(s)) => (i, s),
                            _ => return Err(ProviderError::Config("client credentials missing".into())),
                        };
                        match client_auth {
                            ClientAuth::Basic => req = req.basic_auth(id.expose(), Some(secret.expose())),
                            ClientAuth::Body => {
                                form.push(("client_id", id.expose().to_string()));
                                form.push(("client_secret", secret.expose().to_string()));
                            }
                        }
                    }
                    OAuthGrant::JwtBearer => {
                        let sa = service_account
                            .as_ref()
                            .ok_or_else(|| ProviderError::Config("service account missing".into()))?;
                        form.push(("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer".into()));
                        form.push(("assertion", jwt_assertion(sa, url, scope.as_deref(), secs)?));
                    }
                    // Resolved into `TokenKind::Google` when the adapter is loaded.
                    OAuthGrant::GoogleDefault => {
                        return Err(ProviderError::Config("google_default credentials were not resolved".into()))
                    }
                }
                if let (Some(s), OAuthGrant::ClientCredentials) = (scope, grant) {
                    form.push(("scope", s.clone()));
                }
                let raw = super::send(req.form(&form)).await?;
                oauth2_answer(&token_json(&raw, &[], classify)?, now)
            }
            TokenKind::Google { token_url, source, scope } => {
                let req = match source {
                    GoogleSource::ServiceAccount(sa) => client.post(token_url.clone()).form(&[
                        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer".to_string()),
                        ("assertion", jwt_assertion(sa, token_url, scope.as_deref(), secs)?),
                    ]),
                    GoogleSource::AuthorizedUser { client_id, client_secret, refresh_token } => {
                        client.post(token_url.clone()).form(&[
                            ("grant_type", "refresh_token"),
                            ("client_id", client_id.expose()),
                            ("client_secret", client_secret.expose()),
                            ("refresh_token", refresh_token.expose()),
                        ])
                    }
                    GoogleSource::Metadata { url } => {
                        let mut url = url.clone();
                        if let Some(s) = scope {
                            url.query_pairs_mut().append_pair("scopes", s);
                        }
                        client.get(url).header("Metadata-Flavor", "Google")
                    }
                };
                let raw = super::send(req).await?;
                oauth2_answer(&token_json(&raw, &[], classify)?, now)
            }
            TokenKind::Custom(c) => {
                let url = if c.url.starts_with('/') {
                    let mut u = base.clone();
                    u.set_path(&format!("{}{}", base.path().trim_end_matches('/'), c.url));
                    u
                } else {
                    Url::parse(&c.url).map_err(|e| ProviderError::Config(format!("auth.url: {e}")))?
                };
                let builtins = Builtins::at(now);
                let lookup = |n: &str| {
                    c.secrets.get(n).map(|s| s.expose().to_string()).or_else(|| c.vars.get(n).cloned()).or_else(|| builtins.get(n))
                };
                let mut body = serde_json::Map::new();
                for (k, f, digest) in &c.fields {
                    let v = match (f, digest) {
                        (_, Some(d)) => Value::String(d.compute(&lookup)?),
                        (TokenField::Value(v), None) => render_value(v, &lookup)?,
                        (TokenField::Digest(_), None) => return Err(ProviderError::Config("digest not compiled".into())),
                    };
                    body.insert(k.clone(), v);
                }
                let req = client.request(c.method.clone(), url);
                let req = match c.encoding {
                    TokenEncoding::Json => req.json(&body),
                    TokenEncoding::Form => {
                        let form: Vec<(String, String)> =
                            body.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect();
                        req.form(&form)
                    }
                };
                let raw = super::send(req).await?;
                let json = token_json(&raw, &c.success, classify)?;
                let token = select(&json, &c.token_pointer)
                    .and_then(|v| v.as_str().map(str::to_string))
                    .ok_or_else(|| ProviderError::Decode(format!("token answer has nothing at `{}`", c.token_pointer)))?;
                let expires = if let Some(n) = c.expires_in_pointer.as_deref().and_then(|p| select(&json, p)).and_then(number) {
                    now + Duration::from_secs_f64(n.max(0.0))
                } else if let Some(n) = c.expires_at_pointer.as_deref().and_then(|p| select(&json, p)).and_then(number) {
                    let secs = match c.expires_at_unit {
                        TimeUnit::S => n,
                        TimeUnit::Ms => n / 1000.0,
                    };
                    UNIX_EPOCH + Duration::from_secs_f64(secs.max(0.0))
                } else {
                    now + c.default_ttl
                };
                Ok((token, expires))
            }
        }
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The token answer as JSON, or the classified error.
fn token_json(
    raw: &RawResponse,
    success: &[Condition],
    classify: &(dyn Fn(RawResponse) -> ProviderError + Sync),
) -> Result<Value, ProviderError> {
    let json: Option<Value> = serde_json::from_slice(&raw.body).ok();
    match json {
        Some(j) if (200..300).contains(&raw.status) && success.iter().all(|c| holds(c, &j)) => Ok(j),
        _ => Err(classify(raw.clone())),
    }
}

/// Strings are templates; other TOML values are sent as JSON.
fn render_value(v: &toml::Value, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Value, ProviderError> {
    Ok(match v {
        toml::Value::String(s) => Value::String(
            Template::parse(s)
                .map_err(ProviderError::Config)?
                .render(lookup)
                .map_err(|n| ProviderError::Config(format!("token field uses `${{{n}}}`, which has no value")))?,
        ),
        other => serde_json::to_value(other).map_err(|e| ProviderError::Config(e.to_string()))?,
    })
}

/// RS256 assertion for the JWT-bearer grant (RFC 7523), as Google service accounts use.
/// An RFC 6749 token answer: `access_token`, and `expires_in` seconds (an hour when absent).
fn oauth2_answer(json: &Value, now: SystemTime) -> Result<(String, SystemTime), ProviderError> {
    let token = select(json, "/access_token")
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::Decode("token answer has no access_token".into()))?;
    let ttl = select(json, "/expires_in").and_then(number).map_or(Duration::from_secs(3600), Duration::from_secs_f64);
    Ok((token.to_string(), now + ttl))
}

fn jwt_assertion(sa: &ServiceAccount, token_url: &Url, scope: Option<&str>, now_secs: u64) -> Result<String, ProviderError> {
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        iss: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        scope: Option<&'a str>,
        aud: &'a str,
        iat: u64,
        exp: u64,
    }
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(sa.private_key.expose().as_bytes())
        .map_err(|_| ProviderError::Config("service_account private_key is not an RSA PEM key".into()))?;
    let claims = Claims { iss: &sa.client_email, scope, aud: token_url.as_str(), iat: now_secs, exp: now_secs + 3600 };
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key)
        .map_err(|e| ProviderError::Config(format!("cannot sign the service-account assertion: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_ai_documented_signature() {
        // The vendor's own example: sha256("sampleaccesskey" + "samplesecretkey" + "1665993522952").
        let d = Digest::new(&DigestSpec {
            name: None,
            key_digest: None,
            algorithm: DigestAlgorithm::Sha256,
            input: "${access_key}${secret_key}${timestamp_ms}".into(),
            key: None,
            encoding: DigestEncoding::Hex,
            uppercase: false,
        })
        .unwrap();
        let lookup = |n: &str| match n {
            "access_key" => Some("sampleaccesskey".to_string()),
            "secret_key" => Some("samplesecretkey".to_string()),
            "timestamp_ms" => Some("1665993522952".to_string()),
            _ => None,
        };
        assert_eq!(d.compute(&lookup).unwrap(), "02209bbeaf0d0a3dd587f6a1ba22f84c98d142e3b545e77db7e4906ca56349f5");
    }

    #[test]
    fn hmac_sha256_rfc4231_case_2() {
        let d = Digest::new(&DigestSpec {
            name: None,
            key_digest: None,
            algorithm: DigestAlgorithm::HmacSha256,
            input: "what do ya want for nothing?".into(),
            key: Some("Jefe".into()),
            encoding: DigestEncoding::Hex,
            uppercase: false,
        })
        .unwrap();
        assert_eq!(d.compute(&|_| None).unwrap(), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
