"""ImageNet VID detection mAP (thesis §8.5.1) with FGFA's motion-speed breakdown.

The protocol is the ILSVRC2015 devkit's `eval_vid_detection.m`:
- a ground-truth box of w x h pixels (w = x2 - x1 + 1) is found by a detection of its class
  with IoU >= min(0.5, w*h / ((w+10)*(h+10))) (small objects get a looser threshold);
- within a frame, detections are taken by decreasing score; each takes the not yet detected
  ground-truth box of its class with the largest IoU passing that box's threshold (true
  positive) or is a false positive;
- per class, all detections are sorted by score (ties keep frame order) and AP is the devkit's
  `VOCap`: the area under the precision-recall curve after making precision monotonically
  decreasing (the VOC2010+ "all points" integration, not the VOC2007 11-point one);
- mAP is the mean over classes that have ground truth.

Motion speed (Zhu et al., "Flow-Guided Feature Aggregation", ICCV 2017): the motion IoU of a
ground-truth box is the mean IoU with the boxes of the same track in the frames within +-10;
slow > 0.9, medium [0.7, 0.9], fast < 0.7. For a speed, the other objects are ignored: they
do not count as positives, and detections matching them are neither true nor false positives
(as FGFA's evaluation). Objects seen in no other frame of the window have no speed and count
only in the overall mAP.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from tfzoo.errors import TfzooError

SPEEDS = {"slow": (0.9, np.inf, False), "medium": (0.7, 0.9, True), "fast": (-np.inf, 0.7, False)}


def _iou(box, boxes):
    """IoU (inclusive pixels) of one box with (N, 4) boxes."""
    iw = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]) + 1
    ih = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]) + 1
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area = lambda b: (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def voc_ap(recall, precision) -> float:
    """The devkit's VOCap: area under the monotone precision envelope."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def _frame_key(frame_id):
    """(video, index) of a frame id: ints are frames of one video; tuples are (video, index)."""
    if isinstance(frame_id, tuple) and len(frame_id) == 2:
        return frame_id
    if isinstance(frame_id, (int, np.integer)):
        return (None, int(frame_id))
    raise TfzooError(f"frame id {frame_id!r}: expected an int or a (video_id, frame_index) tuple "
                     "(the motion IoU needs frame order)")


def motion_ious(annotations, window: int = 10) -> dict:
    """{(frame_id, object index): motion IoU} for every object with a track id (NaN if its
    track has no other box within `window` frames)."""
    tracks = defaultdict(list)  # (video, track) -> [(index, frame_id, obj, box)]
    for frame_id, objs in annotations.items():
        video, index = _frame_key(frame_id)
        for j, o in enumerate(objs):
            if len(o) > 5:
                tracks[(video, o[5])].append((index, frame_id, j, np.asarray(o[1:5], float)))
    out = {}
    for items in tracks.values():
        idx = np.array([t[0] for t in items])
        boxes = np.stack([t[3] for t in items])
        for index, frame_id, j, box in items:
            near = (np.abs(idx - index) <= window) & (idx != index)
            out[(frame_id, j)] = float(_iou(box, boxes[near]).mean()) if near.any() else np.nan
    return out


def _check(detections, annotations):
    if not isinstance(annotations, dict):
        raise TfzooError(f"annotations must be a dict frame_id -> list of (class_index, x1, y1, "
                         f"x2, y2[, track_id]), got {type(annotations).__name__}")
    for frame_id, objs in annotations.items():
        for o in objs:
            if len(o) not in (5, 6):
                raise TfzooError(f"annotation {o!r} of frame {frame_id!r}: expected (class_index, "
                                 "x1, y1, x2, y2[, track_id])")
    rows = []
    for d in detections:
        if len(d) != 7:
            raise TfzooError(f"detection {d!r}: expected (frame_id, class_index, score, x1, y1, "
                             "x2, y2)")
        rows.append((d[0], int(d[1]), float(d[2]), np.asarray(d[3:7], float)))
    return rows


def _accumulate(rows_by_frame, annotations, ignore):
    """Per-frame greedy matching -> per class lists of (score, order, tp) and positives."""
    scored = defaultdict(list)
    positives = defaultdict(int)
    order = 0
    for frame_id, objs in annotations.items():
        cls = np.array([int(o[0]) for o in objs], int)
        boxes = np.array([o[1:5] for o in objs], float).reshape(-1, 4)
        w = boxes[:, 2] - boxes[:, 0] + 1
        h = boxes[:, 3] - boxes[:, 1] + 1
        thr = np.minimum(0.5, w * h / ((w + 10) * (h + 10)))
        ign = np.array([ignore(frame_id, j) for j in range(len(objs))], bool)
        for c, i in zip(cls, ign):
            if not i:
                positives[c] += 1
        detected = np.zeros(len(objs), bool)
        dets = sorted(rows_by_frame.get(frame_id, ()), key=lambda r: -r[2])
        for _, c, score, box in dets:
            cand = (cls == c) & ~detected
            ov = np.full(len(objs), -np.inf)
            if cand.any():
                ov[cand] = _iou(box, boxes[cand])
            ov[ov < thr] = -np.inf
            k = int(np.argmax(ov)) if len(objs) else -1
            if k >= 0 and np.isfinite(ov[k]):
                detected[k] = True
                if ign[k]:
                    continue  # found an object outside the evaluated subset: not counted
                scored[c].append((score, order, 1))
            else:
                scored[c].append((score, order, 0))
            order += 1
    return scored, positives


def _ap_per_class(scored, positives):
    ap, recall = {}, {}
    for c in sorted(positives):
        if positives[c] == 0:
            continue
        items = sorted(scored.get(c, []), key=lambda s: (-s[0], s[1]))
        tp = np.array([s[2] for s in items], float)
        ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
        rec = ctp / positives[c]
        prec = ctp / np.maximum(ctp + cfp, 1e-12)
        ap[c] = voc_ap(rec, prec)
        recall[c] = float(rec[-1]) if len(rec) else 0.0
    return ap, recall


def evaluate_vid(detections, annotations, *, motion_window: int = 10,
                 subsets: dict | None = None, motion_annotations: dict | None = None) -> dict:
    """ImageNet VID mAP of `detections` on `annotations` (see the module docstring).

    Args:
      detections: rows `(frame_id, class_index, score, x1, y1, x2, y2)` (pixels, inclusive).
      annotations: `{frame_id: [(class_index, x1, y1, x2, y2[, track_id]), ...]}`; every
        evaluated frame must be a key (an empty list for a frame without objects). Frame ids
        are ints (one video) or `(video_id, frame_index)` tuples; the latter are needed for the
        motion breakdown of several videos.
      motion_window: frames on each side for the motion IoU (FGFA: 10).
      motion_annotations: the annotations the motion IoUs are measured on (default:
        `annotations`); evaluating every tau-th frame, pass all frames', so that an object's
        speed is still that of its track in the frames around it (same frame ids).
      subsets: `{name: {(frame_id, object_index), ...}}`, e.g. the occluded objects: each
        gets "mAP_<name>", "AP_<name>" and "num_gt_<name>", scored as the motion speeds are
        (the objects outside the subset are ignored). An empty subset's mAP is NaN.

    Returns:
      {"mAP", "AP": {class: AP}, "recall": {class: recall at the last detection},
       "num_gt": {class: n}, "ignored_detections": detections on frames not in
       `annotations` (dropped, as the devkit does)}, and, when track ids are given,
      "mAP_slow", "mAP_medium", "mAP_fast" with "AP_slow", ... per class and "num_gt_slow", ...
      (and the same for each of `subsets`).

    Example:
    >>> ann = {0: [(0, 10, 10, 59, 59)], 1: [(0, 12, 10, 61, 59)]}
    >>> dets = [(0, 0, 0.9, 10, 10, 59, 59), (1, 0, 0.8, 100, 100, 140, 140)]
    >>> evaluate_vid(dets, ann)["mAP"]
    0.5
    """
    rows = _check(detections, annotations)
    by_frame = defaultdict(list)
    outside = 0
    for r in rows:
        if r[0] in annotations:
            by_frame[r[0]].append(r)
        else:
            outside += 1
    scored, positives = _accumulate(by_frame, annotations, lambda f, j: False)
    ap, recall = _ap_per_class(scored, positives)
    result = {"mAP": float(np.mean(list(ap.values()))) if ap else 0.0, "AP": ap,
              "recall": recall, "num_gt": dict(sorted(positives.items())),
              "ignored_detections": outside}
    ignored = {}  # breakdown name -> ignore(frame_id, object_index)
    if any(len(o) > 5 for objs in annotations.values() for o in objs):
        miou = motion_ious(annotations if motion_annotations is None else motion_annotations,
                           motion_window)
        for name, (lo, hi, closed) in SPEEDS.items():
            def outside_speed(f, j, lo=lo, hi=hi, closed=closed):
                m = miou.get((f, j), np.nan)
                if np.isnan(m):
                    return True
                return not ((lo <= m <= hi) if closed else (lo < m < hi))
            ignored[name] = outside_speed
    for name, keys in (subsets or {}).items():
        if name in SPEEDS or name in ignored:
            raise TfzooError(f"subset name {name!r} is taken by a motion speed; pick another")
        ignored[name] = lambda f, j, keys=frozenset(keys): (f, j) not in keys
    for name, outside in ignored.items():
        s, p = _accumulate(by_frame, annotations, outside)
        sap, _ = _ap_per_class(s, p)
        result[f"mAP_{name}"] = float(np.mean(list(sap.values()))) if sap else float("nan")
        result[f"AP_{name}"] = sap
        result[f"num_gt_{name}"] = {c: n for c, n in sorted(p.items()) if n}
    return result


def track_consistency(detections, annotations, *, iou_threshold: float = 0.5) -> dict:
    """How well tube ids follow the ground-truth tracks: the fraction of tracks that keep one
    tube id from their first to their last annotated frame.

    Definition: in each frame where a ground-truth track (video, track id) has a box, the
    detection that *follows* it is the highest-scoring detection of its class with IoU >=
    `iou_threshold` with that box (inclusive pixels). A track is **consistent** when in every
    one of its annotated frames it is followed by a detection in a tube (id >= 0), always the
    same id. Otherwise it is either *lost* (some frame has no such detection, or it is in no
    tube) or *switched* (followed everywhere, by two or more ids). Only tracks with two or more
    scored frames count: one frame cannot show an id held (with a temporal stride, a short
    track may have one processed frame); they are counted apart.

    Args:
      detections: rows `(frame_id, class_index, score, x1, y1, x2, y2, tube_id)` (-1: in no
        tube), e.g. `link_video`'s boxes with their `track_ids`.
      annotations: `evaluate_vid`'s, with track ids; only the frames given are looked at
        (with a temporal stride: the processed frames).

    Returns:
      {"track_consistency": consistent / tracks (None without tracks), "num_tracks" (those
       with two or more scored frames), "num_consistent", "num_switched", "num_lost",
       "num_single_frame" (tracks with one scored frame, not in the others)}.

    Example:
    >>> ann = {("v", 0): [(0, 0, 0, 9, 9, 7)], ("v", 1): [(0, 2, 0, 11, 9, 7)]}
    >>> dets = [(("v", 0), 0, 0.9, 0, 0, 9, 9, 3), (("v", 1), 0, 0.8, 2, 0, 11, 9, 3),
    ...         (("v", 1), 0, 0.5, 3, 0, 12, 9, 4)]
    >>> track_consistency(dets, ann)["track_consistency"]
    1.0
    """
    by_frame = defaultdict(list)
    for d in detections:
        if len(d) != 8:
            raise TfzooError(f"detection {d!r}: expected (frame_id, class_index, score, x1, y1, "
                             "x2, y2, tube_id)")
        by_frame[d[0]].append(d)
    followed = defaultdict(list)  # (video, track) -> tube id per annotated frame (-1: lost)
    for frame_id, objs in annotations.items():
        video, _ = _frame_key(frame_id)
        rows = by_frame.get(frame_id, [])
        cls = np.array([int(r[1]) for r in rows], int)
        scores = np.array([float(r[2]) for r in rows])
        boxes = np.array([r[3:7] for r in rows], float).reshape(-1, 4)
        tubes = np.array([int(r[7]) for r in rows], int)
        for o in objs:
            if len(o) < 6 or o[5] < 0:
                continue  # no track id: not part of any track
            ok = cls == int(o[0])
            if ok.any():
                ok[ok] = _iou(np.asarray(o[1:5], float), boxes[ok]) >= iou_threshold
            tube = int(tubes[np.argmax(np.where(ok, scores, -np.inf))]) if ok.any() else -1
            followed[(video, o[5])].append(tube)
    consistent = switched = lost = single = 0
    for ids in followed.values():
        if len(ids) < 2:  # one scored frame cannot show an id held (or switched)
            single += 1
        elif min(ids) < 0:
            lost += 1
        elif len(set(ids)) == 1:
            consistent += 1
        else:
            switched += 1
    n = len(followed) - single
    return {"track_consistency": consistent / n if n else None, "num_tracks": n,
            "num_consistent": consistent, "num_switched": switched, "num_lost": lost,
            "num_single_frame": single}
