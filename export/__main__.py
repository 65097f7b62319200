"""Exports a trained tfzoo model directory as a TF Serving SavedModel.

    python -m export --model_dir=runs/tresnet50_yup --export_dir=/srv/models
    # -> /srv/models/tresnet50/1   (next free version; never overwrites one)
    python -m export --model_dir=runs/stresnet --export_dir=/srv/models --in_graph_flow=tvl1
    # two-stream model served from RGB alone: TV-L1 flow stacks computed in the graph

See docs/serving.md and export/saved_model.py for the signature.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from absl import app, flags  # noqa: E402

from tfzoo.errors import TfzooError, quiet_tensorflow_start_up, report  # noqa: E402
from tfzoo.rundir import load_model, read_run_info  # noqa: E402

quiet_tensorflow_start_up()  # TF's C++ start-up lines before our one-line errors

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "tfzoo model directory (run.json + model.keras).")
flags.DEFINE_string("export_dir", None, "Model base directory parent; writes EXPORT_DIR/NAME/VERSION.")
flags.DEFINE_string("name", None, "Model name in TF Serving (default: the registry name in run.json).")
flags.DEFINE_integer("version", None, "Version number (default: one more than the highest existing).")
flags.DEFINE_integer("top_k", 5, "Number of classes in the top_k_* outputs (clipped to the class count).")
flags.DEFINE_boolean("warmup", True, "Write assets.extra/tf_serving_warmup_requests.")
flags.DEFINE_enum("in_graph_flow", None, ["tvl1"],
                  "Two-stream models: serving_default takes a dense RGB clip only and computes "
                  "the flow stacks in the graph (tfzoo.flow.TwoStreamFrames); serving_rgb_flow "
                  "keeps the rgb + flow inputs.")
flags.DEFINE_integer("encoded_short_side", None,
                     "serving_encoded resizes decoded frames to this shorter side (0: keep the "
                     "decoded size); default: run.json's test_short_side, else min(image_size).")
flags.mark_flags_as_required(["model_dir", "export_dir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; every option is a --flag")

    if not os.path.isdir(FLAGS.model_dir):
        sys.exit(report(TfzooError(
            f"--model_dir={FLAGS.model_dir!r} is not a directory; expected a tfzoo model "
            "directory (run.json + model.keras)"), "export"))
    try:
        info = read_run_info(FLAGS.model_dir)
    except TfzooError as e:
        sys.exit(report(e, "export"))
    # Imported after the cheap checks: TensorFlow takes seconds to import.
    from .saved_model import export_saved_model, resolve_version_dir  # deferred: loads TensorFlow

    try:
        # Refuse an existing version before spending time loading the model.
        resolve_version_dir(FLAGS.export_dir, FLAGS.name or info.model, FLAGS.version)
        model, info = load_model(FLAGS.model_dir)
        path = export_saved_model(
            model, info, FLAGS.export_dir, name=FLAGS.name, version=FLAGS.version,
            top_k=FLAGS.top_k, warmup=FLAGS.warmup, flow_fn=FLAGS.in_graph_flow,
            encoded_short_side=FLAGS.encoded_short_side,
        )
    except TfzooError as e:
        sys.exit(report(e, "export"))
    print(path)


if __name__ == "__main__":
    app.run(main)
