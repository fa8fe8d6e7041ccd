//! Portrait cropping: the one thing a provider offers beside its sub-calls. The pipeline asks
//! for a crop when the OCR provider returned no portrait; `local` answers with its face
//! detector. It lives here, provider-facing, so `local` does not depend on `pipeline`.

use bytes::Bytes;

use super::Image;

/// Crops a portrait (JPEG) from a document page. Blocking: call it from `spawn_blocking`.
pub trait PortraitCropper: Send + Sync + 'static {
    fn crop(&self, page: &Image) -> Option<Bytes>;
}
