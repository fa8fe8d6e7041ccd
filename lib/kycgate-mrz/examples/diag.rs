//! Per-image failure diagnosis: which stage loses each MRZ (band, rotation, segmentation, recognition, decode).
//! `cargo run --release -p kycgate-mrz --example diag [EVAL_DIR/mrz] [lines]`

use std::path::PathBuf;

use kycgate_mrz::decode;
use kycgate_mrz::locate::{find_bands, find_lines, Gray};
use kycgate_mrz::ocr::read_line;
use kycgate_mrz::parse::Today;
use kycgate_mrz::read::MrzReader;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("KYCGATE_EVAL_DIR").map(PathBuf::from).unwrap_or_default().join("mrz")
    });
    let lines_mode = std::env::args().nth(2).is_some_and(|a| a == "lines");
    // MRZ_MODEL: evaluate a retrained weight file instead of the embedded one.
    let reader = match std::env::var_os("MRZ_MODEL") {
        Some(p) => MrzReader::with_model(&std::fs::read(p)?)?,
        None => MrzReader::new()?,
    };
    let today = Today { year: 2026, month: 1, day: 1 };
    if lines_mode {
        return diag_lines(&dir, &reader);
    }
    let gt = std::fs::read_to_string(dir.join("gt.tsv"))?;
    for row in gt.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        if cols.len() < 4 {
            continue;
        }
        let truth: Vec<String> = cols[2].split('|').filter(|s| !s.is_empty()).map(str::to_owned).collect();
        let img = image::open(dir.join(cols[0]))?.to_rgb8();
        let got = reader.read(&img, today);
        let verdict = match &got {
            Ok(r) if r.mrz.lines == truth => "OK".to_string(),
            Ok(r) => format!("WRONG rot={} valid={}", r.rotation_deg, r.mrz.valid),
            Err(e) => format!("ERR {e}"),
        };
        println!("== {} [{}x{}] {}", cols[0], img.width(), img.height(), verdict);
        if verdict == "OK" && std::env::var_os("DIAG_ALL").is_none() {
            continue;
        }
        let gray = kycgate_mrz::read::ink_gray(&img);
        for rot in [0u16, 180, 90, 270] {
            let (g, _) = kycgate_mrz::read::working_image(&gray, rot);
            let all = find_lines(&g);
            let lens: Vec<usize> = all.iter().map(|l| l.len).collect();
            let bands = find_bands(&g);
            println!("  rot {rot}: lines {lens:?} bands {}", bands.len());
            for (bi, band) in bands.iter().take(6).enumerate() {
                let cands: Vec<_> = band.lines.iter().map(|l| reader.read_line_best(&g, l)).collect();
                let tops: Vec<String> = cands.iter().map(|l| l.iter().map(|a| a.first().map_or('?', |t| t.0)).collect()).collect();
                let n: usize = cands.iter().map(Vec::len).sum();
                let mean_top = cands.iter().flatten().map(|a| a.first().map_or(0.0, |t| t.1)).sum::<f32>() / n.max(1) as f32;
                let dec = decode::decode(&cands, today);
                println!(
                    "   band {bi}: {}x{} pitch {:.1} cap {:.1} ang {:.3} mean_top {:.2} decoded {}",
                    band.lines.len(),
                    band.lines[0].len,
                    band.lines[0].pitch,
                    band.lines[0].cap,
                    band.lines[0].angle(),
                    mean_top,
                    dec.as_ref().map_or("none".into(), |d| format!("valid={} failed={}", d.mrz.valid, d.mrz.checks.failed()))
                );
                for (i, t) in tops.iter().enumerate() {
                    let want = truth.get(i).map_or("", String::as_str);
                    let diff: String = t.chars().zip(want.chars().chain(std::iter::repeat(' '))).map(|(a, b)| if a == b { '.' } else { a }).collect();
                    println!("     raw  {t}\n     diff {diff}");
                    for (k, (a, b)) in t.chars().zip(want.chars()).enumerate() {
                        if a != b {
                            println!("       pos {k}: want {b} alts {:?}", cands[i][k]);
                        }
                    }
                }
                if let Some(d) = dec {
                    for (i, t) in d.mrz.lines.iter().enumerate() {
                        let want = truth.get(i).map_or("", String::as_str);
                        if t != want {
                            println!("     dec  {t}\n     want {want}");
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

fn diag_lines(dir: &std::path::Path, reader: &MrzReader) -> Result<(), Box<dyn std::error::Error>> {
    let dir = dir.join("lines_doubango");
    let labels = std::fs::read_to_string(dir.join("labels.tsv"))?;
    let (mut none, mut lenwrong, mut n) = (0, 0, 0);
    for row in labels.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        if cols.len() < 2 {
            continue;
        }
        let truth = cols[1].trim();
        let img = image::open(dir.join(cols[0]))?.to_luma8();
        let g = Gray::from_image(&img);
        let lines = find_lines(&g);
        n += 1;
        let Some(best) = lines.iter().max_by_key(|l| l.len) else {
            none += 1;
            println!("NONE {} [{}x{}] want {}", cols[0], g.w, g.h, truth.len());
            continue;
        };
        if best.len != truth.len() {
            lenwrong += 1;
        }
        let mut l = best.clone();
        l.len = truth.len();
        let read: String = if std::env::var_os("DIAG_NOFIT").is_some() {
            read_line(&g, &l, reader.classifier()).iter().map(|a| a.first().map_or('?', |t| t.0)).collect()
        } else {
            reader.read_line_best(&g, &l).iter().map(|a| a.first().map_or('?', |t| t.0)).collect()
        };
        let ok = read == truth;
        let diff: String = read.chars().zip(truth.chars()).map(|(a, b)| if a == b { '.' } else { a }).collect();
        println!(
            "{} [{}x{}] found {} want {} pitch {:.1} cap {:.1} x0 {:.1} {}\n   {truth}\n   {diff}",
            if ok { "OK" } else { "BAD" },
            g.w,
            g.h,
            best.len,
            truth.len(),
            best.pitch,
            best.cap,
            best.origin.0,
            cols[0]
        );
    }
    println!("lines {n} none {none} len-mismatch {lenwrong}");
    Ok(())
}
