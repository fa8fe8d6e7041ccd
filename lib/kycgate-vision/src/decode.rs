//! Safe image decoding for untrusted uploads: PNG and JPEG only, size-checked before decoding, EXIF-oriented.

use std::io::Cursor;

use image::codecs::jpeg::{JpegDecoder, JpegEncoder};
use image::codecs::png::PngDecoder;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, RgbImage};

/// Upper bounds applied to an upload before and during decoding, so one request cannot exhaust memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted encoded size in bytes (checked before anything else).
    pub max_bytes: usize,
    /// Largest accepted `width * height` as declared by the file header (decompression-bomb guard).
    pub max_pixels: u64,
    /// Largest accepted width or height in pixels.
    pub max_side: u32,
}

impl Default for DecodeLimits {
    /// 15 MB, 40 megapixels, 12000 px: a 108 MP phone photo is rejected, every current selfie/document scan passes.
    fn default() -> Self {
        Self { max_bytes: 15 * 1024 * 1024, max_pixels: 40_000_000, max_side: 12_000 }
    }
}

/// Why an upload could not be turned into pixels; every case is the client's fault (map to a 4xx).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The input has no bytes at all.
    #[error("empty image")]
    Empty,
    /// Encoded size above `DecodeLimits::max_bytes`.
    #[error("image is {bytes} bytes, limit is {max}")]
    TooManyBytes {
        /// Size of the upload.
        bytes: usize,
        /// Configured limit.
        max: usize,
    },
    /// Not PNG or JPEG; `mime` is what the magic bytes look like, if known.
    #[error("unsupported image format {}", mime.unwrap_or("(unknown)"))]
    Unsupported {
        /// Detected format (e.g. "image/gif"), `None` when unrecognised.
        mime: Option<&'static str>,
    },
    /// Header dimensions exceed the limits (or are zero); nothing was decoded.
    #[error("image dimensions {width}x{height} outside limits")]
    Dimensions {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
    },
    /// The file is corrupt or truncated.
    #[error("malformed image")]
    Malformed(#[source] image::ImageError),
    /// A JPEG whose entropy-coded data ends without an end-of-image marker (cut-off upload).
    #[error("truncated JPEG")]
    Truncated,
}

/// Encoding failed (only for images wider/taller than JPEG's 65535 px limit).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode JPEG")]
pub struct EncodeError(#[from] image::ImageError);

/// Identifies an image by its magic bytes and returns its MIME type; used to reject formats we do not decode
/// with a useful message, and to label stored images.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    const SIGS: &[(&[u8], &str)] = &[
        (b"\xFF\xD8\xFF", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"BM", "image/bmp"),
        (b"II*\0", "image/tiff"),
        (b"MM\0*", "image/tiff"),
        (b"%PDF", "application/pdf"),
    ];
    if let Some((_, mime)) = SIGS.iter().find(|(sig, _)| bytes.starts_with(sig)) {
        return Some(mime);
    }
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Some("image/webp");
    }
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        return match &bytes[8..12] {
            b"avif" | b"avis" => Some("image/avif"),
            b"heic" | b"heix" | b"mif1" | b"msf1" | b"hevc" => Some("image/heic"),
            _ => None,
        };
    }
    None
}

/// Decodes a PNG or JPEG upload to RGB8 with EXIF orientation applied.
///
/// Dimensions are read from the header and checked against `limits` before any pixel is decoded, and the decoder's
/// own allocation limit is set, so a small file claiming a huge canvas is refused cheaply.
pub fn decode_image(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.len() > limits.max_bytes {
        return Err(DecodeError::TooManyBytes { bytes: bytes.len(), max: limits.max_bytes });
    }
    let img = match sniff(bytes) {
        Some("image/jpeg") => {
            if !jpeg_is_complete(bytes) {
                return Err(DecodeError::Truncated);
            }
            let decoder = JpegDecoder::new(Cursor::new(bytes)).map_err(DecodeError::Malformed)?;
            decode_checked(decoder, limits)?
        }
        Some("image/png") => {
            let decoder = PngDecoder::with_limits(Cursor::new(bytes), image_limits(limits))
                .map_err(|e| match e {
                    image::ImageError::Limits(_) => header_dims_png(bytes)
                        .map(|(width, height)| DecodeError::Dimensions { width, height })
                        .unwrap_or(DecodeError::Malformed(e)),
                    e => DecodeError::Malformed(e),
                })?;
            decode_checked(decoder, limits)?
        }
        mime => return Err(DecodeError::Unsupported { mime }),
    };
    Ok(img)
}

/// Encodes RGB pixels as baseline JPEG (quality 1..=100, clamped), e.g. to store a portrait crop.
pub fn encode_jpeg(img: &RgbImage, quality: u8) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100)).encode_image(img)?;
    Ok(out)
}

/// `image::Limits` matching ours: max side, and an allocation cap of 8 bytes per allowed pixel (16-bit RGBA).
fn image_limits(limits: &DecodeLimits) -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    l.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    l
}

/// Checks header dimensions, sets decoder limits, decodes and orients.
fn decode_checked(mut decoder: impl ImageDecoder, limits: &DecodeLimits) -> Result<RgbImage, DecodeError> {
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if width == 0
        || height == 0
        || width > limits.max_side
        || height > limits.max_side
        || pixels > limits.max_pixels
    {
        return Err(DecodeError::Dimensions { width, height });
    }
    decoder.set_limits(image_limits(limits)).map_err(DecodeError::Malformed)?;
    // A broken EXIF block must not make an otherwise fine photo unreadable: fall back to "as stored".
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(DecodeError::Malformed)?;
    img.apply_orientation(orientation);
    Ok(img.into_rgb8())
}

/// Reads width/height from a PNG IHDR (bytes 16..24) for error reporting.
fn header_dims_png(bytes: &[u8]) -> Option<(u32, u32)> {
    let w = bytes.get(16..20)?;
    let h = bytes.get(20..24)?;
    Some((
        u32::from_be_bytes([w[0], w[1], w[2], w[3]]),
        u32::from_be_bytes([h[0], h[1], h[2], h[3]]),
    ))
}

/// Walks the JPEG marker structure and returns true only if an end-of-image marker (FFD9) is reached.
///
/// The JPEG decoder fills data missing from a cut-off upload with grey and reports success, which would let half
/// an image through. Walking segments (and skipping entropy-coded data, where 0xFF is always stuffed) finds the
/// real EOI and ignores data appended after it (motion photos, multi-picture files).
fn jpeg_is_complete(b: &[u8]) -> bool {
    let n = b.len();
    let mut i = 2; // after SOI
    loop {
        while i + 1 < n && b[i] == 0xFF && b[i + 1] == 0xFF {
            i += 1; // fill bytes
        }
        if i + 1 >= n || b[i] != 0xFF {
            return false;
        }
        let marker = b[i + 1];
        i += 2;
        match marker {
            0xD9 => return true,
            0x01 | 0xD0..=0xD7 => continue,
            _ => {
                if i + 1 >= n {
                    return false;
                }
                let len = usize::from(u16::from_be_bytes([b[i], b[i + 1]]));
                if len < 2 {
                    return false;
                }
                i += len;
                if marker == 0xDA {
                    // Entropy-coded data runs until a marker that is neither a stuffed 0xFF00 nor a restart.
                    loop {
                        if i + 1 >= n {
                            return false;
                        }
                        if b[i] == 0xFF {
                            let next = b[i + 1];
                            if next == 0x00 || (0xD0..=0xD7).contains(&next) {
                                i += 2;
                                continue;
                            }
                            if next != 0xFF {
                                break;
                            }
                        }
                        i += 1;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_sniff(bytes: &[u8], expected: Option<&str>) {
        assert_eq!(sniff(bytes), expected, "{bytes:?}");
    }

    #[test]
    fn sniffs_magic_bytes() {
        check_sniff(b"\xFF\xD8\xFF\xE0rest", Some("image/jpeg"));
        check_sniff(b"\x89PNG\r\n\x1a\nrest", Some("image/png"));
        check_sniff(b"GIF89a....", Some("image/gif"));
        check_sniff(b"RIFF\0\0\0\0WEBPVP8 ", Some("image/webp"));
        check_sniff(b"\0\0\0\x18ftypheic", Some("image/heic"));
        check_sniff(b"hello world", None);
        check_sniff(b"", None);
    }

    #[test]
    fn jpeg_roundtrip_and_size_limits() {
        let img = RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 128]));
        let jpeg = encode_jpeg(&img, 90).unwrap();
        let back = decode_image(&jpeg, &DecodeLimits::default()).unwrap();
        assert_eq!(back.dimensions(), (64, 48));
        let tight = DecodeLimits { max_side: 50, ..DecodeLimits::default() };
        assert!(matches!(decode_image(&jpeg, &tight), Err(DecodeError::Dimensions { width: 64, height: 48 })));
        let few_bytes = DecodeLimits { max_bytes: 10, ..DecodeLimits::default() };
        assert!(matches!(decode_image(&jpeg, &few_bytes), Err(DecodeError::TooManyBytes { .. })));
        assert!(matches!(decode_image(&[], &DecodeLimits::default()), Err(DecodeError::Empty)));
    }
}
