//! Reads the shared pages and degraded copies of them (rotation ±10°, blur, JPEG q30, half scale,
//! keystone) and prints one row per condition, with the share of the unperturbed score kept:
//! `cargo run --release -p kycgate-mrz --example perturbed [EVAL_DIR/mrz]`.
//! `MRZ_CELLS_ONLY=1` runs the earlier, cell-only reader; `MRZ_PAGES=tune|held` reads only the tuning or
//! the held-out half of the MRZ pages (alternate sorted file names; the negative page is in both).
//! `MRZ_LIST_NO_READ=1` names the pages with no read, and those read with a wrong document number or
//! date, under each condition. "wrong read" counts the latter; "negative read" the page without an
//! MRZ read as one. Also prints the reader's CPU time per page (this thread's, from /proc/thread-self/schedstat).

use kycgate_mrz::eval::{eval_dir_from_args, eval_page_set, reader_from_env, MrzReport, PageSet};
use kycgate_mrz::parse::Today;
use kycgate_mrz::perturb::STANDARD;

/// CPU time this thread has used, in milliseconds (Linux; 0 elsewhere).
fn thread_cpu_ms() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()))
        .map_or(0.0, |ns| ns / 1e6)
}

fn row(name: &str, r: &MrzReport, base: &MrzReport) {
    let pct = |n: usize| 100.0 * n as f64 / r.positives.max(1) as f64;
    let kept = |n: usize, b: usize| if b == 0 { 0.0 } else { 100.0 * n as f64 / b as f64 };
    println!(
        "| {name:<16} | {:5.1}% ({}) | {:5.1}% ({}) | {:5.1}% ({}) | {:5.1}% | {:5.1}% | {} | {} | {} |",
        pct(r.key_fields),
        r.key_fields,
        pct(r.num_birth_expiry),
        r.num_birth_expiry,
        pct(r.whole_exact),
        r.whole_exact,
        kept(r.key_fields, base.key_fields),
        kept(r.num_birth_expiry, base.num_birth_expiry),
        r.no_read,
        r.wrong_reads.len(),
        r.negatives - r.negatives_rejected,
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = eval_dir_from_args();
    let reader = reader_from_env()?;
    // MRZ_CELLS_ONLY: the earlier reader (no whole-line reads), for the before column.
    let reader = if std::env::var_os("MRZ_CELLS_ONLY").is_some() { reader.cells_only() } else { reader };
    let today = Today { year: 2026, month: 1, day: 1 };
    let set = PageSet::from_env();
    let list = std::env::var_os("MRZ_LIST_NO_READ").is_some();
    println!("pages: {set:?}");
    let cpu0 = thread_cpu_ms();
    let base = eval_page_set(&dir, &reader, today, set, |img| img)?;
    let cpu = thread_cpu_ms() - cpu0;
    let pages = base.positives + base.negatives;
    println!("{} pages: {:.1} ms CPU per page (decode included), {:.1} ms wall per read", pages, cpu / pages.max(1) as f64, base.ms_per_image);
    println!("| condition        | all key fields | doc + dates    | whole MRZ      | kept key | kept doc+dates | no read | wrong read | negative read |");
    println!("|---|---|---|---|---|---|---|---|---|");
    row("none", &base, &base);
    let mut key = 0;
    let mut nbe = 0;
    for p in STANDARD {
        let c0 = thread_cpu_ms();
        let r = eval_page_set(&dir, &reader, today, set, |img| p.apply(&img))?;
        let c = thread_cpu_ms() - c0;
        key += r.key_fields;
        nbe += r.num_birth_expiry;
        row(&p.to_string(), &r, &base);
        println!("    {:.1} ms CPU per page (perturbing and decoding included)", c / (r.positives + r.negatives).max(1) as f64);
        if list {
            println!("    no read: {}", r.no_reads.join(" "));
            println!("    wrong read (doc + dates): {}", r.wrong_reads.join(" "));
            println!("    not exact: {}", r.misses.join(" "));
        }
    }
    let n = STANDARD.len();
    println!(
        "mean over perturbations: key fields kept {:.1}%, doc + dates kept {:.1}%",
        100.0 * key as f64 / (n * base.key_fields.max(1)) as f64,
        100.0 * nbe as f64 / (n * base.num_birth_expiry.max(1)) as f64
    );
    Ok(())
}
