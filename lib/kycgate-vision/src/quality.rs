//! Capture-quality checks on a detected face: size, head pose from the 5 landmarks, and distance to the camera.

use crate::detect::Face;

/// Head orientation in degrees, estimated from the 5 YuNet landmarks (coarse: about +-5 deg near frontal).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    /// Left/right turn; positive when the nose is right of the eye midpoint in the image (subject turns to their left).
    pub yaw_deg: f32,
    /// Up/down tilt; positive when the nose sits low between eyes and mouth (subject looks down).
    pub pitch_deg: f32,
    /// In-plane rotation of the eye line; positive when the image-right eye is lower (clockwise in the image).
    pub roll_deg: f32,
}

/// Nose-tip depth in front of the eye centres, as a fraction of half the inter-ocular distance (generic 3-D face
/// model used by OpenCV's head-pose sample: eye centres at x=+-165, depth 135 behind the nose tip).
const NOSE_DEPTH_PER_HALF_IOD: f32 = 0.82;
/// Frontal position of the nose tip between eye line (0) and mouth line (1), from the ArcFace template.
const FRONTAL_NOSE_RATIO: f32 = 0.494;
/// Nose depth relative to the eye-to-mouth distance (ArcFace template: half IOD 17.6 px, eye-mouth 40.7 px).
const NOSE_DEPTH_PER_EYE_MOUTH: f32 = NOSE_DEPTH_PER_HALF_IOD * 17.6 / 40.7;

/// Estimates head pose from the landmarks with a rigid generic-face model: roll from the eye line, then (after
/// undoing roll) yaw from the nose offset to the eye midpoint and pitch from the nose height between eyes and mouth.
pub fn pose(face: &Face) -> Pose {
    let [re, le, nose, rm, lm] = face.landmarks;
    let roll = (le[1] - re[1]).atan2(le[0] - re[0]);
    let (c, s) = (roll.cos(), roll.sin());
    let eye_mid = [(re[0] + le[0]) / 2.0, (re[1] + le[1]) / 2.0];
    // Rotate about the eye midpoint by -roll so the eye line is horizontal.
    let derot = |p: [f32; 2]| {
        let (dx, dy) = (p[0] - eye_mid[0], p[1] - eye_mid[1]);
        [c * dx + s * dy, -s * dx + c * dy]
    };
    let (re, le, nose) = (derot(re), derot(le), derot(nose));
    let mouth = derot([(rm[0] + lm[0]) / 2.0, (rm[1] + lm[1]) / 2.0]);
    let half_iod = ((le[0] - re[0]) / 2.0).abs().max(1e-3);
    let yaw = (nose[0] / (NOSE_DEPTH_PER_HALF_IOD * half_iod)).atan();
    // Under yaw the eye distance shrinks by cos(yaw); the eye-mouth distance does not.
    let eye_mouth = mouth[1].abs().max(1e-3);
    let pitch = ((nose[1] / eye_mouth - FRONTAL_NOSE_RATIO) / NOSE_DEPTH_PER_EYE_MOUTH).atan();
    Pose { yaw_deg: yaw.to_degrees(), pitch_deg: pitch.to_degrees(), roll_deg: roll.to_degrees() }
}

/// Thresholds for `assess`; defaults suit selfies and are configurable per deployment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityRules {
    /// Minimum face box side (the shorter one) in image pixels; below this embeddings degrade.
    pub min_face_px: f32,
    /// Maximum |yaw| in degrees.
    pub max_yaw_deg: f32,
    /// Maximum |pitch| in degrees.
    pub max_pitch_deg: f32,
    /// Face too close when its box covers more than this fraction of the frame width or height; `None` disables
    /// the rule (use for inputs that are already tight face crops).
    pub max_frame_fraction: Option<f32>,
}

impl Default for QualityRules {
    /// 48 px minimum side, 25 deg yaw/pitch, too-close rule OFF. Measured on the spoof set's tight face crops:
    /// YuNet's box covers a median 98% of the crop (161 of 202 crops above 95%), so any frame-fraction rule would
    /// reject every already-cropped face. Use `QualityRules::selfie()` for full-frame camera captures.
    fn default() -> Self {
        Self { min_face_px: 48.0, max_yaw_deg: 25.0, max_pitch_deg: 25.0, max_frame_fraction: None }
    }
}

impl QualityRules {
    /// Rules for full-frame selfies: as `default()` plus "too close" when the face box exceeds 90% of the frame
    /// width or height (the chin or forehead is then usually cut off).
    pub fn selfie() -> Self {
        Self { max_frame_fraction: Some(0.9), ..Self::default() }
    }
}

/// Why a face is not good enough to verify; the client should retake the photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum QualityIssue {
    /// Face box smaller than `min_face_px`.
    #[error("face too small")]
    TooSmall,
    /// Head turned or tilted beyond the yaw/pitch limits.
    #[error("face angle too large")]
    AngleTooLarge,
    /// Face fills (nearly) the whole frame: part of the head is probably cut off.
    #[error("face too close to the camera")]
    TooClose,
}

/// Checks a face against `rules` for an image of `dims = (width, height)`; the first failing rule is returned.
pub fn assess(face: &Face, dims: (u32, u32), rules: &QualityRules) -> Result<(), QualityIssue> {
    let [_, _, w, h] = face.bbox;
    if let Some(max) = rules.max_frame_fraction {
        if w > max * dims.0 as f32 || h > max * dims.1 as f32 {
            return Err(QualityIssue::TooClose);
        }
    }
    if w.min(h) < rules.min_face_px {
        return Err(QualityIssue::TooSmall);
    }
    let p = pose(face);
    if p.yaw_deg.abs() > rules.max_yaw_deg || p.pitch_deg.abs() > rules.max_pitch_deg {
        return Err(QualityIssue::AngleTooLarge);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::align::ARCFACE_112;

    fn face_with(landmarks: [[f32; 2]; 5], bbox: [f32; 4]) -> Face {
        Face { bbox, landmarks, score: 0.9 }
    }

    #[test]
    fn template_face_is_frontal() {
        let p = pose(&face_with(ARCFACE_112, [20.0, 20.0, 72.0, 90.0]));
        assert!(p.yaw_deg.abs() < 2.0 && p.pitch_deg.abs() < 2.0 && p.roll_deg.abs() < 1.0, "{p:?}");
    }

    #[test]
    fn shifted_nose_gives_yaw_and_rotation_gives_roll() {
        let mut lm = ARCFACE_112;
        lm[2][0] += 15.0; // nose 15 px right with half IOD ~17.6 px: strongly turned
        let p = pose(&face_with(lm, [20.0, 20.0, 72.0, 90.0]));
        assert!(p.yaw_deg > 30.0, "{p:?}");
        // Rotating all points by 20 degrees changes roll only.
        let (c, s) = (20f32.to_radians().cos(), 20f32.to_radians().sin());
        let rot = ARCFACE_112.map(|q| [c * q[0] - s * q[1], s * q[0] + c * q[1]]);
        let p = pose(&face_with(rot, [20.0, 20.0, 72.0, 90.0]));
        assert!((p.roll_deg - 20.0).abs() < 0.5 && p.yaw_deg.abs() < 2.0 && p.pitch_deg.abs() < 2.0, "{p:?}");
    }

    #[test]
    fn assess_rules() {
        let rules = QualityRules::selfie();
        let ok = face_with(ARCFACE_112, [20.0, 20.0, 72.0, 90.0]);
        assert_eq!(assess(&ok, (640, 480), &rules), Ok(()));
        assert_eq!(assess(&ok, (74, 200), &rules), Err(QualityIssue::TooClose));
        let off = QualityRules { max_frame_fraction: None, ..rules };
        assert_eq!(assess(&ok, (74, 200), &off), Ok(()));
        let small = face_with(ARCFACE_112, [20.0, 20.0, 30.0, 40.0]);
        assert_eq!(assess(&small, (640, 480), &rules), Err(QualityIssue::TooSmall));
        let mut lm = ARCFACE_112;
        lm[2][0] += 15.0;
        assert_eq!(assess(&face_with(lm, [20.0, 20.0, 72.0, 90.0]), (640, 480), &rules), Err(QualityIssue::AngleTooLarge));
    }
}
