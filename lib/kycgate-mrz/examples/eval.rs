//! Prints the MRZ reader's accuracy table: `cargo run -p kycgate-mrz --example eval [EVAL_DIR/mrz]`.

use std::path::PathBuf;

use kycgate_mrz::eval::eval_mrz;
use kycgate_mrz::parse::Today;
use kycgate_mrz::read::MrzReader;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("KYCGATE_EVAL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/eval"))
            .join("mrz")
    });
    // MRZ_MODEL / MRZ_LINE_MODEL: evaluate retrained weight files instead of the embedded ones.
    let cell = std::env::var_os("MRZ_MODEL").map(std::fs::read).transpose()?;
    let line = std::env::var_os("MRZ_LINE_MODEL").map(std::fs::read).transpose()?;
    let reader = MrzReader::with_models(cell.as_deref(), line.as_deref())?;
    let report = eval_mrz(&dir, &reader, Today::now())?;
    print!("{report}");
    if std::env::var_os("MRZ_EVAL_LIST_MISSES").is_some() {
        for m in &report.misses {
            println!("miss: {m}");
        }
    }
    Ok(())
}
