//! PNG structure without inflating: signature, IHDR first (valid fields, its dimensions),
//! every chunk's length within the file and its CRC-32, PLTE where required, IDAT chunks
//! contiguous, and IEND last.
//!
//! What a full decode refused and this still refuses: non-PNG data, truncation, corrupted
//! bytes (CRC), impossible headers and missing image data. A file whose zlib stream alone is
//! crafted to be invalid under correct CRCs passes here; the provider that reads its pixels
//! reports it (`FAILED_TO_READ_IMAGE`).

use super::{Dimensions, Structure};

const SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// Walks the chunks; `Ok` with IHDR's dimensions when it is a complete PNG.
pub(super) fn inspect(b: &[u8]) -> Result<Dimensions, Structure> {
    let mut rest = b.strip_prefix(SIGNATURE).ok_or(Structure::Signature)?;
    let mut dims = None;
    let mut colour_type = 0u8;
    let (mut palette, mut seen_idat, mut idat_ended) = (false, false, false);
    loop {
        let (kind, data, after) = chunk(rest)?;
        rest = after;
        if dims.is_none() && &kind != b"IHDR" {
            return Err(Structure::BadHeader);
        }
        if &kind != b"IDAT" && seen_idat {
            idat_ended = true;
        }
        match &kind {
            b"IHDR" if dims.is_none() => {
                let (d, ct) = header(data)?;
                dims = Some(d);
                colour_type = ct;
            }
            b"IHDR" => return Err(Structure::BadHeader),
            b"PLTE" => {
                if seen_idat || data.is_empty() || data.len() % 3 != 0 || data.len() > 3 * 256 {
                    return Err(Structure::BadChunk);
                }
                palette = true;
            }
            b"IDAT" => {
                if idat_ended || (colour_type == 3 && !palette) {
                    return Err(Structure::BadChunk);
                }
                seen_idat = true;
            }
            b"IEND" => {
                return match dims {
                    Some(d) if seen_idat && data.is_empty() => Ok(d),
                    _ => Err(Structure::BadChunk),
                };
            }
            // An unknown chunk the decoder must understand (upper-case first letter).
            [first, ..] if first.is_ascii_uppercase() => {
                return Err(Structure::BadChunk);
            }
            _ => {}
        }
    }
}

/// One chunk at the start of `b`: type, data and what follows; length and CRC checked.
fn chunk(b: &[u8]) -> Result<([u8; 4], &[u8], &[u8]), Structure> {
    let (len, rest) = b.split_first_chunk::<4>().ok_or(Structure::Truncated)?;
    let len = u32::from_be_bytes(*len);
    // PNG caps chunk lengths at 2^31 - 1.
    if len > i32::MAX as u32 {
        return Err(Structure::BadLength);
    }
    let len = len as usize;
    let typed = rest.get(..4 + len).ok_or(Structure::Truncated)?;
    let (crc, after) = rest[4 + len..].split_first_chunk::<4>().ok_or(Structure::Truncated)?;
    let kind: [u8; 4] = [typed[0], typed[1], typed[2], typed[3]];
    if !kind.iter().all(u8::is_ascii_alphabetic) {
        return Err(Structure::BadChunk);
    }
    if crc32fast::hash(typed) != u32::from_be_bytes(*crc) {
        return Err(Structure::Checksum);
    }
    Ok((kind, &typed[4..], after))
}

/// IHDR: dimensions and a valid bit depth / colour type pair, compression, filter, interlace.
fn header(d: &[u8]) -> Result<(Dimensions, u8), Structure> {
    let &[w0, w1, w2, w3, h0, h1, h2, h3, depth, colour, compression, filter, interlace] = d else {
        return Err(Structure::BadHeader);
    };
    let (width, height) = (u32::from_be_bytes([w0, w1, w2, w3]), u32::from_be_bytes([h0, h1, h2, h3]));
    let depth_ok = match colour {
        0 => matches!(depth, 1 | 2 | 4 | 8 | 16),
        3 => matches!(depth, 1 | 2 | 4 | 8),
        2 | 4 | 6 => matches!(depth, 8 | 16),
        _ => false,
    };
    if width == 0 || height == 0 || width > i32::MAX as u32 || height > i32::MAX as u32 {
        return Err(Structure::BadHeader);
    }
    if !depth_ok || compression != 0 || filter != 0 || interlace > 1 {
        return Err(Structure::BadHeader);
    }
    Ok((Dimensions { width, height }, colour))
}
