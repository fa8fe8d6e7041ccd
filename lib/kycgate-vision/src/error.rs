//! Error type shared by every model-backed operation of this crate.

use std::path::PathBuf;

/// Boxed source error, so tract's `anyhow` errors can be carried without exposing tract in our API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Failures of model loading and inference; callers map these to "internal error", never to a verdict.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    /// The model file is missing, unreadable or not a graph tract can optimise.
    #[error("cannot load model {path}")]
    Load {
        /// Path that was given to `load`, so operators can see which file is wrong.
        path: PathBuf,
        /// What tract (or the file system) said.
        #[source]
        source: BoxError,
    },
    /// Running the graph failed (shape mismatch, bad input), which indicates a wrong model file.
    #[error("inference failed in {model}")]
    Inference {
        /// Which network failed ("yunet", "dlib_resnet_v1", ...).
        model: &'static str,
        /// What tract said.
        #[source]
        source: BoxError,
    },
    /// The graph ran but produced outputs of an unexpected shape: the file is not the model we expect.
    #[error("unexpected output from {model}: {detail}")]
    BadOutput {
        /// Which network produced it.
        model: &'static str,
        /// Which output and what shape was seen.
        detail: String,
    },
    /// The image cannot be processed at all (zero-sized, or the face lies outside it).
    #[error("image unusable: {0}")]
    BadInput(&'static str),
}
