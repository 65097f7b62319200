"""Data throughput: decode+prepare (frames/s) and the tf.data reader (clips/s, full augmentation),
next to the training step throughput of a model, on this machine.

    python -m tfzoo.bench --data [--video tests/data/bikes.mp4] [--clips 32] [--model tresnet50]
        [--batch 2] [--steps 3] [--no-model]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "tests" / "data" / "bikes.mp4"


def _prepare_bench(video: Path, work: Path, copies: int) -> tuple[float, int, Path]:
    from tfzoo.data.prepare import prepare

    root = work / "folder"
    for k in range(copies):
        d = root / f"class{k % 2}"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(video, d / f"v{k}{video.suffix}")
    t = time.perf_counter()
    m = prepare("folder", root, work / "prepared", videos_per_shard=1, progress=False)
    dt = time.perf_counter() - t
    return m["num_frames"] / dt, m["num_frames"], work / "prepared"


def _reader_bench(data_dir: Path, clips: int, spec) -> float:
    from tfzoo.data.readers import RecordSource

    ds = RecordSource(data_dir, shuffle_buffer=4).dataset("all", training=True, spec=spec, seed=0)
    it = iter(ds)
    for _ in range(2):  # warm-up: graph tracing, the first shard reads
        next(it)
    t = time.perf_counter()
    for _ in range(clips):
        next(it)
    return clips / (time.perf_counter() - t)


def _model_bench(name: str, spec, batch: int, steps: int) -> float:
    import keras
    import numpy as np

    from tfzoo import registry

    model = registry.create_model(name, num_classes=20)
    model.compile(optimizer=keras.optimizers.SGD(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.uniform(0, 255, (batch, spec.num_frames, *spec.image_size, 3)).astype("float32")
    y = np.zeros((batch,), "int32")
    model.train_on_batch(x, y)  # build + trace
    t = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return batch * steps / (time.perf_counter() - t)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m tfzoo.bench --data")
    p.add_argument("--data", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--video", default=str(DEFAULT_VIDEO))
    p.add_argument("--copies", type=int, default=2, help="videos to prepare")
    p.add_argument("--clips", type=int, default=32, help="clips to time the reader on")
    p.add_argument("--model", default="tresnet50")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--no-model", action="store_true")
    a = p.parse_args(argv)
    from tfzoo.data.base import ClipSpec

    spec = ClipSpec()  # T-ResNet: 16 frames, tau in [5, 15], 224x224, jitter crop, flip
    cores = os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        fps, frames, prepared = _prepare_bench(Path(a.video), Path(tmp), a.copies)
        clips = _reader_bench(prepared, a.clips, spec)
    res = {"cores": cores, "prepare_frames_per_s": round(fps, 1), "prepared_frames": frames,
           "reader_clips_per_s": round(clips, 2), "clip": f"{spec.num_frames}x224x224"}
    if not a.no_model:
        try:
            steps = _model_bench(a.model, spec, a.batch, a.steps)
            res[f"{a.model}_train_clips_per_s"] = round(steps, 3)
            res["reader_to_model_ratio"] = round(clips / steps, 1)
            # the reader scales about linearly with cores (parallel map); cores it needs:
            res["reader_cores_needed"] = round(cores * steps / clips, 2)
        except Exception as e:  # noqa: BLE001 - the data numbers stand on their own
            res["model_error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(res, indent=1))
    return 0
