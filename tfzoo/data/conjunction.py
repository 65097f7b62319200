"""A two-stream synthetic task that only cross-stream fusion can solve: *which* object moves *how*.

Each video shows two discs on a static grey texture: a red one and a blue one, at random
non-overlapping positions, with random radii. Each disc is a window onto a vertically striped,
horizontally periodic texture (period P px, random harmonics) that slides horizontally inside
the static disc, like a conveyor belt; the background does not move. The class is the
conjunction of colour and motion:

    0 "red_right_blue_left":  the red disc's texture slides right, the blue one's left
    1 "red_left_blue_right":  the red disc's texture slides left, the blue one's right

The exact optical flow is known: (v, 0) px/frame inside a disc (v = +-s P with the disc's own
speed fraction s), 0 elsewhere, the same for every frame pair (the motion is stationary). It is
emitted as the motion stream. Each single stream carries *no* label information, by
construction (`tests/data/test_conjunction.py` checks both maps below pixel-exactly):

* Appearance: a P-periodic texture moved right by s P per frame shows exactly the same frames as
  one moved left by (1 - s) P (the wagon-wheel alias). The speed fraction is drawn from a range
  symmetric about 1/2, so s -> 1 - s with the directions reversed maps class 0's videos onto
  class 1's with identical RGB frames and equal probability: the RGB distributions of the two
  classes are identical, whatever the temporal sampling or the model (temporal convolutions
  included).
* Motion: swapping the geometry and motion draws (position, radius, period, phase, speed) of the
  two discs maps class 0 onto class 1 with an identical flow field (both discs have the same
  outline distribution, so flow boundaries reveal nothing about colour).

Late fusion of separately trained streams (each stream's own loss) therefore sits at chance,
while a network that relates "red here" (appearance) to "moves right here" (motion) at the same
location -- ST-ResNet's / MulNet's cross-stream connections -- can solve it.

The flow is the generator's exact motion, not an estimate: for speed fractions above 1/2 the
shortest displacement between consecutive frames is the aliased, opposite one, so a flow
estimator (TV-L1) would return the alias and the task would become unsolvable for every model.
To use estimated flow, draw `speed` within (0, 1/2) (then consecutive RGB frames do reveal the
direction, and the appearance stream is no longer at chance by construction).

A horizontal flip swaps left and right: `flip_label_map = [1, 0]`, used by the augmentation
and by the flipped test view. Generation is deterministic in the seed; nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tfzoo.data import augment
from tfzoo.data.base import ClipSpec, DatasetInfo
from tfzoo.data.readers import scale_flow
from tfzoo.errors import TfzooError
from tfzoo.utils import check_choice
from tfzoo.video import test_indices


CLASSES = ("red_right_blue_left", "red_left_blue_right")
SPLITS = ("train", "val", "test")
KINDS = ("red", "blue")
# Base colours (RGB) of the two object kinds; the texture modulates their brightness.
KIND_COLOURS = {"red": (225.0, 45.0, 40.0), "blue": (40.0, 70.0, 230.0)}


@dataclass(frozen=True)
class ConjunctionConfig:
    """Size and difficulty of the generated set."""

    size: int = 48  # frame height = width
    video_frames: int = 12
    videos_per_class: tuple[int, int, int] = (300, 50, 100)  # train, val, test
    radius: tuple[float, float] = (8.0, 10.5)  # disc radius, px (same range for both kinds)
    period: tuple[float, float] = (8.0, 12.0)  # texture period along x, px
    # Texture displacement per frame as a fraction of the period. Must be symmetric about 1/2
    # for the appearance stream to be provably uninformative (see the module docstring).
    speed: tuple[float, float] = (0.15, 0.85)
    colour_jitter: float = 20.0  # per-object uniform jitter of the base colour
    background_contrast: float = 0.5  # grey background texture contrast
    flow_stack: int | None = 2  # L flow fields per chunk; None: the ClipSpec's flow_stack
    seed: int = 0

    def __post_init__(self):
        lo, hi = self.speed
        if not 0.0 < lo <= hi < 1.0:
            raise TfzooError(f"speed must satisfy 0 < lo <= hi < 1 (fractions of the period), "
                             f"got {self.speed}")
        if self.radius[1] * 2 * 2 + 4 > self.size:
            raise TfzooError(f"two discs of radius {self.radius[1]} do not fit a {self.size} px "
                             f"frame")


@dataclass(frozen=True)
class DiscParams:
    """One object's draws: geometry and motion (exchangeable between the kinds) and colour."""

    centre: tuple[float, float]  # (y, x), px
    radius: float
    period: float
    phase: float  # texture offset, px
    harmonics: tuple[float, float, float, float]  # a1, phi1, a2, phi2 of the stripe profile
    speed: float  # fraction of the period per frame, > 0
    colour: tuple[float, float, float]


def background_texture(rng: np.random.Generator, size: int, contrast: float,
                       waves: int = 6) -> np.ndarray:
    """A static grey (size, size) float32 texture around 128: a sum of plane waves with random
    frequencies (1.5..4 cycles per frame), orientations and phases (the synthetic set's kind of
    texture, without colour, so that colour identifies the objects)."""
    axis = np.arange(size, dtype=np.float64)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    freq = rng.uniform(1.5, 4.0, waves) / size
    theta = rng.uniform(0, 2 * np.pi, waves)
    phase = rng.uniform(0, 2 * np.pi, waves)
    amp = rng.uniform(-1, 1, waves) * 60.0 / np.sqrt(waves / 2)
    arg = (np.cos(theta)[:, None, None] * xx + np.sin(theta)[:, None, None] * yy) * freq[:, None, None]
    tex = np.tensordot(amp, np.cos(2 * np.pi * arg + phase[:, None, None]), axes=1)
    return (128.0 + contrast * tex).astype(np.float32)


def draw_params(rng: np.random.Generator, cfg: ConjunctionConfig) -> dict:
    """Random draws of one video, independent of the class: {"red": DiscParams, "blue": ...,
    "background": (H, W, 3) float32}."""
    n = cfg.size
    background = np.repeat(background_texture(rng, n, cfg.background_contrast)[..., None], 3, -1)

    # Geometry: i.i.d. for the two discs, rejected jointly when they overlap (symmetric).
    while True:
        radii = rng.uniform(*cfg.radius, 2)
        centres = [rng.uniform(r + 1.0, n - r - 1.0, 2) for r in radii]
        if np.hypot(*(centres[0] - centres[1])) > radii.sum() + 2.0:
            break
    params = {"background": background}
    for i, kind in enumerate(KINDS):
        a1 = rng.uniform(0.6, 1.0)
        params[kind] = DiscParams(
            centre=(float(centres[i][0]), float(centres[i][1])),
            radius=float(radii[i]),
            period=float(rng.uniform(*cfg.period)),
            phase=float(rng.uniform(0, 100)),
            harmonics=(a1, float(rng.uniform(0, 2 * np.pi)), 1.0 - a1,
                       float(rng.uniform(0, 2 * np.pi))),
            speed=float(rng.uniform(*cfg.speed)),
            colour=tuple(float(c) for c in np.asarray(KIND_COLOURS[kind])
                         + rng.uniform(-cfg.colour_jitter, cfg.colour_jitter, 3)),
        )
    return params


def directions(label: int) -> dict[str, int]:
    """+1 = texture slides right, -1 = left, for each kind under class `label`."""
    red = 1 if CLASSES[label] == "red_right_blue_left" else -1
    return {"red": red, "blue": -red}


def render(params: dict, label: int, cfg: ConjunctionConfig) -> tuple[np.ndarray, np.ndarray]:
    """(video (T, H, W, 3) uint8, flow (H, W, 2) float32 px/frame, the same for every frame
    pair: frame t's pixel x shows at x + flow(x) in frame t + 1)."""
    n, t_len = cfg.size, cfg.video_frames
    dirs = directions(label)
    yy, xx = np.meshgrid(np.arange(n, dtype=np.float64), np.arange(n, dtype=np.float64),
                         indexing="ij")
    t = np.arange(t_len, dtype=np.float64)[:, None, None]
    video = np.broadcast_to(params["background"], (t_len, n, n, 3)).astype(np.float64)
    flow = np.zeros((n, n, 2), np.float32)
    for kind in KINDS:
        p: DiscParams = params[kind]
        dist = np.hypot(yy - p.centre[0], xx - p.centre[1])
        alpha = np.clip(p.radius + 0.5 - dist, 0.0, 1.0)[None, ..., None]  # anti-aliased edge
        v = dirs[kind] * p.speed * p.period  # px / frame
        # The content at texture coordinate xi sits at x = xi + phase + v t (stripes: a
        # function of x only, (T, 1, W)).
        xi = 2 * np.pi * (xx[None, :1] - p.phase - v * t) / p.period
        a1, f1, a2, f2 = p.harmonics
        tex = a1 * np.cos(xi + f1) + a2 * np.cos(2 * xi + f2)  # in [-1, 1]
        obj = (0.6 + 0.4 * tex)[..., None] * np.asarray(p.colour)
        video = video * (1 - alpha) + obj * alpha
        flow[dist <= p.radius, 0] = v
    return np.clip(np.round(video), 0, 255).astype(np.uint8), flow


def generate(cfg: ConjunctionConfig = ConjunctionConfig()) -> dict:
    """Per split: (videos (N, T, H, W, 3) uint8, flows (N, H, W, 2) float32, labels (N,) int32)."""
    out = {}
    for split_id, (split, count) in enumerate(zip(SPLITS, cfg.videos_per_class)):
        videos, flows, labels = [], [], []
        for label in range(len(CLASSES)):
            rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, split_id, label, 7]))
            for _ in range(count):
                v, f = render(draw_params(rng, cfg), label, cfg)
                videos.append(v)
                flows.append(f)
                labels.append(label)
        order = np.random.default_rng([cfg.seed, split_id, 99]).permutation(len(labels))
        n, t = cfg.size, cfg.video_frames
        videos = np.stack(videos) if videos else np.zeros((0, t, n, n, 3), np.uint8)
        flows = np.stack(flows) if flows else np.zeros((0, n, n, 2), np.float32)
        out[split] = (videos[order], flows[order], np.asarray(labels, np.int32)[order])
    return out


def _stack_flow(flow, num_frames: int, flow_stack: int):
    """(H, W, 2) stationary flow -> (T, H, W, 2L) chunks u1, v1, ..., uL, vL (all fields equal)."""
    return tf.tile(flow[None], [num_frames, 1, 1, flow_stack])


class ConjunctionSource:
    """The conjunction task as a two-stream `tfzoo.data.base.VideoSource`.

    Inputs are {"rgb": (T, H, W, 3) RGB 0..255, "flow": (T, H, W, 2L) px}; L is
    `ConjunctionConfig.flow_stack` (TrainConfig has no flow_stack field; None falls back to
    the ClipSpec's). Training: `train_indices` temporal sampling, one `jitter_crop_box` for
    both streams, flow scaled by the resize factor, random horizontal flip with the label
    mapped through `flip_label_map` (when `spec.flip`). Test: `test_indices`, full frames.

    Example:
    >>> src = ConjunctionSource(videos_per_class=(2, 1, 1))
    >>> src.info.class_names, src.info.num_videos["train"], src.info.flip_label_map
    (['red_right_blue_left', 'red_left_blue_right'], 4, [1, 0])
    """

    def __init__(self, config: ConjunctionConfig | None = None, **overrides):
        cfg = config or ConjunctionConfig()
        if overrides:
            overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
            cfg = ConjunctionConfig(**{**cfg.__dict__, **overrides})
        self.config = cfg
        self.splits = generate(cfg)
        self.info = DatasetInfo(
            name="conjunction",
            class_names=list(CLASSES),
            num_videos={s: len(v[2]) for s, v in self.splits.items()},
            flip_label_map=[1, 0],
            streams=("rgb", "flow"),
            extra={"fixed_frame_size": True, "flow_stack": cfg.flow_stack},
        )

    def flow_stack(self, spec: ClipSpec) -> int:
        return int(self.config.flow_stack or spec.flow_stack)

    def dataset(self, split: str, *, training: bool, spec: ClipSpec, seed: int = 0) -> tf.data.Dataset:
        check_choice("split", split, self.splits)
        videos, flows, labels = self.splits[split]
        n_frames, h, w = videos.shape[1:4]
        stack = self.flow_stack(spec)
        ds = tf.data.Dataset.from_tensor_slices((videos, flows, labels))
        if not training:
            idx = test_indices(n_frames, spec.test_num_frames)

            def test_map(v, f, y):
                rgb = tf.cast(tf.gather(v, idx), tf.float32)
                flow = _stack_flow(f, spec.test_num_frames, stack)
                if spec.test_short_side is not None:
                    rgb = augment.resize_short_side(rgb, spec.test_short_side)
                    flow = augment.resize_short_side(flow, spec.test_short_side)
                    flow = scale_flow(flow, tf.shape(flow)[1] / h, tf.shape(flow)[2] / w)
                return {"rgb": rgb, "flow": flow}, y

            return ds.map(test_map)

        flip_map = tf.constant(self.info.flip_label_map, tf.int32)

        def train_map(v, f, y, s):
            s_idx, s_box, s_flip = tf.unstack(tf.random.experimental.stateless_split(s, 3))
            idx = augment.train_indices(n_frames, spec.num_frames, spec.stride_range, s_idx)
            rgb = tf.gather(v, idx)
            flow = _stack_flow(f, spec.num_frames, stack)
            box = augment.jitter_crop_box(h, w, s_box, scale_jitter=spec.scale_jitter,
                                          border=spec.border)
            oh, ow = spec.image_size
            rgb = augment.crop_resize(rgb, box, spec.image_size)
            flow = augment.crop_resize(flow, box, spec.image_size)
            flow = scale_flow(flow, oh / ((box[2] - box[0]) * h), ow / ((box[3] - box[1]) * w))
            if spec.flip:
                rgb, flipped = augment.maybe_flip(rgb, s_flip)
                flow, _ = augment.maybe_flip(flow, s_flip, flow=True)  # same seed, same flip
                y = tf.where(flipped, tf.gather(flip_map, y), y)
            return {"rgb": rgb, "flow": flow}, y

        seeds = tf.data.Dataset.random(seed=seed).batch(2)
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True).repeat()
        return tf.data.Dataset.zip((ds, seeds)).map(
            lambda vfy, s: train_map(*vfy, s), num_parallel_calls=tf.data.AUTOTUNE
        )
