"""Late fusion vs cross-stream fusion on the conjunction task (issue #3's learning evidence).

    python -m tfzoo.experiments.conjunction [--out=runs/conjunction] [--models=a,b] [--set=k=v]

Trains configs/latefusion_conjunction.py, configs/stresnet_conjunction.py and
configs/mulnet_conjunction.py one after the other with `tfzoo.train.run` (each into OUT/NAME;
a finished run is reused, not retrained) and writes OUT/results.md (a markdown table) and
OUT/results.json. Test accuracy is the models' own protocol (`tfzoo.evaluate`: fused
pre-softmax scores of both streams, averaged with the horizontal flip); the per-stream columns
evaluate each stream's classifier alone the same way. On this task neither stream alone carries
label information (tfzoo/data/conjunction.py), so late fusion should sit at chance.
"""

from __future__ import annotations

import json
import os
import time
import types
from pathlib import Path

import numpy as np
from absl import app, flags

from tfzoo import config as cfglib
from tfzoo.errors import TfzooError, report
from tfzoo.rundir import load_model, read_run_info
from tfzoo.train import make_strategy, run
from tfzoo.utils import check_choice, parse_flags

RUNS = (
    ("late fusion (2 streams, scores averaged)", "latefusion_conjunction"),
    ("ST-ResNet (additive, motion -> appearance)", "stresnet_conjunction"),
    ("MulNet (multiplicative, motion -> appearance)", "mulnet_conjunction"),
)
COMMAND = "python -m tfzoo.experiments.conjunction --out runs/conjunction"


def stream_accuracies(model_dir: Path, source, config) -> tuple[dict[str, float], int]:
    """Test accuracy of each head ("rgb", "flow", "fused") alone, flip-averaged like
    `tfzoo.evaluate`; and the model's parameter count. One forward pass for all heads."""
    import keras  # deferred: loads Keras (TensorFlow)

    from tfzoo.data import clip_spec  # deferred: loads TensorFlow
    from tfzoo.tasks.classification import predict_scores  # deferred: loads TensorFlow
    from tfzoo.tasks import CLASSIFICATION  # deferred: loads TensorFlow

    model, _ = load_model(model_dir)
    ds = source.dataset(config.test_split, training=False, spec=clip_spec(config),
                        seed=config.seed).batch(config.batch_size)
    heads = ("rgb", "flow", "fused")
    c = source.info.num_classes

    def forward(x, training=False):
        out = model(x, training=training)
        return keras.ops.concatenate([out[h] for h in heads], axis=-1)

    fmap = np.asarray(source.info.flip_label_map)
    flip_map = np.concatenate([fmap + i * c for i in range(len(heads))]).tolist()
    scores, labels = predict_scores(forward, ds, flip=config.test_flip, flip_label_map=flip_map,
                                    task=CLASSIFICATION)
    acc = {h: float((scores[:, i * c:(i + 1) * c].argmax(1) == labels).mean())
           for i, h in enumerate(heads)}
    return acc, model.count_params()


def run_one(name: str, config, out_dir: Path, strategy, verbose) -> dict:
    from tfzoo.sources import make_source  # deferred: loads TensorFlow

    model_dir = out_dir / name
    t0 = time.time()
    metrics = run(config, model_dir, strategy, evaluate=True, verbose=verbose)
    wall = time.time() - t0
    source = make_source(config)  # deterministic: the same videos run() trained and tested on
    heads, params = stream_accuracies(model_dir, source, config)
    info = read_run_info(model_dir)
    return {
        "config": name,
        "model": config.model,
        "model_overrides": config.model_overrides,
        "test_accuracy": metrics["accuracy"],
        "rgb_stream_accuracy": heads["rgb"],
        "flow_stream_accuracy": heads["flow"],
        "chance": 1.0 / source.info.num_classes,
        "num_test_videos": metrics["num_videos"],
        "train_seconds": float(info.config.get("train_seconds", float("nan"))),
        "wall_seconds": wall,
        "epochs": config.epochs,
        "params": params,
    }


def markdown(rows: list[dict], labels: dict[str, str], command: str, config=None) -> str:
    lines = [
        "| model | test accuracy | appearance head | motion head | chance | train s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {labels.get(r['config'], r['config'])} (`configs/{r['config']}.py`) "
            f"| **{100 * r['test_accuracy']:.1f}%** | {100 * r['rgb_stream_accuracy']:.1f}% "
            f"| {100 * r['flow_stream_accuracy']:.1f}% | {100 * r['chance']:.0f}% "
            f"| {r['train_seconds']:.0f} |"
        )
    n = rows[0]["num_test_videos"] if rows else 0
    view = ""
    if config is not None:
        view = (f"{config.test_num_frames} chunks, full {config.image_size[0]} px frames"
                + (" + horizontal flip" if config.test_flip else "") + ", ")
    lines += [
        "",
        f"Conjunction task, {n} test videos ({view}fused pre-softmax scores of both "
        "streams). The head columns evaluate each stream's own classifier "
        "alone; with cross-stream connections the appearance head sees motion-gated "
        "features. Train seconds on 2 shared CPU cores.",
        "",
        f"Command: `{command}`",
    ]
    return "\n".join(lines) + "\n"


FLAGS = flags.FLAGS
PROG = "python -m tfzoo.experiments.conjunction"


def define_flags():
    """The program's flags; defined on demand so that importing this module defines none."""
    flags.DEFINE_string("out", "runs/conjunction", "Output directory.")
    flags.DEFINE_list("models", [n for _, n in RUNS],
                      "Config names to run, comma-separated (default: all three).")
    flags.DEFINE_multi_string("set", [], "Config override applied to every run: "
                              "--set=key=value (repeatable).")
    flags.DEFINE_integer("verbose", 2, "Keras fit verbosity.")


def main(argv) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    labels = {name: label for label, name in RUNS}
    try:
        if len(argv) > 1:
            raise TfzooError(f"unexpected arguments {argv[1:]}; every option is a --flag")
        overrides = cfglib.parse_assignments(FLAGS.set)
        names = [n.strip() for n in FLAGS.models if n.strip()]
        for n in names:
            check_choice("--models entry", n, list(labels))
    except TfzooError as e:
        return report(e, PROG)
    # TensorFlow (through tfzoo.train) once the flags are checked
    args = types.SimpleNamespace(out=FLAGS.out, set=FLAGS.set, verbose=FLAGS.verbose)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    strategy = make_strategy("default")
    rows = []
    for name in names:
        config = cfglib.load_config_file(name).replace(**overrides)
        print(f"[conjunction] {name}: {config.model} {config.model_overrides}", flush=True)
        row = run_one(name, config, out_dir, strategy, args.verbose)
        print(f"[conjunction] {name}: test accuracy {row['test_accuracy']:.4f} "
              f"(rgb head {row['rgb_stream_accuracy']:.4f}, flow head "
              f"{row['flow_stream_accuracy']:.4f}), {row['train_seconds']:.0f} s", flush=True)
        rows.append(row)
    command = COMMAND if args.out == "runs/conjunction" else \
        f"python -m tfzoo.experiments.conjunction --out {args.out}"
    if args.set:
        command += "".join(f" --set {s}" for s in args.set)
    table = markdown(rows, labels, command, config)
    (out_dir / "results.md").write_text(table)
    (out_dir / "results.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=parse_flags)
