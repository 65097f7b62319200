"""Every command in README.md and docs/*.md runs as a test, or is parsed by its program's own
flag parser where it cannot run here (issue 24 item 11): docs cannot drift from the programs.

Commands are the lines of the shell (and untagged) fenced blocks whose program is `python`,
`saved_model_cli`, `curl`, `docker` or `make` (continuation lines joined, comments and output
dropped; a line of `[--optional]` flags continues a synopsis; a line of flags alone under a
comment is a variant of the command above it). Each one
has a row in `ROWS`, which says how it is checked:

- `run`: runs in the default suite, in a temporary workspace (below);
- `slow`: runs with `-m slow` in that workspace (a tiny training, an export, a server...);
- `parse`: not run here (a cluster, a dataset host, a Docker image), its flags parsed;
- `dry_run`: a make target, checked by `make -n`.

Every `python -m` command, whatever its row says, is parsed by its own program's flag parser
(tests/_parse_only.py) in the default suite: an unknown flag, a bad value, a missing required
flag or a stray argument fails here. A documented command without a row fails, and so does a row
whose command is no longer documented.

The workspace is a temporary directory laid out as the docs assume: `tests/data/bikes.mp4`,
`serving/` (the shipped config files), `clip.mp4` (a short cut of bikes.mp4), and `~` (HOME)
holding tiny trees in each dataset's official layout (`~/UCF101`, `~/HMDB51`, `~/YUP++`,
`~/ILSVRC2015`, `~/my_videos`; tests/_data_fixtures.py). `/srv/models` is the workspace's
`srv/models`, and the documented ports (8500, 8501, 5050, 5051) are free ports chosen per run.
A command runs as written, through bash, with three kinds of visible change that each row
lists: placeholders (`DIR`, `IN.mp4`, ...) filled in (`subs`), optional `[--flag]` groups kept
and `a|b` alternatives taking the first, and overrides appended (`extra`: `--epochs=1`, tiny
model sizes, fewer steps), which win over the documented values. A row's `needs` are the
workspace pieces and the other documented commands it depends on (run first if they have not
run). A run passes when the program exits 0 and writes what `creates` names; a row that needs
an optional extra (`requires`, e.g. Apache Beam) is skipped, naming it, where it is not
installed. `DOCS_WORKSPACE=DIR` keeps the workspace between runs (trainings resume), and each
command's exit code and time are appended to its `commands.log`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest
from _paths import BIKES, REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PROGRAMS = ("python", "saved_model_cli", "curl", "docker", "make")

# Where each documented program's own behaviour is tested (by its CLI, the same flags).
RUN_BY = {
    "tfzoo.train": "train/test_train.py",
    "tfzoo.evaluate": "train/test_evaluate_splits.py",
    "tfzoo.predict": "predict/test_predict.py",
    "tfzoo.visualize": "visualize/test_visualize.py",
    "tfzoo.visualize.bench": "visualize/test_visualize_regularizers.py",
    "tfzoo.data.prepare": "data/test_data_prepare.py",
    "tfzoo.detect": "detection/test_detection_video.py",
    "tfzoo.detection.synthetic": "detection/test_detection_synthetic.py",
    "tfzoo.flow": "flow/test_flow.py",
    "tfzoo.flow.train": "flow/test_flow.py",
    "tfzoo.bench": "cli/test_bench.py",
    "export": "export/test_export.py",
    "serving.dev_server": "serving/test_serving.py",
    "serving.client": "serving/test_serving.py",
    "serving.loadtest": "serving/test_serving.py",
    "tfzoo.experiments.conjunction": "data/test_conjunction.py",
    "tfzoo.demo": "train/test_demo.py",
    "tfzoo.data.service": "data/test_data_service.py",
    "tfzoo.visualize.maximize_bench": "visualize/test_visualize_regularizers.py",
}


# --------------------------------------------------------------------------- extraction

def _strip_comment(line: str) -> str:
    """The line without its trailing `# comment` (a `#` outside quotes after a blank)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _program(text: str) -> str | None:
    """The command's program (after `NAME=value` environment assignments), or None."""
    try:
        tokens = shlex.split(text)
    except ValueError:
        return None
    while tokens and re.fullmatch(r"[A-Z_]+=.*", tokens[0]):
        tokens = tokens[1:]
    return tokens[0] if tokens and tokens[0] in PROGRAMS else None


def documented_commands(path: Path) -> list[str]:
    """The commands of the shell (or untagged) fenced blocks of a Markdown file."""
    out, lang, block = [], None, []
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            if lang is None:
                lang, block = line[3:].strip() or "text", []
                continue
            if lang in ("sh", "bash", "shell", "text"):
                out += _block_commands(block)
            lang = None
        elif lang is not None:
            block.append(line)
    return out


def _block_commands(lines: list[str]) -> list[str]:
    out, current, base = [], "", None
    for line in lines:
        text = _strip_comment(line)
        current = f"{current} {text.strip()}" if current else text.strip()
        if current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        text, current = re.sub(r"\s+", " ", current).strip(), ""
        if not text:
            continue
        if text.startswith("[--") and out:  # a synopsis's next line of optional flags
            out[-1] = base = f"{out[-1]} {text}"
        elif text.startswith("--") and base:
            # a variant of the command above: its flag replaced by this one
            name = text[2:].split("=", 1)[0]
            out.append(re.sub(rf'\s--{name}=("(?:[^"\\]|\\.)*"|\S+)', "", base) + f" {text}")
        elif _program(text):
            out.append(text)
            base = text
    return out


def inline_commands(path: Path) -> list[str]:
    """`python -m MODULE --flag...` code spans of the prose (outside fenced blocks) with a flag
    and no `...` (an abbreviation): parsed like the blocks' commands, not run."""
    prose = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    out = []
    for span in re.findall(r"`(python -m [^`]+)`", prose):
        span = re.sub(r"\s+", " ", span).strip()
        if " --" in span and "..." not in span and not re.match(r"python -m \S+:", span):
            out.append(span)
    return out


COMMANDS = [(p.relative_to(REPO).as_posix(), c) for p in DOCS for c in documented_commands(p)]
UNIQUE = list(dict.fromkeys(c for _, c in COMMANDS))
INLINE = list(dict.fromkeys(c for p in DOCS for c in inline_commands(p) if c not in UNIQUE))


# --------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class Row:
    how: str                 # run | slow | parse | dry_run
    why: str = ""            # parse/dry_run: why it is not run; otherwise what extra shrinks
    subs: tuple = ()         # (text in the command, replacement)
    extra: tuple = ()        # overrides appended to the command (they win)
    needs: tuple = ()        # workspace pieces and names of other rows, made first
    name: str = ""           # other rows' `needs` refer to this row by it
    creates: tuple = ()      # paths (in the workspace) the command writes
    background: str = ""     # a server: started, then `background` (a URL or "port:N") awaited
    flags_after: str = ""    # parse: the flags start after this token (docker's image)
    parser: str = ""         # parse: the program whose parser reads them (if not python -m)
    requires: str = ""       # an optional extra's module: without it the run is skipped


def _sets(**values) -> tuple:
    return tuple(a for k, v in values.items() for a in ("--set", f"{k}={v}"))


# The shrinking overrides (sizes, steps and epochs only; the recipe is the command's).
EPOCH = ("--epochs=1", "--steps=1")
TRESNET_TINY = EPOCH + _sets(
    model_overrides="{'blocks': (1, 1, 2, 1), 'width': 4}",
    dataset_options="{'size': 32, 'video_frames': 12, 'videos_per_class': (2, 1, 1)}",
    image_size="(32, 32)", num_frames="4", test_num_frames="4", stride_range="(1, 2)",
    batch_size="4")
RFCN_TINY_MODEL = ("{'blocks': (1, 1, 1, 1), 'width': 8, 'k': 3, 'head_channels': 32, "
                   "'rpn_channels': 32, 'anchor_scales': (1, 2, 4), 'short_side': None, "
                   "'max_side': None")
SYNTHETIC_DET = "{'videos': (2, 1), 'frames': 3, 'height': 64, 'width': 96, 'size': (16, 28)}"
RFCN_TINY = ("--epochs=1", "--steps=2", "--batch_size=2") + _sets(
    image_size="(64,96)", dataset_options=f"{{'synthetic': {SYNTHETIC_DET}}}",
    model_overrides=RFCN_TINY_MODEL + "}")
DT_TINY = ("--epochs=1", "--steps=2", "--batch_size=2") + _sets(
    image_size="(64,96)", dataset_options=f"{{'pairs': True, 'synthetic': {SYNTHETIC_DET}}}",
    model_overrides=RFCN_TINY_MODEL + ", 'max_displacement': 2}")
CONJ_TINY = EPOCH + _sets(
    dataset_options="{'flow_stack': 2, 'videos_per_class': (2, 1, 2), 'size': 32, "
                    "'video_frames': 6, 'radius': (6.0, 7.0), 'period': (6.0, 8.0)}",
    image_size="(32, 32)", num_frames="2", test_num_frames="2", batch_size="2",
    model_overrides="{'blocks': (2, 2, 2, 2), 'width': 4}")  # merged into the recipe's
COMPARE_TINY = ("--frames=2", "--size=32", "--runs=1", "--warmup=1")
BENCH_TINY = COMPARE_TINY + ("--override=width=4", "--override=blocks=[1,1,1,1]")
BENCH_WHY = "2 frames of 32 px, width 4, one block per stage"
VIS_TINY = ("--steps=2", "--a_hat_batches=1")
PREPARE_TINY = ("--short_side=64", "--no_progress")
PREDICT_BENCH_TINY = ("--seconds=2", "--rounds=1", "--size=32")
LOADTEST_TINY = ("--clients=1", "--requests=2", "--max_seconds=10", "--rounds=1", "--frames=4",
                 "--size=32")
DEMO = "python -m tfzoo.demo --model_dir=runs/demo"  # the Makefile's demo line (checked below)


def _recipe(name: str) -> tuple:
    from _runs import shrink_recipe

    from tfzoo import config as cfglib

    return tuple(shrink_recipe(cfglib.load_config_file(name)))


CLUSTER = "a cluster of hosts (HOST placeholders)"
ROWS: dict[str, Row] = {
    # README.md ------------------------------------------------------------------------------
    "make demo": Row("slow", "the Makefile's demo line, one epoch", name="demo",
                     extra=("--epochs=1",), creates=("runs/demo/export/tresnet_small/1",
                                                     "runs/demo/metrics.json")),
    "make test": Row("dry_run", "the suite itself"),
    "python -m tfzoo.predict --model_dir=runs/demo --video=tests/data/bikes.mp4 --window=16 "
    "--stride=8 --top_k=3 --json=bikes.json --plot=bikes.png":
        Row("slow", needs=("demo",), creates=("bikes.json", "bikes.png")),
    "python -m tfzoo.bench --model=resnet50 --model=tresnet50 --frames=16 --size=224 --batch=1 "
    "--precision=float32,mixed_bfloat16": Row("slow", BENCH_WHY, extra=BENCH_TINY),
    "python -m tfzoo.train --model=tresnet": Row("slow", "tiny sizes, one step",
                                                 extra=TRESNET_TINY, name="tresnet",
                                                 creates=("runs/tresnet/metrics.json",)),
    "python -m tfzoo.train --config=tresnet50_yuppp --data=data/yuppp":
        Row("slow", "the recipe shrunk (tests/_runs.shrink_recipe)", extra=("@tresnet50_yuppp",),
            needs=("prepare_yuppp",), name="yuppp_run",
            creates=("runs/tresnet50_yuppp/model.keras",)),
    "python -m tfzoo.train --model=tresnet --strategy=mirrored":
        Row("slow", "tiny sizes; its own run directory (runs/tresnet holds the default "
            "strategy's run)", extra=TRESNET_TINY + ("--model_dir=runs/tresnet_mirrored",),
            creates=("runs/tresnet_mirrored/model.keras",)),
    "TF_CONFIG='{...}' python -m tfzoo.train ... --strategy=multi_worker":
        Row("parse", "TF_CONFIG names a cluster of workers"),
    "python -m tfzoo.train --model=tresnet --set learning_rate=0.01 --set 'image_size=(64,64)'":
        Row("slow", "tiny sizes at 64 px; its own run directory",
            extra=TRESNET_TINY + _sets(image_size="(64,64)", dataset_options="{'size': 64, "
                                       "'video_frames': 12, 'videos_per_class': (2, 1, 1)}")
            + ("--model_dir=runs/tresnet_lr",), creates=("runs/tresnet_lr/model.keras",)),
    "python -m tfzoo.evaluate --model_dir=runs/demo [--split=test]":
        Row("slow", needs=("demo",), creates=("runs/demo/metrics.json",)),
    "python -m export --model_dir=runs/demo --export_dir=/srv/models":
        Row("slow", needs=("demo",), name="export_demo",
            creates=("srv/models/tresnet_small/1/saved_model.pb",)),
    "python -m export --model_dir=runs/stresnet_conj --export_dir=/srv/models "
    "--in_graph_flow=tvl1": Row("slow", needs=("stresnet_conj",),
                                creates=("srv/models/stresnet50/1/saved_model.pb",)),
    "saved_model_cli show --dir /srv/models/tresnet_small/1 --all":
        Row("slow", needs=("export_demo",)),
    "python -m serving.dev_server --model_name=tresnet_small "
    "--model_base_path=/srv/models/tresnet_small":
        Row("slow", "the workspace's free ports", needs=("export_demo",), name="server_small",
            extra=("--port=8500", "--rest_api_port=8501"),
            background="http://localhost:8501/v1/models/tresnet_small"),
    "python -m serving.client --url http://localhost:8501 --model tresnet_small --video clip.mp4":
        Row("slow", needs=("server_small",)),
    "python -m serving.loadtest --model_base_path=/srv/models/tresnet_small "
    "--model_name=tresnet_small": Row("slow", "one client, two requests, 4 frames of 32 px",
                                      needs=("export_demo",), extra=LOADTEST_TINY),
    "python -m tfzoo.data.prepare --dataset=yuppp --root=~/YUP++ --out=data/yuppp":
        Row("slow", "64 px", needs=("YUP++",), extra=PREPARE_TINY, name="prepare_yuppp",
            creates=("data/yuppp/manifest.json",)),
    "python -m tfzoo.data.prepare --dataset=ucf101 --root=~/UCF101 --out=data/ucf101 "
    "--flow=tvl1 --workers=8": Row("slow", "64 px, 2 workers (the machine has 2 cores)",
                                   needs=("UCF101",), extra=PREPARE_TINY + ("--workers=2",),
                                   name="prepare_ucf101", creates=("data/ucf101/manifest.json",)),
    "python -m tfzoo.data.prepare --dataset=folder --root=~/my_videos --out=data/mine":
        Row("slow", "64 px", needs=("my_videos",), extra=PREPARE_TINY,
            creates=("data/mine/manifest.json",)),
    "python -m tfzoo.data.prepare --dataset=ucf101 --root=~/UCF101 --out=data/ucf101 --flow=tvl1 "
    "--beam_pipeline_options=\"runner=DirectRunner,direct_num_workers=2,"
    "direct_running_mode=multi_processing\"":
        Row("slow", "64 px; its own --out (data/ucf101 holds the local run's)",
            requires="apache_beam", needs=("UCF101",),
            extra=PREPARE_TINY + ("--out=data/ucf101_beam",),
            creates=("data/ucf101_beam/manifest.json",)),
    "python -m tfzoo.data.service dispatcher --port=5050 &":
        Row("slow", "the workspace's free port", name="dispatcher", background="port:5050"),
    "python -m tfzoo.data.service worker --dispatcher=localhost:5050 --worker_address=localhost &":
        Row("slow", needs=("dispatcher",), name="worker", extra=("--port=5051",),
            background="port:5051"),
    "python -m tfzoo.train --config=stresnet50_ucf101 --data=data/ucf101 "
    "--data_service=grpc://localhost:5050":
        Row("slow", "the recipe shrunk", needs=("prepare_ucf101", "dispatcher", "worker"),
            extra=("@stresnet50_ucf101",), creates=("runs/stresnet50_ucf101/model.keras",)),
    "python -m tfzoo.flow --video clip.mp4 --out clip_flow.mp4 --format mp4":
        Row("slow", creates=("clip_flow.mp4",)),
    "python -m tfzoo.flow.train --video clip.mp4 --out tvnet.keras":
        Row("slow", "2 steps on 32x32 crops", extra=("--steps=2", "--crop=32x32"),
            creates=("tvnet.keras",)),
    "python -m tfzoo.train --model=rfcn": Row("slow", "tiny R-FCN, 2 steps", extra=RFCN_TINY,
                                              name="rfcn", creates=("runs/rfcn/metrics.json",)),
    "python -m tfzoo.evaluate --model_dir=runs/rfcn": Row("slow", needs=("rfcn",)),
    "python -m export --model_dir=runs/rfcn --export_dir=/srv/models":
        Row("slow", needs=("rfcn",), creates=("srv/models/rfcn",)),
    "python -m tfzoo.train --config=rfcn_synthetic --model_dir=runs/rfcn_synthetic":
        Row("slow", "tiny R-FCN, 2 steps", extra=RFCN_TINY, name="rfcn_synthetic",
            creates=("runs/rfcn_synthetic/model.keras",)),
    "python -m tfzoo.train --config=dt_synthetic --set init_from=runs/rfcn_synthetic "
    "--model_dir=runs/dt_synthetic":
        Row("slow", "tiny D&T, 2 steps", extra=DT_TINY, needs=("rfcn_synthetic",),
            name="dt_synthetic", creates=("runs/dt_synthetic/model.keras",)),
    "python -m tfzoo.evaluate --model_dir=runs/rfcn_synthetic":
        Row("slow", needs=("rfcn_synthetic",)),
    "python -m tfzoo.evaluate --model_dir=runs/dt_synthetic --link_strides=1,4":
        Row("slow", needs=("dt_synthetic",)),
    "python -m tfzoo.detection.synthetic --out data/syn_val32 --train 0 --val 16 --frames 32":
        Row("slow", name="syn_val32", creates=("data/syn_val32",)),
    "python -m tfzoo.evaluate --model_dir=runs/dt_synthetic --data=data/syn_val32 "
    "--link_strides=1,10": Row("slow", needs=("dt_synthetic", "syn_val32")),
    "python -m tfzoo.visualize --model_dir=runs/demo --list_layers": Row("slow", needs=("demo",)),
    "python -m tfzoo.visualize --model_dir=DIR --layer=NAME --units=0:8 --regularizer=2d1d "
    "--chi=0,1,5,10 --out=gallery/":
        Row("slow", "2 steps", subs=(("DIR", "runs/demo"), ("NAME", "conv5")), extra=VIS_TINY,
            needs=("demo",), creates=("gallery/index.html",)),
    "python -m tfzoo.bench --model=resnet50 --model=tresnet50 --frames=16 --size=224 "
    "--precision=float32,mixed_bfloat16": Row("slow", BENCH_WHY, extra=BENCH_TINY),
    "python -m tfzoo.bench --model=resnet50 --compare_keras": Row("slow", BENCH_WHY,
                                                                  extra=BENCH_TINY),
    "python -m tfzoo.bench --flow": Row("slow", "one 32x48 size, 2 iterations, 1 warp, 1 scale",
                                        extra=("--sizes=32x48", "--accuracy_size=32x48",
                                               "--iterations=2", "--warps=1", "--max_scales=1",
                                               "--repeats=1", "--batch=2")),
    "python -m tfzoo.bench --data": Row("slow", "one copy, 2 clips, no model",
                                        extra=("--copies=1", "--clips=2", "--no_model")),
    "python -m tfzoo.bench --input --config=stresnet50_ucf101 --data=data/ucf101":
        Row("slow", "2 clips of a batch of 1, the fixture's split, no ImageNet weights, no "
            "model or service timing", needs=("prepare_ucf101",),
            extra=("--clips=2", "--batch=1", "--set=train_split=train1", "--set=weights=None",
                   "--noservice", "--nomodel")),
    # docs/bench.md --------------------------------------------------------------------------
    "python -m tfzoo.bench --model=NAME [--model=NAME2 ...] [--frames=16] [--size=224] "
    "[--batch=1] [--precision=float32|mixed_bfloat16|float32,mixed_bfloat16] [--runs=5] "
    "[--warmup=2] [--jit[=on|off|on,off]] [--no_train] [--json]":
        Row("slow", BENCH_WHY, extra=BENCH_TINY,
                       subs=(("NAME2", "tresnet_small"), ("NAME", "resnet_small"))),
    "python -m tfzoo.bench --compare_keras [--compare_depth=50] [--precision=...] [--runs=7]":
        Row("slow", "2 frames of 32 px", subs=(("--precision=...", "--precision=float32"),),
            extra=COMPARE_TINY),
    "python -m tfzoo.bench --list": Row("run"),
    "python -m tfzoo.bench --flow ...": Row("slow", "as README's", extra=(
        "--sizes=32x48", "--accuracy_size=32x48", "--iterations=2", "--warps=1",
        "--max_scales=1", "--repeats=1", "--batch=2")),
    "python -m tfzoo.bench --data ...": Row("slow", "as README's",
                                            extra=("--copies=1", "--clips=2", "--no_model")),
    "python -m tfzoo.bench --input --config=NAME --data=DIR":
        Row("slow", "as README's", subs=(("NAME", "stresnet50_ucf101"), ("DIR", "data/ucf101")),
            needs=("prepare_ucf101",),
            extra=("--clips=2", "--batch=1", "--set=train_split=train1", "--set=weights=None",
                   "--noservice", "--nomodel")),
    "python -m tfzoo.bench --model=resnet50 --model=tresnet50 --frames=16 --size=224 --batch=1 "
    "--precision=float32,mixed_bfloat16 --runs=5 --warmup=2": Row("slow", "2 frames of 32 px",
                                                                   extra=BENCH_TINY),
    "python -m tfzoo.bench --compare_keras --frames=16 --size=224 --batch=1 "
    "--precision=float32,mixed_bfloat16 --runs=7 --warmup=2": Row("slow", "2 frames of 32 px",
                                                                   extra=COMPARE_TINY),
    "python -m tfzoo.bench --predict --seconds 20 --rounds 5": Row("slow", "2 s of 32 px video",
                                                                   extra=PREDICT_BENCH_TINY),
    "python -m tfzoo.bench --predict --model resnet50 --size 112 --seconds 8 --rounds 3":
        Row("slow", "2 s of 32 px video", extra=PREDICT_BENCH_TINY),
    # docs/data.md ---------------------------------------------------------------------------
    "python -m tfzoo.data.prepare --dataset=ucf101 --root=~/UCF101 --out=~/prepared/ucf101 "
    "--flow=opencv --workers=8": Row("slow", "64 px, 2 workers", needs=("UCF101",),
                                     extra=PREPARE_TINY + ("--workers=2",),
                                     creates=("home/prepared/ucf101/manifest.json",)),
    "python -m tfzoo.data.prepare --dataset=hmdb51 --root=~/HMDB51 --out=~/prepared/hmdb51":
        Row("slow", "64 px", needs=("HMDB51",), extra=PREPARE_TINY,
            creates=("home/prepared/hmdb51/manifest.json",)),
    "python -m tfzoo.data.prepare --dataset=yuppp --root=~/YUP++ --out=~/prepared/yuppp":
        Row("slow", "64 px", needs=("YUP++",), extra=PREPARE_TINY,
            creates=("home/prepared/yuppp/manifest.json",)),
    "python -m tfzoo.data.prepare --dataset=imagenet_vid --root=~/ILSVRC2015 --out=~/prepared/vid":
        Row("slow", "64 px", needs=("ILSVRC2015",), extra=PREPARE_TINY,
            creates=("home/prepared/vid/manifest.json",)),
    "python -m tfzoo.data.prepare --dataset=folder --root=~/my_videos --out=~/prepared/mine":
        Row("slow", "64 px", needs=("my_videos",), extra=PREPARE_TINY,
            creates=("home/prepared/mine/manifest.json",)),
    "python -m tfzoo.data.prepare --dataset=ucf101 --root=~/UCF101 --out=~/prepared/ucf101 "
    "--flow=tvl1 --beam_pipeline_options=\"runner=DirectRunner,direct_num_workers=2,"
    "direct_running_mode=multi_processing\"":
        Row("slow", "64 px; its own --out (~/prepared/ucf101 holds the OpenCV-flow run's)",
            requires="apache_beam",
            needs=("UCF101",), extra=PREPARE_TINY + ("--out=~/prepared/ucf101_beam",),
            creates=("home/prepared/ucf101_beam/manifest.json",)),
    "python -m tfzoo.data.prepare --dataset=ucf101 --root=~/UCF101 --out=~/prepared/ucf101 "
    "--flow=tvl1 --beam_pipeline_options=\"runner=FlinkRunner,flink_master=HOST:8081,"
    "environment_type=PROCESS,environment_config={\\\"command\\\":\\\"/opt/beam/boot\\\"},"
    "parallelism=64\"": Row("parse", "a Flink cluster"),
    "python -m tfzoo.data.prepare --dataset=ucf101 --root=~/UCF101 --out=~/prepared/ucf101 "
    "--flow=tvl1 --beam_pipeline_options=\"runner=SparkRunner,spark_master_url=spark://HOST:7077,"
    "environment_type=DOCKER,environment_config=IMAGE\"": Row("parse", "a Spark cluster"),
    "python -m tfzoo.data.prepare --dataset=ucf101 --root=~/UCF101 --out=~/prepared/ucf101 "
    "--flow=tvl1 --beam_pipeline_options=\"runner=DataflowRunner,project=P,region=R,"
    "temp_location=gs://B/tmp,sdk_container_image=IMAGE,max_num_workers=100,"
    "machine_type=n2-highcpu-16\"": Row("parse", "Google Cloud Dataflow"),
    "python -m tfzoo.data.service dispatcher --port=5050 [--work_dir=/shared/dispatcher]":
        Row("parse", CLUSTER + "; README's localhost rows run"),
    "python -m tfzoo.data.service worker --dispatcher=HOST:5050 --port=5051 "
    "--worker_address=THIS_HOST": Row("parse", CLUSTER + "; README's localhost rows run"),
    "python -m tfzoo.train --config=stresnet50_ucf101 --data=DIR --data_service=grpc://HOST:5050":
        Row("parse", CLUSTER + "; README's localhost rows run"),
    # docs/detection.md ----------------------------------------------------------------------
    "python -m tfzoo.detect --saved_model=PATH --video=IN.mp4 --out=OUT.mp4 [--json=OUT.json] "
    "[--stride=1] [--online [--history=6|N|all]] [--min_score=0.5] [--batch_size=4]":
        Row("slow", subs=(("PATH", "srv/models/dt/1"), ("IN.mp4", "clip.mp4")),
            needs=("export_dt",), creates=("OUT.mp4", "OUT.json")),
    "python -m tfzoo.detection.synthetic --out=DIR [--seed=0] [--train=24] [--val=8] "
    "[--frames=16] [--variant=standard|occluded]": Row("slow", subs=(("DIR", "data/syn"),),
                                                       creates=("data/syn",)),
    "python -m export --model_dir=runs/rfcn --export_dir=exports":
        Row("slow", needs=("rfcn",), creates=("exports/rfcn",)),
    "python -m tfzoo.bench --model=rfcn_resnet101 --size=600x1000 --no_train":
        Row("slow", "64x96, one run, a 1-1-1-1 ResNet of width 8",
            extra=("--size=64x96", "--runs=1", "--warmup=1", "--override=blocks=[1,1,1,1]",
                   "--override=width=8")),
    "python -m tfzoo.evaluate --model_dir=runs/rfcn_synthetic --data=data/syn_val32":
        Row("slow", needs=("rfcn_synthetic", "syn_val32")),
    "python -m tfzoo.train --config=rfcn_synthetic --model_dir=runs/rfcn":
        Row("slow", "tiny R-FCN, 2 steps (the same run as --model=rfcn: resumed, not redone)",
            extra=RFCN_TINY, needs=("rfcn",)),
    "python -m tfzoo.train --config=dt_synthetic --set init_from=runs/rfcn --epochs=1 "
    "--model_dir=runs/dt_eq": Row("slow", "tiny D&T, 2 steps", extra=DT_TINY, needs=("rfcn",),
                                  name="dt_eq", creates=("runs/dt_eq/model.keras",)),
    "python -m tfzoo.train --config=dt_synthetic --set init_from=runs/rfcn --epochs=1 "
    "\"--set=model_overrides={'tracking_weight': 0.0}\" --model_dir=runs/dt_control":
        Row("slow", "tiny D&T, 2 steps", needs=("rfcn",),
            extra=DT_TINY[:-2] + _sets(model_overrides=RFCN_TINY_MODEL
                                       + ", 'max_displacement': 2, 'tracking_weight': 0.0}"),
            creates=("runs/dt_control/model.keras",)),
    "python -m tfzoo.train --config=dt_synthetic --set init_from=runs/rfcn --epochs=1 "
    "\"--set=model_overrides={'tracking_stds': (0.1, 0.1, 0.2, 0.2)}\" --model_dir=runs/dt_norm":
        Row("slow", "tiny D&T, 2 steps", needs=("rfcn",),
            extra=DT_TINY[:-2] + _sets(model_overrides=RFCN_TINY_MODEL
                                       + ", 'max_displacement': 2, "
                                       "'tracking_stds': (0.1, 0.1, 0.2, 0.2)}"),
            creates=("runs/dt_norm/model.keras",)),
    "python -m tfzoo.detection.synthetic --out=data/syn_val8 --train=0 --val=16 --frames=8":
        Row("slow", name="syn_val8", creates=("data/syn_val8",)),
    "python -m tfzoo.evaluate --model_dir=runs/dt_eq --data=data/syn_val8 --link_strides=1":
        Row("slow", needs=("dt_eq", "syn_val8")),
    "python -m tfzoo.detection.synthetic --out=data/syn_val64 --train=0 --val=64 --frames=8":
        Row("slow", name="syn_val64", creates=("data/syn_val64",)),
    "python -m tfzoo.evaluate --model_dir=runs/rfcn --data=data/syn_val64":
        Row("slow", needs=("rfcn", "syn_val64")),
    "python -m tfzoo.train --config=dt_synthetic --set init_from=runs/rfcn --set seed=0 "
    "--model_dir=runs/dt_s0": Row("slow", "tiny D&T, 2 steps", extra=DT_TINY, needs=("rfcn",),
                                  name="dt_s0", creates=("runs/dt_s0/model.keras",)),
    "python -m tfzoo.train --config=dt_synthetic --set init_from=runs/rfcn --set seed=0 "
    "\"--set=model_overrides={'tracking_weight': 0.0}\" --model_dir=runs/dt_control_s0":
        Row("slow", "tiny D&T, 2 steps", needs=("rfcn",), name="dt_control_s0",
            extra=DT_TINY[:-2] + _sets(model_overrides=RFCN_TINY_MODEL
                                       + ", 'max_displacement': 2, 'tracking_weight': 0.0}"),
            creates=("runs/dt_control_s0/model.keras",)),
    "python -m tfzoo.evaluate --model_dir=runs/dt_s0 --data=data/syn_val64 --link_strides=1":
        Row("slow", needs=("dt_s0", "syn_val64")),
    "python -m tfzoo.evaluate --model_dir=runs/dt_control_s0 --data=data/syn_val64 "
    "--link_strides=1": Row("slow", needs=("dt_control_s0", "syn_val64")),
    "python -m tfzoo.detection.synthetic --out=data/syn_occ32 --train=0 --val=8 --frames=32 "
    "--variant=occluded": Row("slow", name="syn_occ32", creates=("data/syn_occ32",)),
    "python -m tfzoo.evaluate --model_dir=runs/rfcn --data=data/syn_occ32":
        Row("slow", needs=("rfcn", "syn_occ32")),
    "python -m tfzoo.evaluate --model_dir=runs/dt_eq --data=data/syn_occ32 --link_strides=1,10":
        Row("slow", needs=("dt_eq", "syn_occ32")),
    # docs/flow.md ---------------------------------------------------------------------------
    "python -m tfzoo.flow.train --video=a.mp4 --video=b.mp4 --out=tvnet.keras --steps=200 "
    "--crop=64x64": Row("slow", "2 steps on 32x32 crops", needs=("a.mp4", "b.mp4"),
                        extra=("--steps=2", "--crop=32x32"), creates=("tvnet.keras",)),
    "python -m tfzoo.flow --video IN.mp4 --out OUT [--format mp4|npz|jpeg] [--resize 256x340] "
    "[--chunk 2] [--iterations 50 --warps 5 --max_scales 5 --sigma 0.8] [--opencv] "
    "[--render wheel|uvm]":
        Row("slow", "frames resized to 64x96", subs=(("IN.mp4", "clip.mp4"), ("OUT", "out.mp4")),
            extra=("--resize=64x96",), creates=("out.mp4",)),
    # docs/predict.md ------------------------------------------------------------------------
    "python -m tfzoo.predict --model_dir=runs/demo --video=IN.mp4 [--window=16] [--stride=8] "
    "[--top_k=5] [--json=OUT.json] [--csv=OUT.csv] [--plot=OUT.png]":
        Row("slow", subs=(("IN.mp4", "clip.mp4"),), needs=("demo",),
            creates=("OUT.json", "OUT.csv", "OUT.png")),
    "python -m tfzoo.predict --saved_model=runs/demo/export/tresnet_small/1 --model_dir=runs/demo "
    "--video=IN.mp4": Row("slow", subs=(("IN.mp4", "clip.mp4"),), needs=("demo",)),
    "python -m tfzoo.predict --model_dir=runs/demo --videos=FOLDER_OR_LIST.txt --output_dir=OUT":
        Row("slow", subs=(("FOLDER_OR_LIST.txt", "videos"), ("OUT", "predictions")),
            needs=("demo", "videos"), creates=("predictions",)),
    "python -m tfzoo.predict --model_dir=runs/demo --video=IN.mp4 --features=conv5 "
    "[--npy=OUT.npy]": Row("slow", subs=(("IN.mp4", "clip.mp4"),), needs=("demo",),
                           creates=("OUT.npy",)),
    "python -m tfzoo.predict --model_dir=runs/stresnet_conj --video=IN.mp4 --flow=IN.npz":
        Row("slow", subs=(("IN.mp4", "clip.mp4"), ("IN.npz", "clip.npz")),
            needs=("stresnet_conj", "clip_npz")),
    "python -m tfzoo.flow --video=IN.mp4 --out=IN.npz":
        Row("slow", subs=(("IN.mp4", "clip.mp4"), ("IN.npz", "clip.npz")), name="clip_npz",
            creates=("clip.npz",)),
    # docs/serving.md ------------------------------------------------------------------------
    "python -m export --model_dir=runs/tresnet50_yuppp --export_dir=/srv/models":
        Row("slow", needs=("yuppp_run",), name="export_tresnet50",
            creates=("srv/models/tresnet50/1/saved_model.pb",)),
    "saved_model_cli show --all --dir /srv/models/tresnet_small/1":
        Row("slow", needs=("export_demo",)),
    "python -c \"import numpy as np; np.save('clip.npy', np.zeros((1, 8, 112, 112, 3), "
    "np.uint8))\"": Row("slow", name="clip_npy", creates=("clip.npy",)),
    "saved_model_cli run --dir /srv/models/tresnet_small/1 --tag_set serve --signature_def "
    "serving_default --inputs rgb=clip.npy": Row("slow", needs=("export_demo", "clip_npy")),
    "docker run --rm -p 8500:8500 -p 8501:8501 -v /srv/models:/models:ro -v "
    "\"$PWD/serving\":/config:ro tensorflow/serving:latest "
    "--model_config_file=/config/models.config --allow_version_labels_for_unavailable_models=true "
    "--enable_batching=true --batching_parameters_file=/config/batching.config "
    "--monitoring_config_file=/config/monitoring.config --file_system_poll_wait_seconds=1":
        Row("parse", "Docker is not on the test machine; TF Serving's flags as the dev server "
            "takes them (the same config files run with the dev server below)",
            flags_after="tensorflow/serving:latest", parser="serving.dev_server"),
    "python -m serving.client --url http://localhost:8501 --model tresnet50 --video clip.mp4":
        Row("slow", needs=("server_config",)),
    "python -m serving.client --grpc localhost:8500 --model tresnet50 --video clip.mp4 "
    "--label stable": Row("slow", "tresnet_small (the config labels its versions)",
                          subs=(("--model tresnet50", "--model tresnet_small"),),
                          needs=("server_config",)),
    "python -m serving.dev_server --model_name=tresnet50 --model_base_path=/srv/models/tresnet50":
        Row("slow", "the workspace's free ports", needs=("export_tresnet50",),
            extra=("--port=8500", "--rest_api_port=8501"), name="server_tresnet50",
            background="http://localhost:8501/v1/models/tresnet50"),
    "curl http://localhost:8501/v1/models/tresnet50": Row("slow", needs=("server_config",)),
    "curl http://localhost:8501/v1/models/tresnet50/metadata": Row("slow",
                                                                   needs=("server_config",)),
    "curl -X POST http://localhost:8501/v1/models/tresnet50:predict -H "
    "'Content-Type: application/json' -d @request.json":
        Row("slow", needs=("server_config", "request.json")),
    "curl -X POST http://localhost:8501/v1/models/tresnet_small/labels/stable:predict -H "
    "'Content-Type: application/json' -d @request.json":
        Row("slow", needs=("server_config", "request.json")),
    "python -m serving.dev_server --model_config_file=serving/models.config "
    "--allow_version_labels_for_unavailable_models --enable_batching "
    "--batching_parameters_file=serving/batching.config "
    "--monitoring_config_file=serving/monitoring.config":
        Row("slow", "the workspace's free ports; serving/models.config's Docker paths "
            "(/models) are the workspace's srv/models (a copy of the file)",
            subs=(("serving/models.config", "models.config"),),
            needs=("export_tresnet50", "versions12", "models.config"),
            extra=("--port=8500", "--rest_api_port=8501"), name="server_config",
            background="http://localhost:8501/v1/models/tresnet_small/labels/stable"),
    "python -m serving.loadtest --model_base_path=/srv/models/tresnet_small "
    "--model_name=tresnet_small --clients=1,8,32,64 --requests=256 --max_seconds=60 --frames=8 "
    "--size=64 --enable_batching --batching_parameters_file=serving/batching.config "
    "[--encoding=jpeg]": Row("slow", "one client, two requests, 4 frames of 32 px",
                             needs=("export_demo",), extra=LOADTEST_TINY),
    "python -m serving.loadtest --model_base_path=/srv/models/tresnet_small "
    "--model_name=tresnet_small --clients=1,8,32,64 --requests=256 --max_seconds=60 --frames=8 "
    "--size=64 --enable_batching --batching_parameters_file=serving/batching.config "
    "--encoding=raw --before_rest=http://127.0.0.1:18501 --before_grpc=127.0.0.1:18500":
        Row("parse", "measures against an earlier server version running on 18500/18501"),
    # docs/visualize.md ----------------------------------------------------------------------
    "python -m tfzoo.visualize --model_dir=DIR --layer=NAME --units=0:4 --chi=1 "
    "--variants=paper,fourier+transforms,diversity,no_a_hat --copies=2 --out=compare/":
        Row("slow", "2 steps", subs=(("DIR", "runs/demo"), ("NAME", "conv5")), extra=VIS_TINY,
            needs=("demo",), creates=("compare",)),
    "python -m tfzoo.visualize.maximize_bench":
        Row("slow", "a tiny T-ResNet at 4x32x32, 1 step",
            extra=("--model=tresnet_small", "--layer=conv5", "--clip_shape=4,32,32", "--batch=1,2",
                   "--steps=1", "--per_unit_steps=2")),
    "python -m tfzoo.train --model=tresnet --model_dir=runs/tresnet --noevaluate":
        Row("slow", "tiny sizes, one step (the same run as --model=tresnet's)",
            extra=TRESNET_TINY, name="tresnet_vis", creates=("runs/tresnet/model.keras",)),
    "python -m tfzoo.visualize --model_dir=runs/tresnet --layer=conv4_block2_out --units=0:3 "
    "--regularizer=2d1d --chi=0,10 --steps=128 --a_hat_batches=4 --formats=png "
    "--out=runs/gallery_tresnet128": Row("slow", "2 steps", extra=VIS_TINY,
                                         needs=("tresnet_vis",),
                                         creates=("runs/gallery_tresnet128/index.html",)),
    "python -m tfzoo.train --config=stresnet_conjunction --model_dir=runs/stresnet_conj "
    "--noevaluate": Row("slow", "tiny streams, one step", extra=CONJ_TINY, name="stresnet_conj",
                        creates=("runs/stresnet_conj/model.keras",)),
    "python -m tfzoo.visualize --model_dir=runs/stresnet_conj --layer=fused --units=0:2 "
    "--regularizer=2d1d --chi=0,10 --steps=256 --a_hat_batches=4 --formats=png "
    "--motion_modes=uvm,wheel --out=runs/gallery_conj256":
        Row("slow", "2 steps", extra=VIS_TINY, needs=("stresnet_conj",),
            creates=("runs/gallery_conj256/index.html",)),
}
INLINE_ROW = Row("parse", "a command in the prose")
# Code spans of the prose that name a program and a flag without being a command line.
MENTIONS = {"python -m export --in_graph_flow=tvl1", "python -m tfzoo.detect --model_dir",
            "python -m export --export_dir=/srv/models", "python -m export --version"}
# pieces of the workspace that no documented command makes (beyond the layout trees)
PIECES = ("a.mp4", "b.mp4", "videos", "request.json", "versions12", "export_dt", "models.config")
PIECE_CREATES = {"export_dt": "srv/models/dt/1"}
TREES = {"UCF101": "ucf101", "HMDB51": "hmdb51", "YUP++": "yuppp", "ILSVRC2015": "imagenet_vid",
         "my_videos": "folder"}
PORTS = (8500, 8501, 5050, 5051)


def _named(name: str) -> str:
    found = [c for c, r in ROWS.items() if r.name == name]
    assert len(found) == 1, f"no row (or several) named {name!r}"
    return found[0]


def concrete(text: str) -> str:
    """The command as the test runs it: placeholders filled, optional groups kept, the first of
    each `a|b` alternative, `...` dropped, the row's overrides appended."""
    row = ROWS.get(text, INLINE_ROW)
    if text == "make demo":
        text = DEMO
    for old, new in row.subs:
        text = text.replace(old, new)
    text = text.replace("[", "").replace("]", "")
    text = re.sub(r"(?<=[\w=])((?:[\w.]+))(?:\|[\w.+]+)+", r"\1", text)
    text = re.sub(r"(^|\s)\.\.\.(?=\s|$)", " ", text)
    background = text.rstrip().endswith("&")
    text = text.rstrip().rstrip("&").rstrip()
    extra = []
    for arg in row.extra:
        extra += list(_recipe(arg[1:])) if arg.startswith("@") else [arg]
    text = " ".join([re.sub(r"\s+", " ", text).strip(), *map(shlex.quote, extra)])
    return text + (" &" if background else "")


def _python_m(text: str) -> tuple[str, list[str]] | None:
    """(module, arguments) of a `python -m` command, or of a row with its own `parser`."""
    row = ROWS.get(text, INLINE_ROW)
    tokens = shlex.split(concrete(text).rstrip("& "))
    while tokens and re.fullmatch(r"[A-Z_]+=.*", tokens[0]):
        tokens = tokens[1:]
    if row.parser:
        return row.parser, tokens[tokens.index(row.flags_after) + 1:]
    if tokens[:2] == ["python", "-m"]:
        return tokens[2], tokens[3:]
    return None


# --------------------------------------------------------------------------- default suite

def test_every_documented_command_has_a_row():
    assert MENTIONS <= set(INLINE), f"stale MENTIONS: {MENTIONS - set(INLINE)}"
    assert len(UNIQUE) > 80
    missing = [f"{doc}: {c}" for doc, c in COMMANDS if c not in ROWS]
    assert not missing, ("documented commands with no row in ROWS (say how each is checked):\n"
                         + "\n".join(missing))
    stale = [c for c in ROWS if c not in UNIQUE]
    assert not stale, "rows whose command is no longer documented:\n" + "\n".join(stale)
    for text, row in ROWS.items():
        assert row.how in ("run", "slow", "parse", "dry_run"), (text, row.how)
        assert row.how in ("run", "slow") or row.why, f"say why it is not run: {text}"
        for need in row.needs:
            assert need in TREES or need in PIECES or _named(need), (text, need)


def test_documented_programs_have_test_files():
    modules = {m for m in (_python_m(c) for c in UNIQUE) if m for m in [m[0]]}
    assert modules <= set(RUN_BY), f"programs without a test file: {sorted(modules - set(RUN_BY))}"
    for test_file in set(RUN_BY.values()):
        assert (REPO / "tests" / test_file).exists(), test_file


def test_makefile_targets_and_the_demo_line():
    """`make demo` / `make test` exist (`make -n`), and the demo row runs the Makefile's line."""
    for target in ("demo", "test"):
        proc = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
    recipe = re.search(r"^demo:.*\n\t(.*)$", (REPO / "Makefile").read_text(), re.M).group(1)
    assert recipe.replace("$(BIN)/python", "python").replace("$(RUN_DIR)", "runs/demo") == DEMO


# Known-bad lines that must fail the parse check (and one that must pass), parsed in the same
# process as the documented ones: a check that never fails would let the docs drift.
DRIFT = [("tfzoo.predict", ["--model_dir=runs/demo", "--video=x.mp4", "--windw=16"], "windw"),
         ("tfzoo.bench", ["--data", "--clips=two"], "two"),
         ("tfzoo.data.prepare", ["--dataset=ucf101", "--root=x", "--out=y", "extra"], "extra"),
         ("serving.loadtest", ["--model_name=x"], "model_base_path"),
         ("tfzoo.bench", ["--list"], None)]


@lru_cache(maxsize=None)
def _parsed() -> tuple[dict, list]:
    todo = [(c, _python_m(c)) for c in UNIQUE + [c for c in INLINE if c not in MENTIONS]]
    todo = [(c, m) for c, m in todo if m]
    lines = [list(m) for _, m in todo] + [[m, a] for m, a, _ in DRIFT]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "_parse_only.py"),
                           json.dumps(lines)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert "@@RESULTS@@" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
    results = json.loads(proc.stdout.split("@@RESULTS@@", 1)[1])
    return {c: r for (c, _), r in zip(todo, results)}, results[len(todo):]


def test_every_python_command_parses_with_its_programs_flags():
    """Each documented `python -m` command line (as the run rows run it, overrides included;
    and those of the prose) through its program's own parser: unknown flags, bad values,
    missing required flags and stray arguments fail."""
    parsed, _ = _parsed()
    bad = [f"{c}\n    -> {r['error']}" for c, r in parsed.items() if not r["ok"]]
    assert not bad, "documented commands their program refuses:\n" + "\n".join(bad)
    assert len(parsed) > 80


def _reads(text: str) -> list[str]:
    """The run directories, exports and prepared datasets a command reads."""
    tokens = shlex.split(concrete(text).rstrip("& "))
    module = tokens[2] if tokens[:2] == ["python", "-m"] else ""
    flags = ("--saved_model", "--data", "init_from") + \
        (("--model_dir",) if module not in ("tfzoo.train", "tfzoo.demo") else ())
    return [t.split("=", 1)[1] for t in tokens
            if "=" in t and t.split("=", 1)[0] in flags and not t.endswith("=None")]


def test_paths_read_are_written_by_a_documented_command():
    """A run directory, export or prepared dataset that a documented command reads is one that
    a documented command writes (the slow runs check that they do): `runs/tresnet` where the
    demo writes `runs/demo` fails here, in the default suite."""
    written = [c for r in ROWS.values() for c in r.creates] + list(PIECE_CREATES.values())
    bad = [f"{text}: {path}" for text in UNIQUE if ROWS[text].how in ("run", "slow")
           for path in _reads(text)
           if not any(w == path.rstrip("/") or w.startswith(path.rstrip("/") + "/")
                      for w in written)]
    assert not bad, "paths no documented command writes:\n" + "\n".join(bad)


def test_the_parse_check_catches_drift():
    """The same check fails on an unknown flag, a bad value, a stray argument and a missing
    required flag, naming it."""
    _, results = _parsed()
    for (module, argv, named), result in zip(DRIFT, results):
        assert result["ok"] == (named is None), (module, argv, result)
        assert named is None or named in result["error"], (module, argv, result)


def test_repository_paths_in_commands_exist():
    """Paths into the repository (tests/data/..., serving/*.config, configs/...) exist."""
    bad = []
    for text in UNIQUE:
        for token in shlex.split(concrete(text).rstrip("& ")):
            value = token.split("=", 1)[-1]
            if re.match(r"(tests|serving|configs|docs)/\S+\.\w+$", value) and \
                    not (REPO / value).exists():
                bad.append(f"{text}: {value}")
    assert not bad, "\n".join(bad)


def test_prepare_expands_the_tilde_of_documented_paths(tmp_path, monkeypatch):
    """docs/data.md's `--root=~/UCF101 --out=~/prepared/ucf101`: bash leaves a `~` after `=`
    as it is, so prepare expands it (before, it looked for a directory named `~`)."""
    from _data_fixtures import official_layout

    from tfzoo.data.prepare import prepare

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    official_layout("folder", tmp_path / "my_videos", BIKES, short_side=32)
    manifest = prepare("folder", "~/my_videos", "~/prepared/mine", short_side=32, progress=False)
    assert (tmp_path / "prepared" / "mine" / "manifest.json").exists()
    assert not (tmp_path / "~").exists()
    assert manifest["num_videos"] == 5, manifest


# --------------------------------------------------------------------------- running them

class Workspace:
    """A directory laid out as the docs assume; runs documented commands in it, each once."""

    def __init__(self, root: Path):
        from _runs import free_port

        self.root = root
        self.ports = {p: free_port() for p in PORTS}
        self.results: dict[str, tuple[int, str]] = {}
        self.servers: dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "HOME": str(root / "home"), "PYTHONPATH": str(REPO),
                    "PATH": f"{root / 'bin'}:{os.environ['PATH']}", "TF_CPP_MIN_LOG_LEVEL": "2"}
        if (root / "bin").exists():  # a kept workspace (DOCS_WORKSPACE): runs resume in it
            return
        (root / "bin").mkdir(parents=True)
        shim = root / "bin" / "python"
        shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} \"$@\"\n")
        shim.chmod(0o755)
        tool = Path(sys.executable).parent / "saved_model_cli"  # the venv's, whatever PATH says
        if tool.exists():
            (root / "bin" / "saved_model_cli").symlink_to(tool)
        (root / "home").mkdir()
        (root / "tests").mkdir()
        (root / "tests" / "data").symlink_to(BIKES.parent)
        (root / "serving").symlink_to(REPO / "serving")
        self._clip(root / "clip.mp4", 0)

    @staticmethod
    def _clip(path: Path, k: int):
        from _data_fixtures import bikes_frames, clip_variant, write_clip

        path.parent.mkdir(parents=True, exist_ok=True)
        write_clip(path, clip_variant(bikes_frames(BIKES, short_side=64, num=80), k, 48))

    def shell(self, text: str) -> str:
        """The concrete command with the workspace's ports and /srv."""
        text = concrete(text)
        text = re.sub(r"(?<=[:=])(8500|8501|5050|5051)(?!\d)",
                      lambda m: str(self.ports[int(m.group(1))]), text)
        return re.sub(r"(?<![\w.])/srv/", f"{self.root}/srv/", text)

    def need(self, name: str):
        if name in TREES:
            if not (self.root / "home" / name).exists():
                from _data_fixtures import official_layout

                official_layout(TREES[name], self.root / "home" / name, BIKES)
        elif name in PIECES:
            self._piece(name)
        else:
            code, out = self.run(_named(name))
            assert code == 0, f"needed {name!r}: {self.shell(_named(name))}\nexit {code}:\n" \
                              f"{out[-4000:]}"

    def _piece(self, name: str):
        marker = self.root / ".pieces" / name
        if marker.exists():
            return
        if name in ("a.mp4", "b.mp4"):
            self._clip(self.root / name, 1 + (name == "b.mp4"))
        elif name == "videos":
            for k in range(2):
                self._clip(self.root / "videos" / f"v{k}.mp4", 3 + k)
        elif name == "request.json":
            clip = [[[[[10 * (t + y) % 256, x, 128] for x in range(32)] for y in range(32)]
                     for t in range(4)]]
            (self.root / name).write_text(json.dumps({"signature_name": "serving_default",
                                                      "inputs": {"rgb": clip}}))
        elif name == "versions12":  # models.config pins tresnet_small versions 1 and 2
            self.need("export_demo")
            self._check(self._run_text("python -m export --model_dir=runs/demo "
                                       f"--export_dir={self.root}/srv/models"), "export v2")
        elif name == "export_dt":
            self.need("dt_synthetic")
            self._check(self._run_text("python -m export --model_dir=runs/dt_synthetic "
                                       f"--export_dir={self.root}/srv/models --name=dt"),
                        "export D&T")
        elif name == "models.config":
            text = (REPO / "serving" / "models.config").read_text()
            (self.root / "models.config").write_text(
                text.replace('"/models/', f'"{self.root}/srv/models/'))
        marker.parent.mkdir(exist_ok=True)
        marker.touch()

    def _run_text(self, text: str, timeout=1800) -> tuple[int, str]:
        start = time.time()
        proc = subprocess.run(["bash", "-c", text], cwd=self.root, env=self.env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        with open(self.root / "commands.log", "a") as log:  # to follow a long -m slow run
            log.write(f"\n=== exit {proc.returncode} in {time.time() - start:.0f}s: {text}\n"
                      + (proc.stdout[-3000:] if proc.returncode else ""))
        return proc.returncode, proc.stdout

    @staticmethod
    def _check(result, what):
        code, out = result
        assert code == 0, f"{what}: exit {code}\n{out[-4000:]}"

    def run(self, text: str) -> tuple[int, str]:
        row = ROWS[text]
        if row.background:
            return self._serve(text)
        if text not in self.results:
            for need in row.needs:
                self.need(need)
            self.results[text] = self._run_text(self.shell(text))
        return self.results[text]

    def _serve(self, text: str) -> tuple[int, str]:
        row = ROWS[text]
        proc = self.servers.get(text)
        if proc is not None and proc.poll() is None:
            return 0, "running"
        for need in row.needs:
            self.need(need)
        command = self.shell(text).rstrip("& ")
        port = re.search(r"(?:port:|localhost:)(\d+)", self.shell_url(row.background)).group(1)
        for other, p in list(self.servers.items()):  # one server per port, as on a real host
            if port in self.shell_url(ROWS[other].background) and p.poll() is None:
                p.terminate()
                p.wait(30)
        log = open(self.root / f"server-{len(self.servers)}.log", "w")
        proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=self.root, env=self.env,
                                stdout=log, stderr=subprocess.STDOUT)
        self.servers[text] = proc
        deadline = time.time() + 300
        while time.time() < deadline:
            if proc.poll() is not None:
                return proc.returncode, (self.root / log.name).read_text()
            if self._ready(self.shell_url(row.background)):
                return 0, "ready"
            time.sleep(1)
        return 1, "not ready in 300 s:\n" + Path(log.name).read_text()[-3000:]

    def shell_url(self, url: str) -> str:
        return re.sub(r"(?<=[:=])(8500|8501|5050|5051)(?!\d)",
                      lambda m: str(self.ports[int(m.group(1))]), url)

    @staticmethod
    def _ready(target: str) -> bool:
        import socket

        try:
            if target.startswith("port:"):
                socket.create_connection(("127.0.0.1", int(target[5:])), timeout=1).close()
                return True
            with urllib.request.urlopen(target, timeout=2) as r:
                return r.status == 200 and "AVAILABLE" in r.read().decode()
        except OSError:
            return False

    def close(self):
        for proc in self.servers.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    # DOCS_WORKSPACE=DIR keeps the workspace between runs (a rerun resumes the trainings and
    # skips finished ones: for working on a failing row without redoing the demo)
    kept = os.environ.get("DOCS_WORKSPACE")
    ws = Workspace(Path(kept) if kept else tmp_path_factory.mktemp("docs"))
    yield ws
    ws.close()


def _check_run(ws: Workspace, text: str):
    row = ROWS[text]
    if row.requires:
        pytest.importorskip(row.requires, reason=f"{row.requires} (an optional extra) is not "
                            "installed")
    code, out = ws.run(text)
    assert code == 0, f"{ws.shell(text)}\nexit {code}:\n{out[-5000:]}"
    for path in row.creates:
        assert (ws.root / path).exists(), f"{text}: wrote no {path}\n{out[-3000:]}"
    if text.startswith("curl"):
        body = json.loads(out[out.index("{"):])  # a JSON answer, not an error document
        assert "error" not in body, body
    if text.startswith("saved_model_cli"):
        assert "serving_default" in out or "probabilities" in out, out[-2000:]


@pytest.mark.parametrize("text", [c for c in UNIQUE if ROWS.get(c, Row("parse")).how == "run"])
def test_documented_command_runs(workspace, text):
    _check_run(workspace, text)


@pytest.mark.slow  # tiny trainings, exports, servers: ~30 min on 2 cores in all
@pytest.mark.parametrize("text", [c for c in UNIQUE if ROWS.get(c, Row("parse")).how == "slow"])
def test_documented_command_runs_slow(workspace, text):
    _check_run(workspace, text)
