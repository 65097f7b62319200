"""The embedded default dataset: procedural videos whose class is their motion over time.

Each video shows a random periodic colour texture (a sum of plane waves with random
frequencies, orientations, phases and colours) translated along a random direction. The class
is the speed profile of that translation: static, slow, fast, stop-and-go (periodic) versus
steady (linear), accelerating, decelerating. Appearance and direction are drawn independently of
the class, and every frame is the same random texture at some shift, so a single frame (or an
order-free pool of frames) carries no label information: only the dynamics separate the classes.
"accelerate" and "decelerate" are exact time reversals of each other. Generation is
deterministic in the seed; nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tfzoo.data import augment
from tfzoo.data.base import ClipSpec, DatasetInfo
from tfzoo.video import test_indices

CLASSES = ("static", "slow", "fast", "stop_and_go", "accelerate", "decelerate")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and difficulty of the generated set."""

    size: int = 48  # frame height = width
    video_frames: int = 24
    videos_per_class: tuple[int, int, int] = (120, 20, 40)  # train, val, test
    waves: int = 6  # plane waves per texture
    cycles: tuple[float, float] = (1.0, 3.0)  # texture frequencies, cycles per frame width
    slow: tuple[float, float] = (0.25, 0.45)  # px / frame
    fast: tuple[float, float] = (1.2, 1.8)  # px / frame; also stop-and-go's moving speed
    stop_and_go_period: int = 16  # frames: half moving, half still (longer than a 3-tap filter at stride 3)
    top_speed: tuple[float, float] = (1.5, 2.0)  # accelerate / decelerate end speed, px / frame
    seed: int = 0


def speed_profile(cls: str, rng: np.random.Generator, cfg: SyntheticConfig) -> np.ndarray:
    """Speeds (px / frame) between consecutive frames of a video of class `cls`."""
    n = cfg.video_frames - 1
    if cls == "static":
        return np.zeros(n)
    if cls in ("slow", "fast"):
        return np.full(n, rng.uniform(*getattr(cfg, cls)))
    if cls == "stop_and_go":
        half = cfg.stop_and_go_period // 2
        moving = (np.arange(n) + rng.integers(cfg.stop_and_go_period)) // half % 2 == 0
        return moving * rng.uniform(*cfg.fast)
    if cls in ("accelerate", "decelerate"):
        return np.linspace(0.0, rng.uniform(*cfg.top_speed), n)
    raise ValueError(f"unknown class {cls!r}; expected one of {CLASSES}")


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

    # Dynamics: the class. Frame t shows the texture shifted by p(t) along a random direction.
    direction = rng.uniform(0, 2 * np.pi)
    v = speed_profile(cls, rng, cfg)  # px / frame between frames t and t + 1
    p = np.concatenate([[0.0], np.cumsum(v)])
    if cls == "decelerate":  # accelerate played backwards (same draws, same frames)
        p = p[::-1]
    p = p - p.mean()
    shift = p[:, None] * np.array([np.cos(direction), np.sin(direction)])[None]
    angle = np.zeros(t_len) + rng.uniform(0, 2 * np.pi)
    log_scale = np.zeros(t_len)

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
    (['static', 'slow'], 12)
    """

    def __init__(self, config: SyntheticConfig | None = None, **overrides):
        cfg = config or SyntheticConfig()
        if overrides:
            cfg = SyntheticConfig(**{**cfg.__dict__, **overrides})
        self.config = cfg
        self.splits = generate(cfg)
        self.info = DatasetInfo(
            name="synthetic",
            class_names=list(CLASSES),
            num_videos={s: len(v[1]) for s, v in self.splits.items()},
            flip_label_map=None,  # directions are random, so a flip keeps every label
        )

    def dataset(self, split: str, *, training: bool, spec: ClipSpec, seed: int = 0) -> tf.data.Dataset:
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        videos, labels = self.splits[split]
        n_frames = videos.shape[1]
        ds = tf.data.Dataset.from_tensor_slices((videos, labels))
        if not training:
            idx = test_indices(n_frames, spec.test_num_frames)
            return ds.map(lambda v, y: (tf.cast(tf.gather(v, idx), tf.float32), y))

        def train_map(v, y, s):
            s_idx, s_box, s_flip = tf.unstack(tf.random.experimental.stateless_split(s, 3))
            clip = tf.gather(v, augment.train_indices(n_frames, spec.num_frames, spec.stride_range, s_idx))
            box = augment.jitter_crop_box(
                tf.shape(v)[1], tf.shape(v)[2], s_box,
                scale_jitter=spec.scale_jitter, border=spec.border,
            )
            clip = augment.crop_resize(clip, box, spec.image_size)
            if spec.flip:
                clip, _ = augment.maybe_flip(clip, s_flip)
            return clip, y

        seeds = tf.data.Dataset.random(seed=seed).batch(2)
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True).repeat()
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda vy, s: train_map(vy[0], vy[1], s), num_parallel_calls=tf.data.AUTOTUNE
        )
        return ds
