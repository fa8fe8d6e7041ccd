//! Degraded copies of a page, made in memory, to measure how the reader holds up on capture
//! conditions the evaluation pages do not show: rotation, blur, heavy JPEG, half resolution and a
//! mild perspective. Nothing is tuned on them; they only check that gains are not set-specific.

use std::io::Cursor;

use image::{imageops, ImageFormat, Rgb, RgbImage};

/// One way of degrading a page.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Perturbation {
    /// Rotated by this many degrees (counter-clockwise positive), canvas grown, corners white.
    Rotate(f32),
    /// Gaussian blur with this sigma in pixels.
    Blur(f32),
    /// Re-encoded as JPEG at this quality.
    Jpeg(u8),
    /// Resized by this factor (Triangle filter).
    Scale(f32),
    /// The top edge pulled in by this fraction of the width on each side (a camera tilted back).
    Perspective(f32),
}

/// The set the docs report: ±10°, blur σ 1.5, JPEG q30, half scale, 6% keystone.
pub const STANDARD: [Perturbation; 6] = [
    Perturbation::Rotate(10.0),
    Perturbation::Rotate(-10.0),
    Perturbation::Blur(1.5),
    Perturbation::Jpeg(30),
    Perturbation::Scale(0.5),
    Perturbation::Perspective(0.06),
];

impl std::fmt::Display for Perturbation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rotate(d) => write!(f, "rotate {d:+}°"),
            Self::Blur(s) => write!(f, "blur σ {s}"),
            Self::Jpeg(q) => write!(f, "JPEG q{q}"),
            Self::Scale(s) => write!(f, "scale {s}"),
            Self::Perspective(p) => write!(f, "perspective {:.0}%", p * 100.0),
        }
    }
}

impl Perturbation {
    /// The degraded copy of `img`.
    pub fn apply(&self, img: &RgbImage) -> RgbImage {
        match *self {
            Self::Rotate(deg) => rotate(img, deg.to_radians()),
            Self::Blur(sigma) => imageops::blur(img, sigma),
            Self::Jpeg(q) => jpeg(img, q),
            Self::Scale(s) => {
                let w = ((img.width() as f32 * s).round() as u32).max(1);
                let h = ((img.height() as f32 * s).round() as u32).max(1);
                imageops::resize(img, w, h, imageops::FilterType::Triangle)
            }
            Self::Perspective(p) => keystone(img, p),
        }
    }
}

fn jpeg(img: &RgbImage, quality: u8) -> RgbImage {
    let mut buf = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, quality);
    if img.write_with_encoder(enc).is_err() {
        return img.clone();
    }
    image::load(Cursor::new(buf), ImageFormat::Jpeg).map(|i| i.to_rgb8()).unwrap_or_else(|_| img.clone())
}

/// Bilinear sample, white outside the image.
fn sample(img: &RgbImage, x: f32, y: f32) -> Rgb<u8> {
    let (w, h) = (img.width() as f32, img.height() as f32);
    if x < 0.0 || y < 0.0 || x > w - 1.0 || y > h - 1.0 {
        return Rgb([255, 255, 255]);
    }
    let (x0, y0) = (x.floor() as u32, y.floor() as u32);
    let (x1, y1) = ((x0 + 1).min(img.width() - 1), (y0 + 1).min(img.height() - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let (a, b, c, d) = (img.get_pixel(x0, y0), img.get_pixel(x1, y0), img.get_pixel(x0, y1), img.get_pixel(x1, y1));
    Rgb(std::array::from_fn(|k| {
        let top = f32::from(a[k]) * (1.0 - fx) + f32::from(b[k]) * fx;
        let bot = f32::from(c[k]) * (1.0 - fx) + f32::from(d[k]) * fx;
        (top * (1.0 - fy) + bot * fy).round() as u8
    }))
}

fn rotate(img: &RgbImage, rad: f32) -> RgbImage {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let (c, s) = (rad.cos(), rad.sin());
    let nw = (w * c.abs() + h * s.abs()).ceil();
    let nh = (w * s.abs() + h * c.abs()).ceil();
    RgbImage::from_fn(nw as u32, nh as u32, |x, y| {
        // Inverse map: output centre-relative → input, turning counter-clockwise on screen.
        let (dx, dy) = (x as f32 + 0.5 - nw / 2.0, y as f32 + 0.5 - nh / 2.0);
        let sx = c * dx - s * dy + w / 2.0 - 0.5;
        let sy = s * dx + c * dy + h / 2.0 - 0.5;
        sample(img, sx, sy)
    })
}

/// The output's top edge shows the input's top edge narrowed by `p · w` at each end: each output row
/// is stretched back to the full width by a factor that falls linearly from top to bottom.
fn keystone(img: &RgbImage, p: f32) -> RgbImage {
    let (w, h) = (img.width() as f32, img.height() as f32);
    RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let t = 1.0 - (y as f32 + 0.5) / h; // 1 at the top, 0 at the bottom
        let inset = p * w * t;
        let span = (w - 2.0 * inset).max(1.0);
        let sx = (x as f32 + 0.5 - inset) / span * w - 0.5;
        if x as f32 + 0.5 < inset || x as f32 + 0.5 > w - inset {
            Rgb([255, 255, 255])
        } else {
            sample(img, sx, y as f32)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> RgbImage {
        RgbImage::from_fn(80, 40, |x, y| if (30..50).contains(&x) && (10..30).contains(&y) { Rgb([0, 0, 0]) } else { Rgb([255, 255, 255]) })
    }

    #[test]
    fn rotation_grows_canvas_and_keeps_ink() {
        let r = Perturbation::Rotate(10.0).apply(&page());
        assert!(r.width() > 80 && r.height() > 40);
        let (cx, cy) = (r.width() / 2, r.height() / 2);
        assert_eq!(r.get_pixel(cx, cy)[0], 0, "centre stays ink");
        assert_eq!(r.get_pixel(0, 0)[0], 255, "corner is white");
    }

    #[test]
    fn scale_jpeg_blur_and_keystone_keep_the_page_recognisable() {
        let p = page();
        let s = Perturbation::Scale(0.5).apply(&p);
        assert_eq!((s.width(), s.height()), (40, 20));
        for q in [Perturbation::Jpeg(30), Perturbation::Blur(1.5), Perturbation::Perspective(0.06)] {
            let d = q.apply(&p);
            assert_eq!(d.dimensions(), p.dimensions(), "{q}");
            assert!(d.get_pixel(40, 20)[0] < 60, "{q}: centre ink");
            assert!(d.get_pixel(5, 35)[0] > 200, "{q}: paper");
        }
    }
}
