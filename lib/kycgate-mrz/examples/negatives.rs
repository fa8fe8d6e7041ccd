//! Reads every image under the given directories that has no MRZ (faces, spoof photos, ID fronts)
//! and counts the pages the reader returns a zone for: each one is a false read. Also the CPU per
//! image. `cargo run --release -p kycgate-mrz --example negatives DIR...`
use kycgate_mrz::parse::Today;
use kycgate_mrz::read::MrzReader;

fn thread_cpu_ms() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()))
        .map_or(0.0, |ns| ns / 1e6)
}

fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut v: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    v.sort();
    for p in v {
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "jpg" || e == "jpeg" || e == "png") {
            out.push(p);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reader = MrzReader::new()?;
    let today = Today { year: 2026, month: 1, day: 1 };
    let limit: usize = std::env::var("LIMIT").ok().and_then(|v| v.parse().ok()).unwrap_or(usize::MAX);
    let mut files = Vec::new();
    for d in std::env::args().skip(1) {
        walk(std::path::Path::new(&d), &mut files);
    }
    let (mut n, mut reads, mut unreadable, mut cpu) = (0usize, 0usize, 0usize, 0.0f64);
    for f in files.iter().take(limit) {
        let Ok(img) = image::open(f) else { continue };
        let img = img.to_rgb8();
        let c0 = thread_cpu_ms();
        let r = reader.read(&img, today);
        cpu += thread_cpu_ms() - c0;
        n += 1;
        match r {
            Ok(r) => {
                reads += 1;
                println!("READ {} valid {}", f.display(), r.mrz.checks.failed() == 0);
            }
            Err(kycgate_mrz::read::ReadError::Unreadable) => unreadable += 1,
            Err(_) => {}
        }
    }
    println!("{n} images without an MRZ: {reads} read as one, {unreadable} as a zone found but unreadable; {:.1} ms CPU per image", cpu / n.max(1) as f64);
    Ok(())
}
