"""Every registered model's run directory loads through the documented entry points in a fresh
process (issue 24 item 0).

Each model is trained for one step into a run directory; then one fresh Python process per
entry point (predict, visualize, evaluate, export) opens every run directory; each of them
loads it as docs/visualize.md's snippet does, with `tfzoo.rundir.load_model`. A fresh process
is the point: the training process has imported everything, so a class that only training
registers (ST-ResNet's saved compile state names `PerChunkCrossEntropy`, a task loss) loads
there and nowhere else. Predictions of the fresh predict process are compared with the trained
model's own, so the weights that loaded are the ones trained.

By default a compiled ST-ResNet run directory (its saved compile state names the per-chunk
loss), written without training, opens in a fresh process that imports nothing but
`tfzoo.rundir`, with the same outputs; the trained run through predict (whose scores prove
that the trained weights loaded), visualize, evaluate and export runs in `make test-e2e` (a
fresh process per program costs 20-30 s of CPU on the 2-core machine); every registered model
through all four with `-m slow`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import tfzoo
from tfzoo import train
from tfzoo.config import TrainConfig
from tfzoo.registry import get_entry
from tfzoo.rundir import load_model
from _paths import REPO

DEFAULT = ("stresnet50",)  # the per-chunk loss; tresnet_small runs load in test_export, test_predict
SLOW = tuple(sorted(set(tfzoo.list_models()) - set(DEFAULT)))
CONJUNCTION = {"flow_stack": 2, "size": 32, "radius": (5.0, 6.0), "period": (6.0, 8.0),
               "videos_per_class": (2, 1, 1), "video_frames": 8}
SYNTHETIC = {"size": 32, "video_frames": 8, "videos_per_class": (1, 1, 1)}


def tiny_config(name: str) -> TrainConfig:
    """One optimizer step of `name`'s tiny variant on the embedded data it takes."""
    entry = get_entry(name)
    overrides = dict(entry.test_overrides or {})
    size = (entry.test_input or {}).get("size", 32)
    frames = (entry.test_input or {}).get("frames", 3)
    common = dict(epochs=1, steps_per_epoch=1, batch_size=2, val_split=None,
                  lr_schedule="constant", seed=0)
    if entry.task == "detection":
        from tfzoo.config import load_config_file

        base = load_config_file("dt_synthetic" if name.startswith("dt") else "rfcn_synthetic")
        return base.replace(
            model=name, model_overrides=overrides, image_size=(64, 96), link_strides=(1,),
            dataset_options={**base.dataset_options,
                             "synthetic": {"videos": (2, 1), "frames": 3, "size": (64, 96)}},
            **common)
    if "two_stream" in entry.tags:
        return TrainConfig(
            model=name, model_overrides={**overrides, "flow_channels": 4},
            dataset="conjunction", dataset_options={**CONJUNCTION, "size": max(size, 32)},
            num_frames=frames, test_num_frames=frames, stride_range=(1, 2),
            image_size=(size, size), **common)
    return TrainConfig(model=name, model_overrides=overrides or {"blocks": (1, 1, 1, 1), "width": 4},
                       dataset="synthetic", dataset_options=SYNTHETIC, num_frames=4,
                       test_num_frames=4, stride_range=(1, 2), image_size=(32, 32), **common)


def fresh(module: str, prog: str, argvs: list[list[str]]) -> tuple[list[dict], str]:
    """Runs a CLI's main on each argv in one new process (tests/_cli_driver.py); returns
    each run's {"argv", "code", "stderr"} and the process's stdout."""
    out = subprocess.run([sys.executable, "tests/_cli_driver.py", module, prog, json.dumps(argvs)],
                         cwd=REPO, capture_output=True, text=True, timeout=1800,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert "@@RESULTS@@" in out.stdout, out.stderr[-3000:]
    stdout, rows = out.stdout.split("\n@@RESULTS@@")
    return json.loads(rows), stdout


def _video(path: Path, size: int, frames: int = 12) -> np.ndarray:
    from tfzoo.video import VideoWriter

    rng = np.random.default_rng(0)
    clip = rng.integers(0, 255, (frames, size, size, 3), dtype=np.uint8)
    with VideoWriter(path, fps=25) as w:
        for f in clip:
            w.write(f)
    return clip


PROGRAMS = ("predict", "visualize", "evaluate", "export")


def sweep(models, tmp_path, programs=PROGRAMS):
    dirs, expected = {}, {}
    for name in models:
        config = tiny_config(name)
        d = tmp_path / name
        train.run(config, d, tf.distribute.get_strategy(), evaluate=False, verbose=0)
        dirs[name] = d
    video = tmp_path / "clip.mp4"
    _video(video, 32)
    flow = tmp_path / "flow.npy"
    np.save(flow, np.random.default_rng(1).normal(0, 1, (11, 32, 32, 2)).astype("float32"))
    classifiers = [n for n in models if get_entry(n).task == "classification"]
    predict_args, deepest = {}, {}
    for name in models:
        # What the trained model itself says (loaded here, where everything is imported).
        model, info = load_model(dirs[name])
        deepest[name] = list(getattr(model, "endpoints", None) or [None])[-1]
        if name not in classifiers:
            continue
        args = [f"--model_dir={dirs[name]}", f"--video={video}", "--window=3", "--stride=3",
                "--frame_step=1", "--short_side=32", "--noprogress",
                f"--json={tmp_path / (name + '.json')}"]
        two_stream = "two_stream" in get_entry(name).tags
        if two_stream:
            args.append(f"--flow={flow}")
        predict_args[name] = args
        expected[name] = tfzoo.predict(model, str(video), window=3, stride=3, frame_step=1,
                                       short_side=32, progress=False, run_info=info,
                                       flow=str(flow) if two_stream else None)

    commands = {
        "predict": lambda: ("tfzoo.predict.__main__", list(predict_args.values())),
        "visualize": lambda: ("tfzoo.visualize.__main__",
                              [[f"--model_dir={dirs[n]}", "--list_layers"] for n in models]),
        "evaluate": lambda: ("tfzoo.evaluate", [[f"--model_dir={dirs[n]}"] for n in models]),
        "export": lambda: ("export.__main__",
                           [[f"--model_dir={dirs[n]}", f"--export_dir={tmp_path / 'export'}",
                             "--nowarmup"] for n in models]),
    }
    results = {}
    for program in programs:
        module, argvs = commands[program]()
        results[program] = fresh(module, program, argvs)
    for program, (rows, _) in results.items():
        for row in rows:
            assert row["code"] == 0, f"{program} {row['argv']}:\n{row['stderr'][-3000:]}"
    for name in classifiers if "predict" in results else ():
        got = json.loads((tmp_path / f"{name}.json").read_text())
        want = expected[name]
        np.testing.assert_allclose(got["video_prediction"]["scores"],
                                   want["video_prediction"]["scores"], rtol=1e-4, atol=1e-4)
        assert len(got["windows"]) == len(want["windows"]) == 4
    for name, d in dirs.items():
        if "evaluate" in results:
            metrics = json.loads((d / "metrics.json").read_text())
            assert list(metrics) == [tiny_config(name).test_split], name
        if "export" in results:
            assert len(list((tmp_path / "export" / name).glob("*/saved_model.pb"))) == 1, name
        if "visualize" in results:  # the listing names each model's deepest feature map
            assert deepest[name] is None or f"{deepest[name]} " in results["visualize"][1], name


def test_compiled_two_stream_run_dir_loads_in_a_fresh_process(tmp_path):
    import keras

    from tfzoo.rundir import RunInfo, save_model, write_run_info
    from tfzoo.tasks import get_task

    entry = get_entry("stresnet50")
    model = tfzoo.create_model("stresnet50", weights=None, num_classes=3,
                               **{**entry.test_overrides, "flow_channels": 4})
    get_task(model).compile(model, optimizer=keras.optimizers.SGD(0.01))
    assert "PerChunkCrossEntropy" in json.dumps(model.get_compile_config())
    save_model(model, tmp_path)
    write_run_info(tmp_path, RunInfo(model="stresnet50", model_config=model.get_config(),
                                     class_names=["a", "b", "c"], num_frames=3,
                                     image_size=(32, 32)))
    rng = np.random.default_rng(0)
    x = {i.name: rng.normal(size=(1, 3, 32, 32, i.shape[-1])).astype("float32")
         for i in model.inputs}
    np.savez(tmp_path / "x.npz", **x)
    want = {k: np.asarray(v) for k, v in model(x, training=False).items()}
    program = ("import sys, numpy as np\n"
               "from tfzoo.rundir import load_model\n"
               "model, _ = load_model(sys.argv[1])\n"
               "x = dict(np.load(sys.argv[1] + '/x.npz'))\n"
               "np.savez(sys.argv[1] + '/y.npz', **{k: np.asarray(v) for k, v in "
               "model(x, training=False).items()})\n")
    out = subprocess.run([sys.executable, "-c", program, str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 0, out.stderr[-3000:]
    got = dict(np.load(tmp_path / "y.npz"))
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5)


@pytest.mark.e2e
def test_default_run_dirs_load_in_fresh_processes(tmp_path):
    sweep(DEFAULT, tmp_path)


@pytest.mark.slow
def test_every_registered_model_run_dir_loads_in_fresh_processes(tmp_path):
    sweep(SLOW + DEFAULT, tmp_path)
