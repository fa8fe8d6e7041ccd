//! The few neural-network pieces both recognisers run by hand: weight-file reading, 3×3 convolution
//! with ReLU, max-pooling and softmax over channel-major `f32` planes.

use crate::ocr::ModelError;

/// A convolution's weights `[cout, cin, k]` (k = 9 for 3×3) and biases.
pub(crate) struct Conv {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub cin: usize,
    pub cout: usize,
}

/// Reads little-endian `f32` arrays from a weight file in order.
pub(crate) struct Weights<'a> {
    data: &'a [u8],
    pub pos: usize,
}

impl<'a> Weights<'a> {
    /// Checks the 8-byte magic and the `u32` count of `f32`s that follows; reading starts after it.
    pub fn open(data: &'a [u8], magic: &[u8; 8]) -> Result<(Self, usize), ModelError> {
        if data.get(..8) != Some(&magic[..]) {
            return Err(ModelError::BadFormat("magic"));
        }
        let count = data.get(8..12).ok_or(ModelError::BadFormat("header"))?;
        let count = u32::from_le_bytes([count[0], count[1], count[2], count[3]]) as usize;
        Ok((Self { data, pos: 12 }, count))
    }

    /// Errors unless every byte was read and the header's count matches.
    pub fn finish(&self, count: usize) -> Result<(), ModelError> {
        if self.pos != self.data.len() || count * 4 + 12 != self.data.len() {
            return Err(ModelError::BadFormat("length"));
        }
        Ok(())
    }

    pub fn take(&mut self, n: usize) -> Result<Vec<f32>, ModelError> {
        let end = self.pos + n * 4;
        let bytes = self.data.get(self.pos..end).ok_or(ModelError::BadFormat("truncated"))?;
        self.pos = end;
        Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    pub fn conv(&mut self, cin: usize, cout: usize, k: usize) -> Result<Conv, ModelError> {
        Ok(Conv { w: self.take(cout * cin * k)?, b: self.take(cout)?, cin, cout })
    }
}

/// 'Same'-padded 3×3 convolution + ReLU over `cin` planes of `h × w`.
pub(crate) fn conv3x3_relu(c: &Conv, x: &[f32], h: usize, w: usize) -> Vec<f32> {
    let mut out = vec![0f32; c.cout * h * w];
    for o in 0..c.cout {
        let plane = &mut out[o * h * w..(o + 1) * h * w];
        plane.iter_mut().for_each(|v| *v = c.b[o]);
        for i in 0..c.cin {
            let src = &x[i * h * w..(i + 1) * h * w];
            for ky in 0..3 {
                for kx in 0..3 {
                    let k = c.w[((o * c.cin + i) * 3 + ky) * 3 + kx];
                    if k == 0.0 {
                        continue;
                    }
                    for y in 0..h {
                        let sy = y as isize + ky as isize - 1;
                        if sy < 0 || sy >= h as isize {
                            continue;
                        }
                        let srow = &src[sy as usize * w..(sy as usize + 1) * w];
                        let drow = &mut plane[y * w..(y + 1) * w];
                        match kx {
                            0 => axpy(&mut drow[1..], &srow[..w - 1], k),
                            1 => axpy(drow, srow, k),
                            _ => axpy(&mut drow[..w - 1], &srow[1..], k),
                        }
                    }
                }
            }
        }
        plane.iter_mut().for_each(|v| *v = v.max(0.0));
    }
    out
}

/// `d += k · s`, element-wise.
#[inline]
pub(crate) fn axpy(d: &mut [f32], s: &[f32], k: f32) {
    for (a, b) in d.iter_mut().zip(s) {
        *a += k * b;
    }
}

/// Max-pool by `ph × pw` (floor), per plane.
pub(crate) fn maxpool(x: &[f32], c: usize, h: usize, w: usize, ph: usize, pw: usize) -> Vec<f32> {
    let (oh, ow) = (h / ph, w / pw);
    let mut out = vec![0f32; c * oh * ow];
    for ch in 0..c {
        let src = &x[ch * h * w..(ch + 1) * h * w];
        for y in 0..oh {
            for xx in 0..ow {
                let mut m = f32::NEG_INFINITY;
                for dy in 0..ph {
                    for dx in 0..pw {
                        m = m.max(src[(y * ph + dy) * w + xx * pw + dx]);
                    }
                }
                out[ch * oh * ow + y * ow + xx] = m;
            }
        }
    }
    out
}

/// In-place softmax.
pub(crate) fn softmax(p: &mut [f32]) {
    let m = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in p.iter_mut() {
        *v = (*v - m).exp();
        sum += *v;
    }
    p.iter_mut().for_each(|v| *v /= sum);
}
