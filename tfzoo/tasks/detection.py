"""Object detection in video frames: the task of `tfzoo.models.rfcn.RFCN` (D&T, thesis ch. 8).

A detector's outputs are dense maps (`rpn_scores`, `rpn_deltas`, `cls_maps`, `reg_maps`);
losses need the ground truth inside the step (anchor and RoI targets, OHEM), so the model owns
them (`RFCN.detection_loss`, which `fit` reaches through the model's `compute_loss`) and this
task's `loss` returns it. The test-time prediction is the model's
`detect` (proposals, PS-RoI pooling, per-class NMS); evaluation is ImageNet VID mAP with the
motion-speed breakdown (`tfzoo.detection.evaluate_vid`); the serving signature returns the TF
Object Detection API's outputs.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfzoo.detection import (
    box_target_statistics, evaluate_vid, evaluation_rows, iou_matrix, link_video,
    track_consistency
)
from tfzoo.detection.boxes import BOX_STDS
from tfzoo.errors import TfzooError
from tfzoo.registry import get_entry
from tfzoo.rundir import read_run_info
from tfzoo.tasks.base import Task, register_task
from tfzoo.utils import check_choice

OUTPUTS = ("rpn_scores", "rpn_deltas", "cls_maps", "reg_maps")
STRIDE = 16  # the detector's anchor stride (tfzoo.models.rfcn.STRIDE)
# mAP breakdowns: FGFA's motion speeds and the annotation's occluded flag
BREAKDOWN = ("slow", "medium", "fast", "occluded")
LABELS = {"gt_boxes": 0.0, "gt_classes": -1, "gt_track_ids": -1, "image_size": 0}


class DetectionTask(Task):
    """Detection: RPN + R-FCN losses, VID mAP, TF Object Detection API serving outputs.

    Example:
    >>> import numpy as np
    >>> task = DetectionTask()
    >>> out = task.export_outputs({"boxes": np.zeros((1, 2, 4), "float32"),
    ...                            "scores": np.array([[0.9, 0.0]], "float32"),
    ...                            "classes": np.array([[1, 0]], "int32"),
    ...                            "num_detections": np.array([1], "int32")},
    ...                           class_names=["cat", "dog"], top_k=1)
    >>> out["detection_class_names"].numpy()[0, 0], int(out["num_detections"][0])
    (b'dog', 1)
    """

    name = "detection"

    # -- outputs ------------------------------------------------------------------------------

    def check_outputs(self, model: keras.Model) -> None:
        out = model.output
        if not isinstance(out, dict) or sorted(out) != sorted(OUTPUTS):
            keys = sorted(out) if isinstance(out, dict) else type(out).__name__
            raise TfzooError(f"{model.name} outputs {keys}; a detector returns the dict "
                             f"{list(OUTPUTS)}")
        bad = {k: v.dtype for k, v in out.items() if v.dtype != "float32"}
        if bad:
            raise TfzooError(f"{model.name} outputs {bad} are not float32")
        if not hasattr(model, "detect"):
            raise TfzooError(f"{model.name} has no detect(); see tfzoo.models.rfcn.RFCN")

    # -- training -----------------------------------------------------------------------------

    def compile(self, model, *, optimizer, label_smoothing: float = 0.0, jit_compile: bool = False):
        if label_smoothing:
            raise TfzooError(f"label_smoothing={label_smoothing} is for classifiers; a detector "
                             "trains with the RPN/R-FCN losses (set it to 0)")
        # No Keras loss: the model's compute_loss calls `loss` with the ground truth.
        model.compile(optimizer=optimizer, jit_compile=jit_compile)

    def targets(self, model, num_classes: int, *, label_smoothing: float = 0.0):
        # Anchor and RoI targets depend on the proposals, so they are made inside the step.
        return lambda x, y: (x, y)

    def batch(self, dataset, batch_size: int, *, drop_remainder: bool):
        """Frames of different sizes in one batch: zero-padded at the bottom/right (their
        `image_size` keeps the real extent), ground truth padded with class -1. Elements
        tagged `det_image` (`DetectionSource(alternate_det_vid=True)`) are batched by kind, DET
        pairs apart from VID pairs, and the tag is dropped."""
        padding = (tf.constant(0.0), {k: tf.constant(v, tf.float32 if k == "gt_boxes" else tf.int32)
                                      for k, v in LABELS.items()})
        if "det_image" not in dataset.element_spec[1]:
            return dataset.padded_batch(batch_size, padding_values=padding,
                                        drop_remainder=drop_remainder)

        def untag(x, y):
            return x, {k: v for k, v in y.items() if k != "det_image"}

        # a window closes when it holds batch_size elements of its kind: with the kinds coming
        # in turn, the batches alternate as the elements do
        return dataset.group_by_window(
            lambda x, y: tf.cast(y["det_image"], tf.int64),
            lambda _, window: window.map(untag).padded_batch(
                batch_size, padding_values=padding, drop_remainder=drop_remainder),
            window_size=batch_size)

    def synthetic_targets(self, model, inputs):
        """One ground-truth box of class 0 per frame, centred, half the frame's size."""
        shape = tf.shape(inputs)
        b, h, w = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        box = tf.stack([w / 4, h / 4, 3 * w / 4 - 1, 3 * h / 4 - 1])
        return {"gt_boxes": tf.tile(box[None, None], [b, 1, 1]),
                "gt_classes": tf.zeros([b, 1], tf.int32),
                "gt_track_ids": tf.zeros([b, 1], tf.int32),
                "image_size": tf.tile(tf.stack([shape[1], shape[2]])[None], [b, 1])}

    def prepare_model(self, model, source, config) -> dict:
        """The box targets' means and stds (`RFCN.set_box_normalisation`), unless the recipe
        sets them (`model_overrides`): those of the `init_from` run when it recorded them (its
        box maps were trained with them), else `box_target_statistics` of the training split
        (`box_statistics`), as py-R-FCN and the D&T code compute them from the training data."""
        if not hasattr(model, "set_box_normalisation") or {"box_means", "box_stds"} & set(
                config.model_overrides):
            return {}
        means = stds = None
        if config.init_from:
            run = read_run_info(config.init_from)
            previous = run.model_config
            if getattr(get_entry(run.model).builder, "TASK", None) == self.name:
                # a detector run from before box_means/box_stds were recorded trained its box
                # maps with the fixed py-R-FCN normalisation
                means = previous.get("box_means", [0.0] * 4)
                stds = previous.get("box_stds", list(BOX_STDS))
            origin = f"init_from {config.init_from}"
        if means is None or stds is None:
            means, stds = box_statistics(model, source, config.train_split,
                                         tuple(config.image_size), seed=config.seed)
            origin = f"the {config.train_split!r} split"
        model.set_box_normalisation(means, stds)
        return {"box_means": [round(v, 5) for v in means],
                "box_stds": [round(v, 5) for v in stds], "box_normalisation_from": origin}

    def losses(self, model, outputs, labels, *, seed=(0, 0)) -> dict:
        """The four losses (`RFCN.detection_losses`): rpn_cls, rpn_box, cls, box."""
        return model.detection_losses(outputs, labels, seed=seed)

    def loss(self, model, outputs, labels, *, seed=(0, 0)):
        """RPN and R-FCN losses summed with unit weights (`RFCN.detection_loss`)."""
        return model.detection_loss(outputs, labels, seed=seed)

    # -- test ---------------------------------------------------------------------------------

    def test_score(self, outputs):
        """A detector's test-time prediction is `RFCN.detect`'s dict; returned as is."""
        if not isinstance(outputs, dict) or "boxes" not in outputs:
            raise TfzooError("a detector's test-time prediction is RFCN.detect's dict "
                             "(boxes, scores, classes, num_detections)")
        return outputs

    def predict(self, model, x, *, flip: bool = False, flip_label_map=None):
        _refuse_flip(flip)
        return model.detect(x)

    def serve(self, model, inputs):
        return model.detect(inputs)

    def evaluate(self, model, source, split, config, *, flip: bool) -> dict:
        """ImageNet VID mAP (IoU 0.5 with the devkit's small-object rule), AP per class, mAP by
        motion speed and on the occluded objects, and the RPN's recall at IoU 0.5 over its
        proposals per frame. Every frame of every video of `split`, at the model's test scale
        (`short_side`/`max_side`). For a D&T model (`detect_track`) also `metrics["linked"]`:
        `evaluate_linked` at each of `config.link_strides` (tau), offline and online."""
        _refuse_flip(flip)
        metrics = evaluate_detector(model, source.videos(split), source.info.class_names,
                                    batch_size=config.batch_size)
        if hasattr(model, "detect_track"):  # D&T: also the linked tubes (thesis Table 8.1)
            metrics["linked"] = evaluate_linked(model, source.videos(split),
                                                source.info.class_names,
                                                strides=tuple(config.link_strides),
                                                batch_size=config.batch_size)
        return metrics

    def describe(self, metrics: dict) -> list[str]:
        def fmt(v):
            return "n/a" if v is None else f"{v:.4f}"

        def breakdown(m):
            return (f"slow {fmt(m.get('mAP_slow'))}, medium {fmt(m.get('mAP_medium'))}, fast "
                    f"{fmt(m.get('mAP_fast'))}, occluded {fmt(m.get('mAP_occluded'))}")

        recall = metrics.get("proposal_recall")
        lines = [f"VID mAP {fmt(metrics['mAP'])}  ({breakdown(metrics)}); "
                 f"proposal recall@{metrics.get('num_proposals')} {fmt(recall)}  "
                 f"({metrics['num_frames']} frames of {metrics['num_videos']} videos)"]
        for key, linked in metrics.get("linked", {}).items():
            unlinked = linked.get("unlinked", {})
            tracks = linked.get("tracks", {})
            lines.append(f"D&T {key}: VID mAP {fmt(linked['mAP'])} ({breakdown(linked)}); "
                         f"before linking {fmt(linked['mAP_unlinked'])} ({breakdown(unlinked)}); "
                         f"tracks with one tube id {fmt(tracks.get('track_consistency'))} "
                         f"({tracks.get('num_consistent')} of {tracks.get('num_tracks')}); "
                         f"{linked['num_frames']} processed frames")
        for name, ap in metrics["AP"].items():
            lines.append(f"  {name:24s} {fmt(ap)}")
        return lines

    # -- export -------------------------------------------------------------------------------

    def check_export(self, model, class_names: Sequence[str], top_k: int) -> None:
        if len(class_names) != model.num_classes:
            raise TfzooError(f"RunInfo.class_names has {len(class_names)} names but the detector "
                             f"has {model.num_classes} classes; they must match")

    def export_outputs(self, outputs, *, class_names, top_k: int) -> dict:
        """The TF Object Detection API names: detection_boxes (B, M, 4) x1 y1 x2 y2 in input
        pixels, detection_scores (B, M), detection_classes (B, M) int32 (0-based),
        detection_class_names (B, M) string, num_detections (B,) int32. `top_k` is unused:
        the model's `max_detections` bounds M."""
        names = tf.constant([str(c) for c in class_names], dtype=tf.string)
        classes = tf.cast(outputs["classes"], tf.int32)
        n = tf.cast(outputs["num_detections"], tf.int32)
        valid = tf.range(tf.shape(classes)[1])[None] < n[:, None]
        return {"detection_boxes": tf.cast(outputs["boxes"], tf.float32),
                "detection_scores": tf.cast(outputs["scores"], tf.float32),
                "detection_classes": classes,
                "detection_class_names": tf.where(valid, tf.gather(names, classes), ""),
                "num_detections": n}


    def extra_signatures(self, model, class_names) -> dict:
        """For a detector with `detect_track` (`tfzoo.models.dt.DetectTrack`), the D&T
        signatures `tfzoo.detection.detector.Detector` reads (docs/detection.md, "The model contract"):
        `detect_track` on uint8 frame pairs `images` (B, 2, H, W, 3) -> both frames'
        detections, `track_boxes` and `track_deltas` (B, M, 4); `detect_track_clip` on uint8
        clips `images` (B, T, H, W, 3) -> all T frames' detections (B, T, ...) and the tracks
        between consecutive frames (B, T - 1, M, 4), each frame's network run once;
        `class_names` (no input) -> (C,) strings. A per-frame detector has only
        `serving_default`."""
        if not hasattr(model, "detect_track"):
            return {}
        names = tf.constant([str(c) for c in class_names], dtype=tf.string)
        ints = ("detection_classes", "num_detections", "num_tracklets")

        def typed(out):
            return {k: tf.cast(v, tf.int32 if k in ints else tf.float32) for k, v in out.items()}

        def detect_track(images):
            return typed(model.detect_track(tf.cast(images, tf.float32)))

        def detect_track_clip(images):
            return typed(model.detect_track_clip(tf.cast(images, tf.float32)))

        frames = lambda t: [tf.TensorSpec([None, t, None, None, 3], tf.uint8, name="images")]
        return {"detect_track": (frames(2), detect_track),
                "detect_track_clip": (frames(None), detect_track_clip),
                "class_names": ([], lambda: {"class_names": tf.identity(names)})}


def _refuse_flip(flip: bool) -> None:
    if flip:
        raise TfzooError("flip=True: the detector has no flipped-view test protocol (the thesis "
                         "tests single frames); set test_flip=False or pass --noflip")


def jittered_ground_truth(boxes, copies: int = 20, jitter: float = 0.15, seed: int = 0):
    """`copies` random perturbations of each ground-truth box (centre shifted by up to
    `jitter` of the size, width and height scaled by exp(+-jitter)): proposals that stand in
    for the RPN, so the detector's head is measured alone."""
    rng = np.random.default_rng(seed)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    w, h = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    cx, cy = boxes[:, 0] + w / 2, boxes[:, 1] + h / 2
    u = rng.uniform(-jitter, jitter, (copies, len(boxes), 4))
    cx, cy = cx + u[..., 0] * w, cy + u[..., 1] * h
    w, h = w * np.exp(u[..., 2]), h * np.exp(u[..., 3])
    out = np.stack([cx - w / 2, cy - h / 2, cx + w / 2 - 1, cy + h / 2 - 1], -1)
    return out.reshape(-1, 4).astype(np.float32)


def box_statistics(model, source, split: str, image_size, *, max_videos: int = 300,
                   max_frames: int = 4, seed: int = 0):
    """`tfzoo.detection.box_target_statistics` over training frames of `split`: up to
    `max_frames` frames of up to `max_videos` videos (a seeded sample), each at the training
    scale `image_size` (shorter side, longest side). A frame's RoIs are the model's anchors
    inside it (our RPN trains with the head, so there are no proposals before training; the
    anchors are what the proposals start from) plus its ground truth; RoIs with IoU >= 0.5
    count, as `roi_targets`' foreground. Returns (means, stds)."""
    rng = np.random.default_rng(seed)
    data = source.splits[split]
    order = rng.permutation(len(data))[:max_videos]

    def frames():
        for i in order:
            video = data.video(int(i))
            if video is None:
                continue
            h, w = video.frames.shape[1:3]
            scale = image_size[0] / min(h, w)
            if len(image_size) > 1 and image_size[1]:
                scale = min(scale, image_size[1] / max(h, w))
            hs, ws = round(h * scale), round(w * scale)
            anchors = model.anchors(-(-hs // STRIDE), -(-ws // STRIDE)).numpy()
            inside = ((anchors[:, :2] >= 0).all(1) & (anchors[:, 2] < ws) & (anchors[:, 3] < hs))
            picked = rng.permutation(len(video.frames))[:max_frames]
            for t in picked:
                yield anchors[inside], np.asarray(video.boxes[t], np.float32).reshape(-1, 4) * scale

    return box_target_statistics(frames())


def evaluate_detector(model, videos, class_names, *, batch_size: int = 4,
                      proposals: str = "rpn") -> dict:
    """`DetectionTask.evaluate` on an iterable of `DetectionVideo`s.

    `proposals`: "rpn" (the model's), or "gt_jitter": `jittered_ground_truth` of each frame's
    ground truth instead (the detector without its RPN; an upper bound for the proposals).
    """
    check_choice("proposals", proposals, ("rpn", "gt_jitter"))
    detect = tf.function(model.detect, reduce_retracing=True)
    post = int(model.get_config()["test_post_nms"])
    detections, annotations, occluded = [], {}, set()
    found = total = frames = videos_seen = 0
    for video in videos:
        videos_seen += 1
        annotations.update(video.annotations())
        occluded |= video.occluded_objects()
        for start in range(0, len(video.frames), batch_size):
            x = video.frames[start:start + batch_size]
            given = None
            if proposals == "gt_jitter":
                boxes = np.zeros((len(x), post, 4), np.float32)
                counts = np.zeros(len(x), np.int32)
                for i in range(len(x)):
                    j = jittered_ground_truth(video.boxes[start + i], seed=start + i)[:post]
                    boxes[i, :len(j)], counts[i] = j, len(j)
                given = (boxes, counts)
            out = {k: v.numpy() for k, v in detect(x, proposals=given).items()}
            for i in range(len(x)):
                t = start + i
                frames += 1
                fid = (video.video_id, t)
                for j in range(out["num_detections"][i]):
                    detections.append((fid, int(out["classes"][i, j]), float(out["scores"][i, j]),
                                       *map(float, out["boxes"][i, j])))
                gt = video.boxes[t]
                props = out["proposals"][i, :out["num_proposals"][i]]
                if len(gt):
                    if len(props):
                        found += int((iou_matrix(gt, props).numpy().max(1) >= 0.5).sum())
                    total += len(gt)
    result = evaluate_vid(detections, annotations, subsets={"occluded": occluded})
    names = list(class_names)
    metrics = {
        "mAP": result["mAP"],
        "AP": {names[c]: v for c, v in result["AP"].items()},
        **{f"mAP_{s}": result.get(f"mAP_{s}") for s in BREAKDOWN},
        **{f"AP_{s}": {names[c]: v for c, v in result.get(f"AP_{s}", {}).items()}
           for s in BREAKDOWN},
        **{f"num_gt_{s}": sum(result.get(f"num_gt_{s}", {}).values()) for s in BREAKDOWN},
        "num_gt": {names[c]: n for c, n in result["num_gt"].items()},
        "proposals": proposals,
        "proposal_recall": found / total if total else None,
        "num_proposals": post,
        "num_frames": frames, "num_videos": videos_seen, "num_detections": len(detections),
        "protocol": "ImageNet VID mAP (IoU 0.5, devkit small-object rule), every frame",
    }
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in metrics.items()}


def evaluate_linked(model, videos, class_names, *, strides=(1, 10), batch_size: int = 4) -> dict:
    """D&T's video evaluation (thesis §8.4-8.5.3) of a model with `detect_track` (or any
    `tfzoo.detection.detector.Detector`-like object with `detect_pairs`, given the pairs' frame indices
    in the video), at each temporal stride tau of `strides`: per video, the processed frames
    0, tau, 2 tau, ... go through `tfzoo.detection.detector.detect_frames` (each frame's network once with
    a D&T model), their detections and tracklets are linked (`tfzoo.detection.link_video`,
    offline and online) and the rescored boxes of the processed frames are scored by
    `evaluate_vid`. Only the processed frames are scored, as the thesis' tau = 10 row
    ("evaluated only at every tau-th frame", §8.5.3); at tau = 1 that is every frame.

    Returns `{"tau=T offline" | "tau=T online": {"mAP", "mAP_slow", "mAP_medium", "mAP_fast",
    "mAP_occluded", "num_gt_slow", ..., "AP", "mAP_unlinked", "unlinked", "tracks",
    "num_frames"}}`: the motion speeds are measured on every frame of the video, whatever tau;
    `num_gt_<name>` counts the objects each breakdown scores; `mAP_unlinked` (its breakdown in
    `unlinked`) is the same detections before linking (D with box voting, at most
    `link_max_per_class` per class), the baseline linking must beat; `tracks` is
    `tfzoo.detection.track_consistency` of the tube ids.
    """
    # The runtime detector stands above the tasks (it runs Keras models and SavedModels
    # through tfzoo.runnable, which asks a model's task): imported when a D&T model is scored.
    # deferred: the detector imports the tasks (through tfzoo.runnable)
    from tfzoo.detection.detector import as_detector, detect_frames

    if not strides or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in strides):
        raise TfzooError(f"strides={strides!r}: expected positive integers, e.g. (1, 10)")
    names = list(class_names)
    detector = as_detector(model, names)
    rows = {(tau, mode): [] for tau in strides for mode in ("offline", "online", "unlinked")}
    annotations = {tau: {} for tau in strides}
    every_frame, occluded = {}, set()  # motion speeds are measured on every frame
    for video in videos:
        all_ann = video.annotations()
        every_frame.update(all_ann)
        occluded |= video.occluded_objects()
        for tau in strides:
            processed = list(range(0, len(video.frames), tau))
            ids = [(video.video_id, f) for f in processed]
            annotations[tau].update({i: all_ann[i] for i in ids})
            detections, tracks = detect_frames(
                detector, ((f, video.frames[f]) for f in processed), batch_size=batch_size)
            rows[tau, "unlinked"].extend(evaluation_rows(detections, ids))
            for mode in ("offline", "online"):
                linked = link_video(detections, tracks, stride=1, online=mode == "online",
                                    num_classes=len(names))
                rows[tau, mode].extend(evaluation_rows(linked, ids, track_ids=True))
    out = {}
    for tau in strides:
        options = {"subsets": {"occluded": {k for k in occluded if k[0] in annotations[tau]}},
                   "motion_annotations": every_frame}
        base = evaluate_vid(rows[tau, "unlinked"], annotations[tau], **options)
        for mode in ("offline", "online"):
            r = evaluate_vid([row[:7] for row in rows[tau, mode]], annotations[tau], **options)
            out[f"tau={tau} {mode}"] = _clean({
                "mAP": r["mAP"], "mAP_unlinked": base["mAP"],
                **{f"mAP_{s}": r.get(f"mAP_{s}") for s in BREAKDOWN},
                **{f"num_gt_{s}": sum(r.get(f"num_gt_{s}", {}).values()) for s in BREAKDOWN},
                "unlinked": _clean({"mAP": base["mAP"],
                                    **{f"mAP_{s}": base.get(f"mAP_{s}") for s in BREAKDOWN}}),
                "tracks": track_consistency(rows[tau, mode], annotations[tau]),
                "AP": {names[c]: v for c, v in r["AP"].items()},
                "num_frames": len(annotations[tau])})
    return out


def _clean(metrics: dict) -> dict:
    """NaN (no ground truth) as None, so the metrics are JSON."""
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in metrics.items()}


DETECTION = register_task(DetectionTask())
