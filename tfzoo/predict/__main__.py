"""Classify your own videos: `python -m tfzoo.predict`.

    python -m tfzoo.predict --model_dir=DIR (or --saved_model=PATH) --video=IN.mp4 \\
        [--window=16] [--stride=8] [--top_k=5] [--json=OUT.json] [--csv=OUT.csv] [--plot=OUT.png]
    python -m tfzoo.predict --model_dir=DIR --videos=DIR_OR_LIST.txt --output_dir=OUT
    python -m tfzoo.predict --model_dir=DIR --video=IN.mp4 --features=conv5 [--npy=OUT.npy]
    python -m tfzoo.predict --model_dir=DIR --video=IN.mp4 --flow=IN.npz   # two-stream models

One video prints its windows' top class and the video's top-k. A folder (or a text file of
paths, one per line) writes `OUT/<name>.json` per video (atomically; a rerun skips the videos
that have one, so a killed run resumes), `OUT/failed.txt` (unreadable videos and why) and
`OUT/summary.csv` (one row per video). See docs/predict.md.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
from absl import app, flags

from tfzoo.config import ConfigError
from tfzoo.errors import DataError
from tfzoo.prediction import PredictError, Predictor, _softmax, predict_video
from tfzoo.rundir import RunDirError, atomic_write_text, read_run_info

FLAGS = flags.FLAGS
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv",
                    ".wmv", ".3gp", ".ogv")


def define_flags():
    """CLI flags; defined on demand so that importing this module defines none."""
    flags.DEFINE_string("model_dir", None, "A directory written by `python -m tfzoo.train`.")
    flags.DEFINE_string("saved_model", None, "An exported SavedModel directory (python -m "
                        "export); with --model_dir too, the run's classes and geometry are used.")
    flags.DEFINE_string("video", None, "One video file.")
    flags.DEFINE_string("videos", None, "A folder of videos (searched recursively) or a text "
                        "file listing video paths, one per line.")
    flags.DEFINE_string("output_dir", None, "Results of --videos: one JSON (or .npy) per video, "
                        "failed.txt, summary.csv.")
    flags.DEFINE_integer("window", None, "Frames per window (default: the run's test clip).")
    flags.DEFINE_integer("stride", None, "Sampled frames between window starts (default: "
                         "window // 2).")
    flags.DEFINE_integer("top_k", 5, "Classes listed per window and for the video.")
    flags.DEFINE_float("frame_step", None, "Keep every frame_step-th frame (default: the "
                       "training stride at the training frame rate).")
    flags.DEFINE_float("train_fps", None, "Frame rate of the training videos (default 25).")
    flags.DEFINE_integer("short_side", None, "Shorter side of the frames for the model "
                         "(default: the run's test scale).")
    flags.DEFINE_bool("flip", None, "Also score the horizontal flip (default: the run's).")
    flags.DEFINE_integer("batch_size", 4, "Windows per forward pass.")
    flags.DEFINE_string("json", None, "Write the result of --video as JSON.")
    flags.DEFINE_string("csv", None, "Write one row per window of --video as CSV.")
    flags.DEFINE_string("plot", None, "Draw the top classes' probabilities over time (PNG).")
    flags.DEFINE_string("features", None, "Write per-window features of this endpoint "
                        "(model.endpoints) instead of scores.")
    flags.DEFINE_enum("feature_pool", "mean", ["mean", "none"], "Average each window's map over "
                      "time and space (mean), or keep it whole (none).")
    flags.DEFINE_string("npy", None, "Features of --video (default: <video name>.<endpoint>.npy).")
    flags.DEFINE_bool("progress", True, "Show a progress bar (frames/s).")
    flags.DEFINE_string("flow", None, "Two-stream models: precomputed flow of --video, a .npz "
                        "(python -m tfzoo.flow --format npz) or .npy of (N-1, H, W, 2) fields "
                        "(default: TV-L1 computed in the graph).")


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------

def result_json(result: dict) -> str:
    """The result as JSON text (features are written to .npy, not here)."""
    return json.dumps({k: v for k, v in result.items() if k != "features"}, indent=1) + "\n"


def windows_csv(result: dict) -> str:
    """One row per window: times, top class, then every class's probability."""
    out = io.StringIO()
    w = csv.writer(out)
    classes = result["classes"]
    w.writerow(["start", "end", "start_frame", "end_frame", "label", "probability", *classes])
    for win in result["windows"]:
        p = _softmax(np.asarray(win["scores"], np.float64))
        w.writerow([_fmt(win["start"]), _fmt(win["end"]), win["start_frame"], win["end_frame"],
                    win["top_k"][0]["label"], f"{win['top_k'][0]['probability']:.6f}",
                    *(f"{v:.6f}" for v in p)])
    return out.getvalue()


def _fmt(t):
    return "" if t is None else f"{t:.3f}"


def write_npy(path, array) -> None:
    """np.save via a temporary file and a rename (readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def plot_timeline(result: dict, path, top: int = 5) -> None:
    """Probabilities of the video's `top` classes along the windows' centre times."""
    try:
        import matplotlib  # deferred: optional matplotlib (the plot extra)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # deferred: optional matplotlib (the plot extra)
    except ImportError:
        raise SystemExit("error: --plot needs matplotlib: pip install matplotlib "
                         "(or pip install 'tfzoo[plot]')") from None

    wins = result["windows"]
    timed = all(w["start"] is not None for w in wins)
    x = [((w["start"] + w["end"]) / 2 if timed else (w["start_frame"] + w["end_frame"]) / 2)
         for w in wins]
    p = _softmax(np.asarray([w["scores"] for w in wins], np.float64))
    fig, ax = plt.subplots(figsize=(10, 4))
    for c in result["video_prediction"]["top_k"][:top]:
        ax.plot(x, p[:, c["index"]], marker=".", label=f"{c['label']} ({c['probability']:.2f})")
    ax.set_xlabel("time (s)" if timed else "frame")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.set_title(f"{os.path.basename(result['video'])}: {result['model']}")
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def print_result(result: dict, out=sys.stdout) -> None:
    wins = result["windows"]
    dur = result["duration"]
    print(f"{result['video']}: {result['num_frames']} frames"
          + (f", {dur:.1f} s at {result['fps']:.2f} fps" if dur else "")
          + f", {len(wins)} windows of {result['sampling']['window']} frames "
          f"(every {result['sampling']['frame_step']:g} frames)", file=out)
    if "video_prediction" not in result:
        f = result["features"]
        print(f"features {result['feature_endpoint']}: {tuple(f.shape)} {f.dtype}", file=out)
        return
    for w in wins:
        t = (f"{w['start']:7.2f}-{w['end']:7.2f} s" if w["start"] is not None
             else f"frames {w['start_frame']}-{w['end_frame']}")
        top = w["top_k"][0]
        print(f"  {t}  {top['label']:24s} {top['probability']:.3f}", file=out)
    print("video:", file=out)
    for c in result["video_prediction"]["top_k"]:
        print(f"  {c['label']:24s} {c['probability']:.3f}", file=out)


# --------------------------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------------------------

def list_videos(spec) -> list[tuple[str, str]]:
    """[(path, key)] from a folder (recursive, by extension) or a text file of paths; the key
    names the video's result files (its path relative to the folder, '/' -> '__')."""
    spec = Path(spec)
    if spec.is_dir():
        paths = sorted(p for p in spec.rglob("*")
                       if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        root = spec
    elif spec.is_file():
        lines = [ln.strip() for ln in spec.read_text().splitlines()]
        paths = [Path(ln) if os.path.isabs(ln) else spec.parent / ln
                 for ln in lines if ln and not ln.startswith("#")]
        root = Path(os.path.commonpath([str(p.parent.resolve()) for p in paths])) if paths else spec
        paths = [p.resolve() for p in paths]
    else:
        raise PredictError(f"--videos={str(spec)!r} is neither a folder nor a text file of paths")
    if not paths:
        raise PredictError(f"--videos={str(spec)!r}: no videos (extensions {VIDEO_EXTENSIONS})")
    out, seen = [], set()
    for p in paths:
        key = str(p.relative_to(root).with_suffix("")).replace(os.sep, "__")
        if key in seen:
            key = str(p.relative_to(root)).replace(os.sep, "__")
        seen.add(key)
        out.append((str(p), key))
    return out


SUMMARY_FIELDS = ["video", "status", "label", "probability", "windows", "duration", "result",
                  "error"]


def _summary_row(path, key, result_file, result=None, error=None) -> dict:
    row = {"video": path, "status": "ok" if error is None else "failed", "label": "",
           "probability": "", "windows": "", "duration": "", "result": result_file or "",
           "error": error or ""}
    if result is not None:
        if "video_prediction" in result:
            top = result["video_prediction"]["top_k"][0]
            row.update(label=top["label"], probability=f"{top['probability']:.6f}")
        row.update(windows=len(result["windows"]), duration=_fmt(result["duration"]))
    return row


def run_folder(predictor, videos, output_dir, *, sampling: dict, top_k: int, batch_size: int,
               progress: bool, log=sys.stdout) -> dict:
    """Predicts every video of `videos` (see list_videos) into `output_dir`; resumable.

    Returns {"done": n, "skipped": n, "failed": [(path, reason)]}.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    items = list_videos(videos)
    rows, failed, done, skipped = [], [], 0, 0

    def write_lists():
        buf = io.StringIO()
        w = csv.DictWriter(buf, SUMMARY_FIELDS)
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(output_dir / "summary.csv", buf.getvalue())
        atomic_write_text(output_dir / "failed.txt",
                          "".join(f"{p}\t{reason}\n" for p, reason in failed))

    for n, (path, key) in enumerate(items, 1):
        result_file = output_dir / f"{key}.json"
        if result_file.exists():
            try:
                result = json.loads(result_file.read_text())
            except ValueError:
                result = None  # not ours or damaged: recompute
            if result is not None and result.get("video") == path:
                rows.append(_summary_row(path, key, result_file.name, result))
                skipped += 1
                continue
        try:
            result = predict_video(predictor, path, top_k=top_k, batch_size=batch_size,
                                   progress=progress, **sampling)
        except DataError as e:
            failed.append((path, str(e)))
            rows.append(_summary_row(path, key, None, error=str(e)))
            print(f"[{n}/{len(items)}] skipped {path}: {e}", file=log)
            write_lists()
            continue
        if "features" in result:
            npy = output_dir / f"{key}.npy"
            write_npy(npy, result["features"])
            result["features_file"] = npy.name
        # The JSON last: its presence marks the video done (the .npy is already in place).
        atomic_write_text(result_file, result_json(result))
        rows.append(_summary_row(path, key, result_file.name, result))
        done += 1
        top = result.get("video_prediction", {}).get("top_k", [{}])[0]
        print(f"[{n}/{len(items)}] {path}: {top.get('label', result.get('feature_endpoint'))}"
              + (f" {top['probability']:.3f}" if "probability" in top else ""), file=log)
        write_lists()
    write_lists()
    return {"done": done, "skipped": skipped, "failed": failed}


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------

def _error(msg) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not (FLAGS.model_dir or FLAGS.saved_model):
        return _error("pass --model_dir=DIR (python -m tfzoo.train) or --saved_model=PATH")
    if bool(FLAGS.video) == bool(FLAGS.videos):
        return _error("pass exactly one of --video=FILE and --videos=DIR_OR_LIST")
    if FLAGS.videos and not FLAGS.output_dir:
        return _error("--videos needs --output_dir=DIR for the per-video results")
    if FLAGS.videos and (FLAGS.json or FLAGS.csv or FLAGS.plot or FLAGS.npy):
        return _error("--json/--csv/--plot/--npy are for --video; --videos writes into "
                      "--output_dir")
    if FLAGS.videos and FLAGS.flow:
        return _error("--flow is the flow of one --video; with --videos the flow is computed "
                      "in the graph")
    if FLAGS.features and (FLAGS.csv or FLAGS.plot):
        return _error("--features writes features instead of scores: no --csv or --plot")

    sampling = dict(window=FLAGS.window, stride=FLAGS.stride, frame_step=FLAGS.frame_step,
                    short_side=FLAGS.short_side, train_fps=FLAGS.train_fps)
    try:
        if FLAGS.saved_model:
            info = read_run_info(FLAGS.model_dir) if FLAGS.model_dir else None
            predictor = Predictor(FLAGS.saved_model, run_info=info, flip=FLAGS.flip,
                                  features=FLAGS.features)
        else:
            predictor = Predictor(FLAGS.model_dir, flip=FLAGS.flip, features=FLAGS.features,
                                  feature_pool=FLAGS.feature_pool)
        if FLAGS.videos:
            summary = run_folder(predictor, FLAGS.videos, FLAGS.output_dir, sampling=sampling,
                                 top_k=FLAGS.top_k, batch_size=FLAGS.batch_size,
                                 progress=FLAGS.progress)
            print(f"{summary['done']} done, {summary['skipped']} already done, "
                  f"{len(summary['failed'])} failed -> {FLAGS.output_dir}/summary.csv")
            for path, reason in summary["failed"]:
                print(f"  failed: {reason}")
            return 0
        result = predict_video(predictor, FLAGS.video, top_k=FLAGS.top_k,
                               batch_size=FLAGS.batch_size, progress=FLAGS.progress,
                               flow=FLAGS.flow, **sampling)
    except (ConfigError, DataError, RunDirError, PredictError, ValueError) as e:
        return _error(e)
    if FLAGS.features:
        npy = FLAGS.npy or (Path(FLAGS.video).stem + "."
                            + FLAGS.features.replace("/", "_") + ".npy")
        write_npy(npy, result["features"])
        result["features_file"] = os.fspath(npy)
    print_result(result)
    if FLAGS.json:
        atomic_write_text(FLAGS.json, result_json(result))
    if FLAGS.csv:
        atomic_write_text(FLAGS.csv, windows_csv(result))
    if FLAGS.plot:
        plot_timeline(result, FLAGS.plot, top=FLAGS.top_k)
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(main)
