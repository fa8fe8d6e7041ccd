//! The reader on degraded copies of the shared pages (rotation ±10°, blur, JPEG q30, half scale,
//! keystone; `kycgate_mrz::perturb`): floors on each condition and on the share of the unperturbed
//! score kept, so gains that only hold on the clean pages show up.

#[path = "read_common.rs"]
mod common;

use kycgate_mrz::eval::eval_pages;
use kycgate_mrz::perturb::{Perturbation, STANDARD};
use kycgate_mrz::read::MrzReader;

/// Blurred, this page's glyphs merge, so the glyph locator finds no band and only the second,
/// merged-print locator reads it; turned upside down, the same must hold on the 180° pass.
#[test]
fn blurred_page_is_read_by_the_merged_locator_either_way_up() {
    let reader = match MrzReader::new() {
        Ok(r) => r,
        Err(e) => panic!("embedded models: {e}"),
    };
    let path = common::mrz_eval_dir().join("images/passporteye__100_pass-chn.jpg");
    let img = match image::open(&path) {
        Ok(i) => i.to_rgb8(),
        Err(e) => panic!("cannot open {}: {e}", path.display()),
    };
    let clean = match reader.read(&img, common::today()) {
        Ok(r) => r.mrz,
        Err(e) => panic!("clean page: {e}"),
    };
    let blurred = Perturbation::Blur(1.5).apply(&img);
    for (turn, page) in [(0u16, blurred.clone()), (180, image::imageops::rotate180(&blurred))] {
        let got = match reader.read(&page, common::today()) {
            Ok(r) => r,
            Err(e) => panic!("blurred page turned {turn}°: {e}"),
        };
        assert_eq!(got.rotation_deg, turn);
        assert_eq!(got.mrz.checks.failed(), 0);
        assert_eq!((&got.mrz.document_number, &got.mrz.date_of_birth, &got.mrz.date_of_expiry), (&clean.document_number, &clean.date_of_birth, &clean.date_of_expiry));
    }
}

#[test]
fn perturbed_pages_keep_most_of_the_score() {
    let reader = match MrzReader::new() {
        Ok(r) => r,
        Err(e) => panic!("embedded models: {e}"),
    };
    let dir = common::mrz_eval_dir();
    let base = match eval_pages(&dir, &reader, common::today(), |img| img) {
        Ok(r) => r,
        Err(e) => panic!("eval failed: {e}"),
    };
    let (mut key, mut nbe, mut wrong) = (0, 0, 0);
    for p in STANDARD {
        let r = match eval_pages(&dir, &reader, common::today(), |img| p.apply(&img)) {
            Ok(r) => r,
            Err(e) => panic!("eval failed on {p}: {e}"),
        };
        println!("{p}: key fields {}/{}, doc+dates {}/{}", r.key_fields, r.positives, r.num_birth_expiry, r.positives);
        let frac = r.num_birth_expiry as f64 / r.positives.max(1) as f64;
        assert!(frac >= CONDITION_FLOOR, "{p}: doc+dates {frac:.3} below floor");
        key += r.key_fields;
        nbe += r.num_birth_expiry;
        wrong += r.wrong_reads.len() + (r.negatives - r.negatives_rejected);
    }
    assert!(wrong <= MAX_WRONG_READS, "{wrong} wrong reads (doc number or dates) over the perturbations");
    let kept = |n: usize, b: usize| n as f64 / (STANDARD.len() * b.max(1)) as f64;
    assert!(kept(key, base.key_fields) >= KEPT_KEY_FLOOR, "key fields kept {:.3}", kept(key, base.key_fields));
    assert!(kept(nbe, base.num_birth_expiry) >= KEPT_NBE_FLOOR, "doc+dates kept {:.3}", kept(nbe, base.num_birth_expiry));
}

/// Floors just under the measured values (docs/MRZ.md, "A second locator for merged print":
/// worst conditions blur σ 1.5 and half scale with 39 of 44 doc + dates each; means over the six
/// conditions 90.5% (key fields) and 94.2% (doc + dates) of the unperturbed score); raise them
/// when the reader improves.
const CONDITION_FLOOR: f64 = 0.86;
const KEPT_KEY_FLOOR: f64 = 0.88;
const KEPT_NBE_FLOOR: f64 = 0.92;
/// Ceiling on pages read with a wrong document number or date, summed over the six perturbations
/// (measured 5; 10 with the previous recogniser, 18 before the ranking weighed recogniser confidence): a gateway must
/// prefer no read to a wrong one.
const MAX_WRONG_READS: usize = 6;
