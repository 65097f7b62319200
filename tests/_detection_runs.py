"""Detector runs shared by the R-FCN and D&T tests: the CLIs in a subprocess, the frozen
weights."""

import os
import subprocess
import sys

import keras

from _paths import REPO


def run_cli(module, args):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    return proc.returncode, proc.stdout, proc.stderr


def frozen_state(model):
    """Every weight of the layers the authors' prototxts freeze (conv1, res2: lr_mult 0) and of
    every BatchNorm (gamma, beta and the moving statistics), by path."""
    return {w.path: w.numpy().copy() for layer in model.layers for w in layer.weights
            if layer.name.startswith(("conv1_", "conv2_"))
            or isinstance(layer, keras.layers.BatchNormalization)}
