//! AWS credentials the way the AWS SDKs find them, for adapters that sign with SigV4 without
//! naming their keys: environment, shared credentials file (profile), web identity (EKS IRSA:
//! a projected token exchanged at STS), the ECS container endpoint, and EC2 instance metadata
//! (IMDSv2). Temporary credentials are cached and fetched again five minutes before they expire.
//!
//! The settings (which variables are set, where the files are) are read once, when the adapter
//! is loaded, from the same environment source as every other credential, so tests and
//! `providers test` can point each source at a local server. Secrets never reach a log line:
//! failures name the source and the HTTP status or the missing variable, nothing else.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::sync::Mutex;

use super::{EnvSource, ProviderError, Secret};

/// Fetched again this long before expiry, so a signed request never carries a stale key.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);
/// Metadata endpoints answer in milliseconds when present; off EC2 nothing answers at all.
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);

/// One set of credentials and when it stops working (`None`: long-term keys).
#[derive(Debug, Clone)]
pub struct AwsCredentials {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    pub expires: Option<SystemTime>,
    /// Which source gave them (for the attempt's error text and the log, never the keys).
    pub source: &'static str,
}

/// The environment the chain reads, captured when the adapter is loaded.
#[derive(Debug, Clone, Default)]
struct Settings {
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
    credentials_file: Option<PathBuf>,
    profile: String,
    web_identity_token_file: Option<PathBuf>,
    role_arn: Option<String>,
    role_session_name: String,
    sts_endpoint: String,
    container_uri: Option<String>,
    container_token: Option<String>,
    imds_disabled: bool,
    imds_endpoint: String,
}

/// The default credential chain of one adapter, with its cache.
#[derive(Debug)]
pub struct AwsChain {
    settings: Settings,
    cached: Mutex<Option<AwsCredentials>>,
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

impl AwsChain {
    /// Reads the chain's settings from `env` (the process environment in production).
    pub fn from_env(env: &dyn EnvSource, region: &str) -> Self {
        let var = |k: &str| non_empty(env.var(k));
        let home = var("HOME").map(PathBuf::from);
        let settings = Settings {
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
            session_token: var("AWS_SESSION_TOKEN"),
            credentials_file: var("AWS_SHARED_CREDENTIALS_FILE")
                .map(PathBuf::from)
                .or_else(|| home.map(|h| h.join(".aws").join("credentials"))),
            profile: var("AWS_PROFILE").unwrap_or_else(|| "default".into()),
            web_identity_token_file: var("AWS_WEB_IDENTITY_TOKEN_FILE").map(PathBuf::from),
            role_arn: var("AWS_ROLE_ARN"),
            role_session_name: var("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| "kycgate".into()),
            sts_endpoint: var("AWS_ENDPOINT_URL_STS")
                .or_else(|| var("AWS_ENDPOINT_URL"))
                .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com")),
            container_uri: var("AWS_CONTAINER_CREDENTIALS_FULL_URI").or_else(|| {
                var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").map(|p| format!("http://169.254.170.2{p}"))
            }),
            container_token: var("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
            imds_disabled: var("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            imds_endpoint: var("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|| "http://169.254.169.254".into()),
        };
        Self { settings, cached: Mutex::new(None) }
    }

    /// Credentials from the first source that has them; cached until shortly before expiry.
    pub async fn credentials(&self, http: &reqwest::Client, now: SystemTime) -> Result<AwsCredentials, ProviderError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            let fresh = c.expires.is_none_or(|at| now + REFRESH_BEFORE < at);
            if fresh {
                return Ok(c.clone());
            }
        }
        let found = self.resolve(http).await?;
        tracing::debug!(source = found.source, "AWS credentials resolved");
        *cached = Some(found.clone());
        Ok(found)
    }

    async fn resolve(&self, http: &reqwest::Client) -> Result<AwsCredentials, ProviderError> {
        let s = &self.settings;
        let mut tried = Vec::new();
        if let (Some(id), Some(secret)) = (&s.access_key_id, &s.secret_access_key) {
            return Ok(AwsCredentials {
                access_key_id: Secret::new(id.clone()),
                secret_access_key: Secret::new(secret.clone()),
                session_token: s.session_token.clone().map(Secret::new),
                expires: None,
                source: "environment",
            });
        }
        tried.push("environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not both set)".to_string());
        match self.profile() {
            Ok(Some(c)) => return Ok(c),
            Ok(None) => tried.push(format!("profile `{}` (no keys in the shared credentials file)", s.profile)),
            Err(e) => tried.push(e),
        }
        if let (Some(token_file), Some(role)) = (&s.web_identity_token_file, &s.role_arn) {
            return self.web_identity(http, token_file, role).await;
        }
        tried.push("web identity (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN not both set)".into());
        if let Some(uri) = &s.container_uri {
            return self.container(http, uri).await;
        }
        tried.push("container endpoint (not set)".into());
        if !s.imds_disabled {
            match self.instance_metadata(http).await {
                Ok(c) => return Ok(c),
                Err(e) => tried.push(e),
            }
        } else {
            tried.push("instance metadata (AWS_EC2_METADATA_DISABLED)".into());
        }
        Err(ProviderError::Config(format!("no AWS credentials found; tried: {}", tried.join("; "))))
    }

    /// `[profile]` in the shared credentials file (INI).
    fn profile(&self) -> Result<Option<AwsCredentials>, String> {
        let Some(path) = &self.settings.credentials_file else { return Ok(None) };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("shared credentials file cannot be read: {}", e.kind())),
        };
        let mut section = String::new();
        let (mut id, mut secret, mut token) = (None, None, None);
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_string();
                continue;
            }
            if section != self.settings.profile {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                let v = Some(v.trim().to_string()).filter(|v| !v.is_empty());
                match k.trim() {
                    "aws_access_key_id" => id = v,
                    "aws_secret_access_key" => secret = v,
                    "aws_session_token" => token = v,
                    _ => {}
                }
            }
        }
        Ok(match (id, secret) {
            (Some(id), Some(secret)) => Some(AwsCredentials {
                access_key_id: Secret::new(id),
                secret_access_key: Secret::new(secret),
                session_token: token.map(Secret::new),
                expires: None,
                source: "profile",
            }),
            _ => None,
        })
    }

    /// `AssumeRoleWithWebIdentity` at STS with the projected token (EKS IRSA). Unsigned: the
    /// token is the proof.
    async fn web_identity(&self, http: &reqwest::Client, token_file: &PathBuf, role: &str) -> Result<AwsCredentials, ProviderError> {
        let fail = |why: String| ProviderError::Config(format!("AWS web identity: {why}"));
        let token = std::fs::read_to_string(token_file).map_err(|e| fail(format!("token file cannot be read: {}", e.kind())))?;
        let query = [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", role),
            ("RoleSessionName", self.settings.role_session_name.as_str()),
            ("WebIdentityToken", token.trim()),
        ];
        let resp = http
            .get(&self.settings.sts_endpoint)
            .query(&query)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| fail(format!("STS unreachable ({})", if e.is_timeout() { "timeout" } else { "connect" })))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|_| fail("STS answer unreadable".into()))?;
        if !status.is_success() {
            return Err(fail(format!("STS answered HTTP {}", status.as_u16())));
        }
        let tag = |name: &str| xml_text(&body, name).ok_or_else(|| fail(format!("STS answer lacks <{name}>")));
        Ok(AwsCredentials {
            access_key_id: Secret::new(tag("AccessKeyId")?),
            secret_access_key: Secret::new(tag("SecretAccessKey")?),
            session_token: Some(Secret::new(tag("SessionToken")?)),
            expires: Some(parse_time(&tag("Expiration")?).ok_or_else(|| fail("bad Expiration".into()))?),
            source: "web identity",
        })
    }

    /// The ECS / EKS Pod Identity container endpoint: the same JSON as instance metadata.
    async fn container(&self, http: &reqwest::Client, uri: &str) -> Result<AwsCredentials, ProviderError> {
        let mut req = http.get(uri).timeout(METADATA_TIMEOUT);
        if let Some(t) = &self.settings.container_token {
            req = req.header(reqwest::header::AUTHORIZATION, t);
        }
        let resp = req.send().await.map_err(|_| ProviderError::Config("AWS container credentials endpoint unreachable".into()))?;
        if !resp.status().is_success() {
            return Err(ProviderError::Config(format!(
                "AWS container credentials endpoint answered HTTP {}",
                resp.status().as_u16()
            )));
        }
        let json: serde_json::Value =
            resp.json().await.map_err(|_| ProviderError::Config("AWS container credentials are not JSON".into()))?;
        metadata_credentials(&json, "container").map_err(|why| ProviderError::Config(format!("AWS container credentials: {why}")))
    }

    /// IMDSv2: a session token (PUT), the role name, then the role's credentials.
    async fn instance_metadata(&self, http: &reqwest::Client) -> Result<AwsCredentials, String> {
        let base = self.settings.imds_endpoint.trim_end_matches('/');
        let unreachable = |_| "instance metadata (unreachable)".to_string();
        let token = http
            .put(format!("{base}/latest/api/token"))
            .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
            .timeout(METADATA_TIMEOUT)
            .send()
            .await
            .map_err(unreachable)?;
        if !token.status().is_success() {
            return Err(format!("instance metadata (token: HTTP {})", token.status().as_u16()));
        }
        let token = token.text().await.map_err(|_| "instance metadata (token unreadable)".to_string())?;
        let get = |path: String| {
            http.get(format!("{base}/latest/meta-data/iam/security-credentials/{path}"))
                .header("x-aws-ec2-metadata-token", token.trim())
                .timeout(METADATA_TIMEOUT)
                .send()
        };
        let roles = get(String::new()).await.map_err(unreachable)?;
        if !roles.status().is_success() {
            return Err(format!("instance metadata (no instance role: HTTP {})", roles.status().as_u16()));
        }
        let roles = roles.text().await.map_err(|_| "instance metadata (role unreadable)".to_string())?;
        let role = roles.lines().next().map(str::trim).filter(|r| !r.is_empty()).ok_or("instance metadata (no instance role)")?;
        let creds = get(role.to_string()).await.map_err(unreachable)?;
        if !creds.status().is_success() {
            return Err(format!("instance metadata (credentials: HTTP {})", creds.status().as_u16()));
        }
        let json: serde_json::Value = creds.json().await.map_err(|_| "instance metadata (credentials not JSON)".to_string())?;
        metadata_credentials(&json, "instance metadata").map_err(|why| format!("instance metadata ({why})"))
    }
}

/// `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}` as IMDS and ECS answer.
fn metadata_credentials(json: &serde_json::Value, source: &'static str) -> Result<AwsCredentials, String> {
    let field = |k: &str| json[k].as_str().map(str::to_string).filter(|v| !v.is_empty()).ok_or(format!("no {k}"));
    Ok(AwsCredentials {
        access_key_id: Secret::new(field("AccessKeyId")?),
        secret_access_key: Secret::new(field("SecretAccessKey")?),
        session_token: field("Token").ok().map(Secret::new),
        expires: match json["Expiration"].as_str() {
            Some(t) => Some(parse_time(t).ok_or("bad Expiration")?),
            None => None,
        },
        source,
    })
}

/// The text of the first `<name>…</name>` (STS answers are small, flat XML).
fn xml_text(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(xml[start..end].trim().to_string()).filter(|s| !s.is_empty())
}

fn parse_time(text: &str) -> Option<SystemTime> {
    let t = chrono::DateTime::parse_from_rfc3339(text.trim()).ok()?;
    let secs = u64::try_from(t.timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_and_metadata_answers_parse() {
        let xml = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
            <AccessKeyId>ASIA1</AccessKeyId><SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken>\
            <Expiration>2026-12-04T01:00:00Z</Expiration></Credentials></AssumeRoleWithWebIdentityResult>\
            </AssumeRoleWithWebIdentityResponse>";
        assert_eq!(xml_text(xml, "AccessKeyId").as_deref(), Some("ASIA1"));
        assert_eq!(xml_text(xml, "Missing"), None);
        assert!(parse_time("2026-12-04T01:00:00Z").is_some());
        let c = metadata_credentials(
            &serde_json::json!({"AccessKeyId": "A", "SecretAccessKey": "S", "Token": "T", "Expiration": "2026-12-04T01:00:00Z"}),
            "instance metadata",
        )
        .expect("parses");
        assert_eq!((c.access_key_id.expose(), c.session_token.as_ref().map(Secret::expose)), ("A", Some("T")));
        assert!(metadata_credentials(&serde_json::json!({"AccessKeyId": "A"}), "x").is_err());
    }
}
