#!/usr/bin/env python3
"""Whole-frame liveness cues study (kycgate), held-out by the fixed 2-fold subject-group split.

Run (STUDY_DIR is a scratch directory outside the repo; the eval images are never copied):
  KYCGATE_MODEL_DIR=../shared/models KYCGATE_EVAL_FRAMES_TSV=$STUDY_DIR/frames.tsv \
      cargo run --release -- eval --dir ../shared/eval          # the product's score per frame
  pip install --target $STUDY_DIR/cv4 "opencv-python-headless<4.11" numpy   # 5.x has no CascadeClassifier
  STUDY_DIR=... PYTHONPATH=$STUDY_DIR/cv4 python3 tools/liveness-study/wholeframe.py
Reads $STUDY_DIR/frames.tsv and $KYCGATE_EVAL_DIR/spoof_fullframe/ (read only).
Writes $STUDY_DIR/wholeframe.md and $STUDY_DIR/wholeframe_cues.tsv. Results: docs/EVAL.md.

Every frame is first resized so its long side is 640 (INTER_AREA; webcam 640x480 frames are untouched), so
pixel-scale cues are not just reading the phone captures' native resolution.
Face box: Haar haarcascade_frontalface_default on equalised grey (scale 1.1, minNeighbors 6, minSize 4% of short
side), largest box; fallback = centred box 0.3 W wide (counted and reported).
Cues (all fixed a priori, no parameter fitted):
  moire : log10 of mean of top-5 (power / radial-median power) over 0.12-0.5 cyc/px, Hann-windowed FFT of grey
          in a square 1.5x face box (screen pixel-grid / moire peaks).
  bezel : Hough (Canny 50/150, HoughLinesP thr 30, minLen 0.8 fw, gap 5) near-horizontal/vertical lines (<10 deg)
          within 2.5 face widths, outside the 1.1x face box, classified to sides L/R/T/B by position;
          score = sum over 4 sides of min(longest line on that side / fw, 2)  (rectangle-around-face evidence).
  glare : fraction of pixels in the 1.5x box with V>=250 and S<=40 (specular / clipped highlights).
  cast  : mean Lab b* in face box minus mean b* in ring (3x box minus 1.5x box) (screen colour cast; <0 = bluer).
  facefrac: Haar box width / image width -- a CONTROL shortcut probe, not a liveness cue.
NOTE: rerunning overwrites wholeframe.md without the hand-written verdict section.
Decisions, per held-out fold (all parameters chosen on the other fold only):
  alone : attack if sign*cue > c; sign and c minimise train ACER (ties -> median of tied thresholds).
  OR    : attack if product < 0.5 OR sign*cue > c (c chosen on train; c=+inf allowed).
  rescue: live if product >= 0.5 OR sign*cue < c (c chosen on train; c=-inf allowed) - can only lower BPCER.
  LR    : class-balanced L2 logistic regression (lambda=1, standardised on train) on [logit(product), cue], p>=0.5 live-side.
"""
import csv, math, os, time, sys
import numpy as np
import cv2
cv2.setNumThreads(1)

STUDY = os.environ.get('STUDY_DIR', '/tmp/study')
ROOT = os.path.join(os.environ.get('KYCGATE_EVAL_DIR', '../shared/eval'), 'spoof_fullframe')
TSV = os.path.join(STUDY, 'frames.tsv')
OUT_MD = os.path.join(STUDY, 'wholeframe.md')
CUES = ['moire', 'bezel', 'glare', 'cast', 'facefrac']  # facefrac = control/shortcut probe, not a liveness cue

cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, 'haarcascade_frontalface_default.xml'))
assert not cascade.empty()


def load(path):
    img = cv2.imread(os.path.join(ROOT, path))
    h, w = img.shape[:2]
    load.orig = (h, w)
    s = 640.0 / max(h, w)
    if s < 1:
        img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return img


def face_box(img):
    g = cv2.equalizeHist(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    m = int(0.04 * min(g.shape))
    f = cascade.detectMultiScale(g, scaleFactor=1.1, minNeighbors=6, minSize=(m, m))
    if len(f) == 0:
        h, w = g.shape
        fw = int(0.3 * w)
        return (w // 2 - fw // 2, h // 2 - fw // 2, fw, fw), False
    x, y, w, h = max(f, key=lambda b: b[2] * b[3])
    return (int(x), int(y), int(w), int(h)), True


def expand(box, k, shape):
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    H, W = shape[:2]
    x0, x1 = int(max(0, cx - k * w / 2)), int(min(W, cx + k * w / 2))
    y0, y1 = int(max(0, cy - k * h / 2)), int(min(H, cy + k * h / 2))
    return x0, y0, x1, y1


def cue_moire(img, box):
    g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
    x0, y0, x1, y1 = expand(box, 1.5, g.shape)
    p = g[y0:y1, x0:x1]
    n = min(p.shape)
    cy, cx = p.shape[0] // 2, p.shape[1] // 2
    p = p[cy - n // 2: cy - n // 2 + n, cx - n // 2: cx - n // 2 + n]
    p = p - p.mean()
    win = np.outer(np.hanning(n), np.hanning(n)).astype(np.float32)
    P = np.abs(np.fft.fftshift(np.fft.fft2(p * win))) ** 2
    yy, xx = np.indices(P.shape)
    r = np.hypot(yy - n // 2, xx - n // 2) / n  # cycles / pixel
    rb = np.round(r * n).astype(int)
    med = np.zeros(rb.max() + 1)
    for k in range(rb.max() + 1):
        v = P[rb == k]
        med[k] = np.median(v) if v.size else 0
    band = (r >= 0.12) & (r <= 0.5)
    ratio = P[band] / (med[rb[band]] + 1e-9)
    top = np.sort(ratio)[-5:]
    return float(np.log10(top.mean()))


def cue_bezel(img, box):
    g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    x, y, w, h = box
    fw = w
    H, W = g.shape
    rx0, ry0 = max(0, int(x - 2.5 * fw)), max(0, int(y - 2.5 * fw))
    rx1, ry1 = min(W, int(x + w + 2.5 * fw)), min(H, int(y + h + 2.5 * fw))
    roi = cv2.GaussianBlur(g[ry0:ry1, rx0:rx1], (3, 3), 0)
    e = cv2.Canny(roi, 50, 150)
    lines = cv2.HoughLinesP(e, 1, np.pi / 180, 30, minLineLength=int(0.8 * fw), maxLineGap=5)
    fx0, fy0, fx1, fy1 = expand(box, 1.1, g.shape)
    best = {'L': 0, 'R': 0, 'T': 0, 'B': 0}
    if lines is not None:
        for (a, b, c, d) in lines[:, 0]:
            a, c = a + rx0, c + rx0
            b, d = b + ry0, d + ry0
            L = math.hypot(c - a, d - b)
            ang = abs(math.degrees(math.atan2(d - b, c - a))) % 180
            mx, my = (a + c) / 2, (b + d) / 2
            if ang < 10 or ang > 170:  # horizontal
                if max(a, c) < fx0 or min(a, c) > fx1:
                    continue  # must span across the face's column range to frame it
                if my < fy0:
                    best['T'] = max(best['T'], L)
                elif my > fy1:
                    best['B'] = max(best['B'], L)
            elif 80 < ang < 100:  # vertical
                if max(b, d) < fy0 or min(b, d) > fy1:
                    continue
                if mx < fx0:
                    best['L'] = max(best['L'], L)
                elif mx > fx1:
                    best['R'] = max(best['R'], L)
    return float(sum(min(v / fw, 2.0) for v in best.values()))


def cue_glare(img, box):
    x0, y0, x1, y1 = expand(box, 1.5, img.shape)
    hsv = cv2.cvtColor(img[y0:y1, x0:x1], cv2.COLOR_BGR2HSV)
    return float(np.mean((hsv[..., 2] >= 250) & (hsv[..., 1] <= 40)))


def cue_cast(img, box):
    lab = cv2.cvtColor(img, cv2.COLOR_BGR2LAB).astype(np.float32)
    b = lab[..., 2]
    x, y, w, h = box
    inner = b[y:y + h, x:x + w].mean()
    mask = np.zeros(b.shape, bool)
    X0, Y0, X1, Y1 = expand(box, 3.0, b.shape)
    mask[Y0:Y1, X0:X1] = True
    i0, j0, i1, j1 = expand(box, 1.5, b.shape)
    mask[j0:j1, i0:i1] = False
    ring = b[mask].mean() if mask.any() else inner
    return float(inner - ring)


def cue_facefrac(img, box):
    return float(box[2] / img.shape[1])


FUN = {'moire': cue_moire, 'bezel': cue_bezel, 'glare': cue_glare, 'cast': cue_cast, 'facefrac': cue_facefrac}


# ---------------- metrics / decision rules ----------------
def rates(attack_pred, y):
    y = np.asarray(y); a = np.asarray(attack_pred, bool)
    apcer = np.mean(~a[y == 1]) if (y == 1).any() else float('nan')
    bpcer = np.mean(a[y == 0]) if (y == 0).any() else float('nan')
    return apcer, bpcer, (apcer + bpcer) / 2


def cands(v):
    u = np.unique(v)
    return np.concatenate([[-np.inf], (u[:-1] + u[1:]) / 2, [np.inf]])


def pick(scores, y, fn):
    """fn(c) -> attack preds; choose c minimising ACER, ties -> median of tied candidates."""
    cs = cands(scores)
    ac = np.array([rates(fn(c), y)[2] for c in cs])
    tied = cs[np.isclose(ac, ac.min())]
    finite = tied[np.isfinite(tied)]
    return (np.median(finite) if finite.size else tied[0]), ac.min()


def fit_rule(cue, y, attack):
    """Sign and threshold of `cue` for the rule `attack(signed_cue, c)` (True = attack) with the
    lowest ACER on (cue, y); both signs are tried."""
    best = None
    for s in (1, -1):
        c, a = pick(s * cue, y, lambda c, s=s: attack(s * cue, c))
        if best is None or a < best[2] - 1e-12:
            best = (s, c, a)
    return best[:2]


# alone: the cue decides; OR: the cue can only add attacks; rescue: it can only remove them.
def alone_rule(prod):
    return lambda sc, c: sc > c


def or_rule(prod):
    return lambda sc, c: (prod < 0.5) | (sc > c)


def rescue_rule(prod):
    return lambda sc, c: (prod < 0.5) & ~(sc < c)


def logit(p):
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def fit_lr(X, y, lam=1.0):
    mu, sd = X.mean(0), X.std(0) + 1e-9
    Z = np.c_[np.ones(len(X)), (X - mu) / sd]
    wts = np.where(y == 1, 0.5 / (y == 1).sum(), 0.5 / (y == 0).sum()) * len(y)
    b = np.zeros(Z.shape[1])
    R = lam * np.eye(Z.shape[1]); R[0, 0] = 0
    for _ in range(50):
        p = 1 / (1 + np.exp(-Z @ b))
        g = Z.T @ (wts * (p - y)) + R @ b
        Hm = (Z * (wts * p * (1 - p))[:, None]).T @ Z + R
        b -= np.linalg.solve(Hm, g)
    # returns attack predictions: P(spoof) >= 0.5
    return lambda Xn: 1 / (1 + np.exp(-np.c_[np.ones(len(Xn)), (Xn - mu) / sd] @ b)) >= 0.5


def main():
    rows = list(csv.DictReader(open(TSV), delimiter='\t'))
    cue = {k: [] for k in CUES}
    cpu = {k: 0.0 for k in CUES + ['face']}
    n640 = 0
    nofall = 0
    for r in rows:
        img = load(r['path'])
        is640 = load.orig == (480, 640)
        n640 += is640
        t = time.process_time(); box, ok = face_box(img); dt = time.process_time() - t
        if is640: cpu['face'] += dt
        nofall += (not ok)
        for k in CUES:
            t = time.process_time(); v = FUN[k](img, box); dt = time.process_time() - t
            if is640: cpu[k] += dt
            cue[k].append(v)
        r['box'] = box; r['face_found'] = ok
    y = np.array([int(r['is_spoof']) for r in rows])
    prod = np.array([float(r['product']) for r in rows])
    fold = np.array([int(r['fold']) for r in rows])
    phone = np.array([r['capture'] == 'phone_or_other' for r in rows])
    C = {k: np.array(v) for k, v in cue.items()}

    with open(os.path.join(STUDY, 'wholeframe_cues.tsv'), 'w') as f:
        f.write('path\tfold\tis_spoof\tcapture\tproduct\tface_found\t' + '\t'.join(CUES) + '\n')
        for i, r in enumerate(rows):
            f.write('\t'.join([r['path'], r['fold'], r['is_spoof'], r['capture'], r['product'], str(int(r['face_found']))]
                              + ['%.5g' % C[k][i] for k in CUES]) + '\n')

    def heldout(predict_fn):
        """predict_fn(train_idx, test_idx) -> attack preds on test. Returns per-fold stats + pooled phone/webcam BPCER."""
        out = {}
        allpred = np.zeros(len(y), bool)
        for te in (0, 1):
            tr_i, te_i = fold != te, fold == te
            pr = predict_fn(tr_i, te_i)
            allpred[te_i] = pr
            a = pr.astype(bool); yt = y[te_i]
            out[te] = dict(ap=rates(a, yt)[0], bp=rates(a, yt)[1], acer=rates(a, yt)[2],
                           nA=int((~a[yt == 1]).sum()), NA=int((yt == 1).sum()),
                           nB=int(a[yt == 0].sum()), NB=int((yt == 0).sum()))
        real = y == 0
        out['phone'] = (int(allpred[real & phone].sum()), int((real & phone).sum()))
        out['webB'] = (int(allpred[real & ~phone].sum()), int((real & ~phone).sum()))
        out['webA'] = (int((~allpred[(y == 1)]).sum()), int((y == 1).sum()))
        return out

    variants = [('baseline product>=0.5', lambda tr, te: prod[te] < 0.5)]
    for k in CUES:
        c = C[k]
        def alone(tr, te, c=c):
            s, t = fit_rule(c[tr], y[tr], alone_rule(prod[tr])); return alone_rule(prod[te])(s * c[te], t)
        def orr(tr, te, c=c):
            s, t = fit_rule(c[tr], y[tr], or_rule(prod[tr])); return or_rule(prod[te])(s * c[te], t)
        def resc(tr, te, c=c):
            s, t = fit_rule(c[tr], y[tr], rescue_rule(prod[tr])); return rescue_rule(prod[te])(s * c[te], t)
        def lr(tr, te, c=c):
            X = np.c_[logit(prod), c]; f = fit_lr(X[tr], y[tr].astype(float)); return f(X[te])
        variants += [(f'{k} alone', alone), (f'product OR {k}', orr), (f'product rescue {k}', resc), (f'LR[logit(product),{k}]', lr)]
    Xall = np.c_[logit(prod), np.stack([C[k] for k in CUES[:4]], 1)]
    def lr_all(tr, te):
        f = fit_lr(Xall[tr], y[tr].astype(float)); return f(Xall[te])
    variants.append(('LR[logit(product),all 4 cues]', lr_all))
    def lr_prod(tr, te):
        X = np.c_[logit(prod)]; f = fit_lr(X[tr], y[tr].astype(float)); return f(X[te])
    variants.append(('LR[logit(product)] only (recalibrated thr)', lr_prod))

    L = []
    L.append('Held-out results (choose on one fold, report on the other). Fold 0 test = %d attacks / %d bona fide; '
             'fold 1 test = %d / %d. Counts are errors/frames. phone-real BPCER pools both held-out folds (12 frames); '
             'webcam-real BPCER pools 30 frames.' % ((y[fold == 0] == 1).sum(), (y[fold == 0] == 0).sum(),
                                                        (y[fold == 1] == 1).sum(), (y[fold == 1] == 0).sum()))
    L.append('')
    L.append('| variant | f1 APCER | f1 BPCER | f1 ACER | f0 APCER | f0 BPCER | f0 ACER | mean ACER | phone-real BPCER | webcam-real BPCER |')
    L.append('|---|---|---|---|---|---|---|---|---|---|')
    for name, fn in variants:
        o = heldout(fn)
        f1, f0 = o[1], o[0]
        L.append('| %s | %d/%d %.1f%% | %d/%d %.1f%% | %.1f%% | %d/%d %.1f%% | %d/%d %.1f%% | %.1f%% | %.1f%% | %d/%d | %d/%d |' % (
            name, f1['nA'], f1['NA'], 100 * f1['ap'], f1['nB'], f1['NB'], 100 * f1['bp'], 100 * f1['acer'],
            f0['nA'], f0['NA'], 100 * f0['ap'], f0['nB'], f0['NB'], 100 * f0['bp'], 100 * f0['acer'],
            50 * (f1['acer'] + f0['acer']), o['phone'][0], o['phone'][1], o['webB'][0], o['webB'][1]))
    L.append('')
    L.append('CPU per 640x480 frame (time.process_time, mean over %d webcam frames, 1 process): ' % n640 +
             ', '.join('%s %.1f ms' % (k, 1000 * cpu[k] / n640) for k in ['face'] + CUES) +
             '. Haar face found in %d/%d frames (fallback centred 0.3W box never used).' % (len(rows) - nofall, len(rows)))
    L.append('')
    # descriptive (not held-out): cue medians per class/capture, to show shortcut risk
    L.append('Descriptive cue medians (all frames, not a held-out figure): attack-webcam / real-webcam / real-phone')
    for k in CUES:
        c = C[k]
        L.append('- %s: %.3g / %.3g / %.3g' % (k, np.median(c[y == 1]), np.median(c[(y == 0) & ~phone]),
                                             np.median(c[(y == 0) & phone])))
    for tr_f in (0, 1):
        tr = fold == tr_f
        X = np.c_[logit(prod), C['bezel']]; f = fit_lr(X[tr], y[tr].astype(float))
        grid = np.linspace(0.001, 0.999, 999)
        for bz in (0.0, 2.0):
            att = f(np.c_[logit(grid), np.full_like(grid, bz)])
            thr = grid[~att].min() if (~att).any() else float('nan')
            L.append('- LR[logit(product),bezel] fitted on fold %d: live if product >= %.3f when bezel=%.0f' % (tr_f, thr, bz))
    txt = '\n'.join(L)
    print(txt)
    open(OUT_MD, 'w').write('# Whole-frame liveness cues: held-out study\n\n' + txt + '\n')


if __name__ == '__main__':
    main()
