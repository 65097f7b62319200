"""python -m tfzoo.flow --video IN.mp4 --out OUT [--format mp4|npz|jpeg]

Computes TV-L1 flow between consecutive frames, `--chunk` frame pairs at a time, so memory
stays bounded on long videos. Formats:
  mp4   a rendering of the flow (Middlebury colour wheel, or --render uvm), OUT is a file;
  npz   float32 flow, one entry `flow_000000` ... per frame pair, written as it is computed
        (read with `tfzoo.flow.load_npz(OUT)` or lazily with np.load);
  jpeg  the papers' storage: OUT/u/000000.jpg and OUT/v/000000.jpg, +-20 px -> uint8.
"""

from __future__ import annotations

import io
import os
import types
import zipfile
from pathlib import Path

import numpy as np
from absl import app, flags
from tqdm import tqdm

from tfzoo import video
from tfzoo.errors import DataError, TfzooError, report
from tfzoo.utils import parse_flags
from tfzoo.video import VideoWriter


class FlowCLIError(TfzooError):
    """A bad --video / --out / option of the flow CLI."""


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise FlowCLIError(f"--resize={text!r}: expected HEIGHTxWIDTH, e.g. 256x340") from None
    if h < 2 or w < 2:
        raise FlowCLIError(f"--resize={text!r}: the size must be at least 2x2")
    return h, w


FLAGS = flags.FLAGS
SOLVER_INTS = {"iterations": 50, "warps": 5, "max_scales": 5}
SOLVER_FLOATS = {"tau": 0.25, "lbda": 0.15, "theta": 0.3, "zfactor": 0.5, "sigma": 0.8}


def define_flags():
    """The program's flags; defined on demand so that importing this module defines none."""
    flags.DEFINE_string("video", None, "Input video (anything FFmpeg reads).")
    flags.DEFINE_string("out", None, "Output file (mp4, npz) or directory (jpeg).")
    flags.DEFINE_enum("format", None, ["mp4", "npz", "jpeg"],
                      "Default: from --out's suffix (.mp4, .npz), else jpeg.")
    flags.DEFINE_string("resize", None, "HxW: compute flow at this resolution (flow is in "
                        "pixels of it).")
    flags.DEFINE_integer("chunk", 2, "Frame pairs per solver call (2: bigger batches are not "
                         "faster on a CPU).")
    flags.DEFINE_enum("render", "wheel", ["wheel", "uvm"], "mp4 rendering.")
    flags.DEFINE_float("max_flow", None, "mp4 wheel: magnitude (px) shown fully saturated; "
                       f"default: the {WHEEL_PERCENTILE}th percentile of the video's flow "
                       "magnitudes (a fixed number compares videos on one scale).")
    flags.DEFINE_float("bound", 20.0, "jpeg: clip bound in px.")
    flags.DEFINE_integer("max_frames", None, "Stop after this many frames.")
    for name, default in SOLVER_INTS.items():
        flags.DEFINE_integer(name, default, f"TV-L1 {name} (tfzoo.flow.TVL1).")
    for name, default in SOLVER_FLOATS.items():
        flags.DEFINE_float(name, default, f"TV-L1 {name} (tfzoo.flow.TVL1).")
    flags.DEFINE_bool("opencv", False, "OpenCV's DualTVL1 choices (tfzoo.flow.OPENCV: no "
                      "presmoothing, no pyramid antialiasing, zero border); overrides --sigma.")


class _NpzSink:
    def __init__(self, path):
        self.zf = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        self.i = 0

    def abort(self):
        self.zf.close()

    def write(self, flow):
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.ascontiguousarray(flow, np.float32))
        self.zf.writestr(f"flow_{self.i:06d}.npy", buf.getvalue())
        self.i += 1

    def close(self):
        self.zf.close()


class _JpegSink:
    def __init__(self, out, bound):
        import tensorflow as tf  # deferred: loads TensorFlow

        from tfzoo.flow.encoding import encode_flow  # deferred: loads TensorFlow

        self.tf, self.encode, self.bound = tf, encode_flow, bound
        self.dirs = [Path(out) / "u", Path(out) / "v"]
        self.i = 0

    def write(self, flow):
        if self.i == 0:  # created on the first field: a failed run leaves no empty folders
            for d in self.dirs:
                d.mkdir(parents=True, exist_ok=True)
        code = self.encode(flow, self.bound)
        for c, d in enumerate(self.dirs):
            data = self.tf.io.encode_jpeg(code[..., c : c + 1], quality=95).numpy()
            (d / f"{self.i:06d}.jpg").write_bytes(data)
        self.i += 1

    def close(self):
        pass

    abort = close


# The default wheel scale: a robust maximum of the video's own motion. A fixed 10 px left real
# videos (most motion 1-3 px/frame) nearly white; the largest magnitude is one outlier's.
WHEEL_PERCENTILE = 99


def wheel_scale(flows) -> float:
    """The magnitude (px) the colour wheel saturates at for these flows (T, H, W, 2):
    their WHEEL_PERCENTILE-th percentile, at least 0.1 px (a still video stays white)."""
    flows = np.asarray(flows, np.float32)
    return max(float(np.percentile(np.hypot(flows[..., 0], flows[..., 1]), WHEEL_PERCENTILE)),
               0.1)


class _Mp4Sink:
    def __init__(self, out, fps, mode, max_flow):
        from tfzoo.flow.encoding import render_flow  # deferred: loads TensorFlow

        self.render, self.mode, self.max_flow = render_flow, mode, max_flow
        self.w = VideoWriter(out, fps=fps).__enter__()
        self.pending = []

    def write(self, flow):
        if self.mode == "uvm" or self.max_flow is None:
            # Scaled over the whole sequence ((u, v, |w|) min-max, or the wheel's percentile):
            # keep the encoded code (uint8, 4x smaller than float) and render at the end.
            from tfzoo.flow.encoding import encode_flow  # deferred: loads TensorFlow

            self.pending.append(encode_flow(flow))
            return
        self.w.write(self.render(flow, "wheel", self.max_flow))

    def close(self):
        if self.pending:
            from tfzoo.flow.encoding import decode_flow  # deferred: loads TensorFlow

            flows = decode_flow(np.stack(self.pending))
            if self.mode == "uvm":
                images = self.render(flows, "uvm")
            else:
                self.max_flow = wheel_scale(flows)
                print(f"colour wheel saturated at {self.max_flow:.2f} px (the "
                      f"{WHEEL_PERCENTILE}th percentile of the video's flow; --max_flow fixes it)")
                images = (self.render(f, "wheel", self.max_flow) for f in flows)
            for img in images:
                self.w.write(img)
        self.w.__exit__(None, None, None)

    def abort(self):
        try:
            self.w.__exit__(None, None, None)
        except Exception:  # noqa: BLE001 - the partial file is deleted anyway
            pass


def _check_video(path) -> tuple[int | None, float]:
    """(frame count, fps) of a readable video, else a FlowCLIError naming it."""
    if not Path(path).is_file():
        raise FlowCLIError(f"--video {str(path)!r} does not exist; expected a video file "
                           "(anything FFmpeg reads)")
    try:
        total, fps, _, _ = video.video_info(path)
    except DataError as e:
        raise FlowCLIError(f"--video {str(path)!r} is not a readable video ({e}); expected "
                           "anything FFmpeg decodes") from None
    return total, fps or 25.0  # containers that do not say


def _open_sink(fmt, out: Path, tmp: Path, args, fps):
    """The output sink, writing to `tmp` (renamed to `out` on success) for file formats."""
    try:
        if fmt == "jpeg":
            if out.exists() and not out.is_dir():
                raise FlowCLIError(f"--out {str(out)!r} is a file; --format jpeg writes a folder "
                                   "(OUT/u, OUT/v)")
            out.mkdir(parents=True, exist_ok=True)
            if not os.access(out, os.W_OK):
                raise PermissionError(f"{out} is not writable")
            return _JpegSink(out, args.bound)
        if out.is_dir():
            raise FlowCLIError(f"--out {str(out)!r} is a folder; --format {fmt} writes a file")
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "npz":
            return _NpzSink(tmp)
        return _Mp4Sink(tmp, fps, args.render, args.max_flow)
    except OSError as e:
        raise FlowCLIError(f"--out {str(out)!r} cannot be written ({e.strerror or e}); expected "
                           "a writable path") from None


def run(args) -> int:
    from tfzoo.flow.solver import _compiled_solver  # deferred: loads TensorFlow

    out = Path(args.out)
    fmt = args.format or {".mp4": "mp4", ".npz": "npz"}.get(out.suffix.lower(), "jpeg")
    for name in ("chunk", "iterations", "warps", "max_scales"):
        if getattr(args, name) < 1:
            raise FlowCLIError(f"--{name}={getattr(args, name)}: expected >= 1")
    if args.max_frames is not None and args.max_frames < 2:
        raise FlowCLIError(f"--max_frames={args.max_frames}: expected >= 2 (flow needs two "
                           "frames)")
    # Everything a user can get wrong is checked before the solver is compiled.
    total, fps = _check_video(args.video)
    if args.max_frames:
        total = min(total or args.max_frames, args.max_frames)
    # Files are written under a temporary name and renamed at the end: a failed or killed run
    # never leaves a file that looks finished. The suffix stays so FFmpeg picks the container.
    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}{out.suffix}")
    sink = _open_sink(fmt, out, tmp, args, fps)
    params = dict(iterations=args.iterations, warps=args.warps, max_scales=args.max_scales,
                  tau=args.tau, lbda=args.lbda, theta=args.theta, zfactor=args.zfactor,
                  sigma=args.sigma)
    if args.opencv:
        from tfzoo.flow.solver import OPENCV  # deferred: loads TensorFlow

        params.update(OPENCV)

    import tensorflow as tf  # deferred: loads TensorFlow

    solver = None

    def flush(buf):
        nonlocal solver
        solver = solver or _compiled_solver(tuple(sorted(params.items())))
        n = len(buf) - 1
        # Pad short chunks to the full length: one compiled shape for the whole video.
        padded = buf + [buf[-1]] * (args.chunk + 1 - len(buf))
        flows = solver(tf.constant(np.stack(padded)[None], tf.float32))[0].numpy()
        for f in flows[:n]:
            sink.write(f)

    buf: list[np.ndarray] = []
    count = 0
    done = False
    try:
        with tqdm(total=(total - 1) if total else None, unit="pair", desc="flow") as bar:
            try:
                for frame in video.iter_frames(args.video, short_side=None, size=args.resize):
                    if buf and frame.shape != buf[0].shape:
                        raise FlowCLIError(f"frame {count} of {args.video} has shape "
                                           f"{frame.shape}, the first had {buf[0].shape}; "
                                           "pass --resize HxW")
                    buf.append(frame)
                    count += 1
                    if len(buf) == args.chunk + 1:
                        flush(buf)
                        bar.update(len(buf) - 1)
                        buf = buf[-1:]
                    if args.max_frames and count >= args.max_frames:
                        break
            except DataError as e:
                raise FlowCLIError(f"--video {args.video!r}: {e}; expected a readable video") from None
            if count < 2:
                raise FlowCLIError(f"--video {args.video!r}: {count} frame(s) decoded; flow needs "
                                   "at least 2")
            if len(buf) >= 2:
                flush(buf)
                bar.update(len(buf) - 1)
        sink.close()
        done = True
    finally:
        if not done:
            sink.abort()
            tmp.unlink(missing_ok=True)
    if fmt != "jpeg":
        os.replace(tmp, out)
    print(f"wrote {count - 1} flow fields to {args.out} ({fmt})")
    return 0


def main(argv) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if len(argv) > 1:
            raise FlowCLIError(f"unexpected arguments {argv[1:]}; every option is a --flag")
        for name in ("video", "out"):
            if not FLAGS[name].value:
                raise FlowCLIError(f"--{name} is required")
        args = types.SimpleNamespace(**{name: FLAGS[name].value for name in (
            "video", "out", "format", "chunk", "render", "max_flow", "bound", "max_frames",
            "opencv", *SOLVER_INTS, *SOLVER_FLOATS)})
        args.resize = _size(FLAGS.resize) if FLAGS.resize else None
        return run(args)
    except TfzooError as e:
        return report(e, "python -m tfzoo.flow")


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=parse_flags)
