"""A TEST ORACLE, not a model: detections and tracklets made from the ground truth of the
embedded synthetic detection set, with seeded noise, for testing the D&T video path (linking,
drawing, JSON) before a trained D&T model exists.

Per frame and ground-truth object: the box jittered by a few pixels; in a `miss` fraction of
frames the object is "hard" (as if blurred or occluded): its class gets a low score and a
wrong class a medium one on the same box; otherwise its class scores high. Plus
`false_positives` random boxes of random classes per frame, which do not persist in time.
Tracklets: each detection at t moved by its object's true motion to t+tau (plus noise); false
positives stay in place. Deterministic per (seed, frame).
"""

from __future__ import annotations

import numpy as np


class NoisyOracleDetector:
    """`annotations[f]`: list of `(class, track_id, (x1, y1, x2, y2), ...)` per video frame."""

    def __init__(self, annotations, class_names, *, seed: int = 0, miss: float = 0.35,
                 jitter: float = 1.5, false_positives: int = 2, size=(96, 128)):
        self.annotations = annotations
        self.class_names = list(class_names)
        self.seed, self.miss, self.jitter = seed, miss, jitter
        self.false_positives = false_positives
        self.size = size
        self._cache = {}

    def detections(self, f):
        """(detections dict, track id of each detection's object or -1)."""
        if f in self._cache:
            return self._cache[f]
        rng = np.random.default_rng([self.seed, f])
        c = len(self.class_names)
        boxes, scores, classes, owner = [], [], [], []
        for cls, track, box, *_ in self.annotations[f]:
            b = np.asarray(box, float) + rng.normal(0, self.jitter, 4)
            if rng.uniform() < self.miss:
                boxes += [b, b]
                scores += [rng.uniform(0.02, 0.25), rng.uniform(0.3, 0.6)]
                classes += [cls, (cls + 1 + rng.integers(c - 1)) % c]
                owner += [track, -1]
            else:
                boxes.append(b)
                scores.append(rng.uniform(0.55, 0.95))
                classes.append(cls)
                owner.append(track)
        h, w = self.size
        for _ in range(self.false_positives):
            xy = rng.uniform(0, [w - 20, h - 20])
            boxes.append(np.concatenate([xy, xy + rng.uniform(10, 30, 2)]))
            scores.append(rng.uniform(0.05, 0.55))
            classes.append(int(rng.integers(c)))
            owner.append(-1)
        out = ({"boxes": np.array(boxes).reshape(-1, 4), "scores": np.array(scores),
                "classes": np.array(classes, np.int64)}, np.array(owner))
        self._cache[f] = out
        return out

    def tracks(self, t, u):
        dets, owner = self.detections(t)
        gt_t = {track: np.asarray(box, float) for _, track, box, *_ in self.annotations[t]}
        gt_u = {track: np.asarray(box, float) for _, track, box, *_ in self.annotations[u]}
        rng = np.random.default_rng([self.seed, t, u, 1])
        moved = dets["boxes"].copy()
        for i, track in enumerate(owner):
            if track in gt_t and track in gt_u:
                moved[i] += gt_u[track] - gt_t[track] + rng.normal(0, 0.5, 4)
        return np.concatenate([dets["boxes"], moved], 1)

    def detect_pairs(self, images, frame_indices=None):
        d_t = [self.detections(t)[0] for t, _ in frame_indices]
        d_u = [self.detections(u)[0] for _, u in frame_indices]
        return d_t, d_u, [self.tracks(t, u) for t, u in frame_indices]
