"""Video detection with D&T (thesis §8.4, §8.5.2): from per-frame detections and tracklets to
linked, rescored detections with tube ids on every frame of a video, independent of the model.

The detector runs on every `stride`-th frame (tau in the thesis): processed frame k is video
frame k * stride, and a tracklet set links processed frames k and k+1. `link_video` links the
processed frames' detections into tubes (`link_tubes`), rescores them, gives every box of a tube
the tube's id, and fills the frames in between:

- offline (`online=False`): a frame between processed frames k and k+1 gets every tube's box
  interpolated linearly between its boxes at k and k+1 (coordinates and rescored score); a
  tube without a box at k or at k+1 (its class has none there: the tube passes over a gap) has
  no box in between, so nothing is interpolated across a gap longer than the stride; boxes in
  no tube stay on their processed frame only. Frames after the last processed frame hold its tube boxes. The thesis evaluates
  tau = 10 on the processed frames only; `interpolate=False` gives that (empty frames between).
- online (`online=True`): causal. Scores are the online `link_tubes` ones (frame t rescored
  from the tubes of frames [t - history + 1, t]); tube ids follow those windows' tubes: a box
  at t takes the id of its window tube's previous box (at t-1, or before a gap of its class),
  or a new id. A frame
  between processed frames k and k+1 holds frame k's boxes (interpolating would need k+1, up to
  stride - 1 frames in the future).
"""

from __future__ import annotations

import numpy as np

from tfzoo.detection.linking import _check, _link
from tfzoo.errors import TfzooError


def _ids_offline(tubes, sizes):
    ids = [np.full(n, -1, np.int64) for n in sizes]
    for q, tube in enumerate(tubes):
        for t, i in enumerate(tube["indices"]):
            if i >= 0:  # -1: the tube passes over a frame without a box of its class
                ids[t][i] = q
    return ids


def _ids_online(links, sizes, history):
    """Causal ids: a box of a window tube continues the id of the tube's previous box (at t-1,
    or before a gap of its class), else gets a new one; a one-frame window (t = 0, or history
    1) makes every box a tube of its own."""
    ids = [np.full(n, -1, np.int64) for n in sizes]
    next_id = 0
    for t, n in enumerate(sizes):
        lo = 0 if history is None else max(0, t - history + 1)
        if t == lo:
            ids[t][:] = np.arange(next_id, next_id + n)
            next_id += n
            continue
        for frame, prev, cur in links[t].tolist():
            if frame >= 0 and ids[frame][prev] >= 0:
                ids[t][cur] = ids[frame][prev]
            else:
                ids[t][cur] = next_id
                next_id += 1
    return ids


def link_video(detections, tracks, *, stride: int = 1, num_frames: int | None = None,
               online: bool = False, alpha: float = 0.5, iou_threshold: float = 0.5,
               history: int | None = None, interpolate: bool = True,
               num_classes: int | None = None) -> list[dict]:
    """Links per-processed-frame detections into tubes and returns every video frame's boxes.

    Args:
      detections: per processed frame k (video frame k * stride), `{"boxes": (N, 4) x1 y1 x2
        y2, "scores": (N,), "classes": (N,)}` after per-class NMS (D&T: with box voting, at
        most 25 boxes per class).
      tracks: per pair of processed frames (k, k+1), (M, 8): a box at k and its tracked box at
        k+1 (the RoI tracking output on frame k's detections).
      stride: video frames per processed frame (tau).
      num_frames: video frames to return (default: up to the last processed frame).
      online, alpha, iou_threshold, history: as `link_tubes`; see the module docstring for
        what online changes here.
      interpolate: offline, fill the frames between processed frames (else they are empty).
      num_classes: the model's number of classes (class ids are checked against it).

    Returns:
      per video frame, `{"boxes" (N, 4), "scores" (N,) (rescored: up to 2), "probabilities"
      (N,) (the detector's own scores, what a person reads), "classes" (N,) int, "track_ids"
      (N,) int (-1: in no tube), "processed": bool}`; interpolated boxes get both scores
      interpolated.

    Example:
    >>> import numpy as np
    >>> dets = [{"boxes": np.array([[0., 0, 9, 9]]), "scores": np.array([0.8]),
    ...          "classes": np.array([2])},
    ...         {"boxes": np.array([[10., 0, 19, 9]]), "scores": np.array([0.4]),
    ...          "classes": np.array([2])}]
    >>> tracks = [np.array([[0., 0, 9, 9, 10, 0, 19, 9]])]
    >>> frames = link_video(dets, tracks, stride=2)
    >>> frames[1]["boxes"].tolist(), frames[1]["track_ids"].tolist()  # halfway
    ([[5.0, 0.0, 14.0, 9.0]], [0])
    >>> [round(float(f["scores"][0]), 2) for f in frames]  # + mean of the top 50% (0.8)
    [1.6, 1.4, 1.2]
    """
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise TfzooError(f"stride must be a positive integer, got {stride!r}")
    dets, _ = _check(detections, tracks)
    processed = len(dets)
    last = (processed - 1) * stride
    if num_frames is None:
        num_frames = last + 1
    if num_frames < 1:
        raise TfzooError(f"num_frames must be >= 1, got {num_frames}")
    rescored, tubes, links = _link(detections, tracks, alpha, iou_threshold, online, history,
                                   num_classes)
    sizes = [len(s) for s in rescored]
    ids = _ids_online(links, sizes, history) if online else _ids_offline(tubes, sizes)
    frames = []
    for k, (boxes, scores, classes) in enumerate(dets):
        frames.append({"boxes": boxes, "scores": rescored[k], "probabilities": scores,
                       "classes": classes, "track_ids": ids[k], "processed": True})
    empty = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "probabilities": np.zeros(0),
             "classes": np.zeros(0, np.int64), "track_ids": np.zeros(0, np.int64),
             "processed": False}
    out = []
    for f in range(num_frames):
        k, r = divmod(f, stride)
        if r == 0 and k < processed:
            out.append(frames[k])
        elif k >= processed - 1:  # past the last processed frame: hold its (tube) boxes
            held = frames[-1]
            keep = held["track_ids"] >= 0 if not online else slice(None)
            out.append({n: (v[keep] if n != "processed" else False) for n, v in held.items()})
        elif online:
            out.append({**frames[k], "processed": False})
        elif not interpolate:
            out.append(dict(empty))
        else:
            out.append(_between(frames[k], frames[k + 1], r / stride))
    return out


def _between(a, b, w):
    """Tube boxes at fraction w of the way from processed frame a to b (same tube ids)."""
    ia, ib = a["track_ids"], b["track_ids"]
    common = np.intersect1d(ia[ia >= 0], ib[ib >= 0])
    pa, pb = _positions(ia, common), _positions(ib, common)
    return {"boxes": (1 - w) * a["boxes"][pa] + w * b["boxes"][pb],
            "scores": (1 - w) * a["scores"][pa] + w * b["scores"][pb],
            "probabilities": (1 - w) * a["probabilities"][pa] + w * b["probabilities"][pb],
            "classes": a["classes"][pa], "track_ids": common.astype(np.int64),
            "processed": False}


def _positions(ids, wanted):
    """Index in `ids` (unique where >= 0) of each of `wanted`."""
    order = np.argsort(ids, kind="stable")
    return order[np.searchsorted(ids[order], wanted)]


def evaluation_rows(frames, frame_ids=None, *, track_ids: bool = False) -> list[tuple]:
    """`evaluate_vid` detection rows `(frame_id, class, score, x1, y1, x2, y2)` of `link_video`
    frames, or of any per-frame `{"boxes", "scores", "classes"}` (frame ids: the frame indices,
    or `frame_ids[f]`); `track_ids=True` appends each box's tube id, the rows
    `tfzoo.detection.track_consistency` reads."""
    rows = []
    for f, d in enumerate(frames):
        fid = f if frame_ids is None else frame_ids[f]
        ids = d["track_ids"] if track_ids else [None] * len(d["boxes"])
        for box, s, c, k in zip(d["boxes"], d["scores"], d["classes"], ids):
            row = (fid, int(c), float(s), *map(float, box))
            rows.append(row + (int(k),) if track_ids else row)
    return rows
