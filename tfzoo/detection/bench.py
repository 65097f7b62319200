"""Speed of the D&T building blocks, as ratios measured in one run.

    python -m tfzoo.detection.bench [--what correlation,psroi,linking] [--repeats 5]

- correlation: `tfzoo.layers.Correlation` (d = 8) against a naive TF shift-and-multiply loop
  ((2d+1)^2 shifted products reduced over D) on conv4-sized maps (38 x 63 x 1024, a 600 x 1000
  frame at stride 16), both in one `tf.function`; also the reference conv3 variant (stride 2,
  displacement stride 2, on 75 x 125 x 512).
- psroi: `PSRoIPooling(7, 31)` on 300 RoIs of a 38 x 63 x 1519 map, against the 1x1 conv that
  produces that map from 512 channels (R-FCN's classification maps).
- tracking: `RoITracking` on a 600 x 1000 frame pair against R-FCN ResNet-101 `detect` on a
  frame (float32).
- linking: `link_tubes` per frame for 30 classes x 25 boxes per frame (offline and online),
  against the previous pure-numpy implementation (`tfzoo.detection._linking_numpy`).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import tensorflow as tf


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
    from tfzoo.layers import Correlation

    lines = []
    for name, (h, w, c, stride) in {"conv4 38x63x1024": (38, 63, 1024, 1),
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
    return lines


def bench_psroi(repeats: int) -> list[str]:
    import keras

    from tfzoo.layers import PSRoIPooling

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


def bench_linking(repeats: int) -> list[str]:
    from tfzoo.detection import _linking_numpy
    from tfzoo.detection.linking import link_tubes

    frames, classes, boxes = 100, 30, 25
    dets, tracks = random_video(frames, classes, boxes, seed=0)

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
    # what the full-history reuse saves over linking each window [0, t] from scratch: on the
    # video above (i.i.d. scores: tubes reshuffle every frame) and with each object's score
    # persisting (+- 0.05 per frame), as a detector's does
    import functools

    from tfzoo.detection import linking

    rng = np.random.default_rng(1)
    base = rng.uniform(size=classes * boxes)
    steady = [{**d, "scores": np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1)}
              for d in dets]
    for label, video in (("i.i.d. scores", dets), ("persistent scores", steady)):
        v = linking._Video(*linking._check(video, tracks), 0.5)
        arrays = (v.scores, v.alive, v.first, v.more, v.idx)
        reuse = functools.partial(linking._online_full, *arrays, 0.5, linking._RING)
        scratch = functools.partial(linking._online_window, *arrays, frames, 0.5)
        same = all(np.array_equal(a, b) for a, b in zip(reuse()[:3], scratch()))
        w_r, c_r = _time(reuse, repeats=repeats)
        w_s, c_s = _time(scratch, repeats=repeats)
        lines.append(f"online full-history extraction ({label}), per frame: reusing the "
                     f"previous window {w_r / frames * 1e3:.3f} ms wall / "
                     f"{c_r / frames * 1e3:.3f} ms CPU; each window from scratch "
                     f"{w_s / frames * 1e3:.3f} / {c_s / frames * 1e3:.3f} ms -> "
                     f"{c_s / c_r:.1f}x CPU; same: {same}")
    return lines


def bench_tracking(repeats: int) -> list[str]:
    """The D&T tracking head on one 600 x 1000 frame pair against the R-FCN ResNet-101
    detector on one frame (`detect`, float32, 30 classes, random weights): in a video each
    frame is detected once and tracked once (as frame t of its pair), so the ratio is the
    tracking overhead per frame (paper: 14 ms on 127 ms, 11%; goal <= 8%)."""
    import tfzoo
    from tfzoo.detection.tracking import RoITracking

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
    detector = tfzoo.create_model("rfcn_resnet101", num_classes=30)
    image = tf.random.uniform((1, 600, 1000, 3), 0, 255)
    detect = tf.function(lambda x: detector.detect(x)["boxes"])
    w_t, c_t = _time(track, ft, fu, rois, repeats=repeats)
    w_d, c_d = _time(detect, image, repeats=min(repeats, 2))
    return [f"RoI tracking (correlations conv3/4/5 + 1x1 conv + PS-RoI, 300 RoIs) on a 600x1000 "
            f"pair: {w_t * 1e3:.0f} ms wall / {c_t * 1e3:.0f} ms CPU; R-FCN ResNet-101 detect on "
            f"one frame: {w_d * 1e3:.0f} / {c_d * 1e3:.0f} ms -> overhead per frame "
            f"{100 * w_t / w_d:.1f}% wall, {100 * c_t / c_d:.1f}% CPU (paper 11%, goal <= 8%)"]


BENCHES = {"correlation": bench_correlation, "psroi": bench_psroi, "linking": bench_linking,
           "tracking": bench_tracking}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--what", default=",".join(BENCHES),
                   help=f"comma-separated subset of {', '.join(BENCHES)}")
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    names = [n.strip() for n in a.what.split(",") if n.strip()]
    for n in names:
        if n not in BENCHES:
            p.error(f"--what {n!r}: expected some of {', '.join(BENCHES)}")
    import os

    print(f"machine: {os.cpu_count()} CPUs, TF {tf.__version__}")
    for n in names:
        for line in BENCHES[n](a.repeats):
            print(line, flush=True)


if __name__ == "__main__":
    main()
