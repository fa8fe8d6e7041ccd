//! End-to-end reads of real specimen images: an exact TD3 read, a rejected negative, and accuracy floors over gt.tsv.

#[path = "read_common.rs"]
mod common;

use kycgate_mrz::eval::eval_mrz;
use kycgate_mrz::parse::Format;
use kycgate_mrz::read::{MrzReader, ReadError};

fn open(name: &str) -> image::RgbImage {
    let path = common::mrz_eval_dir().join("images").join(name);
    match image::open(&path) {
        Ok(i) => i.to_rgb8(),
        Err(e) => panic!("cannot open {}: {e}", path.display()),
    }
}

fn reader() -> MrzReader {
    match MrzReader::new() {
        Ok(r) => r,
        Err(e) => panic!("embedded model: {e}"),
    }
}

#[test]
fn reads_icao_td3_specimen_exactly() {
    let read = match reader().read(&open("passporteye__passport-td3.jpg"), common::today()) {
        Ok(r) => r,
        Err(e) => panic!("no read: {e}"),
    };
    assert_eq!(read.mrz.format, Format::Td3);
    assert_eq!(
        read.mrz.lines,
        vec!["P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", "L898902C36UTO7408122F1204159ZE184226B<<<<<10"]
    );
    assert!(read.mrz.valid);
    assert_eq!(read.rotation_deg, 0);
    assert!(read.band[2] > 0 && read.band[3] > 0);
}

#[test]
fn page_without_mrz_is_not_found() {
    let got = reader().read(&open("fastmrz__nomrz.jpg"), common::today());
    assert!(matches!(got, Err(ReadError::NotFound)), "expected NotFound, got {got:?}");
}

#[test]
fn accuracy_floors_on_gt_set() {
    let rep = match eval_mrz(&common::mrz_eval_dir(), &reader(), common::today()) {
        Ok(r) => r,
        Err(e) => panic!("eval failed: {e}"),
    };
    println!("{rep}");
    let frac = |n: usize, d: usize| n as f64 / d.max(1) as f64;
    assert!(rep.positives >= 40, "gt.tsv shrank: {} positives", rep.positives);
    assert!(frac(rep.whole_exact, rep.positives) >= WHOLE_EXACT_FLOOR, "whole-MRZ exact below floor");
    assert!(frac(rep.num_birth_expiry, rep.positives) >= NUM_BIRTH_EXPIRY_FLOOR, "doc+birth+expiry below floor");
    assert_eq!(rep.negatives_rejected, rep.negatives, "a page without MRZ was read");
    assert!(frac(rep.clean_lines_exact, rep.clean_lines) >= CLEAN_LINE_FLOOR, "line-level accuracy below floor");
    assert!(frac(rep.lines_exact, rep.lines) >= LINE_FLOOR, "line-level accuracy (all crops) below floor");
}

/// Floors just under the measured values (41/44, 43/44, 117/257 and 651/1688 lines, docs/MRZ.md);
/// raise them when the reader improves.
const WHOLE_EXACT_FLOOR: f64 = 0.93;
const NUM_BIRTH_EXPIRY_FLOOR: f64 = 0.97;
const CLEAN_LINE_FLOOR: f64 = 0.45;
const LINE_FLOOR: f64 = 0.38;
