"""Linking detections and tracklets into object tubes and rescoring them (thesis §8.4).

Per class, the score of linking box i at frame t to box j at frame t+1 is (eq. 8.5)

    s = p_i^t + p_j^{t+1} + psi(i, j),   psi = 1 if some tracklet of (t, t+1) has IoU >
    `iou_threshold` with box i at t and with box j at t+1, else 0 (eq. 8.6),

the tube is the path with one box per frame maximising the sum of s over the video (eq. 8.7,
Viterbi), its boxes are removed and the next tube is extracted, while every frame that had a
box of the class still has one. Frames without a box of the class are left out of its linking,
as in the authors' `make_tubes`: the tube passes over them (index -1) and the link across them
is p_i + p_j (no tracklet spans a gap). Each box of a tube then gets its score plus the mean of
the ceil(alpha * n) highest scores of the tube's n boxes; boxes in no tube keep their score.

psi is binary, so the best predecessor of a box is either the best box of the previous frame or,
one point higher, its best tracked neighbour: a Viterbi step costs O(boxes + tracked pairs) rather
than O(boxes^2). The tracklet/box overlaps are searched on a grid of centres. Both run as numba
kernels (`python -m tfzoo.detection.dt_blocks_bench --what linking`: against the previous numpy version).

Online (causal), frame t is rescored by the tubes of the window [0, t] (or its last `history`
frames). With a finite history each window is linked from scratch: per frame, `history` times
the offline extraction's cost per frame. With the full history, window [0, t]'s extraction
continues [0, t-1]'s: a round recomputes only the frames where an earlier round's path changed
(and what that changes downstream), so the cost per frame follows how much the tubes change,
not t (see `_online_full`). Both give exactly the results of the definition.
"""

from __future__ import annotations

import math
import numbers

import numba
import numpy as np

from tfzoo.errors import TfzooError


class LinkingError(TfzooError):
    """Detections or tracklets that `link_tubes` cannot link (the message names the frame and
    the value)."""


def _check(detections, tracks, alpha=0.5, history=None, num_classes=None):
    if not 0 < alpha <= 1:
        raise LinkingError(f"alpha must be in (0, 1], got {alpha!r}")
    if history is not None and (isinstance(history, bool)
                                or not isinstance(history, numbers.Integral) or history < 1):
        raise LinkingError(f"history must be None or a positive integer, got {history!r}")
    if num_classes is not None and (isinstance(num_classes, bool)
                                    or not isinstance(num_classes, numbers.Integral)
                                    or num_classes < 1):
        raise LinkingError(f"num_classes must be None or a positive integer, got "
                           f"{num_classes!r}")
    if not isinstance(detections, (list, tuple)) or not detections:
        raise LinkingError("detections must be a non-empty list (one dict per frame) of "
                           "{'boxes': (N, 4), 'scores': (N,), 'classes': (N,)}")
    frames = len(detections)
    if len(tracks) not in (frames - 1, frames):
        raise LinkingError(f"tracks has {len(tracks)} entries for {frames} frames: expected "
                           f"{frames - 1} (one per pair of consecutive frames) or {frames}")
    out = []
    for t, d in enumerate(detections):
        try:
            boxes = np.asarray(d["boxes"], np.float64)
            scores = np.asarray(d["scores"], np.float64).reshape(-1)
            raw = np.asarray(d["classes"]).reshape(-1)
            classes = raw.astype(np.int64)
        except (KeyError, TypeError, ValueError) as e:
            raise LinkingError(f"detections[{t}]: expected {{'boxes': (N, 4), 'scores': (N,), "
                               f"'classes': (N,)}} ({e})") from e
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise LinkingError(f"detections[{t}]['boxes'] has shape {boxes.shape}: expected "
                               "(N, 4), x1 y1 x2 y2 per box")
        if not len(boxes) == len(scores) == len(classes):
            raise LinkingError(f"detections[{t}]: {len(boxes)} boxes, {len(scores)} scores and "
                               f"{len(classes)} classes; expected the same number")
        out.append((boxes, scores, classes, raw))
    _check_values(out, num_classes)
    out = [(b, s, c) for b, s, c, _ in out]
    trk = []
    for t in range(frames - 1):
        try:
            m = np.asarray(tracks[t], np.float64)
        except (TypeError, ValueError) as e:
            raise LinkingError(f"tracks[{t}]: expected an (M, 8) array ({e})") from e
        if m.size == 0:
            m = m.reshape(0, 8)
        if m.ndim != 2 or m.shape[1] != 8:
            raise LinkingError(f"tracks[{t}] has shape {m.shape}: expected (M, 8), a box at t "
                               "and at t+1 (x1 y1 x2 y2 each) per tracklet")
        trk.append(m)
    for t, m in enumerate(trk):
        # a sum is finite when every term is (and cheaper than isfinite on each frame's
        # copy); a finite sum that overflowed gets the exact test
        if not math.isfinite(m.sum()) and not np.isfinite(m).all():
            bad = int(np.flatnonzero(~np.isfinite(m).all(1))[0])
            raise LinkingError(f"tracks[{t}][{bad}] is {m[bad].tolist()}: expected finite "
                               "coordinates")
    return out, trk


def _check_values(dets, num_classes):
    """The values of every frame at once (a per-frame check costs more than linking it):
    finite scores and coordinates, x2 >= x1 and y2 >= y1, integer class ids in
    [0, num_classes); the first bad one is named with its frame."""
    sizes = np.array([len(s) for _, s, _, _ in dets])
    if not sizes.sum():
        return
    boxes = np.concatenate([b for b, _, _, _ in dets])
    scores = np.concatenate([s for _, s, _, _ in dets])
    classes = np.concatenate([c for _, _, c, _ in dets])
    raw = np.concatenate([r for _, _, _, r in dets])
    top = num_classes if num_classes is not None else np.iinfo(np.int64).max
    # the common case in a few reductions (a sum is finite when every term is; a NaN makes
    # min() NaN, which fails >= 0)
    integral = raw.dtype.kind in "iub" or bool((classes == raw).all())
    if (math.isfinite(scores.sum()) and math.isfinite(boxes.sum())
            and min((boxes[:, 2] - boxes[:, 0]).min(), (boxes[:, 3] - boxes[:, 1]).min()) >= 0
            and integral and classes.min() >= 0 and classes.max() < top):
        return
    bad_scores = ~np.isfinite(scores)
    bad_boxes = ~np.isfinite(boxes).all(1) | (boxes[:, 2] < boxes[:, 0]) | (
        boxes[:, 3] < boxes[:, 1])
    bad_classes = (classes != raw) | (classes < 0) | (classes >= top)
    if not (bad_scores.any() or bad_boxes.any() or bad_classes.any()):
        return
    q = int(np.flatnonzero(bad_scores | bad_boxes | bad_classes)[0])
    ends = np.cumsum(sizes)
    t = int(np.searchsorted(ends, q, side="right"))
    i = q - (ends[t] - sizes[t])
    if bad_scores[q]:
        raise LinkingError(f"detections[{t}]['scores'][{i}] is {scores[q]}: expected finite "
                           "scores")
    if bad_boxes[q]:
        raise LinkingError(f"detections[{t}]['boxes'][{i}] is {boxes[q].tolist()}: expected "
                           "finite x1 y1 x2 y2 with x2 >= x1 and y2 >= y1")
    allowed = (f"0..{num_classes - 1} (the model's {num_classes} classes)"
               if num_classes is not None else "non-negative integers")
    raise LinkingError(f"detections[{t}]['classes'][{i}] is {raw[q].item()!r}: expected class "
                       f"ids in {allowed}")


# The kernels below are compiled with numba: the Viterbi extraction is a loop of tubes x frames
# whose steps are a few hundred operations each, where numpy's per-call overhead dominated (8.4 ms
# per frame for 30 classes x 25 boxes, against the goal of 1 ms; see docs/detection.md, Speed).
# `cache=True` keeps the compiled code next to this module, so only the first run compiles.
_jit = numba.njit(cache=True, nogil=True)


@_jit
def _overlapping(boxes, alive, tracks, threshold):
    """(box index, track index) of every alive box / track pair with IoU > threshold.

    IoU > 0.5 implies that each box's centre lies within the other's extent (per axis,
    |c_a - c_b| < min(w_a, w_b) / 2). So for a threshold of 0.5 or more the tracks are
    bucketed by centre on a grid (cells of a quarter of their mean side) and a box visits only
    the cells its extent touches; the IoU test decides, the grid only prunes (the floor of a
    float product by a positive constant is monotone, so no track whose centre is inside the
    extent is missed). Below 0.5 that bound does not hold and every pair is tested.
    """
    m = tracks.shape[0]
    out = np.empty((2, 4 * boxes.shape[0] + 16), np.int64)
    num = 0
    if m == 0:
        return out[0, :0].copy(), out[1, :0].copy()
    cx = np.empty(m)
    cy = np.empty(m)
    size = 0.0
    for k in range(m):
        cx[k] = 0.5 * (tracks[k, 0] + tracks[k, 2])
        cy[k] = 0.5 * (tracks[k, 1] + tracks[k, 3])
        size += tracks[k, 2] - tracks[k, 0] + tracks[k, 3] - tracks[k, 1]
    x0, y0 = cx.min(), cy.min()
    pruned = threshold >= 0.5
    gx = np.zeros(m, np.int64)
    gy = np.zeros(m, np.int64)
    nx, ny, inv = 1, 1, 1.0
    if pruned:
        # cells of a quarter of the tracks' mean side (fastest of 1/8..1/2 on the bench), at
        # most 256 x 256 whatever the spread
        cell = max(0.125 * size / m, 1.0, (cx.max() - x0) / 256.0, (cy.max() - y0) / 256.0)
        inv = 1.0 / cell  # a product: 4 divisions per box cost as much as its IoU tests
        for k in range(m):
            gx[k] = int(np.floor((cx[k] - x0) * inv))
            gy[k] = int(np.floor((cy[k] - y0) * inv))
        nx, ny = gx.max() + 1, gy.max() + 1
    # counting sort of the tracks by cell, with copies in that order (the scan reads in order)
    start = np.zeros(nx * ny + 1, np.int64)
    for k in range(m):
        start[gy[k] * nx + gx[k] + 1] += 1
    for c in range(nx * ny):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    order = np.empty(m, np.int64)
    tx1, ty1, tx2, ty2, tarea = np.empty(m), np.empty(m), np.empty(m), np.empty(m), np.empty(m)
    hit = np.empty(m, np.bool_)
    for k in range(m):
        c = gy[k] * nx + gx[k]
        p = fill[c]
        fill[c] += 1
        order[p] = k
        tx1[p], ty1[p], tx2[p], ty2[p] = tracks[k, 0], tracks[k, 1], tracks[k, 2], tracks[k, 3]
        tarea[p] = (tx2[p] - tx1[p] + 1.0) * (ty2[p] - ty1[p] + 1.0)
    for i in range(boxes.shape[0]):
        if not alive[i]:
            continue
        x1, y1, x2, y2 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        area = (x2 - x1 + 1.0) * (y2 - y1 + 1.0)
        if pruned:
            # inclusive pixels: the extent of [x1, x2] is [x1 - 0.5, x2 + 0.5] around centres
            cx_lo = max(np.floor((x1 - 0.5 - x0) * inv), 0.0)
            cx_hi = min(np.floor((x2 + 0.5 - x0) * inv), nx - 1.0)
            cy_lo = max(np.floor((y1 - 0.5 - y0) * inv), 0.0)
            cy_hi = min(np.floor((y2 + 0.5 - y0) * inv), ny - 1.0)
            if cx_lo > cx_hi or cy_lo > cy_hi:
                continue  # the extent misses every cell (the box is off the grid)
        else:
            cx_lo, cx_hi, cy_lo, cy_hi = 0.0, 0.0, 0.0, 0.0
        for yy in range(int(cy_lo), int(cy_hi) + 1):
            p0, p1 = start[yy * nx + int(cx_lo)], start[yy * nx + int(cx_hi) + 1]
            if num + p1 - p0 > out.shape[1]:
                grown = np.empty((2, 2 * (num + p1 - p0)), np.int64)
                for q in range(num):  # a loop: a slice copy takes seconds to compile
                    grown[0, q], grown[1, q] = out[0, q], out[1, q]
                out = grown
            # the IoU tests first, then the compaction: with the test inside the compaction,
            # each candidate's store waits for the previous test (a ~20-cycle chain), and as a
            # branch whether a candidate overlaps is a coin flip for the predictor
            for p in range(p0, p1):
                iw = max(min(x2, tx2[p]) - max(x1, tx1[p]) + 1.0, 0.0)
                ih = max(min(y2, ty2[p]) - max(y1, ty1[p]) + 1.0, 0.0)
                inter = iw * ih
                hit[p] = (inter > threshold * (area + tarea[p] - inter)) & (inter > 0.0)
            for p in range(p0, p1):
                out[0, num] = i
                out[1, num] = order[p]
                num += hit[p]
    return out[0, :num].copy(), out[1, :num].copy()


@_jit
def _neighbours(boxes, alive, tracks, track_start, threshold):
    """psi of eq. 8.6 as lists of neighbours: for frame pair t, class c and box j at t+1, the
    boxes i of class c at t such that one tracklet of (t, t+1) has IoU > threshold with i and
    with j, in ascending order, per flat row ((t * C + c) * n + j): the first in `first` (n
    if none), the others in a CSR `more`, `idx`."""
    frames, num_c, n = alive.shape
    pairs = max(frames - 1, 0)
    psi = np.zeros((pairs, num_c, n, n), np.bool_)  # (t, c, to, from)
    ptr = np.zeros(pairs * num_c * n + 1, np.int64)  # row counts, then their running sum
    for t in range(pairs):
        trk = tracks[track_start[t]:track_start[t + 1]]
        if trk.shape[0] == 0:
            continue
        flat_boxes = boxes[t].reshape(num_c * n, 4)
        box_i, trk_m = _overlapping(flat_boxes, alive[t].reshape(num_c * n),
                                    np.ascontiguousarray(trk[:, :4]), threshold)
        for q in range(box_i.shape[0]):
            c, i = box_i[q] // n, box_i[q] % n
            m = trk_m[q]
            u1, v1, u2, v2 = trk[m, 4], trk[m, 5], trk[m, 6], trk[m, 7]
            area = (u2 - u1 + 1.0) * (v2 - v1 + 1.0)
            nxt = boxes[t + 1, c]
            for j in range(n):
                # the IoU test of _overlapping, inline: this loop runs pairs x n times
                # without early exits: one well-predicted branch per box instead of several
                iw = max(min(u2, nxt[j, 2]) - max(u1, nxt[j, 0]) + 1.0, 0.0)
                ih = max(min(v2, nxt[j, 3]) - max(v1, nxt[j, 1]) + 1.0, 0.0)
                inter = iw * ih
                union = area + (nxt[j, 2] - nxt[j, 0] + 1.0) * (nxt[j, 3] - nxt[j, 1] + 1.0)
                if (inter > threshold * (union - inter)) & alive[t + 1, c, j] & (inter > 0.0) \
                        and not psi[t, c, j, i]:
                    psi[t, c, j, i] = True
                    ptr[((t * num_c + c) * n + j) + 1] += 1
    # the first neighbour of each row in `first` (n if none: the Viterbi arrays keep a -inf
    # column n, so a missing neighbour needs no branch); the rarer further ones in a CSR
    rows = pairs * num_c * n
    first = np.full(rows, n, np.int64)
    flat = psi.reshape(rows, n)
    more = np.zeros(rows + 1, np.int64)
    for r in range(rows):
        more[r + 1] = more[r] + max(ptr[r + 1] - 1, 0)
    idx = np.empty(more[-1], np.int64)
    for r in range(rows):
        if ptr[r + 1] == 0:
            continue
        q = -1
        for i in range(n):
            if flat[r, i]:
                if q < 0:
                    first[r] = i
                    q = more[r]
                else:
                    idx[q] = i
                    q += 1
    return first, more, idx


_NONE = np.iinfo(np.int32).max  # `taken` of a free box; -1: no box
_RING = 64  # frames of Viterbi values kept per tube by the full-history online linking
# The small kernels below are inlined into their callers: as separate calls, building their
# array views cost as much as the loops themselves.
_inline = numba.njit(inline="always")


@_inline
def _start(sc, tk, r, w_out):
    """The first frame of a window for round r: w = own score for a box that no earlier round
    took (tk >= r). Returns the first argmax (with a one-frame window it is the tube's box)."""
    best, arg = -np.inf, 0
    for j in range(sc.shape[0]):
        x = sc[j] if tk[j] >= r else -np.inf
        w_out[j] = x
        up = x > best
        best = x if up else best
        arg = j if up else arg
    return best, arg


@_inline
def _predecessor(w_prev, best, arg, first, more, idx, row, j):
    """Box j's best predecessor (its w + psi, its index): the first argmax of w_prev + psi(., j),
    so either `arg` (the first argmax of w_prev, value `best`) or, one point higher, a tracked
    neighbour (row `row + j` of first/more/idx, ascending)."""
    i = first[row + j]
    v = w_prev[i] + 1.0
    up = (v > best) | ((v == best) & (i < arg))  # the first index among equal maxima
    b = v if up else best
    p = i if up else arg
    for q in range(more[row + j], more[row + j + 1]):
        i = idx[q]
        v = w_prev[i] + 1.0
        up = (v > b) | ((v == b) & (i < p))
        b = v if up else b
        p = i if up else p
    return b, p


@_inline
def _step(w_prev, best, arg, sc, tk, r, first, more, idx, row, w_out, p_out, b_out):
    """One Viterbi step of round r into a frame (eq. 8.7) with psi in {0, 1}
    (`_predecessor`). Writes w = value + own score (w_out), the predecessor (p_out)
    and the best predecessor's w (+ psi) (b_out; value = own score + b_out) of every box;
    returns the first argmax of w_out. Branch-free selects (which boxes are free and which
    neighbour wins are data-dependent), and no flag in the loop: either cost half the step."""
    nbest, narg = -np.inf, 0
    for j in range(sc.shape[0]):
        b, p = _predecessor(w_prev, best, arg, first, more, idx, row, j)
        b_out[j] = b
        x = sc[j] + b
        x = x + sc[j] if tk[j] >= r else -np.inf
        w_out[j] = x
        p_out[j] = p
        up = x > nbest
        nbest = x if up else nbest
        narg = j if up else narg
    return nbest, narg


@_inline
def _end(sc, tk, r, b):
    """The last box of the best path: the first argmax of the values (own score + b)."""
    best, arg = -np.inf, 0
    for j in range(sc.shape[0]):
        x = sc[j] + b[j] if tk[j] >= r else -np.inf
        up = x > best
        best = x if up else best
        arg = j if up else arg
    return arg


@_inline
def _class_tubes(scores, alive, first, more, idx, lo, hi, c, paths, sl, nb, extra, num_extra, w,
                 b, best_at, arg_at, nz):
    """The tubes of class c in frames [lo, hi) (eq. 8.7, Viterbi; remove; repeat while every
    frame with a box of the class still has one) into paths[r] in extraction order (-1 in the
    frames without a box of the class); returns how many.

    The frames without a box of the class are left out: a tube passes over them, and the link
    across them has psi = 0 (no tracklet spans a gap; the psi row of the frame before the next
    box has no entry for the class, as that frame has no box of it). The m frames with a box
    are copied first into dense local arrays (row e: the e-th such frame): sl the scores, -inf
    for a missing or removed box (its w is then -inf: a removal is one store), nb each box's
    first tracked neighbour in the previous row (n: none, w[., n] = -inf), `extra[e,
    :num_extra[e]]` the boxes with more than one (rare; `more`, `idx`). A step visits every
    box in fixed-length loops without data-dependent branches: its best predecessor's value
    (the max of the previous row's best and its tracked neighbours' w + 1, into b), then w and
    the first argmax. The predecessors' indices are recomputed for the path's boxes alone
    when backtracking (`_predecessor`). The other work arrays: w (T, n + 1), b (T, n), best_at
    and arg_at (T,) (each row's max of w and its first argmax), nz (T,) (the rows' frames)."""
    num_c, n = alive.shape[1], alive.shape[2]
    frames = hi - lo
    left = n
    m = 0
    for t in range(frames):
        count = 0
        for j in range(n):
            count += alive[lo + t, c, j]
        if count > 0:
            nz[m] = t
            left = min(left, count)
            for j in range(n):
                sl[m, j] = scores[lo + t, c, j] if alive[lo + t, c, j] else -np.inf
            w[m, n] = -np.inf
            m += 1
    if m == 0:
        return 0
    for e in range(1, m):
        row = ((lo + nz[e] - 1) * num_c + c) * n
        k = 0
        for j in range(n):
            nb[e, j] = first[row + j]
            extra[e, k] = j
            k += more[row + j] < more[row + j + 1]
        num_extra[e] = k
    for r in range(left):
        best, arg = -np.inf, 0
        for j in range(n):
            x = sl[0, j]
            w[0, j] = x
            up = x > best
            best = x if up else best
            arg = j if up else arg
        best_at[0], arg_at[0] = best, arg
        for e in range(1, m):
            wp, be, se, we = w[e - 1], b[e], sl[e], w[e]
            for j in range(n):
                be[j] = max(best, wp[nb[e, j]] + 1.0)
            if num_extra[e]:
                row = ((lo + nz[e] - 1) * num_c + c) * n
                for q in range(num_extra[e]):
                    j = extra[e, q]
                    for k in range(more[row + j], more[row + j + 1]):
                        be[j] = max(be[j], wp[idx[k]] + 1.0)
            best, arg = -np.inf, 0
            for j in range(n):
                x = se[j] + be[j] + se[j]
                we[j] = x
                up = x > best
                best = x if up else best
                arg = j if up else arg
            best_at[e], arg_at[e] = best, arg
        end = arg
        if m > 1:
            top = -np.inf
            for j in range(n):
                x = sl[m - 1, j] + b[m - 1, j]
                up = x > top
                top = x if up else top
                end = j if up else end
        path = paths[r]
        for t in range(frames):
            path[t] = -1
        path[nz[m - 1]] = end
        for e in range(m - 1, 0, -1):
            _, path[nz[e - 1]] = _predecessor(w[e - 1], best_at[e - 1], arg_at[e - 1], first,
                                              more, idx, ((lo + nz[e] - 1) * num_c + c) * n,
                                              path[nz[e]])
        for e in range(m):  # remove the tube's boxes
            sl[e, path[nz[e]]] = -np.inf
    return left


@_inline
def _work_arrays(frames, n):
    """`_class_tubes`' work arrays for windows of up to `frames` frames of n boxes."""
    return (np.empty((frames, n)), np.empty((frames, n), np.int64),
            np.empty((frames, n), np.int64), np.empty(frames, np.int64),
            np.empty((frames, n + 1)), np.empty((frames, n)), np.empty(frames),
            np.empty(frames, np.int64), np.empty(frames, np.int64))


@_jit
def _window(scores, alive, first, more, idx, lo, hi):
    """All tubes of frames [lo, hi): (tubes per class (C,), paths (C, rounds, hi - lo)); the
    tube of round r of class c is paths[c, r] (a class's rounds in extraction order; -1 in
    the frames without a box of the class)."""
    _, num_c, n = alive.shape
    frames = hi - lo
    rounds = np.zeros(num_c, np.int64)
    paths = np.zeros((num_c, n, frames), np.int64)
    sl, nb, extra, num_extra, w, b, best_at, arg_at, nz = _work_arrays(frames, n)
    for c in range(num_c):
        rounds[c] = _class_tubes(scores, alive, first, more, idx, lo, hi, c, paths[c], sl, nb,
                                 extra, num_extra, w, b, best_at, arg_at, nz)
    return rounds, paths


@_jit
def _online_window(scores, alive, first, more, idx, history, alpha):
    """Online linking with a finite history: frame t rescored by the tubes of the window
    [t - history + 1, t], each window linked from scratch. Per frame t and
    (round, class) slot: the tube's box at t (-1: no tube), its previous box in the window
    and that box's frame (-1, -1 for a tube with one box) and its new score."""
    frames, num_c, n = scores.shape
    cur = np.full((frames, n, num_c), -1, np.int64)
    prev = np.full((frames, n, num_c), -1, np.int64)
    prev_frame = np.full((frames, n, num_c), -1, np.int64)
    new = np.zeros((frames, n, num_c))
    size = min(history, frames)
    for c in range(num_c):
        paths = np.zeros((n, size), np.int64)
        sl, nb, extra, num_extra, w, b, best_at, arg_at, nz = _work_arrays(size, n)
        ranked = np.empty(size)
        for t in range(frames):
            if not alive[t, c].any():
                continue  # no box of the class at t: nothing to rescore
            lo = max(0, t - history + 1)
            length = t - lo + 1
            rounds = _class_tubes(scores, alive, first, more, idx, lo, t + 1, c, paths, sl, nb,
                                  extra, num_extra, w, b, best_at, arg_at, nz)
            for r in range(rounds):
                path = paths[r]
                size_r = 0  # the tube's boxes, sorted (insertion sort: a window is short)
                back = -1
                for s in range(length):
                    if path[s] < 0:
                        continue
                    if s < length - 1:
                        back = s
                    _sorted_insert(ranked, size_r, scores[lo + s, c, path[s]])
                    size_r += 1
                k = max(1, math.ceil(alpha * size_r))
                total = 0.0
                for q in range(size_r - 1, size_r - 1 - k, -1):
                    total += ranked[q]
                cur[t, r, c] = path[length - 1]
                if back >= 0:
                    prev[t, r, c] = path[back]
                    prev_frame[t, r, c] = lo + back
                new[t, r, c] = scores[t, c, path[length - 1]] + total / k
    return cur, prev, prev_frame, new


@_inline
def _sorted_insert(a, size, x):
    """Inserts x into the ascending a[:size] (a has room)."""
    q = size
    while q > 0 and a[q - 1] > x:
        a[q] = a[q - 1]
        q -= 1
    a[q] = x


@_inline
def _sorted_remove(a, size, x):
    """Removes one element equal to x from the ascending a[:size]."""
    q = np.searchsorted(a[:size], x)
    for p in range(q, size - 1):
        a[p] = a[p + 1]


@_jit
def _online_full(scores, alive, first, more, idx, alpha, ring):
    """Online linking with full history: frame t rescored by the tubes of [0, t], exactly, each
    window's extraction continuing the previous one's instead of being redone.

    Round r's Viterbi values at frame s depend only on its values at s - 1 and on the boxes
    that earlier rounds took at s. Going from window [0, t-1] to [0, t], round 0 only adds
    frame t; a later round recomputes a frame only where an earlier round's path changed at
    that frame or its own values at the frame before changed, and a change stops propagating
    at the first recomputed frame equal to the stored one (same values, same predecessors).
    Backtracking stops where the path rejoins the previous one before the first changed frame.
    The values of the last `ring` frames are kept; a change older than that recomputes the
    round from the class's first frame.

    A frame without a box of class c carries each round's values of the frame before over
    unchanged (the next step reads them, with an empty psi row: psi = 0 across the gap), and
    leaves the class's tubes as they were: its window's compressed frames are the previous
    window's.

    Returns (cur, prev, prev_frame, new) as `_online_window`, and (rounds, paths) of the last
    window, i.e. the offline tubes."""
    frames, num_c, n = scores.shape
    cur = np.full((frames, n, num_c), -1, np.int64)
    prev = np.full((frames, n, num_c), -1, np.int64)
    prev_frame = np.full((frames, n, num_c), -1, np.int64)
    new = np.zeros((frames, n, num_c))
    taken = np.empty((frames, num_c, n), np.int32)  # the round whose tube holds a box
    has = np.zeros((frames, num_c), np.bool_)  # the class has a box in the frame
    before = np.full((frames, num_c), -1, np.int64)  # its last frame < t with a box (-1: none)
    for c in range(num_c):
        seen = -1
        for t in range(frames):
            before[t, c] = seen
            for j in range(n):
                taken[t, c, j] = _NONE if alive[t, c, j] else -1
                has[t, c] |= alive[t, c, j]
            if has[t, c]:
                seen = t
    paths = np.full((num_c, n, frames), -1, np.int64)
    ranked = np.empty((num_c, n, frames))  # each tube's scores so far, ascending
    w_ring = np.full((num_c, n, ring, n + 1), -np.inf)
    p_ring = np.empty((num_c, n, ring, n), np.int32)
    best_ring = np.empty((num_c, n, ring))
    arg_ring = np.empty((num_c, n, ring), np.int64)
    w_all = np.full((frames, n + 1), -np.inf)  # a round recomputed from the first frame
    p_all = np.empty((frames, n), np.int32)
    w_new = np.full(n + 1, -np.inf)
    p_new = np.empty(n, np.int32)
    value = np.empty(n)
    new_path = np.empty(frames, np.int64)
    moved = np.zeros(frames, np.bool_)  # frames where an earlier round's path changed
    moved_list = np.empty(frames, np.int64)
    rounds = np.full(num_c, n, np.int64)
    start = np.full(num_c, -1, np.int64)  # the class's first frame with a box
    boxes = np.zeros(num_c, np.int64)  # its frames with a box so far: a tube's length
    for t in range(frames):
        slot = t % ring
        for c in range(num_c):
            if not has[t, c]:
                if start[c] >= 0:  # carry every round's values over the frame
                    u = (t - 1) % ring
                    for r in range(rounds[c]):
                        w_ring[c, r, slot] = w_ring[c, r, u]
                        p_ring[c, r, slot] = -1
                        best_ring[c, r, slot], arg_ring[c, r, slot] = (best_ring[c, r, u],
                                                                       arg_ring[c, r, u])
                continue
            if start[c] < 0:
                start[c] = t
            f0 = start[c]
            boxes[c] += 1
            nb = boxes[c]
            k = max(1, math.ceil(alpha * nb))
            # rounds only decrease: a dropped round's boxes keep a mark >= every live round's
            # index, which reads as free
            rounds[c] = min(rounds[c], alive[t, c].sum())
            num_moved = 0
            first_moved = t
            for r in range(rounds[c]):
                merge = f0
                full = first_moved <= t - ring  # the values before it are gone
                if not full:
                    changed = t  # the first frame whose values or predecessors changed
                    carry = False
                    for s in range(first_moved, t):
                        if not (moved[s] or carry):
                            continue
                        q = s % ring
                        u = (s - 1) % ring
                        if s == f0:
                            best, arg = _start(scores[s, c], taken[s, c], r, w_new)
                            p_new[:] = -1
                        elif not has[s, c]:
                            w_new[:] = w_ring[c, r, u]
                            p_new[:] = -1
                            best, arg = best_ring[c, r, u], arg_ring[c, r, u]
                        else:
                            best, arg = _step(w_ring[c, r, u], best_ring[c, r, u],
                                              arg_ring[c, r, u], scores[s, c], taken[s, c], r,
                                              first, more, idx, ((s - 1) * num_c + c) * n,
                                              w_new, p_new, value)
                        carry = False
                        for j in range(n):
                            if w_new[j] != w_ring[c, r, q, j] or p_new[j] != p_ring[c, r, q, j]:
                                carry = True
                                break
                        if carry:
                            changed = min(changed, s)
                            w_ring[c, r, q] = w_new
                            p_ring[c, r, q] = p_new
                            best_ring[c, r, q], arg_ring[c, r, q] = best, arg
                    if t == f0:
                        best, arg = _start(scores[t, c], taken[t, c], r, w_ring[c, r, slot])
                        p_ring[c, r, slot] = -1
                        end = arg
                    else:
                        u = (t - 1) % ring
                        best, arg = _step(w_ring[c, r, u], best_ring[c, r, u], arg_ring[c, r, u],
                                          scores[t, c], taken[t, c], r, first, more, idx,
                                          ((t - 1) * num_c + c) * n, w_ring[c, r, slot],
                                          p_ring[c, r, slot], value)
                        end = _end(scores[t, c], taken[t, c], r, value)
                    best_ring[c, r, slot], arg_ring[c, r, slot] = best, arg
                    new_path[t] = end
                    s = t
                    while before[s, c] >= 0:
                        if s < changed and paths[c, r, s] == new_path[s]:
                            break  # rejoined the previous path where nothing changed
                        if s <= t - ring:
                            full = True  # the predecessors at s are gone
                            break
                        sp = before[s, c]
                        new_path[sp] = p_ring[c, r, s % ring, new_path[s]]
                        for q in range(sp + 1, s):
                            new_path[q] = -1
                        s = sp
                    merge = s
                if full:
                    best, arg = _start(scores[f0, c], taken[f0, c], r, w_all[f0])
                    end = arg
                    for s in range(f0 + 1, t + 1):
                        if has[s, c]:
                            best, arg = _step(w_all[s - 1], best, arg, scores[s, c],
                                              taken[s, c], r, first, more, idx,
                                              ((s - 1) * num_c + c) * n, w_all[s], p_all[s],
                                              value)
                        else:
                            w_all[s] = w_all[s - 1]
                            p_all[s] = -1
                        if s > t - ring:
                            q = s % ring
                            w_ring[c, r, q] = w_all[s]
                            p_ring[c, r, q] = p_all[s]
                            best_ring[c, r, q], arg_ring[c, r, q] = best, arg
                    if t > f0:
                        end = _end(scores[t, c], taken[t, c], r, value)
                    new_path[t] = end
                    s = t
                    while before[s, c] >= 0:
                        sp = before[s, c]
                        new_path[sp] = p_all[s, new_path[s]]
                        for q in range(sp + 1, s):
                            new_path[q] = -1
                        s = sp
                    merge = f0
                # the frames where the path changed: marks and ranked scores follow (the
                # frames without a box of the class are -1 in both paths)
                for s in range(merge, t):
                    old, nw = paths[c, r, s], new_path[s]
                    if old != nw:
                        if not moved[s]:
                            moved[s] = True
                            moved_list[num_moved] = s
                            num_moved += 1
                            first_moved = min(first_moved, s)
                        if taken[s, c, old] == r:  # else an earlier round took it since
                            taken[s, c, old] = _NONE
                        taken[s, c, nw] = r
                        _sorted_remove(ranked[c, r], nb - 1, scores[s, c, old])
                        _sorted_insert(ranked[c, r], nb - 2, scores[s, c, nw])
                        paths[c, r, s] = nw
                j = new_path[t]
                paths[c, r, t] = j
                taken[t, c, j] = r
                _sorted_insert(ranked[c, r], nb - 1, scores[t, c, j])
                total = 0.0
                for q in range(nb - 1, nb - 1 - k, -1):
                    total += ranked[c, r, q]
                cur[t, r, c] = j
                if before[t, c] >= 0:
                    prev[t, r, c] = paths[c, r, before[t, c]]
                    prev_frame[t, r, c] = before[t, c]
                new[t, r, c] = scores[t, c, j] + total / k
            for q in range(num_moved):
                moved[moved_list[q]] = False
    return cur, prev, prev_frame, new, rounds, paths


@_jit
def _gather_online(cur, prev, prev_frame, new, index):
    """The online kernels' (frame, round, class) slots with a tube, in that order (each
    frame's extraction order) as detection indices: per frame f, rows ends[f]:ends[f + 1] of
    joined (frame of the previous box, its index (-1, -1: none), index at f) and value (the
    new score). One pass: numpy's nonzero and fancy indexing over every slot cost more than
    the windows' bookkeeping."""
    frames, n, num_c = cur.shape
    ends = np.zeros(frames + 1, np.int64)
    for t in range(frames):
        k = 0
        for r in range(n):
            for c in range(num_c):
                k += cur[t, r, c] >= 0
        ends[t + 1] = ends[t] + k
    joined = np.empty((ends[frames], 3), np.int64)
    value = np.empty(ends[frames])
    q = 0
    for t in range(frames):
        for r in range(n):
            for c in range(num_c):
                j = cur[t, r, c]
                if j < 0:
                    continue
                back = prev_frame[t, r, c]
                joined[q, 0] = back
                joined[q, 1] = index[back, c, prev[t, r, c]] if back >= 0 else -1
                joined[q, 2] = index[t, c, j]
                value[q] = new[t, r, c]
                q += 1
    return ends, joined, value


@_jit
def _ranks(key, num_keys):
    """Each element's rank among the earlier elements with its key, and the largest group."""
    counts = np.zeros(num_keys, np.int64)
    rank = np.empty(key.shape[0], np.int64)
    for q in range(key.shape[0]):
        rank[q] = counts[key[q]]
        counts[key[q]] += 1
    return rank, max(1, counts.max())


class _Video:
    """Per-class padded arrays of one video: scores, boxes, detection indices, psi."""

    def __init__(self, dets, trk, iou_threshold):
        frames = len(dets)
        sizes = np.array([len(c) for _, _, c in dets])
        labels = np.concatenate([c for _, _, c in dets])
        if labels.min() >= 0 and labels.max() < 1 << 20:  # class ids: no sort needed
            present = np.bincount(labels) > 0
            self.classes = np.flatnonzero(present)
            slot_of = np.cumsum(present) - 1
            label_slot = slot_of[labels]
        else:
            self.classes, label_slot = np.unique(labels, return_inverse=True)
        num_c = len(self.classes)
        # a detection's place is (frame, class, rank among the frame's boxes of its class)
        key = np.repeat(np.arange(frames) * num_c, sizes) + label_slot
        rank, n = _ranks(key, frames * num_c)
        place = key * n + rank
        self.scores = np.zeros(frames * num_c * n)
        self.scores[place] = np.concatenate([s for _, s, _ in dets])
        self.scores = self.scores.reshape(frames, num_c, n)
        boxes = np.zeros((frames * num_c * n, 4))
        boxes[place] = np.concatenate([b for b, _, _ in dets])
        boxes = boxes.reshape(frames, num_c, n, 4)
        self.index = np.full(frames * num_c * n, -1)
        self.index[place] = np.arange(len(key)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        self.index = self.index.reshape(frames, num_c, n)
        self.alive = self.index >= 0
        tracks = np.concatenate(trk[:frames - 1] + [np.zeros((0, 8))])
        start = np.concatenate([[0], np.cumsum([len(m) for m in trk[:frames - 1]])])
        self.first, self.more, self.idx = _neighbours(boxes, self.alive, tracks,
                                                      start.astype(np.int64),
                                                      float(iou_threshold))

    def tubes(self):
        """The offline tubes: (class slot per tube, path (tubes, frames)), class by class."""
        rounds, paths = _window(self.scores, self.alive, self.first, self.more, self.idx, 0,
                                self.scores.shape[0])
        return _flatten(rounds, paths)


def _flatten(rounds, paths):
    tube_class = np.repeat(np.arange(len(rounds)), rounds)
    tube_path = np.concatenate([paths[c, :r] for c, r in enumerate(rounds)])
    return tube_class, tube_path


def _rescore(video, tube_class, tube_path, alpha, new_scores):
    """Adds to each tube box the mean of the ceil(alpha * n) highest scores of the tube's n
    boxes (its frames without a box of the class do not count)."""
    frames = tube_path.shape[1]
    if not len(tube_class):
        return
    has = tube_path >= 0
    k = np.maximum(1, np.ceil(alpha * has.sum(1))).astype(np.int64)  # (tubes,)
    s = video.scores[np.arange(frames), tube_class[:, None], np.maximum(tube_path, 0)]
    ranked = np.sort(np.where(has, s, -np.inf), 1)[:, ::-1]
    bonus = np.where(np.arange(frames) < k[:, None], ranked, 0.0).sum(1) / k
    if has.all():  # no gaps: no per-frame masks (they cost as much as the rest)
        for t in range(frames):
            new_scores[t][video.index[t, tube_class, tube_path[:, t]]] = s[:, t] + bonus
        return
    for t in range(frames):
        q = has[:, t]
        new_scores[t][video.index[t, tube_class[q], tube_path[q, t]]] = s[q, t] + bonus[q]


def link_tubes(detections, tracks, *, alpha: float = 0.5, iou_threshold: float = 0.5,
               online: bool = False, history: int | None = None,
               num_classes: int | None = None):
    """Links per-frame detections into class tubes with the tracklets and rescores them (§8.4).

    Args:
      detections: per frame t, `{"boxes": (N_t, 4) x1 y1 x2 y2, "scores": (N_t,),
        "classes": (N_t,)}` (class-specific boxes after NMS; D&T: NMS with box voting, at most
        25 boxes per frame and class).
      tracks: per pair (t, t+1), `(M_t, 8)`: a box at t and its tracked box at t+1 (x1 y1 x2 y2
        each). T-1 entries (a T-th is ignored).
      alpha: fraction of a tube's highest scores whose mean is added (thesis: 50%).
      iou_threshold: IoU a tracklet needs with both boxes for psi = 1 (eq. 8.6).
      online: causal rescoring (the thesis' online variant, 78.7 vs 79.8 mAP): the scores of
        frame t come from linking frames [0, t] only (or the last `history` frames), so no
        future frame changes them. The tubes returned are the offline ones.
      history: with `online`, the number of past frames (including t) linked at each t;
        None = all. The full history reuses each window's work in the next, so its cost per
        frame follows how much the tubes change (30 classes x 25 boxes of i.i.d. random
        scores: ~8x offline); a finite history adds ~`history` x the offline extraction per
        frame whatever the video (6: 2x offline, 0.9 ms, what `tfzoo.detect --online` uses;
        on the noisy ground-truth oracle it loses 0.006 frame mAP against the full history;
        docs/detection.md, Speed).
      num_classes: the model's number of classes: class ids must be in [0, num_classes)
        (None: any non-negative integer).

    A frame in which class c has no box is left out of c's linking (as the authors'
    `make_tubes`): c's tubes pass over it with index -1 there, the link across it scores
    p_i + p_j (no tracklet spans the gap: psi = 0), and n in the rescoring counts the tube's
    frames with a box. A class with boxes in frames 5..40 only gets tubes over those frames.
    Bad input (non-finite scores or coordinates, x2 < x1 or y2 < y1, a class outside
    [0, num_classes), tracks not (M, 8)) raises `LinkingError` naming the frame and value; a
    video with no detection gives no tube and the scores unchanged.

    Returns:
      (rescored, tubes): `rescored[t]` the new scores (N_t,); `tubes` in extraction order
      (class by class, then by extraction), `{"class": c, "indices": [i_0, ..., i_{T-1}]}` with
      indices into each frame's detections (-1: the class has no box in that frame).

    Example:
    >>> import numpy as np
    >>> dets = [{"boxes": np.array([[0, 0, 9, 9], [50, 50, 59, 59]]),
    ...          "scores": np.array([0.9, 0.2]), "classes": np.array([1, 1])},
    ...         {"boxes": np.array([[2, 0, 11, 9], [52, 50, 61, 59]]),
    ...          "scores": np.array([0.1, 0.8]), "classes": np.array([1, 1])}]
    >>> tracks = [np.array([[0, 0, 9, 9, 2, 0, 11, 9]])]  # box 0 moves 2 px right
    >>> rescored, tubes = link_tubes(dets, tracks)
    >>> [t["indices"] for t in tubes]  # the tracked pair wins: 0.9 + 0.1 + 1 > 0.2 + 0.8 + 0
    [[0, 0], [1, 1]]
    >>> np.round(rescored[1], 2).tolist()  # 0.1 + max(0.9, 0.1); 0.8 + max(0.2, 0.8)
    [1.0, 1.6]
    >>> one = {"boxes": np.array([[0, 0, 9, 9]]), "scores": np.array([0.5]),
    ...        "classes": np.array([1])}
    >>> none = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "classes": np.zeros(0)}
    >>> rescored, tubes = link_tubes([one, none, one], [np.zeros((0, 8))] * 2)
    >>> tubes, [s.tolist() for s in rescored]  # over the gap: 0.5 + mean of the top 1
    ([{'class': 1, 'indices': [0, -1, 0]}], [[1.0], [], [1.0]])
    """
    rescored, tubes, _ = _link(detections, tracks, alpha, iou_threshold, online, history,
                               num_classes)
    return rescored, tubes


def _link(detections, tracks, alpha, iou_threshold, online, history, num_classes=None,
          offline_tubes=True):
    """link_tubes, plus for the online variant the links its windows make: `links[t]` an
    (L, 3) array of (frame of the previous box, its index, index at t) for every tube of the
    window ending at t with a box at t (-1, -1 for a tube whose first box in the window is at
    t; the causal tube ids of `tfzoo.detection.inference` follow them); None offline.
    `offline_tubes=False` (online only): no offline tubes (None), for a caller that uses the
    links only; a bounded history then skips the whole-video extraction (~12% of its time)."""
    dets, trk = _check(detections, tracks, alpha, history, num_classes)
    frames = len(dets)
    rescored = [s.copy() for _, s, _ in dets]
    links = [np.zeros((0, 3), np.int64) for _ in range(frames)] if online else None
    if not any(len(s) for _, s, _ in dets):
        return rescored, [], links
    video = _Video(dets, trk, iou_threshold)
    if not online:
        tube_class, tube_path = video.tubes()
        _rescore(video, tube_class, tube_path, alpha, rescored)
    else:
        if history is None or history >= frames:
            cur, prev, prev_frame, new, rounds, paths = _online_full(
                video.scores, video.alive, video.first, video.more, video.idx, float(alpha),
                _RING)
            tube_class, tube_path = _flatten(rounds, paths)  # the last window is the video
        else:
            cur, prev, prev_frame, new = _online_window(
                video.scores, video.alive, video.first, video.more, video.idx, history,
                float(alpha))
            tube_class, tube_path = video.tubes() if offline_tubes else (None, None)
        # every frame at once, then per-frame slices: (frame, round, class) order is each
        # frame's extraction order
        ends, joined, value = _gather_online(cur, prev, prev_frame, new, video.index)
        at = joined[:, 2]
        for f in range(frames):
            a, b = ends[f], ends[f + 1]
            rescored[f][at[a:b]] = value[a:b]
            links[f] = joined[a:b]
        if not offline_tubes:
            return rescored, None, links
    index = np.where(tube_path >= 0,
                     video.index[np.arange(frames), tube_class[:, None], tube_path], -1)
    out = [{"class": int(video.classes[c]), "indices": index[q].tolist()}
           for q, c in enumerate(tube_class.tolist())]
    return rescored, out, links
