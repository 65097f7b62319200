"""Prediction throughput: the streamed pipeline (decode + resize + model) against the model alone.

    python -m tfzoo.bench --predict [--model tresnet_small] [--size 112] [--seconds 20]
        [--window 8] [--batch 4] [--frame_step 2.5] [--rounds 3] [--json]

A synthetic H.264 video (`--seconds` at 25 fps, shorter side `--size`, 4:3) is written to a
temporary folder. In alternating rounds (so both see the machine's load at that moment):
- pipeline: `tfzoo.predict` on the file (decode thread + windows + batches + forward);
- model: the same forward function on one in-memory batch, as many batches as the pipeline ran.
Reported: decoded frames/s and windows/s of the pipeline, windows/s of the model alone, and
their ratio (the issue's goal: the pipeline within 10% of the model, i.e. ratio >= 0.90), plus
decode alone (frames/s, no model) to show how much the overlap hides. Medians over --rounds.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import types
from pathlib import Path

import numpy as np
from absl import app, flags

import tfzoo
from tfzoo.bench.timing import format_machine, machine_info
from tfzoo.prediction import Predictor, _decode_sampled, predict_video
from tfzoo.utils import parse_flags
from tfzoo.video import VideoWriter


def _write_video(path: Path, seconds: float, size: int) -> Path:
    h, w = size, _width(size)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (h, 2 * w, 3), dtype=np.uint8)
    with VideoWriter(path, fps=25) as writer:
        for i in range(int(seconds * 25)):
            x = (3 * i) % w  # a translating texture: real motion for the encoder and the model
            writer.write(base[:, x:x + w])
    return path


def _width(size: int) -> int:
    # Even: H.264 pads odd sizes, and the model-alone batch must have the decoded frames' shape.
    return size * 4 // 3 // 2 * 2


FLAGS = flags.FLAGS


def define_flags():
    """The program's flags; defined on demand so that importing this module defines none."""
    flags.DEFINE_string("model", "tresnet_small", "Registry name.")
    flags.DEFINE_integer("size", 112, "Shorter side of the video and the model input.")
    flags.DEFINE_float("seconds", 20.0, "Length of the synthetic video.")
    flags.DEFINE_integer("window", 8, "Sampled frames per window.")
    flags.DEFINE_integer("stride", None, "Sampled frames between windows (default: window // 2).")
    flags.DEFINE_integer("batch", 4, "Windows per forward pass.")
    flags.DEFINE_float("frame_step", 2.5, "Video frames per sampled frame.")
    flags.DEFINE_integer("rounds", 3, "Alternating rounds (medians are reported).")
    flags.DEFINE_bool("json", False, "Print the row as JSON.")


def main(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; every option is a --flag")
    args = types.SimpleNamespace(**{k: FLAGS[k].value for k in (
        "model", "size", "seconds", "window", "stride", "batch", "frame_step", "rounds", "json")})

    model = tfzoo.create_model(args.model, num_classes=10)
    predictor = Predictor(model, flip=False)
    sampling = dict(window=args.window, stride=args.stride, frame_step=args.frame_step,
                    short_side=args.size, batch_size=args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        video = _write_video(Path(tmp) / "bench.mp4", args.seconds, args.size)
        warm = predict_video(predictor, video, **sampling)  # traces the forward function
        n_windows, n_frames = len(warm["windows"]), warm["num_frames"]
        h, w = args.size, _width(args.size)
        x = np.random.default_rng(1).integers(0, 255, (args.batch, args.window, h, w, 3))
        x = x.astype(np.uint8)
        last = n_windows % args.batch
        n_full = n_windows // args.batch
        predictor.scores(x)
        if last:
            predictor.scores(x[:last])
        pipe_s, model_s, decode_s = [], [], []
        for _ in range(args.rounds):
            t = time.perf_counter()
            for _ in range(n_full):
                predictor.scores(x)
            if last:
                predictor.scores(x[:last])
            model_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            predict_video(predictor, video, **sampling)
            pipe_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            for _ in _decode_sampled(video, args.frame_step, args.size, [0]):
                pass
            decode_s.append(time.perf_counter() - t)
    pipe, alone, dec = (statistics.median(v) for v in (pipe_s, model_s, decode_s))
    row = {"model": args.model, "size": f"{h}x{w}", "window": args.window, "batch": args.batch,
           "frame_step": args.frame_step, "video_frames": n_frames, "windows": n_windows,
           "pipeline_frames_per_s": n_frames / pipe, "pipeline_windows_per_s": n_windows / pipe,
           "model_windows_per_s": n_windows / alone, "decode_frames_per_s": n_frames / dec,
           "ratio_pipeline_to_model": alone / pipe, "rounds": args.rounds}
    info = machine_info()
    if args.json:
        print(json.dumps({"machine": info, "predict": row}, indent=2))
        return 0
    print(format_machine(info))
    print(f"{args.model} {h}x{w}, window {args.window} every {args.frame_step:g} frames, batch "
          f"{args.batch}: {n_frames} video frames, {n_windows} windows (median of {args.rounds})")
    print(f"  decode alone        {row['decode_frames_per_s']:9.1f} frames/s")
    print(f"  pipeline            {row['pipeline_frames_per_s']:9.1f} frames/s  "
          f"{row['pipeline_windows_per_s']:7.2f} windows/s")
    print(f"  model alone                              {row['model_windows_per_s']:7.2f} windows/s")
    print(f"  pipeline / model    {row['ratio_pipeline_to_model']:9.3f}  (goal >= 0.90)")
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=parse_flags)
