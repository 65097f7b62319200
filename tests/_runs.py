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
    for key, value in TINY.items():
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
