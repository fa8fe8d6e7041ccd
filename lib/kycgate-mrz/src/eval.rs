//! Accuracy of the MRZ reader over a labelled image set (`gt.tsv` + `images/`) and over real line crops (`lines_doubango/`).

use std::fmt;
use std::path::Path;
use std::time::Instant;

use image::RgbImage;

use crate::line::window_for_crop;
use crate::locate::{find_lines, Gray};
use crate::parse::{parse, Today};
use crate::read::{MrzReader, ReadError};

/// Counts over the full-image set and the line-crop set.
#[derive(Clone, Debug, Default)]
pub struct MrzReport {
    /// Images with an MRZ in the ground truth.
    pub positives: usize,
    /// Images labelled as having no MRZ.
    pub negatives: usize,
    /// Negatives correctly reported as having no MRZ.
    pub negatives_rejected: usize,
    /// Positives whose every line matched exactly.
    pub whole_exact: usize,
    /// Document number exact.
    pub doc_number: usize,
    /// Birth date exact.
    pub birth: usize,
    /// Expiry date exact.
    pub expiry: usize,
    /// Name field exact.
    pub names: usize,
    /// Nationality exact.
    pub nationality: usize,
    /// Sex exact.
    pub sex: usize,
    /// Document number, birth, expiry, names, nationality and sex all exact.
    pub key_fields: usize,
    /// Document number, birth and expiry all exact.
    pub num_birth_expiry: usize,
    /// Positives where "all check digits pass" agrees with the ground truth's.
    pub check_agree: usize,
    /// Positives with no read at all.
    pub no_read: usize,
    /// Mean wall time per image in milliseconds.
    pub ms_per_image: f64,
    /// Validation line crops evaluated (see [`is_validation_line`]).
    pub lines: usize,
    /// Validation line crops read exactly by the line recogniser.
    pub lines_exact: usize,
    /// Characters in the validation line crops.
    pub line_chars: usize,
    /// Characters read right by the line recogniser (length minus edit distance, at least 0).
    pub line_chars_ok: usize,
    /// Validation line crops whose document passes all check digits (the clean subset).
    pub clean_lines: usize,
    /// Clean validation line crops read exactly by the line recogniser.
    pub clean_lines_exact: usize,
    /// Validation line crops read exactly by the cell reader (the earlier recogniser).
    pub cell_lines_exact: usize,
    /// Characters read right by the cell reader (length minus edit distance).
    pub cell_line_chars_ok: usize,
    /// Clean validation line crops read exactly by the cell reader.
    pub cell_clean_lines_exact: usize,
    /// Positive image files whose read was not exact (names only; never their contents).
    pub misses: Vec<String>,
    /// Positive image files with no read at all (names only).
    pub no_reads: Vec<String>,
    /// Positive image files read with a wrong document number, birth or expiry date (names only):
    /// what a gateway must avoid more than a no-read.
    pub wrong_reads: Vec<String>,
}

/// The MRZ evaluation folder for the examples: the first argument, else `$KYCGATE_EVAL_DIR/mrz`,
/// else `../shared/eval/mrz` beside the repository.
pub fn eval_dir_from_args() -> std::path::PathBuf {
    use std::path::PathBuf;
    std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("KYCGATE_EVAL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/eval"))
            .join("mrz")
    })
}

/// A reader with the embedded weights, or the files named by `MRZ_MODEL` (cells) and
/// `MRZ_LINE_MODEL` (lines) when set: retrained models under evaluation.
pub fn reader_from_env() -> Result<MrzReader, Box<dyn std::error::Error>> {
    let cell = std::env::var_os("MRZ_MODEL").map(std::fs::read).transpose()?;
    let line = std::env::var_os("MRZ_LINE_MODEL").map(std::fs::read).transpose()?;
    Ok(MrzReader::with_models(cell.as_deref(), line.as_deref())?)
}

/// Runs the reader over `eval_dir/gt.tsv` (+ `images/`) and `eval_dir/lines_doubango/` (when present).
pub fn eval_mrz(eval_dir: &Path, reader: &MrzReader, today: Today) -> std::io::Result<MrzReport> {
    let mut rep = eval_pages(eval_dir, reader, today, |img| img)?;
    let lines_dir = eval_dir.join("lines_doubango");
    if lines_dir.is_dir() {
        eval_lines(&lines_dir, reader, &mut rep)?;
    }
    Ok(rep)
}

/// Which pages of `gt.tsv` an evaluation reads. Locator changes are tuned on one half of the pages
/// and checked on the other, so a gain that only holds where it was tuned shows up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSet {
    /// Every page.
    All,
    /// Pages with an MRZ at even positions of the sorted file names, and every negative page.
    Tune,
    /// Pages with an MRZ at odd positions of the sorted file names, and every negative page.
    HeldOut,
}

impl PageSet {
    /// `MRZ_PAGES=tune|held` (anything else, or unset: all pages).
    pub fn from_env() -> Self {
        match std::env::var("MRZ_PAGES").as_deref() {
            Ok("tune") => Self::Tune,
            Ok("held") => Self::HeldOut,
            _ => Self::All,
        }
    }

    /// Whether the page `file` (an MRZ page when `positive`) is in this set; `sorted` lists every
    /// MRZ page's file name, sorted.
    fn keeps(self, file: &str, positive: bool, sorted: &[&str]) -> bool {
        let pos = sorted.iter().position(|f| *f == file);
        match (self, positive, pos) {
            (Self::All, _, _) | (_, false, _) => true,
            (Self::Tune, true, Some(i)) => i % 2 == 0,
            (Self::HeldOut, true, Some(i)) => i % 2 == 1,
            (_, true, None) => false,
        }
    }
}

/// Runs the reader over the pages of `eval_dir/gt.tsv`, each first passed through `prepare` (a
/// [`crate::perturb::Perturbation`], or nothing).
pub fn eval_pages(
    eval_dir: &Path,
    reader: &MrzReader,
    today: Today,
    prepare: impl Fn(RgbImage) -> RgbImage,
) -> std::io::Result<MrzReport> {
    eval_page_set(eval_dir, reader, today, PageSet::All, prepare)
}

/// [`eval_pages`] over the pages of `set` only.
pub fn eval_page_set(
    eval_dir: &Path,
    reader: &MrzReader,
    today: Today,
    set: PageSet,
    prepare: impl Fn(RgbImage) -> RgbImage,
) -> std::io::Result<MrzReport> {
    let gt = std::fs::read_to_string(eval_dir.join("gt.tsv"))?;
    let rows: Vec<Vec<&str>> = gt.lines().skip(1).map(|r| r.split('\t').collect::<Vec<&str>>()).filter(|c| c.len() >= 4).collect();
    let mut sorted: Vec<&str> = rows.iter().filter(|c| !c[2].split('|').all(str::is_empty)).map(|c| c[0]).collect();
    sorted.sort_unstable();
    let mut rep = MrzReport::default();
    let mut total_ms = 0.0;
    let mut images = 0usize;
    for cols in &rows {
        let positive = !cols[2].split('|').all(str::is_empty);
        if !set.keeps(cols[0], positive, &sorted) {
            continue;
        }
        let Ok(img) = image::open(eval_dir.join(cols[0])) else {
            return Err(std::io::Error::other(format!("cannot decode {}", cols[0])));
        };
        let img = prepare(img.to_rgb8());
        let truth: Vec<String> = cols[2].split('|').filter(|s| !s.is_empty()).map(str::to_owned).collect();
        let truth_pass = cols[3].eq_ignore_ascii_case("true");
        let t0 = Instant::now();
        let got = reader.read(&img, today);
        total_ms += t0.elapsed().as_secs_f64() * 1000.0;
        images += 1;
        if truth.is_empty() {
            rep.negatives += 1;
            if matches!(got, Err(ReadError::NotFound | ReadError::Unreadable)) {
                rep.negatives_rejected += 1;
            }
            continue;
        }
        rep.positives += 1;
        let read = match &got {
            Ok(r) => &r.mrz,
            Err(_) => {
                rep.no_read += 1;
                rep.misses.push(cols[0].to_owned());
                rep.no_reads.push(cols[0].to_owned());
                continue;
            }
        };
        if read.lines == truth {
            rep.whole_exact += 1;
        } else {
            rep.misses.push(cols[0].to_owned());
        }
        let truth_refs: Vec<&str> = truth.iter().map(String::as_str).collect();
        // Ground truth that does not even parse counts every field as missed.
        let Ok(want) = parse(&truth_refs, today) else { continue };
        let same_format = read.format == want.format;
        let doc = same_format && read.document_number == want.document_number;
        let birth = same_format && read.date_of_birth == want.date_of_birth;
        let expiry = same_format && read.date_of_expiry == want.date_of_expiry;
        rep.doc_number += usize::from(doc);
        rep.birth += usize::from(birth);
        rep.expiry += usize::from(expiry);
        let names = read.surname == want.surname && read.given_names == want.given_names;
        let nationality = read.nationality == want.nationality;
        let sex = read.sex == want.sex;
        rep.names += usize::from(names);
        rep.nationality += usize::from(nationality);
        rep.sex += usize::from(sex);
        rep.key_fields += usize::from(doc && birth && expiry && names && nationality && sex);
        rep.num_birth_expiry += usize::from(doc && birth && expiry);
        if !(doc && birth && expiry) {
            rep.wrong_reads.push(cols[0].to_owned());
        }
        rep.check_agree += usize::from(read.valid == truth_pass);
    }
    rep.ms_per_image = if images > 0 { total_ms / images as f64 } else { 0.0 };
    Ok(rep)
}

/// The validation part of the by-document `lines_doubango` split (`tools/mrz-train/split_lines.py`):
/// the line recogniser was trained on the other part, so only these lines are scored.
static LINE_SPLIT: &str = include_str!("../eval/lines_split.tsv");

/// Whether a `lines_doubango` crop is in the validation part.
pub fn is_validation_line(file: &str) -> bool {
    LINE_SPLIT.lines().any(|row| row.strip_prefix("val\t") == Some(file))
}

/// Line-level accuracy on the validation crops, for both recognisers: the line recogniser reads the
/// whole crop; the cell reader finds the one text line and reads `gt.len()` positions from its start.
fn eval_lines(dir: &Path, reader: &MrzReader, rep: &mut MrzReport) -> std::io::Result<()> {
    let labels = std::fs::read_to_string(dir.join("labels.tsv"))?;
    let val: std::collections::HashSet<&str> =
        LINE_SPLIT.lines().filter_map(|row| row.strip_prefix("val\t")).collect();
    for row in labels.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        if cols.len() < 5 || !val.contains(cols[0]) {
            continue;
        }
        let truth = cols[1].trim();
        if truth.is_empty() {
            continue;
        }
        let img = image::open(dir.join(cols[0])).map_err(|e| std::io::Error::other(format!("{}: {e}", cols[0])))?;
        let g = Gray::from_image(&img.to_luma8());
        let cells = find_lines(&g)
            .into_iter()
            .max_by_key(|l| l.len)
            .map(|mut l| {
                l.len = truth.len();
                reader.read_line_best(&g, &l).iter().map(|alts| alts.first().map_or('?', |a| a.0)).collect::<String>()
            })
            .unwrap_or_default();
        let whole = window_for_crop(&g).map(|w| reader.line_recognizer().read(&w).text).unwrap_or_default();
        let clean = cols[4] == "all_checks_pass";
        let n = truth.len();
        rep.lines += 1;
        rep.clean_lines += usize::from(clean);
        rep.line_chars += n;
        rep.line_chars_ok += n.saturating_sub(edit_distance(truth, &whole));
        rep.cell_line_chars_ok += n.saturating_sub(edit_distance(truth, &cells));
        if whole == truth {
            rep.lines_exact += 1;
            rep.clean_lines_exact += usize::from(clean);
        }
        if cells == truth {
            rep.cell_lines_exact += 1;
            rep.cell_clean_lines_exact += usize::from(clean);
        }
    }
    Ok(())
}

/// Levenshtein distance between two ASCII strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn pct(n: usize, d: usize) -> String {
    if d == 0 {
        "-".to_owned()
    } else {
        format!("{:5.1}% ({n}/{d})", 100.0 * n as f64 / d as f64)
    }
}

impl fmt::Display for MrzReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.positives;
        writeln!(f, "{:<36} {}", "metric", "value")?;
        writeln!(f, "{:<36} {}", "whole MRZ exact", pct(self.whole_exact, p))?;
        writeln!(f, "{:<36} {}", "document number exact", pct(self.doc_number, p))?;
        writeln!(f, "{:<36} {}", "birth date exact", pct(self.birth, p))?;
        writeln!(f, "{:<36} {}", "expiry date exact", pct(self.expiry, p))?;
        writeln!(f, "{:<36} {}", "names exact", pct(self.names, p))?;
        writeln!(f, "{:<36} {}", "nationality exact", pct(self.nationality, p))?;
        writeln!(f, "{:<36} {}", "sex exact", pct(self.sex, p))?;
        writeln!(f, "{:<36} {}", "doc number + birth + expiry exact", pct(self.num_birth_expiry, p))?;
        writeln!(f, "{:<36} {}", "all key fields exact", pct(self.key_fields, p))?;
        writeln!(f, "{:<36} {}", "check-digit verdict agrees", pct(self.check_agree, p))?;
        writeln!(f, "{:<36} {}", "images with no read", pct(self.no_read, p))?;
        writeln!(f, "{:<36} {}", "negatives rejected", pct(self.negatives_rejected, self.negatives))?;
        writeln!(f, "{:<36} {:.0}", "ms per image", self.ms_per_image)?;
        writeln!(f, "{:<36} {}", "val lines: line exact", pct(self.lines_exact, self.lines))?;
        writeln!(f, "{:<36} {}", "val lines: char accuracy", pct(self.line_chars_ok, self.line_chars))?;
        writeln!(f, "{:<36} {}", "val lines clean: line exact", pct(self.clean_lines_exact, self.clean_lines))?;
        writeln!(f, "{:<36} {}", "val lines, cell reader: line exact", pct(self.cell_lines_exact, self.lines))?;
        writeln!(f, "{:<36} {}", "val lines, cell reader: char acc.", pct(self.cell_line_chars_ok, self.line_chars))?;
        writeln!(f, "{:<36} {}", "val lines clean, cell reader: exact", pct(self.cell_clean_lines_exact, self.clean_lines))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sets_split_positives_and_share_negatives() {
        let sorted = ["a", "b", "c"];
        let keeps = |set: PageSet| ["a", "b", "c"].iter().filter(|f| set.keeps(f, true, &sorted)).count();
        assert_eq!((keeps(PageSet::All), keeps(PageSet::Tune), keeps(PageSet::HeldOut)), (3, 2, 1));
        assert!(PageSet::Tune.keeps("b", true, &sorted) != PageSet::HeldOut.keeps("b", true, &sorted));
        assert!(PageSet::HeldOut.keeps("neg", false, &sorted) && PageSet::Tune.keeps("neg", false, &sorted));
    }

    #[test]
    fn percentages_format() {
        assert_eq!(pct(1, 4), " 25.0% (1/4)");
        assert_eq!(pct(0, 0), "-");
    }

    #[test]
    fn edit_distance_counts_insertions_and_substitutions() {
        assert_eq!(edit_distance("P<UTO", "P<UTO"), 0);
        assert_eq!(edit_distance("P<UTO", "P<<UTO"), 1);
        assert_eq!(edit_distance("P<UTO", "P<UT0"), 1);
        assert_eq!(edit_distance("", "AB"), 2);
    }

    #[test]
    fn split_is_by_document_and_about_a_quarter() {
        let rows: Vec<(&str, &str)> = LINE_SPLIT.lines().filter_map(|r| r.split_once('\t')).collect();
        let val = rows.iter().filter(|r| r.0 == "val").count();
        assert!(rows.len() > 1000 && val * 5 > rows.len() && val * 3 < rows.len(), "{val} of {}", rows.len());
        // Lines of one document (name before `-N.tif`) never straddle the split.
        let doc = |f: &str| f.rsplit_once('-').map_or(f, |d| d.0).to_owned();
        let mut side = std::collections::HashMap::new();
        for (part, file) in &rows {
            assert_eq!(*side.entry(doc(file)).or_insert(*part), *part, "{file}");
        }
    }
}
