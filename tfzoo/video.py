"""Videos in and out, with PyAV: the one reader (RGB uint8 frames, optionally rescaled), the
one writer (H.264) and the test protocol's frame sampling, for `tfzoo.data` and `tfzoo.flow`
alike (neither imports the other for them).

Every read failure (missing, corrupt, truncated, unsupported, empty file) raises `DataError`
naming the file and the reason, so batch jobs (`tfzoo.data.prepare`) can skip and report it.
"""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np

from tfzoo.errors import DataError, TfzooError

DEFAULT_SHORT_SIDE = 256  # the papers rescale so the smallest side is 256 (thesis §3.3.5)


def _av():
    try:
        import av  # deferred: a missing PyAV becomes a DataError on first use
    except ImportError as e:  # pragma: no cover - av is a hard dependency of tfzoo.data
        raise DataError("video decoding needs PyAV: pip install av") from e
    return av


def _open(path):
    av = _av()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(path, mode="r")
    except av.FFmpegError as e:
        raise DataError(f"{path}: cannot open as a video ({type(e).__name__}: {e})") from e
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot open as a video ({e})") from e
    if not container.streams.video:
        container.close()
        raise DataError(f"{path}: no video stream (streams: "
                        f"{[s.type for s in container.streams] or 'none'})")
    return container, container.streams.video[0]


def scaled_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """(height, width) after rescaling so the shorter side is `short_side` (aspect kept)."""
    if short_side is None:
        return int(height), int(width)
    if short_side < 1:
        raise TfzooError(f"short_side must be a positive number of pixels or None, got {short_side}")
    s = short_side / min(height, width)
    if height <= width:
        return int(short_side), max(1, int(round(width * s)))
    return max(1, int(round(height * s))), int(short_side)


def video_info(path) -> tuple[int, float, int, int]:
    """(num_frames, fps, height, width) of the first video stream, from the container.

    When the container does not store a frame count (some AVI/WebM/MKV files), the video
    packets are counted instead (demuxing only, no decoding). fps is the average frame rate
    (0.0 if the container does not say).
    """
    av = _av()
    container, stream = _open(path)
    try:
        height, width = stream.codec_context.height, stream.codec_context.width
        if not height or not width:
            raise DataError(f"{os.fspath(path)}: video stream has no frame size "
                            f"(unsupported or corrupt codec data)")
        rate = stream.average_rate or stream.guessed_rate or Fraction(0)
        n = int(stream.frames or 0)
        if n <= 0:
            try:
                n = sum(1 for p in container.demux(stream) if p.size > 0)
            except av.FFmpegError as e:
                raise DataError(f"{os.fspath(path)}: corrupt stream while counting frames "
                                f"({type(e).__name__}: {e})") from e
        if n <= 0:
            raise DataError(f"{os.fspath(path)}: the video stream holds no frames")
        return n, float(rate), int(height), int(width)
    finally:
        container.close()


def iter_frames(path, *, start: int = 0, num_frames: int | None = None,
                short_side: int | None = DEFAULT_SHORT_SIDE, max_frames: int | None = None,
                size: tuple[int, int] | None = None):
    """Yields the frames `read_video` returns, one RGB uint8 (H, W, 3) array at a time (so long
    videos can be encoded frame by frame without holding them in memory). Same arguments and
    errors as `read_video`; the errors are raised when iteration reaches them."""
    if size is not None:
        if short_side is not None:
            raise TfzooError(f"pass size={size!r} or short_side={short_side!r}, not both "
                             "(short_side=None with size)")
        if len(size) != 2 or min(size) < 1:
            raise TfzooError(f"size must be (height, width) in pixels, got {size!r}")
    if start < 0:
        raise TfzooError(f"start must be >= 0, got {start}")
    if num_frames is not None and num_frames < 1:
        raise TfzooError(f"num_frames must be >= 1 or None, got {num_frames}")
    if max_frames is not None and max_frames < 1:
        raise TfzooError(f"max_frames must be >= 1 or None, got {max_frames}")
    return _iter_frames(path, start, num_frames, short_side, max_frames, size)


def _iter_frames(path, start, num_frames, short_side, max_frames, fixed_size):
    limit = min(x for x in (num_frames, max_frames, np.inf) if x is not None)
    av = _av()
    path_s = os.fspath(path)
    container, stream = _open(path)
    stream.thread_type = "AUTO"  # frame + slice threads: ~2x faster decode of H.264
    index = 0
    produced = 0
    size = interp = None
    try:
        frames = container.decode(stream)
        while produced < limit:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.FFmpegError as e:
                raise DataError(f"{path_s}: decoding failed after {index} frames "
                                f"({type(e).__name__}: {e})") from e
            except (MemoryError, ValueError) as e:
                raise DataError(f"{path_s}: decoding failed after {index} frames ({e})") from e
            if index >= start:
                if size is None:
                    size = (tuple(fixed_size) if fixed_size is not None
                            else scaled_size(frame.height, frame.width, short_side))
                    shrink = size[0] * size[1] <= frame.height * frame.width
                    interp = "AREA" if shrink else "BICUBIC"
                if (frame.height, frame.width) == size:
                    img = frame.to_ndarray(format="rgb24")
                else:
                    img = frame.to_ndarray(format="rgb24", width=size[1], height=size[0],
                                           interpolation=interp)
                produced += 1
                yield img
            index += 1
    finally:
        container.close()
    if produced == 0:
        if index == 0:
            raise DataError(f"{path_s}: no decodable video frames (empty or corrupt stream)")
        raise DataError(f"{path_s}: start={start} is past the last frame (the video has "
                        f"{index} frames)")


def read_video(path, *, start: int = 0, num_frames: int | None = None,
               short_side: int | None = DEFAULT_SHORT_SIDE,
               max_frames: int | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decodes frames [start, start + num_frames) of a video as RGB uint8 (T, H, W, 3).

    start: index of the first frame (0-based, in decoding order).
    num_frames: how many frames; None = to the end. A video that ends earlier gives fewer
        frames (the frame counts in headers are often wrong); one that has no frame at or
        after `start` raises DataError.
    short_side: rescale (area interpolation when shrinking, bicubic when enlarging) so the
        shorter side has this many pixels; None keeps the stored size.
    max_frames: a memory guard for unexpectedly long files: stop after this many frames.
    size: (height, width) to resize every frame to instead (with short_side=None).

    Raises DataError (naming the file and the reason) for missing, empty, corrupt, truncated
    or unsupported files, or when decoding fails part-way.
    """
    return np.stack(list(iter_frames(path, start=start, num_frames=num_frames,
                                     short_side=short_side, max_frames=max_frames, size=size)))


def test_indices(num_video_frames, num_frames: int):
    """`num_frames` equally spaced frames covering the whole video (the test protocol)."""
    import tensorflow as tf  # deferred: loads TensorFlow

    n = tf.cast(num_video_frames, tf.float32)
    pos = tf.linspace(0.0, n - 1.0, num_frames)
    return tf.cast(tf.round(pos), tf.int32)


class VideoWriter:
    """H.264 (yuv420p) writer; odd frame sizes are padded by one pixel, which libx264 needs.

    Example:
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "grey.mp4")
    >>> with VideoWriter(path, fps=10) as w:
    ...     for _ in range(3):
    ...         w.write(np.full((15, 21, 3), 128, np.uint8))
    >>> read_video(path, short_side=None).shape
    (3, 16, 22, 3)
    """

    def __init__(self, path, fps: float = 25.0):
        self.path = str(path)
        self.fps = fps
        self._c = None
        self._s = None

    def __enter__(self):
        self._c = _av().open(self.path, "w")
        return self

    def write(self, rgb: np.ndarray) -> None:
        av = _av()
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
