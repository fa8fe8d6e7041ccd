//! YuNet face detection: letterboxed inference, anchor-free decoding, NMS, and a rescaled retry for close-ups.

use std::borrow::Cow;
use std::path::Path;

use image::RgbImage;

use crate::error::VisionError;
use crate::net::{Net, Outputs};

/// One detected face in original-image pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Face {
    /// `[x, y, w, h]` of the face box (top-left corner and size), clamped to the image.
    pub bbox: [f32; 4],
    /// Right eye, left eye, nose tip, right mouth corner, left mouth corner (subject's right = image left);
    /// the order the alignment templates use.
    pub landmarks: [[f32; 2]; 5],
    /// Detector confidence in 0..1.
    pub score: f32,
}

impl Face {
    /// Box area in square pixels, used to pick the main face.
    pub fn area(&self) -> f32 {
        self.bbox[2] * self.bbox[3]
    }

    /// A face covering the whole image, for inputs that are already tight face crops on which the detector finds
    /// nothing. Landmarks are placed at the template positions of a frontal face, so alignment still works.
    pub fn whole_image(width: u32, height: u32) -> Self {
        let (w, h) = (width as f32, height as f32);
        // Fractions of the box from the ArcFace 112x112 template (eyes at 34%/66% x, 46% y, nose 64%, mouth 82%).
        let p = |fx: f32, fy: f32| [fx * w, fy * h];
        Self {
            bbox: [0.0, 0.0, w, h],
            landmarks: [p(0.342, 0.462), p(0.657, 0.460), p(0.500, 0.641), p(0.371, 0.825), p(0.631, 0.824)],
            score: 0.0,
        }
    }
}

/// Default square network input: YuNet's native size (faces of ~10..300 px are found at this scale).
pub const DEFAULT_INPUT_SIZE: u32 = 640;
/// Default minimum confidence; measured on the eval set (no face found on document back sides at this level).
pub const DEFAULT_SCORE_THRESHOLD: f32 = 0.6;
/// IoU above which the lower-scoring of two boxes is dropped (YuNet's reference value).
pub const NMS_IOU: f32 = 0.3;

/// YuNet detector; one instance serves all threads.
pub struct FaceDetector {
    net: Net,
    size: u32,
    /// The same network at `SMALL_INPUT`, for images that fit it: the network is fully
    /// convolutional, so a 250 px selfie or a portrait crop gives the same faces at a quarter of
    /// the cost of running it zero-padded to 640.
    small: Option<Net>,
    score_threshold: f32,
}

/// Input side of the second, small network.
const SMALL_INPUT: u32 = 320;

impl FaceDetector {
    /// Loads YuNet (face_detection_yunet_2023mar.onnx) at the default 640x640 input.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, VisionError> {
        Self::load_with_size(path, DEFAULT_INPUT_SIZE)
    }

    /// Loads YuNet at a square input of `size` px (rounded up to a multiple of 32): smaller is faster but loses
    /// small faces (document portraits).
    pub fn load_with_size(path: impl AsRef<Path>, size: u32) -> Result<Self, VisionError> {
        let size = size.max(32).div_ceil(32) * 32;
        let s = size as usize;
        let net = Net::load(path.as_ref(), "yunet", [1, 3, s, s], true)?;
        let small = if size > SMALL_INPUT {
            let t = SMALL_INPUT as usize;
            Some(Net::load(path.as_ref(), "yunet", [1, 3, t, t], true)?)
        } else {
            None
        };
        Ok(Self { net, size, small, score_threshold: DEFAULT_SCORE_THRESHOLD })
    }

    /// Changes the minimum detector confidence (0..1).
    pub fn with_score_threshold(mut self, threshold: f32) -> Self {
        self.score_threshold = threshold;
        self
    }

    /// Network input side in pixels.
    pub fn input_size(&self) -> u32 {
        self.size
    }

    /// Finds faces, largest first, in original-image coordinates.
    ///
    /// The image is shrunk to fit the network input (never enlarged). If nothing is found, two rescaled retries
    /// follow: shrunk to a quarter of the input (close-ups and tight crops whose face is bigger than YuNet's
    /// ~300 px range), then, for small images, enlarged to fill the input (tiny portraits on low-res scans).
    pub fn detect(&self, img: &RgbImage) -> Result<Vec<Face>, VisionError> {
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return Err(VisionError::BadInput("zero-sized image"));
        }
        let long = w.max(h) as f32;
        let fit = self.size as f32 / long;
        let mut scales = vec![fit.min(1.0)];
        if long * scales[0] > self.size as f32 / 4.0 + 1.0 {
            scales.push(self.size as f32 / 4.0 / long);
        }
        if fit > 1.5 {
            scales.push(fit);
        }
        for scale in scales {
            let faces = self.detect_at(img, scale)?;
            if !faces.is_empty() {
                return Ok(faces);
            }
        }
        Ok(Vec::new())
    }

    /// Finds faces on a document page, largest first, as [`detect`](Self::detect) finds them, at
    /// about half the cost when the page is larger than the small input.
    ///
    /// Two passes of the small network replace the full-size one: the page box-averaged to fit
    /// 320 px locates the largest face (a page's portrait is well inside YuNet's range there; the
    /// box average is cheap and the next pass sets the box), then the 320 px window around it of
    /// the page at the full pass's scale, aligned to the network's 32 px grid, gives its box and
    /// landmarks as the full pass would (the same pixels on the same anchors; only context beyond
    /// the window differs). When either pass finds nothing, or the face does not fit a window,
    /// the full passes of `detect` run.
    pub fn detect_document(&self, img: &RgbImage) -> Result<Vec<Face>, VisionError> {
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return Err(VisionError::BadInput("zero-sized image"));
        }
        let long = w.max(h) as f32;
        let Some(small) = self.small.as_ref().filter(|_| long > SMALL_INPUT as f32) else {
            // The page already fits the small input: `detect`'s first pass is the small one.
            return self.detect(img);
        };
        // The full pass's image: shrunk to fit the large input, never enlarged.
        let (page, nw, nh) = self.shrunk(img, (self.size as f32 / long).min(1.0));
        let page = page.as_ref();
        let k = nw.max(nh).div_ceil(SMALL_INPUT).max(1);
        let thumb = crate::resize::box_average(page, k);
        let located = self.infer(small, SMALL_INPUT as usize, &thumb, 0, 0)?;
        let located = to_image(located, (k * w) as f32 / nw as f32, (k * h) as f32 / nh as f32, w, h);
        let Some(face) = located.first() else {
            return self.detect(img);
        };
        let (sx, sy) = (nw as f32 / w as f32, nh as f32 / h as f32);
        let [fx, fy, fw, fh] = face.bbox;
        // Window origin on the 32 px grid, the face centre at least half a window from its left
        // and top edges and 128 px from its right and bottom ones.
        const GRID: f32 = 32.0;
        let half = SMALL_INPUT as f32 / 2.0;
        let origin = |c: f32| (((c - half).max(0.0) / GRID).floor() * GRID) as u32;
        let (x0, y0) = (origin((fx + fw / 2.0) * sx), origin((fy + fh / 2.0) * sy));
        let margin = half - GRID - GRID;
        if fw * sx / 2.0 > margin || fh * sy / 2.0 > margin {
            return self.detect(img);
        }
        let mut faces = self.infer(small, SMALL_INPUT as usize, page, x0, y0)?;
        if faces.is_empty() {
            // Context beyond the window mattered (seen on one engraved portrait): the full passes.
            return self.detect(img);
        }
        for f in &mut faces {
            f.bbox = [f.bbox[0] + x0 as f32, f.bbox[1] + y0 as f32, f.bbox[2], f.bbox[3]];
            for l in &mut f.landmarks {
                *l = [l[0] + x0 as f32, l[1] + y0 as f32];
            }
        }
        Ok(to_image(faces, w as f32 / nw as f32, h as f32 / nh as f32, w, h))
    }

    /// One pass at a given resize factor (`scale` * image side must fit the input).
    fn detect_at(&self, img: &RgbImage, scale: f32) -> Result<Vec<Face>, VisionError> {
        let (w, h) = img.dimensions();
        let (src, nw, nh) = self.shrunk(img, scale);
        let (net, size) = match &self.small {
            Some(small) if nw <= SMALL_INPUT && nh <= SMALL_INPUT => (small, SMALL_INPUT as usize),
            _ => (&self.net, self.size as usize),
        };
        let faces = self.infer(net, size, &src, 0, 0)?;
        Ok(to_image(faces, w as f32 / nw as f32, h as f32 / nh as f32, w, h))
    }

    /// `img` resized by `scale` (each side 1 to the large input), borrowed when that is its size.
    fn shrunk<'a>(&self, img: &'a RgbImage, scale: f32) -> (Cow<'a, RgbImage>, u32, u32) {
        let (w, h) = img.dimensions();
        let nw = ((w as f32 * scale).round() as u32).clamp(1, self.size);
        let nh = ((h as f32 * scale).round() as u32).clamp(1, self.size);
        let out = if (nw, nh) == (w, h) { Cow::Borrowed(img) } else { Cow::Owned(crate::resize::downscale(img, nw, nh)) };
        (out, nw, nh)
    }

    /// Runs `net` (input `size`²) on the window of `src` at (`x0`, `y0`), zero beyond `src`:
    /// faces in window pixels, after NMS.
    fn infer(&self, net: &Net, size: usize, src: &RgbImage, x0: u32, y0: u32) -> Result<Vec<Face>, VisionError> {
        // NCHW, BGR, raw 0..255, zero padding right/bottom.
        let plane = size * size;
        let mut data = vec![0f32; 3 * plane];
        let (x1, y1) = (src.width().min(x0 + size as u32), src.height().min(y0 + size as u32));
        for y in y0..y1 {
            for x in x0..x1 {
                let p = src.get_pixel(x, y);
                let i = (y - y0) as usize * size + (x - x0) as usize;
                data[i] = f32::from(p[2]);
                data[plane + i] = f32::from(p[1]);
                data[2 * plane + i] = f32::from(p[0]);
            }
        }
        let outputs = net.run(data)?;
        let faces = decode_outputs(&outputs, size, self.score_threshold, net.name())?;
        Ok(nms(faces, NMS_IOU))
    }
}

/// Faces found on an image shrunk by `1/sx × 1/sy`, in the `w × h` original's pixels (boxes
/// clamped to it), largest first.
fn to_image(mut faces: Vec<Face>, sx: f32, sy: f32, w: u32, h: u32) -> Vec<Face> {
    for f in &mut faces {
        let [x, y, bw, bh] = f.bbox;
        let x0 = (x * sx).clamp(0.0, w as f32);
        let y0 = (y * sy).clamp(0.0, h as f32);
        let x1 = ((x + bw) * sx).clamp(0.0, w as f32);
        let y1 = ((y + bh) * sy).clamp(0.0, h as f32);
        f.bbox = [x0, y0, x1 - x0, y1 - y0];
        for l in &mut f.landmarks {
            l[0] *= sx;
            l[1] *= sy;
        }
    }
    faces.retain(|f| f.bbox[2] >= 1.0 && f.bbox[3] >= 1.0);
    faces.sort_by(|a, b| b.area().total_cmp(&a.area()));
    faces
}

/// Decodes YuNet's 12 outputs (cls, obj, bbox, kps for strides 8/16/32) into candidate faces in network pixels.
fn decode_outputs(
    outputs: &Outputs,
    size: usize,
    threshold: f32,
    model: &'static str,
) -> Result<Vec<Face>, VisionError> {
    const STRIDES: [usize; 3] = [8, 16, 32];
    if outputs.len() != 12 {
        return Err(VisionError::BadOutput { model, detail: format!("{} outputs, expected 12", outputs.len()) });
    }
    let mut faces = Vec::new();
    for (k, &stride) in STRIDES.iter().enumerate() {
        let cols = size / stride;
        let cells = cols * (size / stride);
        let cls = &outputs[k].1;
        let obj = &outputs[3 + k].1;
        let bbox = &outputs[6 + k].1;
        let kps = &outputs[9 + k].1;
        if cls.len() != cells || obj.len() != cells || bbox.len() != cells * 4 || kps.len() != cells * 10 {
            return Err(VisionError::BadOutput {
                model,
                detail: format!("stride {stride}: sizes {} {} {} {}", cls.len(), obj.len(), bbox.len(), kps.len()),
            });
        }
        let s = stride as f32;
        for i in 0..cells {
            let score = (cls[i].clamp(0.0, 1.0) * obj[i].clamp(0.0, 1.0)).sqrt();
            if score < threshold {
                continue;
            }
            let (r, c) = ((i / cols) as f32, (i % cols) as f32);
            let b = &bbox[i * 4..i * 4 + 4];
            let cx = (c + b[0]) * s;
            let cy = (r + b[1]) * s;
            let bw = b[2].exp() * s;
            let bh = b[3].exp() * s;
            let kp = &kps[i * 10..i * 10 + 10];
            let mut landmarks = [[0f32; 2]; 5];
            for (j, l) in landmarks.iter_mut().enumerate() {
                *l = [(kp[2 * j] + c) * s, (kp[2 * j + 1] + r) * s];
            }
            faces.push(Face { bbox: [cx - bw / 2.0, cy - bh / 2.0, bw, bh], landmarks, score });
        }
    }
    Ok(faces)
}

/// Intersection over union of two `[x, y, w, h]` boxes.
pub(crate) fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let x0 = a[0].max(b[0]);
    let y0 = a[1].max(b[1]);
    let x1 = (a[0] + a[2]).min(b[0] + b[2]);
    let y1 = (a[1] + a[3]).min(b[1] + b[3]);
    let inter = (x1 - x0).max(0.0) * (y1 - y0).max(0.0);
    let union = a[2] * a[3] + b[2] * b[3] - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// Greedy non-maximum suppression: keep the best-scoring box, drop those overlapping it by more than `thresh`.
fn nms(mut faces: Vec<Face>, thresh: f32) -> Vec<Face> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Face> = Vec::new();
    for f in faces {
        if kept.iter().all(|k| iou(&k.bbox, &f.bbox) <= thresh) {
            kept.push(f);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(bbox: [f32; 4], score: f32) -> Face {
        Face { bbox, landmarks: [[0.0; 2]; 5], score }
    }

    #[test]
    fn iou_cases() {
        assert!((iou(&[0.0, 0.0, 10.0, 10.0], &[0.0, 0.0, 10.0, 10.0]) - 1.0).abs() < 1e-6);
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[20.0, 20.0, 5.0, 5.0]), 0.0);
        assert!((iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 10.0, 10.0]) - 50.0 / 150.0).abs() < 1e-6);
    }

    #[test]
    fn nms_keeps_best_of_overlapping() {
        let kept = nms(
            vec![
                face([0.0, 0.0, 10.0, 10.0], 0.7),
                face([1.0, 1.0, 10.0, 10.0], 0.9),
                face([50.0, 50.0, 10.0, 10.0], 0.8),
            ],
            0.3,
        );
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].score, 0.9);
        assert_eq!(kept[1].score, 0.8);
    }
}
