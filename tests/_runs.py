"""The tiny training recipe and the train CLI in a subprocess, shared by the training, demo and
data-service tests."""

import os
import socket
import subprocess
import sys

from _paths import REPO

TINY = {
    "model_overrides": "{'blocks': (1, 1, 1, 1), 'width': 4}",
    "dataset_options": "{'size': 32, 'video_frames': 12, 'videos_per_class': (2, 1, 1)}",
    "image_size": "(32, 32)",
    "num_frames": "4",
    "test_num_frames": "4",
    "stride_range": "(1, 2)",
    "batch_size": "4",
    "lr_schedule": "'constant'",
}


def cli(*args, env=None, **kwargs):
    cmd = [sys.executable, "-m", "tfzoo.train", "--verbose=2", *args]
    given = {a.split("=", 2)[1] for a in args if a.startswith("--set=")}
    for key, value in TINY.items():
        if key not in given:  # the caller's --set wins
            cmd.append(f"--set={key}={value}")
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def finish(proc, timeout=300):
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shrink_recipe(config) -> list[str]:
    """`python -m tfzoo.train` flags shrinking a recipe's sizes only: the registry's tiny model
    sizes, tiny frames, one step per epoch, one epoch per stage, batch 2, no downloaded
    weights (tests/train/test_recipes_e2e.py, tests/cli/test_docs_commands.py)."""
    from tfzoo import config as cfglib
    from tfzoo.registry import get_entry

    tiny, size = {}, 32
    for _, stage in cfglib.stage_configs(config):
        entry = get_entry(stage.model)
        tiny.update(entry.test_overrides or {})
        size = max(size, (entry.test_input or {}).get("size", 32))
    return ["--steps=1", "--epochs=1", "--batch_size=2",
            "--set", "weights=None", "--set", f"image_size=({size},{size})",
            "--set", f"test_short_side={size}", "--set", f"model_overrides={tiny!r}"]
