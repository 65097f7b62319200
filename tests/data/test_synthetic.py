"""The embedded dataset: deterministic, label only in the dynamics, augmentation consistent."""

import numpy as np
import tensorflow as tf

from tfzoo.data.base import ClipSpec
from tfzoo.data.synthetic import CLASSES, SyntheticConfig, SyntheticSource, generate, render_video

SMALL = SyntheticConfig(size=32, video_frames=12, videos_per_class=(3, 1, 2))


def test_generation_is_deterministic_in_the_seed():
    a, b = generate(SMALL), generate(SMALL)
    for split in a:
        np.testing.assert_array_equal(a[split][0], b[split][0])
        np.testing.assert_array_equal(a[split][1], b[split][1])
    c = generate(SyntheticConfig(**{**SMALL.__dict__, "seed": 1}))
    assert not np.array_equal(a["train"][0], c["train"][0])


def test_accelerate_and_decelerate_are_exact_time_reversals():
    """Same draws: one is the other played backwards, so the multiset of frames (all an
    order-free frame-wise model sees) is identical and cannot tell them apart."""
    for seed in range(3):
        a = render_video("accelerate", np.random.default_rng(seed), SMALL)
        b = render_video("decelerate", np.random.default_rng(seed), SMALL)
        np.testing.assert_array_equal(a[::-1], b)


def test_every_frame_is_the_same_texture_shifted():
    """Each frame is one periodic texture translated: per-frame colour statistics do not change
    over time, whatever the class, so no single frame tells the class."""
    for cls in CLASSES:
        v = render_video(cls, np.random.default_rng(1), SyntheticConfig()).astype(float)
        means = v.mean(axis=(1, 2))  # (T, 3)
        assert np.abs(means - means.mean(0)).max() < 6.0, cls  # of 255
        assert v[0].std() > 15  # a texture, not a flat field


def test_speed_profiles_define_the_classes():
    cfg = SyntheticConfig()
    motion = {}
    for cls in CLASSES:
        v = render_video(cls, np.random.default_rng(0), cfg).astype(float)
        motion[cls] = np.abs(np.diff(v, axis=0)).mean(axis=(1, 2, 3))  # per frame pair
    assert motion["static"].max() == 0
    assert 0 < motion["slow"].mean() < motion["fast"].mean() / 2
    assert (motion["stop_and_go"] == 0).sum() >= 8 and motion["stop_and_go"].max() > 2
    assert motion["accelerate"][-1] > 3 * motion["accelerate"][2]
    np.testing.assert_allclose(motion["decelerate"], motion["accelerate"][::-1], atol=0.6)


def test_flip_keeps_every_label():
    assert SyntheticSource(SMALL).info.flip_label_map is None


def test_training_clips_are_augmented_deterministically_and_cover_all_classes():
    src = SyntheticSource(SMALL)
    spec = ClipSpec(num_frames=4, stride_range=(1, 2), image_size=(32, 32), flip=True)
    ds = src.dataset("train", training=True, spec=spec, seed=3)
    labels = [int(y) for _, y in ds.take(64)]
    assert set(labels) == set(range(len(CLASSES)))
    x, _ = next(iter(src.dataset("train", training=True, spec=spec, seed=3)))
    assert x.shape == (4, 32, 32, 3) and x.dtype == tf.float32
    again, _ = next(iter(src.dataset("train", training=True, spec=spec, seed=3)))
    np.testing.assert_array_equal(x.numpy(), again.numpy())


def test_test_split_is_every_video_once_in_order():
    src = SyntheticSource(SMALL)
    spec = ClipSpec(test_num_frames=5)
    xs, ys = zip(*[(x.numpy(), int(y)) for x, y in src.dataset("test", training=False, spec=spec)])
    videos, labels = src.splits["test"]
    assert list(ys) == labels.tolist()
    np.testing.assert_array_equal(xs[0], videos[0][[0, 3, 6, 8, 11]].astype(np.float32))
