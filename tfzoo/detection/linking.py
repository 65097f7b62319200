"""Linking detections and tracklets into object tubes and rescoring them (thesis §8.4).

Per class, the score of linking box i at frame t to box j at frame t+1 is (eq. 8.5)

    s = p_i^t + p_j^{t+1} + psi(i, j),   psi = 1 if some tracklet of (t, t+1) has IoU >
    `iou_threshold` with box i at t and with box j at t+1, else 0 (eq. 8.6),

the tube is the path with one box per frame maximising the sum of s over the video (eq. 8.7,
Viterbi), its boxes are removed and the next tube is extracted, while every frame still has a
box of the class. Each box of a tube then gets its score plus the mean of the ceil(alpha * T)
highest scores of its tube; boxes in no tube keep their score.

psi is binary, so the best predecessor of a box is either the best box of the previous frame or,
one point higher, its best tracked neighbour: a Viterbi step costs O(boxes + tracked pairs) rather
than O(boxes^2). The tracklet/box overlaps are searched on a grid of centres. Both run as numba
kernels (`python -m tfzoo.detection.bench --what linking`: against the previous numpy version).
"""

from __future__ import annotations

import math

import numba
import numpy as np


def _check(detections, tracks, alpha=0.5, history=None):
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    if history is not None and (not isinstance(history, int) or history < 1):
        raise ValueError(f"history must be None or a positive integer, got {history!r}")
    if not isinstance(detections, (list, tuple)) or not detections:
        raise ValueError("detections must be a non-empty list (one dict per frame) of "
                         "{'boxes': (N, 4), 'scores': (N,), 'classes': (N,)}")
    frames = len(detections)
    if len(tracks) not in (frames - 1, frames):
        raise ValueError(f"tracks has {len(tracks)} entries for {frames} frames: expected "
                         f"{frames - 1} (one per pair of consecutive frames) or {frames}")
    out = []
    for t, d in enumerate(detections):
        try:
            boxes = np.asarray(d["boxes"], np.float64).reshape(-1, 4)
            scores = np.asarray(d["scores"], np.float64).reshape(-1)
            classes = np.asarray(d["classes"]).astype(np.int64).reshape(-1)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"detections[{t}]: expected {{'boxes': (N, 4), 'scores': (N,), "
                             f"'classes': (N,)}} ({e})") from e
        if not len(boxes) == len(scores) == len(classes):
            raise ValueError(f"detections[{t}]: {len(boxes)} boxes, {len(scores)} scores and "
                             f"{len(classes)} classes; expected the same number")
        out.append((boxes, scores, classes))
    trk = []
    for t in range(frames - 1):
        m = np.asarray(tracks[t], np.float64)
        if m.size == 0:
            m = m.reshape(0, 8)
        if m.ndim != 2 or m.shape[1] != 8:
            raise ValueError(f"tracks[{t}] has shape {m.shape}: expected (M, 8), a box at t and "
                             "at t+1 (x1 y1 x2 y2 each) per tracklet")
        trk.append(m)
    return out, trk


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
    the cells its extent touches; the IoU test decides, the grid only prunes (floor of a float division is
    monotone, so no track whose centre is inside the extent is missed). Below 0.5 that bound
    does not hold and every pair is tested.
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
    nx, ny, cell = 1, 1, 1.0
    if pruned:
        # cells of a quarter of the tracks' mean side (fastest of 1/8..1/2 on the bench), at
        # most 256 x 256 whatever the spread
        cell = max(0.125 * size / m, 1.0, (cx.max() - x0) / 256.0, (cy.max() - y0) / 256.0)
        for k in range(m):
            gx[k] = int(np.floor((cx[k] - x0) / cell))
            gy[k] = int(np.floor((cy[k] - y0) / cell))
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
            cx_lo = max(np.floor((x1 - 0.5 - x0) / cell), 0.0)
            cx_hi = min(np.floor((x2 + 0.5 - x0) / cell), nx - 1.0)
            cy_lo = max(np.floor((y1 - 0.5 - y0) / cell), 0.0)
            cy_hi = min(np.floor((y2 + 0.5 - y0) / cell), ny - 1.0)
            if cx_lo > cx_hi or cy_lo > cy_hi:
                continue  # the extent misses every cell (the box is off the grid)
        else:
            cx_lo, cx_hi, cy_lo, cy_hi = 0.0, 0.0, 0.0, 0.0
        for yy in range(int(cy_lo), int(cy_hi) + 1):
            for p in range(start[yy * nx + int(cx_lo)], start[yy * nx + int(cx_hi) + 1]):
                iw = min(x2, tx2[p]) - max(x1, tx1[p]) + 1.0
                ih = min(y2, ty2[p]) - max(y1, ty1[p]) + 1.0
                if iw <= 0.0 or ih <= 0.0:
                    continue
                inter = iw * ih
                if inter > threshold * (area + tarea[p] - inter):
                    if num == out.shape[1]:
                        grown = np.empty((2, 2 * num), np.int64)
                        for q in range(num):  # a loop: a slice copy takes seconds to compile
                            grown[0, q], grown[1, q] = out[0, q], out[1, q]
                        out = grown
                    out[0, num] = i
                    out[1, num] = order[p]
                    num += 1
    return out[0, :num].copy(), out[1, :num].copy()


@_jit
def _neighbours(boxes, alive, tracks, track_start, threshold):
    """psi of eq. 8.6 as lists of neighbours: for frame pair t, class c and box j at t+1, the
    boxes i of class c at t such that one tracklet of (t, t+1) has IoU > threshold with i and
    with j. CSR over the flat index ((t * C + c) * n + j): `ptr`, `idx` (i)."""
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
    for r in range(pairs * num_c * n):
        ptr[r + 1] += ptr[r]
    idx = np.empty(ptr[-1], np.int64)
    flat = psi.reshape(pairs * num_c * n, n)
    for r in range(flat.shape[0]):
        if ptr[r + 1] == ptr[r]:
            continue
        q = ptr[r]
        for i in range(n):
            if flat[r, i]:
                idx[q] = i
                q += 1
    return ptr, idx


@_jit
def _extract(scores, alive, ptr, idx, lo, hi):
    """All tubes of frames [lo, hi) (eq. 8.7, Viterbi; remove; repeat while every frame still
    has a box of the class): (class slot per tube, path (tubes, hi - lo)), in extraction order
    (all classes advance together; the caller sorts by class).

    Edge score s_i + s_j + psi(i, j) with psi in {0, 1}, so the best predecessor of box j is
    either the best box overall or, one point higher, its best tracked neighbour:
    value(t+1, j) = s_j + max(max_i w_i, 1 + max_{i in psi(j)} w_i) with w_i = value(t, i) + s_i.
    A step costs O(boxes + tracked pairs) instead of O(boxes^2).
    """
    _, num_c, n = alive.shape
    frames = hi - lo
    live = alive[lo:hi].copy()
    left = np.zeros(num_c, np.int64)  # tubes the class can still give (min over frames)
    for c in range(num_c):
        left[c] = n
        for t in range(frames):
            left[c] = min(left[c], live[t, c].sum())
    total = left.sum()
    tube_class = np.empty(total, np.int64)
    tube_path = np.empty((total, frames), np.int64)
    w = np.empty((frames, n))  # value + own score, per frame (the backtracking reads it)
    value = np.empty(n)
    cand = np.empty(n)
    num = 0
    neg = -np.inf
    for rnd in range(n):
        for c in range(num_c):
            if left[c] <= rnd:
                continue
            # forward
            for i in range(n):
                if live[0, c, i]:
                    value[i] = scores[lo, c, i] if frames == 1 else 0.0
                    w[0, i] = value[i] + scores[lo, c, i]
                else:
                    value[i] = neg
                    w[0, i] = neg
            for t in range(frames - 1):
                best_all = neg
                for i in range(n):
                    best_all = max(best_all, w[t, i])
                row = ((lo + t) * num_c + c) * n
                for j in range(n):
                    if not live[t + 1, c, j]:
                        value[j] = neg
                        w[t + 1, j] = neg
                        continue
                    b = best_all
                    for q in range(ptr[row + j], ptr[row + j + 1]):
                        b = max(b, w[t, idx[q]] + 1.0)
                    value[j] = scores[lo + t + 1, c, j] + b
                    w[t + 1, j] = value[j] + scores[lo + t + 1, c, j]
            # backtrack: the first best index, as numpy's argmax
            path = tube_path[num]
            path[frames - 1] = np.argmax(value)
            for t in range(frames - 2, -1, -1):
                cand[:] = w[t]
                row = ((lo + t) * num_c + c) * n + path[t + 1]
                for q in range(ptr[row], ptr[row + 1]):
                    cand[idx[q]] += 1.0
                path[t] = np.argmax(cand)
            for t in range(frames):
                live[t, c, path[t]] = False
            tube_class[num] = c
            num += 1
    return tube_class, tube_path


class _Video:
    """Per-class padded arrays of one video: scores, boxes, detection indices, psi."""

    def __init__(self, dets, trk, iou_threshold):
        frames = len(dets)
        self.classes = np.unique(np.concatenate([c for _, _, c in dets]))
        num_c = len(self.classes)
        n = 1
        for _, _, c in dets:
            if len(c):
                n = max(n, int(np.bincount(np.searchsorted(self.classes, c)).max()))
        self.scores = np.zeros((frames, num_c, n))
        boxes = np.zeros((frames, num_c, n, 4))
        self.index = np.full((frames, num_c, n), -1)
        for t, (b, s, c) in enumerate(dets):
            ci = np.searchsorted(self.classes, c)
            order = np.argsort(ci, kind="stable")
            rank = np.arange(len(c)) - np.searchsorted(ci[order], ci[order], side="left")
            self.scores[t, ci[order], rank] = s[order]
            boxes[t, ci[order], rank] = b[order]
            self.index[t, ci[order], rank] = order
        self.alive = self.index >= 0
        tracks = np.concatenate(trk[:frames - 1] + [np.zeros((0, 8))])
        start = np.concatenate([[0], np.cumsum([len(m) for m in trk[:frames - 1]])])
        self.ptr, self.idx = _neighbours(boxes, self.alive, tracks, start.astype(np.int64),
                                         float(iou_threshold))

    def tubes(self, lo, hi):
        return _extract(self.scores, self.alive, self.ptr, self.idx, lo, hi)


def _rescore(video, tube_class, tube_path, lo, alpha, new_scores, only_last):
    """Adds to each tube box the mean of its ceil(alpha * len) highest scores."""
    frames = tube_path.shape[1]
    if not len(tube_class):
        return
    k = max(1, math.ceil(alpha * frames))
    t_idx = np.arange(lo, lo + frames)
    s = video.scores[t_idx, tube_class[:, None], tube_path]  # (tubes, frames)
    bonus = np.sort(s, 1)[:, ::-1][:, :k].mean(1)
    for t in ([frames - 1] if only_last else range(frames)):
        new_scores[lo + t][video.index[lo + t, tube_class, tube_path[:, t]]] = s[:, t] + bonus


def link_tubes(detections, tracks, *, alpha: float = 0.5, iou_threshold: float = 0.5,
               online: bool = False, history: int | None = None):
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
        None = all. Bounds the per-frame cost of a long video.

    Returns:
      (rescored, tubes): `rescored[t]` the new scores (N_t,); `tubes` in extraction order
      (class by class, then by extraction), `{"class": c, "indices": [i_0, ..., i_{T-1}]}` with
      indices into each frame's detections.

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
    """
    rescored, tubes, _ = _link(detections, tracks, alpha, iou_threshold, online, history)
    return rescored, tubes


def _link(detections, tracks, alpha, iou_threshold, online, history):
    """link_tubes, plus for the online variant the links its windows make: `links[t]` (t >= 1)
    an (L, 2) array of (index at t-1, index at t) for every tube of the window ending at t (the
    causal tube ids of `tfzoo.detection.inference` follow them); None offline."""
    dets, trk = _check(detections, tracks, alpha, history)
    frames = len(dets)
    rescored = [s.copy() for _, s, _ in dets]
    links = [np.zeros((0, 2), np.int64) for _ in range(frames)] if online else None
    if not any(len(s) for _, s, _ in dets):
        return rescored, [], links
    video = _Video(dets, trk, iou_threshold)
    tube_class, tube_path = video.tubes(0, frames)
    order = np.argsort(tube_class, kind="stable")  # class by class, extraction order within
    tube_class, tube_path = tube_class[order], tube_path[order]
    if online:
        for t in range(frames):
            lo = 0 if history is None else max(0, t - history + 1)
            part_class, part_path = video.tubes(lo, t + 1)
            _rescore(video, part_class, part_path, lo, alpha, rescored, only_last=True)
            if t > lo:
                links[t] = np.stack([video.index[t - 1, part_class, part_path[:, -2]],
                                     video.index[t, part_class, part_path[:, -1]]], 1)
    else:
        _rescore(video, tube_class, tube_path, 0, alpha, rescored, only_last=False)
    index = video.index[np.arange(frames), tube_class[:, None], tube_path]  # (tubes, frames)
    out = [{"class": int(video.classes[c]), "indices": index[q].tolist()}
           for q, c in enumerate(tube_class.tolist())]
    return rescored, out, links
