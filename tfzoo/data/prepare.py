"""Turns a dataset as distributed into sharded TFRecords (see tfzoo.data.records).

    python -m tfzoo.data.prepare --dataset {ucf101,hmdb51,yuppp,imagenet_vid,folder} \
        --root DIR --out DIR [--flow tvl1|opencv|none] [--workers N] [--short-side 256]

Videos are decoded with PyAV, rescaled so the shorter side is 256, stored as JPEG; optical
flow (optional) is computed on the stored frames and stored as +/-20 px clipped JPEG pairs.
Unreadable videos are skipped and listed with the reason in manifest.json. The work is split
into shards fixed by plan.json; each shard is written to a hidden temporary file and renamed,
then its summary .json marks it finished, so a killed job started again redoes only the
unfinished shards and a reader never sees half a shard.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

import numpy as np

from tfzoo.data import records
from tfzoo.data.adapters import ADAPTERS, Listing, VideoItem, list_dataset, parse_voc_xml
from tfzoo.data.base import DataError
from tfzoo.errors import TfzooError, report
from tfzoo.rundir import atomic_write_text
from tfzoo.utils import check_choice
from tfzoo.video import DEFAULT_SHORT_SIDE, iter_frames, scaled_size

FLOW_METHODS = ("none", "tvl1", "opencv")


# ------------------------------------------------------------------------------- flow
class _FlowComputer:
    """Flow between consecutive stored frames, in pixels at the stored resolution."""

    def __init__(self, method: str):
        check_choice("--flow method", method, FLOW_METHODS, error=DataError)
        self.method = method
        self._impl = None
        if method == "opencv":
            try:
                import cv2

                self._impl = cv2.optflow.DualTVL1OpticalFlow_create()
            except (ImportError, AttributeError) as e:
                raise DataError("--flow opencv needs OpenCV's contrib modules "
                                "(pip install opencv-contrib-python-headless): "
                                f"cv2.optflow.DualTVL1OpticalFlow_create is missing ({e})") from e

    def pairs(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """frames: RGB uint8 list -> len(frames) - 1 flow fields (H, W, 2) float32."""
        if len(frames) < 2:
            return []
        if self.method == "opencv":
            import cv2

            grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
            return [self._impl.calc(a, b, None) for a, b in zip(grey[:-1], grey[1:])]
        from tfzoo.flow import tvl1_video

        # XLA; one compilation per stored frame size (10-30 s), then ~0.25 s per 256x340 pair.
        return list(tvl1_video(np.stack(frames)))


# ---------------------------------------------------------------------------- decoding
def _read_images(paths, short_side):
    import cv2

    out, scale = [], None
    for p in paths:
        img = cv2.imread(p, cv2.IMREAD_COLOR)
        if img is None:
            raise DataError(f"{p}: unreadable image")
        h, w = img.shape[:2]
        nh, nw = scaled_size(h, w, short_side)
        if scale is None:
            scale = (nw / w, nh / h)
        if (nh, nw) != (h, w):
            img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if nh < h
                             else cv2.INTER_CUBIC)
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    return out, scale


def _video_fps(path) -> float:
    try:
        import av

        with av.open(path) as c:
            return float(c.streams.video[0].average_rate or 0.0)
    except Exception:  # fps is informational only
        return 0.0


def encode_item(item: VideoItem, params: dict, flow: _FlowComputer | None) -> tuple[bytes, int]:
    """Decodes and encodes one video -> (serialized Example, number of frames)."""
    q = params["jpeg_quality"]
    boxes = None
    if item.path is not None:
        frames = list(iter_frames(item.path, short_side=params["short_side"],
                                  max_frames=params["max_frames"]))
        fps = _video_fps(item.path)
    else:
        frames, (sx, sy) = _read_images(item.frame_paths, params["short_side"])
        fps = 0.0
        boxes = []
        for t, a in enumerate(item.annotation_paths or []):
            if a is None:
                continue
            for o in parse_voc_xml(a)["objects"]:
                x0, y0, x1, y1 = o["box"]
                boxes.append((t, o["trackid"], o["label"], x0 * sx, y0 * sy, x1 * sx, y1 * sy))
    h, w = frames[0].shape[:2]
    if any(f.shape[:2] != (h, w) for f in frames):
        raise DataError(f"{item.source}: frames of different sizes")
    jpegs = [records.encode_jpeg(f, q) for f in frames]
    fu = fv = None
    if flow is not None and len(frames) > 1:
        fu, fv = [], []
        for field in flow.pairs(frames):
            u, v = records.encode_flow_jpegs(field, params["flow_quality"])
            fu.append(u)
            fv.append(v)
    ex = records.make_example(
        video_id=item.video_id, label=item.label, splits=item.splits, frames=jpegs, height=h,
        width=w, fps=fps, flow_u=fu, flow_v=fv, sample_frames=item.attrs.get("sample_frames"),
        boxes=boxes, attrs={k: v for k, v in item.attrs.items() if k != "sample_frames"})
    return ex, len(frames)


def _write_shard(out: str, index: int, count: int, items: list[dict], params: dict) -> dict:
    """Worker: writes one shard atomically and its summary. Never raises for a bad video."""
    import tensorflow as tf

    name = records.shard_name(index, count)
    final = Path(out) / f"{name}.tfrecord"
    tmp = Path(out) / f".{name}.tfrecord.{os.getpid()}.tmp"
    flow = None if params["flow"] == "none" else _FlowComputer(params["flow"])
    written, skipped = [], []
    frames_total = 0
    with tf.io.TFRecordWriter(str(tmp)) as w:
        for d in items:
            item = VideoItem(**d)
            try:
                ex, n = encode_item(item, params, flow)
            except DataError as e:
                skipped.append({"path": item.source, "video_id": item.video_id, "reason": str(e)})
                continue
            except Exception as e:  # noqa: BLE001 - one bad file must never stop the job
                skipped.append({"path": item.source, "video_id": item.video_id,
                                "reason": f"{type(e).__name__}: {e}"})
                continue
            w.write(ex)
            frames_total += n
            written.append({"video_id": item.video_id, "label": item.label,
                            "splits": list(item.splits), "num_frames": n})
    os.replace(tmp, final)
    summary = {"shard": final.name, "videos": written, "skipped": skipped,
               "num_frames": frames_total}
    atomic_write_text(Path(out) / f"{name}.json", json.dumps(summary) + "\n")
    return summary


# ------------------------------------------------------------------------------ driver
def _plan(listing: Listing, params: dict, videos_per_shard: int, seed: int) -> dict:
    items = list(listing.items)
    # shuffled so that every shard mixes classes (the layouts list videos class by class)
    random.Random(seed).shuffle(items)
    count = max(1, math.ceil(len(items) / videos_per_shard))
    shards = [[asdict(it) for it in items[i::count]] for i in range(count)]
    return {"format_version": records.FORMAT_VERSION, "dataset": listing.dataset,
            "params": params, "class_names": listing.class_names,
            "split_names": listing.split_names, "listing_skipped": listing.skipped,
            "shards": shards}


def _manifest(out: Path, plan: dict) -> dict:
    count = len(plan["shards"])
    class_names = plan["class_names"]
    per_split: dict[str, dict[str, int]] = {s: {} for s in plan["split_names"]}
    shards, skipped = [], list(plan["listing_skipped"])
    total_frames = 0
    for i in range(count):
        name = records.shard_name(i, count)
        s = json.loads((out / f"{name}.json").read_text())
        skipped += s["skipped"]
        total_frames += s["num_frames"]
        split_counts: dict[str, int] = {}
        for v in s["videos"]:
            cname = class_names[v["label"]] if 0 <= v["label"] < len(class_names) else "(none)"
            for sp in v["splits"]:
                per_split.setdefault(sp, {})
                per_split[sp][cname] = per_split[sp].get(cname, 0) + 1
                split_counts[sp] = split_counts.get(sp, 0) + 1
        shards.append({"file": f"{name}.tfrecord", "num_videos": len(s["videos"]),
                       "splits": split_counts})
    return {
        "format_version": records.FORMAT_VERSION,
        "dataset": plan["dataset"],
        "class_names": class_names,
        "splits": {sp: sum(c.values()) for sp, c in per_split.items()},
        "counts": {sp: dict(sorted(c.items())) for sp, c in per_split.items()},
        "num_videos": sum(sh["num_videos"] for sh in shards),
        "num_frames": total_frames,
        "streams": ["rgb", "flow"] if plan["params"]["flow"] != "none" else ["rgb"],
        "skipped": skipped,
        "params": plan["params"],
        "shards": shards,
    }


def _check_out(out: Path) -> None:
    """`out` must be new, empty, or a (possibly unfinished) preparation: never a file or an
    unrelated folder, which prepare would otherwise fill with shards without a word."""
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {str(out)!r} is a file; expected a new or empty folder, or a "
                        "folder prepared before (resumed)")
    if out.is_dir() and not (out / records.PLAN).exists() and any(out.iterdir()):
        found = sorted(p.name for p in out.iterdir())[:3]
        raise DataError(f"--out {str(out)!r} is a non-empty folder that is not a prepared "
                        f"dataset (it holds {found}..., no {records.PLAN}); pass a new or empty "
                        "folder")


def prepare(dataset: str, root, out, *, flow: str = "none", workers: int = 1,
            short_side: int | None = DEFAULT_SHORT_SIDE, videos_per_shard: int = 64,
            jpeg_quality: int = 90, flow_quality: int = 95, max_frames: int | None = 10000,
            seed: int = 0, progress: bool = True, dataset_options: dict | None = None) -> dict:
    """Prepares `dataset` from `root` into `out`; returns the manifest (also out/manifest.json).

    Resumes an interrupted run into the same `out` when the parameters and the listing are
    unchanged (raises DataError otherwise, naming what differs)."""
    check_choice("--flow method", flow, FLOW_METHODS, error=DataError)
    if workers < 1 or videos_per_shard < 1:
        raise DataError(f"workers ({workers}) and videos_per_shard ({videos_per_shard}) must "
                        f"be >= 1")
    if not 1 <= jpeg_quality <= 100 or not 1 <= flow_quality <= 100:
        raise DataError(f"JPEG qualities must be in [1, 100], got {jpeg_quality}/{flow_quality}")
    if flow != "none":
        _FlowComputer(flow)  # fail now (missing OpenCV contrib) rather than in every worker
    out = Path(out)
    _check_out(out)
    listing = list_dataset(dataset, root, **(dataset_options or {}))
    out.mkdir(parents=True, exist_ok=True)
    params = {"dataset": dataset, "root": str(Path(root).resolve()), "flow": flow,
              "short_side": short_side, "jpeg_quality": jpeg_quality,
              "flow_quality": flow_quality, "flow_bound": records.FLOW_BOUND,
              "max_frames": max_frames, "videos_per_shard": videos_per_shard, "seed": seed,
              "dataset_options": {**listing.params, **(dataset_options or {})}}
    plan = _plan(listing, params, videos_per_shard, seed)
    plan_path = out / records.PLAN
    if plan_path.exists():
        old = json.loads(plan_path.read_text())
        if old != json.loads(json.dumps(plan)):
            diff = [k for k in plan if old.get(k) != json.loads(json.dumps(plan[k]))]
            if "params" in diff:
                diff = [f"params.{k}" for k in params if old["params"].get(k) != params[k]] or diff
            raise DataError(f"{out} holds a preparation with different {diff}; use a new --out "
                            f"(or delete {out}) to prepare with these settings")
    else:
        atomic_write_text(plan_path, json.dumps(plan) + "\n")
    for stale in out.glob(".shard-*.tmp"):  # left by a killed run; never read by anyone
        stale.unlink()

    count = len(plan["shards"])
    todo = [i for i in range(count) if not (out / f"{records.shard_name(i, count)}.json").exists()]
    total = sum(len(plan["shards"][i]) for i in todo)
    bar = None
    if progress:
        from tqdm import tqdm

        done = len(listing.items) - total
        bar = tqdm(total=len(listing.items), initial=done, unit="video", desc=f"prepare {dataset}",
                   file=sys.stderr)
    t0 = time.time()
    if workers == 1 or len(todo) <= 1:
        for i in todo:
            s = _write_shard(str(out), i, count, plan["shards"][i], params)
            if bar is not None:
                bar.update(len(s["videos"]) + len(s["skipped"]))
    else:
        import multiprocessing as mp

        # spawn: TensorFlow's runtime is not fork-safe once initialised in the parent
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            futs = {pool.submit(_write_shard, str(out), i, count, plan["shards"][i], params): i
                    for i in todo}
            for fut in as_completed(futs):
                s = fut.result()
                if bar is not None:
                    bar.update(len(s["videos"]) + len(s["skipped"]))
    if bar is not None:
        bar.close()
    manifest = _manifest(out, plan)
    manifest["seconds_this_run"] = round(time.time() - t0, 3)
    atomic_write_text(out / records.MANIFEST, json.dumps(manifest, indent=1) + "\n", durable=True)
    return manifest


def _parser():
    p = argparse.ArgumentParser(prog="python -m tfzoo.data.prepare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=sorted(ADAPTERS))
    p.add_argument("--root", required=True, help="the dataset as distributed")
    p.add_argument("--out", required=True, help="output directory (resumed if it exists)")
    p.add_argument("--flow", default="none", choices=FLOW_METHODS,
                   help="optical flow to precompute: tfzoo's TV-L1, OpenCV's Dual TV-L1, or none")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--short-side", type=int, default=DEFAULT_SHORT_SIDE,
                   help="rescale so the shorter side has this many pixels (0: keep)")
    p.add_argument("--videos-per-shard", type=int, default=64)
    p.add_argument("--jpeg-quality", type=int, default=90)
    p.add_argument("--flow-quality", type=int, default=95)
    p.add_argument("--max-frames", type=int, default=10000,
                   help="keep at most this many frames of a video (0: no limit)")
    p.add_argument("--seed", type=int, default=0, help="shard assignment and YUP++ split seed")
    p.add_argument("--split-file", default=None,
                   help="YUP++ only: the training videos, one ROOT-relative path a line (e.g. "
                        "the official split's list); the others test. Default: a seeded 10/90 "
                        "split per class and camera, not the official one")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    opts = {"seed": a.seed} if a.dataset in ("yuppp", "imagenet_vid") else {}
    try:
        if a.split_file is not None:
            if a.dataset != "yuppp":
                raise TfzooError(f"--split-file applies to --dataset=yuppp; {a.dataset} reads "
                                 "its splits from the dataset's own files under --root")
            opts = {"split_file": a.split_file}
        m = prepare(a.dataset, a.root, a.out, flow=a.flow, workers=a.workers,
                    short_side=a.short_side or None, videos_per_shard=a.videos_per_shard,
                    jpeg_quality=a.jpeg_quality, flow_quality=a.flow_quality,
                    max_frames=a.max_frames or None, seed=a.seed, progress=not a.no_progress,
                    dataset_options=opts)
    except TfzooError as e:
        return report(e, "prepare")
    print(f"prepared {m['num_videos']} videos ({m['num_frames']} frames) into {a.out}: "
          f"splits {m['splits']}; skipped {len(m['skipped'])}"
          + (f" (see {Path(a.out) / records.MANIFEST})" if m["skipped"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
