//! Checking uploaded images before a task is accepted: format (PNG/JPEG), size limits read from
//! the header (so decompression bombs are refused before any pixel is decoded), then a full
//! decode so truncated or corrupt files are a 400 now rather than a failed task later.

use kycgate_vision::{DecodeError, DecodeLimits};

use crate::config::ImageLimits;

/// Why an upload is not an acceptable image. `Display` is the field-error text clients see.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ImageProblem {
    #[error("Upload a valid image. The file you uploaded was either not an image or a corrupted image.")]
    Invalid,
    #[error("File extension \u{201c}{0}\u{201d} is not allowed. Allowed extensions are: png, jpeg, jpg.")]
    Unsupported(&'static str),
    #[error("Ensure this file size does not exceed {max} bytes (it is {actual} bytes).")]
    TooManyBytes { max: usize, actual: usize },
    #[error("Ensure the image has at most {max_pixels} pixels and {max_side} px per side (it is {width}x{height}).")]
    TooManyPixels { width: u32, height: u32, max_pixels: u64, max_side: u32 },
}

/// The MIME type of image content, from magic bytes (`image/jpeg`, `image/png`, `image/gif`, …).
pub use kycgate_vision::sniff;

impl From<&ImageLimits> for DecodeLimits {
    fn from(l: &ImageLimits) -> Self {
        DecodeLimits { max_bytes: l.max_bytes, max_pixels: l.max_pixels, max_side: l.max_side }
    }
}

/// Validates one upload by decoding it exactly as the local provider will; returns its MIME
/// type. CPU-bound: call from `spawn_blocking`.
pub fn check(bytes: &[u8], limits: &ImageLimits) -> Result<&'static str, ImageProblem> {
    kycgate_vision::decode_image(bytes, &limits.into()).map_err(|e| match e {
        DecodeError::TooManyBytes { bytes, max } => ImageProblem::TooManyBytes { max, actual: bytes },
        DecodeError::Unsupported { mime: Some(mime) } => {
            ImageProblem::Unsupported(mime.rsplit('/').next().unwrap_or(mime))
        }
        DecodeError::Dimensions { width, height } => ImageProblem::TooManyPixels {
            width,
            height,
            max_pixels: limits.max_pixels,
            max_side: limits.max_side,
        },
        DecodeError::Empty | DecodeError::Unsupported { mime: None } | DecodeError::Malformed(_) | DecodeError::Truncated => {
            ImageProblem::Invalid
        }
    })?;
    Ok(sniff(bytes).unwrap_or("application/octet-stream"))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn limits() -> ImageLimits {
        ImageLimits { max_bytes: 1 << 20, max_pixels: 1_000_000, max_side: 4000 }
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([10, 20, 30]));
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
        out
    }

    #[test]
    fn accepts_png_refuses_others() {
        assert_eq!(check(&png(8, 8), &limits()), Ok("image/png"));
        assert_eq!(check(b"GIF89a....", &limits()), Err(ImageProblem::Unsupported("gif")));
        assert_eq!(check(b"hello", &limits()), Err(ImageProblem::Invalid));
    }

    #[test]
    fn truncated_is_invalid() {
        let p = png(64, 64);
        assert_eq!(check(&p[..p.len() / 2], &limits()), Err(ImageProblem::Invalid));
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn bomb_header_is_refused_before_decoding() {
        // A valid PNG header (correct CRC) claiming 100000 x 100000 pixels.
        let mut p = png(8, 8);
        p[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        p[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32(&p[12..29]);
        p[29..33].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(check(&p, &limits()), Err(ImageProblem::TooManyPixels { .. })));
    }
}
