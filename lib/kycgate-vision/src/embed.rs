//! Face embeddings (dlib ResNet v1 and fr_feature) and their comparison on a common 0..1 similarity scale.

use std::path::Path;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::align::{align, ARCFACE_112, DLIB_150};
use crate::detect::Face;
use crate::error::VisionError;
use crate::net::Net;

/// Which network produced an embedding; embeddings of different models are not comparable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingModel {
    /// dlib_resnet_v1.onnx: 150x150 chip, RGB 0..255, 128-d, euclidean distance (dlib: < 0.6 = same person).
    DlibResnet,
    /// fr_feature.onnx: 112x112 ArcFace-aligned chip, RGB (x-127)/128, 512-d, cosine.
    FrFeature,
}

/// Model chosen by measurement on the eval set: fr_feature has the higher ROC AUC (LFW 0.9981 vs 0.9953) and
/// TAR at FAR 1e-3 (LFW 97.7% vs 92.0%) and reaches 99.0% on LFW fold 1 at its default threshold (dlib: 98.2%),
/// at ~3x dlib's cost. CAVEAT: fr_feature's training data and licence provenance are undocumented
/// (see models/SOURCES.md); `DlibResnet` is the public-domain alternative.
pub const DEFAULT_EMBEDDING_MODEL: EmbeddingModel = EmbeddingModel::FrFeature;

/// Euclidean distance at which dlib similarity reaches 0 (distances of different people are ~0.7..1.1).
const DLIB_ZERO_SIMILARITY_DISTANCE: f32 = 1.2;

impl EmbeddingModel {
    /// Default decision threshold on `Comparison::similarity` (same person when `>=`), chosen on the eval set
    /// (`cargo run -p kycgate-vision --example eval faces`).
    ///
    /// dlib: 0.50 = euclidean distance 0.6, dlib's published rule, on the measured accuracy plateau (0.48..0.50:
    /// LFW fold 1 98.2..98.3%, all pairs 98.4%). fr_feature: 0.28 cosine, the middle of the plateau
    /// 0.22..0.30 (LFW fold 1 99.0%, all pairs 98.5%).
    pub fn default_threshold(self) -> f32 {
        match self {
            Self::DlibResnet => 0.50,
            Self::FrFeature => 0.28,
        }
    }

    /// Stable name for logs and stored records.
    pub fn name(self) -> &'static str {
        match self {
            Self::DlibResnet => "dlib_resnet_v1",
            Self::FrFeature => "fr_feature",
        }
    }

    /// Maps the raw distance to 0..1 similarity (monotonic, higher = more alike).
    fn similarity_from_distance(self, distance: f32) -> f32 {
        match self {
            Self::DlibResnet => (1.0 - distance / DLIB_ZERO_SIMILARITY_DISTANCE).clamp(0.0, 1.0),
            // Cosine distance = 1 - cosine; similarity = cosine, negative cosines clamp to 0.
            Self::FrFeature => (1.0 - distance).clamp(0.0, 1.0),
        }
    }
}

/// A face descriptor, tagged with its model so it is never compared across models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    /// Model that produced `vector`.
    pub model: EmbeddingModel,
    /// Raw descriptor (dlib: as produced; fr_feature: L2-normalised).
    pub vector: Vec<f32>,
}

/// Result of comparing two embeddings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// 0..1, higher = more likely the same person; compare with `EmbeddingModel::default_threshold`.
    pub similarity: f32,
    /// The model's own distance (dlib: euclidean; fr_feature: 1 - cosine), kept for audits and tuning.
    pub distance: f32,
}

/// Compares two embeddings of the same model.
pub fn compare(a: &Embedding, b: &Embedding) -> Result<Comparison, VisionError> {
    if a.model != b.model || a.vector.len() != b.vector.len() {
        return Err(VisionError::BadInput("embeddings from different models"));
    }
    let distance = match a.model {
        EmbeddingModel::DlibResnet => {
            a.vector.iter().zip(&b.vector).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt()
        }
        EmbeddingModel::FrFeature => 1.0 - a.vector.iter().zip(&b.vector).map(|(x, y)| x * y).sum::<f32>(),
    };
    Ok(Comparison { similarity: a.model.similarity_from_distance(distance), distance })
}

/// Shorthand for `compare(a, b)?.similarity`.
pub fn similarity(a: &Embedding, b: &Embedding) -> Result<f32, VisionError> {
    Ok(compare(a, b)?.similarity)
}

/// A loaded face-embedding network.
pub struct FaceEmbedder {
    net: Net,
    model: EmbeddingModel,
}

impl FaceEmbedder {
    /// Loads the ONNX file for `model` (dlib_resnet_v1.onnx or fr_feature.onnx).
    pub fn load(model: EmbeddingModel, path: impl AsRef<Path>) -> Result<Self, VisionError> {
        let side = match model {
            EmbeddingModel::DlibResnet => 150,
            EmbeddingModel::FrFeature => 112,
        };
        Ok(Self { net: Net::load(path.as_ref(), model.name(), [1, 3, side, side], false)?, model })
    }

    /// Which model this is.
    pub fn model(&self) -> EmbeddingModel {
        self.model
    }

    /// Default similarity threshold of this model.
    pub fn default_threshold(&self) -> f32 {
        self.model.default_threshold()
    }

    /// Aligns `face` with its landmarks and computes the descriptor.
    pub fn embed(&self, img: &RgbImage, face: &Face) -> Result<Embedding, VisionError> {
        let side = self.net.shape()[2];
        let template = match self.model {
            EmbeddingModel::DlibResnet => &DLIB_150,
            EmbeddingModel::FrFeature => &ARCFACE_112,
        };
        let chip = align(img, &face.landmarks, template, side as u32, side as u32)
            .ok_or(VisionError::BadInput("degenerate landmarks"))?;
        let plane = side * side;
        let mut data = vec![0f32; 3 * plane];
        for (x, y, p) in chip.enumerate_pixels() {
            let i = y as usize * side + x as usize;
            for c in 0..3 {
                let v = f32::from(p[c]);
                data[c * plane + i] = match self.model {
                    EmbeddingModel::DlibResnet => v,
                    EmbeddingModel::FrFeature => (v - 127.0) / 128.0,
                };
            }
        }
        let out = self.net.run(data)?;
        let expected = match self.model {
            EmbeddingModel::DlibResnet => 128,
            EmbeddingModel::FrFeature => 512,
        };
        let mut vector = match out.into_iter().next() {
            Some((_, v)) if v.len() == expected => v,
            Some((shape, _)) => {
                return Err(VisionError::BadOutput { model: self.net.name(), detail: format!("shape {shape:?}") })
            }
            None => return Err(VisionError::BadOutput { model: self.net.name(), detail: "no output".into() }),
        };
        if self.model == EmbeddingModel::FrFeature {
            let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            vector.iter_mut().for_each(|v| *v /= norm);
        }
        Ok(Embedding { model: self.model, vector })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_distances_and_mapping() {
        let a = Embedding { model: EmbeddingModel::DlibResnet, vector: vec![0.0, 0.0] };
        let b = Embedding { model: EmbeddingModel::DlibResnet, vector: vec![0.6, 0.0] };
        let c = compare(&a, &b).unwrap();
        assert!((c.distance - 0.6).abs() < 1e-6 && (c.similarity - 0.5).abs() < 1e-6);
        let f1 = Embedding { model: EmbeddingModel::FrFeature, vector: vec![1.0, 0.0] };
        let f2 = Embedding { model: EmbeddingModel::FrFeature, vector: vec![0.0, 1.0] };
        assert!((compare(&f1, &f2).unwrap().similarity).abs() < 1e-6);
        assert!((compare(&f1, &f1).unwrap().similarity - 1.0).abs() < 1e-6);
        assert!(compare(&a, &f1).is_err());
    }
}
