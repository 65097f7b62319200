"""Detect and track objects in a video with a D&T model: `python -m tfzoo.detect`.

    python -m tfzoo.detect --model_dir=DIR (or --saved_model=PATH) --video=IN.mp4 \\
        [--stride=1] [--online [--history=6|N|all]] --out=OUT.mp4 [--json=OUT.json]
        [--min_score=0.5]

The detector runs on every `stride`-th frame (tau), on pairs of consecutive processed frames
(both frames' detections and the tracklets between them), the detections are linked into tubes
and rescored (`tfzoo.detection.link_video`, thesis §8.4), and the video is written with every
box drawn with its class name, the detector's probability and its tube id; the JSON lists, per
frame, the boxes, classes, scores (rescored), probabilities and track ids, and each tube's
frames. Two passes over the video (detect, then draw), so memory does not grow with its
length. See docs/detection.md ("Video detection") for the model contract; the runtime detector
(a Keras model or a SavedModel) is `tfzoo.detection.detector.Detector`.
"""

from __future__ import annotations

import colorsys
import json
import os
import sys

import numpy as np
from absl import flags
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from tfzoo.errors import DetectError, TfzooError, report
from tfzoo.rundir import atomic_write_text
from tfzoo.video import VideoWriter, iter_frames, video_info


# The runtime detector's names, also offered here; loaded on first use (they bring TensorFlow),
# so that `--help` and argument errors stay fast.
_DETECTOR_NAMES = ("DetectError", "Detector", "as_detector", "detect_clip_in_pairs",
                   "detect_frames")


def __getattr__(name):
    if name in _DETECTOR_NAMES:
        from tfzoo.detection import detector  # deferred: loads TensorFlow

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
    from tfzoo.detection.detector import as_detector, detect_frames  # deferred: loads TensorFlow
    from tfzoo.detection.inference import link_video  # deferred: loads TensorFlow

    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise DetectError(f"stride must be a positive integer, got {stride!r}")
    detector = as_detector(detector)
    total, fps, _, _ = video_info(video)
    bar = None
    if progress:
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
                        online=online, history=history,
                        num_classes=len(detector.class_names))
    return {"video": os.fspath(video), "num_frames": num_frames, "fps": fps, "stride": stride,
            "online": online, "class_names": list(detector.class_names), "frames": frames}


# --------------------------------------------------------------------------------------------
# Output: JSON and the drawn video
# --------------------------------------------------------------------------------------------

def result_json(result: dict, min_score: float = 0.0) -> str:
    """The result as JSON: per frame its boxes (x1 y1 x2 y2), classes (index and name), scores
    (rescored by linking: a box in a good tube gains up to 1), probabilities (the detector's)
    and track ids, keeping the boxes with score >= min_score; and per tube (`tubes`) its id,
    class and the frames where it has a box (whatever their score: a tube passes over the
    frames where its class has no box, and is interpolated between processed frames only
    where it has a box on both sides)."""
    names = result["class_names"]
    frames = []
    tubes = {}
    for f, d in enumerate(result["frames"]):
        keep = d["scores"] >= min_score
        probs = d.get("probabilities", d["scores"])
        frames.append({
            "frame": f, "processed": bool(d["processed"]),
            "boxes": np.round(d["boxes"][keep], 2).tolist(),
            "classes": d["classes"][keep].tolist(),
            "class_names": [names[c] for c in d["classes"][keep].tolist()],
            "scores": np.round(d["scores"][keep], 5).tolist(),
            "probabilities": np.round(probs[keep], 5).tolist(),
            "track_ids": d["track_ids"][keep].tolist()})
        for tid, c in zip(d["track_ids"].tolist(), d["classes"].tolist()):
            if tid >= 0:
                tubes.setdefault(tid, {"id": tid, "class": c, "class_name": names[c],
                                       "frames": []})["frames"].append(f)
    head = {k: result[k] for k in ("video", "num_frames", "fps", "stride", "online",
                                   "class_names")}
    return json.dumps({**head, "min_score": min_score, "frames": frames,
                       "tubes": [tubes[k] for k in sorted(tubes)]}) + "\n"


def _colour(track_id: int) -> tuple[int, int, int]:
    """A stable, distinct colour per id (golden-ratio hue steps); grey for no tube."""
    if track_id < 0:
        return (160, 160, 160)
    r, g, b = colorsys.hsv_to_rgb((track_id * 0.618033988749895) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def label_text(class_name: str, probability: float, track_id: int) -> str:
    """A box's label: class, the detector's probability (not the rescored score, which goes
    up to 2) and the tube id."""
    return f"{class_name} {probability:.2f}" + (f" #{track_id}" if track_id >= 0 else "")


def label_size(height: int, width: int) -> tuple[int, int]:
    """(font size, box line width) in pixels for a frame: the text height is 1/40 of the
    shorter side (8 px at 240p, 27 px at 1080p), so labels stay readable on large frames
    and small on small ones."""
    side = min(height, width)
    return int(np.clip(round(side / 40), 8, 48)), max(1, round(side / 320))


def label_place(box, text_width: int, text_height: int, height: int, width: int):
    """Top-left corner of a label of text_width x text_height px for `box` (x1 y1 x2 y2) on a
    height x width frame: above the box where it fits, else below it, else inside its top
    edge (only a box spanning the frame's height), so it covers no small object; moved left
    to stay in the frame rather than cut off on the right."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if y1 - text_height >= 0:
        y = y1 - text_height
    elif y2 + 1 + text_height <= height:
        y = y2 + 1
    else:
        y = max(y1, 0.0)
    x = max(min(x1, width - text_width), 0.0)
    return int(round(x)), int(round(y))


def draw_frame(frame: np.ndarray, detections: dict, class_names, min_score: float = 0.5):
    """`frame` (H, W, 3) uint8 with the boxes of (rescored) score >= min_score drawn in their
    tube's colour, each labelled "class probability #id" (`label_text`) in a font sized to
    the frame (`label_size`), above the box when it fits (`label_place`)."""
    img = Image.fromarray(np.ascontiguousarray(frame, np.uint8))
    draw = ImageDraw.Draw(img)
    size, line = label_size(img.height, img.width)
    font = ImageFont.load_default(size=size)
    probs = detections.get("probabilities", detections["scores"])
    order = np.argsort(detections["scores"])  # the best on top
    for i in order:
        if float(detections["scores"][i]) < min_score:
            continue
        x1, y1, x2, y2 = (float(v) for v in detections["boxes"][i])
        tid = int(detections["track_ids"][i])
        colour = _colour(tid)
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=line)
        label = label_text(class_names[int(detections["classes"][i])], float(probs[i]), tid)
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        pad = max(1, size // 8)
        w, h = right - left + 2 * pad, bottom - top + 2 * pad
        x, y = label_place((x1, y1, x2, y2), w, h, img.height, img.width)
        draw.rectangle([x, y, x + w - 1, y + h - 1], fill=colour)
        draw.text((x + pad - left, y + pad - top), label, fill=(0, 0, 0), font=font)
    return np.asarray(img)


def write_video(result: dict, out, *, min_score: float = 0.5, progress: bool = True) -> None:
    """Draws `result` on its video (read again) into `out` (H.264 MP4, written to a temporary
    name and renamed, so `out` is complete or absent)."""
    out = os.fspath(out)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    root, ext = os.path.splitext(out)
    tmp = f"{root}.tmp{os.getpid()}{ext or '.mp4'}"
    bar = None
    if progress:
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


def _define_flags():
    """The CLI's flags, in their own FlagValues: `main(argv)` is also called in-process (tests,
    scripts), where other programs' flags may already be defined in absl's global FLAGS."""
    fv = flags.FlagValues()
    flags.DEFINE_string("model_dir", None, "A directory written by python -m tfzoo.train.",
                        flag_values=fv)
    flags.DEFINE_string("saved_model", None, "An exported D&T SavedModel directory.",
                        flag_values=fv)
    flags.DEFINE_string("video", None, "The input video.", flag_values=fv)
    flags.DEFINE_string("out", None, "The output video (MP4) with the boxes drawn.",
                        flag_values=fv)
    flags.DEFINE_string("json", None, "Also write the detections per frame (and the tubes' "
                        "frames) as JSON.", flag_values=fv)
    flags.DEFINE_integer("stride", 1, "Run the detector on every stride-th frame (tau); the "
                         "frames between get interpolated tube boxes.", flag_values=fv)
    flags.DEFINE_bool("online", False, "Causal linking: no frame's result depends on later "
                      "frames.", flag_values=fv)
    flags.DEFINE_string("history", None, "With --online, the processed frames linked at each "
                        f"step, or 'all' (default {ONLINE_HISTORY}: links 30 classes x 25 boxes "
                        "in <= 1 ms per frame; docs/detection.md, Speed).", flag_values=fv)
    flags.DEFINE_float("min_score", 0.5, "Draw (and write to the JSON) only boxes with this "
                       "rescored score or more (linking adds up to 1 to a box in a good tube; "
                       "the label shows the detector's probability).", flag_values=fv)
    flags.DEFINE_integer("batch_size", 4, "Processed frames per forward pass (as many frame "
                         "pairs with an export that has only detect_track).", flag_values=fv)
    flags.DEFINE_bool("no_progress", False, "No progress bar.", flag_values=fv)
    return fv


def main(argv=None) -> int:
    """`python -m tfzoo.detect ARGS`; `argv` the arguments without the program name (None:
    sys.argv's). Returns the exit code (2 and one line on stderr for a user mistake)."""
    from tfzoo.detection.detector import Detector  # deferred: loads TensorFlow

    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    fv = _define_flags()
    if any(a in ("-h", "--help", "--helpshort", "--helpfull", "-?") for a in argv):
        print(__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1] + "\n")
        print(fv.get_help())
        return 0
    try:
        rest = fv(["tfzoo.detect", *argv])
        if len(rest) > 1:
            raise TfzooError(f"unexpected argument {rest[1]!r}: every option is a --flag")
    except (flags.Error, TfzooError) as e:
        return report(e if isinstance(e, TfzooError) else TfzooError(str(e)), "tfzoo.detect")
    a = fv
    try:
        if bool(a.model_dir) == bool(a.saved_model):
            raise TfzooError("expected one of --model_dir (a training run) or --saved_model "
                             "(an export)" + (", not both" if a.model_dir else ""))
        for name in ("video", "out"):
            if not a[name].value:
                raise TfzooError(f"--{name} is required")
        if a.stride < 1:
            raise DetectError(f"--stride={a.stride}: expected a positive number of frames")
        if a.batch_size < 1:
            raise DetectError(f"--batch_size={a.batch_size}: expected >= 1")
        history = ONLINE_HISTORY if a.history is None else a.history
        if a.history is not None and (not a.online or not (
                a.history == "all" or a.history.isdigit() and int(a.history) >= 1)):
            raise DetectError(f"--history={a.history}: expected a positive number of processed "
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
