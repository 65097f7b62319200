"""Unsupervised TVNet training: python -m tfzoo.flow.train --video IN.mp4 --out tvnet.keras

Fits TVNet's kernels and initial flow on random crops of consecutive frames of one or more
videos by minimising `TVNet.unsupervised_loss` (lambda * photometric L1 of the warped next
frame + L1 smoothness of the flow; Fan et al., CVPR 2018, sec. 3.3) with Adam. The output is
a Keras model (frames (B, T, H, W, 3) -> flow, any T, H, W) holding the trained layer:
`tfzoo.flow.train.load_tvnet(path)` returns the layer, ready to put in front of a motion stream.
"""

from __future__ import annotations

import os
import sys
import types

import numpy as np
from absl import app, flags
from tqdm import tqdm

from tfzoo.errors import TfzooError, report
from tfzoo.utils import parse_flags
from tfzoo.video import iter_frames

FLAGS = flags.FLAGS
PROG = "python -m tfzoo.flow.train"


def _size(flag: str, text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        h = w = 0
    if h < 2 or w < 2:
        raise TfzooError(f"--{flag}={text!r}: expected HEIGHTxWIDTH, e.g. 64x64")
    return h, w


def define_flags():
    """The program's flags; defined on demand so that importing this module defines none."""
    flags.DEFINE_multi_string("video", None, "Training video (repeat the flag for several).")
    flags.DEFINE_string("out", None, "Output model, *.keras.")
    flags.DEFINE_integer("steps", 200, "Adam steps.")
    flags.DEFINE_integer("batch", 4, "Frame pairs per step.")
    flags.DEFINE_string("crop", "64x64", "HxW random crops.")
    flags.DEFINE_string("resize", None, "HxW: resize frames before cropping.")
    flags.DEFINE_integer("max_frames", 200, "Frames read per video.")
    flags.DEFINE_float("lr", 1e-3, "Adam learning rate.")
    flags.DEFINE_float("smoothness", 1.0, "Weight of the flow's L1 smoothness.")
    flags.DEFINE_integer("iterations", 50, "TVNet iterations.")
    flags.DEFINE_integer("warps", 1, "TVNet warps.")
    flags.DEFINE_integer("max_scales", 1, "TVNet pyramid scales.")
    flags.DEFINE_integer("seed", 0, "Crop sampling seed.")


def _args(argv) -> types.SimpleNamespace:
    videos = list(FLAGS.video or [])
    if len(argv) > 1:
        # `--video a.mp4 b.mp4`, the spelling before absl: the extra videos arrive as arguments
        print(f"{PROG}: note: pass each video with its own --video; a bare path after --video "
              "goes in the next release", file=sys.stderr)
        videos += argv[1:]
    if not videos:
        raise TfzooError("--video is required (a training video; repeat it for several)")
    if not FLAGS.out or not str(FLAGS.out).endswith(".keras"):
        raise TfzooError(f"--out={FLAGS.out!r}: expected a Keras model file ending in .keras")
    return types.SimpleNamespace(
        video=videos, out=FLAGS.out, steps=FLAGS.steps, batch=FLAGS.batch,
        crop=_size("crop", FLAGS.crop), resize=_size("resize", FLAGS.resize) if FLAGS.resize else None,
        max_frames=FLAGS.max_frames, lr=FLAGS.lr, smoothness=FLAGS.smoothness,
        iterations=FLAGS.iterations, warps=FLAGS.warps, max_scales=FLAGS.max_scales,
        seed=FLAGS.seed)


def load_tvnet(path):
    """The trained TVNet layer of a model written by this command."""
    import keras  # deferred: loads Keras (TensorFlow)

    # deferred: loads TensorFlow
    import tfzoo.flow.solver  # noqa: F401  (registers the layer classes)

    return keras.saving.load_model(path).layers[-1]


def main(argv) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        args = _args(argv)
    except TfzooError as e:
        return report(e, PROG)
    # Imported once the flags are checked: TensorFlow takes seconds to import.
    import keras  # deferred: loads Keras (TensorFlow)
    import tensorflow as tf  # deferred: loads TensorFlow

    from tfzoo.flow.solver import TVNet  # deferred: loads TensorFlow

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
    define_flags()
    app.run(main, flags_parser=parse_flags)
