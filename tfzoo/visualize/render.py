"""Rendering of maximised inputs: RGB frames, flow as (u, v, |w|) / colour wheel / grey u and v
(the `tfzoo.flow` renderers), min-max scaled over the whole sequence (CVPR 2018 §3.4), written
as PNG montages, GIFs and MP4s, an HTML gallery and TensorBoard images.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from tfzoo.errors import TfzooError
from tfzoo.flow.encoding import flow_to_color, flow_to_uvm
from tfzoo.rundir import atomic_write_text
from tfzoo.utils import check_choice
from tfzoo.video import VideoWriter

MOTION_MODES = ("uvm", "wheel", "u", "v")


def _minmax(x) -> np.ndarray:
    x = np.asarray(x, np.float32)
    lo, hi = float(x.min()), float(x.max())
    return np.round((x - lo) / max(hi - lo, 1e-6) * 255).astype(np.uint8)


def appearance_frames(rgb) -> np.ndarray:
    """(T, H, W, 3) raw RGB -> uint8 frames, one min-max over the whole sequence."""
    rgb = np.asarray(rgb, np.float32)
    if rgb.ndim != 4 or rgb.shape[-1] != 3:
        raise TfzooError(f"appearance: got shape {rgb.shape}; expected (T, H, W, 3)")
    return _minmax(rgb)


def flow_sequence(flow) -> np.ndarray:
    """(T, H, W, 2L) stacked chunks (u1, v1, u2, v2, ...) -> (T * L, H, W, 2) flow fields in
    time order."""
    flow = np.asarray(flow, np.float32)
    if flow.ndim != 4 or flow.shape[-1] % 2:
        raise TfzooError(f"motion: got shape {flow.shape}; expected (T, H, W, 2L) with channels "
                         f"u1, v1, u2, v2, ...")
    t, h, w, c = flow.shape
    return flow.reshape(t, h, w, c // 2, 2).transpose(0, 3, 1, 2, 4).reshape(-1, h, w, 2)


def motion_frames(flow, mode: str = "uvm") -> np.ndarray:
    """(T, H, W, 2L) flow in pixels -> uint8 RGB frames (T * L of them): "uvm" the papers'
    (u, v, magnitude) channels, "wheel" the Middlebury colour wheel (saturated at the largest
    magnitude of the sequence), "u" / "v" grey scale; every mode normalised over the whole
    sequence."""
    check_choice("motion rendering", mode, MOTION_MODES)
    seq = flow_sequence(flow)
    if mode == "uvm":
        return flow_to_uvm(seq)
    if mode == "wheel":
        return flow_to_color(seq, max_flow=float(np.hypot(seq[..., 0], seq[..., 1]).max()))
    grey = _minmax(seq[..., 0 if mode == "u" else 1])
    return np.repeat(grey[..., None], 3, axis=-1)


def render(x, kind: str, mode: str = "uvm") -> np.ndarray:
    """One input of one unit -> uint8 frames (N, H, W, 3); `kind` "appearance" or "motion"."""
    return appearance_frames(x) if kind == "appearance" else motion_frames(x, mode)


def montage(rows, pad: int = 2, scale: int = 1) -> np.ndarray:
    """A grid image from rows of equally sized uint8 (H, W, 3) tiles (white separators)."""
    rows = [list(r) for r in rows]
    h, w = rows[0][0].shape[:2]
    ncol = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + pad) - pad, ncol * (w + pad) - pad, 3), 255, np.uint8)
    for i, r in enumerate(rows):
        for j, tile in enumerate(r):
            out[i * (h + pad):i * (h + pad) + h, j * (w + pad):j * (w + pad) + w] = tile
    if scale > 1:
        out = np.repeat(np.repeat(out, scale, 0), scale, 1)
    return out


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    write(tmp)
    tmp.replace(path)


def write_png(path, image) -> None:
    _atomic(Path(path), lambda p: Image.fromarray(np.asarray(image, np.uint8)).save(p))


def write_gif(path, frames, fps: float = 5.0, scale: int = 1) -> None:
    ims = [Image.fromarray(np.repeat(np.repeat(f, scale, 0), scale, 1)) for f in frames]
    _atomic(Path(path), lambda p: ims[0].save(p, save_all=True, append_images=ims[1:],
                                              duration=int(1000 / fps), loop=0))


def write_mp4(path, frames, fps: float = 5.0, scale: int = 1) -> None:
    def write(p):
        with VideoWriter(p, fps=fps) as w:
            for f in frames:
                w.write(np.repeat(np.repeat(f, scale, 0), scale, 1))
    _atomic(Path(path), write)


def write_gallery(out_dir, cells, metadata: dict, *, formats=("png", "gif"),
                  modes=("uvm",), scale: int = 2, tensorboard: bool = True) -> Path:
    """Writes `out_dir/index.html` (rows: units; columns: regularisation settings, the
    paper's figure layout), one PNG strip (frames side by side) and GIF/MP4 per unit, input
    and setting, `metadata.json`, and TensorBoard images in `out_dir/tensorboard`.

    `cells`: list of dicts {"unit", "setting" (a column label), "inputs": {name: (T, H, W, C)
    raw}, "kinds": {name: "appearance" | "motion"}, "activation": float}.
    """
    for f in formats:
        check_choice("format", f, ("png", "gif", "mp4"))
    out = Path(out_dir)
    units = sorted({c["unit"] for c in cells})
    settings = list(dict.fromkeys(c["setting"] for c in cells))
    table = {}
    for c in cells:
        links = []
        for name, x in c["inputs"].items():
            kind = c["kinds"][name]
            for mode in (modes if kind == "motion" else ("rgb",)):
                frames = render(x, kind, mode)
                stem = f"u{c['unit']:04d}_{_slug(c['setting'])}_{name}_{mode}"
                if "png" in formats:
                    write_png(out / f"{stem}.png", montage([frames], scale=scale))
                if "gif" in formats:
                    write_gif(out / f"{stem}.gif", frames, scale=scale)
                if "mp4" in formats:
                    write_mp4(out / f"{stem}.mp4", frames, scale=max(scale, 2))
                links.append((f"{name} ({mode})", stem))
        table[(c["unit"], c["setting"])] = (links, c.get("activation"))
    head = "".join(f"<th>{html.escape(s)}</th>" for s in settings)
    names = {int(k): v for k, v in (metadata.get("unit_names") or {}).items()}
    a_hat = dict(zip(metadata.get("units") or [], metadata.get("a_hat") or []))
    width = {c["unit"]: max(next(iter(c["inputs"].values())).shape[2] * scale, 192) for c in cells}
    rows = []
    for u in units:
        tds = []
        for s in settings:
            links, act = table.get((u, s), ([], None))
            # Upscaled in the browser without smoothing: the optimised pixels stay visible.
            imgs = "".join(
                f'<figure><img src="{stem}.{"gif" if "gif" in formats else "png"}" '
                f'width="{width[u] if "gif" in formats else ""}" '
                f'title="{html.escape(label)}"><figcaption>{html.escape(label)}</figcaption>'
                f'</figure>' for label, stem in links)
            a = ""
            if act is not None:  # as the CLI prints it: relative to the unit's a_hat
                a = (f"<br><small>activation / a_hat {act / a_hat[u]:.3g}</small>"
                     if a_hat.get(u) else f"<br><small>activation {act:.3g}</small>")
            tds.append(f"<td>{imgs}{a}</td>")
        label = f"unit {u}" + (f"<br>{html.escape(str(names[u]))}" if u in names else "")
        rows.append(f"<tr><th>{label}</th>{''.join(tds)}</tr>")
    title = html.escape(f"{metadata.get('model', '')} {metadata.get('layer', '')}")
    page = (f"<!doctype html><meta charset=utf-8><title>{title}</title>"
            "<style>body{font-family:sans-serif}td,th{vertical-align:top;padding:4px}"
            "figure{display:inline-block;margin:2px}"
            "img{image-rendering:pixelated;image-rendering:crisp-edges}"
            ".settings td{padding:1px 8px;font-family:monospace}</style>"
            f"<h1>{title}</h1>{settings_table(metadata)}"
            f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"
            '<p><a href="metadata.json">metadata.json</a></p>\n')
    atomic_write_text(out / "index.html", page)
    atomic_write_text(out / "metadata.json", json.dumps(metadata, indent=2, default=str) + "\n")
    if tensorboard:
        _tensorboard(out / "tensorboard", cells, modes)
    return out / "index.html"


def settings_table(metadata: dict) -> str:
    """The gallery's settings as a table: what every column shares, one row per key, then
    what the columns vary (each run's own value, e.g. chi 0, 1, 5, 10), not the first run's."""
    runs = [r.get("settings", {}) for r in metadata.get("runs") or []] or [
        metadata.get("settings", {})]
    # a_hat is per unit: shown in each cell (activation / a_hat), and in metadata.json.
    keys = [k for k in dict.fromkeys(k for r in runs for k in r) if k != "a_hat"]
    rows = []
    for k in keys:
        values = [r.get(k) for r in runs]
        shown = (json.dumps(values[0], default=str) if all(v == values[0] for v in values) else
                 ", ".join(json.dumps(v, default=str) for v in values) + " (by column)")
        rows.append(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(shown)}</td></tr>")
    return f'<table class="settings">{"".join(rows)}</table>'


def _tensorboard(logdir, cells, modes) -> None:
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        for c in cells:
            for name, x in c["inputs"].items():
                kind = c["kinds"][name]
                mode = modes[0] if kind == "motion" else "rgb"
                frames = render(x, kind, mode)
                tf.summary.image(f"unit{c['unit']:04d}/{name}/{_slug(c['setting'])}",
                                 frames.astype(np.float32) / 255.0, step=0,
                                 max_outputs=len(frames))
    writer.flush()
    writer.close()


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in str(s))
