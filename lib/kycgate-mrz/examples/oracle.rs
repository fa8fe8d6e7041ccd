//! Locator or recogniser? For each shared page, the band found on the clean page is read on a
//! blurred or half-scale copy (blur and scaling move nothing, so the clean geometry is the true
//! one). A page the oracle reads but the reader does not is lost by location.
//! `cargo run --release -p kycgate-mrz --example oracle [EVAL_DIR/mrz]`
//! `ORACLE_SCALE=1`: the half-scale copies only. `ORACLE_GEOM=1`: print both geometries per line.
//! Each row also ends with the line reads of the copy's own bands (the first two) with every
//! line's character height as found (`0`) or set to the band's largest times 1.0, 1.1 or 1.2:
//! how much a read depends on the height estimate. Results: `docs/MRZ.md`, "Locator or recogniser".

use kycgate_mrz::decode::{self, Candidates};
use kycgate_mrz::eval::eval_dir_from_args;
use kycgate_mrz::locate::{find_bands, Gray, TextLine};
use kycgate_mrz::parse::{parse, Today};
use kycgate_mrz::perturb::Perturbation;
use kycgate_mrz::read::{ink_gray, mean_top, working_image, MrzReader};

fn scaled_line(l: &TextLine, k: f32) -> TextLine {
    let mut m = l.clone();
    m.origin = (l.origin.0 * k, l.origin.1 * k);
    m.pitch *= k;
    m.cap *= k;
    m.shifts = l.shifts.iter().map(|s| s * k).collect();
    m.lifts = l.lifts.iter().map(|s| s * k).collect();
    m
}

fn verdict(
    d: Option<&kycgate_mrz::parse::Mrz>,
    want: &kycgate_mrz::parse::Mrz,
    top: f32,
) -> String {
    match d {
        None => "none".into(),
        Some(m) => {
            let ok = m.document_number == want.document_number
                && m.date_of_birth == want.date_of_birth
                && m.date_of_expiry == want.date_of_expiry;
            format!(
                "{}(fail {} top {:.2})",
                if ok { "RIGHT" } else { "wrong" },
                m.checks.failed(),
                top
            )
        }
    }
}

/// The line recogniser's read of `lines` on `g`, judged against `want` ("len": a line's best path
/// has the wrong length, as the reader would drop it).
fn line_verdict(reader: &MrzReader, g: &Gray, lines: &[TextLine], want: &kycgate_mrz::parse::Mrz, today: Today) -> String {
    let c: Vec<Candidates> = lines.iter().map(|l| reader.read_line_ctc(g, l).alts).collect();
    if c.iter().zip(lines).any(|(c, l)| c.len() != l.len) {
        return "len".into();
    }
    verdict(decode::decode(&c, today).as_ref().map(|d| &d.mrz), want, mean_top(&c))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = eval_dir_from_args();
    let reader = MrzReader::new()?;
    let today = Today {
        year: 2026,
        month: 1,
        day: 1,
    };
    let gt = std::fs::read_to_string(dir.join("gt.tsv"))?;
    let only_scale = std::env::var_os("ORACLE_SCALE").is_some();
    for p in [Perturbation::Blur(1.5), Perturbation::Scale(0.5)] {
        if only_scale && matches!(p, Perturbation::Blur(_)) {
            continue;
        }
        println!("## {p}");
        for row in gt.lines().skip(1) {
            let cols: Vec<&str> = row.split('\t').collect();
            if cols.len() < 4 || cols[2].split('|').all(str::is_empty) {
                continue;
            }
            let truth: Vec<&str> = cols[2].split('|').filter(|s| !s.is_empty()).collect();
            let Ok(want) = parse(&truth, today) else {
                continue;
            };
            let img = image::open(dir.join(cols[0]))?.to_rgb8();
            let Ok(clean) = reader.read(&img, today) else {
                println!("{}: clean no read", cols[0]);
                continue;
            };
            let bad = p.apply(&img);
            let actual = match reader.read(&bad, today) {
                Ok(r) => verdict(Some(&r.mrz), &want, 0.0),
                Err(e) => format!("ERR {e}"),
            };
            let (gc, sc) = working_image(&ink_gray(&img), clean.rotation_deg);
            let (gb, sb) = working_image(&ink_gray(&bad), clean.rotation_deg);
            // The clean band whose line read decodes to the truth's document number.
            let band = find_bands(&gc).into_iter().find(|b| {
                let c: Vec<Candidates> = b
                    .lines
                    .iter()
                    .map(|l| reader.read_line_ctc(&gc, l).alts)
                    .collect();
                let cells: Vec<Candidates> = b
                    .lines
                    .iter()
                    .map(|l| reader.read_line_best(&gc, l))
                    .collect();
                [c, cells].iter().any(|c| {
                    decode::decode(c, today)
                        .is_some_and(|d| d.mrz.document_number == want.document_number)
                })
            });
            let Some(band) = band else {
                println!("{}: clean band not found again; actual {actual}", cols[0]);
                continue;
            };
            let shrink = if let Perturbation::Scale(f) = p {
                f
            } else {
                1.0
            };
            let k = sb * shrink / sc;
            let lines: Vec<TextLine> = band.lines.iter().map(|l| scaled_line(l, k)).collect();
            let ctc_v = line_verdict(&reader, &gb, &lines, &want, today);
            let cells: Vec<Candidates> = lines
                .iter()
                .map(|l| reader.read_line_best(&gb, l))
                .collect();
            let cell_v = verdict(
                decode::decode(&cells, today).as_ref().map(|d| &d.mrz),
                &want,
                mean_top(&cells),
            );
            let fb = find_bands(&gb);
            let found = fb.len();
            let mut retry = String::new();
            for b in fb.iter().take(2) {
                let maxcap = b.lines.iter().map(|l| l.cap).fold(0.0f32, f32::max);
                for f in [0.0f32, 1.0, 1.1, 1.2] {
                    let ls: Vec<TextLine> = b
                        .lines
                        .iter()
                        .map(|l| {
                            let mut m = l.clone();
                            if f > 0.0 {
                                m.cap = maxcap * f;
                            }
                            m
                        })
                        .collect();
                    let v = line_verdict(&reader, &gb, &ls, &want, today);
                    retry.push_str(&format!(" [{f}:{v}]"));
                }
            }
            if std::env::var_os("ORACLE_GEOM").is_some() {
                println!("-- {}", cols[0]);
                for l in &lines {
                    println!("   oracle line: origin ({:.1},{:.1}) pitch {:.2} cap {:.2} len {} angle {:.3}", l.origin.0, l.origin.1, l.pitch, l.cap, l.len, l.angle());
                }
                for b in &fb {
                    for l in &b.lines {
                        let r = reader.read_line_ctc(&gb, l);
                        println!("   found  line: origin ({:.1},{:.1}) pitch {:.2} cap {:.2} len {} angle {:.3} ctc len {} top {:.2}", l.origin.0, l.origin.1, l.pitch, l.cap, l.len, l.angle(), r.alts.len(), r.alts.iter().map(|a| a.first().map_or(0.0, |t| t.1)).sum::<f32>() / r.alts.len().max(1) as f32);
                    }
                }
            }
            println!("{:<44} {:>4}x{:<4} bands {found}  actual {actual:<26} oracle line {ctc_v:<26} cells {cell_v}\n     retry{retry}", cols[0], img.width(), img.height());
        }
    }
    Ok(())
}
