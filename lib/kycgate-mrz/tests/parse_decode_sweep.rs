//! Decoder sweep over the shared-eval ground truth: every check-covered character misread (truth as
//! second alternative) must be repaired; every name/sex/nationality misread must be left as read.

use std::path::PathBuf;

use kycgate_mrz::checks::{layout, Span};
use kycgate_mrz::decode::{decode, Candidates};
use kycgate_mrz::parse::{parse, Today};

const TODAY: Today = Today { year: 2025, month: 6, day: 1 };

/// `$KYCGATE_EVAL_DIR` or `../shared/eval` from the repository root.
fn eval_dir() -> PathBuf {
    std::env::var_os("KYCGATE_EVAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/eval"))
}

/// MRZs from gt.tsv whose check digits all pass.
fn valid_ground_truth() -> Vec<Vec<String>> {
    let path = eval_dir().join("mrz/gt.tsv");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (set KYCGATE_EVAL_DIR)", path.display()));
    text.lines()
        .skip(1)
        .filter_map(|row| {
            let cols: Vec<&str> = row.split('\t').collect();
            (cols.get(3) == Some(&"True")).then(|| cols[2].split('|').map(str::to_owned).collect())
        })
        .collect()
}

/// A misreading of `c` that its check digit is guaranteed to notice (value changes by 1).
fn misread(c: u8) -> u8 {
    match c {
        b'<' => b'1',
        b'9' => b'8',
        b'Z' => b'Y',
        c => c + 1,
    }
}

/// Confident candidates for `lines`, with position (l, col) read as `wrong` (0.6) over the truth (0.3).
fn with_error(lines: &[String], l: usize, col: usize, wrong: u8) -> Vec<Candidates> {
    let mut out: Vec<Candidates> = lines.iter().map(|s| s.chars().map(|c| vec![(c, 0.98)]).collect()).collect();
    let truth = char::from(lines[l].as_bytes()[col]);
    out[l][col] = vec![(char::from(wrong), 0.6), (truth, 0.3)];
    out
}

fn cells(spans: &[Span]) -> Vec<(usize, usize)> {
    spans.iter().flat_map(|s| (s.start..s.end).map(move |c| (s.line, c))).collect()
}

#[test]
fn single_errors_in_checked_fields_are_repaired() {
    let mut tried = 0;
    let mut failures = Vec::new();
    for lines in valid_ground_truth() {
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let format = parse(&refs, TODAY).expect("ground truth parses").format;
        let lay = layout(format);
        let mut spans = vec![
            lay.document_number,
            lay.document_number_check,
            lay.date_of_birth,
            lay.date_of_birth_check,
            lay.date_of_expiry,
            lay.date_of_expiry_check,
        ];
        if let Some((d, c)) = lay.personal_number {
            spans.extend([d, c]);
        }
        if let Some((covered, c)) = lay.composite {
            spans.extend_from_slice(covered);
            spans.push(c);
        }
        let mut positions = cells(&spans);
        positions.sort_unstable();
        positions.dedup();
        for (l, col) in positions {
            tried += 1;
            let wrong = misread(lines[l].as_bytes()[col]);
            let d = decode(&with_error(&lines, l, col, wrong), TODAY).expect("decodes");
            if d.mrz.lines != lines || !d.mrz.valid || d.corrected != 1 {
                failures.push(format!("{format:?} line {l} col {col}"));
            }
        }
    }
    assert!(tried > 1000, "only {tried} positions tried");
    assert!(failures.is_empty(), "{} of {tried} not repaired: {failures:?}", failures.len());
}

#[test]
fn names_sex_and_nationality_are_never_repaired() {
    let mut tried = 0;
    for lines in valid_ground_truth() {
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let truth = parse(&refs, TODAY).expect("ground truth parses");
        let lay = layout(truth.format);
        for (l, col) in cells(&[lay.name, lay.sex, lay.nationality]) {
            let c = lines[l].as_bytes()[col];
            // A same-class misreading: letter for letter, M for F and back.
            let wrong = match c {
                b'M' if (l, col) == (lay.sex.line, lay.sex.start) => b'F',
                b'F' if (l, col) == (lay.sex.line, lay.sex.start) => b'M',
                b'<' => b'K',
                b'Z' => b'Y',
                b'A'..=b'Y' => c + 1,
                // Digits in a nationality (old Romanian ID) stay out of this sweep.
                _ => continue,
            };
            tried += 1;
            let d = decode(&with_error(&lines, l, col, wrong), TODAY).expect("decodes");
            assert_eq!(d.mrz.lines[l].as_bytes()[col], wrong, "{:?} line {l} col {col} was changed", truth.format);
            assert_eq!(d.corrected, 0);
            assert_eq!(d.mrz.checks, truth.checks, "check results do not depend on names");
        }
    }
    assert!(tried > 1000, "only {tried} positions tried");
}

/// Small deterministic generator (PCG-style LCG) so the sweep is reproducible without a dependency.
struct Lcg(std::cell::Cell<u64>);

impl Lcg {
    fn below(&self, n: usize) -> usize {
        let s = self.0.get().wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0.set(s);
        ((s >> 33) as usize) % n
    }
}

/// `c` shifted by `k` within its kind (digits stay digits, letters letters; `<` becomes a digit).
fn shifted(c: u8, k: u8) -> u8 {
    match c {
        b'<' => b'0' + k % 10,
        b'0'..=b'9' => b'0' + (c - b'0' + k) % 10,
        _ => b'A' + (c - b'A' + k) % 26,
    }
}

#[test]
fn random_errors_with_realistic_alternatives() {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789<";
    let rng = Lcg(std::cell::Cell::new(12_345));
    // Every position: top 0.97 plus two random low alternatives (0.02, 0.01), like a softmax top-3.
    let base = |lines: &[String]| -> Vec<Candidates> {
        lines
            .iter()
            .map(|s| {
                s.chars()
                    .map(|c| {
                        let (x, y) = (char::from(ALPHABET[rng.below(37)]), char::from(ALPHABET[rng.below(37)]));
                        let mut v = vec![(c, 0.97)];
                        if x != c {
                            v.push((x, 0.02));
                        }
                        if y != c && y != x {
                            v.push((y, 0.01));
                        }
                        v
                    })
                    .collect()
            })
            .collect()
    };
    let (mut two_ok, mut third_ok, mut false_valid, mut n) = (0, 0, 0, 0);
    for lines in valid_ground_truth() {
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let lay = layout(parse(&refs, TODAY).expect("parses").format);
        let mut spans = vec![
            lay.document_number,
            lay.document_number_check,
            lay.date_of_birth,
            lay.date_of_birth_check,
            lay.date_of_expiry,
            lay.date_of_expiry_check,
        ];
        if let Some((d, c)) = lay.personal_number {
            spans.extend([d, c]);
        }
        if let Some((covered, c)) = lay.composite {
            spans.extend_from_slice(covered);
            spans.push(c);
        }
        let mut pos = cells(&spans);
        pos.sort_unstable();
        pos.dedup();
        let truth = |(l, c): (usize, usize)| lines[l].as_bytes()[c];
        for _ in 0..100 {
            n += 1;
            // Two misreads in checked fields, truth second (0.35 under 0.55).
            let mut cand = base(&lines);
            let p1 = pos[rng.below(pos.len())];
            let mut p2 = pos[rng.below(pos.len())];
            while p2 == p1 {
                p2 = pos[rng.below(pos.len())];
            }
            for p in [p1, p2] {
                let (t, k) = (truth(p), 1 + rng.below(8) as u8);
                cand[p.0][p.1] = vec![
                    (char::from(shifted(t, k)), 0.55),
                    (char::from(t), 0.35),
                    (char::from(shifted(t, k + 1)), 0.1),
                ];
            }
            two_ok += usize::from(decode(&cand, TODAY).expect("decodes").mrz.lines == lines);
            // One misread, truth third (0.2 under 0.5 and 0.3).
            let mut cand = base(&lines);
            let p = pos[rng.below(pos.len())];
            let (t, k) = (truth(p), 1 + rng.below(7) as u8);
            cand[p.0][p.1] =
                vec![(char::from(shifted(t, k)), 0.5), (char::from(shifted(t, k + 1)), 0.3), (char::from(t), 0.2)];
            third_ok += usize::from(decode(&cand, TODAY).expect("decodes").mrz.lines == lines);
            // One misread with the truth not offered at all: must not come out valid and wrong.
            let mut cand = base(&lines);
            let p = pos[rng.below(pos.len())];
            let (t, k) = (truth(p), 1 + rng.below(7) as u8);
            cand[p.0][p.1] = vec![(char::from(shifted(t, k)), 0.6), (char::from(shifted(t, k + 1)), 0.3)];
            let d = decode(&cand, TODAY).expect("decodes");
            false_valid += usize::from(d.mrz.valid && d.mrz.lines != lines);
        }
    }
    let rate = |k: usize| k as f64 / n as f64;
    println!(
        "{n} trials: two errors repaired {:.3}, truth-third repaired {:.3}, unrepairable read wrong-but-valid {:.4}",
        rate(two_ok),
        rate(third_ok),
        rate(false_valid)
    );
    assert!(rate(two_ok) >= 0.95, "two-error repair rate {}", rate(two_ok));
    assert!(rate(third_ok) >= 0.99, "third-alternative repair rate {}", rate(third_ok));
    assert!(rate(false_valid) <= 0.01, "wrong-but-valid rate {}", rate(false_valid));
}
