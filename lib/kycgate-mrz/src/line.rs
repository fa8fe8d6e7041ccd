//! Line recogniser: reads a whole MRZ line at once with a small CNN + CTC (trained by
//! `tools/mrz-train/train_line.py` on synthetic OCR-B lines and real line crops, weights embedded).
//! Unlike the per-cell classifier it needs no character grid, so uneven print, drift and blur that
//! break the grid do not break the read.

use crate::decode::Candidates;
use crate::locate::{Gray, TextLine};
use crate::nn::{conv1d, conv3x3_relu, maxpool, softmax, Conv, Weights};
use crate::ocr::{ModelError, ALPHABET};

/// Rows of the normalised line window.
pub const LINE_H: usize = 24;
/// Character heights that fill [`LINE_H`] rows (must match train_line.py).
const CAPS_IN_H: f32 = 1.6;
/// Paper kept before the first and after the last glyph, in character heights.
const MARGIN_CAPS: f32 = 0.6;
/// Widest window; longer lines are squeezed along the line to fit.
const MAX_W: usize = 768;
/// Half the ink width of an OCR-B glyph, in pitches.
const HALF_GLYPH_PITCHES: f32 = crate::locate::GLYPH_PITCHES / 2.0;
/// Output classes: the 37 MRZ symbols and the CTC blank.
const CLASSES: usize = 38;
const BLANK: usize = 37;
/// Columns per output frame.
const FRAME_COLS: usize = 4;
/// Alternatives kept per position for the decoder.
const TOP_K: usize = 4;

static EMBEDDED: &[u8] = include_bytes!("../model/mrz_ctc.bin");
const MAGIC: &[u8; 8] = b"MRZCTC01";

/// A line resampled upright: [`LINE_H`] rows, `w` columns, ink = 1, paper = 0.
#[derive(Clone, Debug)]
pub struct LineWindow {
    /// Columns.
    pub w: usize,
    /// Row-major pixels.
    pub px: Vec<f32>,
}

/// A line read by the recogniser.
#[derive(Clone, Debug, Default)]
pub struct LineRead {
    /// Best-path text.
    pub text: String,
    /// Per character of `text`, its alternatives (best first, probabilities among non-blank classes
    /// at the character's most confident frame), as the check-digit decoder takes them.
    pub alts: Candidates,
    /// Sum of ln top-1 probabilities over the characters.
    pub score: f32,
}

/// Samples the window whose middle runs from `p0` to `p1` (image pixels), for glyphs `cap` high.
pub fn cut_window(g: &Gray, p0: (f32, f32), p1: (f32, f32), cap: f32) -> LineWindow {
    let step = CAPS_IN_H * cap / LINE_H as f32;
    let (dx, dy) = (p1.0 - p0.0, p1.1 - p0.1);
    let length = dx.hypot(dy).max(1e-3);
    let (dx, dy) = (dx / length, dy / length);
    let w = ((length / step).ceil() as usize).clamp(8, MAX_W);
    let sx = length / w as f32;
    let (xmax, ymax) = (g.w as f32 - 0.5, g.h as f32 - 0.5);
    let mut px = Vec::with_capacity(LINE_H * w);
    for i in 0..LINE_H {
        let b = ((i as f32 + 0.5) / LINE_H as f32 - 0.5) * CAPS_IN_H * cap;
        for j in 0..w {
            let a = (j as f32 + 0.5) * sx;
            let (x, y) = (p0.0 + a * dx - b * dy, p0.1 + a * dy + b * dx);
            let inside = x >= -0.5 && y >= -0.5 && x <= xmax && y <= ymax;
            px.push(if inside { g.sample(x, y) } else { f32::NAN });
        }
    }
    let lo = px.iter().copied().filter(|p| !p.is_nan()).fold(f32::INFINITY, f32::min);
    let hi = px.iter().copied().filter(|p| !p.is_nan()).fold(f32::NEG_INFINITY, f32::max);
    if !(hi - lo >= 1e-3) {
        px.iter_mut().for_each(|p| *p = 0.0);
    } else {
        px.iter_mut().for_each(|p| *p = if p.is_nan() { 0.0 } else { (hi - *p) / (hi - lo) });
    }
    LineWindow { w, px }
}

/// The window around a located line (`line.len` positions from its first character centre).
pub fn window_for_line(g: &Gray, line: &TextLine) -> LineWindow {
    let (dx, dy) = line.dir;
    let last = line.len.saturating_sub(1) as f32;
    let (a, b) = (line.center(0.0), line.center(last));
    // Straight through the first and last centres, across-line offsets averaged.
    let m = HALF_GLYPH_PITCHES * line.pitch + MARGIN_CAPS * line.cap;
    let p0 = (a.0 - m * dx, a.1 - m * dy);
    let p1 = (b.0 + m * dx, b.1 + m * dy);
    cut_window(g, p0, p1, line.cap)
}

/// The window for a crop holding one line (the `lines_doubango` set): text band and ink extent from
/// the ink profile, as train_line.py's `crop_geometry` computes them.
pub fn window_for_crop(g: &Gray) -> Option<LineWindow> {
    let lo = g.px.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = g.px.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let thr = (lo + hi) / 2.0;
    let ink = |x: usize, y: usize| g.px[y * g.w + x] < thr;
    let rows: Vec<usize> = (0..g.h).map(|y| (0..g.w).filter(|&x| ink(x, y)).count()).collect();
    let peak = rows.iter().copied().max().filter(|&m| m > 0)?;
    let band: Vec<usize> = (0..g.h).filter(|&y| rows[y] as f32 >= 0.15 * peak as f32).collect();
    let (r0, r1) = (*band.first()?, *band.last()?);
    let cols: Vec<usize> = (0..g.w).filter(|&x| (r0..=r1).any(|y| ink(x, y))).collect();
    let (c0, c1) = (*cols.first()? as f32 - 0.5, *cols.last()? as f32 + 0.5);
    let cap = (r1 - r0 + 1) as f32;
    let ymid = (r0 + r1) as f32 / 2.0;
    Some(cut_window(g, (c0 - MARGIN_CAPS * cap, ymid), (c1 + MARGIN_CAPS * cap, ymid), cap))
}

/// The line CNN: 4 × (conv3×3 + ReLU) with 2×2, 2×2, 2×1 max-pools, height folded into a 1-D
/// sequence, conv1d k=3 + ReLU, per-frame 38-way softmax (layout documented in train_line.py).
pub struct LineRecognizer {
    c: [Conv; 4],
    t1: Conv,
    out: Conv,
}

impl LineRecognizer {
    /// The weights shipped in the crate.
    pub fn embedded() -> Result<Self, ModelError> {
        Self::from_bytes(EMBEDDED)
    }

    /// Parses an `MRZCTC01` weight file.
    pub fn from_bytes(data: &[u8]) -> Result<Self, ModelError> {
        let (mut r, count) = Weights::open(data, MAGIC)?;
        let m = Self {
            c: [r.conv(1, 16, 9)?, r.conv(16, 32, 9)?, r.conv(32, 64, 9)?, r.conv(64, 64, 9)?],
            t1: r.conv(192, 128, 3)?,
            out: r.conv(128, CLASSES, 1)?,
        };
        r.finish(count)?;
        Ok(m)
    }

    /// Per-frame class probabilities (one frame per [`FRAME_COLS`] columns).
    pub fn frames(&self, win: &LineWindow) -> Vec<[f32; CLASSES]> {
        let (mut h, mut w) = (LINE_H, win.w);
        let x = conv3x3_relu(&self.c[0], &win.px, h, w);
        let x = maxpool(&x, self.c[0].cout, h, w, 2, 2);
        (h, w) = (h / 2, w / 2);
        let x = conv3x3_relu(&self.c[1], &x, h, w);
        let x = maxpool(&x, self.c[1].cout, h, w, 2, 2);
        (h, w) = (h / 2, w / 2);
        let x = conv3x3_relu(&self.c[2], &x, h, w);
        let x = maxpool(&x, self.c[2].cout, h, w, 2, 1);
        h /= 2;
        let x = conv3x3_relu(&self.c[3], &x, h, w);
        // Channel-major planes (c, row) are already the 1-D sequence's features c*h + row.
        let x = conv1d(&self.t1, &x, w, 3, true);
        let logits = conv1d(&self.out, &x, w, 1, false);
        let valid = win.w.div_ceil(FRAME_COLS).min(w);
        (0..valid)
            .map(|t| {
                let mut p = [0f32; CLASSES];
                for (k, v) in p.iter_mut().enumerate() {
                    *v = logits[k * w + t];
                }
                softmax(&mut p);
                p
            })
            .collect()
    }

    /// Reads the window: best path, collapsed, with per-character alternatives.
    pub fn read(&self, win: &LineWindow) -> LineRead {
        let frames = self.frames(win);
        let mut read = LineRead::default();
        let mut prev = BLANK;
        // (class, frame index of the class's highest probability in its run)
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (t, p) in frames.iter().enumerate() {
            let k = argmax(p);
            if k != BLANK {
                if k != prev {
                    runs.push((k, t));
                } else if let Some(last) = runs.last_mut() {
                    if p[k] > frames[last.1][k] {
                        last.1 = t;
                    }
                }
            }
            prev = k;
        }
        for (k, t) in runs {
            let p = &frames[t];
            let ink = (1.0 - p[BLANK]).max(1e-6);
            let mut idx: Vec<usize> = (0..BLANK).collect();
            idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
            let alts: Vec<(char, f32)> =
                idx.into_iter().take(TOP_K).map(|i| (char::from(ALPHABET[i]), (p[i] / ink).min(1.0))).collect();
            read.text.push(char::from(ALPHABET[k]));
            read.score += alts.first().map_or(-14.0, |a| a.1.max(1e-6).ln());
            read.alts.push(alts);
        }
        read
    }
}

fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in p.iter().enumerate() {
        if *v > p[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_weights_load() {
        assert!(LineRecognizer::embedded().is_ok());
    }

    #[test]
    fn rejects_foreign_file() {
        assert!(LineRecognizer::from_bytes(b"MRZCNN01 not a line model").is_err());
    }

    #[test]
    fn blank_window_reads_nothing_and_frames_are_distributions() {
        let Ok(m) = LineRecognizer::embedded() else { panic!("embedded weights") };
        let win = LineWindow { w: 64, px: vec![0.0; LINE_H * 64] };
        let frames = m.frames(&win);
        assert_eq!(frames.len(), 16);
        assert!(frames.iter().all(|p| (p.iter().sum::<f32>() - 1.0).abs() < 1e-3));
        assert_eq!(m.read(&win).text, "");
    }

    #[test]
    fn window_spans_the_line_upright() {
        // A 200×40 page, dark bar 10 px high centred on y = 20 from x = 20 to 180.
        let mut g = Gray { w: 200, h: 40, px: vec![255.0; 8000] };
        for y in 15..25 {
            for x in 20..180 {
                g.px[y * 200 + x] = 0.0;
            }
        }
        let win = window_for_crop(&g).unwrap_or_else(|| panic!("no window"));
        // cap 10 → 24 rows cover 16 px; 160 px of ink + 2 × 6 px margin = 172 px → 258 columns.
        assert_eq!(win.w, 258);
        let at = |i: usize, j: usize| win.px[i * win.w + j];
        assert!(at(LINE_H / 2, win.w / 2) > 0.9, "middle is ink");
        assert!(at(0, win.w / 2) < 0.1 && at(LINE_H / 2, 2) < 0.1, "margins are paper");
    }
}
