"""Detect and track objects in a video with a D&T model: `python -m tfzoo.detect`.

    python -m tfzoo.detect --model_dir=DIR (or --saved_model=PATH) --video=IN.mp4 \\
        [--stride=1] [--online [--history=6|N|all]] --out=OUT.mp4 [--json=OUT.json]
        [--min_score=0.5]

The detector runs on every `stride`-th frame (tau), on pairs of consecutive processed frames
(both frames' detections and the tracklets between them), the detections are linked into tubes
and rescored (`tfzoo.detection.link_video`, thesis §8.4), and the video is written with every
box, class name, score and tube id drawn; the JSON lists, per frame, the boxes, classes, scores
and track ids. Two passes over the video (detect, then draw), so memory does not grow with its
length. See docs/detection.md ("Video detection") for the model contract; the runtime detector
(a Keras model or a SavedModel) is `tfzoo.detection.detector.Detector`.
"""

from __future__ import annotations

import colorsys
import json
import os
import sys

import numpy as np

from tfzoo.errors import TfzooError

# The runtime detector's names, also offered here; loaded on first use (they bring TensorFlow),
# so that `--help` and argument errors stay fast.
_DETECTOR_NAMES = ("DetectError", "Detector", "as_detector", "detect_clip_in_pairs",
                   "detect_frames")


def __getattr__(name):
    if name in _DETECTOR_NAMES:
        from tfzoo.detection import detector

        return getattr(detector, name)
    raise AttributeError(f"module 'tfzoo.detect' has no attribute {name!r}")

# --------------------------------------------------------------------------------------------
# The video loop
# --------------------------------------------------------------------------------------------

def detect_video(detector, video, *, stride: int = 1, online: bool = False,
                 history: int | None = None, batch_size: int = 4, progress: bool = True,
                 max_frames: int | None = None) -> dict:
    """Detects, tracks and links the objects of `video` (a path); returns
    `{"video", "num_frames", "fps", "stride", "online", "class_names", "frames"}` with
    `frames` as `tfzoo.detection.link_video` returns them.

    Processed frames are 0, stride, 2 stride, ...; they go through `detect_frames` in runs of
    `batch_size` (with a D&T model, each frame's network runs once). Raises DataError for an
    unreadable video.
    """
    from tfzoo.detection.detector import as_detector, detect_frames
    from tfzoo.detection.inference import link_video
    from tfzoo.video import iter_frames, video_info

    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    detector = as_detector(detector)
    total, fps, _, _ = video_info(video)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="frame", desc=os.path.basename(os.fspath(video)),
                   leave=False, file=sys.stderr)
    num_frames = 0

    def processed():
        nonlocal num_frames
        for f, frame in enumerate(iter_frames(video, short_side=None, max_frames=max_frames)):
            num_frames = f + 1
            if f % stride == 0:
                yield f, frame
            if bar is not None:
                bar.update(1)

    try:
        detections, tracks = detect_frames(detector, processed(), batch_size=batch_size)
    finally:
        if bar is not None:
            bar.close()
    frames = link_video(detections, tracks, stride=stride, num_frames=num_frames,
                        online=online, history=history)
    return {"video": os.fspath(video), "num_frames": num_frames, "fps": fps, "stride": stride,
            "online": online, "class_names": list(detector.class_names), "frames": frames}


# --------------------------------------------------------------------------------------------
# Output: JSON and the drawn video
# --------------------------------------------------------------------------------------------

def result_json(result: dict, min_score: float = 0.0) -> str:
    """The result as JSON: per frame its boxes (x1 y1 x2 y2), classes (index and name), scores
    and track ids, keeping the boxes with score >= min_score."""
    names = result["class_names"]
    frames = []
    for f, d in enumerate(result["frames"]):
        keep = d["scores"] >= min_score
        frames.append({
            "frame": f, "processed": bool(d["processed"]),
            "boxes": np.round(d["boxes"][keep], 2).tolist(),
            "classes": d["classes"][keep].tolist(),
            "class_names": [names[c] for c in d["classes"][keep].tolist()],
            "scores": np.round(d["scores"][keep], 5).tolist(),
            "track_ids": d["track_ids"][keep].tolist()})
    head = {k: result[k] for k in ("video", "num_frames", "fps", "stride", "online",
                                   "class_names")}
    return json.dumps({**head, "min_score": min_score, "frames": frames}) + "\n"


def _colour(track_id: int) -> tuple[int, int, int]:
    """A stable, distinct colour per id (golden-ratio hue steps); grey for no tube."""
    if track_id < 0:
        return (160, 160, 160)
    r, g, b = colorsys.hsv_to_rgb((track_id * 0.618033988749895) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_frame(frame: np.ndarray, detections: dict, class_names, min_score: float = 0.5):
    """`frame` (H, W, 3) uint8 with the boxes of score >= min_score drawn, each labelled
    "class score #id" in its tube's colour."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.ascontiguousarray(frame, np.uint8))
    draw = ImageDraw.Draw(img)
    order = np.argsort(detections["scores"])  # the best on top
    for i in order:
        s = float(detections["scores"][i])
        if s < min_score:
            continue
        x1, y1, x2, y2 = (float(v) for v in detections["boxes"][i])
        tid = int(detections["track_ids"][i])
        colour = _colour(tid)
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=2)
        label = f"{class_names[int(detections['classes'][i])]} {s:.2f}" + (
            f" #{tid}" if tid >= 0 else "")
        tx, ty = x1, max(y1 - 11, 0)
        left, top, right, bottom = draw.textbbox((tx, ty), label)
        draw.rectangle([left - 1, top - 1, right + 1, bottom + 1], fill=colour)
        draw.text((tx, ty), label, fill=(0, 0, 0))
    return np.asarray(img)


def write_video(result: dict, out, *, min_score: float = 0.5, progress: bool = True) -> None:
    """Draws `result` on its video (read again) into `out` (H.264 MP4, written to a temporary
    name and renamed, so `out` is complete or absent)."""
    from tfzoo.video import VideoWriter, iter_frames

    out = os.fspath(out)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    root, ext = os.path.splitext(out)
    tmp = f"{root}.tmp{os.getpid()}{ext or '.mp4'}"
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=result["num_frames"], unit="frame", desc="drawing", leave=False,
                   file=sys.stderr)
    try:
        with VideoWriter(tmp, fps=result["fps"] or 25.0) as w:
            for f, frame in enumerate(iter_frames(result["video"], short_side=None,
                                                  max_frames=result["num_frames"])):
                w.write(draw_frame(frame, result["frames"][f], result["class_names"],
                                   min_score))
                if bar is not None:
                    bar.update(1)
        os.replace(tmp, out)
    finally:
        if bar is not None:
            bar.close()
        if os.path.exists(tmp):
            os.remove(tmp)


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------

# The CLI's online history: the most processed frames whose linking stays <= 1 ms per frame
# for 30 classes x 25 boxes (0.92 ms; 8 frames: 1.03 ms), at 0.006 frame mAP below the full
# history on the noisy ground-truth oracle (docs/detection.md, Speed).
ONLINE_HISTORY = 6


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="tfzoo.detect", description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model_dir", help="a directory written by python -m tfzoo.train")
    src.add_argument("--saved_model", help="an exported D&T SavedModel directory")
    p.add_argument("--video", required=True, help="the input video")
    p.add_argument("--out", required=True, help="the output video (MP4) with the boxes drawn")
    p.add_argument("--json", help="also write the detections per frame as JSON")
    p.add_argument("--stride", type=int, default=1, help="run the detector on every "
                   "stride-th frame (tau); the frames between get interpolated tube boxes")
    p.add_argument("--online", action="store_true", help="causal linking: no frame's result "
                   "depends on later frames")
    p.add_argument("--history", default=None, help="with --online, the processed frames linked "
                   f"at each step, or 'all' (default {ONLINE_HISTORY}: links 30 classes x 25 "
                   "boxes in <= 1 ms per frame; docs/detection.md, Speed)")
    p.add_argument("--min_score", type=float, default=0.5, help="draw (and write to the "
                   "JSON) only boxes with this rescored score or more")
    p.add_argument("--batch_size", type=int, default=4, help="processed frames per forward "
                   "pass (as many frame pairs with an export that has only detect_track)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    from tfzoo.detection.detector import Detector
    from tfzoo.errors import report
    from tfzoo.rundir import atomic_write_text

    try:
        if a.stride < 1:
            raise ValueError(f"--stride={a.stride}: expected a positive number of frames")
        if a.batch_size < 1:
            raise ValueError(f"--batch_size={a.batch_size}: expected >= 1")
        history = ONLINE_HISTORY if a.history is None else a.history
        if a.history is not None and (not a.online or not (
                a.history == "all" or a.history.isdigit() and int(a.history) >= 1)):
            raise ValueError(f"--history={a.history}: expected a positive number of processed "
                             "frames or 'all', with --online (offline linking uses the whole "
                             "video)")
        history = None if history == "all" or not a.online else int(history)
        detector = Detector(a.saved_model or a.model_dir)
        result = detect_video(detector, a.video, stride=a.stride, online=a.online,
                              history=history, batch_size=a.batch_size,
                              progress=not a.no_progress)
        write_video(result, a.out, min_score=a.min_score, progress=not a.no_progress)
        if a.json:
            atomic_write_text(a.json, result_json(result, a.min_score))
    except (TfzooError, ValueError, OSError) as e:
        return report(e, "tfzoo.detect")
    n = sum(int((d["scores"] >= a.min_score).sum()) for d in result["frames"])
    ids = {int(t) for d in result["frames"] for t, s in zip(d["track_ids"], d["scores"])
           if t >= 0 and s >= a.min_score}
    print(f"{a.video}: {result['num_frames']} frames ({-(-result['num_frames'] // a.stride)} "
          f"processed), {n} boxes with score >= {a.min_score} in {len(ids)} tubes -> {a.out}"
          + (f", {a.json}" if a.json else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
