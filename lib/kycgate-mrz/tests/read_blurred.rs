//! The locator's retry pass (`locate::RETRY_PASSES`): a page whose first pass finds no band once
//! blurred is found and read by the unsharp-masked retry.

#[path = "read_common.rs"]
mod common;

use kycgate_mrz::perturb::Perturbation;
use kycgate_mrz::read::MrzReader;

/// `argmrz__id_cards__Monaco.png` blurred with σ 1.5 is in the tuning half of the pages: the first
/// pass finds no MRZ-like band, the sharpened retry reads it with every check digit passing.
#[test]
fn blurred_page_is_found_by_the_sharpened_retry() {
    let reader = match MrzReader::new() {
        Ok(r) => r,
        Err(e) => panic!("embedded models: {e}"),
    };
    let path = common::mrz_eval_dir().join("images/argmrz__id_cards__Monaco.png");
    let img = match image::open(&path) {
        Ok(i) => i.to_rgb8(),
        Err(e) => panic!("{}: {e}", path.display()),
    };
    let blurred = Perturbation::Blur(1.5).apply(&img);
    match reader.read(&blurred, common::today()) {
        Ok(r) => assert!(r.mrz.valid, "read but check digits fail: {:?}", r.mrz.lines),
        Err(e) => panic!("blurred Monaco page not read: {e}"),
    }
}
