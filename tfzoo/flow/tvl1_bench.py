"""Accuracy and speed of tfzoo's TV-L1 against OpenCV's Dual TV-L1 on the same frames.

python -m tfzoo.flow.tvl1_bench [--accuracy] [--speed] [--sizes 256x340,480x640] [--repeats 3]
(routed from `python -m tfzoo.bench --flow`). OpenCV (opencv-contrib-python-headless) is a
benchmark/test dependency only; it runs with matched parameters: same pyramid depth and
zfactor, warps, and `iterations` inner iterations x 1 outer iteration, no median filtering,
no early stopping. tfzoo runs with its defaults and with `tfzoo.flow.OPENCV` (no presmoothing,
no pyramid antialiasing, zero border: OpenCV's structural choices).
"""

from __future__ import annotations

import math
import os
import statistics
import time
import types

import numpy as np
from absl import app, flags

from tfzoo.assets import SAMPLE_VIDEO
from tfzoo.errors import TfzooError, report
from tfzoo.utils import check_choice, markdown_table, parse_flags
from tfzoo.video import read_video

BIKES = SAMPLE_VIDEO  # real textured frames
CASES = ("translate_sub", "translate", "rotate", "zoom", "nonrigid")


def read_frames(path=BIKES, start: int = 0, count: int = 2) -> np.ndarray:
    return read_video(path, start=start, num_frames=count, short_side=None)


def ground_truth_field(case: str, h: int, w: int) -> np.ndarray:
    """A known flow field (H, W, 2) in px; `I0(x) = I1(x + flow(x))`."""
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    s = min(h, w) / 64.0  # displacements grow with the image, like real motion
    if case == "translate_sub":
        u, v = np.full_like(gx, 0.37), np.full_like(gx, -0.52)
    elif case == "translate":
        u, v = np.full_like(gx, 1.6 * s), np.full_like(gx, -0.9 * s)
    elif case == "rotate":
        a = math.radians(2.0)
        dx, dy = gx - cx, gy - cy
        u = math.cos(a) * dx - math.sin(a) * dy - dx
        v = math.sin(a) * dx + math.cos(a) * dy - dy
    elif case == "zoom":
        u, v = 0.04 * (gx - cx), 0.04 * (gy - cy)
    elif case == "nonrigid":
        # Fixed amplitude (2 px): at 256x340 a 5 px version of this field leaves both tfzoo
        # and OpenCV at ~1 px EPE (TV's bias on smooth non-rigid motion).
        u = 2.0 * np.sin(2 * np.pi * gx / (0.9 * w)) * np.cos(2 * np.pi * gy / (1.1 * h))
        v = 1.5 * np.cos(2 * np.pi * gx / (1.3 * w)) * np.sin(2 * np.pi * gy / (0.8 * h))
    else:
        check_choice("case", case, CASES)
        raise AssertionError(f"case {case!r} is listed in CASES but has no motion field")
    return np.stack([u, v], -1).astype(np.float32)


def synthetic_pair(image: np.ndarray, case: str, h: int, w: int, blur: float = 1.0):
    """(I0, I1, flow, mask) from a real RGB frame: I1 is a centred HxW crop of the (rescaled,
    slightly blurred) frame, I0 samples the frame at x + flow(x) (bicubic), so the true flow from I0 to
    I1 is `flow`. `mask` marks pixels whose target stays 3 px inside I1 and 4 px from I0's
    border: TV-L1 cannot know the flow of content that leaves the image."""
    import cv2  # deferred: optional OpenCV (the test extra)

    # Scale the frame so that the crop shows most of the scene (a small crop of the full-size
    # frame would be a patch of road or sky, where no method can recover the motion).
    f = max(1.2 * h / image.shape[0], 1.2 * w / image.shape[1])
    size = (round(image.shape[1] * f), round(image.shape[0] * f))
    src = cv2.resize(image.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    src = cv2.GaussianBlur(src, (0, 0), blur) if blur else src
    y0, x0 = (src.shape[0] - h) // 2, (src.shape[1] - w) // 2
    flow = ground_truth_field(case, h, w)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    tx, ty = gx + flow[..., 0], gy + flow[..., 1]
    i0 = cv2.remap(src, tx + x0, ty + y0, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    i1 = src[y0 : y0 + h, x0 : x0 + w].copy()
    mask = (tx >= 3) & (tx <= w - 4) & (ty >= 3) & (ty <= h - 4)
    border = np.zeros_like(mask)
    border[4:-4, 4:-4] = True
    return np.clip(i0, 0, 255), i1, flow, mask & border


def epe(flow, gt, mask=None) -> float:
    e = np.sqrt(((np.asarray(flow) - gt) ** 2).sum(-1))
    return float(e[mask].mean() if mask is not None else e.mean())


def opencv_tvl1(i0, i1, iterations=50, warps=5, max_scales=5, zfactor=0.5, tau=0.25,
                lbda=0.15, theta=0.3, **_ignored):
    """OpenCV's Dual TV-L1 with tfzoo's parameters (same grey conversion, same depth)."""
    import cv2  # deferred: optional OpenCV (the test extra)

    from tfzoo.flow.solver import num_scales  # deferred: loads TensorFlow

    h, w = i0.shape[:2]
    # Float input in [0, 1]: OpenCV scales it by 255, so both see unquantised grey.
    g0 = (np.asarray(i0, np.float32) @ np.float32([0.299, 0.587, 0.114])) / 255.0
    g1 = (np.asarray(i1, np.float32) @ np.float32([0.299, 0.587, 0.114])) / 255.0
    algo = cv2.optflow.DualTVL1OpticalFlow_create(
        tau=tau, lambda_=lbda, theta=theta, nscales=num_scales(h, w, zfactor, max_scales),
        warps=warps, epsilon=1e-12, innnerIterations=iterations, outerIterations=1,
        scaleStep=zfactor, gamma=0.0, medianFiltering=1, useInitialFlow=False,
    )
    return algo.calc(g0, g1, None)


# tfzoo runs twice: with its defaults (IPOL-style presmoothing, replicated border) and with
# OpenCV's structural choices (tfzoo.flow.OPENCV), the matched-parameter comparison.
CONFIGS = ("default", "opencv")


def _config(name: str) -> dict:
    from tfzoo.flow.solver import OPENCV  # deferred: loads TensorFlow

    return {"default": {}, "opencv": dict(OPENCV)}[name]


def accuracy_table(size=(256, 340), params=None, frame_index=10, real_pairs=5) -> list[dict]:
    """EPE on the synthetic cases and agreement with OpenCV on real pairs, per configuration."""
    import cv2  # deferred: optional OpenCV (the test extra)
    import tensorflow as tf  # deferred: loads TensorFlow

    from tfzoo.flow.solver import _compiled_solver  # deferred: loads TensorFlow

    params = dict(params or dict(iterations=50, warps=5, max_scales=5))
    h, w = size
    frames = read_frames(start=frame_index, count=real_pairs + 1)
    pairs = [synthetic_pair(frames[0], c, h, w) for c in CASES]
    clip = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
    # One batch: the synthetic pairs and the real consecutive pairs, so one compiled graph.
    batch = np.stack([np.stack([p[0], p[1]]) for p in pairs]
                     + [clip[t : t + 2] for t in range(real_pairs)]).astype(np.float32)
    ours = {}
    for name in CONFIGS:
        solver = _compiled_solver(tuple(sorted({**params, **_config(name)}.items())))
        ours[name] = solver(tf.constant(batch))[:, 0].numpy()
    rows = []
    for k, (c, (i0, i1, gt, mask)) in enumerate(zip(CASES, pairs)):
        cv = opencv_tvl1(i0, i1, **params)
        rows.append(dict(case=c, max_gt=float(np.hypot(gt[..., 0], gt[..., 1]).max()),
                         epe_opencv=epe(cv, gt, mask),
                         epe={n: epe(ours[n][k], gt, mask) for n in CONFIGS}))
    for t in range(real_pairs):
        k = len(CASES) + t
        cv = opencv_tvl1(clip[t], clip[t + 1], **params)
        mag = float(np.hypot(cv[..., 0], cv[..., 1]).mean())
        rows.append(dict(case=f"bikes {frame_index + t}->{frame_index + t + 1}", mag=mag,
                         diff={n: epe(ours[n][k], cv) for n in CONFIGS}))
    return rows


def _time(fn, repeats):
    fn()  # compile / warm up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def speed_table(sizes, params, repeats=3, batch=4) -> list[dict]:
    """ms per frame pair: OpenCV, and tfzoo with OpenCV's settings (the same computation, so
    equal accuracy) with XLA for 1 and `batch` pairs per call, and without XLA; and tfzoo's
    defaults with XLA."""
    import cv2  # deferred: optional OpenCV (the test extra)
    import tensorflow as tf  # deferred: loads TensorFlow

    from tfzoo.flow.solver import TVL1, to_grey  # deferred: loads TensorFlow

    rows = []
    raw = read_frames(start=10, count=batch + 1)
    for h, w in sizes:
        clip = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in raw])
        one = tf.constant(clip[None, :2], tf.float32)
        many = tf.constant(clip[None], tf.float32)
        t_cv = _time(lambda: opencv_tvl1(clip[0], clip[1], **params), repeats)
        rows.append(dict(size=f"{h}x{w}", impl="OpenCV DualTVL1 (C++)", pairs=1, ms=t_cv * 1e3,
                         ratio=1.0))
        runs = (("tfzoo XLA, OpenCV settings", "opencv", True, (1, batch)),
                ("tfzoo graph (no XLA), OpenCV settings", "opencv", False, (1,)),
                ("tfzoo XLA, defaults", "default", True, (1, batch)))
        for name, config, xla, counts in runs:
            layer = TVL1(**params, **_config(config))
            fn = tf.function(lambda x, layer=layer: layer._solve(to_grey(x)), jit_compile=xla)
            for n in counts:
                x = one if n == 1 else many
                t = _time(lambda: fn(x).numpy(), repeats) / n
                rows.append(dict(size=f"{h}x{w}", impl=name, pairs=n, ms=t * 1e3,
                                 ratio=t_cv / t))
    return rows


def _size_list(flag: str, text: str) -> list[tuple[int, int]]:
    try:
        sizes = [tuple(int(v) for v in s.lower().split("x")) for s in text.split(",") if s]
    except ValueError:
        sizes = []
    if not sizes or any(len(hw) != 2 or min(hw) < 2 for hw in sizes):
        raise TfzooError(f"--{flag}={text!r}: expected HEIGHTxWIDTH sizes separated by commas, "
                         "e.g. 256x340,480x640")
    return sizes


FLAGS = flags.FLAGS


def define_flags():
    """The program's flags; defined on demand so that importing this module defines none."""
    flags.DEFINE_bool("accuracy", False, "Only the accuracy table.")
    flags.DEFINE_bool("speed", False, "Only the speed table.")
    flags.DEFINE_string("sizes", "256x340,480x640", "Frame sizes of the speed table, HxW,...")
    flags.DEFINE_string("accuracy_size", "256x340", "Frame size of the accuracy table, HxW.")
    flags.DEFINE_integer("iterations", 50, "TV-L1 iterations.")
    flags.DEFINE_integer("warps", 5, "TV-L1 warps.")
    flags.DEFINE_integer("max_scales", 5, "TV-L1 pyramid scales.")
    flags.DEFINE_integer("repeats", 3, "Timed repeats (median).")
    flags.DEFINE_integer("batch", 4, "Frame pairs per call in the batched rows.")
    flags.DEFINE_enum("interpolation", "bicubic", ["bicubic", "bilinear"], "Warping kernel.")


def main(argv) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if len(argv) > 1:
            raise TfzooError(f"unexpected arguments {argv[1:]}; every option is a --flag")
        args = types.SimpleNamespace(
            accuracy=FLAGS.accuracy, speed=FLAGS.speed, iterations=FLAGS.iterations,
            warps=FLAGS.warps, max_scales=FLAGS.max_scales, repeats=FLAGS.repeats,
            batch=FLAGS.batch, interpolation=FLAGS.interpolation,
            sizes=_size_list("sizes", FLAGS.sizes),
            accuracy_size=_size_list("accuracy_size", FLAGS.accuracy_size))
    except TfzooError as e:
        return report(e, "python -m tfzoo.flow.tvl1_bench")
    both = not (args.accuracy or args.speed)
    params = dict(iterations=args.iterations, warps=args.warps, max_scales=args.max_scales,
                  interpolation=args.interpolation)
    import cv2  # deferred: optional OpenCV (the test extra)

    print(f"# params {params}; OpenCV {cv2.__version__} threads={cv2.getNumThreads()}; "
          f"CPU cores visible: {os.cpu_count()}")
    if args.accuracy or both:
        rows = accuracy_table(args.accuracy_size[0], params)
        print(f"\n## Accuracy, {args.accuracy_size[0][0]}x{args.accuracy_size[0][1]}")
        lines = [("case", "max \\|gt\\| (px)", "EPE tfzoo defaults (px)",
                  "EPE tfzoo, OpenCV settings (px)", "EPE OpenCV (px)", "defaults / OpenCV")]
        lines += [(r["case"], f"{r['max_gt']:.2f}", f"{r['epe']['default']:.3f}",
                   f"{r['epe']['opencv']:.3f}", f"{r['epe_opencv']:.3f}",
                   f"{r['epe']['default'] / max(r['epe_opencv'], 1e-9):.2f}")
                  for r in rows if "epe" in r]
        print("\n" + markdown_table(lines))
        lines = [("real pair", "mean \\|flow\\| OpenCV (px)",
                  "mean EP difference, OpenCV settings (px)", "relative",
                  "mean EP difference, defaults (px)", "relative")]
        lines += [(r["case"], f"{r['mag']:.3f}", f"{r['diff']['opencv']:.3f}",
                   f"{r['diff']['opencv'] / r['mag']:.1%}", f"{r['diff']['default']:.3f}",
                   f"{r['diff']['default'] / r['mag']:.1%}") for r in rows if "diff" in r]
        print("\n" + markdown_table(lines))
    if args.speed or both:
        rows = speed_table(args.sizes, params, args.repeats, args.batch)
        lines = [("size", "implementation", "pairs per call", "ms per pair", "speed-up vs OpenCV")]
        lines += [(r["size"], r["impl"], str(r["pairs"]), f"{r['ms']:.1f}", f"{r['ratio']:.2f}x")
                  for r in rows]
        print("\n" + markdown_table(lines))
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=parse_flags)
