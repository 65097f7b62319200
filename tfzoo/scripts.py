"""Console entry points (`[project.scripts]` in pyproject.toml): each runs a program exactly as
`python -m MODULE` does, so the two spellings take the same flags and print the same help.

    tfzoo-train --model=tresnet_small --model_dir=runs/demo    # python -m tfzoo.train ...
    tfzoo-export --model_dir=runs/demo --export_dir=/srv/models
    tfzoo-dev-server --model_name=tresnet_small --model_base_path=/srv/models/tresnet_small
"""

from __future__ import annotations

import runpy

from tfzoo.errors import quiet_tensorflow_start_up

# console script -> the module it runs as __main__
PROGRAMS = {
    "tfzoo-train": "tfzoo.train",
    "tfzoo-evaluate": "tfzoo.evaluate",
    "tfzoo-export": "tfzoo.export",
    "tfzoo-predict": "tfzoo.predict",
    "tfzoo-detect": "tfzoo.detect",
    "tfzoo-prepare": "tfzoo.data.prepare",
    "tfzoo-visualize": "tfzoo.visualize",
    "tfzoo-dev-server": "tfzoo.serving.dev_server",
}


def _run(script: str) -> None:
    # `python -m tfzoo.*` gets this from tfzoo/__init__.py (argv[0] == "-m"); a console
    # script's argv[0] is its own path.
    quiet_tensorflow_start_up()
    runpy.run_module(PROGRAMS[script], run_name="__main__", alter_sys=True)


def train():
    _run("tfzoo-train")


def evaluate():
    _run("tfzoo-evaluate")


def export():
    _run("tfzoo-export")


def predict():
    _run("tfzoo-predict")


def detect():
    _run("tfzoo-detect")


def prepare():
    _run("tfzoo-prepare")


def visualize():
    _run("tfzoo-visualize")


def dev_server():
    _run("tfzoo-dev-server")
