"""Every shipped config runs end to end on its dataset's official layout (issue 12).

For each configs/*.py whose docstring gives a `python -m tfzoo.data.prepare` command, a tiny
tree in that dataset's layout as distributed is cut from the real clip tests/data/bikes.mp4,
prepared with the docstring's command, and trained with the docstring's `python -m
tfzoo.train` command through every stage and the final test evaluation. Only sizes, steps and
weights are shrunk, by command-line overrides (which win over every stage's value, merging
model sizes into each stage's model options): the splits, stages, schedules and protocols are
the recipe's.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from _data_fixtures import LAYOUT_CLASSES, official_layout
from _runs import shrink_recipe
from tfzoo import config as cfglib
from _paths import REPO

CLIP = REPO / "tests" / "data" / "bikes.mp4"
SHORT_SIDE = 64  # VGG towers need 57 px to reach pool5
CONFIGS = sorted(p.stem for p in cfglib.CONFIG_DIR.glob("*.py") if not p.stem.startswith("_"))
# `make test-e2e` runs the cheapest recipe end to end (YUP++, ~1 min); the UCF101 / HMDB51
# recipes (TV-L1 flow preparation, two-stream stages: 3-9 min each on 2 cores) run with -m slow.
REPRESENTATIVE = {"tresnet50_yuppp"}
OWN_DATA = ("synthetic", "conjunction", "detection_synthetic")  # generated in process
FOLDER_DATA = ("detection",)  # read as they are (no prepare step): tests/models/test_rfcn.py


def _commands(name: str) -> tuple[list[str], list[str]]:
    doc = ast.get_docstring(ast.parse((cfglib.CONFIG_DIR / f"{name}.py").read_text())) or ""
    prep = re.findall(r"python -m tfzoo\.data\.prepare [^\n]*", doc)
    train = re.findall(r"python -m tfzoo\.train [^\n]*", doc)
    return (shlex.split(prep[0])[3:] if prep else [],
            shlex.split(train[0])[3:] if train else [])


def test_every_config_on_a_real_dataset_documents_its_commands():
    for name in CONFIGS:
        config = cfglib.load_config_file(name)
        prep, train = _commands(name)
        if config.dataset in OWN_DATA:
            continue
        if config.dataset in FOLDER_DATA:
            assert not prep and f"--config={name}" in train and "--data=DIR" in train, name
            continue
        assert prep and f"--config={name}" in train and "--data=DIR" in train, name
        dataset = next(a.split("=", 1)[1] for a in prep if a.startswith("--dataset="))
        splits = {s.train_split for _, s in cfglib.stage_configs(config)}
        if dataset in ("ucf101", "hmdb51"):
            # the official splits are train1/test1..; neither dataset has a validation split
            for _, s in cfglib.stage_configs(config):
                assert (s.train_split, s.val_split, s.test_split) == ("train1", None, "test1"), name
        else:
            assert splits == {"train"}, name


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """dataset name -> prepared directory, made with the docstring's prepare command."""
    cache = {}

    def get(prep_args: list[str]) -> Path:
        key = tuple(prep_args)
        if key not in cache:
            dataset = next(a.split("=", 1)[1] for a in prep_args if a.startswith("--dataset="))
            tmp = tmp_path_factory.mktemp(dataset)
            root = official_layout(dataset, tmp / "raw", CLIP)
            args = [f"--root={root}" if a.startswith("--root=") else
                    f"--out={tmp / 'prepared'}" if a.startswith("--out=") else a
                    for a in prep_args]
            proc = subprocess.run(
                [sys.executable, "-m", "tfzoo.data.prepare", *args,
                 f"--short_side={SHORT_SIDE}", "--no_progress"],
                cwd=REPO, capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, proc.stderr[-3000:]
            cache[key] = tmp / "prepared"
        return cache[key]

    return get


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.e2e if n in REPRESENTATIVE else pytest.mark.slow)
    for n in CONFIGS])
def test_config_runs_end_to_end_on_its_dataset_layout(name, prepared, tmp_path):
    config = cfglib.load_config_file(name)
    if config.dataset in OWN_DATA + FOLDER_DATA:
        pytest.skip(f"{name} generates its own {config.dataset} data (tests/data/test_synthetic.py, "
                    f"tests/data/test_conjunction.py)")
    prep, train = _commands(name)
    data = prepared(prep)
    args = [f"--data={data}" if a == "--data=DIR" else a for a in train]
    model_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "tfzoo.train", *args, f"--model_dir={model_dir}", "--verbose=0",
         *shrink_recipe(config)],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    stages = cfglib.stage_configs(config)
    for stage_name, stage in stages:
        run = json.loads((model_dir / "stages" / stage_name / "run.json").read_text())
        # the recipe's structure survived the shrinking: model, splits, schedule, stage options
        assert run["model"] == stage.model
        got = run["config"]
        for key in ("train_split", "val_split", "test_split", "lr_schedule", "num_frames",
                    "stride_range", "train_streams", "test_num_frames", "learning_rate"):
            want = getattr(stage, key)
            assert got[key] == (list(want) if isinstance(want, tuple) else want), (stage_name, key)
        for key, value in stage.model_overrides.items():
            assert got["model_overrides"][key] == (list(value) if isinstance(value, tuple)
                                                   else value), (stage_name, key)
        import csv

        with open(model_dir / "stages" / stage_name / "history.csv") as f:
            rows = list(csv.DictReader(f))
        # a schedule that monitors a metric has it: no val split -> no validation values (Keras
        # writes NA); the plateau then monitors the training loss, which is logged
        assert rows and all(float(r["loss"]) >= 0 for r in rows), rows
        assert all(v == "NA" for r in rows for k, v in r.items() if k.startswith("val_")), rows
    from tfzoo.evaluate import read_metrics
    from tfzoo.protocols import protocol_of
    from tfzoo.rundir import read_run_info

    final = stages[-1][1]
    # every stage saved its model; each later stage started from the previous one's weights
    for stage_name, _ in stages:
        assert (model_dir / "stages" / stage_name / "model.keras").exists(), stage_name
    assert proc.stdout.count("[tfzoo] initialised ") >= len(stages) - 1, proc.stdout[-3000:]
    layout = next(a.split("=", 1)[1] for a in prep if a.startswith("--dataset="))
    info = read_run_info(model_dir)
    assert info.model == final.model and info.class_names == list(LAYOUT_CLASSES[layout])
    by_split = read_metrics(model_dir)
    assert list(by_split) == [final.test_split], by_split  # evaluated on the run's test split only
    metrics = by_split[final.test_split]
    assert metrics["split"] == final.test_split
    test = protocol_of(final)
    if test.name == "custom":
        assert metrics["protocol"].startswith(f"{final.test_num_frames} equally spaced frames")
    else:  # a named protocol of tfzoo.protocols
        assert metrics["protocol"] == test.describe(final.num_frames), metrics["protocol"]
    manifest = json.loads((data / "manifest.json").read_text())
    assert metrics["num_videos"] == manifest["splits"][final.test_split] > 0


@pytest.mark.parametrize("name", ["mulnet50_152_ucf101", "mulnet50_152_hmdb51"])
def test_mulnet_stage_1_trains_the_streams_separately(name):
    # §5.4.1: the streams are trained separately first, the appearance stream at batch 256
    stages = dict(cfglib.stage_configs(cfglib.load_config_file(name)))
    rgb, flow, final = stages["1-appearance"], stages["2-motion"], stages["3-mulnet"]
    assert (rgb.train_streams, rgb.batch_size * rgb.grad_accum_steps) == (("rgb",), 256)
    assert (flow.train_streams, flow.batch_size * flow.grad_accum_steps) == (("flow",), 128)
    assert rgb.model_overrides["fusion"] == flow.model_overrides["fusion"] == "none"
    assert final.train_streams is None and final.batch_size * final.grad_accum_steps == 128
