"""Data throughput: decode+prepare (frames/s) and the tf.data reader (clips/s, full augmentation),
next to the training step throughput of a model, on this machine.

    python -m tfzoo.bench --data [--video=tfzoo/assets/bikes.mp4] [--clips=32] [--model=tresnet50]
        [--batch=2] [--steps=2] [--no_model] [--json]
    python -m tfzoo.bench --data --memory [--json]   # prepare's peak RSS, 1- vs 10-minute video

A table like the other benches; --json prints one JSON document instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from absl import flags

from tfzoo.assets import SAMPLE_VIDEO
from tfzoo.errors import TfzooError, report
from tfzoo.utils import markdown_table, underscore_flags
from tfzoo.video import DEFAULT_SHORT_SIDE

PROG = "python -m tfzoo.bench --data"
DEFAULT_VIDEO = SAMPLE_VIDEO


def _prepare_bench(video: Path, work: Path, copies: int) -> tuple[float, int, Path]:
    from tfzoo.data.prepare import prepare  # deferred: loads TensorFlow

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
    from tfzoo.data.readers import RecordSource  # deferred: loads TensorFlow

    # the whole float clip on the host (packed=False): the reader's full cost, as before packing
    ds = RecordSource(data_dir, shuffle_buffer=4, packed=False).dataset("all", training=True,
                                                                        spec=spec, seed=0)
    it = iter(ds)
    for _ in range(2):  # warm-up: graph tracing, the first shard reads
        next(it)
    t = time.perf_counter()
    for _ in range(clips):
        next(it)
    return clips / (time.perf_counter() - t)


def _model_bench(name: str, spec, batch: int, steps: int) -> float:
    import keras  # deferred: loads Keras (TensorFlow)

    from tfzoo import registry  # deferred: loads TensorFlow

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


def format_report(res: dict) -> str:
    """The --data results as the other benches print them: a table."""
    lines = [("stage", "what", "throughput")]
    lines.append(("prepare", f"{res['prepared_frames']} frames of {res['video']} -> "
                  f"{res['short_side']} px JPEG, no flow", f"{res['prepare_frames_per_s']:.1f} "
                  "frames/s"))
    lines.append(("reader", f"{res['clip']} clips, full augmentation",
                  f"{res['reader_clips_per_s']:.2f} clips/s"))
    model = next((k for k in res if k.endswith("_train_clips_per_s")), None)
    if model:
        lines.append(("model", f"{model[:-len('_train_clips_per_s')]} training step, batch "
                      f"{res['batch']}", f"{res[model]:.3f} clips/s"))
    text = f"Data throughput ({res['cores']} cores):\n" + markdown_table(lines)
    if model:
        text += (f"\nreader / model: {res['reader_to_model_ratio']:.1f}x; reader cores needed "
                 f"to feed the model: {res['reader_cores_needed']:.2f}")
    if "model_error" in res:
        text += f"\nmodel not timed: {res['model_error']}"
    return text


def _synthetic_video(path: Path, seconds: float, size=(240, 320), fps: int = 25) -> Path:
    """A moving textured clip (so its JPEGs are not trivially small), MPEG-4 in AVI."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (size[0] * 2, size[1] * 2, 3), np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.height, s.width, s.pix_fmt = size[0], size[1], "yuv420p"
        for t in range(int(seconds * fps)):
            dy, dx = (3 * t) % size[0], (5 * t) % size[1]
            img = np.ascontiguousarray(texture[dy:dy + size[0], dx:dx + size[1]])
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


_RSS_CHILD = """
import resource, sys
from tfzoo.data.prepare import prepare
m = prepare("folder", sys.argv[1], sys.argv[2], videos_per_shard=1, max_frames=None,
            progress=False)
print(m["num_frames"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def memory_bench(minutes=(1, 10), work: Path | None = None) -> list[dict]:
    """Peak RSS of `prepare` (one process, no flow, no frame limit) on a 1- and a 10-minute
    320x240 video: streamed frames keep it flat (issue 24 item 4)."""
    rows = []
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        for m in minutes:
            root = Path(tmp) / f"v{m}" / "clips"
            root.mkdir(parents=True)
            video = _synthetic_video(root / f"{m}min.avi", 60 * m)
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
            out = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(root.parent),
                                  str(Path(tmp) / f"out{m}")], capture_output=True, text=True,
                                 env=env, check=True).stdout.split()
            rows.append({"minutes": m, "frames": int(out[0]), "video_mb": video.stat().st_size / 1e6,
                         "peak_rss_mb": int(out[1]) / 1024})
    return rows


# Dataset sizes for the projections: UCF101 13,320 clips of 7.21 s on average at 25 fps;
# Kinetics-400 ~240,000 training clips of 10 s (~25-30 fps: 275 frames taken).
DATASETS = {"UCF101": (13_320, 180), "Kinetics-400": (240_000, 275)}

_PREPARE_CHILD = """
import resource, sys, time
from tfzoo.data.prepare import prepare
beam = sys.argv[3] or None
t = time.perf_counter()
m = prepare("folder", sys.argv[1], sys.argv[2], flow="tvl1", videos_per_shard=1, progress=False,
            beam_pipeline_options=beam)
wall = time.perf_counter() - t
self, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = self.ru_utime + self.ru_stime + kids.ru_utime + kids.ru_stime
print(m["num_videos"], m["num_frames"], wall, cpu)
"""


def tvl1_bench(clips: int = 4, seconds: float = 2.0, beam: str | None = None) -> list[dict]:
    """prepare with TV-L1 flow on `clips` UCF101-size clips (320x240, 25 fps), locally (one
    process) and, given Beam options, as a Beam pipeline; CPU of every process involved (the
    XLA compilation of each process included: a conservative per-clip figure)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "clips"
        for k in range(clips):
            (root / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
            _synthetic_video(root / f"c{k % 2}" / f"v{k}.avi", seconds)
        for name, options in (("local, 1 process", ""), ("Beam " + (beam or ""), beam)):
            if options is None:
                continue
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
            out = subprocess.run([sys.executable, "-c", _PREPARE_CHILD, str(root),
                                  str(Path(tmp) / f"out{len(rows)}"), options or ""],
                                 capture_output=True, text=True, env=env)
            if out.returncode != 0:
                # internal: the bench's own child failed; its stderr is the report
                raise RuntimeError(f"{name}: {out.stderr[-2000:]}")
            videos, frames, wall, cpu = out.stdout.split()[-4:]
            videos, frames, wall, cpu = int(videos), int(frames), float(wall), float(cpu)
            row = {"run": name, "clips": videos, "frames": frames, "wall_s": wall,
                   "cpu_s": cpu, "clips_per_core_hour": videos * 3600 / cpu,
                   "frames_per_core_hour": frames * 3600 / cpu}
            for ds, (n, per_clip) in DATASETS.items():
                row[f"{ds}_core_hours"] = n * per_clip / row["frames_per_core_hour"]
            rows.append(row)
    return rows


def _flag_values() -> flags.FlagValues:
    """The program's flags, in their own FlagValues (as `--input`'s), so that running it inside
    another program (`python -m tfzoo.bench --data`, tests) defines no global flag."""
    fv = flags.FlagValues()
    flags.DEFINE_string("video", str(DEFAULT_VIDEO), "The clip prepare decodes (copied "
                        "--copies times).", flag_values=fv)
    flags.DEFINE_integer("copies", 2, "Videos to prepare (--tvl1: clips).", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("clips", 32, "Clips to time the reader on.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_string("model", "tresnet50", "The model whose training step is timed.",
                        flag_values=fv)
    flags.DEFINE_integer("batch", 2, "Clips per training step.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("steps", 2, "Timed training steps.", lower_bound=1, flag_values=fv)
    flags.DEFINE_bool("no_model", False, "Skip the model's training step.", flag_values=fv)
    flags.DEFINE_bool("memory", False, "Instead: peak RSS of prepare on a 1- and a 10-minute "
                      "video.", flag_values=fv)
    flags.DEFINE_bool("tvl1", False, "Instead: prepare with TV-L1 on UCF101-size clips, clips "
                      "per core-hour.", flag_values=fv)
    flags.DEFINE_string("beam_pipeline_options", None, "With --tvl1: also run prepare as this "
                        "Beam pipeline.", flag_values=fv)
    flags.DEFINE_bool("json", False, "Print one JSON document.", flag_values=fv)
    return fv


def main(argv: list[str]) -> int:
    """`python -m tfzoo.bench --data [flags]` (`argv`: the flags after --data)."""
    fv = _flag_values()
    if any(a in ("-h", "--help", "--helpfull") for a in argv):
        print(__doc__ + "\n" + fv.get_help(include_special_flags=False))
        return 0
    try:
        try:
            rest = fv(underscore_flags([PROG, *argv]))
        except flags.Error as e:
            raise TfzooError(f"{e} (--help lists the flags)") from None
        if len(rest) > 1:
            raise TfzooError(f"unexpected arguments {rest[1:]}; every option is a --flag")
        if not Path(fv.video).is_file():
            raise TfzooError(f"--video={fv.video!r}: no such file")
    except TfzooError as e:
        return report(e, PROG)
    if fv.tvl1:
        rows = tvl1_bench(clips=fv.copies, beam=fv.beam_pipeline_options)
        if fv.json:
            print(json.dumps({"prepare_tvl1": rows, "datasets": DATASETS}, indent=1))
        else:
            lines = [("run", "clips", "frames", "wall s", "CPU s", "clips/core-hour",
                      "UCF101 core-h", "Kinetics-400 core-h")]
            lines += [(r["run"], str(r["clips"]), str(r["frames"]), f"{r['wall_s']:.0f}",
                       f"{r['cpu_s']:.0f}", f"{r['clips_per_core_hour']:.1f}",
                       f"{r['UCF101_core_hours']:.0f}", f"{r['Kinetics-400_core_hours']:.0f}")
                      for r in rows]
            print("prepare with TV-L1, 320x240 clips stored at 256x341 (projections by frames: "
                  "UCF101 13,320 x 180, Kinetics-400 240,000 x 275):\n" + markdown_table(lines))
        return 0
    if fv.memory:
        rows = memory_bench()
        ratio = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
        if fv.json:
            print(json.dumps({"prepare_peak_rss": rows, "ratio_10_to_1": ratio}, indent=1))
        else:
            lines = [("video", "frames", "file MB", "prepare peak RSS MB")]
            lines += [(f"{r['minutes']} min 320x240", str(r["frames"]), f"{r['video_mb']:.1f}",
                       f"{r['peak_rss_mb']:.0f}") for r in rows]
            print("Peak RSS of prepare (one process, no flow):\n" + markdown_table(lines)
                  + f"\n10 min / 1 min: {ratio:.3f} (goal: within 10%)")
        return 0
    from tfzoo.data.base import ClipSpec  # deferred: loads TensorFlow

    spec = ClipSpec()  # T-ResNet: 16 frames, tau in [5, 15], 224x224, jitter crop, flip
    cores = os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        fps, frames, prepared = _prepare_bench(Path(fv.video), Path(tmp), fv.copies)
        clips = _reader_bench(prepared, fv.clips, spec)
    res = {"cores": cores, "video": Path(fv.video).name, "short_side": DEFAULT_SHORT_SIDE,
           "prepare_frames_per_s": round(fps, 1), "prepared_frames": frames,
           "reader_clips_per_s": round(clips, 2), "clip": f"{spec.num_frames}x224x224",
           "batch": fv.batch}
    if not fv.no_model:
        try:
            steps = _model_bench(fv.model, spec, fv.batch, fv.steps)
            res[f"{fv.model}_train_clips_per_s"] = round(steps, 3)
            res["reader_to_model_ratio"] = round(clips / steps, 1)
            # the reader scales about linearly with cores (parallel map); cores it needs:
            res["reader_cores_needed"] = round(cores * steps / clips, 2)
        except Exception as e:  # noqa: BLE001 - the data numbers stand on their own
            res["model_error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(res, indent=1) if fv.json else format_report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
