//! 5-point face alignment: least-squares similarity transform (Umeyama) to a template, then a bilinear warp.

use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};

/// ArcFace 112x112 template (fr_feature): right eye, left eye, nose, right mouth, left mouth.
pub const ARCFACE_112: [[f32; 2]; 5] =
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]];

/// dlib 150x150 face-chip template (padding 0.25) in the same point order, from dlib's mean face shape.
pub const DLIB_150: [[f32; 2]; 5] =
    [[47.5492, 46.5990], [100.4761, 46.5990], [74.0127, 76.5625], [50.4149, 103.0233], [97.6104, 103.0233]];

/// 2x3 affine matrix `[[a, -b, tx], [b, a, ty]]` of a similarity (rotation + uniform scale + translation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    /// `scale * cos(angle)`.
    pub a: f32,
    /// `scale * sin(angle)`.
    pub b: f32,
    /// Translation x.
    pub tx: f32,
    /// Translation y.
    pub ty: f32,
}

impl Similarity {
    /// Least-squares similarity mapping `src` onto `dst` (Umeyama 1991, no reflection). For 2-D similarities the
    /// closed form is: centre both sets, a = sum(s.d)/sum(|s|^2), b = sum(s x d)/sum(|s|^2).
    pub fn estimate(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Option<Self> {
        let n = src.len().min(dst.len());
        if n < 2 {
            return None;
        }
        let mean = |p: &[[f32; 2]]| {
            let (sx, sy) = p[..n].iter().fold((0f64, 0f64), |(x, y), q| (x + q[0] as f64, y + q[1] as f64));
            (sx / n as f64, sy / n as f64)
        };
        let (msx, msy) = mean(src);
        let (mdx, mdy) = mean(dst);
        let (mut dot, mut cross, mut norm) = (0f64, 0f64, 0f64);
        for i in 0..n {
            let (sx, sy) = (src[i][0] as f64 - msx, src[i][1] as f64 - msy);
            let (dx, dy) = (dst[i][0] as f64 - mdx, dst[i][1] as f64 - mdy);
            dot += sx * dx + sy * dy;
            cross += sx * dy - sy * dx;
            norm += sx * sx + sy * sy;
        }
        if norm < 1e-9 {
            return None;
        }
        let a = dot / norm;
        let b = cross / norm;
        let tx = mdx - (a * msx - b * msy);
        let ty = mdy - (b * msx + a * msy);
        Some(Self { a: a as f32, b: b as f32, tx: tx as f32, ty: ty as f32 })
    }

    /// Uniform scale factor of the transform.
    pub fn scale(&self) -> f32 {
        (self.a * self.a + self.b * self.b).sqrt()
    }

    /// Maps a point.
    pub fn apply(&self, p: [f32; 2]) -> [f32; 2] {
        [self.a * p[0] - self.b * p[1] + self.tx, self.b * p[0] + self.a * p[1] + self.ty]
    }

    /// Inverse transform (a similarity with non-zero scale is always invertible).
    pub fn inverse(&self) -> Self {
        let s2 = self.a * self.a + self.b * self.b;
        let (a, b) = (self.a / s2, -self.b / s2);
        Self { a, b, tx: -(a * self.tx - b * self.ty), ty: -(b * self.tx + a * self.ty) }
    }
}

/// Warps `img` so that `landmarks` land on `template`, producing an `out_w` x `out_h` chip; pixels outside the
/// image are black (as OpenCV's `warpAffine` and dlib's chip extractor do).
///
/// When the chip is much smaller than the face (high-resolution photos), the face region is first shrunk with an
/// anti-aliasing filter, as dlib does with its image pyramid; plain bilinear sampling would alias.
pub fn align(img: &RgbImage, landmarks: &[[f32; 2]; 5], template: &[[f32; 2]; 5], out_w: u32, out_h: u32) -> Option<RgbImage> {
    let m = Similarity::estimate(landmarks, template)?;
    if m.scale() >= 0.5 {
        return Some(warp(img, &m, out_w, out_h));
    }
    // Source region that the chip covers, plus a margin for the bilinear kernel.
    let inv = m.inverse();
    let corners = [[0.0, 0.0], [out_w as f32, 0.0], [0.0, out_h as f32], [out_w as f32, out_h as f32]].map(|p| inv.apply(p));
    let (w, h) = (img.width() as f32, img.height() as f32);
    let x0 = corners.iter().map(|p| p[0]).fold(f32::MAX, f32::min).floor().clamp(0.0, w - 1.0) as u32;
    let y0 = corners.iter().map(|p| p[1]).fold(f32::MAX, f32::min).floor().clamp(0.0, h - 1.0) as u32;
    let x1 = (corners.iter().map(|p| p[0]).fold(f32::MIN, f32::max).ceil() + 2.0).clamp(1.0, w) as u32;
    let y1 = (corners.iter().map(|p| p[1]).fold(f32::MIN, f32::max).ceil() + 2.0).clamp(1.0, h) as u32;
    if x1 <= x0 || y1 <= y0 {
        return Some(warp(img, &m, out_w, out_h));
    }
    let crop = imageops::crop_imm(img, x0, y0, x1 - x0, y1 - y0).to_image();
    let k = m.scale();
    let cw = ((crop.width() as f32 * k).round() as u32).max(1);
    let ch = ((crop.height() as f32 * k).round() as u32).max(1);
    let small = imageops::resize(&crop, cw, ch, FilterType::Triangle);
    let fx = cw as f32 / crop.width() as f32;
    let fy = ch as f32 / crop.height() as f32;
    let moved = landmarks.map(|p| [(p[0] - x0 as f32) * fx, (p[1] - y0 as f32) * fy]);
    let m2 = Similarity::estimate(&moved, template)?;
    Some(warp(&small, &m2, out_w, out_h))
}

/// Inverse-maps every output pixel through `m` and samples bilinearly.
fn warp(img: &RgbImage, m: &Similarity, out_w: u32, out_h: u32) -> RgbImage {
    let inv = m.inverse();
    RgbImage::from_fn(out_w, out_h, |x, y| {
        let [sx, sy] = inv.apply([x as f32, y as f32]);
        sample_bilinear(img, sx, sy)
    })
}

/// Bilinear sample at a sub-pixel position; outside pixels count as black.
pub(crate) fn sample_bilinear(img: &RgbImage, x: f32, y: f32) -> Rgb<u8> {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let x0 = x.floor();
    let y0 = y.floor();
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let get = |xi: i64, yi: i64| -> [f32; 3] {
        if xi < 0 || yi < 0 || xi >= w || yi >= h {
            [0.0; 3]
        } else {
            let p = img.get_pixel(xi as u32, yi as u32);
            [p[0] as f32, p[1] as f32, p[2] as f32]
        }
    };
    let (p00, p10, p01, p11) = (get(x0, y0), get(x0 + 1, y0), get(x0, y0 + 1), get(x0 + 1, y0 + 1));
    let mut out = [0u8; 3];
    for c in 0..3 {
        let top = p00[c] * (1.0 - fx) + p10[c] * fx;
        let bottom = p01[c] * (1.0 - fx) + p11[c] * fx;
        out[c] = (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
    }
    Rgb(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_recovers_known_similarity() {
        let truth = Similarity { a: 0.8, b: 0.3, tx: 12.0, ty: -4.0 };
        let src = [[10.0, 20.0], [50.0, 22.0], [30.0, 40.0], [15.0, 60.0], [45.0, 61.0]];
        let dst = src.map(|p| truth.apply(p));
        let m = Similarity::estimate(&src, &dst).unwrap();
        for (got, want) in [(m.a, truth.a), (m.b, truth.b), (m.tx, truth.tx), (m.ty, truth.ty)] {
            assert!((got - want).abs() < 1e-3, "{m:?}");
        }
        let back = m.inverse().apply(m.apply([3.0, 7.0]));
        assert!((back[0] - 3.0).abs() < 1e-3 && (back[1] - 7.0).abs() < 1e-3);
    }

    #[test]
    fn align_to_own_template_is_identity_crop() {
        let img = RgbImage::from_fn(112, 112, |x, y| Rgb([x as u8, y as u8, 7]));
        let chip = align(&img, &ARCFACE_112, &ARCFACE_112, 112, 112).unwrap();
        assert_eq!(chip.get_pixel(40, 60), img.get_pixel(40, 60));
        assert!(Similarity::estimate(&[[1.0, 1.0]; 5], &ARCFACE_112).is_none());
    }
}
