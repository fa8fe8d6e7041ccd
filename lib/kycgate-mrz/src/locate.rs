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

impl Band {
    /// The same band in the page turned by 180° (`w` × `h` pixels before and after): lines in
    /// reverse order, each starting where it ended (a point turns to `(w − 1 − x, h − 1 − y)`;
    /// a direction, read from the new start, stays as it was).
    pub fn turned(&self, w: usize, h: usize) -> Band {
        let (xm, ym) = (w as f32 - 1.0, h as f32 - 1.0);
        let lines: Vec<TextLine> = self
            .lines
            .iter()
            .rev()
            .map(|l| {
                let end = l.center(l.len.saturating_sub(1) as f32);
                TextLine { origin: (xm - end.0, ym - end.1), shifts: Vec::new(), lifts: Vec::new(), ..l.clone() }
            })
            .collect();
        let bbox = band_box(&lines);
        Band { lines, bbox }
    }
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

/// Calls `f` with the pixel indices of each 8-connected component of `mask` (one reused buffer).
fn for_each_component(mask: &[bool], w: usize, h: usize, mut f: impl FnMut(&[usize])) {
    let mut seen = vec![false; mask.len()];
    let mut stack = Vec::new();
    let mut pixels = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        pixels.clear();
        while let Some(i) = stack.pop() {
            pixels.push(i);
            let (x, y) = (i % w, i / w);
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
        f(&pixels);
    }
}

fn components(mask: &[bool], w: usize, h: usize) -> Vec<Blob> {
    let mut blobs = Vec::new();
    for_each_component(mask, w, h, |pixels| {
        let mut b = Blob { x0: usize::MAX, y0: usize::MAX, x1: 0, y1: 0, area: pixels.len() };
        for &i in pixels {
            let (x, y) = (i % w, i / w);
            b.x0 = b.x0.min(x);
            b.x1 = b.x1.max(x);
            b.y0 = b.y0.min(y);
            b.y1 = b.y1.max(y);
        }
        blobs.push(b);
    });
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

/// Where `b` lies from `a` on a line running along `dir`: (along, across) in pixels, across
/// positive down the page.
fn offset(a: (f32, f32), dir: (f32, f32), b: (f32, f32)) -> (f32, f32) {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    (dx * dir.0 + dy * dir.1, -dx * dir.1 + dy * dir.0)
}

/// For each of `lines` (sorted top to bottom), the stack it heads: itself and up to two lines
/// further down, each the first that `fits` under the last one taken.
fn stacks<T>(lines: &[T], fits: impl Fn(&T, &T) -> bool) -> Vec<Vec<usize>> {
    (0..lines.len())
        .map(|i| {
            let mut group = vec![i];
            for j in i + 1..lines.len() {
                if group.len() < 3 && fits(&lines[group[group.len() - 1]], &lines[j]) {
                    group.push(j);
                }
            }
            group
        })
        .collect()
}

/// Candidate bands, most plausible first. Coordinates are in `g`'s pixels.
pub fn find_bands(g: &Gray) -> Vec<Band> {
    let mut lines: Vec<TextLine> = find_lines(g).into_iter().filter(|l| l.len >= 27 && l.len <= 47).collect();
    // Sort top to bottom by the perpendicular offset of their origins.
    lines.sort_by(|a, b| a.origin.1.total_cmp(&b.origin.1));
    let mut bands = Vec::new();
    let stacked = stacks(&lines, |a, b| {
        let (along, perp) = offset(a.origin, a.dir, b.origin);
        let pr = a.pitch.max(b.pitch) / a.pitch.min(b.pitch);
        (a.angle() - b.angle()).abs() < 0.06 && pr < 1.2 && perp > 1.1 * a.cap && perp < 4.2 * a.cap && along.abs() < 2.5 * a.pitch
    });
    for group in stacked {
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

/// Character height per pitch of OCR-B as the glyph locator measures it on the shared pages
/// (median `cap / pitch` of their MRZ lines): the merged-line locator derives the height from the
/// pitch, since a blurred line's ink is taller than its glyphs.
pub const CAP_PER_PITCH: f32 = 1.1;
/// Mean ink width of an OCR-B glyph, in pitches: the ink of `n` characters spans
/// `(n − 1 + GLYPH_PITCHES)` pitches (the character grid, the line windows and the merged-line
/// locator all rest on it).
pub const GLYPH_PITCHES: f32 = 0.62;
/// The ink of a line of `n` characters spans `n` plus this many pitches.
const EXTENT_PITCHES: f32 = GLYPH_PITCHES - 1.0;

/// A text line found as one elongated blob of merged ink.
#[derive(Clone, Debug)]
struct Stroke {
    /// Start of the ink along the line (left end, on the centre line).
    start: (f32, f32),
    /// Unit vector along the line.
    dir: (f32, f32),
    /// Ink length along the line.
    len: f32,
    /// Ink thickness across the line.
    thick: f32,
}

/// Fills horizontal gaps of at most `gap` pixels between ink in each row, so that the glyphs of a
/// text line merge into one blob.
fn close_rows(mask: &mut [bool], w: usize, gap: usize) {
    for row in mask.chunks_mut(w) {
        let mut last: Option<usize> = None;
        for x in 0..row.len() {
            if row[x] {
                if let Some(l) = last.filter(|&l| x - l > 1 && x - l - 1 <= gap) {
                    row[l + 1..x].iter_mut().for_each(|p| *p = true);
                }
                last = Some(x);
            }
        }
    }
}

/// Pixel lists of the 8-connected components of `mask` whose box is at least `min_w` wide.
fn wide_components(mask: &[bool], w: usize, h: usize, min_w: usize) -> Vec<Vec<(u32, u32)>> {
    let mut out = Vec::new();
    for_each_component(mask, w, h, |pixels| {
        let (x0, x1) = pixels.iter().fold((usize::MAX, 0), |(a, b), &i| (a.min(i % w), b.max(i % w)));
        if x1 + 1 >= x0 + min_w {
            out.push(pixels.iter().map(|&i| ((i % w) as u32, (i / w) as u32)).collect());
        }
    });
    out
}

/// Principal axis, length and thickness of a blob; `None` unless it is long and thin like a line of text.
fn stroke(px: &[(u32, u32)]) -> Option<Stroke> {
    let n = px.len() as f32;
    let mx = px.iter().map(|p| p.0 as f32).sum::<f32>() / n;
    let my = px.iter().map(|p| p.1 as f32).sum::<f32>() / n;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for p in px {
        let (dx, dy) = (p.0 as f32 - mx, p.1 as f32 - my);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    let theta = 0.5 * (2.0 * sxy).atan2(sxx - syy);
    if theta.abs() > 0.35 {
        return None;
    }
    let dir = (theta.cos(), theta.sin());
    let (mut u0, mut u1) = (f32::INFINITY, f32::NEG_INFINITY);
    let mut vs: Vec<f32> = Vec::with_capacity(px.len());
    for p in px {
        let (dx, dy) = (p.0 as f32 - mx, p.1 as f32 - my);
        let u = dx * dir.0 + dy * dir.1;
        u0 = u0.min(u);
        u1 = u1.max(u);
        vs.push(-dx * dir.1 + dy * dir.0);
    }
    let (lo, hi) = (percentile(&mut vs, 0.05), percentile(&mut vs, 0.95));
    let thick = (hi - lo) / 0.9;
    let len = u1 - u0 + 1.0;
    let fill = n / (len * thick.max(1.0));
    if thick < 3.0 || len < 12.0 * thick || fill < 0.45 {
        return None;
    }
    let vm = (lo + hi) / 2.0;
    let start = (mx + u0 * dir.0 - vm * dir.1, my + u0 * dir.1 + vm * dir.0);
    Some(Stroke { start, dir, len, thick })
}

/// Candidate bands for print too blurred or too small for the glyph locator ([`find_bands`]): each
/// text line is found as one blob of merged ink (row gaps closed), 2–3 parallel blobs of equal
/// length make a band, and the pitch follows from the length for each line length the band could
/// have (44 or 36 for two lines, 30 for three). Character heights come from the pitch
/// ([`CAP_PER_PITCH`]). Most plausible first (lowest on the page); coordinates in `g`'s pixels.
pub fn find_bands_merged(g: &Gray) -> Vec<Band> {
    let mask = merged_mask(g);
    let mut strokes: Vec<Stroke> = wide_components(&mask, g.w, g.h, g.w / 5).iter().filter_map(|p| stroke(p)).collect();
    strokes.sort_by(|a, b| a.start.1.total_cmp(&b.start.1));
    let mut bands = Vec::new();
    let stacked = stacks(&strokes, |a, b| {
        let (along, perp) = offset(a.start, a.dir, b.start);
        let ang = (a.dir.1.atan2(a.dir.0) - b.dir.1.atan2(b.dir.0)).abs();
        let lr = a.len.max(b.len) / a.len.min(b.len);
        let t = a.thick.max(b.thick);
        ang < 0.06 && lr < 1.15 && perp > 1.1 * t && perp < 3.5 * t && along.abs() < 0.08 * a.len
    });
    for group in stacked {
        for (take, lens) in [(3usize, &[30usize][..]), (2, &[44, 36][..])] {
            if group.len() < take {
                continue;
            }
            let ss: Vec<&Stroke> = group[..take].iter().map(|&k| &strokes[k]).collect();
            let len = ss.iter().map(|s| s.len).fold(0.0f32, f32::max);
            for &n in lens {
                let pitch = len / (n as f32 + EXTENT_PITCHES);
                // The first centre: half a glyph in from the ink's left end.
                let half = GLYPH_PITCHES / 2.0 * pitch;
                let lines: Vec<TextLine> = ss
                    .iter()
                    .map(|s| TextLine {
                        origin: (s.start.0 + half * s.dir.0, s.start.1 + half * s.dir.1),
                        dir: s.dir,
                        pitch,
                        cap: CAP_PER_PITCH * pitch,
                        len: n,
                        shifts: Vec::new(),
                        lifts: Vec::new(),
                    })
                    .collect();
                let bbox = band_box(&lines);
                bands.push(Band { lines, bbox });
            }
        }
    }
    bands.sort_by(|a, b| b.bbox[1].total_cmp(&a.bbox[1]));
    bands
}

/// The ink mask the merged-line locator works on: binarised, row gaps closed.
fn merged_mask(g: &Gray) -> Vec<bool> {
    let side = g.w.max(g.h);
    let mut mask = binarise(g, ((side / 24) | 1).max(15));
    close_rows(&mut mask, g.w, (side / 25).max(3));
    mask
}

/// Axis-aligned box `[x, y, w, h]` around a band's lines.
fn band_box(lines: &[TextLine]) -> [f32; 4] {
    let (mut x0, mut y0, mut x1, mut y1) = (f32::INFINITY, f32::INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY);
    for l in lines {
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
    [x0, y0, x1 - x0, y1 - y0]
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
    let bbox = band_box(&out);
    Some(Band { lines: out, bbox })
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

    /// A page with two dark bars where an MRZ's merged lines would be (1000 × 600, bars 880 × 14
    /// at rows 470 and 510), as blur leaves a two-line zone.
    fn barred_page() -> Gray {
        let (w, h) = (1000, 600);
        let mut px = vec![220.0; w * h];
        for top in [470usize, 510] {
            for y in top..top + 14 {
                for x in 60..940 {
                    px[y * w + x] = 40.0;
                }
            }
        }
        Gray { w, h, px }
    }

    #[test]
    fn merged_lines_make_bands_with_the_pitch_from_their_length() {
        let bands = find_bands_merged(&barred_page());
        let lens: Vec<usize> = bands.iter().map(|b| b.lines[0].len).collect();
        assert_eq!(lens, vec![44, 36], "one band per two-line format");
        for b in &bands {
            assert_eq!(b.lines.len(), 2);
            let n = b.lines[0].len as f32;
            let pitch = 880.0 / (n + EXTENT_PITCHES);
            for (l, y) in b.lines.iter().zip([476.5f32, 516.5]) {
                assert!((l.pitch - pitch).abs() < 0.2, "pitch {} for {n} characters", l.pitch);
                assert!((l.cap - CAP_PER_PITCH * pitch).abs() < 0.2);
                // First character centre: half a glyph in from the ink's left end, on the bar's middle.
                assert!((l.origin.0 - (60.0 + GLYPH_PITCHES / 2.0 * pitch)).abs() < 1.0 && (l.origin.1 - y).abs() < 1.0, "origin {:?}", l.origin);
            }
        }
    }

    #[test]
    fn short_or_single_strokes_make_no_merged_band() {
        let (w, h) = (1000, 600);
        let mut px = vec![220.0; w * h];
        // One long bar (a single line is no zone) and a pair too short for a line of text.
        for (x0, x1, top) in [(60usize, 940usize, 100usize), (100, 250, 300), (100, 250, 330)] {
            for y in top..top + 14 {
                for x in x0..x1 {
                    px[y * w + x] = 40.0;
                }
            }
        }
        assert!(find_bands_merged(&Gray { w, h, px }).is_empty());
    }

    #[test]
    fn row_gaps_close_up_to_the_limit() {
        let mut row = vec![true, false, false, true, false, false, false, false, true];
        close_rows(&mut row, 9, 2);
        assert_eq!(row, vec![true, true, true, true, false, false, false, false, true]);
    }

    #[test]
    fn a_band_turned_twice_is_itself() {
        let b = &find_bands_merged(&barred_page())[0];
        let t = b.turned(1000, 600);
        // Turned: the bottom line comes first, now at the top, starting where it ended.
        let end = b.lines[1].center(b.lines[1].len as f32 - 1.0);
        assert!(t.lines[0].dir.0 > 0.99 && t.lines[0].origin.1 < t.lines[1].origin.1);
        assert!((t.lines[0].origin.0 - (999.0 - end.0)).abs() < 0.01 && (t.lines[0].origin.1 - (599.0 - end.1)).abs() < 0.01);
        let back = t.turned(1000, 600);
        for (a, z) in b.lines.iter().zip(&back.lines) {
            assert!((a.origin.0 - z.origin.0).abs() < 0.01 && (a.origin.1 - z.origin.1).abs() < 0.01, "{:?} against {:?}", a.origin, z.origin);
            assert!((a.dir.0 - z.dir.0).abs() < 1e-6 && (a.dir.1 - z.dir.1).abs() < 1e-6);
        }
    }

    #[test]
    fn blank_page_has_no_band() {
        let g = Gray { w: 200, h: 100, px: vec![200.0; 20000] };
        assert!(find_bands(&g).is_empty());
        assert!(find_bands_merged(&g).is_empty());
    }
}
