#!/usr/bin/env python3
"""Train the MRZ character classifier shipped in lib/kycgate-mrz/model/mrz_cnn.bin.

Renders synthetic MRZ lines with the public-domain OCR-B font (Debian `fonts-ocr-b`), degrades them
(blur, noise, JPEG, resampling, stroke thickness, contrast, gradients, occlusion, binarisation;
optionally uneven character spacing and tight crops),
cuts one cell per character with the same geometry as `lib/kycgate-mrz/src/ocr.rs` (plus jitter so
the classifier tolerates imperfect segmentation), and trains a small CNN with JAX. Fixed seeds.

Cell geometry (must match ocr.rs): a cell centred on the character centre, 1.3 pitch wide and
1.6 cap heights tall, sampled bilinearly to 24 rows x 20 columns, ink = 1 after per-cell min/max
normalisation; samples outside the image count as paper.

Weight file layout: b"MRZCNN01", u32 LE count of f32s, then f32 LE arrays in this order:
conv1 w[16,1,3,3] b[16], conv2 w[32,16,3,3] b[32], conv3 w[64,32,3,3] b[64],
fc1 w[1920,128] b[128], fc2 w[128,37] b[37]. Convolutions are 'same'-padded, stride 1, each of
conv1/conv2 followed by ReLU and 2x2 max-pool, conv3 by ReLU; flatten is channel-major (C,H,W).
"""
import argparse
import io
import os
import struct
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ<"
CELL_H, CELL_W = 24, 20
CELL_PITCHES, CELL_CAPS = 1.3, 1.6
# Optional degradations (off by default so the default run reproduces the shipped weights):
# uneven character spacing and tight crops. Tried: a little better on the line-crop set, worse on full
# pages (more O/0 confusions), so not used for the shipped weights (see README).
AUG = {"uneven": False, "tight": False, "rotate": False}
FONT_DIRS = ["/usr/share/fonts/opentype/ocr-b", "/usr/share/fonts/truetype/ocr-b"]


def find_fonts():
    fonts = []
    for d in FONT_DIRS:
        for name in ("OCRB.otf", "OCRBS.otf"):
            p = os.path.join(d, name)
            if os.path.exists(p):
                fonts.append(p)
    if not fonts:
        sys.exit("OCR-B font not found: apt-get install fonts-ocr-b")
    return fonts


def random_mrz_text(rng, n):
    """MRZ-like line: a mix of name-like, number-like and filler runs, or uniform noise."""
    if rng.random() < 0.35:
        s = rng.choice(list(ALPHABET), size=n)
        return "".join(s)
    out = []
    while len(out) < n:
        kind = rng.random()
        if kind < 0.3:
            out += list(rng.choice(list(ALPHABET[10:36]), size=rng.integers(2, 10)))
        elif kind < 0.6:
            out += list(rng.choice(list(ALPHABET[:10]), size=rng.integers(1, 10)))
        elif kind < 0.75:
            out += list(rng.choice(list(ALPHABET[:36]), size=rng.integers(1, 9)))
        else:
            out += ["<"] * int(rng.integers(1, 8))
    return "".join(out[:n])


def bilinear(img, ys, xs):
    h, w = img.shape
    ys = np.clip(ys, 0, h - 1.001)
    xs = np.clip(xs, 0, w - 1.001)
    y0 = np.floor(ys).astype(np.int32)
    x0 = np.floor(xs).astype(np.int32)
    fy = ys - y0
    fx = xs - x0
    a = img[y0, x0]
    b = img[y0, x0 + 1]
    c = img[y0 + 1, x0]
    d = img[y0 + 1, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def cut_cell(img, cx, cy, pitch, cap, angle):
    """Same sampling as ocr.rs::cut_cell."""
    ca, sa = np.cos(angle), np.sin(angle)
    jj = ((np.arange(CELL_W) + 0.5) / CELL_W - 0.5) * CELL_PITCHES * pitch
    ii = ((np.arange(CELL_H) + 0.5) / CELL_H - 0.5) * CELL_CAPS * cap
    a, b = np.meshgrid(jj, ii)
    xs = cx + a * ca - b * sa
    ys = cy + a * sa + b * ca
    v = bilinear(img, ys, xs)
    # Outside the image is paper (as in ocr.rs): tight crops cut through the cell.
    h, w = img.shape
    inside = (xs >= -0.5) & (ys >= -0.5) & (xs <= w - 0.5) & (ys <= h - 0.5)
    if not inside.any():
        return np.zeros_like(v)
    lo, hi = v[inside].min(), v[inside].max()
    if hi - lo < 1e-3:
        return np.zeros_like(v)
    return np.where(inside, (hi - v) / (hi - lo), 0.0)


def render_line(rng, fonts):
    n = int(rng.choice([30, 36, 44]))
    text = random_mrz_text(rng, n)
    size = int(rng.integers(18, 56))
    font = ImageFont.truetype(fonts[int(rng.integers(len(fonts)))], size)
    adv = font.getlength("A")
    l, t, r, b = font.getbbox("H")
    cap = b - t
    pad = int(size * 1.5)
    w = int(adv * n + 2 * pad)
    h = int(size * 3 + 2 * pad)
    bg = float(rng.uniform(120, 255))
    ink = float(rng.uniform(0, min(110, bg - 60)))
    arr = np.full((h, w), bg, np.float32)
    # background: gradient plus optional guilloche-like waves
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    arr += rng.uniform(-40, 40) * gx / w + rng.uniform(-30, 30) * gy / h
    if rng.random() < 0.4:
        f1, f2 = rng.uniform(0.02, 0.2, size=2)
        arr += rng.uniform(3, max(4.0, 0.3 * (bg - ink))) * np.sin(gx * f1 + np.sin(gy * f2) * rng.uniform(1, 6))
    # extra lines of text (neighbouring MRZ lines) above and below
    im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    d = ImageDraw.Draw(im)
    x0 = pad + rng.uniform(-2, 2)
    y0 = h / 2 - (t + b) / 2
    line_gap = cap * rng.uniform(1.6, 2.3)
    stroke = 1 if rng.random() < 0.15 else 0
    for dy in (-line_gap, line_gap):
        if rng.random() < 0.7:
            d.text((x0, y0 + dy), random_mrz_text(rng, n), font=font, fill=int(ink), stroke_width=stroke, stroke_fill=int(ink))
    # Uneven print: per-character spacing jitter (re-typeset specimens, worn printers), so the
    # classifier does not rely on its neighbours sitting exactly one pitch away.
    if AUG["uneven"]:
        jitter = float(rng.choice([0.0, 0.0, 0.03, 0.07]))
        xs_ = x0 + adv * np.cumsum(np.concatenate([[0.0], 1.0 + rng.normal(0, jitter, n - 1)]))
    else:
        xs_ = x0 + adv * np.arange(n)
    if AUG["uneven"]:
        for k, ch in enumerate(text):
            d.text((float(xs_[k]), y0), ch, font=font, fill=int(ink), stroke_width=stroke, stroke_fill=int(ink))
    else:
        d.text((x0, y0), text, font=font, fill=int(ink), stroke_width=stroke, stroke_fill=int(ink))
    # thickness
    r_ = rng.random()
    if r_ < 0.15:
        im = im.filter(ImageFilter.MinFilter(3))
    elif r_ < 0.3:
        im = im.filter(ImageFilter.MaxFilter(3))
    # occlusion: stray strokes / blobs
    if rng.random() < 0.3:
        d = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(1, 4))):
            xa, xb = rng.uniform(0, w, 2)
            ya, yb = rng.uniform(h * 0.3, h * 0.7, 2)
            d.line((xa, ya, xb, yb), fill=int(rng.uniform(0, 255)), width=int(rng.integers(1, 3)))
    arr = np.asarray(im, np.float32)
    # Photographed at an angle: the page is resampled rotated (jagged or smooth), cells are cut
    # along the rotated line as ocr.rs does.
    rot = 0.0
    if AUG["rotate"] and rng.random() < 0.5:
        rot = float(rng.uniform(-8.0, 8.0))
        resample = Image.NEAREST if rng.random() < 0.5 else Image.BILINEAR
        rc = (w / 2.0, h / 2.0)
        arr = np.asarray(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).rotate(rot, resample=resample, center=rc, fillcolor=int(bg)), np.float32)
    # blur
    if rng.random() < 0.7:
        im = Image.fromarray(arr.astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, max(0.4, 0.06 * size))))
        arr = np.asarray(im, np.float32)
    # low resolution: downscale then back up
    scale = 1.0
    if rng.random() < 0.5:
        scale = rng.uniform(0.25, 0.9)
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        sw, sh = max(8, int(w * scale)), max(8, int(h * scale))
        im = im.resize((sw, sh), Image.BILINEAR)
        scale_x, scale_y = sw / w, sh / h
        arr = np.asarray(im, np.float32)
    else:
        scale_x = scale_y = 1.0
    arr = arr + rng.normal(0, rng.uniform(0, 14), arr.shape)
    arr = np.clip(arr, 0, 255)
    if rng.random() < 0.5:
        buf = io.BytesIO()
        Image.fromarray(arr.astype(np.uint8)).save(buf, "JPEG", quality=int(rng.integers(15, 90)))
        arr = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"), np.float32)
    if rng.random() < 0.15:
        thr = np.percentile(arr, rng.uniform(20, 50))
        arr = np.where(arr < thr, 0.0, 255.0).astype(np.float32)
    cy = (y0 + (t + b) / 2) * scale_y
    if AUG["uneven"]:
        centers = [((xs_[k] + 0.5 * adv) * scale_x, cy) for k in range(n)]
    else:
        centers = [((x0 + (k + 0.5) * adv) * scale_x, cy) for k in range(n)]
    if rot != 0.0:
        # PIL turns the picture counter-clockwise by `rot` degrees about rc.
        a = np.deg2rad(rot)
        ccx, ccy = rc[0] * scale_x, rc[1] * scale_y
        centers = [(ccx + (x - ccx) * np.cos(a) + (y - ccy) * np.sin(a), ccy - (x - ccx) * np.sin(a) + (y - ccy) * np.cos(a)) for x, y in centers]
    # Tight crops (line-crop datasets, page edges): cut the image close to the text.
    if AUG["tight"] and rng.random() < 0.25:
        hh, ww = arr.shape
        top = int(max(0, cy - cap * scale_y * rng.uniform(0.5, 0.9)))
        bot = int(min(hh, cy + cap * scale_y * rng.uniform(0.5, 0.9)))
        left = int(max(0, centers[0][0] - adv * scale_x * rng.uniform(0.3, 0.9)))
        right = int(min(ww, centers[-1][0] + adv * scale_x * rng.uniform(0.3, 0.9)))
        if bot - top > 4 and right - left > 4:
            arr = arr[top:bot, left:right]
            centers = [(x - left, y - top) for x, y in centers]
    return arr, text, centers, adv * scale_x, cap * scale_y, -np.deg2rad(rot)


def make_dataset(seed, n_lines, fonts):
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i in range(n_lines):
        arr, text, centers, pitch, cap, angle = render_line(rng, fonts)
        for k, ch in enumerate(text):
            cx, cy = centers[k]
            cell = cut_cell(
                arr,
                cx + rng.normal(0, 0.08) * pitch,
                cy + rng.normal(0, 0.06) * cap,
                pitch * rng.uniform(0.9, 1.1),
                cap * rng.uniform(0.85, 1.15),
                angle + rng.normal(0, 0.03),
            )
            xs.append((cell * 255).astype(np.uint8))
            ys.append(ALPHABET.index(ch))
    return np.stack(xs), np.array(ys, np.int32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=6000)
    ap.add_argument("--val-lines", type=int, default=400)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "../../lib/kycgate-mrz/model/mrz_cnn.bin"))
    ap.add_argument("--uneven-spacing", action="store_true", help="per-character spacing jitter")
    ap.add_argument("--tight-crops", action="store_true", help="crop some lines close to the text")
    ap.add_argument("--rotate", action="store_true", help="rotate half the lines by up to 8 degrees")
    args = ap.parse_args()
    AUG["uneven"] = args.uneven_spacing
    AUG["tight"] = args.tight_crops
    AUG["rotate"] = args.rotate

    import jax
    import jax.numpy as jnp
    import optax

    fonts = find_fonts()
    t0 = time.time()
    xtr, ytr = make_dataset(args.seed, args.lines, fonts)
    xva, yva = make_dataset(args.seed + 1000, args.val_lines, fonts)
    print(f"data: train {len(ytr)} cells, val {len(yva)} cells, {time.time() - t0:.0f}s", flush=True)

    def conv_init(key, o, i):
        return jax.random.normal(key, (o, i, 3, 3)) * np.sqrt(2.0 / (i * 9)), jnp.zeros(o)

    def fc_init(key, i, o):
        return jax.random.normal(key, (i, o)) * np.sqrt(2.0 / i), jnp.zeros(o)

    k = jax.random.split(jax.random.PRNGKey(args.seed), 5)
    params = [conv_init(k[0], 16, 1), conv_init(k[1], 32, 16), conv_init(k[2], 64, 32),
              fc_init(k[3], 64 * 6 * 5, 128), fc_init(k[4], 128, len(ALPHABET))]

    def conv(x, wb):
        w, b = wb
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return y + b[None, :, None, None]

    def pool(x):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def forward(p, x, train_key=None):
        h = pool(jax.nn.relu(conv(x, p[0])))
        h = pool(jax.nn.relu(conv(h, p[1])))
        h = jax.nn.relu(conv(h, p[2]))
        h = h.reshape(h.shape[0], -1)
        h = jax.nn.relu(h @ p[3][0] + p[3][1])
        if train_key is not None:
            keep = jax.random.bernoulli(train_key, 0.7, h.shape)
            h = jnp.where(keep, h / 0.7, 0.0)
        return h @ p[4][0] + p[4][1]

    def loss_fn(p, x, y, key):
        logits = forward(p, x, key)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    bs = 256
    steps = args.epochs * (len(ytr) // bs)
    sched = optax.cosine_decay_schedule(2e-3, steps)
    opt = optax.adam(sched)
    state = opt.init(params)

    @jax.jit
    def step(p, s, x, y, key):
        l, g = jax.value_and_grad(loss_fn)(p, x, y, key)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, l

    @jax.jit
    def predict(p, x):
        return jnp.argmax(forward(p, x), -1)

    def to_x(a):
        return jnp.asarray(a[:, None, :, :].astype(np.float32) / 255.0)

    rng = np.random.default_rng(args.seed)
    key = jax.random.PRNGKey(args.seed + 7)
    for ep in range(args.epochs):
        perm = rng.permutation(len(ytr))
        tl = 0.0
        for i in range(len(ytr) // bs):
            idx = perm[i * bs:(i + 1) * bs]
            key, sub = jax.random.split(key)
            params, state, l = step(params, state, to_x(xtr[idx]), jnp.asarray(ytr[idx]), sub)
            tl += float(l)
        correct = 0
        for i in range(0, len(yva), 2048):
            correct += int((np.asarray(predict(params, to_x(xva[i:i + 2048]))) == yva[i:i + 2048]).sum())
        print(f"epoch {ep + 1}: loss {tl / (len(ytr) // bs):.4f} val acc {correct / len(yva):.4f} ({time.time() - t0:.0f}s)", flush=True)

    flat = []
    for w, b in params:
        flat.append(np.asarray(w, np.float32).ravel())
        flat.append(np.asarray(b, np.float32).ravel())
    flat = np.concatenate(flat).astype("<f4")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "wb") as f:
        f.write(b"MRZCNN01")
        f.write(struct.pack("<I", flat.size))
        f.write(flat.tobytes())
    print(f"wrote {args.out}: {flat.size} weights")


if __name__ == "__main__":
    main()
