"""python -m tfzoo.flow --video IN.mp4 --out OUT [--format mp4|npz|jpeg]

Computes TV-L1 flow between consecutive frames, `--chunk` frame pairs at a time, so memory
stays bounded on long videos. Formats:
  mp4   a rendering of the flow (Middlebury colour wheel, or --render uvm), OUT is a file;
  npz   float32 flow, one entry `flow_000000` ... per frame pair, written as it is computed
        (read with `tfzoo.flow.__main__.load_npz(OUT)` or lazily with np.load);
  jpeg  the papers' storage: OUT/u/000000.jpg and OUT/v/000000.jpg, +-20 px -> uint8.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import zipfile
from pathlib import Path

import numpy as np


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, e.g. 256x340; got {text!r}")
    if h < 2 or w < 2:
        raise argparse.ArgumentTypeError(f"size must be at least 2x2, got {text!r}")
    return h, w


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tfzoo.flow", description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", required=True, help="input video (anything FFmpeg reads)")
    p.add_argument("--out", required=True, help="output file (mp4, npz) or directory (jpeg)")
    p.add_argument("--format", choices=("mp4", "npz", "jpeg"), default=None,
                   help="default: from --out's suffix (.mp4, .npz), else jpeg")
    p.add_argument("--resize", type=_size, default=None, metavar="HxW",
                   help="compute flow at this resolution (flow is in pixels of it)")
    p.add_argument("--chunk", type=int, default=2,
                   help="frame pairs per solver call (2: bigger batches are not faster on a CPU)")
    p.add_argument("--render", choices=("wheel", "uvm"), default="wheel", help="mp4 rendering")
    p.add_argument("--max-flow", type=float, default=10.0,
                   help="mp4 wheel: magnitude (px) shown fully saturated, fixed for the video")
    p.add_argument("--bound", type=float, default=20.0, help="jpeg: clip bound in px")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    for name, default in (("iterations", 50), ("warps", 5), ("max-scales", 5)):
        p.add_argument(f"--{name}", type=int, default=default)
    for name, default in (("tau", 0.25), ("lbda", 0.15), ("theta", 0.3), ("zfactor", 0.5),
                          ("sigma", 0.8)):
        p.add_argument(f"--{name}", type=float, default=default)
    p.add_argument("--opencv", action="store_true",
                   help="OpenCV's DualTVL1 choices (tfzoo.flow.OPENCV: no presmoothing, no "
                        "pyramid antialiasing, zero border); overrides --sigma")
    return p


class _NpzSink:
    def __init__(self, path):
        self.zf = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        self.i = 0

    def write(self, flow):
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.ascontiguousarray(flow, np.float32))
        self.zf.writestr(f"flow_{self.i:06d}.npy", buf.getvalue())
        self.i += 1

    def close(self):
        self.zf.close()


class _JpegSink:
    def __init__(self, out, bound):
        import tensorflow as tf

        from tfzoo.flow.encoding import encode_flow

        self.tf, self.encode, self.bound = tf, encode_flow, bound
        self.dirs = [Path(out) / "u", Path(out) / "v"]
        for d in self.dirs:
            d.mkdir(parents=True, exist_ok=True)
        self.i = 0

    def write(self, flow):
        code = self.encode(flow, self.bound)
        for c, d in enumerate(self.dirs):
            data = self.tf.io.encode_jpeg(code[..., c : c + 1], quality=95).numpy()
            (d / f"{self.i:06d}.jpg").write_bytes(data)
        self.i += 1

    def close(self):
        pass


class _Mp4Sink:
    def __init__(self, out, fps, mode, max_flow):
        from tfzoo.video import VideoWriter
        from tfzoo.flow.encoding import render_flow

        self.render, self.mode, self.max_flow = render_flow, mode, max_flow
        self.w = VideoWriter(out, fps=fps).__enter__()
        self.pending = []

    def write(self, flow):
        if self.mode == "uvm":
            # The (u, v, |w|) rendering is min-max scaled over the sequence; keep the encoded
            # code (uint8, 4x smaller than float) and render at the end.
            from tfzoo.flow.encoding import encode_flow

            self.pending.append(encode_flow(flow))
            return
        self.w.write(self.render(flow, "wheel", self.max_flow))

    def close(self):
        if self.pending:
            from tfzoo.flow.encoding import decode_flow

            for img in self.render(decode_flow(np.stack(self.pending)), "uvm"):
                self.w.write(img)
        self.w.__exit__(None, None, None)


def load_npz(path) -> np.ndarray:
    """All flow fields of an npz written by this CLI, stacked: (T-1, H, W, 2)."""
    with np.load(path) as z:
        return np.stack([z[k] for k in sorted(z.files)])


def run(args) -> int:
    from tqdm import tqdm

    from tfzoo import video
    from tfzoo.flow.solver import _compiled_solver

    fmt = args.format or {".mp4": "mp4", ".npz": "npz"}.get(Path(args.out).suffix.lower(), "jpeg")
    if args.chunk < 1:
        raise SystemExit(f"--chunk must be >= 1, got {args.chunk}")
    total, fps, _, _ = video.video_info(args.video)
    fps = fps or 25.0  # containers that do not say
    if args.max_frames:
        total = min(total or args.max_frames, args.max_frames)
    params = dict(iterations=args.iterations, warps=args.warps, max_scales=args.max_scales,
                  tau=args.tau, lbda=args.lbda, theta=args.theta, zfactor=args.zfactor,
                  sigma=args.sigma)
    if args.opencv:
        from tfzoo.flow.solver import OPENCV

        params.update(OPENCV)
    solver = _compiled_solver(tuple(sorted(params.items())))
    if fmt != "jpeg":
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if fmt == "npz":
        sink = _NpzSink(args.out)
    elif fmt == "jpeg":
        sink = _JpegSink(args.out, args.bound)
    else:
        sink = _Mp4Sink(args.out, fps, args.render, args.max_flow)

    import tensorflow as tf

    def flush(buf):
        n = len(buf) - 1
        # Pad short chunks to the full length: one compiled shape for the whole video.
        padded = buf + [buf[-1]] * (args.chunk + 1 - len(buf))
        flows = solver(tf.constant(np.stack(padded)[None], tf.float32))[0].numpy()
        for f in flows[:n]:
            sink.write(f)

    buf: list[np.ndarray] = []
    count = 0
    try:
        with tqdm(total=(total - 1) if total else None, unit="pair", desc="flow") as bar:
            for frame in video.iter_frames(args.video, short_side=None, size=args.resize):
                if buf and frame.shape != buf[0].shape:
                    raise SystemExit(f"frame {count} has shape {frame.shape}, the first had "
                                     f"{buf[0].shape}; use --resize")
                buf.append(frame)
                count += 1
                if len(buf) == args.chunk + 1:
                    flush(buf)
                    bar.update(len(buf) - 1)
                    buf = buf[-1:]
                if args.max_frames and count >= args.max_frames:
                    break
            if len(buf) >= 2:
                flush(buf)
                bar.update(len(buf) - 1)
    finally:
        sink.close()
    if count < 2:
        raise SystemExit(f"{args.video}: {count} frame(s) decoded; flow needs at least 2")
    print(f"wrote {count - 1} flow fields to {args.out} ({fmt})")
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
