//! JPEG structure without decoding: SOI, the marker segments up to each scan (frame header
//! read for its dimensions), the entropy-coded data skipped a block at a time, and an EOI.
//!
//! What a full decode refused and this still refuses: non-JPEG data, truncation (no EOI
//! reached), segments running past the end, a missing or second frame header, codings the
//! decoder does not support (arithmetic, lossless, hierarchical, 12/16-bit), scans naming
//! unknown components and quantisation tables never defined.

use super::{Dimensions, Structure};

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const DQT: u8 = 0xDB;
const DNL: u8 = 0xDC;
/// Baseline, extended sequential and progressive Huffman frames: what the decoder reads.
const SUPPORTED_SOF: [u8; 3] = [0xC0, 0xC1, 0xC2];

/// A frame component: its id and quantisation table.
#[derive(Clone, Copy)]
struct Component {
    id: u8,
    quant: u8,
}

/// Walks the file; `Ok` with the frame's dimensions when it is a complete JPEG.
pub(super) fn inspect(b: &[u8]) -> Result<Dimensions, Structure> {
    if b.len() < 4 || b[0] != 0xFF || b[1] != SOI {
        return Err(Structure::Signature);
    }
    let mut i = 2;
    let mut frame: Option<(Dimensions, Vec<Component>)> = None;
    // Bit n set: quantisation table n was defined.
    let mut quant_tables = 0u8;
    let mut scanned = false;
    loop {
        let marker = next_marker(b, &mut i)?;
        match marker {
            EOI => {
                return match frame {
                    Some((dims, _)) if scanned => Ok(dims),
                    Some(_) => Err(Structure::BadScan),
                    None => Err(Structure::NoFrame),
                }
            }
            // Standalone markers (TEM, RSTn) carry no length.
            0x01 | 0xD0..=0xD7 => continue,
            SOI => return Err(Structure::Marker(marker)),
            _ => {}
        }
        let segment = segment(b, i)?;
        i += 2 + segment.len();
        match marker {
            m if SUPPORTED_SOF.contains(&m) => {
                if frame.is_some() {
                    return Err(Structure::SecondFrame);
                }
                frame = Some(frame_header(segment)?);
            }
            // The other SOFn (arithmetic, lossless, hierarchical) and DHP/EXP.
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF | 0xDE | 0xDF => {
                return Err(Structure::UnsupportedCoding(marker))
            }
            DQT => quant_tables |= dqt_ids(segment)?,
            DNL => return Err(Structure::UnsupportedCoding(marker)),
            SOS => {
                let Some((_, components)) = &frame else { return Err(Structure::NoFrame) };
                scan_header(segment, components, quant_tables)?;
                i = skip_entropy_coded(b, i)?;
                scanned = true;
            }
            // APPn, COM, DHT, DRI, DAC and reserved markers: length-skipped.
            _ => {}
        }
    }
}

/// The next marker code at `*i` (after optional 0xFF fill bytes); `*i` moves past it.
fn next_marker(b: &[u8], i: &mut usize) -> Result<u8, Structure> {
    if b.get(*i) != Some(&0xFF) {
        return if *i >= b.len() { Err(Structure::Truncated) } else { Err(Structure::Marker(b[*i])) };
    }
    while b.get(*i + 1) == Some(&0xFF) {
        *i += 1;
    }
    let marker = *b.get(*i + 1).ok_or(Structure::Truncated)?;
    if marker == 0x00 {
        return Err(Structure::Marker(marker));
    }
    *i += 2;
    Ok(marker)
}

/// A segment's payload (after its 2-byte length), which must lie within the file.
fn segment(b: &[u8], i: usize) -> Result<&[u8], Structure> {
    let len = b.get(i..i + 2).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]]))).ok_or(Structure::Truncated)?;
    if len < 2 {
        return Err(Structure::BadLength);
    }
    b.get(i + 2..i + len).ok_or(Structure::Truncated)
}

/// SOFn: precision, height, width, and the components with their sampling and tables.
fn frame_header(s: &[u8]) -> Result<(Dimensions, Vec<Component>), Structure> {
    let (&[precision, h0, h1, w0, w1, count], rest) = s.split_first_chunk::<6>().ok_or(Structure::BadLength)?;
    if precision != 8 {
        return Err(Structure::UnsupportedCoding(precision));
    }
    let count = usize::from(count);
    if !matches!(count, 1 | 3 | 4) || rest.len() != 3 * count {
        return Err(Structure::BadFrame);
    }
    let mut components = Vec::with_capacity(count);
    for c in rest.chunks_exact(3) {
        let (h, v) = (c[1] >> 4, c[1] & 0x0F);
        if !(1..=4).contains(&h) || !(1..=4).contains(&v) || c[2] > 3 || components.iter().any(|k: &Component| k.id == c[0]) {
            return Err(Structure::BadFrame);
        }
        components.push(Component { id: c[0], quant: c[2] });
    }
    let dims = Dimensions { width: u32::from(u16::from_be_bytes([w0, w1])), height: u32::from(u16::from_be_bytes([h0, h1])) };
    Ok((dims, components))
}

/// DQT: the table ids it defines (a bit mask); each table is 64 entries of 1 or 2 bytes.
fn dqt_ids(mut s: &[u8]) -> Result<u8, Structure> {
    let mut ids = 0u8;
    while let Some((&pq_tq, rest)) = s.split_first() {
        let (precision, id) = (pq_tq >> 4, pq_tq & 0x0F);
        let size = match precision {
            0 => 64,
            1 => 128,
            _ => return Err(Structure::BadTable),
        };
        if id > 3 || rest.len() < size {
            return Err(Structure::BadTable);
        }
        ids |= 1 << id;
        s = &rest[size..];
    }
    Ok(ids)
}

/// SOS: every scan component is a frame component whose quantisation table exists.
fn scan_header(s: &[u8], components: &[Component], quant_tables: u8) -> Result<(), Structure> {
    let (&count, rest) = s.split_first().ok_or(Structure::BadLength)?;
    let count = usize::from(count);
    if !(1..=4).contains(&count) || rest.len() != 2 * count + 3 {
        return Err(Structure::BadScan);
    }
    for c in rest[..2 * count].chunks_exact(2) {
        let component = components.iter().find(|k| k.id == c[0]).ok_or(Structure::BadScan)?;
        if quant_tables & (1 << component.quant) == 0 {
            return Err(Structure::BadTable);
        }
    }
    Ok(())
}

/// Skips entropy-coded data from `i` to the next marker that is neither a stuffed 0xFF00 nor a
/// restart (RSTn); returns its position.
///
/// Entropy-coded data holds a stuffed 0xFF00 about every 256 bytes, so stopping at every 0xFF
/// (`memchr`) made a thousand calls per image. Blocks of [`BLOCK`] bytes without a real marker
/// are passed over whole instead, by a branch-free test the compiler vectorises; only the block
/// holding the marker is walked byte by byte.
fn skip_entropy_coded(b: &[u8], mut i: usize) -> Result<usize, Structure> {
    // A block is tested with the byte after it, so a marker split by the block edge is seen.
    while let Some(window) = b.get(i..i + BLOCK + 1).and_then(|w| <&[u8; BLOCK + 1]>::try_from(w).ok()) {
        if has_marker(window) {
            break;
        }
        i += BLOCK;
    }
    while let Some(&byte) = b.get(i) {
        if byte == 0xFF {
            match b.get(i + 1) {
                None => return Err(Structure::Truncated),
                Some(0x00 | 0xD0..=0xD7) => i += 2,
                // Fill bytes before a marker: the marker walk skips them.
                Some(_) => return Ok(i),
            }
        } else {
            i += 1;
        }
    }
    Err(Structure::Truncated)
}

/// Bytes of entropy-coded data tested at once by [`has_marker`].
const BLOCK: usize = 64;

/// Whether `w` (a block and the byte after it) holds a 0xFF followed by a byte that makes it a
/// marker: neither 0x00 (stuffing) nor 0xD0–0xD7 (restart).
fn has_marker(w: &[u8; BLOCK + 1]) -> bool {
    let (bytes, next) = (&w[..BLOCK], &w[1..]);
    let mut hit = false;
    for j in 0..BLOCK {
        hit |= (bytes[j] == 0xFF) & (next[j] != 0x00) & ((next[j] & 0xF8) != 0xD0);
    }
    hit
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain walk `skip_entropy_coded` must agree with: stop at the first 0xFF that is
    /// neither stuffing nor a restart.
    fn reference(b: &[u8], mut i: usize) -> Result<usize, Structure> {
        loop {
            i += memchr::memchr(0xFF, b.get(i..).unwrap_or_default()).ok_or(Structure::Truncated)?;
            match b.get(i + 1) {
                None => return Err(Structure::Truncated),
                Some(0x00 | 0xD0..=0xD7) => i += 2,
                Some(_) => return Ok(i),
            }
        }
    }

    #[test]
    fn block_skip_finds_the_same_marker_as_the_byte_walk() {
        // Entropy-like data: stuffed 0xFF00 and restarts, then a marker (or none) at every
        // offset around the block edges, with fill bytes before it.
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for len in [0usize, 1, 2, 63, 64, 65, 66, 127, 128, 129, 130, 200, 1000] {
            let mut data: Vec<u8> = (0..len).map(|_| (next() % 255) as u8).collect();
            for k in 0..len.saturating_sub(1) {
                match next() % 40 {
                    0 => {
                        data[k] = 0xFF;
                        data[k + 1] = 0x00;
                    }
                    1 => {
                        data[k] = 0xFF;
                        data[k + 1] = 0xD0 + (next() % 8) as u8;
                    }
                    _ => {}
                }
            }
            for at in (0..len).chain([usize::MAX]) {
                let mut b = data.clone();
                if at < len {
                    b[at] = 0xFF;
                    if at + 1 < len {
                        b[at + 1] = [0xD9, 0xFF, 0xC4, 0xDA][at % 4];
                    }
                }
                for start in [0, 1.min(len)] {
                    assert_eq!(skip_entropy_coded(&b, start), reference(&b, start), "len {len}, marker at {at}, start {start}");
                }
            }
        }
    }
}
