//! Cost of the submit-time image check (`images::check`: header, dimensions and the JPEG
//! marker walk, no decode) on the proxy bench's upload, per image and in GB/s.
//!
//! Run: `KYCGATE_EVAL_DIR=../shared/eval cargo bench --bench image_check`
//!
//! Each image is checked `ROUNDS` times in a row; the median of 15 such rounds is printed, so
//! a slow moment of a shared machine moves one round, not the figure.

use std::path::PathBuf;
use std::time::Instant;

const ROUNDS: usize = 200;

fn main() {
    let eval = PathBuf::from(std::env::var("KYCGATE_EVAL_DIR").unwrap_or_else(|_| "../shared/eval".into()));
    // The defaults of `config/default.toml`.
    let limits = kycgate::config::Config::load(None).map(|c| c.images).unwrap_or_else(|e| {
        eprintln!("default config: {e}");
        std::process::exit(2)
    });
    for rel in ["faces/deepface/img20.jpg", "documents/passporteye_100_pass-uto.jpg"] {
        let Ok(bytes) = std::fs::read(eval.join(rel)) else {
            eprintln!("{rel}: not found under {} (set KYCGATE_EVAL_DIR)", eval.display());
            std::process::exit(2);
        };
        if let Err(e) = kycgate::images::check(&bytes, &limits) {
            eprintln!("{rel}: refused ({e})");
            std::process::exit(1);
        }
        let mut per_call: Vec<f64> = (0..15)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..ROUNDS {
                    std::hint::black_box(kycgate::images::check(std::hint::black_box(&bytes), &limits).is_ok());
                }
                t.elapsed().as_secs_f64() / ROUNDS as f64
            })
            .collect();
        per_call.sort_by(f64::total_cmp);
        let median = per_call[per_call.len() / 2];
        println!(
            "{rel}: {} bytes, {:.1} µs per check, {:.1} GB/s",
            bytes.len(),
            median * 1e6,
            bytes.len() as f64 / median / 1e9
        );
    }
}
