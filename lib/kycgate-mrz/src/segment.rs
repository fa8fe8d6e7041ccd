//! Character grid fitting on one MRZ line: OCR-B is fixed-pitch and the line length is known (30, 36
//! or 44), so the pitch follows from the line's ink extent, and the grid is then slid and stretched
//! until its cell boundaries fall in the gaps between glyphs. Blob-chain estimates alone drift on tight
//! crops, unevenly printed specimens and perspective.

use crate::locate::{Gray, TextLine};

/// Samples across the line (perpendicular) per profile column.
const ACROSS: usize = 9;
/// Profile columns per character pitch.
const PER_PITCH: f32 = 12.0;
/// Mean glyph width of OCR-B in pitches: the ink extent of `n` characters is `(n - 1 + GLYPH) · pitch`.
const GLYPH: f32 = crate::locate::GLYPH_PITCHES;
/// Ink columns closer than this (in pitches) belong to the same line of text.
const MERGE_GAP: f32 = 0.95;
/// Largest relative disagreement between the extent pitch and the blob pitch still trusted.
const MAX_PITCH_CHANGE: f32 = 0.06;
/// Largest per-position shift (in pitches) the local gap search may apply.
const MAX_LOCAL_SHIFT: f32 = 0.2;

/// Ink profile along a line: `ink[i]` is the fraction of dark samples across the line at
/// `u = u0 + i · step` (pixels along `dir` from the line's origin).
struct Profile {
    u0: f32,
    step: f32,
    ink: Vec<f32>,
}

impl Profile {
    fn at(&self, u: f32) -> f32 {
        let x = (u - self.u0) / self.step;
        if self.ink.len() < 2 || x < 0.0 || x >= (self.ink.len() - 1) as f32 {
            return 0.0;
        }
        let i = x.floor() as usize;
        let f = x - i as f32;
        self.ink[i] * (1.0 - f) + self.ink[i + 1] * f
    }
    fn u(&self, i: usize) -> f32 {
        self.u0 + i as f32 * self.step
    }
}

fn profile(g: &Gray, line: &TextLine) -> Option<Profile> {
    let p = line.pitch;
    let step = (p / PER_PITCH).max(0.5);
    let u0 = -2.5 * p;
    let cols = (((line.len as f32 + 4.0) * p) / step) as usize;
    let n = (-line.dir.1, line.dir.0);
    let (w, h) = (g.w as f32, g.h as f32);
    let mut vals = vec![f32::NAN; cols * ACROSS];
    for i in 0..cols {
        let u = u0 + i as f32 * step;
        for j in 0..ACROSS {
            let v = ((j as f32 + 0.5) / ACROSS as f32 - 0.5) * 0.9 * line.cap;
            let x = line.origin.0 + u * line.dir.0 + v * n.0;
            let y = line.origin.1 + u * line.dir.1 + v * n.1;
            if x >= 0.0 && y >= 0.0 && x <= w - 1.0 && y <= h - 1.0 {
                vals[i * ACROSS + j] = g.sample(x, y);
            }
        }
    }
    // Local paper and ink levels (moving max / min over a few pitches) so gradients do not matter.
    let col_hi: Vec<f32> = vals.chunks(ACROSS).map(|c| c.iter().copied().filter(|v| !v.is_nan()).fold(f32::NAN, f32::max)).collect();
    let col_lo: Vec<f32> = vals.chunks(ACROSS).map(|c| c.iter().copied().filter(|v| !v.is_nan()).fold(f32::NAN, f32::min)).collect();
    let r = (2.0 * PER_PITCH) as usize;
    let mut ink = vec![0f32; cols];
    for i in 0..cols {
        let (a, b) = (i.saturating_sub(r), (i + r + 1).min(cols));
        let hi = col_hi[a..b].iter().copied().filter(|v| !v.is_nan()).fold(f32::NAN, f32::max);
        let lo = col_lo[a..b].iter().copied().filter(|v| !v.is_nan()).fold(f32::NAN, f32::min);
        if hi.is_nan() || lo.is_nan() || hi - lo < 30.0 {
            continue;
        }
        let thr = 0.5 * (hi + lo);
        let c = &vals[i * ACROSS..(i + 1) * ACROSS];
        ink[i] = c.iter().filter(|v| !v.is_nan() && **v < thr).count() as f32 / ACROSS as f32;
    }
    Some(Profile { u0, step, ink })
}

/// Left and right ends (along `u`) of the run of text overlapping the expected line span the most.
fn extent(pr: &Profile, line: &TextLine) -> Option<(f32, f32)> {
    let gap = (MERGE_GAP * PER_PITCH) as usize;
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, &v) in pr.ink.iter().enumerate() {
        if v < 1.5 / ACROSS as f32 {
            continue;
        }
        match runs.last_mut() {
            Some(r) if i - r.1 <= gap => r.1 = i,
            _ => runs.push((i, i)),
        }
    }
    let (lo, hi) = (-0.5 * line.pitch, (line.len as f32 - 0.5) * line.pitch);
    let overlap = |r: &(usize, usize)| (pr.u(r.1).min(hi) - pr.u(r.0).max(lo)).max(0.0);
    let best = runs.iter().max_by(|a, b| overlap(a).total_cmp(&overlap(b)))?;
    Some((pr.u(best.0), pr.u(best.1)))
}

/// A grid given by its first and last cell centres and a bend (perspective: the middle cell's offset
/// from the straight interpolation), all in pixels along the line.
#[derive(Clone, Copy, Debug)]
struct Grid {
    first: f32,
    last: f32,
    bend: f32,
}

impl Grid {
    /// Position of (possibly fractional) cell `k` of `n`.
    fn at(&self, k: f32, n: usize) -> f32 {
        let t = k / (n as f32 - 1.0);
        self.first + (self.last - self.first) * t + 4.0 * self.bend * t * (1.0 - t)
    }

    /// Mean ink on the `n + 1` cell boundaries (lower is better: boundaries in the gaps).
    fn cost(&self, pr: &Profile, n: usize) -> f32 {
        (0..=n).map(|k| pr.at(self.at(k as f32 - 0.5, n))).sum::<f32>() / (n + 1) as f32
    }
}

/// Refits `line`'s origin, pitch and per-position shifts from its ink profile; returns the line
/// unchanged when the profile does not support a fit (no contrast, no text run).
pub fn fit_grid(g: &Gray, line: &TextLine) -> TextLine {
    fit(g, line).unwrap_or_else(|| line.clone())
}

fn fit(g: &Gray, line: &TextLine) -> Option<TextLine> {
    let n = line.len;
    if n < 2 || line.pitch < 2.0 {
        return None;
    }
    let pr = profile(g, line)?;
    let (l, r) = extent(&pr, line)?;
    let p = line.pitch;
    let pe = (r - l) / (n as f32 - 1.0 + GLYPH);
    // The extent fixes both ends when it agrees with the blob pitch; otherwise keep the blob grid.
    let mut best = if (pe / p - 1.0).abs() <= MAX_PITCH_CHANGE {
        Grid { first: l + 0.5 * GLYPH * pe, last: r - 0.5 * GLYPH * pe, bend: 0.0 }
    } else {
        Grid { first: 0.0, last: (n as f32 - 1.0) * p, bend: 0.0 }
    };
    let mut best_cost = best.cost(&pr, n);
    // Coarse then fine: each end within a quarter pitch, bend within a sixth.
    for step in [p / 24.0, p / 96.0] {
        let c = best;
        for i in -6..=6 {
            for j in -6..=6 {
                for b in -2..=2 {
                    let cand = Grid {
                        first: c.first + i as f32 * step,
                        last: c.last + j as f32 * step,
                        bend: c.bend + b as f32 * 2.0 * step,
                    };
                    if cand.bend.abs() > p / 6.0 {
                        continue;
                    }
                    let cost = cand.cost(&pr, n);
                    if cost < best_cost - 1e-6 {
                        best = cand;
                        best_cost = cost;
                    }
                }
            }
        }
    }
    let pitch = (best.last - best.first) / (n as f32 - 1.0);
    // Boundaries nudged into their local gap (unevenly spaced print), then cell centres between them.
    let win = MAX_LOCAL_SHIFT * pitch;
    let bounds: Vec<f32> = (0..=n).map(|k| local_gap(&pr, best.at(k as f32 - 0.5, n), win)).collect();
    let shifts: Vec<f32> = (0..n)
        .map(|k| {
            let nominal = best.at(k as f32, n);
            let centre = (0.5 * (bounds[k] + bounds[k + 1])).clamp(nominal - win, nominal + win);
            centre - best.first - k as f32 * pitch
        })
        .collect();
    let origin = (line.origin.0 + best.first * line.dir.0, line.origin.1 + best.first * line.dir.1);
    let mut out = TextLine { origin, pitch, shifts, ..line.clone() };
    out.lifts = lifts(g, &out);
    Some(out)
}

/// Rows sampled across a cell when measuring where its glyph sits.
const LIFT_ROWS: usize = 25;
/// Largest across-line correction, in character heights.
const MAX_LIFT: f32 = 0.35;

/// Across-line offset of each position's glyph from the straight line, smoothed by a quadratic in the
/// position (a bent page curves the line; single glyphs are too noisy to trust one by one). Empty when
/// too few tall glyphs are found.
fn lifts(g: &Gray, line: &TextLine) -> Vec<f32> {
    let n = (-line.dir.1, line.dir.0);
    let (w, h) = (g.w as f32 - 1.0, g.h as f32 - 1.0);
    let mut pts: Vec<(f32, f32)> = Vec::new();
    for k in 0..line.len {
        let (cx, cy) = line.center(k as f32);
        // Darkest and lightest samples of the cell's central columns, row by row.
        let mut rows = [f32::NAN; LIFT_ROWS];
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for (i, r) in rows.iter_mut().enumerate() {
            let v = ((i as f32 + 0.5) / LIFT_ROWS as f32 - 0.5) * 1.8 * line.cap;
            let mut m = f32::INFINITY;
            for j in 0..5 {
                let a = (j as f32 / 4.0 - 0.5) * 0.6 * line.pitch;
                let (x, y) = (cx + a * line.dir.0 + v * n.0, cy + a * line.dir.1 + v * n.1);
                if x >= 0.0 && y >= 0.0 && x <= w && y <= h {
                    m = m.min(g.sample(x, y));
                }
            }
            if m.is_finite() {
                *r = m;
                lo = lo.min(m);
                hi = hi.max(m);
            }
        }
        if !(hi - lo >= 30.0) {
            continue;
        }
        let thr = 0.5 * (lo + hi);
        // The run of inked rows containing (or nearest) the line's centre row.
        let ink: Vec<bool> = rows.iter().map(|&r| r < thr).collect();
        let mid = LIFT_ROWS / 2;
        let Some(seed) = (0..=mid).flat_map(|d| [mid.saturating_sub(d), (mid + d).min(LIFT_ROWS - 1)]).find(|&i| ink[i]) else {
            continue;
        };
        let (mut a, mut b) = (seed, seed);
        while a > 0 && ink[a - 1] {
            a -= 1;
        }
        while b + 1 < LIFT_ROWS && ink[b + 1] {
            b += 1;
        }
        let row_h = 1.8 * line.cap / LIFT_ROWS as f32;
        let tall = (b - a + 1) as f32 * row_h;
        // Only full-height glyphs say where the line is (`<` and blanks do not).
        if tall < 0.75 * line.cap || tall > 1.3 * line.cap {
            continue;
        }
        let centre = ((a + b) as f32 / 2.0 + 0.5 - LIFT_ROWS as f32 / 2.0) * row_h;
        pts.push((k as f32, centre));
    }
    if pts.len() < 8 {
        return Vec::new();
    }
    let Some(q) = fit_quadratic(&pts) else { return Vec::new() };
    let cap = MAX_LIFT * line.cap;
    (0..line.len).map(|k| {
        let k = k as f32;
        (q[0] + q[1] * k + q[2] * k * k).clamp(-cap, cap)
    }).collect()
}

/// Least-squares `y = c0 + c1·x + c2·x²`.
fn fit_quadratic(pts: &[(f32, f32)]) -> Option<[f32; 3]> {
    let mut m = [[0f64; 4]; 3];
    for &(x, y) in pts {
        let (x, y) = (f64::from(x), f64::from(y));
        let row = [1.0, x, x * x];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] += row[i] * row[j];
            }
            m[i][3] += row[i] * y;
        }
    }
    // Gaussian elimination with partial pivoting.
    for c in 0..3 {
        let p = (c..3).max_by(|&a, &b| m[a][c].abs().total_cmp(&m[b][c].abs()))?;
        if m[p][c].abs() < 1e-9 {
            return None;
        }
        m.swap(c, p);
        for r in 0..3 {
            if r != c {
                let f = m[r][c] / m[c][c];
                for j in c..4 {
                    m[r][j] -= f * m[c][j];
                }
            }
        }
    }
    Some([(m[0][3] / m[0][0]) as f32, (m[1][3] / m[1][1]) as f32, (m[2][3] / m[2][2]) as f32])
}

/// Centre of the lowest-ink stretch within `win` of `u` (the middle of a flat gap, not its edge).
fn local_gap(pr: &Profile, u: f32, win: f32) -> f32 {
    let steps = (win / pr.step).ceil() as i32;
    let vals: Vec<(f32, f32)> = (-steps..=steps).map(|j| {
        let x = u + j as f32 * pr.step;
        (x, pr.at(x))
    }).collect();
    let min = vals.iter().map(|v| v.1).fold(f32::INFINITY, f32::min);
    if pr.at(u) <= min + 0.02 {
        return u;
    }
    let low: Vec<f32> = vals.iter().filter(|v| v.1 <= min + 0.02).map(|v| v.0).collect();
    low.iter().sum::<f32>() / low.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic line of `n` dark bars (glyph 0.6 pitch wide) on a fixed pitch.
    fn bars(n: usize, pitch: f32, x0: f32) -> Gray {
        let (w, h) = ((x0 + pitch * n as f32 + 40.0) as usize, 40usize);
        let mut px = vec![220.0; w * h];
        for k in 0..n {
            let c = x0 + k as f32 * pitch;
            for y in 10..30 {
                for x in (c - 0.3 * pitch) as usize..=(c + 0.3 * pitch) as usize {
                    px[y * w + x] = 30.0;
                }
            }
        }
        Gray { w, h, px }
    }

    #[test]
    fn recovers_pitch_and_origin_from_a_rough_estimate() {
        let g = bars(30, 20.0, 25.0);
        let rough = TextLine { origin: (30.0, 20.0), dir: (1.0, 0.0), pitch: 19.0, cap: 20.0, len: 30, shifts: Vec::new(), lifts: Vec::new() };
        let fitted = fit_grid(&g, &rough);
        for k in [0usize, 15, 29] {
            let (x, _) = fitted.center(k as f32);
            assert!((x - (25.0 + 20.0 * k as f32)).abs() < 2.0, "position {k} at {x}");
        }
    }

    #[test]
    fn blank_strip_leaves_line_unchanged() {
        let g = Gray { w: 200, h: 40, px: vec![200.0; 8000] };
        let line = TextLine { origin: (10.0, 20.0), dir: (1.0, 0.0), pitch: 6.0, cap: 10.0, len: 30, shifts: Vec::new(), lifts: Vec::new() };
        let out = fit_grid(&g, &line);
        assert_eq!(out.origin, line.origin);
        assert!(out.shifts.is_empty());
    }
}
