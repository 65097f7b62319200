"""`python -m tfzoo.evaluate --splits=1,2,...`: the mean accuracy over official splits, one run
per split (thesis §3.4: "report mean average accuracy over three splits"; Tables 3.5, 4.3, 5.5)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import tensorflow as tf

from _data_fixtures import bikes_frames, make_ucf101
from tfzoo import train
from tfzoo.config import ConfigError, TrainConfig
from tfzoo.data.prepare import prepare
from tfzoo.evaluate import evaluate_model_dir, evaluate_splits
from _paths import REPO



@pytest.mark.slow  # two training runs and three evaluations: minutes on a loaded 2-core machine
def test_mean_over_official_splits(tmp_path):
    make_ucf101(tmp_path / "raw", bikes_frames(REPO / "tests/data/bikes.mp4", 32, 40),
                classes=("ApplyEyeMakeup", "Biking"), groups=2)
    data = tmp_path / "prepared"
    prepare("ucf101", tmp_path / "raw", data, short_side=32, progress=False)
    base = TrainConfig(
        model="resnet_small", model_overrides={"blocks": (1, 1, 1, 1), "width": 4},
        dataset="records", data_dir=str(data), val_split=None, num_frames=1,
        stride_range=(1, 1), image_size=(32, 32), test_num_frames=3, batch_size=1, epochs=1,
        steps_per_epoch=1, lr_schedule="constant")
    for k in (1, 2):
        train.run(base.replace(train_split=f"train{k}", test_split=f"test{k}"),
                  tmp_path / f"run_split{k}", tf.distribute.get_strategy(), verbose=0)
    pattern = str(tmp_path / "run_split{split}")
    summary = evaluate_splits(pattern, [1, 2])
    per = [evaluate_model_dir(tmp_path / f"run_split{k}", split=f"test{k}")["accuracy"]
           for k in (1, 2)]
    assert summary["splits"] == {"1": per[0], "2": per[1]}
    assert summary["mean_accuracy"] == pytest.approx(sum(per) / 2)
    assert json.loads((tmp_path / "splits.json").read_text()) == summary
    proc = subprocess.run([sys.executable, "-m", "tfzoo.evaluate", f"--model_dir={pattern}",
                           "--splits=1,2"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"mean accuracy over splits 1,2: {sum(per) / 2:.4f}" in proc.stdout
    # a run trained for split 1 is never scored on test2 (it trained on those videos)
    with pytest.raises(ConfigError, match="test2"):
        evaluate_splits(str(tmp_path / "run_split1"), [2])


@pytest.mark.e2e
def test_official_dataset_trains_and_evaluates_on_split_1_by_default(tmp_path):
    """Issue 24 item 2: `--model --data` alone on a prepared UCF101 trains on train1 and tests
    on test1 (said at the start, recorded in run.json); --set still overrides; evaluate of a
    run whose test split the data lacks picks the dataset's split 1 too."""
    make_ucf101(tmp_path / "raw", bikes_frames(REPO / "tests/data/bikes.mp4", 32, 40),
                classes=("ApplyEyeMakeup", "Biking"), groups=2)
    data = tmp_path / "prepared"
    prepare("ucf101", tmp_path / "raw", data, short_side=32, progress=False)
    tiny = ["--set=model_overrides={'blocks': (1, 1, 1, 1), 'width': 4}", "--set=num_frames=1",
            "--set=stride_range=(1, 1)", "--set=image_size=(32, 32)", "--set=test_num_frames=2",
            "--batch_size=1", "--epochs=1", "--steps=1", "--set=lr_schedule='constant'",
            "--verbose=0"]
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "tfzoo.train", "--model=resnet_small",
                           f"--data={data}", f"--model_dir={run}", *tiny],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "training on train1, no validation, testing on test1" in proc.stdout
    config = json.loads((run / "run.json").read_text())["config"]
    assert (config["train_split"], config["val_split"], config["test_split"]) == (
        "train1", None, "test1")
    assert list(json.loads((run / "metrics.json").read_text())) == ["test1"]

    # An explicit split wins (resolved without training: the config is what would run).
    from absl import flags

    before = set(flags.FLAGS)
    train.define_flags() if "restart" not in flags.FLAGS else None
    flags.FLAGS.unparse_flags()
    try:
        flags.FLAGS(["train", "--model=resnet_small", f"--data={data}",
                     "--set=train_split=train2", "--set=test_split=test2"])
        resolved = train.resolve_config()
    finally:
        flags.FLAGS.unparse_flags()
        for name in set(flags.FLAGS) - before:  # the next program in this worker defines its own
            delattr(flags.FLAGS, name)
    assert (resolved.train_split, resolved.val_split, resolved.test_split) == (
        "train2", None, "test2")

    # A run whose recorded test split the data lacks (trained before this default existed).
    info = json.loads((run / "run.json").read_text())
    info["config"]["test_split"] = "test"
    (run / "run.json").write_text(json.dumps(info))
    metrics = evaluate_model_dir(run)
    assert metrics["split"] == "test1" and metrics["num_videos"] == 2
