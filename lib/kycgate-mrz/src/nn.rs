//! The few neural-network pieces both recognisers run by hand: weight-file reading, 'same'
//! convolutions (3×3 and 1-D), max-pooling and softmax over channel-major `f32` planes.
//!
//! The convolutions are most of the MRZ read's arithmetic. Where the CPU has AVX2 and FMA they run
//! the register-blocked kernel of [`avx2`]; elsewhere the scalar reference below, which stays the
//! definition the kernel is tested against (`tests::conv_matches_reference`).

use crate::ocr::ModelError;

#[cfg(target_arch = "x86_64")]
mod avx2;

/// A convolution's weights `[cout, cin, k]` (k = 9 for 3×3) and biases.
pub(crate) struct Conv {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub cin: usize,
    pub cout: usize,
}

/// Reads little-endian `f32` arrays from a weight file in order.
pub(crate) struct Weights<'a> {
    data: &'a [u8],
    pub pos: usize,
}

impl<'a> Weights<'a> {
    /// Checks the 8-byte magic and the `u32` count of `f32`s that follows; reading starts after it.
    pub fn open(data: &'a [u8], magic: &[u8; 8]) -> Result<(Self, usize), ModelError> {
        if data.get(..8) != Some(&magic[..]) {
            return Err(ModelError::BadFormat("magic"));
        }
        let count = data.get(8..12).ok_or(ModelError::BadFormat("header"))?;
        let count = u32::from_le_bytes([count[0], count[1], count[2], count[3]]) as usize;
        Ok((Self { data, pos: 12 }, count))
    }

    /// Errors unless every byte was read and the header's count matches.
    pub fn finish(&self, count: usize) -> Result<(), ModelError> {
        if self.pos != self.data.len() || count * 4 + 12 != self.data.len() {
            return Err(ModelError::BadFormat("length"));
        }
        Ok(())
    }

    pub fn take(&mut self, n: usize) -> Result<Vec<f32>, ModelError> {
        let end = self.pos + n * 4;
        let bytes = self.data.get(self.pos..end).ok_or(ModelError::BadFormat("truncated"))?;
        self.pos = end;
        Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    pub fn conv(&mut self, cin: usize, cout: usize, k: usize) -> Result<Conv, ModelError> {
        Ok(Conv { w: self.take(cout * cin * k)?, b: self.take(cout)?, cin, cout })
    }
}

/// 'Same'-padded 3×3 convolution + ReLU over `cin` planes of `h × w`.
pub(crate) fn conv3x3_relu(c: &Conv, x: &[f32], h: usize, w: usize) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: `available` checked that this CPU runs AVX2 and FMA.
        return unsafe { avx2::conv_same(c, x, h, w, 3, 3, true) };
    }
    conv3x3_relu_scalar(c, x, h, w)
}

/// 1-D 'same' convolution with kernel `k` (odd) over a sequence of `t` frames, `cin` feature planes.
pub(crate) fn conv1d(c: &Conv, x: &[f32], t: usize, k: usize, relu: bool) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: `available` checked that this CPU runs AVX2 and FMA.
        return unsafe { avx2::conv_same(c, x, 1, t, 1, k, relu) };
    }
    conv1d_scalar(c, x, t, k, relu)
}

/// The reference 3×3 convolution + ReLU: per output plane, bias then every input plane and tap in
/// order, each a separate multiply and add.
fn conv3x3_relu_scalar(c: &Conv, x: &[f32], h: usize, w: usize) -> Vec<f32> {
    let mut out = vec![0f32; c.cout * h * w];
    for o in 0..c.cout {
        let plane = &mut out[o * h * w..(o + 1) * h * w];
        plane.iter_mut().for_each(|v| *v = c.b[o]);
        for i in 0..c.cin {
            let src = &x[i * h * w..(i + 1) * h * w];
            for ky in 0..3 {
                for kx in 0..3 {
                    let k = c.w[((o * c.cin + i) * 3 + ky) * 3 + kx];
                    if k == 0.0 {
                        continue;
                    }
                    for y in 0..h {
                        let sy = y as isize + ky as isize - 1;
                        if sy < 0 || sy >= h as isize {
                            continue;
                        }
                        let srow = &src[sy as usize * w..(sy as usize + 1) * w];
                        let drow = &mut plane[y * w..(y + 1) * w];
                        match kx {
                            0 => axpy(&mut drow[1..], &srow[..w - 1], k),
                            1 => axpy(drow, srow, k),
                            _ => axpy(&mut drow[..w - 1], &srow[1..], k),
                        }
                    }
                }
            }
        }
        plane.iter_mut().for_each(|v| *v = v.max(0.0));
    }
    out
}

/// The reference 1-D convolution, in the same order as [`conv3x3_relu_scalar`].
fn conv1d_scalar(c: &Conv, x: &[f32], t: usize, k: usize, relu: bool) -> Vec<f32> {
    let mut out = vec![0f32; c.cout * t];
    let half = k / 2;
    for o in 0..c.cout {
        let row = &mut out[o * t..(o + 1) * t];
        row.iter_mut().for_each(|v| *v = c.b[o]);
        for i in 0..c.cin {
            let src = &x[i * t..(i + 1) * t];
            for kk in 0..k {
                let wv = c.w[(o * c.cin + i) * k + kk];
                // out[j] += wv * src[j + kk - half]
                if kk >= half {
                    let s = kk - half;
                    axpy(&mut row[..t - s], &src[s..], wv);
                } else {
                    let s = half - kk;
                    axpy(&mut row[s..], &src[..t - s], wv);
                }
            }
        }
        if relu {
            row.iter_mut().for_each(|v| *v = v.max(0.0));
        }
    }
    out
}

/// `d += k · s`, element-wise.
#[inline]
fn axpy(d: &mut [f32], s: &[f32], k: f32) {
    for (a, b) in d.iter_mut().zip(s) {
        *a += k * b;
    }
}

/// Max-pool by `ph × pw` (floor), per plane.
pub(crate) fn maxpool(x: &[f32], c: usize, h: usize, w: usize, ph: usize, pw: usize) -> Vec<f32> {
    let (oh, ow) = (h / ph, w / pw);
    let mut out = vec![0f32; c * oh * ow];
    for ch in 0..c {
        let src = &x[ch * h * w..(ch + 1) * h * w];
        for y in 0..oh {
            for xx in 0..ow {
                let mut m = f32::NEG_INFINITY;
                for dy in 0..ph {
                    for dx in 0..pw {
                        m = m.max(src[(y * ph + dy) * w + xx * pw + dx]);
                    }
                }
                out[ch * oh * ow + y * ow + xx] = m;
            }
        }
    }
    out
}

/// In-place softmax.
pub(crate) fn softmax(p: &mut [f32]) {
    let m = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in p.iter_mut() {
        *v = (*v - m).exp();
        sum += *v;
    }
    p.iter_mut().for_each(|v| *v /= sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in `lo..hi`, about a fifth of them exactly zero (as ReLU outputs and
    /// pruned weights are; the reference skips zero weights).
    fn values(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let u = (s >> 40) as f32 / (1u64 << 24) as f32;
                if u < 0.2 {
                    0.0
                } else {
                    lo + (hi - lo) * (u - 0.2) / 0.8
                }
            })
            .collect()
    }

    fn conv(cin: usize, cout: usize, taps: usize, seed: u64) -> Conv {
        Conv { w: values(cout * cin * taps, seed, -1.0, 1.0), b: values(cout, seed + 1, -0.5, 0.5), cin, cout }
    }

    fn abs(c: &Conv) -> Conv {
        let a = |v: &[f32]| v.iter().map(|x| x.abs()).collect();
        Conv { w: a(&c.w), b: a(&c.b), cin: c.cin, cout: c.cout }
    }

    /// Each output of the convolution in use (the AVX2 kernel on CPUs that have it) against the
    /// scalar reference, within the summation bound 2·n·ε·Σ|terms| for n terms (bias + cin × taps):
    /// fused multiply-adds round once per tap where the reference rounds twice. Shapes cover the
    /// layers of both recognisers, widths that are and are not multiples of the 16-column block,
    /// output counts that are not multiples of the 4-channel block, and 1-wide inputs.
    #[test]
    fn conv_matches_reference() {
        #[cfg(target_arch = "x86_64")]
        eprintln!("AVX2+FMA kernel in use: {}", avx2::available());
        // (cin, cout, h, w) for 3×3; h = 1 with (k, relu) for 1-D.
        let cases_3x3 = [(1, 16, 24, 37), (16, 32, 12, 16), (32, 64, 6, 95), (64, 64, 3, 192), (3, 5, 4, 1), (2, 3, 1, 17), (1, 16, 24, 20)];
        let cases_1d = [(192, 128, 50, 3, true), (128, 38, 50, 1, false), (5, 6, 1, 3, false), (7, 9, 33, 3, false)];
        let mut checked = 0;
        let mut worst = 0f32;
        let mut check = |got: &[f32], want: &[f32], bound: &[f32], n: usize, what: &str| {
            assert_eq!(got.len(), want.len(), "{what}: length");
            let tol = 2.0 * n as f32 * f32::EPSILON;
            for (k, ((g, r), m)) in got.iter().zip(want).zip(bound).enumerate() {
                assert!((g - r).abs() <= tol * m, "{what}: output {k}: {g} vs reference {r} (terms' magnitude {m})");
                if *m > 0.0 {
                    worst = worst.max((g - r).abs() / m);
                }
            }
            assert!(want.iter().any(|v| *v > 0.0), "{what}: the case tests nothing");
            checked += got.len();
        };
        for (n, &(cin, cout, h, w)) in cases_3x3.iter().enumerate() {
            let c = conv(cin, cout, 9, n as u64);
            let x = values(cin * h * w, 100 + n as u64, 0.0, 1.0);
            let bound = conv3x3_relu_scalar(&abs(&c), &x, h, w);
            let what = format!("3×3 {cin}→{cout} on {h}×{w}");
            check(&conv3x3_relu(&c, &x, h, w), &conv3x3_relu_scalar(&c, &x, h, w), &bound, cin * 9 + 1, &what);
        }
        for (n, &(cin, cout, t, k, relu)) in cases_1d.iter().enumerate() {
            let c = conv(cin, cout, k, 50 + n as u64);
            let x = values(cin * t, 200 + n as u64, 0.0, 1.0);
            let bound = conv1d_scalar(&abs(&c), &x, t, k, false);
            let what = format!("1-D k={k} {cin}→{cout} over {t}");
            let want = conv1d_scalar(&c, &x, t, k, relu);
            if !relu {
                assert!(want.iter().any(|v| *v < 0.0), "{what}: no negative output to keep");
            }
            check(&conv1d(&c, &x, t, k, relu), &want, &bound, cin * k + 1, &what);
        }
        eprintln!("{checked} outputs compared, largest difference {worst:e} of the terms' magnitude");
    }
}
