"""Speed of the D&T building blocks, as ratios measured in one run.

    python -m tfzoo.detection.dt_blocks_bench [--what=correlation,psroi,tracking,linking,pipeline]
        [--repeats=5]

- correlation: `tfzoo.layers.Correlation` (d = 8) against a naive TF shift-and-multiply loop
  ((2d+1)^2 shifted products reduced over D) on conv5- and conv4-sized maps (38 x 63 x 2048 and
  x 1024, a 600 x 1000 frame at stride 16), both in one `tf.function`; also the reference conv3
  variant (stride 2, displacement stride 2, on 75 x 125 x 512); and its forward + backward time
  (training).
- psroi: `PSRoIPooling(7, 31)` on 300 RoIs of a 38 x 63 x 1519 map, against the 1x1 conv that
  produces that map from 512 channels (R-FCN's classification maps).
- tracking: `RoITracking` on a 600 x 1000 frame pair against R-FCN ResNet-101 `detect` on a
  frame (float32), and each piece of the head alone (the three correlations, the stack and
  its 1x1 conv, PS-RoI pooling with voting) as a share of `detect`.
- linking: `link_tubes` per frame for 30 classes x 25 boxes per frame (offline and online),
  against the previous pure-numpy implementation (`tfzoo.detection._linking_numpy`), and on
  the same video with each class missing from some frames (the tubes pass over them). With
  `--linking_baseline=FILE` (another version of `tfzoo/detection/linking.py`, e.g. main's:
  `git show main:tfzoo/detection/linking.py > /tmp/linking_main.py`), also that version
  against this one in the same run, timed alternately, with a check of equal results.
- pipeline: the D&T video path (each frame's network once, tracks between consecutive
  frames) per frame against detection only on the same frames, and against the previous
  4-pass pair path (dt_resnet101 at 600 x 1000: several minutes on 2 cores).

Without `--what`, every bench runs.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import time

import numpy as np
import tensorflow as tf
from absl import flags

import tfzoo
from tfzoo.detection.inference import link_video
from tfzoo.errors import TfzooError, report


def _time(fn, *args, repeats: int = 5) -> tuple[float, float]:
    """Median (wall, CPU) seconds per call after one warm-up call. CPU time (all threads of
    this process) is the steadier figure on a machine shared with other jobs."""
    fn(*args)
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn(*args)
        if isinstance(out, tf.Tensor):
            out.numpy()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return float(np.median(wall)), float(np.median(cpu))


def naive_correlation(x1, x2, d: int, stride: int = 1, displacement_stride: int = 1):
    """The shift-and-multiply reference: for each offset, shift x2 (zero padded), multiply with
    x1, reduce over channels."""
    h, w = tf.shape(x1)[1], tf.shape(x1)[2]
    padded = tf.pad(x2, [[0, 0], [d, d], [d, d], [0, 0]])
    a = x1[:, ::stride, ::stride]
    planes = []
    for p in range(-d, d + 1, displacement_stride):
        for q in range(-d, d + 1, displacement_stride):
            b = padded[:, d + p:d + p + h:stride, d + q:d + q + w:stride]
            planes.append(tf.reduce_mean(a * b, -1))
    return tf.stack(planes, -1)


def bench_correlation(repeats: int) -> list[str]:
    from tfzoo.layers import Correlation  # deferred: loads TensorFlow

    lines = []
    for name, (h, w, c, stride) in {"conv5 38x63x2048": (38, 63, 2048, 1),
                                    "conv4 38x63x1024": (38, 63, 1024, 1),
                                    "conv3 75x125x512, stride 2 (reference: displacement stride "
                                    "2)": (75, 125, 512, 2)}.items():
        x1 = tf.random.normal((1, h, w, c))
        x2 = tf.random.normal((1, h, w, c))
        layer = Correlation(8, stride=stride, displacement_stride=stride)
        ours = tf.function(lambda a, b: layer([a, b]))
        naive = tf.function(lambda a, b: naive_correlation(a, b, 8, stride, stride))
        diff = float(tf.reduce_max(tf.abs(ours(x1, x2) - naive(x1, x2))))
        (w_ours, c_ours) = _time(ours, x1, x2, repeats=repeats)
        (w_naive, c_naive) = _time(naive, x1, x2, repeats=repeats)
        lines.append(f"correlation d=8 {name}: Correlation {w_ours * 1e3:.1f} ms wall / "
                     f"{c_ours * 1e3:.1f} ms CPU, naive shift-and-multiply {w_naive * 1e3:.1f} / "
                     f"{c_naive * 1e3:.1f} ms -> {w_naive / w_ours:.2f}x faster wall, "
                     f"{c_naive / c_ours:.2f}x CPU (max |diff| {diff:.1e})")
        # training runs the backward pass too (the tracking loss reaches the backbone)
        weights = tf.random.normal(tf.shape(ours(x1, x2)))

        @tf.function
        def train(a, b):
            with tf.GradientTape() as tape:
                tape.watch([a, b])
                loss = tf.reduce_sum(layer([a, b]) * weights)
            return tape.gradient(loss, [a, b])

        w_train, c_train = _time(train, x1, x2, repeats=repeats)
        lines.append(f"  forward + backward: {w_train * 1e3:.1f} ms wall / {c_train * 1e3:.1f} ms "
                     f"CPU ({c_train / c_ours:.1f}x the forward's CPU)")
    return lines


def bench_psroi(repeats: int) -> list[str]:
    import keras  # deferred: loads Keras (TensorFlow)

    from tfzoo.layers import PSRoIPooling  # deferred: loads TensorFlow

    rng = np.random.default_rng(0)
    feats = tf.random.normal((1, 38, 63, 512))
    conv = keras.layers.Conv2D(7 * 7 * 31, 1)
    maps = conv(feats)
    xy = rng.uniform(0, 900, (300, 2))
    wh = rng.uniform(16, 500, (300, 2))
    rois = np.concatenate([np.zeros((300, 1)), xy, xy + wh], 1).astype("float32")
    layer = PSRoIPooling(7, 31, 1 / 16)
    pool = tf.function(lambda m, r: layer([m, r]))
    make = tf.function(conv)
    w_pool, c_pool = _time(pool, maps, rois, repeats=repeats)
    w_conv, c_conv = _time(make, feats, repeats=repeats)
    return [f"PSRoIPooling 300 RoIs on 38x63x1519: {w_pool * 1e3:.1f} ms wall / {c_pool * 1e3:.1f}"
            f" ms CPU; the 1x1 conv 512->1519 making the map: {w_conv * 1e3:.1f} / "
            f"{c_conv * 1e3:.1f} ms (ratio {w_pool / w_conv:.2f} wall, {c_pool / c_conv:.2f} CPU)"]


def random_video(frames: int, classes: int, boxes: int, seed: int = 0):
    """Detections and tracklets like D&T's after NMS: `boxes` per frame and class, objects
    drifting a few pixels per frame, one tracklet per box of frame t."""
    rng = np.random.default_rng(seed)
    n = classes * boxes
    xy = rng.uniform(0, 900, (n, 2))
    wh = rng.uniform(20, 200, (n, 2))
    dets, tracks = [], []
    for t in range(frames):
        move = rng.normal(0, 3, (n, 2))
        box = np.concatenate([xy, xy + wh], 1)
        dets.append({"boxes": box, "scores": rng.uniform(size=n),
                     "classes": np.repeat(np.arange(classes), boxes)})
        xy = xy + move
        if t < frames - 1:
            tracks.append(np.concatenate([box, np.concatenate([xy, xy + wh], 1)], 1))
    return dets, tracks


def _load_linking(path: str):
    """A `linking.py` from another version of the code, as its own module (its numba cache
    goes next to the file)."""
    if not os.path.isfile(path):
        raise TfzooError(f"--linking_baseline={path}: no such file; expected a copy of "
                         "tfzoo/detection/linking.py")
    spec = importlib.util.spec_from_file_location("tfzoo_linking_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH_FRAMES = 100


def bench_video():
    """The linking bench's video (100 frames, 30 classes x 25 boxes), its tracks, the same video
    where each class is missing from some frames (runs of 1-5 frames: the tubes pass over
    them, index -1), and that (frames, classes) mask."""
    frames, classes, boxes = BENCH_FRAMES, 30, 25
    dets, tracks = random_video(frames, classes, boxes, seed=0)
    rng = np.random.default_rng(2)
    missing = np.zeros((frames, classes), bool)
    for c in range(classes):
        for _ in range(4):
            a = rng.integers(0, frames)
            missing[a:a + rng.integers(1, 6), c] = True
    gappy = [{k: v[~missing[t, d["classes"]]] for k, v in d.items()}
             for t, d in enumerate(dets)]
    return dets, tracks, gappy, missing


def bench_linking_baseline(repeats: int, path: str) -> list[str]:
    """`link_tubes` of this version against the one in `path` on the bench video (and with
    classes missing from some frames), timed alternately (the load of a shared machine drifts;
    medians of CPU time), with a check that both give the same tubes and scores."""
    from tfzoo.detection.linking import link_tubes  # deferred: loads TensorFlow

    base = _load_linking(path)
    frames = BENCH_FRAMES
    dets, tracks, gappy, _ = bench_video()
    lines = []
    for label, kw in (("offline", {}), ("online, history 6", {"online": True, "history": 6}),
                      ("online, full history", {"online": True})):
        for video, what in ((dets, "bench video"), (gappy, "with gaps")):
            new_scores, new_tubes = link_tubes(video, tracks, **kw)
            old_scores, old_tubes = base.link_tubes(video, tracks, **kw)
            same = new_tubes == old_tubes and all(
                np.array_equal(a, b) for a, b in zip(new_scores, old_scores))
            cpu = {"new": [], "old": []}
            for _ in range(repeats):
                for name, fn in (("new", link_tubes), ("old", base.link_tubes)):
                    c = time.process_time()
                    fn(video, tracks, **kw)
                    cpu[name].append((time.process_time() - c) / frames)
            c_new, c_old = np.median(cpu["new"]), np.median(cpu["old"])
            lines.append(f"link_tubes ({label}, {what}): this version {c_new * 1e3:.3f} ms CPU "
                         f"per frame, {os.path.basename(path)} {c_old * 1e3:.3f} ms -> "
                         f"{c_old / c_new:.2f}x less; same tubes and scores: {same}")
    return lines


def bench_linking(repeats: int, baseline: str = "") -> list[str]:
    from tfzoo.detection import _linking_numpy  # deferred: loads TensorFlow
    from tfzoo.detection.linking import link_tubes  # deferred: loads TensorFlow

    frames, classes, boxes = BENCH_FRAMES, 30, 25
    dets, tracks, gappy, missing = bench_video()

    def per_frame(fn, kw):
        fn(dets, tracks, **kw)  # warm-up (and the compilation on a first run)
        wall, cpu = [], []
        for _ in range(repeats):
            w, c = time.perf_counter(), time.process_time()
            fn(dets, tracks, **kw)
            wall.append(time.perf_counter() - w)
            cpu.append(time.process_time() - c)
        return np.median(wall) / frames, np.median(cpu) / frames

    lines = []
    for label, kw in (("offline", {}), ("online, history 6", {"online": True, "history": 6}),
                      ("online, full history", {"online": True})):
        w_full, c_full = per_frame(link_tubes, kw)
        w_gap, c_gap = per_frame(lambda d, *a, **k: link_tubes(gappy, *a, **k), kw)
        lines.append(f"link_tubes ({label}) with classes missing from "
                     f"{100 * missing.mean():.0f}% of the frames: {w_gap * 1e3:.3f} ms wall / "
                     f"{c_gap * 1e3:.3f} ms CPU per frame; without gaps {w_full * 1e3:.3f} / "
                     f"{c_full * 1e3:.3f} ms")
    for label, kw in (("offline", {}), ("online, full history", {"online": True}),
                      ("online, history 6", {"online": True, "history": 6}),
                      ("online, history 8", {"online": True, "history": 8}),
                      ("online, history 16", {"online": True, "history": 16})):
        new_scores, new_tubes = link_tubes(dets, tracks, **kw)
        old_scores, old_tubes = _linking_numpy.link_tubes(dets, tracks, **kw)
        same = new_tubes == old_tubes and all(
            np.allclose(a, b, rtol=1e-12, atol=0) for a, b in zip(new_scores, old_scores))
        w_new, c_new = per_frame(link_tubes, kw)
        w_old, c_old = per_frame(_linking_numpy.link_tubes, kw)
        # CPU time is reported too: on a shared machine the wall time mostly measures the load
        lines.append(f"link_tubes ({label}) {classes} classes x {boxes} boxes, {frames} frames, "
                     f"per frame: {w_new * 1e3:.3f} ms wall / {c_new * 1e3:.3f} ms CPU; previous "
                     f"numpy version {w_old * 1e3:.2f} / {c_old * 1e3:.2f} ms -> "
                     f"{w_old / w_new:.1f}x wall, {c_old / c_new:.1f}x CPU; same tubes and "
                     f"scores: {same} (paper: 46 ms per frame on one core; goal <= 1 ms)")
    # what `tfzoo.detect --online` runs: link_video, whose online tube ids follow the windows'
    # links, so it skips the offline tubes that link_tubes also returns
    for label, kw in (("online, history 6", {"online": True, "history": 6}),
                      ("offline", {})):
        w_tubes, c_tubes = per_frame(link_tubes, kw)
        w_video, c_video = per_frame(link_video, kw)
        lines.append(f"link_video ({label}, what tfzoo.detect runs) per frame: "
                     f"{w_video * 1e3:.3f} ms wall / {c_video * 1e3:.3f} ms CPU; link_tubes "
                     f"{w_tubes * 1e3:.3f} / {c_tubes * 1e3:.3f} ms (goal <= 1 ms)")
    # what the full-history reuse saves over linking each window [0, t] from scratch: on the
    # video above (i.i.d. scores: tubes reshuffle every frame) and with each object's score
    # persisting (+- 0.05 per frame), as a detector's does
    from tfzoo.detection import linking  # deferred: loads TensorFlow

    rng = np.random.default_rng(1)
    base = rng.uniform(size=classes * boxes)
    steady = [{**d, "scores": np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1)}
              for d in dets]
    for label, video in (("i.i.d. scores", dets), ("persistent scores", steady)):
        v = linking._Video(*linking._check(video, tracks), 0.5)
        arrays = (v.scores, v.alive, v.first, v.more, v.idx)
        reuse = functools.partial(linking._online_full, *arrays, 0.5, linking._RING)
        scratch = functools.partial(linking._online_window, *arrays, frames, 0.5)
        same = all(np.array_equal(a, b) for a, b in zip(reuse()[:4], scratch()))
        w_r, c_r = _time(reuse, repeats=repeats)
        w_s, c_s = _time(scratch, repeats=repeats)
        lines.append(f"online full-history extraction ({label}), per frame: reusing the "
                     f"previous window {w_r / frames * 1e3:.3f} ms wall / "
                     f"{c_r / frames * 1e3:.3f} ms CPU; each window from scratch "
                     f"{w_s / frames * 1e3:.3f} / {c_s / frames * 1e3:.3f} ms -> "
                     f"{c_s / c_r:.1f}x CPU; same: {same}")
    if baseline:
        lines += bench_linking_baseline(repeats, baseline)
    return lines


def bench_tracking(repeats: int) -> list[str]:
    """The D&T tracking head on one 600 x 1000 frame pair against the R-FCN ResNet-101
    detector on one frame (`detect`, float32, 30 classes, random weights): in a video each
    frame is detected once and tracked once (as frame t of its pair), so the ratio is the
    tracking overhead per frame (paper: 14 ms on 127 ms, 11%; goal <= 8%). Each piece of the
    head is also timed alone, as a share of `detect`: where the time goes."""
    # deferred: loads TensorFlow
    from tfzoo.detection.tracking import CORRELATION_LEVELS, RoITracking

    rng = np.random.default_rng(0)
    k = 7

    def frame():
        return {"conv3": tf.random.normal((1, 75, 125, 512)),
                "conv4": tf.random.normal((1, 38, 63, 1024)),
                "conv5": tf.random.normal((1, 38, 63, 2048)),
                "reg_maps": tf.random.normal((1, 38, 63, 4 * k * k))}

    ft, fu = frame(), frame()
    xy = rng.uniform(0, 900, (300, 2))
    rois = np.concatenate([np.zeros((300, 1)), xy, xy + rng.uniform(16, 500, (300, 2))],
                          1).astype("float32")
    layer = RoITracking(k=k)
    track = tf.function(lambda a, b, r: layer([a, b, r]))
    pieces = {f"correlation {n}": (tf.function(layer.correlations[n]), ([ft[n], fu[n]],))
              for n in ("conv5", "conv4", "conv3")}
    stack = [ft["reg_maps"], fu["reg_maps"]] + [
        layer.correlations[n]([ft[n], fu[n]]) for n in CORRELATION_LEVELS]
    pieces["stack + 1x1 conv"] = (tf.function(lambda s: layer.conv(tf.concat(s, -1))), (stack,))
    pieces["PS-RoI + voting"] = (
        tf.function(lambda m, r: tf.reduce_mean(layer.pool([m, r]), [1, 2])),
        (layer.conv(tf.concat(stack, -1)), rois))
    detector = tfzoo.create_model("rfcn_resnet101", num_classes=30)
    image = tf.random.uniform((1, 600, 1000, 3), 0, 255)
    detect = tf.function(lambda x: detector.detect(x)["boxes"])
    w_t, c_t = _time(track, ft, fu, rois, repeats=repeats)
    times = {name: _time(fn, *args, repeats=repeats) for name, (fn, args) in pieces.items()}
    w_d, c_d = _time(detect, image, repeats=min(repeats, 2))
    lines = [f"RoI tracking (correlations conv3/4/5 + 1x1 conv + PS-RoI, 300 RoIs) on a 600x1000 "
             f"pair: {w_t * 1e3:.0f} ms wall / {c_t * 1e3:.0f} ms CPU; R-FCN ResNet-101 detect on "
             f"one frame: {w_d * 1e3:.0f} / {c_d * 1e3:.0f} ms -> overhead per frame "
             f"{100 * w_t / w_d:.1f}% wall, {100 * c_t / c_d:.1f}% CPU (paper 11%, goal <= 8%)"]
    lines += [f"  {name}: {w * 1e3:.1f} ms wall / {c * 1e3:.1f} ms CPU = {100 * w / w_d:.2f}% / "
              f"{100 * c / c_d:.2f}% of detect" for name, (w, c) in times.items()]
    return lines


def four_pass_detect_track(model, pairs) -> dict:
    """`DetectTrack.detect_track` as it was before each frame's maps were shared: `detect` on
    the 2B frames, then `features` of both frames again for the tracker (4 network passes a
    pair). The before of `bench_pipeline`, and the reference the shared path must equal."""
    from tfzoo.detection.boxes import decode_boxes  # deferred: loads TensorFlow
    from tfzoo.models.dt import TRACK_MAPS  # deferred: loads TensorFlow

    pairs = tf.convert_to_tensor(pairs)
    shape = tf.shape(pairs)
    b = shape[0]
    flat = tf.reshape(pairs, tf.concat([[2 * b], shape[2:]], 0))
    det = model.detect(flat, **model.link_detection_options())
    m = tf.shape(det["boxes"])[1]
    resized, scale = model._resize(pairs[:, 0])
    resized_tau, _ = model._resize(pairs[:, 1])
    maps = model.features(tf.concat([resized, resized_tau], 0))
    boxes = tf.reshape(det["boxes"], [b, 2, m, 4])
    rois = tf.concat([tf.cast(tf.repeat(tf.range(b), m), tf.float32)[:, None],
                      tf.reshape(boxes[:, 0], [-1, 4]) * scale], 1)
    deltas = model.tracker([{n: tf.cast(maps[n][:b], tf.float32) for n in TRACK_MAPS},
                            {n: tf.cast(maps[n][b:], tf.float32) for n in TRACK_MAPS}, rois])
    moved = decode_boxes(rois[:, 1:], deltas, model.get_config()["tracking_stds"]) / scale
    valid = (tf.range(m)[None] < tf.reshape(det["num_detections"], [b, 2])[:, :1])[..., None]
    return {"detection_boxes": boxes,
            "detection_scores": tf.reshape(det["scores"], [b, 2, m]),
            "detection_classes": tf.reshape(det["classes"], [b, 2, m]),
            "num_detections": tf.reshape(det["num_detections"], [b, 2]),
            "track_boxes": tf.where(valid, tf.reshape(moved, [b, m, 4]), 0.0),
            "track_deltas": tf.where(valid, tf.reshape(deltas, [b, m, 4]), 0.0)}


def bench_pipeline(repeats: int, frames: int = 4, batch_size: int = 2, size=(600, 1000),
                   overrides: dict | None = None) -> list[str]:
    """The whole D&T video path per frame (`tfzoo.detect`'s loop: `Detector.detect_clip` in
    runs of `batch_size` frames, each frame's maps computed once and carried into the next
    run) against detection only on the same frames (`detect` with D&T's NMS + box voting, 25
    per class), and against the previous pair path (`four_pass_detect_track` on the pairs
    (k, k + 1), as the loop sent them): dt_resnet101, 30 classes, random weights, 600 x 1000
    frames, float32, each path a `tf.function`. After a warm-up run of each, the pipeline,
    detection only and `RoITracking` alone (on one pair's maps and 300 RoIs) are timed in
    turn `repeats` times (medians; interleaved, as the load of a shared machine drifts), the
    previous path once (ResNet-101 takes seconds a frame on a small CPU: keep `frames` and
    `repeats` small). `size` and `overrides` (of the model's config) shrink it for a test."""
    from tfzoo.detection.detector import Detector  # deferred: loads TensorFlow
    from tfzoo.models.dt import TRACK_MAPS  # deferred: loads TensorFlow

    if frames < 2:
        raise TfzooError(f"frames={frames}: the pipeline bench needs at least one pair")
    model = tfzoo.create_model("dt_resnet101", num_classes=30, **(overrides or {}))
    video = np.random.default_rng(0).integers(0, 256, (frames, *size, 3), dtype=np.uint8)
    detector = Detector(model, class_names=[str(c) for c in range(30)])
    detect = tf.function(lambda x: model.detect(x, **model.link_detection_options())["boxes"])
    old = tf.function(lambda x: four_pass_detect_track(model, x)["track_boxes"])
    track = tf.function(lambda a, b, r: model.tracker([a, b, r]))
    pair = np.stack([video[:-1], video[1:]], 1)
    maps = model.features(model._resize(video[:2])[0])
    maps_t, maps_tau = ({n: maps[n][i:i + 1] for n in TRACK_MAPS} for i in (0, 1))
    boxes = detect(video[:1])[0] * model._resize(video[:1])[1]  # in the maps' pixels
    rois = tf.concat([tf.zeros([tf.shape(boxes)[0], 1]), boxes], 1)

    def pipeline():
        state = None
        for start in range(0, frames, batch_size):
            _, _, state = detector.detect_clip(video[start:start + batch_size], None, state)

    def detect_only():
        for start in range(0, frames, batch_size):
            detect(video[start:start + batch_size]).numpy()

    def tracker():
        track(maps_t, maps_tau, rois).numpy()

    def pairs():
        for start in range(0, frames - 1, batch_size):
            old(pair[start:start + batch_size]).numpy()

    runs = {"pipeline": pipeline, "detect": detect_only, "tracker": tracker, "pairs": pairs}
    times = {name: [] for name in runs}
    for fn in runs.values():
        fn()
    for r in range(max(repeats, 1)):
        for name, fn in runs.items():
            if name == "pairs" and r:
                continue
            w, c = time.perf_counter(), time.process_time()
            fn()
            times[name].append((time.perf_counter() - w, time.process_time() - c))
    med = {name: np.median(np.asarray(t), 0) for name, t in times.items()}
    (w_p, c_p), (w_d, c_d), (w_o, c_o) = (med[n] / frames for n in ("pipeline", "detect", "pairs"))
    w_t, c_t = med["tracker"]
    # F frames have F - 1 tracked pairs: per pair is the per-frame overhead of a long video
    pair_w, pair_c = ((p - d) * frames / (frames - 1) for p, d in ((w_p, w_d), (c_p, c_d)))
    return [f"D&T video path (dt_resnet101, 30 classes, {size[0]}x{size[1]}, {frames} frames, "
            f"runs of "
            f"{batch_size}) per frame: {w_p:.2f} s wall / {c_p:.2f} s CPU; detection only "
            f"(box voting) {w_d:.2f} / {c_d:.2f} s -> tracking overhead of the pipeline "
            f"{100 * (w_p / w_d - 1):.1f}% wall, {100 * (c_p / c_d - 1):.1f}% CPU; per tracked "
            f"pair {pair_w:.2f} s wall / {pair_c:.2f} s CPU = {100 * pair_w / w_d:.1f}% / "
            f"{100 * pair_c / c_d:.1f}% of a frame's detection (paper 11%, goal <= 8%); "
            f"RoITracking alone on a pair {w_t:.2f} / {c_t:.2f} s = {100 * w_t / w_d:.1f}% / "
            f"{100 * c_t / c_d:.1f}%",
            f"previous pair path (4 network passes a pair, pairs (k, k+1)): {w_o:.2f} s wall / "
            f"{c_o:.2f} s CPU per frame -> the shared maps are {w_o / w_p:.2f}x faster wall, "
            f"{c_o / c_p:.2f}x CPU (a long video: about (4 + r) / (1 + r), r the tracker's "
            f"share of a frame)"]


BENCHES = {"correlation": bench_correlation, "psroi": bench_psroi, "linking": bench_linking,
           "tracking": bench_tracking, "pipeline": bench_pipeline}


def main(argv=None) -> int:
    """`python -m tfzoo.detection.dt_blocks_bench ARGS`; `argv` without the program name (None:
    sys.argv's). absl-py flags in their own FlagValues (callable in-process)."""
    fv = flags.FlagValues()
    flags.DEFINE_string("what", ",".join(BENCHES),
                        f"Comma-separated subset of {', '.join(BENCHES)}.", flag_values=fv)
    flags.DEFINE_integer("repeats", 5, "Timed calls per measurement (medians).", flag_values=fv)
    flags.DEFINE_string("linking_baseline", "", "A copy of another version's "
                        "tfzoo/detection/linking.py: the linking bench also times it against "
                        "this one in the same run.", flag_values=fv)
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if any(a in ("-h", "--help", "--helpshort", "--helpfull", "-?") for a in argv):
        print(__doc__ + "\n" + fv.get_help())
        return 0
    try:
        rest = fv(["tfzoo.detection.dt_blocks_bench", *argv])
        if len(rest) > 1:
            raise TfzooError(f"unexpected argument {rest[1]!r}: every option is a --flag")
        names = [n.strip() for n in fv.what.split(",") if n.strip()]
        for n in names:
            if n not in BENCHES:
                raise TfzooError(f"--what={fv.what}: {n!r} is not a bench; expected some of "
                                 f"{', '.join(BENCHES)}")
        if fv.repeats < 1:
            raise TfzooError(f"--repeats={fv.repeats}: expected >= 1")
        if fv.linking_baseline and not os.path.isfile(fv.linking_baseline):
            raise TfzooError(f"--linking_baseline={fv.linking_baseline}: no such file; expected "
                             "a copy of tfzoo/detection/linking.py")
    except (flags.Error, TfzooError) as e:
        return report(e if isinstance(e, TfzooError) else TfzooError(str(e)),
                      "tfzoo.detection.dt_blocks_bench")
    print(f"machine: {os.cpu_count()} CPUs, TF {tf.__version__}")
    for n in names:
        run = BENCHES[n]
        if n == "linking":
            run = functools.partial(bench_linking, baseline=fv.linking_baseline)
        for line in run(fv.repeats):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
