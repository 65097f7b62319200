"""The runtime D&T detector: a Keras model, a model directory or an exported SavedModel behind
one adapter (`Detector`), and the loop that runs it over a sequence of frames
(`detect_frames`). `python -m tfzoo.detect` (a video in, boxes drawn out) and D&T's linked
evaluation (`tfzoo.tasks.detection.evaluate_linked`) both use it.
"""

from __future__ import annotations

import numpy as np

from tfzoo.detection.boxes import decode_boxes
from tfzoo.errors import DetectError, TfzooError
from tfzoo.runnable import RunnableError, load_runnable


def _frame_detections(boxes, scores, classes, num):
    return {"boxes": np.asarray(boxes[:num], np.float64).reshape(-1, 4),
            "scores": np.asarray(scores[:num], np.float64).reshape(-1),
            "classes": np.asarray(classes[:num]).astype(np.int64).reshape(-1)}


def _tracks(boxes_t, track_boxes, num):
    """(M, 8) tracklets: each frame-t detection box and its tracked box at t+tau."""
    return np.concatenate([np.asarray(boxes_t[:num], np.float64).reshape(-1, 4),
                           np.asarray(track_boxes[:num], np.float64).reshape(-1, 4)], 1)


class Detector:
    """The one adapter between a D&T model and the video loop.

    `detect_clip(frames, frame_indices, previous=None)` with frames (T, H, W, 3) uint8, a run of
    consecutive processed frames, returns `(detections, tracks, state)`: the T frames'
    detections (`{"boxes", "scores", "classes"}`, boxes x1 y1 x2 y2 in input pixels, classes
    in [0, C)), the tracklets (M, 8) of each frame's detections to the next frame, and the
    state to pass as `previous` with the video's next frames (the tracks then start at the
    last frame of this call). `detect_pairs(images)` with images (B, 2, H, W, 3) uint8 (pairs
    t, t+tau) returns `(dets_t, dets_tau, tracks)` per pair. `class_names` lists the C
    classes.

    `model` is anything `tfzoo.runnable.load_runnable` takes (its `tracker()` is the contract):
    - a SavedModel (a path, or loaded with `tf.saved_model.load`) with the D&T signatures (see
      docs/detection.md): `detect_track_clip` on (B, T, H, W, 3) uint8 clips returning
      `detection_boxes` (B, T, M, 4), `detection_scores`, `detection_classes` (B, T, M),
      `num_detections` (B, T) and `tracklets` (B, T - 1, P, 8) with `num_tracklets`
      (B, T - 1) (every confident proposal's box at t and at t + 1, the authors'
      test_track_reg); an export from before them gives `track_boxes` (B, T - 1, M, 4) (or
      `track_deltas` in `encode_boxes` units, decoded here), the detections' tracks; used
      for clips (each frame once, plus the carried
      frame of `previous` again: (T + 1) / T network passes a frame); and `detect_track`, the
      same on (B, 2, H, W, 3) pairs with `track_boxes` (B, M, 4), used for pairs, and for
      clips when the export has no `detect_track_clip` (two passes a frame); class names
      from its `class_names` signature or attribute, or `class_names=`;
    - a model directory of `python -m tfzoo.train` (run.json + model.keras) or a Keras model
      with `detect_track_clip` and `detect_track` (the `DetectTrack` model): the previous
      frame's maps are carried, one network pass a frame.
    `route` reports which: "model" (maps carried), "clip" (the clip signature) or "pairs".
    Any object with `detect_pairs` and `class_names` (e.g. a test oracle) is used as is by
    `as_detector` (`detect_clip_in_pairs` makes its clips).
    """

    def __init__(self, model, class_names=None):
        try:
            self.runnable = load_runnable(model)
            self._tracker = self.runnable.tracker()
        except RunnableError as e:
            raise DetectError(str(e)) from None
        self.source = self.runnable.source
        class_names = class_names if class_names is not None else self._tracker.class_names
        if class_names is None:
            raise DetectError(f"{self.source}: no class names (pass class_names=, or export "
                              "them with the model)")
        self.class_names = [str(c) for c in class_names]

    @property
    def route(self) -> str:
        if self._tracker.maps_carried:
            return "model"
        return "pairs" if self._tracker.clip is None else "clip"

    def _outputs(self, out, name, first):
        """The outputs checked, with `track_boxes` decoded from `track_deltas` if needed
        (`first`: the tracked frames' boxes)."""
        for key in ("detection_boxes", "detection_scores", "detection_classes",
                    "num_detections"):
            if key not in out:
                raise DetectError(f"{self.source}: {name} returned {sorted(out)}, "
                                  f"without {key!r}")
        if "track_boxes" not in out and "tracklets" not in out:
            if "track_deltas" not in out:
                raise DetectError(f"{self.source}: {name} returned neither track_boxes "
                                  "nor track_deltas")
            boxes = first(out["detection_boxes"])
            out["track_boxes"] = np.reshape(
                decode_boxes(boxes.reshape(-1, 4), out["track_deltas"].reshape(-1, 4)).numpy(),
                boxes.shape)
        return out

    def detect_pairs(self, images, frame_indices=None):
        out = self._outputs(self._tracker.pairs(np.asarray(images, np.uint8)), "detect_track",
                            lambda boxes: boxes[:, 0])
        dets_t, dets_tau, tracks = [], [], []
        for b in range(len(out["detection_boxes"])):
            n_t, n_tau = (int(v) for v in out["num_detections"][b])
            dets_t.append(_frame_detections(out["detection_boxes"][b, 0],
                                            out["detection_scores"][b, 0],
                                            out["detection_classes"][b, 0], n_t))
            dets_tau.append(_frame_detections(out["detection_boxes"][b, 1],
                                              out["detection_scores"][b, 1],
                                              out["detection_classes"][b, 1], n_tau))
            if "tracklets" in out:  # every confident proposal's tracklet (test_track_reg)
                tracks.append(out["tracklets"][b, :int(out["num_tracklets"][b])].astype(
                    np.float64))
            else:  # an export from before them: the detections' tracks
                tracks.append(_tracks(out["detection_boxes"][b, 0], out["track_boxes"][b], n_t))
        return dets_t, dets_tau, tracks

    def detect_clip(self, frames, frame_indices=None, previous=None):
        """`(detections, tracks, state)` of a run of consecutive processed frames (T, H, W, 3)
        (see the class); `frame_indices` only matter to a pair source's oracle."""
        frames = np.asarray(frames, np.uint8)
        if frames.ndim != 4 or not len(frames):
            raise TfzooError(f"a clip is frames (T, H, W, 3) with T >= 1; got {frames.shape}")
        if self._tracker.clip is None:
            return detect_clip_in_pairs(self, frames, frame_indices, previous)
        out, carried, state = self._tracker.clip(frames, previous)
        out = self._outputs(out, "detect_track_clip", lambda boxes: boxes[:, :-1])
        return (*_clip_results(out, len(frames), carried), state)


def _clip_results(out, new, carried=()):
    """`(detections, tracks)` of one clip's outputs (batch of 1): the detections of its last
    `new` frames, and the tracklets of each tracked frame (the `carried` (boxes, counts) first,
    then the clip's frames) to the next."""
    boxes, counts = out["detection_boxes"][0], out["num_detections"][0]
    if carried:
        boxes = np.concatenate([carried[0][0], boxes])
        counts = np.concatenate([carried[0][1], counts])
    t0 = len(out["detection_boxes"][0]) - new
    dets = [_frame_detections(out["detection_boxes"][0, t], out["detection_scores"][0, t],
                              out["detection_classes"][0, t], out["num_detections"][0, t])
            for t in range(t0, t0 + new)]
    if "tracklets" in out:  # every confident proposal's tracklet (test_track_reg)
        tracks = [out["tracklets"][0, t, :int(out["num_tracklets"][0, t])].astype(np.float64)
                  for t in range(len(out["tracklets"][0]))]
    else:  # an export from before them: the detections' tracks
        tracks = [_tracks(boxes[t], out["track_boxes"][0, t], counts[t])
                  for t in range(len(out["track_boxes"][0]))]
    return dets, tracks


def detect_clip_in_pairs(detector, frames, frame_indices=None, previous=None):
    """`Detector.detect_clip` through `detector.detect_pairs` (an export with only the
    `detect_track` pair signature, a test oracle): the pairs (k, k + 1) of the previous call's
    last frame and `frames` (two network passes a frame); a lone first frame is paired with
    itself. `previous` and the returned state are (frame index, frame)."""
    index = list(range(len(frames))) if frame_indices is None else list(frame_indices)
    frames = list(frames)
    if previous is not None:
        index, frames = [previous[0], *index], [previous[1], *frames]
    pairs = list(zip(range(len(frames) - 1), range(1, len(frames)))) or [(0, 0)]
    d_t, d_tau, tracks = detector.detect_pairs(
        np.stack([np.stack([frames[a], frames[b]]) for a, b in pairs]),
        frame_indices=[(index[a], index[b]) for a, b in pairs])
    if len(frames) == 1:
        dets, tracks = d_t, []
    else:  # each frame's detections from its pair as frame t, the last one's as t+tau
        dets = [*d_t, d_tau[-1]]
    return dets[1:] if previous is not None else dets, tracks, (index[-1], frames[-1])


def as_detector(model, class_names=None):
    """`model` if it already offers `detect_pairs` and `class_names`, else a `Detector`."""
    if hasattr(model, "detect_pairs") and hasattr(model, "class_names"):
        return model
    return Detector(model, class_names)


def detect_frames(detector, frames, *, batch_size: int = 4):
    """Detections and tracklets of a sequence of processed frames: `frames` yields
    `(frame index, frame (H, W, 3) uint8)` in order; returns `(detections, tracks)` as
    `tfzoo.detection.link_video` takes them (one tracklet set per consecutive pair).

    The frames go through `detector.detect_clip` in runs of `batch_size`, each run continuing
    the previous one (so the tracks join the runs): with a D&T model each frame's network runs
    once (`Detector`). A detector with only `detect_pairs` gets pairs of consecutive frames
    (`detect_clip_in_pairs`). One frame alone gets its detections and no tracks.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise TfzooError(f"batch_size must be a positive integer, got {batch_size!r}")
    detector = as_detector(detector)
    clip = getattr(detector, "detect_clip", None) or (
        lambda *args: detect_clip_in_pairs(detector, *args))
    detections, tracks, pending, state = [], [], [], None

    def flush():
        nonlocal state
        dets, trk, state = clip(np.stack([f for _, f in pending]), [i for i, _ in pending],
                                state)
        detections.extend(dets)
        tracks.extend(trk)
        pending.clear()

    for item in frames:
        pending.append(item)
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    return detections, tracks
