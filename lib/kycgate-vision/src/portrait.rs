//! Cropping the holder's portrait out of a document image.

use image::imageops;
use image::RgbImage;

use crate::detect::Face;

/// Crops `face` from a document page with `margin` (fraction of the face box size added on every side, e.g. 0.4),
/// clamped to the image, so the stored portrait shows the whole head rather than YuNet's tight box.
pub fn crop_portrait(img: &RgbImage, face: &Face, margin: f32) -> RgbImage {
    let [x, y, w, h] = face.bbox;
    let margin = margin.max(0.0);
    let (iw, ih) = (img.width() as f32, img.height() as f32);
    let x0 = (x - w * margin).floor().clamp(0.0, iw);
    let y0 = (y - h * margin).floor().clamp(0.0, ih);
    let x1 = (x + w * (1.0 + margin)).ceil().clamp(0.0, iw);
    let y1 = (y + h * (1.0 + margin)).ceil().clamp(0.0, ih);
    let (cw, ch) = (((x1 - x0) as u32).max(1), ((y1 - y0) as u32).max(1));
    let x0 = (x0 as u32).min(img.width().saturating_sub(1));
    let y0 = (y0 as u32).min(img.height().saturating_sub(1));
    imageops::crop_imm(img, x0, y0, cw, ch).to_image()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_is_clamped_to_image() {
        let img = RgbImage::new(100, 80);
        let face = Face { bbox: [70.0, 10.0, 20.0, 30.0], landmarks: [[0.0; 2]; 5], score: 1.0 };
        let crop = crop_portrait(&img, &face, 0.5);
        // x: 60..100 (clamped from 100), y: 0 (clamped from -5)..55
        assert_eq!(crop.dimensions(), (40, 55));
    }
}
