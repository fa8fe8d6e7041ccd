//! Finds the MRZ band in a grayscale page: local-mean binarisation, connected components, chaining of character blobs into skew-tolerant text lines, and grouping of 2–3 parallel lines on a fixed character pitch.

use image::GrayImage;

/// A grayscale image as `f32` in 0..=255, the working form for every image step of the reader.
#[derive(Clone, Debug)]
pub struct Gray {
    /// Width in pixels.
    pub w: usize,
    /// Height in pixels.
    pub h: usize,
    /// Row-major pixels.
    pub px: Vec<f32>,
}

impl Gray {
    /// Converts an 8-bit grayscale image.
    pub fn from_image(img: &GrayImage) -> Self {
        let (w, h) = img.dimensions();
        Self { w: w as usize, h: h as usize, px: img.as_raw().iter().map(|&v| f32::from(v)).collect() }
    }

    /// Bilinear sample with edge clamping, so cells may reach past the border.
    pub fn sample(&self, x: f32, y: f32) -> f32 {
        if self.w < 2 || self.h < 2 {
            return self.px.first().copied().unwrap_or(0.0);
        }
        let x = x.clamp(0.0, self.w as f32 - 1.001);
        let y = y.clamp(0.0, self.h as f32 - 1.001);
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let i = y0 * self.w + x0;
        let (a, b, c, d) = (self.px[i], self.px[i + 1], self.px[i + self.w], self.px[i + self.w + 1]);
        (a * (1.0 - fx) + b * fx) * (1.0 - fy) + (c * (1.0 - fx) + d * fx) * fy
    }

    /// Resamples by `scale` (bilinear, box-averaged when shrinking), used to bring characters to a workable size.
    pub fn scaled(&self, scale: f32) -> Self {
        let w = ((self.w as f32 * scale).round() as usize).max(1);
        let h = ((self.h as f32 * scale).round() as usize).max(1);
        let mut px = Vec::with_capacity(w * h);
        let inv = 1.0 / scale;
        let taps = if scale < 1.0 { (inv.ceil() as usize).clamp(1, 4) } else { 1 };
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0.0;
                for ty in 0..taps {
                    for tx in 0..taps {
                        let sx = (x as f32 + (tx as f32 + 0.5) / taps as f32) * inv - 0.5;
                        let sy = (y as f32 + (ty as f32 + 0.5) / taps as f32) * inv - 0.5;
                        acc += self.sample(sx, sy);
                    }
                }
                px.push(acc / (taps * taps) as f32);
            }
        }
        Self { w, h, px }
    }
}

/// One connected component of ink.
#[derive(Clone, Copy, Debug)]
struct Blob {
    x0: usize,
    y0: usize,
    x1: usize,
    y1: usize,
    area: usize,
}

impl Blob {
    fn w(&self) -> f32 {
        (self.x1 - self.x0 + 1) as f32
    }
    fn h(&self) -> f32 {
        (self.y1 - self.y0 + 1) as f32
    }
    fn cx(&self) -> f32 {
        (self.x0 + self.x1) as f32 / 2.0
    }
    fn cy(&self) -> f32 {
        (self.y0 + self.y1) as f32 / 2.0
    }
}

/// A straightened text line: character `k` is centred at `origin + k * pitch * dir`.
#[derive(Clone, Debug)]
pub struct TextLine {
    /// Centre of the first character, in working-image pixels.
    pub origin: (f32, f32),
    /// Unit vector along the line (left to right).
    pub dir: (f32, f32),
    /// Distance between character centres.
    pub pitch: f32,
    /// Character height.
    pub cap: f32,
    /// Number of character positions found.
    pub len: usize,
    /// Per-position shift along the line from the uniform grid, in pixels (empty: none). Set by
    /// [`crate::segment::fit_grid`] for perspective drift and unevenly spaced print.
    pub shifts: Vec<f32>,
    /// Per-position shift across the line (positive: down the glyphs), in pixels (empty: none): a
    /// bent page curves the line away from a straight fit.
    pub lifts: Vec<f32>,
}

impl TextLine {
    /// Centre of character position `k`.
    pub fn center(&self, k: f32) -> (f32, f32) {
        let at = |v: &[f32]| if k >= 0.0 && k.fract() == 0.0 { v.get(k as usize).copied().unwrap_or(0.0) } else { 0.0 };
        let u = k * self.pitch + at(&self.shifts);
        let v = at(&self.lifts);
        (self.origin.0 + u * self.dir.0 - v * self.dir.1, self.origin.1 + u * self.dir.1 + v * self.dir.0)
    }

    /// Skew angle in radians.
    pub fn angle(&self) -> f32 {
        self.dir.1.atan2(self.dir.0)
    }
}

/// A candidate MRZ band: 2 or 3 lines of equal length (30, 36 or 44) on a shared pitch.
#[derive(Clone, Debug)]
pub struct Band {
    /// Lines top to bottom, each `len` equal to the format's line length.
    pub lines: Vec<TextLine>,
    /// Axis-aligned box `[x, y, w, h]` in working-image pixels.
    pub bbox: [f32; 4],
}

/// Binarisation: ink where a pixel is darker than its local mean by this fraction.
const INK_FRACTION: f32 = 0.12;
/// Minimum absolute darkness against the local mean, in gray levels.
const INK_MIN_DELTA: f32 = 10.0;
/// Fewest character blobs a chain needs to count as an MRZ line candidate.
const MIN_LINE_BLOBS: usize = 18;

fn binarise(g: &Gray, win: usize) -> Vec<bool> {
    let (w, h) = (g.w, g.h);
    let mut integ = vec![0f64; (w + 1) * (h + 1)];
    for y in 0..h {
        let mut row = 0f64;
        for x in 0..w {
            row += f64::from(g.px[y * w + x]);
            integ[(y + 1) * (w + 1) + x + 1] = integ[y * (w + 1) + x + 1] + row;
        }
    }
    let r = win / 2;
    let mut out = vec![false; w * h];
    for y in 0..h {
        let (ya, yb) = (y.saturating_sub(r), (y + r + 1).min(h));
        for x in 0..w {
            let (xa, xb) = (x.saturating_sub(r), (x + r + 1).min(w));
            let sum = integ[yb * (w + 1) + xb] - integ[ya * (w + 1) + xb] - integ[yb * (w + 1) + xa] + integ[ya * (w + 1) + xa];
            let mean = (sum / ((yb - ya) * (xb - xa)) as f64) as f32;
            let v = g.px[y * w + x];
            out[y * w + x] = v < mean - (mean * INK_FRACTION).max(INK_MIN_DELTA);
        }
    }
    out
}

fn components(mask: &[bool], w: usize, h: usize) -> Vec<Blob> {
    let mut seen = vec![false; mask.len()];
    let mut blobs = Vec::new();
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let mut b = Blob { x0: usize::MAX, y0: usize::MAX, x1: 0, y1: 0, area: 0 };
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            b.x0 = b.x0.min(x);
            b.x1 = b.x1.max(x);
            b.y0 = b.y0.min(y);
            b.y1 = b.y1.max(y);
            b.area += 1;
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let j = ny as usize * w + nx as usize;
                    if mask[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        blobs.push(b);
    }
    blobs
}

fn median(v: &mut [f32]) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn percentile(v: &mut [f32], p: f32) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f32 * p).round() as usize]
}

/// Links each blob to its nearest plausible right-hand neighbour (mutually best), giving chains.
fn chains(blobs: &[Blob]) -> Vec<Vec<usize>> {
    let n = blobs.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| blobs[a].cx().total_cmp(&blobs[b].cx()));
    let mut right: Vec<Option<(usize, f32)>> = vec![None; n];
    let mut left: Vec<Option<(usize, f32)>> = vec![None; n];
    for (oi, &a) in order.iter().enumerate() {
        let ba = &blobs[a];
        for &b in &order[oi + 1..] {
            let bb = &blobs[b];
            let s = ba.h().max(bb.h());
            let dx = bb.cx() - ba.cx();
            if dx > 2.4 * s {
                break;
            }
            if dx < 0.4 * s {
                continue;
            }
            let dy = (bb.cy() - ba.cy()).abs();
            let ratio = ba.h().max(bb.h()) / ba.h().min(bb.h());
            if dy > 0.3 * dx + 0.25 * s || ratio > 2.6 {
                continue;
            }
            let cost = dx + 2.0 * dy;
            if right[a].is_none_or(|(_, c)| cost < c) {
                right[a] = Some((b, cost));
            }
            if left[b].is_none_or(|(_, c)| cost < c) {
                left[b] = Some((a, cost));
            }
        }
    }
    let mut out = Vec::new();
    for a in 0..n {
        let has_left = left[a].is_some_and(|(l, _)| right[l].is_some_and(|(r, _)| r == a));
        if has_left {
            continue;
        }
        let mut chain = vec![a];
        let mut cur = a;
        while let Some((r, _)) = right[cur] {
            if left[r].is_some_and(|(l, _)| l == cur) {
                chain.push(r);
                cur = r;
            } else {
                break;
            }
        }
        if chain.len() >= MIN_FRAGMENT_BLOBS {
            out.push(chain);
        }
    }
    merge_fragments(blobs, out).into_iter().filter(|c| c.len() >= MIN_LINE_BLOBS).collect()
}

/// Fewest blobs a chain fragment needs to take part in merging.
const MIN_FRAGMENT_BLOBS: usize = 4;

/// Joins collinear chain fragments separated by a short gap (touching or lost characters, occlusions).
fn merge_fragments(blobs: &[Blob], mut frags: Vec<Vec<usize>>) -> Vec<Vec<usize>> {
    frags.sort_by(|a, b| blobs[a[0]].cx().total_cmp(&blobs[b[0]].cx()));
    let mut out: Vec<Vec<usize>> = Vec::new();
    for f in frags {
        let (fl, fh) = (&blobs[f[0]], frag_height(blobs, &f));
        let mut joined = false;
        for a in out.iter_mut() {
            let Some(&last) = a.last() else { continue };
            let al = &blobs[last];
            let ah = frag_height(blobs, a);
            let gap = fl.cx() - al.cx();
            if gap <= 0.3 * ah || gap > 6.0 * ah || ah.max(fh) / ah.min(fh) > 1.35 {
                continue;
            }
            // Extrapolate the fragment's slope to the gap.
            let first = &blobs[a[0]];
            let run = al.cx() - first.cx();
            let slope = if run > 1.0 { (al.cy() - first.cy()) / run } else { 0.0 };
            let dy = (fl.cy() - (al.cy() + slope * gap)).abs();
            if dy <= 0.35 * ah {
                a.extend_from_slice(&f);
                joined = true;
                break;
            }
        }
        if !joined {
            out.push(f);
        }
    }
    out
}

fn frag_height(blobs: &[Blob], f: &[usize]) -> f32 {
    let mut hs: Vec<f32> = f.iter().map(|&i| blobs[i].h()).collect();
    percentile(&mut hs, 0.75)
}

/// Fits a fixed-pitch line through a chain of blobs.
fn fit_line(blobs: &[Blob], chain: &[usize]) -> Option<TextLine> {
    let mut hs: Vec<f32> = chain.iter().map(|&i| blobs[i].h()).collect();
    let cap = percentile(&mut hs, 0.75);
    let tall: Vec<&Blob> = chain.iter().map(|&i| &blobs[i]).filter(|b| b.h() >= 0.8 * cap).collect();
    if tall.len() < 5 {
        return None;
    }
    // Total least squares direction through tall-blob centres.
    let n = tall.len() as f32;
    let mx = tall.iter().map(|b| b.cx()).sum::<f32>() / n;
    let my = tall.iter().map(|b| b.cy()).sum::<f32>() / n;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for b in &tall {
        let (dx, dy) = (b.cx() - mx, b.cy() - my);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    let theta = 0.5 * (2.0 * sxy).atan2(sxx - syy);
    let dir = (theta.cos(), theta.sin());
    let cap = cap * theta.cos().abs().max(0.7);
    // Along-line positions of single-character blobs.
    let mut us: Vec<(f32, bool)> = chain
        .iter()
        .map(|&i| {
            let b = &blobs[i];
            ((b.cx() - mx) * dir.0 + (b.cy() - my) * dir.1, b.w() <= 0.9 * cap + 1.0)
        })
        .collect();
    us.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut diffs: Vec<f32> = us
        .windows(2)
        .filter(|p| p[0].1 && p[1].1)
        .map(|p| p[1].0 - p[0].0)
        .filter(|d| *d > 0.6 * cap && *d < 1.6 * cap)
        .collect();
    if diffs.len() < 5 {
        return None;
    }
    let pitch0 = median(&mut diffs);
    // Position indices by cumulative rounding of neighbour gaps: robust to a few percent of pitch error.
    let singles: Vec<f32> = us.iter().filter(|p| p.1).map(|p| p.0).collect();
    let mut pts: Vec<(f32, f32)> = Vec::with_capacity(singles.len());
    let mut k = 0f32;
    let mut local = pitch0;
    for (i, &u) in singles.iter().enumerate() {
        if i > 0 {
            let step = ((u - singles[i - 1]) / local).round().max(1.0);
            k += step;
            // Track slow pitch drift (perspective) from single steps.
            if step == 1.0 {
                local = 0.8 * local + 0.2 * (u - singles[i - 1]);
            }
        }
        pts.push((k, u));
    }
    let m = pts.len() as f32;
    let sk = pts.iter().map(|p| p.0).sum::<f32>();
    let su = pts.iter().map(|p| p.1).sum::<f32>();
    let skk = pts.iter().map(|p| p.0 * p.0).sum::<f32>();
    let sku = pts.iter().map(|p| p.0 * p.1).sum::<f32>();
    let den = m * skk - sk * sk;
    if den.abs() < 1e-6 {
        return None;
    }
    let pitch = (m * sku - sk * su) / den;
    if !(pitch > 0.5 * cap && pitch < 1.7 * cap) {
        return None;
    }
    let a = (su - pitch * sk) / m;
    let k_first = ((us[0].0 - a) / pitch).round();
    let k_last = ((us[us.len() - 1].0 - a) / pitch).round();
    let len = (k_last - k_first) as usize + 1;
    let u0 = a + k_first * pitch;
    Some(TextLine { origin: (mx + u0 * dir.0, my + u0 * dir.1), dir, pitch, cap, len, shifts: Vec::new(), lifts: Vec::new() })
}

/// MRZ line lengths.
const LENGTHS: [usize; 3] = [30, 36, 44];

fn snap_len(len: usize) -> Option<usize> {
    LENGTHS.iter().copied().find(|&l| len + 3 >= l && len <= l + 2)
}

/// Every fixed-pitch text line of at least `MIN_LINE_BLOBS` characters, in no particular order.
pub fn find_lines(g: &Gray) -> Vec<TextLine> {
    let win = ((g.w.max(g.h) / 24) | 1).max(15);
    let mask = binarise(g, win);
    let max_h = (g.h.max(g.w) / 6).max(8) as f32;
    let blobs: Vec<Blob> = components(&mask, g.w, g.h)
        .into_iter()
        .filter(|b| b.h() >= 5.0 && b.h() <= max_h && b.w() <= 2.5 * b.h() + 2.0 && b.area * 12 >= (b.w() * b.h()) as usize)
        .collect();
    chains(&blobs).iter().filter_map(|c| fit_line(&blobs, c)).collect()
}

/// Candidate bands, most plausible first. Coordinates are in `g`'s pixels.
pub fn find_bands(g: &Gray) -> Vec<Band> {
    let mut lines: Vec<TextLine> = find_lines(g).into_iter().filter(|l| l.len >= 27 && l.len <= 47).collect();
    // Sort top to bottom by the perpendicular offset of their origins.
    lines.sort_by(|a, b| a.origin.1.total_cmp(&b.origin.1));
    let mut bands = Vec::new();
    for i in 0..lines.len() {
        let mut group = vec![i];
        for j in i + 1..lines.len() {
            let (a, b) = (&lines[*group.last().unwrap_or(&i)], &lines[j]);
            let ang = (a.angle() - b.angle()).abs();
            let pr = a.pitch.max(b.pitch) / a.pitch.min(b.pitch);
            let n = (-a.dir.1, a.dir.0);
            let (dx, dy) = (b.origin.0 - a.origin.0, b.origin.1 - a.origin.1);
            let perp = dx * n.0 + dy * n.1;
            let along = dx * a.dir.0 + dy * a.dir.1;
            if ang < 0.06 && pr < 1.2 && perp > 1.1 * a.cap && perp < 4.2 * a.cap && along.abs() < 2.5 * a.pitch {
                group.push(j);
                if group.len() == 3 {
                    break;
                }
            }
        }
        for take in [3usize, 2] {
            if group.len() < take {
                continue;
            }
            if let Some(b) = make_band(&lines, &group[..take]) {
                bands.push(b);
            }
        }
    }
    // Prefer bands whose lines already have the exact length, then lower on the page.
    bands.sort_by(|a, b| {
        let score = |band: &Band| band.bbox[1];
        score(b).total_cmp(&score(a))
    });
    bands
}

fn make_band(lines: &[TextLine], idx: &[usize]) -> Option<Band> {
    let ls: Vec<&TextLine> = idx.iter().map(|&i| &lines[i]).collect();
    // Line length: what most lines snap to (a stray blob can lengthen one line).
    let target = if idx.len() == 3 {
        30
    } else {
        let snapped: Vec<usize> = ls.iter().filter_map(|l| snap_len(l.len)).filter(|&t| t != 30).collect();
        *snapped.iter().max_by_key(|&&t| (snapped.iter().filter(|&&u| u == t).count(), t))?
    };
    if ls.iter().filter(|l| snap_len(l.len) == Some(target)).count() == 0 {
        return None;
    }
    // Shared left edge: the start of lines already at full length, else the leftmost start.
    let dir = ls[0].dir;
    let proj = |p: (f32, f32)| p.0 * dir.0 + p.1 * dir.1;
    let full: Vec<f32> = ls.iter().filter(|l| l.len == target).map(|l| proj(l.origin)).collect();
    let start = if full.is_empty() {
        ls.iter().map(|l| proj(l.origin)).fold(f32::INFINITY, f32::min)
    } else {
        let mut f = full;
        median(&mut f)
    };
    let mut out = Vec::new();
    for l in ls {
        let shift = ((start - proj(l.origin)) / l.pitch).round();
        if shift.abs() > 3.0 {
            return None;
        }
        let end = shift + target as f32 - 1.0;
        // The line must not extend well past the band's end.
        if (l.len as f32 - 1.0) > end + 4.0 {
            return None;
        }
        let origin = l.center(shift);
        out.push(TextLine { origin, len: target, shifts: Vec::new(), lifts: Vec::new(), ..l.clone() });
    }
    let (mut x0, mut y0, mut x1, mut y1) = (f32::INFINITY, f32::INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY);
    for l in &out {
        for k in [-0.5, l.len as f32 - 0.5] {
            let c = l.center(k);
            for s in [-0.6, 0.6] {
                let p = (c.0 - s * l.cap * l.dir.1, c.1 + s * l.cap * l.dir.0);
                x0 = x0.min(p.0);
                y0 = y0.min(p.1);
                x1 = x1.max(p.0);
                y1 = y1.max(p.1);
            }
        }
    }
    Some(Band { lines: out, bbox: [x0, y0, x1 - x0, y1 - y0] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snaps_lengths() {
        assert_eq!(snap_len(44), Some(44));
        assert_eq!(snap_len(42), Some(44));
        assert_eq!(snap_len(31), Some(30));
        assert_eq!(snap_len(40), None);
    }

    #[test]
    fn blank_page_has_no_band() {
        let g = Gray { w: 200, h: 100, px: vec![200.0; 20000] };
        assert!(find_bands(&g).is_empty());
    }
}
