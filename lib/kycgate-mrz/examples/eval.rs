//! Prints the MRZ reader's accuracy table: `cargo run -p kycgate-mrz --example eval [EVAL_DIR/mrz]`.

use kycgate_mrz::eval::{eval_dir_from_args, eval_mrz, reader_from_env};
use kycgate_mrz::parse::Today;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = eval_dir_from_args();
    // MRZ_MODEL / MRZ_LINE_MODEL: evaluate retrained weight files instead of the embedded ones.
    let reader = reader_from_env()?;
    let report = eval_mrz(&dir, &reader, Today::now())?;
    print!("{report}");
    if std::env::var_os("MRZ_EVAL_LIST_MISSES").is_some() {
        for m in &report.misses {
            println!("miss: {m}");
        }
    }
    Ok(())
}
