"""Turns a dataset as distributed into sharded TFRecords (see tfzoo.data.records).

    python -m tfzoo.data.prepare --dataset={ucf101,hmdb51,yuppp,imagenet_vid,folder} \
        --root=DIR --out=DIR [--flow=tvl1|opencv|none] [--workers=N] [--short_side=256] \
        [--beam_pipeline_options="runner=DirectRunner,direct_num_workers=2,..."]

Videos are decoded with PyAV, rescaled so the shorter side is 256, stored as JPEG; optical
flow (optional) is computed on the stored frames and stored as +/-20 px clipped JPEG pairs.
Frames stream through (a worker holds a window of 3 decoded frames, whatever the length);
a video with frames over --max_frame_pixels is skipped and reported.
Unreadable videos are skipped and listed with the reason in manifest.json. The work is split
into shards fixed by plan.json; each shard is written to a hidden temporary file and renamed,
then its summary .json marks it finished, so a killed job started again redoes only the
unfinished shards and a reader never sees half a shard.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import random
import socket
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

import av
import numpy as np
from absl import flags
from tqdm import tqdm

from tfzoo.data import beam, records
from tfzoo.data.adapters import ADAPTERS, Listing, VideoItem, list_dataset, parse_voc_xml
from tfzoo.data.base import DataError
from tfzoo.errors import TfzooError, report
from tfzoo.flow import tvl1_video
from tfzoo.rundir import atomic_write_text
from tfzoo.utils import check_choice
from tfzoo.video import DEFAULT_SHORT_SIDE, iter_frames, scaled_size

FLOW_METHODS = ("none", "tvl1", "opencv")
# A 4K frame: larger decoded or stored frames skip their video (issue 24 item 4).
DEFAULT_MAX_FRAME_PIXELS = 3840 * 2160
LOCK = ".prepare.lock"


# ------------------------------------------------------------------------------- flow
class _FlowComputer:
    """Flow between consecutive stored frames, in pixels at the stored resolution."""

    # Frames per call: TV-L1's compiled batch of 2 pairs + 1. Windows overlap by one frame and
    # start at multiples of 2, so the fields equal those of one call on the whole video.
    WINDOW = 3

    def __init__(self, method: str):
        check_choice("--flow method", method, FLOW_METHODS, error=DataError)
        self.method = method
        self._impl = None
        if method == "opencv":
            try:
                import cv2  # deferred: optional OpenCV (the test extra)

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
            import cv2  # deferred: optional OpenCV (the test extra)

            grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
            return [self._impl.calc(a, b, None) for a, b in zip(grey[:-1], grey[1:])]

        # XLA; one compilation per stored frame size (10-30 s), then ~0.25 s per 256x340 pair.
        return list(tvl1_video(np.stack(frames), batch=self.WINDOW - 1))


# ---------------------------------------------------------------------------- decoding
def _check_pixels(source: str, shape: tuple[int, int], stored: tuple[int, int],
                  cap: int | None) -> None:
    """Refuses a video whose decoded or stored frames exceed `cap` pixels before decoding it
    (a 55 KB 4096x8 MJPEG would otherwise make 256 x 131072 frames: 101 MB each)."""
    if cap and max(shape[0] * shape[1], stored[0] * stored[1]) > cap:
        raise DataError(f"{source}: {shape[1]}x{shape[0]} frames, stored at "
                        f"{stored[1]}x{stored[0]}, exceed max_frame_pixels={cap} (raise "
                        "--max_frame_pixels to prepare it, at that much memory per frame)")


def _iter_images(paths, short_side, max_frame_pixels):
    """Yields (RGB frame, (sx, sy) scale of the first image) for an image sequence."""
    import cv2  # deferred: optional OpenCV (the test extra)

    scale = None
    for p in paths:
        img = cv2.imread(p, cv2.IMREAD_COLOR)
        if img is None:
            raise DataError(f"{p}: unreadable image")
        h, w = img.shape[:2]
        nh, nw = scaled_size(h, w, short_side)
        _check_pixels(p, (h, w), (nh, nw), max_frame_pixels)
        if scale is None:
            scale = (nw / w, nh / h)
        if (nh, nw) != (h, w):
            img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if nh < h
                             else cv2.INTER_CUBIC)
        yield cv2.cvtColor(img, cv2.COLOR_BGR2RGB), scale


def _video_header(path) -> tuple[float, int, int] | None:
    """(fps, height, width) from the container, or None (the decoder then names the error)."""
    try:
        with av.open(path) as c:
            s = c.streams.video[0]
            return float(s.average_rate or 0.0), s.codec_context.height, s.codec_context.width
    except Exception:  # noqa: BLE001 - iter_frames reports what is wrong with the file
        return None


def encode_item(item: VideoItem, params: dict, flow: _FlowComputer | None,
                tmp_dir=None) -> tuple[records.SpooledExample, dict, int]:
    """Decodes and encodes one video -> (its spooled Example, the other record fields, number
    of frames); `spooled.write_to(writer, **fields)` writes it. Frames stream through: at most
    `_FlowComputer.WINDOW` decoded frames are held at a time, whatever the video's length."""
    q = params["jpeg_quality"]
    cap = params.get("max_frame_pixels")
    boxes = None
    scale = [None]
    if item.path is not None:
        fps = 0.0
        header = _video_header(item.path)
        if header is not None:
            fps, h0, w0 = header
            if h0 and w0:
                _check_pixels(item.source, (h0, w0), scaled_size(h0, w0, params["short_side"]),
                              cap)
        frames = iter_frames(item.path, short_side=params["short_side"],
                             max_frames=params["max_frames"])
    else:
        fps = 0.0

        def frames_of(images):
            for img, sc in images:
                scale[0] = sc
                yield img

        frames = frames_of(_iter_images(item.frame_paths, params["short_side"], cap))
    spooled = records.SpooledExample(tmp_dir)
    try:
        size, window = None, []
        for frame in frames:
            if size is None:
                size = frame.shape[:2]
            elif frame.shape[:2] != size:
                raise DataError(f"{item.source}: frames of different sizes ({size[1]}x{size[0]} "
                                f"then {frame.shape[1]}x{frame.shape[0]})")
            spooled.add("frames", records.encode_jpeg(frame, q))
            if flow is not None:
                window.append(frame)
                if len(window) == flow.WINDOW:
                    _add_flow(spooled, flow.pairs(window), params["flow_quality"])
                    window = window[-1:]
        if flow is not None and len(window) > 1:
            _add_flow(spooled, flow.pairs(window), params["flow_quality"])
        del window
        if item.path is None:
            sx, sy = scale[0]
            boxes = []
            for t, a in enumerate(item.annotation_paths or []):
                if a is None:
                    continue
                for o in parse_voc_xml(a)["objects"]:
                    x0, y0, x1, y1 = o["box"]
                    boxes.append((t, o["trackid"], o["label"], x0 * sx, y0 * sy, x1 * sx,
                                  y1 * sy))
    except BaseException:
        spooled.close()
        raise
    n = spooled.count("frames")
    fields = dict(video_id=item.video_id, label=item.label, splits=item.splits, height=size[0],
                  width=size[1], fps=fps, sample_frames=item.attrs.get("sample_frames"),
                  boxes=boxes, attrs={k: v for k, v in item.attrs.items() if k != "sample_frames"})
    return spooled, fields, n


def _add_flow(spooled, fields, quality):
    for field in fields:
        u, v = records.encode_flow_jpegs(field, quality)
        spooled.add("flow_u", u)
        spooled.add("flow_v", v)


def _write_shard(out: str, index: int, count: int, items: list[dict], params: dict) -> dict:
    """Worker: writes one shard atomically and its summary. Never raises for a bad video."""
    name = records.shard_name(index, count)
    final = Path(out) / f"{name}.tfrecord"
    tmp = Path(out) / f".{name}.tfrecord.{os.getpid()}.tmp"
    flow = None if params["flow"] == "none" else _FlowComputer(params["flow"])
    written, skipped = [], []
    frames_total = 0
    with records.RecordWriter(tmp) as w:
        for d in items:
            item = VideoItem(**d)
            try:
                spooled, fields, n = encode_item(item, params, flow, tmp_dir=out)
            except DataError as e:
                skipped.append({"path": item.source, "video_id": item.video_id, "reason": str(e)})
                continue
            except Exception as e:  # noqa: BLE001 - one bad file must never stop the job
                skipped.append({"path": item.source, "video_id": item.video_id,
                                "reason": f"{type(e).__name__}: {e}"})
                continue
            with spooled:  # outside the try: a failed write must not leave half a record
                spooled.write_to(w, **fields)
            frames_total += n
            written.append({"video_id": item.video_id, "label": item.label,
                            "splits": list(item.splits), "num_frames": n})
    os.replace(tmp, final)
    summary = {"shard": final.name, "videos": written, "skipped": skipped,
               "num_frames": frames_total, "worker": f"{socket.gethostname()}:{os.getpid()}"}
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


class _OutLock:
    """An exclusive lock on `out` for one prepare run (flock on out/.prepare.lock, released
    when the process ends however it ends). The file names its holder for the refusal."""

    def __init__(self, out: Path):
        self.path = out / LOCK
        self._f = None

    def __enter__(self):
        import fcntl  # deferred: POSIX only (the lock)

        f = open(self.path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "an unknown process"
            f.close()
            raise DataError(f"--out {str(self.path.parent)!r} is being prepared by another run "
                            f"({holder}); wait for it to finish or pass another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
        f.flush()
        self._f = f
        return self

    def __exit__(self, *exc):
        self._f.seek(0)
        self._f.truncate()  # no stale holder name once released
        self._f.close()


def _check_out(out: Path) -> None:
    """`out` must be new, empty, or a (possibly unfinished) preparation: never a file or an
    unrelated folder, which prepare would otherwise fill with shards without a word."""
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {str(out)!r} is a file; expected a new or empty folder, or a "
                        "folder prepared before (resumed)")
    if out.is_dir() and not (out / records.PLAN).exists() and any(
            p.name != LOCK for p in out.iterdir()):  # a run killed before its plan: just a lock
        found = sorted(p.name for p in out.iterdir() if p.name != LOCK)[:3]
        raise DataError(f"--out {str(out)!r} is a non-empty folder that is not a prepared "
                        f"dataset (it holds {found}..., no {records.PLAN}); pass a new or empty "
                        "folder")


def prepare(dataset: str, root, out, *, flow: str = "none", workers: int = 1,
            short_side: int | None = DEFAULT_SHORT_SIDE, videos_per_shard: int = 64,
            jpeg_quality: int = 90, flow_quality: int = 95, max_frames: int | None = 10000,
            max_frame_pixels: int | None = DEFAULT_MAX_FRAME_PIXELS, seed: int = 0,
            progress: bool = True, dataset_options: dict | None = None,
            beam_pipeline_options: str | None = None) -> dict:
    """Prepares `dataset` from `root` into `out`; returns the manifest (also out/manifest.json).

    Resumes an interrupted run into the same `out` when the parameters and the listing are
    unchanged (raises DataError otherwise, naming what differs). One run at a time holds `out`
    (a lock file; a second run is refused naming the holder). Memory per worker is a window of
    frames whatever a video's length; a video whose frames exceed `max_frame_pixels` (decoded
    or stored) is skipped and reported. `beam_pipeline_options` ("runner=DirectRunner,
    direct_num_workers=2,...") runs the shards as an Apache Beam pipeline instead of local
    processes (tfzoo.data.beam)."""
    check_choice("--flow method", flow, FLOW_METHODS, error=DataError)
    if workers < 1 or videos_per_shard < 1:
        raise DataError(f"workers ({workers}) and videos_per_shard ({videos_per_shard}) must "
                        f"be >= 1")
    if not 1 <= jpeg_quality <= 100 or not 1 <= flow_quality <= 100:
        raise DataError(f"JPEG qualities must be in [1, 100], got {jpeg_quality}/{flow_quality}")
    if max_frame_pixels is not None and max_frame_pixels < 1:
        raise DataError(f"max_frame_pixels must be >= 1 (or 0/None: no cap), got "
                        f"{max_frame_pixels}")
    beam_options = None
    if beam_pipeline_options is not None:
        beam_options = beam.pipeline_options(beam_pipeline_options)  # fails now if not installed
    if flow != "none":
        _FlowComputer(flow)  # fail now (missing OpenCV contrib) rather than in every worker
    # `--root=~/UCF101`: no shell expands a tilde after `=`, so the documented commands need this
    root, out = Path(root).expanduser(), Path(out).expanduser()
    _check_out(out)
    listing = list_dataset(dataset, root, **(dataset_options or {}))
    out.mkdir(parents=True, exist_ok=True)
    params = {"dataset": dataset, "root": str(Path(root).resolve()), "flow": flow,
              "short_side": short_side, "jpeg_quality": jpeg_quality,
              "flow_quality": flow_quality, "flow_bound": records.FLOW_BOUND,
              "max_frames": max_frames, "max_frame_pixels": max_frame_pixels or None,
              "videos_per_shard": videos_per_shard, "seed": seed,
              "dataset_options": {**listing.params, **(dataset_options or {})}}
    with _OutLock(out):
        return _prepare_locked(out, listing, params, workers=workers, progress=progress,
                               beam_options=beam_options)


def _prepare_locked(out: Path, listing: Listing, params: dict, *, workers: int, progress: bool,
                    beam_options) -> dict:
    dataset, videos_per_shard, seed = params["dataset"], params["videos_per_shard"], params["seed"]
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
        done = len(listing.items) - total
        bar = tqdm(total=len(listing.items), initial=done, unit="video", desc=f"prepare {dataset}",
                   file=sys.stderr)
    t0 = time.time()
    if beam_options is not None:
        for s in beam.run_shards(beam_options, str(out), todo, count, plan["shards"], params,
                                 _write_shard):
            if bar is not None:
                bar.update(len(s["videos"]) + len(s["skipped"]))
    elif workers == 1 or len(todo) <= 1:
        for i in todo:
            s = _write_shard(str(out), i, count, plan["shards"][i], params)
            if bar is not None:
                bar.update(len(s["videos"]) + len(s["skipped"]))
    else:
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


PROG = "python -m tfzoo.data.prepare"


def define_flags(fv):
    """prepare's flags, defined into the FlagValues `fv` (a private one per `main` call, so
    main runs in-process as often as tests call it)."""
    flags.DEFINE_enum("dataset", None, sorted(ADAPTERS), "Layout of --root.", flag_values=fv)
    flags.DEFINE_string("root", None, "The dataset as distributed.", flag_values=fv)
    flags.DEFINE_string("out", None, "Output directory (resumed if it holds this preparation).",
                        flag_values=fv)
    flags.DEFINE_enum("flow", "none", FLOW_METHODS, "Optical flow to precompute: tfzoo's "
                      "TV-L1, OpenCV's Dual TV-L1, or none.", flag_values=fv)
    flags.DEFINE_integer("workers", 1, "Parallel processes (local run).", flag_values=fv)
    flags.DEFINE_integer("short_side", DEFAULT_SHORT_SIDE, "Rescale so the shorter side has "
                         "this many pixels (0: keep).", flag_values=fv)
    flags.DEFINE_integer("videos_per_shard", 64, "Videos per TFRecord shard (the unit of "
                         "work and of resuming).", flag_values=fv)
    flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality of the frames.", flag_values=fv)
    flags.DEFINE_integer("flow_quality", 95, "JPEG quality of the flow planes.", flag_values=fv)
    flags.DEFINE_integer("max_frames", 10000, "Keep at most this many frames of a video "
                         "(0: no limit).", flag_values=fv)
    flags.DEFINE_integer("max_frame_pixels", DEFAULT_MAX_FRAME_PIXELS, "Skip (and report) a "
                         "video whose decoded or stored frames have more pixels (0: no cap).",
                         flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Shard assignment and YUP++ split seed.", flag_values=fv)
    flags.DEFINE_string("split_file", None, "YUP++ only: the training videos, one "
                        "ROOT-relative path a line (e.g. the official split's list); the others "
                        "test. Default: a seeded 10/90 split per class and camera, not the "
                        "official one.", flag_values=fv)
    flags.DEFINE_string("beam_pipeline_options", None, "Run as an Apache Beam pipeline with "
                        "these comma-separated key=value Beam options, e.g. "
                        "'runner=DirectRunner,direct_num_workers=2,"
                        "direct_running_mode=multi_processing' (needs tfzoo[beam]; see "
                        "docs/data.md).", flag_values=fv)
    flags.DEFINE_bool("no_progress", False, "No progress bar.", flag_values=fv)
    for name in ("dataset", "root", "out"):
        flags.mark_flag_as_required(name, flag_values=fv)


def _undash(argv: list[str], known) -> list[str]:
    """The dashed spellings of release 0.1 (`--short-side`) as aliases, with a note."""
    out = []
    for arg in argv:
        name, eq, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if "-" in name and name.replace("-", "_") in known:
            new = name.replace("-", "_")
            print(f"{PROG}: note: --{name} is deprecated, use --{new} (the dashed spellings "
                  "go in the next release)", file=sys.stderr)
            arg = f"--{new}{eq}{value}"
        out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    fv = flags.FlagValues()
    define_flags(fv)
    if any(a in ("-h", "--help", "--helpfull", "-help") for a in argv):
        print(__doc__.split("\n\n")[0] + "\n\n" + fv.get_help(include_special_flags=False))
        return 0
    try:
        rest = fv([PROG, *_undash(argv, fv)])
    except flags.Error as e:
        return report(TfzooError(f"{e} (--help lists the flags)"), PROG)
    a = fv
    opts = {"seed": a.seed} if a.dataset in ("yuppp", "imagenet_vid") else {}
    try:
        if len(rest) > 1:
            raise TfzooError(f"unexpected arguments {rest[1:]}; every setting is a --flag")
        if a.split_file is not None:
            if a.dataset != "yuppp":
                raise TfzooError(f"--split_file applies to --dataset=yuppp; {a.dataset} reads "
                                 "its splits from the dataset's own files under --root")
            opts = {"split_file": a.split_file}
        m = prepare(a.dataset, a.root, a.out, flow=a.flow, workers=a.workers,
                    short_side=a.short_side or None, videos_per_shard=a.videos_per_shard,
                    jpeg_quality=a.jpeg_quality, flow_quality=a.flow_quality,
                    max_frames=a.max_frames or None, max_frame_pixels=a.max_frame_pixels or None,
                    seed=a.seed, progress=not a.no_progress, dataset_options=opts,
                    beam_pipeline_options=a.beam_pipeline_options)
    except TfzooError as e:
        return report(e, PROG)
    print(f"prepared {m['num_videos']} videos ({m['num_frames']} frames) into {a.out}: "
          f"splits {m['splits']}; skipped {len(m['skipped'])}"
          + (f" (see {Path(a.out) / records.MANIFEST})" if m["skipped"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
