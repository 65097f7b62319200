"""A new user's train -> export -> serve prints nothing on stderr that is not theirs (issue 24
item 14): no AutoGraph lambda warning, no Keras `shuffle` warning, no val_loss-unavailable
warning from the plateau schedule of a run without validation videos, no TF INFO lines with
temporary paths from export, no TF deprecation notice or C++ start-up lines from the dev
server; and the progress bar counts a run's epochs when it resumes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import pytest
from _paths import REPO

ENV = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user has it
TINY = ["--set=model_overrides={'blocks': (1, 1, 1, 1), 'width': 4}",
        # no validation videos: the plateau schedule must watch the training loss
        "--set=dataset_options={'size': 32, 'video_frames': 12, 'videos_per_class': (2, 0, 1)}",
        "--set=image_size=(32, 32)", "--set=num_frames=4", "--set=test_num_frames=4",
        "--set=stride_range=(1, 2)", "--batch_size=4", "--set=lr_schedule='plateau'",
        "--verbose=2"]


def _run(*args, timeout=900):
    return subprocess.run([sys.executable, *args], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("quiet") / "run"
    proc = _run("-m", "tfzoo.train", "--model=tresnet_small", f"--model_dir={run}",
                "--epochs=2", "--steps=2", "--noevaluate", *TINY)
    return run, proc


@pytest.mark.e2e
def test_train_stderr_is_clean(trained):
    run, proc = trained
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == "", proc.stderr
    assert re.findall(r"^Epoch (\d+)/(\d+)", proc.stdout, re.M) == [("1", "2"), ("2", "2")]


def test_resumed_run_counts_the_runs_epochs(tmp_path):
    """A run resumed mid-epoch fits the rest of that epoch separately: still "Epoch 2/3",
    then "Epoch 3/3" (Keras alone printed "Epoch 2/2", then "Epoch 3/3")."""
    import keras
    import numpy as np

    from tfzoo.backup import RunProgress

    inp = keras.Input((2,))
    model = keras.Model(inp, keras.layers.Dense(1)(inp))
    model.compile(optimizer="sgd", loss="mse")
    x = np.zeros((4, 2), "float32")
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        model.fit(x, x[:, :1], initial_epoch=1, epochs=2, steps_per_epoch=1, verbose=2,
                  callbacks=[RunProgress(3)])
        model.fit(x, x[:, :1], initial_epoch=2, epochs=3, steps_per_epoch=2, verbose=2,
                  callbacks=[RunProgress(3)])
    assert re.findall(r"Epoch (\d+/\d+)", out.getvalue()) == ["2/3", "3/3"]


@pytest.mark.e2e
def test_export_and_dev_server_start_stderr_is_clean(trained, tmp_path):
    run, proc = trained
    assert proc.returncode == 0, proc.stderr[-3000:]
    exp = _run("-m", "export", f"--model_dir={run}", f"--export_dir={tmp_path}")
    assert exp.returncode == 0, exp.stderr[-3000:]
    assert exp.stderr == "", exp.stderr
    assert exp.stdout.strip() == str(tmp_path / "tresnet_small" / "1")

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "serving.dev_server", "--model_name=tresnet_small",
         f"--model_base_path={tmp_path / 'tresnet_small'}", "--port=0",
         f"--rest_api_port={port}"], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            line = server.stderr.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("dev_server: REST on "):
                break
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert lines and lines[-1].startswith("dev_server: REST on "), "".join(lines)
    # Only the server's own lines: what it loaded and where it listens.
    assert all(line.startswith("dev_server: ") for line in lines), "".join(lines)
    assert any("loaded tresnet_small version 1" in line for line in lines), "".join(lines)
