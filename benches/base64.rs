//! Why vendor bodies use `base64-simd` (`src/providers/http/request.rs`): the base64 of the
//! proxy bench's images, by it and by the `base64` crate, per image and in GB/s.
//!
//! Run: `KYCGATE_EVAL_DIR=../shared/eval cargo bench --bench base64`
//!
//! Each image is encoded `ROUNDS` times in a row into a buffer of its size; the median of 15
//! such rounds is printed, so a slow moment of a shared machine moves one round, not the figure.
//! Both encoders must write the same text, or the bench fails.

use std::path::PathBuf;
use std::time::Instant;

use base64::Engine as _;

const ROUNDS: usize = 200;

/// Median seconds per call of `f` over 15 rounds of `ROUNDS` calls.
fn median_secs(mut f: impl FnMut()) -> f64 {
    let mut per_call: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..ROUNDS {
                f();
            }
            t.elapsed().as_secs_f64() / ROUNDS as f64
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    per_call[per_call.len() / 2]
}

fn main() {
    let eval = PathBuf::from(std::env::var("KYCGATE_EVAL_DIR").unwrap_or_else(|_| "../shared/eval".into()));
    for rel in ["faces/deepface/img20.jpg", "documents/passporteye_100_pass-uto.jpg"] {
        let Ok(bytes) = std::fs::read(eval.join(rel)) else {
            eprintln!("{rel}: not found under {} (set KYCGATE_EVAL_DIR)", eval.display());
            std::process::exit(2);
        };
        let scalar = base64::engine::general_purpose::STANDARD;
        let simd = base64_simd::STANDARD;
        let mut a = vec![0u8; simd.encoded_length(bytes.len())];
        let mut b = a.clone();
        let crate_secs = median_secs(|| {
            std::hint::black_box(scalar.encode_slice(std::hint::black_box(&bytes), &mut a).ok());
        });
        let simd_secs = median_secs(|| {
            std::hint::black_box(simd.encode(std::hint::black_box(&bytes), base64_simd::Out::from_slice(&mut b)).len());
        });
        if a != b {
            eprintln!("{rel}: the two encoders disagree");
            std::process::exit(1);
        }
        let gbs = |s: f64| bytes.len() as f64 / s / 1e9;
        println!(
            "{rel}: {} bytes; base64 {:.1} µs ({:.1} GB/s), base64-simd {:.1} µs ({:.1} GB/s), {:.1}x",
            bytes.len(),
            crate_secs * 1e6,
            gbs(crate_secs),
            simd_secs * 1e6,
            gbs(simd_secs),
            crate_secs / simd_secs
        );
    }
}
