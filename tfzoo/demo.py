"""The end-to-end demo behind `make demo`.

1. trains T-ResNet on the embedded synthetic dynamics dataset (`python -m tfzoo.train
   --model=tresnet`), with checkpoints, TensorBoard logs and the test-protocol evaluation;
2. exports a SavedModel for TF Serving (`python -m export`);
3. loads the export with plain `tf.saved_model.load` and classifies a real video clip.

A finished step is not redone when the demo is run again (a killed training resumes).
"""

from __future__ import annotations

import time
from pathlib import Path

from absl import app, flags, logging

from tfzoo import config as cfglib, train
from tfzoo.assets import SAMPLE_VIDEO
from tfzoo.rundir import load_model
from tfzoo.video import read_video, test_indices

FLAGS = flags.FLAGS
DEFAULT_VIDEO = SAMPLE_VIDEO


def define_flags():
    flags.DEFINE_string("model_dir", "runs/demo", "Where the run goes.")
    flags.DEFINE_string("model", "tresnet", "tresnet (the demo) or resnet (frame-wise baseline).")
    flags.DEFINE_string("video", str(DEFAULT_VIDEO), "A real clip to classify with the export.")
    flags.DEFINE_integer("epochs", None, "Override the recipe's epochs.")


def classify_with_export(export_path: Path, video: Path, num_frames: int, short_side: int):
    """Runs the exported model on a clip; returns [(label, probability)] top-k."""
    import tensorflow as tf  # deferred: loads TensorFlow

    frames = read_video(video, short_side=short_side)
    idx = test_indices(len(frames), num_frames).numpy()
    clip = tf.constant(frames[idx][None], tf.uint8)
    loaded = tf.saved_model.load(str(export_path))
    out = loaded.signatures["serving_default"](clip)
    labels = [s.decode() for s in out["top_k_labels"].numpy()[0]]
    probs = out["probabilities"].numpy()[0]
    order = out["top_k_indices"].numpy()[0]
    return [(label, float(probs[i])) for label, i in zip(labels, order)], tuple(int(d) for d in clip.shape)


def main(argv):
    del argv

    logging.set_verbosity(logging.WARNING)  # SavedModel writer's INFO lines
    from tfzoo.export.saved_model import export_saved_model  # deferred: loads TensorFlow

    model_dir = Path(FLAGS.model_dir)
    t0 = time.time()
    config = cfglib.default_config(FLAGS.model)
    if FLAGS.epochs:
        config = config.replace(epochs=FLAGS.epochs)
    import tensorflow as tf  # deferred: loads TensorFlow

    metrics = train.run(config, model_dir, tf.distribute.get_strategy())
    t_train = time.time() - t0
    print(f"\n[demo] 1/3 trained + evaluated in {t_train:.0f}s: test accuracy "
          f"{metrics['accuracy']:.3f} (chance {1 / len(metrics['per_class_accuracy']):.3f}), "
          f"{model_dir / 'metrics.json'}")

    model, info = load_model(model_dir)
    export_root = model_dir / "export"
    existing = sorted((export_root / info.model).glob("[0-9]*")) if (export_root / info.model).exists() else []
    path = existing[-1] if existing else export_saved_model(model, info, export_root)
    print(f"[demo] 2/3 SavedModel at {path}")

    top, shape = classify_with_export(path, Path(FLAGS.video), info.num_frames,
                                      short_side=min(info.image_size))
    print(f"[demo] 3/3 {Path(FLAGS.video).name} (clip {shape}, uint8) through the export:")
    for label, p in top:
        print(f"         {label:12s} {p:.3f}")
    print(f"[demo] done in {time.time() - t0:.0f}s. (The model knows only the synthetic motion "
          f"classes; the real clip shows the export running on real video.)")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
