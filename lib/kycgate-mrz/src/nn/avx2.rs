//! Register-blocked AVX2 + FMA kernel for the 'same' convolutions of [`super`].
//!
//! The scalar reference streams a whole output row through memory once per input plane and tap;
//! here a block of [`OC`] output channels × [`BW`] columns stays in registers while every input
//! plane and tap is added into it, so the arithmetic, not the memory traffic, sets the pace.
//! The sums run in the reference's order, but each tap is one fused multiply-add (one rounding
//! instead of two), so results differ from the reference in the last bits: within the usual
//! summation bound, `2·n·ε` of the terms' magnitude for `n` terms (`tests::conv_matches_reference`).

use std::arch::x86_64::{
    __m256, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_max_ps, _mm256_set1_ps,
    _mm256_setzero_ps, _mm256_storeu_ps,
};

use super::Conv;

/// Output channels per register block.
const OC: usize = 4;
/// Vectors of 8 output columns per register block (`OC × CV` accumulators, `CV` inputs and one
/// broadcast weight fit the 16 ymm registers).
const CV: usize = 2;
/// Output columns per register block.
const BW: usize = 8 * CV;

/// Whether this CPU runs [`conv_same`] (std caches the CPUID answer).
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// `c` (weights `[cout, cin, kh·kw]`) over `cin` planes of `h × w`, zero 'same' padding for odd
/// `kh × kw`, then ReLU if `relu`: `cout` planes of `h × w`, as the scalar reference computes them.
///
/// # Safety
///
/// The CPU must run AVX2 and FMA ([`available`]).
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn conv_same(c: &Conv, x: &[f32], h: usize, w: usize, kh: usize, kw: usize, relu: bool) -> Vec<f32> {
    let (cin, cout, taps) = (c.cin, c.cout, kh * kw);
    assert!(
        x.len() >= cin * h * w && c.w.len() == cout * cin * taps && c.b.len() == cout && kh % 2 == 1 && kw % 2 == 1,
        "convolution shapes disagree"
    );
    if h == 0 || w == 0 || cout == 0 {
        return vec![0f32; cout * h * w];
    }
    // Zero-padded input: kh/2 rows above and below, kw/2 columns on the left, and on the right
    // enough that the last column block reads padding, never past the buffer.
    let blocks = w.div_ceil(BW);
    let (hp, wp) = (h + kh - 1, blocks * BW + kw - 1);
    let mut pad = vec![0f32; cin * hp * wp];
    for i in 0..cin {
        for y in 0..h {
            let d = (i * hp + y + kh / 2) * wp + kw / 2;
            pad[d..d + w].copy_from_slice(&x[(i * h + y) * w..(i * h + y + 1) * w]);
        }
    }
    // Weights regrouped [output block][cin][tap][OC] (zero past `cout`): one tap's OC weights are
    // adjacent, read in the order the kernel walks.
    let oblocks = cout.div_ceil(OC);
    let mut packed = vec![0f32; oblocks * cin * taps * OC];
    for o in 0..cout {
        for i in 0..cin {
            for t in 0..taps {
                packed[((o / OC * cin + i) * taps + t) * OC + o % OC] = c.w[(o * cin + i) * taps + t];
            }
        }
    }
    let mut out = vec![0f32; cout * h * w];
    let zero = _mm256_setzero_ps();
    let mut tmp = [0f32; BW];
    for ob in 0..oblocks {
        let wblock = &packed[ob * cin * taps * OC..(ob + 1) * cin * taps * OC];
        let bias: [__m256; OC] = std::array::from_fn(|j| _mm256_set1_ps(c.b.get(ob * OC + j).copied().unwrap_or(0.0)));
        for y in 0..h {
            for xb in 0..blocks {
                let x0 = xb * BW;
                let mut acc = [[zero; CV]; OC];
                for (a, b) in acc.iter_mut().zip(bias) {
                    *a = [b; CV];
                }
                for i in 0..cin {
                    for dy in 0..kh {
                        let row = &pad[(i * hp + y + dy) * wp + x0..(i * hp + y + dy + 1) * wp];
                        let wrow = &wblock[(i * kh + dy) * kw * OC..(i * kh + dy + 1) * kw * OC];
                        for dx in 0..kw {
                            // SAFETY: x0 + dx + BW ≤ blocks·BW + kw − 1 = wp, so each 8-float
                            // load stays inside this padded row (`row` starts at x0).
                            let src: [__m256; CV] = std::array::from_fn(|v| unsafe { _mm256_loadu_ps(row.as_ptr().add(dx + 8 * v)) });
                            for (j, a) in acc.iter_mut().enumerate() {
                                let k = _mm256_broadcast_ss(&wrow[dx * OC + j]);
                                for (av, sv) in a.iter_mut().zip(src) {
                                    *av = _mm256_fmadd_ps(sv, k, *av);
                                }
                            }
                        }
                    }
                }
                let n = (w - x0).min(BW);
                for (j, a) in acc.iter().enumerate() {
                    let o = ob * OC + j;
                    if o >= cout {
                        break;
                    }
                    for (v, &av) in a.iter().enumerate() {
                        let av = if relu { _mm256_max_ps(av, zero) } else { av };
                        // SAFETY: `tmp` holds BW = 8·CV floats; v < CV.
                        unsafe { _mm256_storeu_ps(tmp.as_mut_ptr().add(8 * v), av) };
                    }
                    let d = (o * h + y) * w + x0;
                    out[d..d + n].copy_from_slice(&tmp[..n]);
                }
            }
        }
    }
    out
}
