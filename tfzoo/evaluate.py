"""Evaluate a trained model: `python -m tfzoo.evaluate --model_dir=DIR [--split=test1]`.

The papers' tables report the mean accuracy over the three official UCF101 / HMDB51 splits,
one model trained per split (thesis §3.4, Tables 3.5, 4.3, 5.5):

    for k in 1 2 3; do python -m tfzoo.train --config=stresnet50_ucf101 --data=DIR \
        --set train_split=train$k --set test_split=test$k --model_dir=runs/st_split$k; done
    python -m tfzoo.evaluate --model_dir='runs/st_split{split}' --splits=1,2,3

evaluates each run on its own test split (`test<k>`, which must be the split it was trained
for) and prints the per-split and mean accuracy (also `splits.json` next to the runs).

The test protocol is the run's `test_protocol` (`tfzoo.protocols`: chunks5_flip,
chunks16_flip, chunks25_flip, dense20, crop10), or another with `--protocol=NAME`: e.g.
chunks25_flip (thesis §4.3.5) takes 25 equally spaced chunks of each video, the full frame
(fully convolutional: the model averages over all spatial and temporal locations) and its
horizontal flip, pre-softmax scores averaged, one forward pass per view; the task
(`ClassificationTask.predict`) averages the views. A run without a named protocol tests
`test_num_frames` chunks, full frame, + flip if `test_flip` (or `--flip`).

A D&T model (`dt`, `dt_resnet101`) is scored per frame (D) and after linking its detections
into tubes, offline and online, at each temporal stride of the run's `link_strides` (default
1 and 10) or of `--link_strides=1,4,10` (tfzoo.tasks.detection.evaluate_linked).

Writes the metrics (accuracy, mean class accuracy, per-class accuracy, confusion matrix) into
the model directory's `metrics.json`, one entry per split (`{"test": {...}, "val": {...}}`):
evaluating another split never replaces a split's numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from absl import app, flags

from tfzoo import config as cfglib
from tfzoo.config import ConfigError
from tfzoo.errors import TfzooError, report
from tfzoo.protocols import protocol_of
from tfzoo.recipes import dataset_splits
from tfzoo.rundir import atomic_write_text, read_run_info
from tfzoo.utils import check_choice

FLAGS = flags.FLAGS


def define_flags():
    """CLI flags; defined on demand so that importing this module defines none."""
    flags.DEFINE_string("model_dir", None, "A directory written by `python -m tfzoo.train`.")
    flags.DEFINE_string("split", None, "Split to evaluate (default: the run's test_split).")
    flags.DEFINE_list("splits", None, "Official split numbers, e.g. 1,2,3: evaluates "
                      "--model_dir with {split} replaced by each on test<k>; prints the mean.")
    flags.DEFINE_string("data", None, "Prepared data directory (default: the one trained on).")
    flags.DEFINE_bool("flip", None, "Average with the horizontal flip (default: the config's); "
                      "only without a named test protocol.")
    flags.DEFINE_string("protocol", None, "Named test protocol (tfzoo.protocols: chunks5_flip, "
                        "chunks16_flip, chunks25_flip, dense20, crop10); default: the run's.")
    flags.DEFINE_list("link_strides", None, "D&T models: temporal strides tau at which the "
                      "linked detections are scored, e.g. 1,4,10 (default: the run's "
                      "link_strides, (1, 10)).")


def evaluate_model_dir(model_dir, *, split: str | None = None, source=None, data_dir=None,
                       flip=None, protocol: str | None = None, link_strides=None) -> dict:
    """Evaluates the model in `model_dir` on `split` (default: the run's `test_split`) with its
    test protocol (or the named `protocol`), stores it as that split's entry of `metrics.json`
    (other splits' entries are kept) and returns its metrics. `link_strides`: a D&T model's
    temporal strides (default: the run's `link_strides`)."""
    from tfzoo.sources import make_source  # deferred: loads TensorFlow
    from tfzoo.tasks import get_task  # deferred: loads TensorFlow

    model_dir = Path(model_dir)
    info = read_run_info(model_dir)
    known = {k: v for k, v in info.config.items() if k in cfglib.FIELDS}
    config = cfglib.TrainConfig().replace(**known)
    if protocol is not None:
        config = config.replace(test_protocol=protocol)
    if link_strides is not None:
        config = config.replace(link_strides=tuple(link_strides))
    if flip is not None and config.test_protocol is not None:
        raise cfglib.ConfigError(
            f"--flip applies to tests without a named protocol; test protocol "
            f"{config.test_protocol!r} fixes its flips (pick a protocol instead)")
    if data_dir:
        # Options of another kind of dataset (the synthetic set's size, ...) do not apply.
        from tfzoo.sources import folder_dataset  # deferred: loads TensorFlow

        kind = folder_dataset(config.dataset)
        options = config.dataset_options if config.dataset == kind else {}
        config = config.replace(dataset=kind, data_dir=data_dir, dataset_options=options)
    model = None
    if link_strides is not None:  # before the data: strides apply to D&T models only
        model, info = _open_run(model_dir)
        if not hasattr(model, "detect_track"):
            raise cfglib.ConfigError(
                f"link_strides={tuple(link_strides)}: {info.model} is not a D&T model (no "
                "detect_track); temporal strides apply to D&T's linked evaluation only")
    source = source or make_source(config)
    if list(source.info.class_names) != list(info.class_names):
        raise cfglib.ConfigError(
            f"{model_dir} was trained on classes {info.class_names[:5]}...; the data has "
            f"{source.info.class_names[:5]}..."
        )
    if split is None:
        available = [k for k, n in source.info.num_videos.items() if n]
        split = dataset_splits(source.info.name, available, {"test_split": config.test_split}
                               ).get("test_split", config.test_split)
        if split != config.test_split:
            print(f"[tfzoo] the data has no split {config.test_split!r} (the run's test split); "
                  f"{source.info.name}'s is {split!r} (--split=NAME for another)", flush=True)
    check_choice("split", split, [k for k, n in source.info.num_videos.items() if n])
    if model is None:
        model, info = _open_run(model_dir)
    flip = protocol_of(config).flip if flip is None else flip
    # What is measured, and how, is the model's task's (tfzoo.tasks): accuracy with the run's
    # test protocol for a classifier, VID mAP for a detector.
    task = get_task(model)
    metrics = task.evaluate(model, source, split, config, flip=flip)
    metrics.update(split=split, model=info.model, task=task.name)
    by_split = read_metrics(model_dir)
    by_split[split] = metrics
    atomic_write_text(model_dir / METRICS_FILE, json.dumps(by_split, indent=2) + "\n")
    return metrics


METRICS_FILE = "metrics.json"


def _open_run(model_dir):
    """(Keras model, RunInfo) of a run directory, opened as predict and detect open a model
    (`tfzoo.runnable.load_runnable`). The task scores the Keras model itself: its test views
    (`ClassificationTask.predict`) or its `detect`/`detect_track`, which a Runnable's
    classifier or tracker window does not offer."""
    from tfzoo.runnable import KerasRunnable, load_runnable  # deferred: loads TensorFlow

    runnable = load_runnable(model_dir)
    if not isinstance(runnable, KerasRunnable):
        raise TfzooError(f"{model_dir} is a SavedModel; evaluate scores a training run's "
                         "directory (run.json, model.keras)")
    return runnable.model, runnable.run_info


def read_metrics(model_dir, split: str | None = None) -> dict:
    """`metrics.json` as {split: metrics}, or one split's metrics ({} when not evaluated)."""
    path = Path(model_dir) / METRICS_FILE
    by_split = json.loads(path.read_text()) if path.exists() else {}
    if "accuracy" in by_split:  # written by tfzoo before per-split entries: one split
        by_split = {by_split.get("split", "test"): by_split}
    return by_split if split is None else by_split.get(split, {})


def evaluate_splits(model_dir_pattern: str, splits, *, data_dir=None, flip=None,
                    protocol: str | None = None) -> dict:
    """Mean accuracy over official splits: `model_dir_pattern` with `{split}` replaced by each
    k in `splits` is a run trained on `train<k>`; it is evaluated on `test<k>`."""
    if "{split}" not in model_dir_pattern and len(splits) > 1:
        raise ConfigError(f"--splits={','.join(map(str, splits))} needs a --model_dir with "
                          f"{{split}} (one run per split), got {model_dir_pattern!r}")
    per_split = {}
    for k in splits:
        d = Path(model_dir_pattern.replace("{split}", str(k)))
        trained = read_run_info(d).config.get("test_split")
        if trained != f"test{k}":
            raise ConfigError(f"{d} was trained for test split {trained!r}, not 'test{k}': "
                              f"each split needs its own run (train{k} / test{k})")
        per_split[str(k)] = evaluate_model_dir(d, split=f"test{k}", data_dir=data_dir, flip=flip,
                                             protocol=protocol)
    accs = [m["accuracy"] for m in per_split.values()]
    summary = {"splits": {k: m["accuracy"] for k, m in per_split.items()},
               "mean_accuracy": float(np.mean(accs)),
               "mean_class_accuracy": float(np.mean([m["mean_class_accuracy"]
                                                     for m in per_split.values()]))}
    out = Path(model_dir_pattern.replace("{split}", "all")).parent / "splits.json"
    atomic_write_text(out, json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")

    if FLAGS.splits:
        try:
            bad = [k for k in FLAGS.splits if not k.isdigit()]
            if bad:
                raise TfzooError(f"--splits={','.join(FLAGS.splits)}: {bad[0]!r} is not a split "
                                 "number; expected e.g. --splits=1,2,3")
            splits = [int(k) for k in FLAGS.splits]
            s = evaluate_splits(FLAGS.model_dir, splits, data_dir=FLAGS.data, flip=FLAGS.flip,
                                protocol=FLAGS.protocol)
        except TfzooError as e:
            return report(e, "python -m tfzoo.evaluate")
        for k, acc in s["splits"].items():
            print(f"split {k}: accuracy {acc:.4f}")
        print(f"mean accuracy over splits {','.join(s['splits'])}: {s['mean_accuracy']:.4f}")
        return 0
    try:
        if not FLAGS.model_dir:
            raise TfzooError("--model_dir is required: a directory written by "
                             "`python -m tfzoo.train`")
        strides = None
        if FLAGS.link_strides:
            bad = [k for k in FLAGS.link_strides if not k.isdigit() or int(k) < 1]
            if bad:
                raise TfzooError(f"--link_strides={','.join(FLAGS.link_strides)}: {bad[0]!r} is "
                                 "not a temporal stride; expected positive integers, e.g. "
                                 "--link_strides=1,4,10")
            strides = [int(k) for k in FLAGS.link_strides]
        m = evaluate_model_dir(FLAGS.model_dir, split=FLAGS.split, data_dir=FLAGS.data,
                               flip=FLAGS.flip, protocol=FLAGS.protocol, link_strides=strides)
    except TfzooError as e:
        return report(e, "python -m tfzoo.evaluate")
    from tfzoo.tasks import get_task  # deferred: loads TensorFlow

    for line in get_task(m["task"]).describe(m):
        print(line)
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
