//! Checking uploaded images before a task is accepted, without decoding them: format
//! (PNG/JPEG from magic bytes), byte size, dimensions from the header against the pixel limits
//! (decompression bombs), then a structural walk of the file (`jpeg`, `png`) so non-images,
//! truncated and corrupt files are a 400 now rather than a failed task later.
//!
//! Pixels are decoded once, later, and only where a provider needs them (the local provider,
//! under its decode cap): a full decode here cost ~5 ms of CPU per upload and was most of the
//! submit path's cost (issue 11).

mod jpeg;
mod png;

use kycgate_vision::DecodeLimits;

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

/// Why a file's structure is not a complete PNG or JPEG (all are [`ImageProblem::Invalid`] to
/// clients; the variants say which rule failed, for tests and debugging).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Structure {
    #[error("signature missing")]
    Signature,
    #[error("file ends before the image does")]
    Truncated,
    #[error("unexpected byte or marker 0x{0:02X}")]
    Marker(u8),
    #[error("segment or chunk length out of range")]
    BadLength,
    #[error("no frame header before the image data")]
    NoFrame,
    #[error("a second frame header")]
    SecondFrame,
    #[error("unsupported coding 0x{0:02X}")]
    UnsupportedCoding(u8),
    #[error("invalid frame header")]
    BadFrame,
    #[error("invalid scan header")]
    BadScan,
    #[error("invalid or missing table")]
    BadTable,
    #[error("invalid image header")]
    BadHeader,
    #[error("invalid, misplaced or missing chunk")]
    BadChunk,
    #[error("chunk checksum mismatch")]
    Checksum,
}

/// Width and height as the file's header declares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dimensions {
    pub width: u32,
    pub height: u32,
}

/// The MIME type of image content, from magic bytes (`image/jpeg`, `image/png`, `image/gif`, …).
pub use kycgate_vision::sniff;

impl From<&ImageLimits> for DecodeLimits {
    fn from(l: &ImageLimits) -> Self {
        DecodeLimits { max_bytes: l.max_bytes, max_pixels: l.max_pixels, max_side: l.max_side }
    }
}

/// The declared dimensions of a structurally complete PNG or JPEG (no pixel is decoded).
pub fn inspect(bytes: &[u8]) -> Result<Dimensions, Structure> {
    match sniff(bytes) {
        Some("image/jpeg") => jpeg::inspect(bytes),
        Some("image/png") => png::inspect(bytes),
        _ => Err(Structure::Signature),
    }
}

/// Validates one upload (format, size, declared dimensions, structure); returns its MIME type.
/// Reads the bytes once, decodes nothing: cheap enough for the async threads (tens of µs for
/// a few hundred KB).
pub fn check(bytes: &[u8], limits: &ImageLimits) -> Result<&'static str, ImageProblem> {
    if bytes.len() > limits.max_bytes {
        return Err(ImageProblem::TooManyBytes { max: limits.max_bytes, actual: bytes.len() });
    }
    let mime = match sniff(bytes) {
        Some(mime @ ("image/jpeg" | "image/png")) => mime,
        Some(other) => return Err(ImageProblem::Unsupported(other.rsplit('/').next().unwrap_or(other))),
        None => return Err(ImageProblem::Invalid),
    };
    let Dimensions { width, height } = inspect(bytes).map_err(|_| ImageProblem::Invalid)?;
    if !within(width, height, limits) {
        return Err(ImageProblem::TooManyPixels {
            width,
            height,
            max_pixels: limits.max_pixels,
            max_side: limits.max_side,
        });
    }
    Ok(mime)
}

/// The same rule the decoder applies: no zero side, each side and the pixel count in bounds.
fn within(width: u32, height: u32, limits: &ImageLimits) -> bool {
    width > 0
        && height > 0
        && width <= limits.max_side
        && height <= limits.max_side
        && u64::from(width) * u64::from(height) <= limits.max_pixels
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn limits() -> ImageLimits {
        ImageLimits { max_bytes: 1 << 20, max_pixels: 1_000_000, max_side: 4000 }
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 30]));
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
        out
    }

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 3) as u8, (y * 5) as u8, 128]));
        kycgate_vision::encode_jpeg(&img, 90).unwrap()
    }

    #[test]
    fn accepts_png_and_jpeg_refuses_others() {
        assert_eq!(check(&png(8, 8), &limits()), Ok("image/png"));
        assert_eq!(check(&jpeg(8, 8), &limits()), Ok("image/jpeg"));
        assert_eq!(inspect(&jpeg(64, 48)), Ok(Dimensions { width: 64, height: 48 }));
        assert_eq!(inspect(&png(5, 7)), Ok(Dimensions { width: 5, height: 7 }));
        assert_eq!(check(b"GIF89a....", &limits()), Err(ImageProblem::Unsupported("gif")));
        assert_eq!(check(b"hello", &limits()), Err(ImageProblem::Invalid));
        assert_eq!(check(b"", &limits()), Err(ImageProblem::Invalid));
        let few = ImageLimits { max_bytes: 10, ..limits() };
        assert_eq!(check(&png(8, 8), &few), Err(ImageProblem::TooManyBytes { max: 10, actual: png(8, 8).len() }));
    }

    #[test]
    fn truncated_is_invalid() {
        for img in [png(64, 64), jpeg(64, 64)] {
            for cut in [img.len() / 2, img.len() - 1, 20, 3] {
                assert_eq!(check(&img[..cut], &limits()), Err(ImageProblem::Invalid), "cut at {cut}");
            }
        }
    }

    /// What the full decoder refuses, the structural check refuses too, for every prefix.
    #[test]
    fn agrees_with_the_decoder_on_every_prefix() {
        let decode_limits = DecodeLimits::from(&limits());
        for img in [png(40, 30), jpeg(40, 30)] {
            for cut in (0..img.len()).step_by(7) {
                let prefix = &img[..cut];
                if kycgate_vision::decode_image(prefix, &decode_limits).is_err() {
                    assert!(inspect(prefix).is_err(), "structure accepted a prefix of {cut} bytes the decoder refused");
                }
            }
        }
    }

    fn crc32(data: &[u8]) -> u32 {
        crc32fast::hash(data)
    }

    #[test]
    fn bomb_header_is_refused_before_decoding() {
        // A valid PNG header (correct CRC) claiming 100000 x 100000 pixels.
        let mut p = png(8, 8);
        p[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        p[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32(&p[12..29]);
        p[29..33].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(check(&p, &limits()), Err(ImageProblem::TooManyPixels { width: 100_000, .. })));
        // A JPEG frame header claiming 60000 x 60000.
        let mut segs = jpeg_segments(&jpeg(16, 16));
        let sof = segs.iter_mut().find(|(m, _)| *m == 0xC0).unwrap();
        sof.1[1..3].copy_from_slice(&60_000u16.to_be_bytes());
        sof.1[3..5].copy_from_slice(&60_000u16.to_be_bytes());
        assert!(matches!(check(&join(&segs), &limits()), Err(ImageProblem::TooManyPixels { width: 60_000, .. })));
    }

    // --- JPEG structure ---

    /// The marker segments of a baseline JPEG up to its scan; the last entry (marker 0xDA)
    /// holds the scan header, the entropy-coded data and the EOI.
    fn jpeg_segments(b: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        let mut i = 2;
        loop {
            let marker = b[i + 1];
            let len = usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
            if marker == 0xDA {
                out.push((marker, b[i + 4..].to_vec()));
                return out;
            }
            out.push((marker, b[i + 4..i + 2 + len].to_vec()));
            i += 2 + len;
        }
    }

    /// Reassembles segments; the scan entry's length covers only its header.
    fn join(segs: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut out = vec![0xFF, 0xD8];
        for (marker, payload) in segs {
            out.extend([0xFF, *marker]);
            let header_len = if *marker == 0xDA { 1 + 2 * usize::from(payload[0]) + 3 } else { payload.len() };
            out.extend(u16::try_from(header_len + 2).unwrap().to_be_bytes());
            out.extend(payload);
        }
        out
    }

    fn jpeg_with(edit: impl FnOnce(&mut Vec<(u8, Vec<u8>)>)) -> Result<Dimensions, Structure> {
        let mut segs = jpeg_segments(&jpeg(24, 16));
        edit(&mut segs);
        inspect(&join(&segs))
    }

    #[test]
    fn jpeg_segments_round_trip() {
        let img = jpeg(24, 16);
        assert_eq!(join(&jpeg_segments(&img)), img);
        assert_eq!(jpeg_with(|_| ()), Ok(Dimensions { width: 24, height: 16 }));
    }

    #[test]
    fn jpeg_without_eoi_or_cut_in_a_segment_is_truncated() {
        let img = jpeg(24, 16);
        assert_eq!(inspect(&img[..img.len() - 2]), Err(Structure::Truncated));
        assert_eq!(inspect(&img[..img.len() - 1]), Err(Structure::Truncated));
        assert_eq!(inspect(&img[..30]), Err(Structure::Truncated));
    }

    #[test]
    fn jpeg_data_after_eoi_is_allowed() {
        // Motion photos and multi-picture files append data after the first image's EOI.
        let mut img = jpeg(24, 16);
        img.extend_from_slice(b"\x00\x00ftypmp42 trailing video bytes");
        assert_eq!(inspect(&img), Ok(Dimensions { width: 24, height: 16 }));
    }

    #[test]
    fn jpeg_bad_segment_lengths() {
        let mut img = jpeg(24, 16);
        // The first segment after SOI (APP0) claims a length of 1.
        img[4..6].copy_from_slice(&1u16.to_be_bytes());
        assert_eq!(inspect(&img), Err(Structure::BadLength));
        let mut img = jpeg(24, 16);
        img[4..6].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(matches!(inspect(&img), Err(Structure::Truncated | Structure::Marker(_))));
    }

    #[test]
    fn jpeg_garbage_between_segments() {
        let mut segs = jpeg_segments(&jpeg(24, 16));
        let mut img = join(&segs[..1]);
        img.extend_from_slice(b"junk");
        segs.remove(0);
        img.extend_from_slice(&join(&segs)[2..]);
        assert_eq!(inspect(&img), Err(Structure::Marker(b'j')));
    }

    #[test]
    fn jpeg_scan_before_frame_or_two_frames() {
        assert_eq!(jpeg_with(|s| s.retain(|(m, _)| *m != 0xC0)), Err(Structure::NoFrame));
        assert_eq!(
            jpeg_with(|s| {
                let sof = s.iter().find(|(m, _)| *m == 0xC0).unwrap().clone();
                s.insert(0, sof);
            }),
            Err(Structure::SecondFrame)
        );
        // Only EOI after SOI: no image at all; a frame header but no scan: no image data.
        assert_eq!(inspect(b"\xFF\xD8\xFF\xD9"), Err(Structure::NoFrame));
        let segs = jpeg_segments(&jpeg(24, 16));
        let mut headers_only = join(&segs[..segs.len() - 1]);
        headers_only.extend([0xFF, 0xD9]);
        assert_eq!(inspect(&headers_only), Err(Structure::BadScan));
    }

    #[test]
    fn jpeg_unsupported_codings() {
        // Arithmetic coding (SOF9) and lossless (SOF3).
        for sof in [0xC9, 0xC3] {
            assert_eq!(
                jpeg_with(|s| s.iter_mut().filter(|(m, _)| *m == 0xC0).for_each(|(m, _)| *m = sof)),
                Err(Structure::UnsupportedCoding(sof))
            );
        }
        // 12-bit samples.
        assert_eq!(
            jpeg_with(|s| s.iter_mut().filter(|(m, _)| *m == 0xC0).for_each(|(_, p)| p[0] = 12)),
            Err(Structure::UnsupportedCoding(12))
        );
    }

    #[test]
    fn jpeg_bad_frame_and_scan_headers() {
        // Two components declared (neither grey nor colour), with the bytes of three.
        assert_eq!(
            jpeg_with(|s| s.iter_mut().filter(|(m, _)| *m == 0xC0).for_each(|(_, p)| p[5] = 2)),
            Err(Structure::BadFrame)
        );
        // Sampling factor 0.
        assert_eq!(
            jpeg_with(|s| s.iter_mut().filter(|(m, _)| *m == 0xC0).for_each(|(_, p)| p[7] = 0x01)),
            Err(Structure::BadFrame)
        );
        // The scan names a component the frame does not have.
        assert_eq!(
            jpeg_with(|s| s.iter_mut().filter(|(m, _)| *m == 0xDA).for_each(|(_, p)| p[1] = 0x77)),
            Err(Structure::BadScan)
        );
    }

    #[test]
    fn jpeg_without_quantisation_tables() {
        assert_eq!(jpeg_with(|s| s.retain(|(m, _)| *m != 0xDB)), Err(Structure::BadTable));
    }

    #[test]
    fn jpeg_restart_markers_and_stuffed_bytes_are_skipped() {
        // Entropy-coded data with a stuffed 0xFF00 and a restart marker before the EOI.
        let mut segs = jpeg_segments(&jpeg(24, 16));
        let scan = &mut segs.last_mut().unwrap().1;
        let eoi = scan.split_off(scan.len() - 2);
        scan.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56]);
        scan.extend_from_slice(&eoi);
        assert_eq!(inspect(&join(&segs)), Ok(Dimensions { width: 24, height: 16 }));
    }

    // --- PNG structure ---

    /// The chunks of a PNG as (type, data).
    fn png_chunks(b: &[u8]) -> Vec<([u8; 4], Vec<u8>)> {
        let mut out = Vec::new();
        let mut i = 8;
        while i < b.len() {
            let len = u32::from_be_bytes(b[i..i + 4].try_into().unwrap()) as usize;
            out.push((b[i + 4..i + 8].try_into().unwrap(), b[i + 8..i + 8 + len].to_vec()));
            i += 12 + len;
        }
        out
    }

    /// Reassembles chunks with correct CRCs.
    fn png_join(chunks: &[([u8; 4], Vec<u8>)]) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, data) in chunks {
            out.extend(u32::try_from(data.len()).unwrap().to_be_bytes());
            let start = out.len();
            out.extend(kind);
            out.extend(data);
            let crc = crc32(&out[start..]);
            out.extend(crc.to_be_bytes());
        }
        out
    }

    fn png_with(edit: impl FnOnce(&mut Vec<([u8; 4], Vec<u8>)>)) -> Result<Dimensions, Structure> {
        let mut chunks = png_chunks(&png(12, 9));
        edit(&mut chunks);
        inspect(&png_join(&chunks))
    }

    #[test]
    fn png_chunks_round_trip() {
        let img = png(12, 9);
        assert_eq!(png_join(&png_chunks(&img)), img);
        assert_eq!(png_with(|_| ()), Ok(Dimensions { width: 12, height: 9 }));
    }

    #[test]
    fn png_signature_and_truncation() {
        let mut img = png(12, 9);
        img[1] = b'Q';
        assert_eq!(inspect(&img), Err(Structure::Signature));
        let img = png(12, 9);
        assert_eq!(png::inspect(&img[..img.len() - 12]), Err(Structure::Truncated));
        assert_eq!(png::inspect(&img[..img.len() - 1]), Err(Structure::Truncated));
        assert_eq!(png::inspect(&img[..8]), Err(Structure::Truncated));
    }

    #[test]
    fn png_corrupt_byte_fails_its_checksum() {
        let mut img = png(12, 9);
        let idat = img.windows(4).position(|w| w == b"IDAT").unwrap();
        img[idat + 6] ^= 0x40;
        assert_eq!(inspect(&img), Err(Structure::Checksum));
    }

    #[test]
    fn png_chunk_length_past_the_end_or_over_the_limit() {
        let mut img = png(12, 9);
        let idat = img.windows(4).position(|w| w == b"IDAT").unwrap();
        img[idat - 4..idat].copy_from_slice(&0x7FFF_0000u32.to_be_bytes());
        assert_eq!(inspect(&img), Err(Structure::Truncated));
        img[idat - 4..idat].copy_from_slice(&0x8000_0000u32.to_be_bytes());
        assert_eq!(inspect(&img), Err(Structure::BadLength));
    }

    #[test]
    fn png_header_rules() {
        // A chunk before IHDR.
        assert_eq!(png_with(|c| c.insert(0, (*b"tEXt", b"a\0b".to_vec()))), Err(Structure::BadHeader));
        // Bit depth 3, colour type 5, width 0, interlace 2, a short IHDR, a second IHDR.
        for (at, value) in [(8, 3), (9, 5), (3, 0), (12, 2)] {
            let edited = png_with(|c| {
                if at == 3 {
                    c[0].1[..4].copy_from_slice(&[0; 4]);
                } else {
                    c[0].1[at] = value;
                }
            });
            assert_eq!(edited, Err(Structure::BadHeader), "byte {at} = {value}");
        }
        assert_eq!(png_with(|c| c[0].1.truncate(12)), Err(Structure::BadHeader));
        assert_eq!(
            png_with(|c| {
                let ihdr = c[0].clone();
                c.insert(1, ihdr);
            }),
            Err(Structure::BadHeader)
        );
    }

    #[test]
    fn png_chunk_order_rules() {
        // No image data.
        assert_eq!(png_with(|c| c.retain(|(k, _)| k != b"IDAT")), Err(Structure::BadChunk));
        // IDAT chunks not contiguous.
        assert_eq!(
            png_with(|c| {
                let idat = c.iter().position(|(k, _)| k == b"IDAT").unwrap();
                let copy = c[idat].clone();
                c.insert(idat + 1, (*b"tEXt", b"a\0b".to_vec()));
                c.insert(idat + 2, copy);
            }),
            Err(Structure::BadChunk)
        );
        // IEND with data; no IEND at all.
        assert_eq!(png_with(|c| c.last_mut().unwrap().1.push(0)), Err(Structure::BadChunk));
        assert_eq!(
            png_with(|c| {
                c.pop();
            }),
            Err(Structure::Truncated)
        );
        // Indexed colour without a palette.
        assert_eq!(png_with(|c| c[0].1[9] = 3), Err(Structure::BadChunk));
        // An unknown critical chunk, and a chunk type that is not letters.
        assert_eq!(png_with(|c| c.insert(1, (*b"ZZZZ", Vec::new()))), Err(Structure::BadChunk));
        assert_eq!(png_with(|c| c.insert(1, (*b"a1b2", Vec::new()))), Err(Structure::BadChunk));
        // Ancillary chunks are fine.
        assert_eq!(png_with(|c| c.insert(1, (*b"tEXt", b"k\0v".to_vec()))), Ok(Dimensions { width: 12, height: 9 }));
    }
}
