//! The reader on degraded copies of the shared pages (rotation ±10°, blur, JPEG q30, half scale,
//! keystone; `kycgate_mrz::perturb`): floors on each condition and on the share of the unperturbed
//! score kept, so gains that only hold on the clean pages show up.

#[path = "read_common.rs"]
mod common;

use kycgate_mrz::eval::eval_pages;
use kycgate_mrz::perturb::STANDARD;
use kycgate_mrz::read::MrzReader;

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

/// Floors just under the measured values (docs/MRZ.md, "Line recogniser trained with heavy blur":
/// worst conditions blur σ 1.5 and rotation ±10° with 35 and 39 of 44 doc + dates; means over the
/// six conditions 87.3% (key fields) and 90.7% (doc + dates) of the unperturbed score); raise them
/// when the reader improves.
const CONDITION_FLOOR: f64 = 0.77;
const KEPT_KEY_FLOOR: f64 = 0.85;
const KEPT_NBE_FLOOR: f64 = 0.88;
/// Ceiling on pages read with a wrong document number or date, summed over the six perturbations
/// (measured 5; 10 with the previous recogniser, 18 before the ranking weighed recogniser confidence): a gateway must
/// prefer no read to a wrong one.
const MAX_WRONG_READS: usize = 6;
