"""The demo's last step and the evaluate CLI, on a tiny trained model directory."""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from export.saved_model import export_saved_model
from tfzoo import train
from tfzoo.config import TrainConfig
from tfzoo.demo import classify_with_export
from tfzoo.rundir import load_model

from _runs import TINY
from _paths import REPO


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    config = TrainConfig(model="tresnet_small").replace(**TINY, epochs=1, steps_per_epoch=2)
    train.run(config, d, tf.distribute.get_strategy(), evaluate=False, verbose=0)
    return d


@pytest.mark.e2e
def test_real_clip_through_the_export_matches_keras(tiny_run, bikes_path, tmp_path):
    model, info = load_model(tiny_run)
    path = export_saved_model(model, info, tmp_path)
    top, shape = classify_with_export(path, bikes_path, num_frames=4, short_side=32)
    assert tuple(shape) == (1, 4, 32, 75, 3)  # 640x272 resized to shorter side 32
    labels = [label for label, _ in top]
    assert set(labels) <= set(info.class_names) and len(set(labels)) == len(labels)
    probs = [p for _, p in top]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-5
    # The export's top class is the Keras model's on the same frames.
    from tfzoo.video import test_indices
    from tfzoo.video import read_video

    frames = read_video(bikes_path, short_side=32)
    clip = frames[test_indices(len(frames), 4).numpy()][None].astype(np.float32)
    expected = info.class_names[int(np.argmax(model(clip)[0]))]
    assert labels[0] == expected


@pytest.mark.e2e
def test_evaluate_cli(tiny_run, tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "tfzoo.evaluate", *a], cwd=REPO,
                                    capture_output=True, text=True, timeout=300)
    ok = run(f"--model_dir={tiny_run}")
    assert ok.returncode == 0, ok.stderr
    assert "accuracy" in ok.stdout and "stop_and_go" in ok.stdout
    bad = run(f"--model_dir={tmp_path}")
    assert bad.returncode == 2
    assert "is not a tfzoo model directory" in bad.stderr and "Traceback" not in bad.stderr
