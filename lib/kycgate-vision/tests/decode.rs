//! Decoder safety on real and crafted inputs: truncation, decompression bombs, unsupported formats, EXIF rotation.

mod common;

use std::time::Instant;

use image::{Rgb, RgbImage};
use kycgate_vision::{decode_image, encode_jpeg, sniff, DecodeError, DecodeLimits};

const LFW: &str = "faces/lfw/Abel_Pacheco/Abel_Pacheco_0001.jpg";
const PNG: &str = "spoof/real/Apfol_001.png";

#[test]
fn real_jpeg_and_png_decode() {
    let jpeg = decode_image(&common::read(LFW), &DecodeLimits::default()).unwrap();
    assert_eq!(jpeg.dimensions(), (250, 250));
    let png = decode_image(&common::read(PNG), &DecodeLimits::default()).unwrap();
    assert_eq!(png.dimensions(), (173, 239));
    assert_eq!(sniff(&common::read(PNG)), Some("image/png"));
}

#[test]
fn truncated_files_are_errors() {
    let jpeg = common::read(LFW);
    for cut in [jpeg.len() / 2, jpeg.len() - 3, 200] {
        let r = decode_image(&jpeg[..cut], &DecodeLimits::default());
        assert!(matches!(r, Err(DecodeError::Truncated | DecodeError::Malformed(_))), "cut {cut}: {r:?}");
    }
    let png = common::read(PNG);
    for cut in [png.len() / 2, png.len() - 20, 40] {
        let r = decode_image(&png[..cut], &DecodeLimits::default());
        assert!(matches!(r, Err(DecodeError::Malformed(_))), "cut {cut}: {r:?}");
    }
}

/// Standard CRC-32 (PNG chunk checksum), so the crafted header is otherwise valid.
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

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out
}

#[test]
fn png_bomb_header_is_refused_before_decoding() {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    // A tiny zlib stream of zeros: a real bomb would inflate to 30 GB.
    png.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01]));
    png.extend(chunk(b"IEND", &[]));
    let t = Instant::now();
    let r = decode_image(&png, &DecodeLimits::default());
    assert!(matches!(r, Err(DecodeError::Dimensions { width: 100_000, height: 100_000 })), "{r:?}");
    assert!(t.elapsed().as_millis() < 500);
    // Within max_side but above max_pixels is refused too.
    let limits = DecodeLimits { max_side: 200_000, ..DecodeLimits::default() };
    assert!(matches!(decode_image(&png, &limits), Err(DecodeError::Dimensions { .. })));
}

#[test]
fn other_formats_are_unsupported() {
    let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
    assert!(matches!(
        decode_image(gif, &DecodeLimits::default()),
        Err(DecodeError::Unsupported { mime: Some("image/gif") })
    ));
    let text = std::fs::read(common::eval_dir().join("faces/pairs.csv")).unwrap();
    assert!(matches!(decode_image(&text, &DecodeLimits::default()), Err(DecodeError::Unsupported { mime: None })));
}

/// Inserts an APP1 Exif segment with the given orientation right after SOI.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08".to_vec();
    exif.extend_from_slice(&1u16.to_be_bytes()); // one IFD entry
    exif.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    exif.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    exif.extend_from_slice(&1u32.to_be_bytes());
    exif.extend_from_slice(&orientation.to_be_bytes());
    exif.extend_from_slice(&[0, 0]);
    exif.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&exif);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_applied() {
    // 60x40: left half red, right half blue.
    let img = RgbImage::from_fn(60, 40, |x, _| if x < 30 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) });
    let jpeg = encode_jpeg(&img, 95).unwrap();
    let plain = decode_image(&jpeg, &DecodeLimits::default()).unwrap();
    assert_eq!(plain.dimensions(), (60, 40));
    // Orientation 6 = "rotate 90 degrees clockwise to display": the left (red) half ends up on top.
    let rotated = decode_image(&with_exif_orientation(&jpeg, 6), &DecodeLimits::default()).unwrap();
    assert_eq!(rotated.dimensions(), (40, 60));
    assert!(rotated.get_pixel(20, 5)[0] > 200 && rotated.get_pixel(20, 55)[2] > 200);
    // On a real photo too.
    let lfw = common::read(LFW);
    let r = decode_image(&with_exif_orientation(&lfw, 8), &DecodeLimits::default()).unwrap();
    let plain = decode_image(&lfw, &DecodeLimits::default()).unwrap();
    // Orientation 8 = rotate 90 counter-clockwise: the top-right source pixel lands top-left.
    let (a, b) = (r.get_pixel(0, 0), plain.get_pixel(249, 0));
    assert!(a.0.iter().zip(b.0).all(|(x, y)| (i16::from(*x) - i16::from(y)).abs() < 3), "{a:?} {b:?}");
}
