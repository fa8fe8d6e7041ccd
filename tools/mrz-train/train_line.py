#!/usr/bin/env python3
"""Train the MRZ line recogniser shipped in lib/kycgate-mrz/model/mrz_ctc.bin (CNN + CTC, JAX, CPU).

Data: synthetic OCR-B lines from train.py's renderer (Debian `fonts-ocr-b`) and the *train* part of
lines_doubango (split by source document, lib/kycgate-mrz/eval/lines_split.tsv), each real crop also
seen as several degraded copies (blur, down-sampling, noise, JPEG, contrast, stroke weight). The
validation part is never trained on; its line-exact score is printed per epoch for information only
(the shipped weights are the last epoch's, not the best one's). `--holdout K` also keeps the train
documents with sha256(source)[8:16] mod K = 0 out of training and prints their line-exact score per
epoch: that slice, not the validation part, is for choosing an epoch (each epoch's weights are also
written to OUT.epN). `--init FILE` starts from saved weights (to continue a run) instead of random ones.

Line window (must match lib/kycgate-mrz/src/line.rs): the line is resampled isotropically so that
1.6 character heights fill LINE_H = 24 rows, centred on the line's middle, from 0.6 character
heights before the first glyph's ink to 0.6 after the last one, at most MAX_W columns (squeezed
along the line beyond that); ink = 1 after min/max normalisation over the window; outside the image
is paper (0). For a line crop, the text band and ink extent come from the ink profile (rows holding
at least 15% of the busiest row's ink, columns with any ink), see `crop_geometry`.

Network: conv3x3 1->16, pool 2x2, conv 16->32, pool 2x2, conv 32->64, pool 2x1, conv 64->64 (all
ReLU, 'same'), height (3 rows x 64 ch, feature = c*3+h) collapsed into a 1-D sequence, conv1d k=3
192->128 ReLU, 1x1 128->38 logits (0..36 = ALPHABET, 37 = CTC blank). One frame per 4 columns.

Weight file: b"MRZCTC01", u32 LE count of f32s, then f32 LE arrays: c1 w[16,1,3,3] b[16], c2 w[32,16,3,3]
b[32], c3 w[64,32,3,3] b[64], c4 w[64,64,3,3] b[64], t1 w[128,192,3] b[128], out w[38,128] b[38].
"""
import argparse
import hashlib
import io
import os
import struct
import time

import numpy as np
from PIL import Image, ImageFilter

import train as cell

ALPHABET = cell.ALPHABET
BLANK = len(ALPHABET)
LINE_H = 24
CAPS_IN_H = 1.6
MARGIN_CAPS = 0.6
MAX_W = 768
BUCKETS = [256, 384, 512, 640, 768]
MAX_LABEL = 48
HERE = os.path.dirname(os.path.abspath(__file__))


def cut_window(img, x0, y0, x1, y1, cap):
    """Samples the window from (x0, y0) to (x1, y1) (points on the line's middle, ink-edge ± margin)."""
    step = CAPS_IN_H * cap / LINE_H
    length = float(np.hypot(x1 - x0, y1 - y0))
    dx, dy = (x1 - x0) / max(length, 1e-6), (y1 - y0) / max(length, 1e-6)
    w = int(np.ceil(length / step))
    if w > MAX_W:
        w = MAX_W
    w = max(w, 8)
    sx = length / w
    jj = (np.arange(w) + 0.5) * sx
    ii = ((np.arange(LINE_H) + 0.5) / LINE_H - 0.5) * CAPS_IN_H * cap
    a, b = np.meshgrid(jj, ii)
    xs = x0 + a * dx - b * dy
    ys = y0 + a * dy + b * dx
    v = cell.bilinear(img, ys, xs)
    h, wi = img.shape
    inside = (xs >= -0.5) & (ys >= -0.5) & (xs <= wi - 0.5) & (ys <= h - 0.5)
    if not inside.any():
        return np.zeros_like(v)
    lo, hi = v[inside].min(), v[inside].max()
    if hi - lo < 1e-3:
        return np.zeros_like(v)
    return np.where(inside, (hi - v) / (hi - lo), 0.0).astype(np.float32)


def crop_geometry(img):
    """Text band of a line crop from its ink profile: (x_ink_left, x_ink_right, y_mid, cap) or None."""
    ink = img < (img.min() + img.max()) / 2
    rows = ink.sum(1)
    if rows.max() == 0:
        return None
    band = np.nonzero(rows >= 0.15 * rows.max())[0]
    r0, r1 = band[0], band[-1]
    cols = np.nonzero(ink[r0:r1 + 1].any(0))[0]
    cap = float(r1 - r0 + 1)
    return float(cols[0]) - 0.5, float(cols[-1]) + 0.5, (r0 + r1) / 2.0, cap


def window_from_geometry(img, left, right, ymid, cap, rng):
    """Cuts the window with reader-like errors in height, centre, angle and margins."""
    cap_j = cap * rng.uniform(0.88, 1.12)
    ym = ymid + rng.normal(0, 0.06) * cap
    ang = rng.normal(0, 0.015)
    m0 = cap_j * (MARGIN_CAPS + rng.uniform(-0.35, 0.5))
    m1 = cap_j * (MARGIN_CAPS + rng.uniform(-0.35, 0.5))
    cx = (left + right) / 2
    half = (right - left) / 2
    ca, sa = np.cos(ang), np.sin(ang)
    x0, y0 = cx - (half + m0) * ca, ym - (half + m0) * sa
    x1, y1 = cx + (half + m1) * ca, ym + (half + m1) * sa
    return cut_window(img, x0, y0, x1, y1, cap_j)


def synthetic_sample(rng, fonts):
    arr, text, centers, pitch, cap, angle = cell.render_line(rng, fonts)
    (xa, ya), (xb, yb) = centers[0], centers[-1]
    # Ink of OCR-B glyphs spans about ±0.31 pitch around the centre.
    d = np.array([xb - xa, yb - ya]) / max(np.hypot(xb - xa, yb - ya), 1e-6)
    left = np.array([xa, ya]) - 0.31 * pitch * d
    right = np.array([xb, yb]) + 0.31 * pitch * d
    mid = (left + right) / 2
    length = np.hypot(*(right - left))
    # Re-express as an axis-aligned geometry in a frame rotated with the line: sample directly.
    cap_j = cap * rng.uniform(0.88, 1.12)
    off = rng.normal(0, 0.06) * cap
    nrm = np.array([-d[1], d[0]])
    mid = mid + off * nrm
    ang = rng.normal(0, 0.015)
    dd = np.array([d[0] * np.cos(ang) - d[1] * np.sin(ang), d[0] * np.sin(ang) + d[1] * np.cos(ang)])
    m0 = cap_j * (MARGIN_CAPS + rng.uniform(-0.35, 0.5))
    m1 = cap_j * (MARGIN_CAPS + rng.uniform(-0.35, 0.5))
    p0 = mid - (length / 2 + m0) * dd
    p1 = mid + (length / 2 + m1) * dd
    win = cut_window(arr, p0[0], p0[1], p1[0], p1[1], cap_j)
    if rng.random() < 0.2:
        win = (win > rng.uniform(0.35, 0.65)).astype(np.float32)
    return win, text


def degrade_crop(img, rng):
    """A binarised real crop made to look photographed: weight, blur, scale, contrast, noise, JPEG."""
    im = Image.fromarray(img.astype(np.uint8))
    r = rng.random()
    if r < 0.2:
        im = im.filter(ImageFilter.MaxFilter(3))  # thinner ink
    elif r < 0.3:
        im = im.filter(ImageFilter.MinFilter(3))
    if rng.random() < 0.7:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 3.0)))
    scale = 1.0
    if rng.random() < 0.6:
        scale = rng.uniform(0.25, 0.8)
        im = im.resize((max(8, int(im.width * scale)), max(8, int(im.height * scale))), Image.BILINEAR)
    a = np.asarray(im, np.float32) / 255.0
    bg, ink = rng.uniform(140, 255), rng.uniform(0, 110)
    a = ink + (bg - ink) * a
    a = a + rng.normal(0, rng.uniform(0, 12), a.shape)
    a = np.clip(a, 0, 255)
    if rng.random() < 0.5:
        buf = io.BytesIO()
        Image.fromarray(a.astype(np.uint8)).save(buf, "JPEG", quality=int(rng.integers(20, 90)))
        a = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"), np.float32)
    return a, scale


def blur_window(win, rng):
    """A window as the reader cuts it from heavily blurred or tiny print: blurred by 0.07–0.25 of the
    window's character height, or shrunk to 30–60% and enlarged again, then re-normalised to
    ink = 1 as `cut_window` does (`--heavy-blur`)."""
    im = Image.fromarray((np.clip(win, 0, 1) * 255).astype(np.uint8))
    cap_px = LINE_H / CAPS_IN_H
    if rng.random() < 0.6:
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.07, 0.25) * cap_px))
    else:
        f = rng.uniform(0.3, 0.6)
        small = im.resize((max(4, int(im.width * f)), max(4, int(im.height * f))), Image.BILINEAR)
        im = small.resize(im.size, Image.BILINEAR)
    a = np.asarray(im, np.float32) / 255.0
    a = a + rng.normal(0, rng.uniform(0, 0.04), a.shape)
    lo, hi = a.min(), a.max()
    if hi - lo < 1e-3:
        return win
    return ((a - lo) / (hi - lo)).astype(np.float32)


def holdout_doc(source, k):
    """Train documents kept out for epoch selection (independent of the val split's hash digits)."""
    return k > 0 and int(hashlib.sha256(source.encode()).hexdigest()[8:16], 16) % k == 0


def load_real(eval_dir, part, holdout=0):
    """part: "train" (minus the holdout slice), "val", or "holdout" (train documents kept out)."""
    d = os.path.join(eval_dir, "lines_doubango")
    split = {}
    for row in open(os.path.join(HERE, "../../lib/kycgate-mrz/eval/lines_split.tsv"), encoding="utf-8"):
        if row.startswith("#"):
            continue
        p, f = row.rstrip("\n").split("\t")
        split[f] = p
    out = []
    for row in open(os.path.join(d, "labels.tsv"), encoding="utf-8").read().splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 5:
            continue
        side = split.get(cols[0])
        if side == "train" and holdout_doc(cols[2], holdout):
            side = "holdout"
        if side != part:
            continue
        gt = cols[1].strip()
        if not gt or len(gt) > MAX_LABEL or any(c not in ALPHABET for c in gt):
            continue
        img = np.asarray(Image.open(os.path.join(d, cols[0])).convert("L"), np.float32)
        out.append((img, gt, cols[4]))
    return out


def plausible(geom, n):
    """Crops whose label covers the whole line: ink width per character near OCR-B's pitch/height."""
    left, right, _, cap = geom
    pitch = (right - left) / max(n - 0.38, 1)
    return 0.65 <= pitch / cap <= 1.05


def bucket_of(w):
    for b in BUCKETS:
        if w <= b:
            return b
    return BUCKETS[-1]


def pack(samples):
    """Groups (window, text) samples into per-bucket arrays."""
    by = {}
    for win, text in samples:
        b = bucket_of(win.shape[1])
        x = np.zeros((LINE_H, b), np.uint8)
        x[:, :win.shape[1]] = (np.clip(win, 0, 1) * 255).astype(np.uint8)
        lab = np.zeros(MAX_LABEL, np.int32)
        lab[:len(text)] = [ALPHABET.index(c) for c in text]
        by.setdefault(b, ([], [], [], []))
        e = by[b]
        e[0].append(x)
        e[1].append(win.shape[1])
        e[2].append(lab)
        e[3].append(len(text))
    return {b: tuple(np.array(v) for v in e) for b, e in by.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--synthetic", type=int, default=10000, help="synthetic lines")
    ap.add_argument("--real-copies", type=int, default=6, help="degraded copies per real train crop")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    ap.add_argument("--eval-dir", default=os.environ.get("KYCGATE_EVAL_DIR", os.path.join(HERE, "../../../shared/eval")) + "/mrz")
    ap.add_argument("--init", default=None, help="start from these weights (MRZCTC01 file)")
    ap.add_argument("--holdout", type=int, default=0, help="keep train documents with hash mod K = 0 out, for epoch selection")
    ap.add_argument("--heavy-blur", type=float, default=0.0,
                    help="share of samples also added as a heavily blurred or shrunk copy (blur_window)")
    ap.add_argument("--out", default=os.path.join(HERE, "../../lib/kycgate-mrz/model/mrz_ctc.bin"))
    args = ap.parse_args()
    cell.AUG.update({"uneven": True, "tight": False, "rotate": True})

    import jax
    import jax.numpy as jnp
    import optax

    fonts = cell.find_fonts()
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    samples = [synthetic_sample(rng, fonts) for _ in range(args.synthetic)]
    print(f"synthetic: {len(samples)} lines, {time.time() - t0:.0f}s", flush=True)
    real = load_real(args.eval_dir, "train", args.holdout)
    kept = 0
    for img, gt, _ in real:
        g = crop_geometry(img)
        if g is None or not plausible(g, len(gt)):
            continue
        kept += 1
        samples.append((window_from_geometry(img, *g, rng), gt))
        for _ in range(args.real_copies):
            a, s = degrade_crop(img, rng)
            g2 = crop_geometry(a)
            if g2 is None:
                continue
            samples.append((window_from_geometry(a, *g2, rng), gt))
    if args.heavy_blur > 0:
        extra = [(blur_window(w, rng), t) for w, t in samples if rng.random() < args.heavy_blur]
        samples.extend(extra)
        print(f"heavy blur: {len(extra)} extra samples", flush=True)
    print(f"real train crops: {len(real)}, plausible labels {kept}; samples {len(samples)}, {time.time() - t0:.0f}s", flush=True)
    def plain_windows(part):
        out = []
        for img, gt, status in load_real(args.eval_dir, part, args.holdout):
            g = crop_geometry(img)
            if g is None:
                continue
            left, right, ymid, cap = g
            win = cut_window(img, left - MARGIN_CAPS * cap, ymid, right + MARGIN_CAPS * cap, ymid, cap)
            out.append((win, gt))
        return out

    val = plain_windows("val")
    hold = plain_windows("holdout") if args.holdout else []
    print(f"holdout lines (train documents kept out): {len(hold)}", flush=True)
    data = pack(samples)
    vdata = pack(val)
    hdata = pack(hold)
    print("buckets:", {b: len(v[0]) for b, v in sorted(data.items())}, flush=True)

    def conv_init(key, o, i, kh, kw):
        return jax.random.normal(key, (o, i, kh, kw)) * np.sqrt(2.0 / (i * kh * kw)), jnp.zeros(o)

    k = jax.random.split(jax.random.PRNGKey(args.seed), 6)
    params = [conv_init(k[0], 16, 1, 3, 3), conv_init(k[1], 32, 16, 3, 3), conv_init(k[2], 64, 32, 3, 3),
              conv_init(k[3], 64, 64, 3, 3), conv_init(k[4], 128, 192, 1, 3), conv_init(k[5], BLANK + 1, 128, 1, 1)]
    if args.init:
        params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in load(args.init, params)]
        print(f"init from {args.init}", flush=True)

    def conv(x, wb):
        w, b = wb
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return y + b[None, :, None, None]

    def pool(x, ph, pw):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, ph, pw), (1, 1, ph, pw), "VALID")

    def forward(p, x):
        h = pool(jax.nn.relu(conv(x, p[0])), 2, 2)
        h = pool(jax.nn.relu(conv(h, p[1])), 2, 2)
        h = pool(jax.nn.relu(conv(h, p[2])), 2, 1)
        h = jax.nn.relu(conv(h, p[3]))
        b, c, hh, t = h.shape
        h = h.reshape(b, c * hh, 1, t)  # feature index c*3 + row
        h = jax.nn.relu(conv(h, p[4]))
        h = conv(h, p[5])  # (B, 38, 1, T)
        return jnp.transpose(h[:, :, 0, :], (0, 2, 1))

    def loss_fn(p, x, wid, lab, nlab):
        logits = forward(p, x)
        t = logits.shape[1]
        frames = (wid + 3) // 4
        lpad = (jnp.arange(t)[None, :] >= frames[:, None]).astype(jnp.float32)
        ypad = (jnp.arange(MAX_LABEL)[None, :] >= nlab[:, None]).astype(jnp.float32)
        return (optax.ctc_loss(logits, lpad, lab, ypad, blank_id=BLANK) / jnp.maximum(nlab, 1)).mean()

    sizes = {b: len(v[0]) for b, v in data.items()}
    total = sum(sizes.values())
    steps_per_epoch = total // args.batch
    steps = args.epochs * steps_per_epoch
    sched = optax.warmup_cosine_decay_schedule(args.lr / 20, args.lr, min(300, steps // 10), steps, args.lr / 40)
    opt = optax.chain(optax.clip_by_global_norm(5.0), optax.adam(sched))
    state = opt.init(params)

    @jax.jit
    def step(p, s, x, wid, lab, nlab):
        l, g = jax.value_and_grad(loss_fn)(p, x, wid, lab, nlab)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, l

    @jax.jit
    def predict(p, x):
        return jnp.argmax(forward(p, x), -1)

    def greedy(ids, frames):
        out, prev = [], BLANK
        for i in ids[:frames]:
            if i != prev and i != BLANK:
                out.append(ALPHABET[i])
            prev = i
        return "".join(out)

    def validate(vdata):
        ok = n = 0
        for b, (x, wid, lab, nlab) in vdata.items():
            for i in range(0, len(x), 64):
                ids = np.asarray(predict(params, jnp.asarray(x[i:i + 64, None].astype(np.float32) / 255.0)))
                for j in range(len(ids)):
                    got = greedy(ids[j], (wid[i + j] + 3) // 4)
                    want = "".join(ALPHABET[c] for c in lab[i + j][:nlab[i + j]])
                    ok += got == want
                    n += 1
        return ok, n

    buckets = sorted(data)
    probs = np.array([sizes[b] for b in buckets], np.float64) / total
    for ep in range(args.epochs):
        tl = 0.0
        for it in range(steps_per_epoch):
            b = buckets[rng.choice(len(buckets), p=probs)]
            x, wid, lab, nlab = data[b]
            idx = rng.integers(0, len(x), args.batch)
            params, state, l = step(params, state, jnp.asarray(x[idx, None].astype(np.float32) / 255.0),
                                    jnp.asarray(wid[idx]), jnp.asarray(lab[idx]), jnp.asarray(nlab[idx]))
            tl += float(l)
            if it % 200 == 0:
                print(f"  ep {ep + 1} step {it}/{steps_per_epoch} loss {tl / (it + 1):.4f} ({time.time() - t0:.0f}s)", flush=True)
        hok, hn = validate(hdata)
        ok, n = validate(vdata)
        print(f"epoch {ep + 1}: loss {tl / steps_per_epoch:.4f} holdout line-exact {hok}/{hn} val line-exact {ok}/{n} ({time.time() - t0:.0f}s)", flush=True)
        save(params, args.out)
        save(params, f"{args.out}.ep{ep + 1}")


def load(path, like):
    """Reads an MRZCTC01 file into arrays shaped like `like` (the inverse of `save`)."""
    raw = open(path, "rb").read()
    assert raw[:8] == b"MRZCTC01", path
    n = struct.unpack("<I", raw[8:12])[0]
    flat = np.frombuffer(raw[12:12 + 4 * n], "<f4")
    out, o = [], 0
    for w, b in like:
        ws = tuple(w.shape)
        k = int(np.prod(ws))
        wa = flat[o:o + k].reshape(ws).copy()
        o += k
        ba = flat[o:o + b.shape[0]].copy()
        o += b.shape[0]
        out.append((wa, ba))
    assert o == n, (o, n)
    return out


def save(params, out):
    flat = []
    for w, b in params:
        w = np.asarray(w, np.float32)
        if w.shape[2] == 1 and w.shape[3] == 1:
            w = w[:, :, 0, 0]
        elif w.shape[2] == 1:
            w = w[:, :, 0, :]
        flat.append(w.ravel())
        flat.append(np.asarray(b, np.float32).ravel())
    flat = np.concatenate(flat).astype("<f4")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "wb") as f:
        f.write(b"MRZCTC01")
        f.write(struct.pack("<I", flat.size))
        f.write(flat.tobytes())
    print(f"wrote {out}: {flat.size} weights", flush=True)


if __name__ == "__main__":
    main()
