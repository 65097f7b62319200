"""The conjunction task: deterministic, each stream alone uninformative (by construction),
exact flow, augmentation consistent across streams, and the late-fusion recipe trains."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tfzoo.data.base import ClipSpec
from tfzoo.data.conjunction import (
    CLASSES,
    KINDS,
    ConjunctionConfig,
    ConjunctionSource,
    draw_params,
    generate,
    render,
)

SMALL = ConjunctionConfig(size=40, video_frames=8, videos_per_class=(3, 1, 2), radius=(7.0, 8.5))


def _params(seed):
    return draw_params(np.random.default_rng(seed), SMALL)


def test_generation_is_deterministic_in_the_seed():
    a, b = generate(SMALL), generate(SMALL)
    for split in a:
        for x, y in zip(a[split], b[split]):
            np.testing.assert_array_equal(x, y)
    c = generate(dataclasses.replace(SMALL, seed=1))
    assert not np.array_equal(a["train"][0], c["train"][0])
    videos, flows, labels = a["train"]
    assert videos.shape == (6, 8, 40, 40, 3) and videos.dtype == np.uint8
    assert flows.shape == (6, 40, 40, 2) and sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("seed", range(4))
def test_rgb_frames_are_identical_across_classes(seed):
    """Class 0 with speed fraction s equals class 1 with 1 - s frame for frame (the alias of a
    periodic texture), and s -> 1 - s preserves the speed distribution: the appearance stream
    (with any temporal model) sees the same distribution in both classes."""
    p = _params(seed)
    lo, hi = SMALL.speed
    assert lo + hi == pytest.approx(1.0)  # the speed range is symmetric about 1/2
    aliased = {**p, **{k: dataclasses.replace(p[k], speed=1.0 - p[k].speed) for k in KINDS}}
    v0, f0 = render(p, 0, SMALL)
    v1, f1 = render(aliased, 1, SMALL)
    np.testing.assert_array_equal(v0, v1)
    # ... while the motion differs: every disc slides the opposite way
    moving = f0[..., 0] != 0
    assert moving.any() and (np.sign(f0[..., 0]) == -np.sign(f1[..., 0]))[moving].all()


@pytest.mark.parametrize("seed", range(4))
def test_flow_fields_are_identical_across_classes(seed):
    """Swapping the two discs' geometry and motion draws (exchangeable: i.i.d. and jointly
    rejected) maps class 0 onto class 1 with the same flow: the motion stream cannot tell which
    colour moves which way."""
    p = _params(seed)
    geometry = ("centre", "radius", "period", "phase", "harmonics", "speed")
    swapped = dict(p)
    for a, b in (("red", "blue"), ("blue", "red")):
        swapped[a] = dataclasses.replace(p[a], **{g: getattr(p[b], g) for g in geometry})
    v0, f0 = render(p, 0, SMALL)
    v1, f1 = render(swapped, 1, SMALL)
    np.testing.assert_array_equal(f0, f1)
    assert np.abs(v0.astype(int) - v1.astype(int)).max() > 100  # the colours moved


def test_flow_sets_and_colours_match_in_every_video():
    """Every video, whatever its class, holds one red and one blue disc, one disc sliding right
    and one sliding left (equal outlines' distribution)."""
    videos, flows, labels = generate(SMALL)["train"]
    for v, f, y in zip(videos, flows, labels):
        u = f[..., 0]
        assert (u > 0).any() and (u < 0).any() and not f[..., 1].any()
        red = (v[0, ..., 0] > 1.5 * v[0, ..., 2] + 20).sum()
        blue = (v[0, ..., 2] > 1.5 * v[0, ..., 0] + 20).sum()
        assert red > 50 and blue > 50
        # the label is the conjunction: red pixels move right in class 0
        red_mask = v[0, ..., 0] > 1.5 * v[0, ..., 2] + 20
        assert np.sign(np.median(u[red_mask & (u != 0)])) == (1 if y == 0 else -1)


@pytest.mark.parametrize("label", [0, 1])
def test_emitted_flow_is_exact(label):
    """Sampling frame t+1 at x + flow(x) reproduces frame t on disc pixels whose displaced
    position is inside the disc too; the reversed flow does not."""
    p = _params(3)
    video, flow = render(p, label, SMALL)
    n = SMALL.size
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    inside = np.zeros((n, n), bool)
    for k in KINDS:
        c, r = p[k].centre, p[k].radius - 1.5
        d = np.hypot(yy - c[0], xx - c[1])
        d2 = np.hypot(yy - c[0], xx + flow[..., 0] - c[1])
        inside |= (d <= r) & (d2 <= r)
    assert inside.sum() > 40

    def sample(img, x):  # bilinear along x (the flow is horizontal)
        x0 = np.clip(np.floor(x).astype(int), 0, n - 2)
        w = (x - x0)[..., None]
        rows = np.arange(n)[:, None]
        return img[rows, x0] * (1 - w) + img[rows, x0 + 1] * w

    errors = {}
    for name, sign in (("flow", 1), ("reversed", -1)):
        e = []
        for t in range(SMALL.video_frames - 1):
            warped = sample(video[t + 1].astype(float), xx + sign * flow[..., 0])
            e.append(np.abs(warped - video[t])[inside].mean())
        errors[name] = float(np.mean(e))
    assert errors["flow"] < 3.0, errors  # bilinear interpolation + rounding only
    assert errors["reversed"] > 5 * errors["flow"], errors


def test_training_pipeline_crops_both_streams_alike_and_flips_labels():
    src = ConjunctionSource(SMALL)
    assert src.info.streams == ("rgb", "flow") and src.info.flip_label_map == [1, 0]
    spec = ClipSpec(num_frames=3, stride_range=(1, 2), image_size=(32, 32), flip=True)
    _, flows, _ = src.splits["train"]
    ds = src.dataset("train", training=True, spec=spec, seed=0)
    for x, y in ds.take(12):
        assert x["rgb"].shape == (3, 32, 32, 3) and x["flow"].shape == (3, 32, 32, 4)
        u = x["flow"].numpy()[..., 0::2]
        np.testing.assert_allclose(u[..., 0], u[..., 1])  # L = 2 equal fields
        assert not x["flow"].numpy()[..., 1::2].any()
        rgb = x["rgb"].numpy()
        red = rgb[0, ..., 0] > 1.5 * rgb[0, ..., 2] + 20
        moving = red & (np.abs(u[0, ..., 0]) > 0.5)
        if moving.sum() > 10:  # the red disc is in the crop: label = its direction, after flip
            right = np.median(u[0, ..., 0][moving]) > 0
            assert right == (int(y) == CLASSES.index("red_right_blue_left"))
    # the flow scale follows the resize: 40 px frames, crops of about 35 px resized to 32
    assert np.abs(x["flow"].numpy()).max() <= np.abs(flows).max() * 32 / (40 * 0.875 * 0.75) + 1e-3
    full = dataclasses.replace(spec, test_short_side=None, test_num_frames=4)
    test = list(src.dataset("test", training=False, spec=full, seed=0))
    assert len(test) == 4
    x, _ = test[0]
    assert x["rgb"].shape == (4, 40, 40, 3) and x["flow"].shape == (4, 40, 40, 4)
    np.testing.assert_array_equal(x["flow"].numpy()[0, ..., :2], src.splits["test"][1][0])
    # resized test frames: flow in pixels of the new resolution
    big, _ = next(iter(src.dataset("test", training=False, seed=0,
                                   spec=dataclasses.replace(full, test_short_side=80))))
    assert big["flow"].shape == (4, 80, 80, 4)
    assert np.abs(big["flow"]).max() == pytest.approx(2 * np.abs(x["flow"]).max(), rel=1e-4)


def test_make_source_and_config_accept_conjunction():
    from tfzoo.config import TrainConfig, load_config_file
    from tfzoo.sources import make_source

    src = make_source(TrainConfig(dataset="conjunction",
                                  dataset_options={"videos_per_class": (1, 1, 1), "size": 40,
                                                   "video_frames": 6, "radius": (7.0, 8.0)}))
    assert src.info.num_videos == {"train": 2, "val": 2, "test": 2}
    late = load_config_file("latefusion_conjunction")
    mul = load_config_file("mulnet_conjunction")
    st = load_config_file("stresnet_conjunction")
    assert late.model_overrides["fusion"] == "none" and mul.model_overrides["fusion"] == "multiply"
    assert st.model_overrides["fusion"] == "add"
    # the same recipe apart from the model
    strip = dict(model="any", model_overrides={})
    assert late.replace(**strip) == mul.replace(**strip) == st.replace(**strip)
    assert late.model_overrides["flow_channels"] == 2 * late.dataset_options["flow_stack"]


@pytest.mark.slow  # ~1 min; train.run on conjunction runs by default in tests/train/test_run_dirs.py
def test_late_fusion_recipe_trains_and_evaluates(tmp_path):
    """Smoke: a few steps of configs/latefusion_conjunction.py through tfzoo.train.run."""
    from tfzoo.config import load_config_file
    from tfzoo.train import make_strategy, run

    config = load_config_file("latefusion_conjunction").replace(
        dataset_options={"flow_stack": 2, "videos_per_class": (4, 1, 2), "size": 32,
                         "video_frames": 6, "radius": (6.0, 7.0), "period": (6.0, 8.0)},
        image_size=(32, 32), num_frames=2, test_num_frames=2, batch_size=4, epochs=1,
        steps_per_epoch=2,
        model_overrides={"rgb_blocks": (2, 2, 2, 2), "flow_blocks": (2, 2, 2, 2), "width": 4,
                         "flow_channels": 4, "flow_dropout": 0.0, "fusion": "none"},
    )
    metrics = run(config, tmp_path / "late", make_strategy("default"), verbose=0)
    assert metrics["num_videos"] == 4 and 0.0 <= metrics["accuracy"] <= 1.0
    assert (tmp_path / "late" / "metrics.json").exists()
