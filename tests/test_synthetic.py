"""The embedded dataset: deterministic, label only in the dynamics, augmentation consistent."""

import numpy as np
import pytest
import tensorflow as tf

from tfzoo.data.base import ClipSpec
from tfzoo.data.synthetic import CLASSES, SyntheticConfig, SyntheticSource, generate, render_video

SMALL = SyntheticConfig(size=32, video_frames=12, videos_per_class=(3, 1, 2))
PAIRS = [("pan_right", "pan_left"), ("pan_down", "pan_up"), ("rotate_cw", "rotate_ccw"),
         ("zoom_in", "zoom_out")]


def test_generation_is_deterministic_in_the_seed():
    a, b = generate(SMALL), generate(SMALL)
    for split in a:
        np.testing.assert_array_equal(a[split][0], b[split][0])
        np.testing.assert_array_equal(a[split][1], b[split][1])
    c = generate(SyntheticConfig(**{**SMALL.__dict__, "seed": 1}))
    assert not np.array_equal(a["train"][0], c["train"][0])


@pytest.mark.parametrize("forward,backward", PAIRS)
def test_paired_classes_are_exact_time_reversals(forward, backward):
    """Same appearance draws: class B is class A played backwards, so the multiset of frames
    (all an order-free frame-wise model sees) is identical and cannot tell them apart."""
    for seed in range(3):
        a = render_video(forward, np.random.default_rng(seed), SMALL)
        b = render_video(backward, np.random.default_rng(seed), SMALL)
        np.testing.assert_array_equal(a[::-1], b)


def test_videos_move_and_frames_are_textured():
    for cls in CLASSES:
        v = render_video(cls, np.random.default_rng(0), SMALL).astype(float)
        assert v[0].std() > 15  # a texture, not a flat field
        assert np.abs(np.diff(v, axis=0)).mean() > 1.0  # and it moves


def test_pan_moves_the_content_in_its_direction():
    v = render_video("pan_right", np.random.default_rng(0), SMALL).astype(float)
    a, b = v[4, :, :, 0], v[5, :, :, 0]
    errs = {dx: np.abs(np.roll(a, dx, axis=1)[:, 4:-4] - b[:, 4:-4]).mean() for dx in (-1, 0, 1)}
    assert min(errs, key=errs.get) == 1  # content shifted right, by about one pixel


def test_flip_label_map_is_an_involution_pairing_mirror_classes():
    src = SyntheticSource(SMALL)
    fmap = src.info.flip_label_map
    assert [fmap[fmap[i]] for i in range(len(fmap))] == list(range(len(fmap)))
    assert CLASSES[fmap[CLASSES.index("pan_right")]] == "pan_left"
    assert CLASSES[fmap[CLASSES.index("rotate_cw")]] == "rotate_ccw"
    assert CLASSES[fmap[CLASSES.index("pan_up")]] == "pan_up"


def test_training_clips_flip_with_their_labels():
    src = SyntheticSource(SMALL)
    spec = ClipSpec(num_frames=4, stride_range=(1, 2), image_size=(32, 32), scale_jitter=0.0,
                    border=0.0, flip=True)
    ds = src.dataset("train", training=True, spec=spec, seed=3)
    labels = [int(y) for _, y in ds.take(64)]
    assert set(labels) == set(range(len(CLASSES)))  # pan_left also comes from flipped pan_right
    x, _ = next(iter(ds))
    assert x.shape == (4, 32, 32, 3) and x.dtype == tf.float32


def test_test_split_is_every_video_once_in_order():
    src = SyntheticSource(SMALL)
    spec = ClipSpec(test_num_frames=5)
    xs, ys = zip(*[(x.numpy(), int(y)) for x, y in src.dataset("test", training=False, spec=spec)])
    videos, labels = src.splits["test"]
    assert list(ys) == labels.tolist()
    np.testing.assert_array_equal(xs[0], videos[0][[0, 3, 6, 8, 11]].astype(np.float32))
