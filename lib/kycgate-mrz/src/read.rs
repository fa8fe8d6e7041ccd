//! Photo → parsed MRZ: tries 0°, 180°, 90° and 270°, locates candidate bands, recognises every position and lets the check-digit decoder choose.

use image::{imageops, GrayImage, RgbImage};

use crate::decode::{self, Candidates};
use crate::line::{window_for_line, LineRead, LineRecognizer};
use crate::locate::{find_bands, find_bands_merged, Band, Gray, TextLine};
use crate::ocr::{read_line_sheared, CharClassifier, ModelError};
use crate::segment::fit_grid;
use crate::parse::{Mrz, Today};

/// Why no MRZ came out of an image.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// No band of MRZ-like text lines was found at any rotation.
    #[error("no machine-readable zone found")]
    NotFound,
    /// A band was found but no reading of it satisfied the MRZ layout and check digits.
    #[error("machine-readable zone found but could not be read")]
    Unreadable,
    /// The embedded recogniser weights are unusable.
    #[error("recogniser model: {0}")]
    Model(#[from] ModelError),
}

/// A successful read.
#[derive(Clone, Debug)]
pub struct MrzRead {
    /// The parsed zone.
    pub mrz: Mrz,
    /// Decoder confidence in 0..=1 (product-like score of the chosen alternatives).
    pub confidence: f32,
    /// Clockwise rotation applied to the input before the zone read upright: 0, 90, 180 or 270.
    pub rotation_deg: u16,
    /// Band box `[x, y, w, h]` in the input image's pixels.
    pub band: [u32; 4],
}

/// Reads MRZs from photos with the embedded line and character models; cheap to share across threads.
pub struct MrzReader {
    clf: CharClassifier,
    lines: LineRecognizer,
    /// Whether whole-line reads take part ([`MrzReader::cells_only`] turns them off).
    use_lines: bool,
}

/// Bands tried per rotation, most plausible first.
const MAX_BANDS: usize = 6;
/// Mean top-1 probability below which a band is not treated as MRZ text at all.
const MRZ_LIKE_CONFIDENCE: f32 = 0.6;
/// A reading that fails any check digit is returned only when the recogniser is this sure of every
/// line on average: then the text is what is printed and the failing digits are the document's own
/// (specimens are printed with bad ones), reported as such. A less sure reading failing digits is a
/// misread (on a correctly printed document any failing digit means a wrong field), and a KYC
/// gateway must not trade "no read" for a wrong read.
const SURE_READ: f32 = 0.97;
/// Ranking weight of the recogniser's mean top-1 probability, in check digits per unit: 0.1 of mean
/// top-1 weighs as much as one failing check digit.
const TOP_WEIGHT: f32 = 10.0;
/// Top-1 probability at which a cell counts as cleanly read.
const SURE_CHAR: f32 = 0.9;
/// Cell slants tried when a band fails its check digits (along-line shift per unit across).
const SHEARS: [f32; 2] = [-0.2, 0.2];
/// ln-probability a slanted reading of a line must gain to replace the upright one.
const SHEAR_MARGIN: f32 = 0.5;
/// Working images are scaled so their longer side is at least this many pixels.
const MIN_WORK_SIDE: f32 = 1000.0;
/// ... and at most this many.
const MAX_WORK_SIDE: f32 = 2000.0;

impl MrzReader {
    /// Loads the embedded weights.
    pub fn new() -> Result<Self, ReadError> {
        Ok(Self { clf: CharClassifier::embedded()?, lines: LineRecognizer::embedded()?, use_lines: true })
    }

    /// Uses another `MRZCNN01` character weight file (a retrained model under evaluation).
    pub fn with_model(bytes: &[u8]) -> Result<Self, ReadError> {
        Ok(Self { clf: CharClassifier::from_bytes(bytes)?, lines: LineRecognizer::embedded()?, use_lines: true })
    }

    /// Uses other weight files: `cell` (`MRZCNN01`) and/or `line` (`MRZCTC01`); `None` keeps the embedded one.
    pub fn with_models(cell: Option<&[u8]>, line: Option<&[u8]>) -> Result<Self, ReadError> {
        Ok(Self {
            clf: cell.map_or_else(CharClassifier::embedded, CharClassifier::from_bytes)?,
            lines: line.map_or_else(LineRecognizer::embedded, LineRecognizer::from_bytes)?,
            use_lines: true,
        })
    }

    /// The earlier reader: character grid and per-cell CNN only, for before/after comparisons.
    pub fn cells_only(mut self) -> Self {
        self.use_lines = false;
        self
    }

    /// The character recogniser, for line-level evaluation.
    pub fn classifier(&self) -> &CharClassifier {
        &self.clf
    }

    /// The line recogniser, for line-level evaluation.
    pub fn line_recognizer(&self) -> &LineRecognizer {
        &self.lines
    }

    /// Reads a located line whole with the line recogniser.
    pub fn read_line_ctc(&self, g: &Gray, line: &TextLine) -> LineRead {
        self.lines.read(&window_for_line(g, line))
    }

    /// The band read by the line recogniser, as decoder candidates: `None` when a line's best path
    /// has the wrong length (the cell reading then stands alone).
    fn read_band_ctc(&self, g: &Gray, band: &[TextLine]) -> Option<Vec<Candidates>> {
        if !self.use_lines {
            return None;
        }
        band.iter()
            .map(|l| {
                let r = self.read_line_ctc(g, l);
                (r.alts.len() == l.len).then_some(r.alts)
            })
            .collect()
    }

    /// Reads a line on the blob-chain grid and on the profile-fitted grid and keeps the reading the
    /// recogniser is surer of: the fitted grid fixes drift and uneven print, the blob grid is safer
    /// where the profile is noisy (low resolution, backgrounds touching the line).
    pub fn read_line_best(&self, g: &Gray, line: &TextLine) -> Candidates {
        self.read_line_best_sheared(g, line, 0.0)
    }

    fn read_line_best_sheared(&self, g: &Gray, line: &TextLine, shear: f32) -> Candidates {
        let a = read_line_sheared(g, line, &self.clf, shear);
        if a.iter().all(|alts| alts.first().is_some_and(|t| t.1 >= SURE_CHAR)) {
            // Every cell already reads cleanly: the blob grid is right, save the second pass.
            return a;
        }
        let fitted = fit_grid(g, line);
        if fitted.origin == line.origin && fitted.shifts.is_empty() {
            return a;
        }
        let b = read_line_sheared(g, &fitted, &self.clf, shear);
        if line_score(&b) > line_score(&a) {
            b
        } else {
            a
        }
    }

    /// Photographed at an angle, upright strokes lean: rereads the best band with slanted cells, line
    /// by line where the recogniser is clearly surer, and keeps the result if it fails fewer checks.
    fn retry_slanted(&self, b: &mut Best, today: Today) {
        let (g, band, lines) = &b.retry;
        let mut lines = lines.clone();
        for shear in SHEARS {
            for (l, cur) in band.iter().zip(lines.iter_mut()) {
                let c = self.read_line_best_sheared(g, l, shear);
                if line_score(&c) > line_score(cur) + SHEAR_MARGIN {
                    *cur = c;
                }
            }
        }
        let Some(d) = decode::decode(&lines, today) else { return };
        let failed = d.mrz.checks.failed();
        let top = mean_top(&lines);
        if rank(failed, top) < rank(b.failed, b.top) {
            b.failed = failed;
            b.top = top;
            b.sure = top >= SURE_READ;
            b.read.mrz = d.mrz;
            b.read.confidence = d.confidence;
        }
    }

    /// Second pass for print the glyph locator cannot separate (blurred, or a few pixels high):
    /// bands from [`find_bands_merged`], read by the line recogniser alone (the cell reader needs
    /// the glyph grid this print lacks). A reading satisfying every check digit is returned at
    /// once; a sure one failing digits competes with `best` by [`rank`], as in the first pass.
    fn read_merged(&self, pages: &[(u16, Gray, f32)], (w0, h0): (u32, u32), today: Today, best: &mut Option<Best>, found_band: &mut bool) -> Option<MrzRead> {
        if !self.use_lines {
            return None;
        }
        // A page turned by 180° has the same merged lines, turned: located once per axis.
        let mut upright: Vec<(u16, Vec<Band>)> = Vec::with_capacity(2);
        for &(rot, ref g, scale) in pages {
            let bands = match upright.iter().find(|(r, _)| (r + 180) % 360 == rot) {
                Some((_, b)) => b.iter().map(|b| b.turned(g.w, g.h)).collect(),
                None => {
                    let b: Vec<Band> = find_bands_merged(g).into_iter().take(MAX_BANDS).collect();
                    upright.push((rot, b.clone()));
                    b
                }
            };
            for band in bands {
                let Some(c) = self.read_band_ctc(g, &band.lines) else { continue };
                let Some(d) = decode::decode(&c, today) else { continue };
                let (failed, top) = (d.mrz.checks.failed(), mean_top(&c));
                // As in the first pass: only print read like MRZ text makes "found but unreadable".
                *found_band |= top >= MRZ_LIKE_CONFIDENCE;
                let read = MrzRead { mrz: d.mrz, confidence: d.confidence, rotation_deg: rot, band: band_in_input(band.bbox, scale, rot, w0, h0) };
                if failed == 0 {
                    return Some(read);
                }
                let better = top >= SURE_READ && best.as_ref().is_none_or(|b| rank(failed, top) < rank(b.failed, b.top));
                if better {
                    let retry = (g.clone(), band.lines.clone(), c);
                    *best = Some(Best { failed, top, sure: true, read, retry });
                }
            }
        }
        None
    }

    /// Finds and reads the MRZ in `img`; `today` resolves two-digit years.
    pub fn read(&self, img: &RgbImage, today: Today) -> Result<MrzRead, ReadError> {
        let gray: GrayImage = ink_gray(img);
        let (w0, h0) = gray.dimensions();
        let mut found_band = false;
        let mut best: Option<Best> = None;
        // Working images kept for the second pass (only reached when this one returns nothing):
        // at most four, 11 MB each at the 2000 px cap, against recomputing them (about 60 ms a photo).
        let mut pages: Vec<(u16, Gray, f32)> = Vec::with_capacity(4);
        for rot in [0u16, 180, 90, 270] {
            let (g, scale) = working_image(&gray, rot);
            for band in find_bands(&g).into_iter().take(MAX_BANDS) {
                let bbox = band_in_input(band.bbox, scale, rot, w0, h0);
                // The line recogniser first: a whole-line read that satisfies every check digit is final.
                let ctc = self.read_band_ctc(&g, &band.lines);
                let ctc_read = ctc.as_ref().and_then(|c| decode::decode(c, today).map(|d| (d, mean_top(c))));
                if let Some((d, _)) = ctc_read.as_ref().filter(|(d, _)| d.mrz.checks.failed() == 0) {
                    return Ok(MrzRead { mrz: d.mrz.clone(), confidence: d.confidence, rotation_deg: rot, band: bbox });
                }
                let lines: Vec<Candidates> = band.lines.iter().map(|l| self.read_line_best(&g, l)).collect();
                let cell_top = mean_top(&lines);
                // Text the cell reader finds unlike MRZ print is not an MRZ, whatever a line read makes of it.
                if cell_top < MRZ_LIKE_CONFIDENCE {
                    continue;
                }
                found_band = true;
                let cell_read = decode::decode(&lines, today).map(|d| (d, cell_top));
                for (d, top) in [cell_read, ctc_read].into_iter().flatten() {
                    let failed = d.mrz.checks.failed();
                    let read = MrzRead { mrz: d.mrz, confidence: d.confidence, rotation_deg: rot, band: bbox };
                    if failed == 0 {
                        return Ok(read);
                    }
                    // Keep the best reading by [`rank`]: a sure one (returnable with failing digits, as
                    // specimens print wrong ones) before any unsure one, then by failing digits weighed
                    // against the recogniser's confidence, so a smudge or a garbage band that happens
                    // to fail fewer digits never beats a confident read of the zone.
                    let sure = top >= SURE_READ;
                    let better = best.as_ref().is_none_or(|b| {
                        let (mine, theirs) = (rank(failed, top), rank(b.failed, b.top));
                        mine < theirs || (mine == theirs && read.confidence > b.read.confidence)
                    });
                    if better {
                        let retry = (g.clone(), band.lines.clone(), lines.clone());
                        best = Some(Best { failed, top, sure, read, retry });
                    }
                }
            }
            pages.push((rot, g, scale));
        }
        if let Some(b) = best.as_mut() {
            self.retry_slanted(b, today);
        }
        if !best.as_ref().is_some_and(|b| b.failed == 0 || b.sure) {
            // Nothing returnable: the print may be too blurred or too small for glyph blobs.
            if let Some(read) = self.read_merged(&pages, (w0, h0), today, &mut best, &mut found_band) {
                return Ok(read);
            }
        }
        match best {
            // An unsure reading failing check digits is not returned (see [`SURE_READ`]).
            Some(b) if b.failed == 0 || b.sure => Ok(b.read),
            Some(_) => Err(ReadError::Unreadable),
            None if found_band => Err(ReadError::Unreadable),
            None => Err(ReadError::NotFound),
        }
    }
}

/// The page turned clockwise by `rot` (0, 90, 180 or 270) and scaled so that its longer side is
/// at least [`MIN_WORK_SIDE`] (at most 4× up) and at most [`MAX_WORK_SIDE`]: the image bands are
/// searched and read in, with the scale used.
pub fn working_image(gray: &GrayImage, rot: u16) -> (Gray, f32) {
    let rotated = match rot {
        90 => imageops::rotate90(gray),
        180 => imageops::rotate180(gray),
        270 => imageops::rotate270(gray),
        _ => gray.clone(),
    };
    let g = Gray::from_image(&rotated);
    let side = g.w.max(g.h) as f32;
    let scale = if side < MIN_WORK_SIDE {
        (MIN_WORK_SIDE / side).min(4.0)
    } else if side > MAX_WORK_SIDE {
        MAX_WORK_SIDE / side
    } else {
        1.0
    };
    (if (scale - 1.0).abs() > 1e-3 { g.scaled(scale) } else { g }, scale)
}

/// Brightest channel per pixel: MRZ ink is black, so coloured security print, stamps and overlays
/// turn light while the characters stay dark.
pub fn ink_gray(img: &RgbImage) -> GrayImage {
    let (w, h) = img.dimensions();
    GrayImage::from_fn(w, h, |x, y| {
        let p = img.get_pixel(x, y).0;
        image::Luma([p[0].max(p[1]).max(p[2])])
    })
}

/// The reading failing the fewest check digits so far, with what is needed to reread it.
struct Best {
    failed: usize,
    /// Mean top-1 probability of the reading's recogniser over the band.
    top: f32,
    /// The recogniser is sure of the text (see [`SURE_READ`]).
    sure: bool,
    read: MrzRead,
    /// Working image, band lines and their readings.
    retry: (Gray, Vec<TextLine>, Vec<Candidates>),
}

/// Ranks readings, lower first: returnable ones (every check digit holds, or the recogniser is sure,
/// see [`SURE_READ`]) before the rest, then failing check digits plus [`TOP_WEIGHT`] per unit of
/// mean top-1 below 1. A garbage band failing 2 digits at mean top-1 0.7 (doubt 5) thus loses to the
/// zone read as printed failing 3 at 0.92 (doubt 3.8), and no unsure reading beats a sure one.
fn rank(failed: usize, top: f32) -> (bool, f32) {
    let returnable = failed == 0 || top >= SURE_READ;
    (!returnable, failed as f32 + TOP_WEIGHT * (1.0 - top.clamp(0.0, 1.0)))
}

/// Mean top-1 probability over every position of a band.
pub fn mean_top(lines: &[Candidates]) -> f32 {
    let n: usize = lines.iter().map(Vec::len).sum();
    lines.iter().flatten().map(|alts| alts.first().map_or(0.0, |a| a.1)).sum::<f32>() / n.max(1) as f32
}

/// Sum of ln top-1 probabilities: how sure the recogniser is of a whole line.
pub fn line_score(c: &Candidates) -> f32 {
    c.iter().map(|alts| alts.first().map_or(-14.0, |a| a.1.max(1e-6).ln())).sum()
}

/// Maps a box from the scaled, rotated working image back to the input image.
fn band_in_input(b: [f32; 4], scale: f32, rot: u16, w0: u32, h0: u32) -> [u32; 4] {
    let [x, y, w, h] = b.map(|v| v / scale);
    let (wf, hf) = (w0 as f32, h0 as f32);
    // Corners in the rotated frame → input frame.
    let corners = [(x, y), (x + w, y + h)];
    let back = |(px, py): (f32, f32)| match rot {
        // rotate90 (clockwise): rotated (px, py) came from input (py, h0 - px).
        90 => (py, hf - px),
        180 => (wf - px, hf - py),
        270 => (wf - py, px),
        _ => (px, py),
    };
    let (a, c) = (back(corners[0]), back(corners[1]));
    let (x0, x1) = (a.0.min(c.0).clamp(0.0, wf), a.0.max(c.0).clamp(0.0, wf));
    let (y0, y1) = (a.1.min(c.1).clamp(0.0, hf), a.1.max(c.1).clamp(0.0, hf));
    [x0 as u32, y0 as u32, (x1 - x0) as u32, (y1 - y0) as u32]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_mapping_round_trips_rotations() {
        // A box in a 180°-rotated 100×50 image at the top-left is at the bottom-right of the input.
        assert_eq!(band_in_input([0.0, 0.0, 10.0, 5.0], 1.0, 180, 100, 50), [90, 45, 10, 5]);
        // 90° clockwise: rotated image is 50×100; its top-left came from the input's bottom-left.
        assert_eq!(band_in_input([0.0, 0.0, 5.0, 10.0], 1.0, 90, 100, 50), [0, 45, 10, 5]);
        assert_eq!(band_in_input([0.0, 0.0, 20.0, 10.0], 2.0, 0, 100, 50), [0, 0, 10, 5]);
    }

    #[test]
    fn ranking_weighs_confidence() {
        // Half-scale Malta_BAD: the zone read as printed (3 failing, mean top-1 0.92) beats a
        // garbage band's cell read failing 2 at 0.7.
        assert!(rank(3, 0.92) < rank(2, 0.7));
        // A sure read of a badly printed specimen beats an unsure read failing fewer digits.
        assert!(rank(3, 0.99) < rank(1, 0.95));
        // A read passing every digit beats an unsure one failing some, whatever the confidence.
        assert!(rank(0, 0.6) < rank(1, 0.96));
        // Among sure reads, fewer failing digits first.
        assert!(rank(2, 0.98) < rank(3, 0.99));
    }

    #[test]
    fn reader_is_send_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<MrzReader>();
    }
}
