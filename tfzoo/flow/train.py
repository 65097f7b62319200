"""Unsupervised TVNet training: python -m tfzoo.flow.train --video IN.mp4 --out tvnet.keras

Fits TVNet's kernels and initial flow on random crops of consecutive frames of one or more
videos by minimising `TVNet.unsupervised_loss` (lambda * photometric L1 of the warped next
frame + L1 smoothness of the flow; Fan et al., CVPR 2018, sec. 3.3) with Adam. The output is
a Keras model (frames (B, T, H, W, 3) -> flow, any T, H, W) holding the trained layer:
`tfzoo.flow.train.load_tvnet(path)` returns the layer, ready to put in front of a motion stream.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def _size(text):
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def build_parser():
    p = argparse.ArgumentParser(prog="python -m tfzoo.flow.train", description=__doc__)
    p.add_argument("--video", required=True, nargs="+", help="training video(s)")
    p.add_argument("--out", required=True, help="output model, *.keras")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=4, help="frame pairs per step")
    p.add_argument("--crop", type=_size, default=(64, 64), metavar="HxW")
    p.add_argument("--resize", type=_size, default=None, metavar="HxW",
                   help="resize frames before cropping")
    p.add_argument("--max-frames", type=int, default=200, help="frames read per video")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--smoothness", type=float, default=1.0)
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--warps", type=int, default=1)
    p.add_argument("--max-scales", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    return p


def load_tvnet(path):
    """The trained TVNet layer of a model written by this command."""
    import keras

    import tfzoo.flow  # noqa: F401  (registers the layer classes)

    return keras.saving.load_model(path).layers[-1]


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    if not str(args.out).endswith(".keras"):
        raise SystemExit(f"--out must end in .keras (a Keras model file), got {args.out!r}")
    import keras
    import tensorflow as tf
    from tqdm import tqdm

    from tfzoo.video import iter_frames
    from tfzoo.flow.solver import TVNet

    clips = []
    for path in args.video:
        frames = [f for _, f in zip(range(args.max_frames), iter_frames(path, short_side=None, size=args.resize))]
        if len(frames) < 2:
            raise SystemExit(f"{path}: {len(frames)} frame(s); training needs at least 2")
        clips.append(np.stack(frames))
    ch, cw = args.crop
    for path, c in zip(args.video, clips):
        if c.shape[1] < ch or c.shape[2] < cw:
            raise SystemExit(f"{path}: frames {c.shape[1]}x{c.shape[2]} are smaller than "
                             f"--crop {ch}x{cw}")
    rng = np.random.default_rng(args.seed)

    def sample():
        out = []
        for _ in range(args.batch):
            c = clips[rng.integers(len(clips))]
            t = rng.integers(len(c) - 1)
            y = rng.integers(c.shape[1] - ch + 1)
            x = rng.integers(c.shape[2] - cw + 1)
            out.append(c[t : t + 2, y : y + ch, x : x + cw])
        return tf.constant(np.stack(out), tf.float32)

    layer = TVNet(iterations=args.iterations, warps=args.warps, max_scales=args.max_scales)
    layer.build((None, 2, ch, cw, 3))
    opt = keras.optimizers.Adam(args.lr)

    @tf.function(jit_compile=True)
    def step(x):
        with tf.GradientTape() as tape:
            loss = layer.unsupervised_loss(x, smoothness=args.smoothness)
        grads = tape.gradient(loss, layer.trainable_variables)
        opt.apply_gradients(zip(grads, layer.trainable_variables))
        return loss

    first = None
    with tqdm(range(args.steps), desc="tvnet", unit="step") as bar:
        for _ in bar:
            loss = float(step(sample()))
            first = loss if first is None else first
            bar.set_postfix(loss=f"{loss:.4f}")
    model = keras.Sequential([keras.Input((None, None, None, 3)), layer], name="tvnet")
    model.save(args.out)
    print(f"loss {first:.4f} -> {loss:.4f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
