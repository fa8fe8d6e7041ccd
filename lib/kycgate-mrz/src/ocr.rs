//! Character recogniser: cuts one fixed-geometry cell per MRZ position and classifies it with the project's own small CNN (trained by `tools/mrz-train`, weights embedded).

use crate::locate::{Gray, TextLine};
use crate::nn::{conv3x3_relu, maxpool, softmax, Conv, Weights};

/// The 37 MRZ symbols, in the classifier's output order.
pub const ALPHABET: &[u8; 37] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ<";
/// Cell rows.
pub const CELL_H: usize = 24;
/// Cell columns.
pub const CELL_W: usize = 20;
/// Cell width in character pitches (must match tools/mrz-train/train.py).
const CELL_PITCHES: f32 = 1.3;
/// Cell height in character heights (must match tools/mrz-train/train.py).
const CELL_CAPS: f32 = 1.6;
/// Alternatives kept per position for the decoder.
const TOP_K: usize = 4;

static EMBEDDED: &[u8] = include_bytes!("../model/mrz_cnn.bin");
const MAGIC: &[u8; 8] = b"MRZCNN01";

/// Why a weight file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Wrong magic or a size that does not match the architecture.
    #[error("weight file is not of the expected format and size ({0})")]
    BadFormat(&'static str),
}

struct Dense {
    w: Vec<f32>,
    b: Vec<f32>,
    nin: usize,
    nout: usize,
}

/// The per-character CNN: 3×(conv3×3+ReLU), 2 max-pools, 2 dense layers, 37-way softmax.
pub struct CharClassifier {
    c1: Conv,
    c2: Conv,
    c3: Conv,
    f1: Dense,
    f2: Dense,
}

impl CharClassifier {
    /// The weights shipped in the crate.
    pub fn embedded() -> Result<Self, ModelError> {
        Self::from_bytes(EMBEDDED)
    }

    /// Parses an `MRZCNN01` weight file (layout documented in tools/mrz-train/train.py).
    pub fn from_bytes(data: &[u8]) -> Result<Self, ModelError> {
        let (mut r, count) = Weights::open(data, MAGIC)?;
        let dense = |r: &mut Weights, nin: usize, nout: usize| -> Result<Dense, ModelError> {
            Ok(Dense { w: r.take(nin * nout)?, b: r.take(nout)?, nin, nout })
        };
        let flat = (CELL_H / 4) * (CELL_W / 4) * 64;
        let m = Self {
            c1: r.conv(1, 16, 9)?,
            c2: r.conv(16, 32, 9)?,
            c3: r.conv(32, 64, 9)?,
            f1: dense(&mut r, flat, 128)?,
            f2: dense(&mut r, 128, ALPHABET.len())?,
        };
        r.finish(count)?;
        Ok(m)
    }

    /// Class probabilities for one normalised cell (`CELL_H × CELL_W`, ink = 1).
    pub fn probs(&self, cell: &[f32]) -> [f32; 37] {
        let (h, w) = (CELL_H, CELL_W);
        let x = conv3x3_relu(&self.c1, cell, h, w);
        let x = maxpool(&x, self.c1.cout, h, w, 2, 2);
        let (h, w) = (h / 2, w / 2);
        let x = conv3x3_relu(&self.c2, &x, h, w);
        let x = maxpool(&x, self.c2.cout, h, w, 2, 2);
        let (h, w) = (h / 2, w / 2);
        let x = conv3x3_relu(&self.c3, &x, h, w);
        let mut hid = dense(&self.f1, &x);
        hid.iter_mut().for_each(|v| *v = v.max(0.0));
        let logits = dense(&self.f2, &hid);
        let mut out = [0f32; 37];
        out.iter_mut().zip(&logits).for_each(|(o, l)| *o = *l);
        softmax(&mut out);
        out
    }
}

fn dense(d: &Dense, x: &[f32]) -> Vec<f32> {
    let mut out = d.b.clone();
    for (i, &xi) in x.iter().enumerate().take(d.nin) {
        if xi == 0.0 {
            continue;
        }
        let row = &d.w[i * d.nout..(i + 1) * d.nout];
        for (o, wv) in out.iter_mut().zip(row) {
            *o += xi * wv;
        }
    }
    out
}

/// Samples the cell around centre `(cx, cy)` on a line at `angle`, normalised so ink is 1 and paper 0.
pub fn cut_cell(g: &Gray, cx: f32, cy: f32, pitch: f32, cap: f32, angle: f32) -> Vec<f32> {
    cut_cell_sheared(g, cx, cy, pitch, cap, angle, 0.0)
}

/// [`cut_cell`] with the cell's columns slanted by `shear` (along-line shift per unit across), which
/// undoes the slant a camera's perspective gives upright strokes.
pub fn cut_cell_sheared(g: &Gray, cx: f32, cy: f32, pitch: f32, cap: f32, angle: f32, shear: f32) -> Vec<f32> {
    let (ca, sa) = (angle.cos(), angle.sin());
    let mut v = Vec::with_capacity(CELL_H * CELL_W);
    let (xmax, ymax) = (g.w as f32 - 0.5, g.h as f32 - 0.5);
    for i in 0..CELL_H {
        let b = ((i as f32 + 0.5) / CELL_H as f32 - 0.5) * CELL_CAPS * cap;
        for j in 0..CELL_W {
            let a = ((j as f32 + 0.5) / CELL_W as f32 - 0.5) * CELL_PITCHES * pitch + shear * b;
            let (x, y) = (cx + a * ca - b * sa, cy + a * sa + b * ca);
            // Outside the image is paper, not a smear of the border row: tight crops cut through ink.
            let inside = x >= -0.5 && y >= -0.5 && x <= xmax && y <= ymax;
            v.push(if inside { g.sample(x, y) } else { f32::NAN });
        }
    }
    let lo = v.iter().copied().filter(|p| !p.is_nan()).fold(f32::INFINITY, f32::min);
    let hi = v.iter().copied().filter(|p| !p.is_nan()).fold(f32::NEG_INFINITY, f32::max);
    if !(hi - lo >= 1e-3) {
        v.iter_mut().for_each(|p| *p = 0.0);
    } else {
        v.iter_mut().for_each(|p| *p = if p.is_nan() { 0.0 } else { (hi - *p) / (hi - lo) });
    }
    v
}

/// Per-position alternatives (best first, with probabilities) for one straightened line.
pub fn read_line(g: &Gray, line: &TextLine, clf: &CharClassifier) -> Vec<Vec<(char, f32)>> {
    read_line_sheared(g, line, clf, 0.0)
}

/// [`read_line`] with slanted cells (see [`cut_cell_sheared`]).
pub fn read_line_sheared(g: &Gray, line: &TextLine, clf: &CharClassifier, shear: f32) -> Vec<Vec<(char, f32)>> {
    let angle = line.angle();
    (0..line.len)
        .map(|k| {
            let (cx, cy) = line.center(k as f32);
            let mut p = clf.probs(&cut_cell_sheared(g, cx, cy, line.pitch, line.cap, angle, shear));
            if p.iter().copied().fold(0.0, f32::max) < UNSURE {
                p = jittered_probs(g, line, clf, (cx, cy), shear, &p);
            }
            top_k(&p)
        })
        .collect()
}

/// Top-1 probability below which a position is re-read from jittered cuts.
const UNSURE: f32 = 0.9;
/// (shift along the line in pitches, scale) of the extra cuts averaged for an unsure position.
const JITTERS: [(f32, f32); 4] = [(0.08, 1.0), (-0.08, 1.0), (0.0, 0.93), (0.0, 1.07)];

/// Mean class probabilities over the original cut `p0` and [`JITTERS`]: at low resolution one cut
/// aliases (`T` read as `Y`), a small ensemble of shifted and rescaled cuts does so much less.
fn jittered_probs(g: &Gray, line: &TextLine, clf: &CharClassifier, c: (f32, f32), shear: f32, p0: &[f32; 37]) -> [f32; 37] {
    let angle = line.angle();
    let (ca, sa) = (angle.cos(), angle.sin());
    let mut acc = *p0;
    for (du, sc) in JITTERS {
        let (x, y) = (c.0 + du * line.pitch * ca, c.1 + du * line.pitch * sa);
        let q = clf.probs(&cut_cell_sheared(g, x, y, line.pitch * sc, line.cap * sc, angle, shear));
        acc.iter_mut().zip(q).for_each(|(a, b)| *a += b);
    }
    let n = (JITTERS.len() + 1) as f32;
    acc.iter_mut().for_each(|a| *a /= n);
    acc
}

/// The `TOP_K` most probable symbols of a probability vector, best first.
pub fn top_k(p: &[f32; 37]) -> Vec<(char, f32)> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    idx.into_iter().take(TOP_K).map(|i| (char::from(ALPHABET[i]), p[i])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_weights_load() {
        assert!(CharClassifier::embedded().is_ok());
    }

    #[test]
    fn rejects_foreign_file() {
        assert!(CharClassifier::from_bytes(b"not a model at all").is_err());
    }

    #[test]
    fn probabilities_sum_to_one() {
        let clf = CharClassifier::embedded().map_err(|e| e.to_string());
        let clf = match clf {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let p = clf.probs(&[0.0; CELL_H * CELL_W]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-3);
    }
}
