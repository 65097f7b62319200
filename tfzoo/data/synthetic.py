"""The embedded default dataset: procedural videos whose class is their motion.

Each video shows a random periodic colour texture (a sum of plane waves with random
frequencies, orientations, phases and colours) moved by a class-specific dynamic: a pan in one
of four directions, a rotation (clockwise / counter-clockwise), a zoom (in / out). Appearance is
drawn independently of the class, and the classes come in time-reversed pairs whose frame
distributions are identical, so a single frame (or any order-free pooling of frames) carries no
label information; only the dynamics separate the classes. Generation is deterministic in the
seed; nothing is downloaded.

Because a horizontal flip turns "pan right" into "pan left" and clockwise into
counter-clockwise, the dataset publishes a `flip_label_map`; augmentation and the flipped test
pass use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tfzoo.data import augment
from tfzoo.data.base import ClipSpec, DatasetInfo

CLASSES = (
    "pan_right", "pan_left", "pan_down", "pan_up",
    "rotate_cw", "rotate_ccw", "zoom_in", "zoom_out",
)
FLIP = {"pan_right": "pan_left", "pan_left": "pan_right", "rotate_cw": "rotate_ccw",
        "rotate_ccw": "rotate_cw"}
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and difficulty of the generated set."""

    size: int = 48  # frame height = width
    video_frames: int = 24
    videos_per_class: tuple[int, int, int] = (120, 20, 40)  # train, val, test
    waves: int = 6  # plane waves per texture
    # Displacements between sampled frames (stride 2-3, crops rescaled up to 1.35x) stay below
    # a third of the shortest wavelength, so the direction of motion is never aliased.
    cycles: tuple[float, float] = (1.5, 3.5)  # texture frequencies, cycles per frame width
    speed: tuple[float, float] = (0.6, 1.0)  # pan, px / frame
    angular_speed: tuple[float, float] = (1.5, 2.5)  # rotation, degrees / frame
    zoom_rate: tuple[float, float] = (0.02, 0.03)  # zoom, log-scale / frame
    seed: int = 0


def render_video(cls: str, rng: np.random.Generator, cfg: SyntheticConfig) -> np.ndarray:
    """One (video_frames, size, size, 3) uint8 video of class `cls`."""
    n, t_len = cfg.size, cfg.video_frames
    # Appearance: independent of the class.
    k = cfg.waves
    freq = rng.uniform(*cfg.cycles, k) / n  # cycles per pixel
    theta = rng.uniform(0, 2 * np.pi, k)
    wave = np.stack([np.cos(theta), np.sin(theta)], 1) * freq[:, None]  # (k, 2)
    phase = rng.uniform(0, 2 * np.pi, k)
    colours = rng.uniform(-1, 1, (k, 3))
    colours *= 60.0 / np.sqrt(k / 2)
    base = rng.uniform(70, 185, 3)
    scale0 = np.exp(rng.uniform(-0.3, 0.3))

    # Dynamics: the class. Pixel p of frame t shows the texture at A_t (p - d_t): the content
    # is rotated/scaled by A_t about the centre and moved by d_t (image axes, y down).
    t = np.arange(t_len, dtype=np.float64) - (t_len - 1) / 2  # centred: reversal-symmetric
    angle = np.zeros(t_len) + rng.uniform(0, 2 * np.pi)
    shift = np.zeros((t_len, 2))
    log_scale = np.zeros(t_len)
    if cls.startswith("pan"):
        v = rng.uniform(*cfg.speed)
        direction = {"pan_right": (1, 0), "pan_left": (-1, 0), "pan_down": (0, 1),
                     "pan_up": (0, -1)}[cls]
        shift = t[:, None] * v * np.asarray(direction, float)[None]
    elif cls.startswith("rotate"):
        w = np.deg2rad(rng.uniform(*cfg.angular_speed))
        angle = angle + (1 if cls == "rotate_ccw" else -1) * w * t
    else:
        r = rng.uniform(*cfg.zoom_rate)
        log_scale = (-1 if cls == "zoom_in" else 1) * r * t

    # A plane wave cos(2 pi w.A(p - d) + phi) is separable in x and y: an outer product of
    # 1-D complex exponentials, far cheaper than a cosine per pixel.
    c, s = np.cos(angle), np.sin(angle)
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # (T, 2, 2)
    rot = rot * (scale0 * np.exp(log_scale))[:, None, None]
    w_eff = np.einsum("tij,ki->tkj", rot, wave)  # (T, k, 2): R^T w
    offset = phase - 2 * np.pi * np.einsum("tkj,tj->tk", w_eff, shift)  # (T, k)
    axis = np.arange(n, dtype=np.float64) - (n - 1) / 2
    ex = np.exp(2j * np.pi * w_eff[..., 0:1] * axis)  # (T, k, W)
    ey = np.exp(2j * np.pi * w_eff[..., 1:2] * axis)  # (T, k, H)
    ey = ey * np.exp(1j * offset)[..., None]
    waves = (ey[..., :, None] * ex[..., None, :]).real.astype(np.float32)  # (T, k, H, W)
    video = base + np.tensordot(waves, colours.astype(np.float32), axes=([1], [0]))
    return np.clip(np.round(video), 0, 255).astype(np.uint8)


def generate(cfg: SyntheticConfig = SyntheticConfig()) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Videos (N, T, H, W, 3) uint8 and labels (N,) int32 for each split."""
    out = {}
    for split_id, (split, count) in enumerate(zip(SPLITS, cfg.videos_per_class)):
        videos, labels = [], []
        for label, cls in enumerate(CLASSES):
            seq = np.random.SeedSequence([cfg.seed, split_id, label])
            rng = np.random.default_rng(seq)
            for _ in range(count):
                videos.append(render_video(cls, rng, cfg))
                labels.append(label)
        order = np.random.default_rng([cfg.seed, split_id, 99]).permutation(len(labels))
        shape = (0, cfg.video_frames, cfg.size, cfg.size, 3)
        stacked = np.stack(videos) if videos else np.zeros(shape, np.uint8)
        out[split] = (stacked[order], np.asarray(labels, np.int32)[order])
    return out


class SyntheticSource:
    """The embedded dataset as a `tfzoo.data.base.VideoSource`.

    Example:
    >>> src = SyntheticSource(SyntheticConfig(videos_per_class=(2, 1, 1)))
    >>> src.info.class_names[:2], src.info.num_videos["train"]
    (['pan_right', 'pan_left'], 16)
    """

    def __init__(self, config: SyntheticConfig | None = None, **overrides):
        cfg = config or SyntheticConfig()
        if overrides:
            cfg = SyntheticConfig(**{**cfg.__dict__, **overrides})
        self.config = cfg
        self.splits = generate(cfg)
        flip = [CLASSES.index(FLIP.get(c, c)) for c in CLASSES]
        self.info = DatasetInfo(
            name="synthetic",
            class_names=list(CLASSES),
            num_videos={s: len(v[1]) for s, v in self.splits.items()},
            flip_label_map=flip,
        )

    def dataset(self, split: str, *, training: bool, spec: ClipSpec, seed: int = 0) -> tf.data.Dataset:
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        videos, labels = self.splits[split]
        n_frames = videos.shape[1]
        ds = tf.data.Dataset.from_tensor_slices((videos, labels))
        if not training:
            idx = augment.test_indices(n_frames, spec.test_num_frames)
            return ds.map(lambda v, y: (tf.cast(tf.gather(v, idx), tf.float32), y))

        flip_map = tf.constant(self.info.flip_label_map, tf.int32)

        def train_map(v, y, s):
            s_idx, s_box, s_flip = tf.unstack(tf.random.experimental.stateless_split(s, 3))
            clip = tf.gather(v, augment.train_indices(n_frames, spec.num_frames, spec.stride_range, s_idx))
            box = augment.jitter_crop_box(
                tf.shape(v)[1], tf.shape(v)[2], s_box,
                scale_jitter=spec.scale_jitter, border=spec.border,
            )
            clip = augment.crop_resize(clip, box, spec.image_size)
            if spec.flip:
                clip, flipped = augment.maybe_flip(clip, s_flip)
                y = tf.where(flipped, tf.gather(flip_map, y), y)
            return clip, y

        seeds = tf.data.Dataset.random(seed=seed).batch(2)
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True).repeat()
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda vy, s: train_map(vy[0], vy[1], s), num_parallel_calls=tf.data.AUTOTUNE
        )
        return ds
