//! On-device face pipeline: image decoding, detection, alignment, embeddings, passive liveness and evaluation.
//!
//! Every model is loaded once from a file path (tract `into_optimized().into_runnable()`) and then used through
//! `&self`, so one instance can be shared by all request handlers (`Send + Sync`).

pub mod align;
pub mod decode;
pub mod detect;
pub mod embed;
pub mod error;
pub mod eval;
pub mod liveness;
mod net;
pub mod portrait;
pub mod quality;
pub mod resize;

pub use decode::{decode_image, encode_jpeg, sniff, DecodeError, DecodeLimits, EncodeError};
pub use detect::{Face, FaceDetector};
pub use embed::{Comparison, DEFAULT_EMBEDDING_MODEL, Embedding, EmbeddingModel, FaceEmbedder};
pub use error::VisionError;
pub use liveness::{LivenessKind, DEFAULT_LIVENESS, LivenessModel};
pub use portrait::crop_portrait;
pub use quality::{assess, main_face, pose, prominence, subject, CrowdRule, Pose, QualityIssue, QualityRules};

#[cfg(test)]
mod tests {
    fn assert_send_sync<T: Send + Sync>() {}

    /// One loaded model is shared by all request handlers.
    #[test]
    fn models_are_send_and_sync() {
        assert_send_sync::<crate::FaceDetector>();
        assert_send_sync::<crate::FaceEmbedder>();
        assert_send_sync::<crate::LivenessModel>();
    }
}
