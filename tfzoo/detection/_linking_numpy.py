"""The previous, pure-numpy `link_tubes` (13x slower offline and 22-26x online than
`tfzoo.detection.linking`'s compiled kernels): kept as the reference that
`python -m tfzoo.detection.dt_blocks_bench --what linking` times the new one against in the same run,
and that the tests compare it with on cases too large to enumerate. Same semantics as
`tfzoo.detection.link_tubes` (eq. 8.5-8.7: see `tfzoo.detection.linking`).

The Viterbi recursion runs for all classes at once on (classes, boxes, boxes) arrays, so the
cost per frame is a few numpy calls per extracted tube, independent of the number of classes
(`python -m tfzoo.detection.dt_blocks_bench --what linking`). A frame where a class has no box is left
out of that class's linking (its tubes pass over it with index -1, psi = 0 across the gap):
the classes with the same frames with boxes are linked together on those frames only.
"""

from __future__ import annotations

import math

import numpy as np

from tfzoo.detection.linking import _check  # the same input contract


class _Video:
    """Per-class padded arrays of one video: scores, boxes, detection indices, edge scores."""

    def __init__(self, dets, trk, iou_threshold):
        frames = len(dets)
        self.classes = np.unique(np.concatenate([c for _, _, c in dets]))
        num_c = len(self.classes)
        n = 1
        for _, _, c in dets:
            if len(c):
                n = max(n, int(np.bincount(np.searchsorted(self.classes, c)).max()))
        self.scores = np.zeros((frames, num_c, n))
        self.boxes = np.zeros((frames, num_c, n, 4))
        self.index = np.full((frames, num_c, n), -1)
        for t, (b, s, c) in enumerate(dets):
            ci = np.searchsorted(self.classes, c)
            order = np.argsort(ci, kind="stable")
            rank = np.arange(len(c)) - np.searchsorted(ci[order], ci[order], side="left")
            self.scores[t, ci[order], rank] = s[order]
            self.boxes[t, ci[order], rank] = b[order]
            self.index[t, ci[order], rank] = order
        self.alive = self.index >= 0
        # psi (T-1, C, N_to, N_from) of eq. 8.6
        self.psi = np.zeros((max(frames - 1, 0), num_c, n, n), bool)
        flat_boxes = self.boxes.reshape(frames, -1, 4)
        flat_alive = self.alive.reshape(frames, -1)
        for t in range(frames - 1):
            psi = np.zeros((num_c * n, num_c * n), bool)
            if len(trk[t]):
                a_box, a_trk = _overlapping(flat_boxes[t], flat_alive[t], trk[t][:, :4],
                                            iou_threshold)
                b_box, b_trk = _overlapping(flat_boxes[t + 1], flat_alive[t + 1],
                                            trk[t][:, 4:], iou_threshold)
                # psi(i, j) = some tracklet m overlaps i at t and j at t+1: join on m
                order = np.argsort(b_trk, kind="stable")
                b_box, b_trk = b_box[order], b_trk[order]
                lo = np.searchsorted(b_trk, a_trk, "left")
                hi = np.searchsorted(b_trk, a_trk, "right")
                i, pos = _ranges(lo, hi)
                psi[a_box[i], b_box[pos]] = True
            psi = psi.reshape(num_c, n, num_c, n)[np.arange(num_c), :, np.arange(num_c)]
            # stored (class, to, from): the Viterbi max runs over the contiguous last axis
            self.psi[t] = psi.transpose(0, 2, 1)


def _ranges(lo, hi):
    """For ragged ranges [lo_k, hi_k): (k, position) of every element, vectorised."""
    counts = hi - lo
    k = np.repeat(np.arange(len(lo)), counts)
    start = np.repeat(np.cumsum(counts) - counts, counts)
    return k, np.arange(counts.sum()) - start + np.repeat(lo, counts)


def _overlapping(boxes, alive, tracks, threshold):
    """(box index, track index) of every pair with IoU > threshold (0.5 or more).

    IoU > 0.5 implies that each box's centre lies within the other's extent (per axis,
    |c_a - c_b| < min(w_a, w_b) / 2), so only the tracks whose centre falls inside a box's
    x-range (then y-range) are candidates: a sort and two searchsorted calls instead of all
    box x track pairs.
    Below 0.5 that bound does not hold and every pair is tested.
    """
    idx = np.nonzero(alive)[0]
    b = boxes[idx]
    if threshold >= 0.5:
        cx = 0.5 * (tracks[:, 0] + tracks[:, 2])
        order = np.argsort(cx, kind="stable")
        # inclusive pixels: the extent of [x1, x2] is [x1 - 0.5, x2 + 0.5] around centres
        lo = np.searchsorted(cx[order], b[:, 0] - 0.5, "left")
        hi = np.searchsorted(cx[order], b[:, 2] + 0.5, "right")
        k, pos = _ranges(lo, hi)
        m = order[pos]
        cy = 0.5 * (tracks[:, 1] + tracks[:, 3])[m]  # the same bound along y
        near = (cy >= b[:, 1][k] - 0.5) & (cy <= b[:, 3][k] + 0.5)
        k, m = k[near], m[near]
    else:
        k = np.repeat(np.arange(len(b)), len(tracks))
        m = np.tile(np.arange(len(tracks)), len(b))
    bb, tt = b[k], tracks[m]
    iw = np.minimum(bb[:, 2], tt[:, 2]) - np.maximum(bb[:, 0], tt[:, 0]) + 1
    ih = np.minimum(bb[:, 3], tt[:, 3]) - np.maximum(bb[:, 1], tt[:, 1]) + 1
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    area_b = (bb[:, 2] - bb[:, 0] + 1) * (bb[:, 3] - bb[:, 1] + 1)
    area_t = (tt[:, 2] - tt[:, 0] + 1) * (tt[:, 3] - tt[:, 1] + 1)
    keep = inter > threshold * (area_b + area_t - inter)
    return idx[k[keep]], m[keep]


def _extract(scores, alive, edges):
    """All tubes of frames [0, T) (arrays sliced to them): list of (class slot, path (T,))."""
    frames, num_c, n = scores.shape
    # a removed or missing box cannot be entered: its incoming edges are -inf (and frame 0
    # starts from -inf), so a removal is one assignment instead of a mask at every step
    edges = np.where(alive[1:, :, :, None], edges, -np.inf)
    start = np.where(alive[0], scores[0] if frames == 1 else 0.0, -np.inf)
    tubes = []
    c_range = np.arange(num_c)
    t_range = np.arange(frames)[:, None]
    left = alive.sum(2)  # (T, C) boxes not yet in a tube
    active = (left > 0).all(0)
    cand = np.empty((num_c, n, n))
    # forward values per frame; the argmax is recomputed only along the chosen path when
    # backtracking (an argmax over every state at every step costs as much as the max)
    values = np.empty((frames, num_c, n))
    while active.any():
        # a single frame has no edges: its best "path" is its best box
        values[0] = start
        for t in range(frames - 1):
            np.add(values[t][:, None, :], edges[t], out=cand)
            cand.max(2, out=values[t + 1])
        path = np.empty((frames, num_c), np.int64)
        path[-1] = values[-1].argmax(1)
        for t in range(frames - 2, -1, -1):
            path[t] = (values[t] + edges[t][c_range, path[t + 1]]).argmax(1)
        cs = np.nonzero(active)[0]
        for c in cs:
            tubes.append((c, path[:, c].copy()))
        edges[t_range[:-1], cs[None], path[1:, cs]] = -np.inf  # edges[t] enter frame t+1
        start[cs, path[0, cs]] = -np.inf
        left[:, cs] -= 1
        active &= (left > 0).all(0)
    return tubes


def _tubes(video, lo, hi):
    """All tubes of frames [lo, hi): list of (class slot, path (hi - lo,), -1 where the class
    has no box), class by class, extraction order within. The classes with boxes in the same
    frames are linked together on those frames (eq. 8.5 edges between consecutive ones, psi
    only between adjacent frames)."""
    alive = video.alive[lo:hi]
    has = alive.any(2)  # (T, C)
    tubes = []
    patterns, group = np.unique(has.T, axis=0, return_inverse=True)
    for g, pattern in enumerate(patterns):
        frames = np.flatnonzero(pattern)
        if not len(frames):
            continue
        cs = np.flatnonzero(group.reshape(-1) == g)
        f = lo + frames
        scores = video.scores[f][:, cs]
        adjacent = (np.diff(frames) == 1)[:, None, None, None]
        edges = (scores[:-1, :, None, :] + scores[1:, :, :, None]
                 + (video.psi[f[:-1]][:, cs] & adjacent))
        for c, path in _extract(scores, video.alive[f][:, cs], edges):
            full = np.full(hi - lo, -1)
            full[frames] = path
            tubes.append((cs[c], full))
    tubes.sort(key=lambda ct: ct[0])  # stable: class by class, extraction order within
    return tubes


def _rescore(video, tubes, lo, alpha, new_scores, only_last):
    """Adds to each tube box the mean of the ceil(alpha * n) highest scores of its n boxes."""
    for c, path in tubes:
        t_idx = lo + np.flatnonzero(path >= 0)
        s = video.scores[t_idx, c, path[path >= 0]]
        k = max(1, math.ceil(alpha * len(s)))
        bonus = np.sort(s)[::-1][:k].mean()
        for t, i, x in zip(t_idx, path[path >= 0], s):
            if not only_last or t == lo + len(path) - 1:
                new_scores[t][video.index[t, c, i]] = x + bonus


def link_tubes(detections, tracks, *, alpha: float = 0.5, iou_threshold: float = 0.5,
               online: bool = False, history: int | None = None,
               num_classes: int | None = None):
    """`tfzoo.detection.link_tubes` (same arguments, checks and results), in numpy."""
    dets, trk = _check(detections, tracks, alpha, history, num_classes)
    frames = len(dets)
    rescored = [s.copy() for _, s, _ in dets]
    if not any(len(s) for _, s, _ in dets):
        return rescored, []
    video = _Video(dets, trk, iou_threshold)
    tubes = _tubes(video, 0, frames)
    if online:
        for t in range(frames):
            lo = 0 if history is None else max(0, t - history + 1)
            _rescore(video, _tubes(video, lo, t + 1), lo, alpha, rescored, only_last=True)
    else:
        _rescore(video, tubes, 0, alpha, rescored, only_last=False)
    out = [{"class": int(video.classes[c]),
            "indices": [int(video.index[t, c, i]) if i >= 0 else -1 for t, i in enumerate(path)]}
           for c, path in tubes]
    return rescored, out
