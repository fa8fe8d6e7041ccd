//! Fast, alias-free downscaling. `image`'s Triangle filter widens its kernel with the scale
//! factor, so shrinking a multi-megapixel photo to a 640 px detector input costs tens of
//! milliseconds; averaging k×k boxes first (one cheap pass) and finishing with Triangle over a
//! factor below 3 gives the same anti-aliasing for a fraction of the work.

use image::imageops::{self, FilterType};
use image::RgbImage;

/// Resizes `img` to `nw`×`nh`; large reductions go through an integer box average first.
pub fn downscale(img: &RgbImage, nw: u32, nh: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let factor = (w as f32 / nw.max(1) as f32).min(h as f32 / nh.max(1) as f32);
    let k = (factor / 1.5).floor() as u32;
    if k >= 2 {
        let boxed = box_average(img, k);
        return imageops::resize(&boxed, nw, nh, FilterType::Triangle);
    }
    imageops::resize(img, nw, nh, FilterType::Triangle)
}

/// The image shrunk so its longer side is at most `max_side` (None when it already fits).
pub fn shrink_to(img: &RgbImage, max_side: u32) -> Option<RgbImage> {
    let (w, h) = img.dimensions();
    let long = w.max(h);
    if long <= max_side {
        return None;
    }
    let s = max_side as f32 / long as f32;
    let nw = ((w as f32 * s).round() as u32).max(1);
    let nh = ((h as f32 * s).round() as u32).max(1);
    Some(downscale(img, nw, nh))
}

/// Mean of each k×k block (the ragged right/bottom edge averages what it has).
pub(crate) fn box_average(img: &RgbImage, k: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let (ow, oh) = (w.div_ceil(k), h.div_ceil(k));
    let src = img.as_raw();
    let mut out = RgbImage::new(ow, oh);
    let mut acc = vec![0u32; ow as usize * 3];
    let mut counts = vec![0u32; ow as usize];
    for oy in 0..oh {
        acc.iter_mut().for_each(|a| *a = 0);
        counts.iter_mut().for_each(|c| *c = 0);
        for y in oy * k..((oy + 1) * k).min(h) {
            let row = &src[(y * w * 3) as usize..((y + 1) * w * 3) as usize];
            for x in 0..w as usize {
                let ox = x / k as usize;
                acc[ox * 3] += u32::from(row[x * 3]);
                acc[ox * 3 + 1] += u32::from(row[x * 3 + 1]);
                acc[ox * 3 + 2] += u32::from(row[x * 3 + 2]);
                counts[ox] += 1;
            }
        }
        for ox in 0..ow as usize {
            let n = counts[ox].max(1);
            let px = image::Rgb([(acc[ox * 3] / n) as u8, (acc[ox * 3 + 1] / n) as u8, (acc[ox * 3 + 2] / n) as u8]);
            out.put_pixel(ox as u32, oy, px);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_average_keeps_flat_regions_and_means_blocks() {
        let mut img = RgbImage::from_pixel(7, 4, image::Rgb([10, 20, 30]));
        img.put_pixel(0, 0, image::Rgb([50, 20, 30]));
        let b = box_average(&img, 2);
        assert_eq!(b.dimensions(), (4, 2));
        assert_eq!(b.get_pixel(0, 0).0, [20, 20, 30]);
        assert_eq!(b.get_pixel(3, 1).0, [10, 20, 30]);
    }

    #[test]
    fn downscale_matches_the_plain_filter_closely() {
        // A smooth gradient: the two paths must agree within a couple of grey levels.
        let img = RgbImage::from_fn(1600, 1200, |x, y| image::Rgb([(x / 7) as u8, (y / 5) as u8, ((x + y) / 11) as u8]));
        let fast = downscale(&img, 400, 300);
        let slow = imageops::resize(&img, 400, 300, FilterType::Triangle);
        let worst = fast.as_raw().iter().zip(slow.as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
        assert!(worst <= 3, "max difference {worst}");
        assert!(shrink_to(&img, 2000).is_none());
        assert_eq!(shrink_to(&img, 800).map(|i| i.dimensions()), Some((800, 600)));
    }
}
