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
fn specimen_printed_with_bad_check_digits_is_read_and_flagged_invalid() {
    let read = match reader().read(&open("argmrz__id_cards__Malta_BAD.png"), common::today()) {
        Ok(r) => r,
        Err(e) => panic!("a sure read must come back with its fields: {e}"),
    };
    assert_eq!(
        read.mrz.lines,
        vec!["IDMLT9999999<<3<9999999M<999<<", "7309258F0810245MLT0310240<<<<5", "SPITERI<MANDY<<<<<<<<<<<<<<<<<"]
    );
    assert!(!read.mrz.valid, "the printed check digits fail");
    assert!(read.mrz.checks.failed() > 2);
}

#[test]
fn page_without_mrz_is_not_found() {
    let got = reader().read(&open("fastmrz__nomrz.jpg"), common::today());
    assert!(matches!(got, Err(ReadError::NotFound)), "expected NotFound, got {got:?}");
}

/// Photos without a zone (full-frame selfies and spoofs, face photos) must not be read as one:
/// the second, merged-print locator reads whatever long dark strokes it finds, so a false read
/// there would be a made-up document. 0 of 399 such images were read (docs/MRZ.md).
#[test]
fn photos_without_an_mrz_are_not_read() {
    let eval = common::mrz_eval_dir().join("..");
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    for sub in ["spoof_fullframe/real", "faces/deepface"] {
        let Ok(rd) = std::fs::read_dir(eval.join(sub)) else { panic!("missing {sub}") };
        files.extend(rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "jpg" || e == "png")));
    }
    files.sort();
    assert!(files.len() >= 40, "only {} photos found", files.len());
    let reader = reader();
    for f in &files {
        let Ok(img) = image::open(f) else { continue };
        let got = reader.read(&img.to_rgb8(), common::today());
        assert!(got.is_err(), "{} read as an MRZ", f.display());
    }
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
    assert!(rep.lines >= 400, "validation part of lines_doubango shrank: {} lines", rep.lines);
    assert!(frac(rep.lines_exact, rep.lines) >= VAL_LINE_FLOOR, "line recogniser below floor on validation lines");
    assert!(frac(rep.clean_lines_exact, rep.clean_lines) >= VAL_CLEAN_LINE_FLOOR, "clean validation lines below floor");
    assert!(rep.lines_exact > rep.cell_lines_exact, "line recogniser no better than the cell reader");
}

/// Floors just under the measured values (42/44, 43/44 pages; 343/438 and 55/66 validation lines of
/// the by-document split, docs/MRZ.md); raise them when the reader improves.
const WHOLE_EXACT_FLOOR: f64 = 0.95;
const NUM_BIRTH_EXPIRY_FLOOR: f64 = 0.97;
const VAL_LINE_FLOOR: f64 = 0.77;
const VAL_CLEAN_LINE_FLOOR: f64 = 0.81;
