"""Flow storage (the papers' uint8 encoding) and rendering (colour wheel, (u, v, |w|) RGB).

Storage: flow clipped to +-`bound` px (20 in the papers, thesis §3.3.5 / §4.3.5) and mapped
linearly to uint8 [0, 255], one grey JPEG per component. The round trip is exact up to the
quantisation step 2 * bound / 255 (0.157 px at bound 20): |decode(encode(f)) - clip(f)| <=
bound / 255.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfzoo.errors import TfzooError
from tfzoo.video import VideoWriter

DEFAULT_BOUND = 20.0


def _is_tf(x) -> bool:
    return isinstance(x, (tf.Tensor, tf.Variable)) or (
        hasattr(x, "dtype") and not isinstance(x, np.ndarray) and tf.is_tensor(x)
    )


def encode_flow(flow, bound: float = DEFAULT_BOUND, quantize: bool = True):
    """Flow in pixels -> the papers' uint8 code (numpy or TF, same shape).

    `quantize=False` returns the unrounded float code (differentiable), which is what an
    end-to-end motion stream sees in place of a decoded JPEG.
    """
    if bound <= 0:
        raise TfzooError(f"bound must be > 0 px, got {bound!r}")
    scale = 255.0 / (2.0 * bound)
    if _is_tf(flow):
        code = (tf.clip_by_value(tf.cast(flow, tf.float32), -bound, bound) + bound) * scale
        return tf.cast(tf.round(code), tf.uint8) if quantize else code
    code = (np.clip(np.asarray(flow, np.float32), -bound, bound) + bound) * scale
    return np.round(code).astype(np.uint8) if quantize else code.astype(np.float32)


def decode_flow(code, bound: float = DEFAULT_BOUND):
    """The uint8 (or float) code -> flow in pixels, the inverse of `encode_flow`."""
    if bound <= 0:
        raise TfzooError(f"bound must be > 0 px, got {bound!r}")
    step = 2.0 * bound / 255.0
    if _is_tf(code):
        return tf.cast(code, tf.float32) * step - bound
    return np.asarray(code, np.float32) * step - bound


def _check_flow(flow, what: str = "flow") -> np.ndarray:
    flow = np.asarray(flow, np.float32)
    if flow.ndim < 3 or flow.shape[-1] != 2:
        raise TfzooError(f"{what}: got shape {flow.shape}; expected (..., H, W, 2) (u, v) in px")
    return flow


def _colour_wheel() -> np.ndarray:
    # Baker et al., "A Database and Evaluation Methodology for Optical Flow" (IJCV 2011):
    # hue segments red-yellow-green-cyan-blue-magenta with 15, 6, 4, 11, 13, 6 steps, chosen
    # so that perceptually similar hues get similar arc length.
    segments = [(15, (255, 0, 0), (255, 255, 0)), (6, (255, 255, 0), (0, 255, 0)),
                (4, (0, 255, 0), (0, 255, 255)), (11, (0, 255, 255), (0, 0, 255)),
                (13, (0, 0, 255), (255, 0, 255)), (6, (255, 0, 255), (255, 0, 0))]
    rows = []
    for n, a, b in segments:
        t = np.arange(n, dtype=np.float64)[:, None] / n
        rows.append(np.array(a)[None] * (1 - t) + np.array(b)[None] * t)
    return np.concatenate(rows) / 255.0  # (55, 3)


_WHEEL = _colour_wheel()


def flow_to_color(flow, max_flow: float | None = None) -> np.ndarray:
    """Middlebury colour-wheel rendering: hue = direction, saturation = magnitude.

    `flow` (..., H, W, 2); `max_flow` the magnitude shown fully saturated (default: the
    largest magnitude in `flow`, so a single image uses the whole range). Returns uint8 RGB.
    """
    flow = _check_flow(flow)
    u, v = flow[..., 0], flow[..., 1]
    mag = np.hypot(u, v)
    norm = max_flow if max_flow is not None else float(mag.max())
    norm = max(norm, 1e-6)
    mag = np.minimum(mag / norm, 1.0)
    angle = np.arctan2(-v, -u) / np.pi  # [-1, 1]
    pos = (angle + 1) / 2 * (len(_WHEEL) - 1)
    k0 = np.floor(pos).astype(int)
    k1 = (k0 + 1) % len(_WHEEL)
    f = (pos - k0)[..., None]
    col = _WHEEL[k0] * (1 - f) + _WHEEL[k1] * f
    col = 1 - mag[..., None] * (1 - col)  # white at rest, saturated at max_flow
    return np.round(col * 255).astype(np.uint8)


def flow_to_uvm(flows) -> np.ndarray:
    """The papers' (u, v, magnitude) RGB rendering, each channel min-max scaled over the whole
    sequence (CVPR 2018 visualiser). `flows` (T, H, W, 2) or (H, W, 2) -> uint8 RGB."""
    flows = _check_flow(flows)
    chans = np.stack([flows[..., 0], flows[..., 1], np.hypot(flows[..., 0], flows[..., 1])], -1)
    lo = chans.reshape(-1, 3).min(0)
    hi = chans.reshape(-1, 3).max(0)
    out = (chans - lo) / np.maximum(hi - lo, 1e-6)
    return np.round(out * 255).astype(np.uint8)


def render_flow(flows, mode: str = "wheel", max_flow: float | None = None) -> np.ndarray:
    """Renders a flow image or sequence as uint8 RGB: mode "wheel" (Middlebury) or "uvm"."""
    if mode == "wheel":
        return flow_to_color(flows, max_flow)
    if mode == "uvm":
        return flow_to_uvm(flows)
    raise TfzooError(f"unknown flow rendering {mode!r}; expected 'wheel' or 'uvm'")


def write_flow_video(path, flows, mode: str = "wheel", fps: float = 25.0,
                     max_flow: float | None = None) -> None:
    """Writes a (T, H, W, 2) flow sequence as an H.264 video (one normalisation for all T)."""
    flows = _check_flow(flows, "flows")
    if flows.ndim != 4:
        raise TfzooError(f"flows: got shape {flows.shape}; expected (T, H, W, 2)")
    if mode == "wheel" and max_flow is None:
        max_flow = float(np.hypot(flows[..., 0], flows[..., 1]).max())
    frames = render_flow(flows, mode, max_flow)
    with VideoWriter(path, fps=fps) as w:
        for f in frames:
            w.write(f)


def load_npz(path) -> np.ndarray:
    """All flow fields of an npz written by `python -m tfzoo.flow --format=npz`, stacked:
    (T-1, H, W, 2) float32 pixels."""
    with np.load(path) as z:
        return np.stack([z[k] for k in sorted(z.files)])
