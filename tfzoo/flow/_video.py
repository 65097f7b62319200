"""Minimal PyAV reading/writing for the flow CLI (to be unified with tfzoo.data.decode)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def probe(path) -> tuple[int | None, float]:
    """(frame count or None when the container does not say, frames per second)."""
    import av

    _require(path)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        fps = float(s.average_rate) if s.average_rate else 25.0
        return (int(s.frames) or None), fps


def iter_frames(path, size: tuple[int, int] | None = None):
    """Yields the video's frames as uint8 RGB (H, W, 3), resized to `size` = (H, W) if given."""
    import av

    _require(path)
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            if size is not None:
                frame = frame.reformat(width=size[1], height=size[0])
            yield frame.to_ndarray(format="rgb24")


def _require(path) -> None:
    if not Path(path).is_file():
        raise FileNotFoundError(f"video {str(path)!r} does not exist")


class VideoWriter:
    """H.264 (yuv420p) writer; odd frame sizes are padded by one pixel, which libx264 needs."""

    def __init__(self, path, fps: float = 25.0):
        self.path = str(path)
        self.fps = fps
        self._c = None
        self._s = None

    def __enter__(self):
        import av

        self._c = av.open(self.path, "w")
        return self

    def write(self, rgb: np.ndarray) -> None:
        import av

        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        h, w = rgb.shape[:2]
        if self._s is None:
            self._s = self._c.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            self._s.width, self._s.height = w + w % 2, h + h % 2
            self._s.pix_fmt = "yuv420p"
        if (h % 2) or (w % 2):
            rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        for packet in self._s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
            self._c.mux(packet)

    def __exit__(self, *exc):
        if self._s is not None:
            for packet in self._s.encode():
                self._c.mux(packet)
        self._c.close()
        return False
