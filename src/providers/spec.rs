//! Provider TOML specs: the serde shape of `providers/*.toml`, loaded with file + line errors.
//!
//! A file is either `kind = "http"` (a vendor described declaratively, run by
//! [`crate::providers::http`]) or `kind = "local"` (the on-device provider). Everything is
//! `deny_unknown_fields`: a typo fails at start-up with the file, line and column. The language
//! itself is documented in `docs/ADAPTERS.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::{IssueCode, SubCallKind};

/// One parsed provider file. `name` is the file stem (`providers/facepp.toml` → `facepp`): it is
/// the name routing config refers to.
#[derive(Debug, Clone)]
pub struct ProviderFile {
    pub name: String,
    pub path: PathBuf,
    pub spec: ProviderSpec,
}

/// What a provider file declares, selected by its `kind` key.
// Built once per file at start-up: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProviderSpec {
    /// A third-party HTTP vendor described by data.
    Http(HttpSpec),
    /// The built-in on-device provider; the lead builds it from these settings.
    Local(LocalSpec),
}

/// Settings of the built-in local provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSpec {
    /// Which sub-calls the local provider answers.
    pub serves: Vec<SubCallKind>,
    /// Free-form settings owned by the local provider (model paths, thresholds).
    #[serde(default)]
    pub settings: toml::Table,
}

// === HTTP adapter language ===

/// A vendor adapter: where it lives, how it authenticates, how each sub-call maps to one HTTP
/// request and how the answer maps back to the unified types.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// Free text for operators (vendor, product, documentation link).
    #[serde(default)]
    pub description: Option<String>,
    /// Default base URL, e.g. `https://api-us.faceplusplus.com`. Endpoint paths are appended.
    /// May use `${var}` from `vars` (e.g. an AWS region in the host name).
    pub base_url: String,
    /// Environment variable that overrides `base_url` (self-hosted deployments, tests against a
    /// mock). Defaults to `KYCGATE_<NAME>_BASE_URL`.
    #[serde(default)]
    pub base_url_env: Option<String>,
    /// Deployment settings that are not secrets (region, project id, processor id), usable as
    /// `${name}` in the base URL, paths, queries, headers, body fields and auth settings.
    #[serde(default)]
    pub vars: BTreeMap<String, VarSpec>,
    /// How requests are authenticated.
    #[serde(default)]
    pub auth: AuthSpec,
    /// Constant headers sent with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Vendor-level success predicate: every condition must hold on a 2xx JSON body, otherwise
    /// the answer is treated as an error envelope (vendors that answer HTTP 200 with an error).
    #[serde(default)]
    pub success: Vec<Condition>,
    /// Where the vendor puts its error code and message, and what each code means.
    #[serde(default)]
    pub errors: ErrorSpec,
    /// One request per sub-call the vendor serves.
    #[serde(default)]
    pub endpoints: Endpoints,
    /// What one answered call costs (any currency unit, e.g. `0.01`), summed into the
    /// `kycgate_provider_cost_total` metric. Absent = 0.
    #[serde(default)]
    pub cost_per_call: Option<f64>,
    /// Checks that run in the vendor's client SDK (AWS Face Liveness): the gateway only creates
    /// the session and fetches its result.
    #[serde(default)]
    pub sessions: Sessions,
    /// Which redirects the vendor client follows: `none` (the default: a 3xx is an error) or
    /// `same_origin` (only to the base URL's scheme, host and port; credentials never leave it).
    #[serde(default)]
    pub redirects: Redirects,
}

/// The redirect policy of an adapter (`redirects = "same_origin"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Redirects {
    /// A 3xx answer is a `Redirect` error.
    #[default]
    None,
    /// Follow redirects within the request's own origin (at most 5); another origin is an error.
    SameOrigin,
}

/// SDK-driven checks, by kind.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sessions {
    #[serde(default)]
    pub liveness: Option<SessionSpec>,
}

/// Create a session for the device's SDK, later fetch its verdict.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSpec {
    /// Creates the session; must `capture` a `session_id`.
    pub create: StepSpec,
    /// Fetches the result; uses `${session_id}`.
    pub result: StepSpec,
    /// The result is not ready yet while this holds (the user has not finished).
    pub pending: Condition,
    /// Mapping of a finished result.
    pub response: LivenessMapping,
}

/// Sub-call → endpoint. A missing entry means the vendor does not serve that sub-call.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    #[serde(default)]
    pub liveness: Option<EndpointSpec<LivenessMapping>>,
    #[serde(default)]
    pub face_compare: Option<EndpointSpec<CompareMapping>>,
    #[serde(default)]
    pub document_ocr: Option<EndpointSpec<OcrMapping>>,
}

/// One HTTP request for one sub-call, and the mapping of its answer (`R`, per sub-call).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec<R> {
    /// HTTP method; `POST` unless said otherwise.
    #[serde(default = "default_method")]
    pub method: String,
    /// Path appended to the base URL, e.g. `/facepp/v3/compare`.
    pub path: String,
    /// Constant query parameters.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Constant headers for this endpoint only.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How the images (and constant fields) are encoded.
    pub body: BodySpec,
    /// Requests sent first, in order (e.g. detect a face id on each image); their `capture`d
    /// values are usable as `${name}` in later steps and in this request.
    #[serde(default)]
    pub steps: Vec<StepSpec>,
    /// Extra success conditions for this endpoint's answer (after polling), on top of the
    /// top-level `success`.
    #[serde(default)]
    pub success: Vec<Condition>,
    /// Asynchronous vendors: poll until the answer is final; the final answer is mapped.
    #[serde(default)]
    pub poll: Option<PollSpec>,
    /// Conditions on a successful answer that mean "the input is unusable" (e.g. no face found):
    /// a final verdict, not retried and not handed to the next provider.
    #[serde(default)]
    pub reject: Vec<RejectRule>,
    /// Pointers from the vendor's JSON to the unified answer.
    pub response: R,
}

/// A request sent before the endpoint's own, whose answer only feeds `capture`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Free text naming the step for operators (`detect probe`).
    #[serde(default)]
    pub name: Option<String>,
    /// HTTP method; `POST` unless said otherwise.
    #[serde(default = "default_method")]
    pub method: String,
    /// Path appended to the base URL (a template).
    pub path: String,
    /// Query parameters (templates).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Headers for this step (templates).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// What the step sends.
    pub body: BodySpec,
    /// Extra success conditions for this step's answer.
    #[serde(default)]
    pub success: Vec<Condition>,
    /// Poll until the step's operation is done.
    #[serde(default)]
    pub poll: Option<PollSpec>,
    /// Rejections checked on this step's answer (no face on one of the images).
    #[serde(default)]
    pub reject: Vec<RejectRule>,
    /// `name = field`: values read from this step's answer for later `${name}`.
    #[serde(default)]
    pub capture: BTreeMap<String, FieldRef>,
}

/// Polling an asynchronous operation until it is done.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollSpec {
    /// Take the operation URL from this response header (`Operation-Location`).
    #[serde(default)]
    pub url_header: Option<String>,
    /// Or poll this path (with `${captures}` from the submit answer, see `capture`).
    #[serde(default)]
    pub path: Option<String>,
    /// Values read from the submit answer for `path` (`job = "/job/id"`).
    #[serde(default)]
    pub capture: BTreeMap<String, FieldRef>,
    /// Poll method; `GET` unless said otherwise.
    #[serde(default = "default_poll_method")]
    pub method: String,
    /// Delay between polls when the vendor sends no `Retry-After`.
    #[serde(default = "default_poll_interval")]
    pub interval_ms: u64,
    /// Give up (a retryable timeout) after this long.
    #[serde(default = "default_poll_deadline")]
    pub deadline_ms: u64,
    /// The operation is finished when this holds (`status` is `succeeded` or `failed`); whether it
    /// succeeded is then up to `success`.
    pub until: Condition,
}

fn default_poll_method() -> String {
    "GET".to_string()
}

fn default_poll_interval() -> u64 {
    1000
}

fn default_poll_deadline() -> u64 {
    60_000
}

/// A non-secret setting: a literal, or read from the environment with an optional default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarSpec {
    /// The value itself.
    Literal(String),
    /// An environment variable; `default` when it is unset (else the provider is unavailable).
    Env { env: String, default: Option<String> },
}

fn default_method() -> String {
    "POST".to_string()
}

/// Request authentication. Secrets are always references (`{ env = … }` / `{ file = … }`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthSpec {
    /// No authentication (self-hosted containers on a private network).
    #[default]
    None,
    /// A header carrying the key, optionally after a scheme prefix (`Token `).
    Header {
        name: String,
        value: Credential,
        #[serde(default)]
        prefix: Option<String>,
    },
    /// Keys sent as body fields (multipart text fields or top-level JSON keys), like Face++.
    Fields { fields: BTreeMap<String, Credential> },
    /// Keys sent as query parameters.
    Query { params: BTreeMap<String, Credential> },
    /// HTTP basic authentication.
    Basic { username: Credential, password: Credential },
    /// `Authorization: Bearer <token>` with a static token.
    Bearer { token: Credential },
    /// AWS Signature Version 4 (signed by the `aws-sigv4` crate) over the whole request.
    AwsSigv4 {
        /// Signing name, e.g. `rekognition`, `textract`.
        service: String,
        /// Region, usually `${region}` from `vars`.
        region: String,
        /// Both keys, or neither: without them the AWS default credential chain finds them
        /// (environment, profile, web identity / IRSA, container endpoint, instance metadata).
        #[serde(default)]
        access_key_id: Option<Credential>,
        #[serde(default)]
        secret_access_key: Option<Credential>,
        #[serde(default)]
        session_token: Option<Credential>,
    },
    /// OAuth2 bearer tokens from a token endpoint, cached until shortly before they expire.
    Oauth2 {
        /// Absolute token endpoint URL (may use `${var}`).
        token_url: String,
        /// `client_credentials` (client id + secret) or `jwt_bearer` (a Google-style service
        /// account key signs an RS256 assertion).
        #[serde(default)]
        grant: OAuthGrant,
        #[serde(default)]
        client_id: Option<Credential>,
        #[serde(default)]
        client_secret: Option<Credential>,
        /// Service-account key JSON (`client_email`, `private_key`) for `jwt_bearer`.
        #[serde(default)]
        service_account: Option<Credential>,
        #[serde(default)]
        scope: Option<String>,
        /// Client credentials in HTTP basic (`basic`) or the form body (`body`, default).
        #[serde(default)]
        client_auth: ClientAuth,
        /// Refresh this long before the token expires.
        #[serde(default = "default_refresh_before")]
        refresh_before_s: u64,
    },
    /// A vendor-specific token exchange (e.g. ADVANCE.AI's signed `generate-token`), cached.
    Token(Box<TokenSpec>),
    /// Request signing over a configurable canonical string (HMAC or plain digest).
    Hmac {
        /// Named secrets usable in the templates below.
        secrets: BTreeMap<String, Credential>,
        /// Intermediate digests computed in order before `signature` (each needs `name`): a
        /// payload hash, a hashed canonical request, a derived signing key (Tencent TC3).
        #[serde(default)]
        digests: Vec<DigestSpec>,
        signature: DigestSpec,
        /// Headers added to each request; `${signature}` is the computed signature.
        headers: BTreeMap<String, String>,
    },
}

fn default_refresh_before() -> u64 {
    60
}

/// OAuth2 grant types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthGrant {
    /// RFC 6749 client credentials (client id + secret).
    #[default]
    ClientCredentials,
    /// RFC 7523 JWT bearer assertion signed with a service-account key (Google).
    JwtBearer,
    /// Google Application Default Credentials, found as Google's client libraries find them:
    /// `GOOGLE_APPLICATION_CREDENTIALS` (a service-account or authorized-user key file), then
    /// gcloud's well-known file, then the metadata server (GKE Workload Identity, Compute Engine).
    GoogleDefault,
}

/// Where OAuth2 client credentials go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `client_id` / `client_secret` in the form body.
    #[default]
    Body,
    /// HTTP basic authentication.
    Basic,
}

/// A token endpoint described field by field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// Path on the base URL (`/openapi/auth/...`) or an absolute URL.
    pub url: String,
    #[serde(default = "default_method")]
    pub method: String,
    /// `json` (default) or `form`.
    #[serde(default)]
    pub encoding: TokenEncoding,
    /// Named secrets usable as `${name}` in `fields`.
    #[serde(default)]
    pub secrets: BTreeMap<String, Credential>,
    /// Request fields: strings are templates, numbers/booleans are sent as they are, and
    /// `{ algorithm, input, key, encoding }` tables are digests (signatures).
    #[serde(default)]
    pub fields: BTreeMap<String, TokenField>,
    /// All must hold on the token answer.
    #[serde(default)]
    pub success: Vec<Condition>,
    /// Pointer to the token.
    pub token_pointer: String,
    /// Pointer to a lifetime in seconds, or …
    #[serde(default)]
    pub expires_in_pointer: Option<String>,
    /// … to an absolute expiry (Unix time, see `expires_at_unit`).
    #[serde(default)]
    pub expires_at_pointer: Option<String>,
    #[serde(default)]
    pub expires_at_unit: TimeUnit,
    /// Lifetime when the answer says nothing.
    #[serde(default = "default_token_ttl")]
    pub default_ttl_s: u64,
    #[serde(default = "default_refresh_before")]
    pub refresh_before_s: u64,
    /// Header that carries the token (`X-ACCESS-TOKEN`; default `Authorization`).
    #[serde(default)]
    pub header: Option<String>,
    /// Prefix before the token in that header (`Bearer ` for `Authorization` by default).
    #[serde(default)]
    pub prefix: Option<String>,
}

fn default_token_ttl() -> u64 {
    300
}

/// Token request encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEncoding {
    /// A JSON object.
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
}

/// Unix time units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    /// Seconds.
    #[default]
    S,
    /// Milliseconds (ADVANCE.AI's `expiredTime`).
    Ms,
}

/// One token-request field: a table with `algorithm` is a digest (checked strictly), anything
/// else a value.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenField {
    Digest(DigestSpec),
    Value(toml::Value),
}

impl<'de> Deserialize<'de> for TokenField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = toml::Value::deserialize(d)?;
        match &v {
            toml::Value::Table(t) if t.contains_key("algorithm") => {
                DigestSpec::deserialize(v).map(TokenField::Digest).map_err(de::Error::custom)
            }
            _ => Ok(TokenField::Value(v)),
        }
    }
}

/// A digest over a canonical string: `hex(sha256(input))` or `hex(hmac_sha256(key, input))`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestSpec {
    /// Name of an intermediate digest (`digests`), usable as `${name}` (encoded) or as
    /// `key_digest` (raw bytes) by later ones.
    #[serde(default)]
    pub name: Option<String>,
    pub algorithm: DigestAlgorithm,
    /// The canonical string, a template (`${timestamp}${method}${path_query}${body}`).
    pub input: String,
    /// HMAC key template (`${secret_key}`); HMAC algorithms need this or `key_digest`.
    #[serde(default)]
    pub key: Option<String>,
    /// HMAC key: the raw bytes of an earlier named digest (key derivation chains).
    #[serde(default)]
    pub key_digest: Option<String>,
    #[serde(default)]
    pub encoding: DigestEncoding,
    /// Upper-case hex.
    #[serde(default)]
    pub uppercase: bool,
}

/// Digest algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DigestAlgorithm {
    /// Plain SHA-256 of the input (no key).
    Sha256,
    /// HMAC-SHA256 with `key` / `key_digest`.
    HmacSha256,
    /// HMAC-SHA1, for legacy vendor schemes only.
    HmacSha1,
}

/// Digest output encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DigestEncoding {
    /// Lower-case hex (`uppercase` for upper).
    #[default]
    Hex,
    /// Standard base64.
    Base64,
}

/// Where a secret comes from. Literal secrets are not accepted in adapter files (and a literal
/// given by mistake is never echoed in the error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    /// An environment variable name.
    Env(String),
    /// A file whose content (trimmed) is the secret, e.g. a mounted Kubernetes secret.
    File(PathBuf),
    /// An environment variable holding the path of such a file
    /// (`GOOGLE_APPLICATION_CREDENTIALS`).
    EnvFile(String),
}

/// Request body encodings.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "encoding", rename_all = "snake_case", deny_unknown_fields)]
pub enum BodySpec {
    /// `multipart/form-data`: images as file parts or base64 text fields, plus constant fields.
    Multipart {
        #[serde(default)]
        images: Vec<MultipartImage>,
        #[serde(default)]
        fields: BTreeMap<String, String>,
    },
    /// A JSON object: constant `fields` (strings may use `${name}`), images as base64 strings at
    /// JSON pointers.
    Json {
        #[serde(default)]
        images: Vec<JsonImage>,
        #[serde(default)]
        fields: toml::Table,
    },
    /// The image bytes as the whole body (`application/octet-stream` unless `content_type`).
    Raw {
        source: ImageSource,
        #[serde(default)]
        content_type: Option<String>,
    },
    /// No body (polls, GET steps).
    None,
}

/// Which image of the sub-call goes into a body slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSource {
    /// The liveness selfie.
    Image,
    /// Face compare: the live capture.
    Probe,
    /// Face compare: the document portrait / registered face.
    Reference,
    /// Document OCR: first page.
    Front,
    /// Document OCR: second page (omitted when the request has one page).
    Back,
}

/// How an image travels in a multipart body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageEncoding {
    /// A file part with a filename and the image's content type.
    #[default]
    File,
    /// A text field holding standard base64.
    Base64,
}

/// One image in a multipart body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultipartImage {
    pub source: ImageSource,
    /// The vendor's field name (`image_file1`, `source_image`, …).
    pub field: String,
    #[serde(default)]
    pub encoding: ImageEncoding,
    /// Filename of the file part; `<field>.jpg`/`.png` by default.
    #[serde(default)]
    pub filename: Option<String>,
}

/// One image in a JSON body, as base64 at a JSON pointer (`/SourceImage/Bytes`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonImage {
    pub source: ImageSource,
    pub pointer: String,
    /// Also write the image's MIME type here (Document AI's `rawDocument.mimeType`).
    #[serde(default)]
    pub mime_pointer: Option<String>,
    /// Constants written (pointer → value) only when this image is sent, e.g. the page index
    /// beside an optional back page.
    #[serde(default)]
    pub also: BTreeMap<String, toml::Value>,
}

/// A test on the vendor's JSON. Exactly one of `equals`, `one_of`, `present`, `empty` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// RFC 6901 JSON pointer (`/error_message`, `/result/0/face_matches`).
    pub pointer: String,
    /// The value equals this (strings, numbers and booleans compare as their text).
    #[serde(default)]
    pub equals: Option<toml::Value>,
    /// The value is one of these.
    #[serde(default)]
    pub one_of: Option<Vec<toml::Value>>,
    /// `true`: the pointer resolves to a non-null value; `false`: it does not.
    #[serde(default)]
    pub present: Option<bool>,
    /// `true`: absent, null, or an empty string/array/object.
    #[serde(default)]
    pub empty: Option<bool>,
}

/// A success-body condition that turns the answer into a final input rejection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectRule {
    pub when: Condition,
    pub issue: IssueCode,
    /// Overrides the issue's default message.
    #[serde(default)]
    pub message: Option<String>,
}

/// Where error envelopes keep their code and message, and the vendor code table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorSpec {
    /// Pointer to the vendor's error code (string or number).
    #[serde(default)]
    pub code_pointer: Option<String>,
    /// Pointer to a human message; it is only kept when it carries no request content.
    #[serde(default)]
    pub message_pointer: Option<String>,
    /// Code table, first match wins. Unmatched errors follow the HTTP status (429 → rate
    /// limited, 5xx → retryable, other → fatal).
    #[serde(default)]
    pub rules: Vec<ErrorRule>,
}

/// One row of a vendor's error-code table. At least one of `code`, `prefix`, `suffix`, `status` is set and
/// all given ones must hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRule {
    /// The code equals this.
    #[serde(default)]
    pub code: Option<String>,
    /// The code starts with this (Face++ appends `: <field>` to its codes).
    #[serde(default)]
    pub prefix: Option<String>,
    /// The code ends with this (AWS may send `com.amazon.coral.service#ThrottlingException`).
    #[serde(default)]
    pub suffix: Option<String>,
    /// The HTTP status equals this.
    #[serde(default)]
    pub status: Option<u16>,
    pub action: ErrorAction,
    /// Required for `action = "reject"`.
    #[serde(default)]
    pub issue: Option<IssueCode>,
}

/// What a matched vendor error means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorAction {
    /// The input is unusable: a final verdict with `issue`.
    Reject,
    /// Transient: worth another attempt at the same vendor.
    Retry,
    /// The vendor is throttling: retry, honouring `Retry-After`.
    RateLimited,
    /// Not worth retrying here; the next provider may still answer.
    Fatal,
    /// The vendor refused the cached token inside its envelope (ADVANCE.AI `IAM_FAILED`): the
    /// token is dropped and the attempt is retryable (the retry fetches a new one).
    Reauthenticate,
}

/// Liveness answer mapping.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LivenessMapping {
    /// The liveness score, scaled to 0..1.
    pub score: FieldRef,
    /// Decision threshold on the scaled score: a number or a pointer into the answer.
    #[serde(default)]
    pub threshold: Option<ThresholdRef>,
    /// An explicit verdict (a boolean, or mapped to one). Without it, `score >= threshold`.
    #[serde(default)]
    pub decision: Option<FieldRef>,
    /// Face / image quality 0..1 (a number, or an enum mapped to numbers).
    #[serde(default)]
    pub quality: Option<FieldRef>,
}

/// Face-compare answer mapping.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareMapping {
    /// The similarity, scaled to 0..1.
    pub score: FieldRef,
    #[serde(default)]
    pub threshold: Option<ThresholdRef>,
    #[serde(default)]
    pub decision: Option<FieldRef>,
}

/// Document-OCR answer mapping; every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OcrMapping {
    #[serde(default)]
    pub format: Option<FieldRef>,
    #[serde(default)]
    pub document_code: Option<FieldRef>,
    #[serde(default)]
    pub issuing_state: Option<FieldRef>,
    #[serde(default)]
    pub nationality: Option<FieldRef>,
    #[serde(default)]
    pub surname: Option<FieldRef>,
    #[serde(default)]
    pub given_names: Option<FieldRef>,
    #[serde(default)]
    pub document_number: Option<FieldRef>,
    #[serde(default)]
    pub personal_number: Option<FieldRef>,
    /// Dates need `date_format` (`%Y-%m-%d`, `%y%m%d`, `%m/%d/%Y`, or `parts` for
    /// `{year, month, day}` objects).
    #[serde(default)]
    pub date_of_birth: Option<FieldRef>,
    #[serde(default)]
    pub date_of_expiry: Option<FieldRef>,
    #[serde(default)]
    pub date_of_issue: Option<FieldRef>,
    #[serde(default)]
    pub sex: Option<FieldRef>,
    /// MRZ lines, in order; a value holding several lines separated by newlines (or `^`, as
    /// Regula writes them) is split.
    #[serde(default)]
    pub mrz_lines: Vec<FieldRef>,
    /// Named check-digit results (booleans).
    #[serde(default)]
    pub checks: BTreeMap<String, FieldRef>,
    #[serde(default)]
    pub valid: Option<FieldRef>,
    /// Reader confidence, scaled to 0..1.
    #[serde(default)]
    pub confidence: Option<FieldRef>,
    /// Base64 portrait (a `data:` URL prefix is stripped).
    #[serde(default)]
    pub portrait: Option<FieldRef>,
    /// Or: a box on a page to crop the portrait from (Document AI), re-encoded as JPEG.
    #[serde(default)]
    pub portrait_box: Option<BoxSpec>,
}

/// Where a vendor puts a bounding box, and how it is written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoxSpec {
    pub pointer: String,
    /// `vertices` (`[{x, y}, …]`, the box is their hull) or `ltwh` (`{Left, Top, Width, Height}`).
    pub format: BoxFormat,
    /// Coordinates are fractions of the page (0..1) rather than pixels.
    #[serde(default)]
    pub normalized: bool,
    /// The page image to crop from (`front` by default).
    #[serde(default = "default_box_page")]
    pub page: ImageSource,
}

fn default_box_page() -> ImageSource {
    ImageSource::Front
}

/// Bounding-box notations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BoxFormat {
    /// A list of `{x, y}` points; the box is their hull (missing coordinates are 0).
    Vertices,
    /// `{Left, Top, Width, Height}`.
    Ltwh,
}

/// A value read from the answer: a bare pointer string, or a table with transforms.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldRef(pub FieldSpec);

/// A pointer plus transforms, applied in order: `map` (enum values), then `scale` for numbers,
/// or `date_format` for dates.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// JSON pointer, with array selectors (`[max:/Similarity]`, `[/Type/Text~=first name]`).
    pub pointer: String,
    /// Fallback pointers tried in order when `pointer` is absent (prefer MRZ, else visual).
    #[serde(default)]
    pub or: Vec<String>,
    /// Multiply a number (numbers in strings are accepted): `0.01` turns 0..100 into 0..1.
    #[serde(default)]
    pub scale: Option<f64>,
    /// Vendor value (as text) → unified value, e.g. `{ Real = true, Spoof = false }`.
    #[serde(default)]
    pub map: Option<BTreeMap<String, toml::Value>>,
    /// A value missing from `map` is an error (`error`, default: never guess a verdict) or
    /// "not read" (`absent`: e.g. Regula's validity status 2, "check not performed").
    #[serde(default)]
    pub unmapped: Unmapped,
    /// chrono format for dates, or `parts`.
    #[serde(default)]
    pub date_format: Option<String>,
    /// `1 - value` after scaling: a distance (0 = identical) becomes a similarity.
    #[serde(default)]
    pub invert: bool,
    /// The value is an array: join its elements' text with this separator (Mindee's given
    /// names come one per element).
    #[serde(default)]
    pub join: Option<String>,
    /// With `join`: the sub-pointer read in each element (`/value`).
    #[serde(default)]
    pub item: Option<String>,
}

/// What a value outside a field's `map` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmapped {
    /// A `Decode` error: never guess.
    #[default]
    Error,
    /// Treated as not read.
    Absent,
}

/// A decision threshold: a constant on the unified 0..1 scale, or read from the answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ThresholdRef {
    Constant(f64),
    Field(FieldSpec),
}

// === impl Credential ===

impl<'de> Deserialize<'de> for Credential {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Credential;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`{ env = \"VAR\" }` or `{ file = \"/path\" }`")
            }
            fn visit_str<E: de::Error>(self, _v: &str) -> Result<Credential, E> {
                // Deliberately does not include the value: it is probably a real secret.
                LITERAL_SECRET_REFUSED.with(|c| c.set(true));
                Err(E::custom(LITERAL_SECRET))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Credential, A::Error> {
                let key: String = map.next_key()?.ok_or_else(|| de::Error::custom("empty credential table"))?;
                let cred = match key.as_str() {
                    "env" => Credential::Env(map.next_value()?),
                    "file" => Credential::File(map.next_value()?),
                    "env_file" => Credential::EnvFile(map.next_value()?),
                    other => return Err(de::Error::unknown_field(other, &["env", "file", "env_file"])),
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom("a credential has exactly one of `env`, `file`, `env_file`"));
                }
                Ok(cred)
            }
        }
        d.deserialize_any(V)
    }
}

const LITERAL_SECRET: &str = "literal secrets are not allowed in adapter files";

// === impl VarSpec ===

impl<'de> Deserialize<'de> for VarSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FromEnv {
            env: String,
            #[serde(default)]
            default: Option<String>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = VarSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or `{ env = \"VAR\", default = \"…\" }`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<VarSpec, E> {
                Ok(VarSpec::Literal(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<VarSpec, A::Error> {
                let e = FromEnv::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(VarSpec::Env { env: e.env, default: e.default })
            }
        }
        d.deserialize_any(V)
    }
}

// === impl FieldRef / ThresholdRef (string, number or table shorthands) ===

struct FieldRefVisitor<const NUMBERS: bool>;

enum FieldOrNumber {
    Field(FieldSpec),
    Number(f64),
}

impl<'de, const NUMBERS: bool> Visitor<'de> for FieldRefVisitor<NUMBERS> {
    type Value = FieldOrNumber;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if NUMBERS {
            f.write_str("a number, a JSON pointer string or a table with `pointer`")
        } else {
            f.write_str("a JSON pointer string or a table with `pointer`")
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(FieldOrNumber::Field(FieldSpec { pointer: v.to_string(), ..FieldSpec::default() }))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if NUMBERS {
            Ok(FieldOrNumber::Number(v))
        } else {
            Err(E::invalid_type(de::Unexpected::Float(v), &self))
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        if NUMBERS {
            Ok(FieldOrNumber::Number(v as f64))
        } else {
            Err(E::invalid_type(de::Unexpected::Signed(v), &self))
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        FieldSpec::deserialize(de::value::MapAccessDeserializer::new(map)).map(FieldOrNumber::Field)
    }
}

impl<'de> Deserialize<'de> for FieldRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_any(FieldRefVisitor::<false>)? {
            FieldOrNumber::Field(f) => Ok(FieldRef(f)),
            FieldOrNumber::Number(_) => Err(de::Error::custom("expected a JSON pointer")),
        }
    }
}

impl<'de> Deserialize<'de> for ThresholdRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match d.deserialize_any(FieldRefVisitor::<true>)? {
            FieldOrNumber::Field(f) => ThresholdRef::Field(f),
            FieldOrNumber::Number(n) => ThresholdRef::Constant(n),
        })
    }
}

// === Loading ===

/// Why a provider file could not be loaded. Always names the file.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}{}: {message}{}", path.display(), location(*line_col), hint_suffix(hint))]
    Parse { path: PathBuf, line_col: Option<(usize, usize)>, message: String, hint: Option<ParseHint> },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("two provider files are named `{name}`: {} and {}", first.display(), second.display())]
    Duplicate { name: String, first: PathBuf, second: PathBuf },
}

fn location(line_col: Option<(usize, usize)>) -> String {
    line_col.map_or_else(String::new, |(l, c)| format!(":{l}:{c}"))
}

fn hint_suffix(hint: &Option<ParseHint>) -> String {
    hint.as_ref().map_or_else(String::new, |h| format!(" (hint: {h})"))
}

/// What a parse error most likely means, printed after it as a hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseHint {
    /// A key no struct at that place declares.
    UnknownKey,
    /// A credential written as a plain string.
    LiteralSecret,
    /// The file has no `kind`.
    MissingKind,
}

impl fmt::Display for ParseHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnknownKey => "the key is misspelt or misplaced; docs/ADAPTERS.md lists every key",
            Self::LiteralSecret => "secrets are references: `{ env = \"VAR\" }` or `{ file = \"/run/secrets/x\" }`",
            Self::MissingKind => "a provider file starts with `kind = \"http\"` or `kind = \"local\"`",
        })
    }
}

std::thread_local! {
    /// Set by the credential deserializer when it refuses a literal string, so the parse error
    /// it causes is classified without reading its message.
    static LITERAL_SECRET_REFUSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Reads every `*.toml` in `dir` (sorted by name, not recursive).
pub fn load_dir(dir: &Path) -> Result<Vec<ProviderFile>, SpecError> {
    let io = |source| SpecError::Io { path: dir.to_path_buf(), source };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    let mut files: Vec<ProviderFile> = Vec::with_capacity(paths.len());
    for path in paths {
        let file = load_file(&path)?;
        if let Some(first) = files.iter().find(|f| f.name == file.name) {
            return Err(SpecError::Duplicate { name: file.name, first: first.path.clone(), second: path });
        }
        files.push(file);
    }
    Ok(files)
}

/// Reads one provider file; its name is the file stem.
pub fn load_file(path: &Path) -> Result<ProviderFile, SpecError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| SpecError::Io { path: path.to_path_buf(), source })?;
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| SpecError::Invalid {
            path: path.to_path_buf(),
            message: "the file name must be valid UTF-8".into(),
        })?
        .to_string();
    let spec = parse_hinted(&text).map_err(|(e, hint)| parse_error(path, &text, e, hint))?;
    Ok(ProviderFile { name, path: path.to_path_buf(), spec })
}

/// Parses a provider spec from TOML text, keeping spans for errors.
pub fn parse_spec(text: &str) -> Result<ProviderSpec, toml::de::Error> {
    parse_hinted(text).map_err(|(e, _)| e)
}

/// [`parse_spec`], with what the error most likely means.
///
/// Deserializing the tagged enum directly buffers the document and loses every span, so the tag
/// is read first and the chosen variant is deserialized straight from the TOML with `kind`
/// skipped.
fn parse_hinted(text: &str) -> Result<ProviderSpec, (toml::de::Error, Option<ParseHint>)> {
    #[derive(Deserialize)]
    struct KindProbe {
        kind: Option<String>,
    }
    LITERAL_SECRET_REFUSED.with(|c| c.set(false));
    let probe: KindProbe = toml::from_str(text).map_err(|e| (e, None))?;
    let Some(kind) = probe.kind else {
        return Err((<toml::de::Error as de::Error>::missing_field("kind"), Some(ParseHint::MissingKind)));
    };
    let de = SkipKey { inner: toml::Deserializer::parse(text).map_err(|e| (e, None))?, key: "kind" };
    let parsed = match kind.as_str() {
        "http" => HttpSpec::deserialize(de).map(ProviderSpec::Http),
        "local" => LocalSpec::deserialize(de).map(ProviderSpec::Local),
        // Unknown kind: the derived enum produces the "unknown variant" error with its span.
        _ => toml::from_str(text),
    };
    parsed.map_err(|e| {
        let hint = if LITERAL_SECRET_REFUSED.with(std::cell::Cell::get) {
            Some(ParseHint::LiteralSecret)
        } else if e.message().starts_with("unknown field") {
            // serde's `deny_unknown_fields` error carries no kind, only this fixed wording.
            Some(ParseHint::UnknownKey)
        } else {
            None
        };
        (e, hint)
    })
}

fn parse_error(path: &Path, text: &str, e: toml::de::Error, hint: Option<ParseHint>) -> SpecError {
    let line_col = e.span().map(|span| line_col(text, span.start));
    let message = e.message().trim().to_string();
    SpecError::Parse { path: path.to_path_buf(), line_col, message, hint }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

// === SkipKey: deserialize a struct while ignoring one top-level key ===

/// Forwards to `inner`, hiding `key` from the top-level map. Keys go through the inner
/// deserializer's own key handling, so errors keep the TOML span.
struct SkipKey<D> {
    inner: D,
    key: &'static str,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for SkipKey<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_any(SkipVisitor { inner: v, key: self.key })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_struct(name, fields, SkipVisitor { inner: v, key: self.key })
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_map(SkipVisitor { inner: v, key: self.key })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct enum identifier ignored_any
    }
}

struct SkipVisitor<V> {
    inner: V,
    key: &'static str,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for SkipVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(SkipMap { inner: map, key: self.key })
    }
}

struct SkipMap<A> {
    inner: A,
    key: &'static str,
}

enum KeyOr<T> {
    Skip,
    Key(T),
}

/// Reads a key; the caller's seed is only consumed for keys that are not skipped.
struct KeySeed<'a, S> {
    seed: &'a mut Option<S>,
    key: &'static str,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<'_, S> {
    type Value = KeyOr<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let key = String::deserialize(d)?;
        if key == self.key {
            return Ok(KeyOr::Skip);
        }
        let seed = self.seed.take().ok_or_else(|| de::Error::custom("map key read twice"))?;
        let key_de: de::value::StringDeserializer<D::Error> = key.into_deserializer();
        seed.deserialize(key_de).map(KeyOr::Key)
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for SkipMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        let mut seed = Some(seed);
        loop {
            match self.inner.next_key_seed(KeySeed { seed: &mut seed, key: self.key })? {
                None => return Ok(None),
                Some(KeyOr::Skip) => {
                    self.inner.next_value::<de::IgnoredAny>()?;
                }
                Some(KeyOr::Key(k)) => return Ok(Some(k)),
            }
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_top_level_key_has_line_and_column() {
        let text = "kind = \"http\"\nbase_url = \"http://x\"\nbogus = 1\n[endpoints]\n";
        let err = parse_spec(text).unwrap_err();
        let span = err.span().expect("span");
        assert_eq!(line_col(text, span.start), (3, 1));
    }

    #[test]
    fn unknown_nested_key_has_line() {
        let text = "kind = \"http\"\nbase_url = \"http://x\"\n[endpoints.liveness]\npath = \"/l\"\npth = 1\n";
        let err = parse_spec(text).unwrap_err();
        assert!(err.message().contains("unknown field `pth`"), "{}", err.message());
        assert_eq!(line_col(text, err.span().expect("span").start).0, 5);
    }

    #[test]
    fn field_ref_shorthands() {
        #[derive(Deserialize)]
        struct T {
            a: FieldRef,
            b: FieldRef,
            t: ThresholdRef,
            u: ThresholdRef,
        }
        let t: T = toml::from_str(
            "a = \"/x\"\nb = { pointer = \"/y\", scale = 0.01 }\nt = 0.7\nu = { pointer = \"/z\" }\n",
        )
        .unwrap();
        assert_eq!(t.a.0.pointer, "/x");
        assert_eq!(t.b.0.scale, Some(0.01));
        assert_eq!(t.t, ThresholdRef::Constant(0.7));
        assert!(matches!(t.u, ThresholdRef::Field(ref f) if f.pointer == "/z"));
        let bad: Result<T, _> = toml::from_str("a = { pointr = \"/x\" }\nb = \"/y\"\nt = 1\nu = 1\n");
        assert!(bad.err().is_some_and(|e| e.message().contains("unknown field `pointr`")));
    }

    #[test]
    fn literal_secret_is_rejected() {
        let text = "kind = \"http\"\nbase_url = \"http://x\"\n[auth]\ntype = \"bearer\"\ntoken = \"sk-live\"\n[endpoints]\n";
        assert!(parse_spec(text).is_err());
        assert_eq!(parse_hinted(text).err().and_then(|(_, h)| h), Some(ParseHint::LiteralSecret));
    }

    #[test]
    fn hints_are_classified() {
        let hint = |text: &str| parse_hinted(text).err().and_then(|(_, h)| h);
        assert_eq!(hint("base_url = \"http://x\"\n"), Some(ParseHint::MissingKind));
        assert_eq!(hint("kind = \"http\"\nbase_url = \"http://x\"\nbogus = 1\n[endpoints]\n"), Some(ParseHint::UnknownKey));
        assert_eq!(hint("kind = \"http\"\nbase_url = 3\n[endpoints]\n"), None);
    }
}
