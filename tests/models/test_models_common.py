"""Every registered model of every task, automatically (keras-hub's `run_task_test` style):
builds, runs, serialises (config, `from_config`, `.keras`), its task's loss trains it, float32
outputs under mixed precision, publishes its feature maps, rejects bad input, exports and
benchmarks.

A model registered with `tfzoo.register_model` is enrolled here through its `test_overrides`
(a small variant) and `test_input` (clip geometry); what differs between tasks (inputs, a tiny
labelled batch, what the outputs are) is in `CASES`, one entry per task. Each model is built
once per module and shared by the checks that do not change it. The costlier checks (export
through the session loader, bench, the gradient probe of every endpoint) run for every
classifier under `-m slow` and in the default suite for a sample (see each test); detectors
export through the session loader in tests/models/test_rfcn.py and test_dt.py.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfzoo
from tfzoo.errors import InputSpecError
from tfzoo.models import feature_extractor
from tfzoo.registry import UnknownModelError, get_entry
from tfzoo.tasks import get_task

NAMES = tfzoo.list_models()
CLASSIFIERS = tfzoo.list_models(task="classification")


def small_build_key(name):
    """What `name`'s small variant is built from: presets that differ only in what their
    `test_overrides` replace (resnet50/101/152 at a tiny depth) are one build."""
    e = get_entry(name)
    kwargs = {**e.defaults, **(e.test_overrides or {})}
    return (e.builder, repr(sorted(kwargs.items())), repr(sorted((e.test_input or {}).items())))


# Each distinct small build once (under its first name); test_presets_of_one_small_build_are_
# the_same_model checks that the others build the same model.
_FIRST = {}
for _name in NAMES:
    _FIRST.setdefault(small_build_key(_name), _name)
DISTINCT = sorted(_FIRST.values())
NUM_CLASSES = 3


class ClassificationCase:
    """Video classifiers: clips (B, T, H, W, C) -> logits (or a dict of logits per stream)."""

    geometry = {"frames": 3, "size": 32}

    @staticmethod
    def labels(batch):
        return tf.constant([0, 1, 2, 1][:batch])

    @staticmethod
    def check_outputs(out, batch, size):
        for key, value in out.items():
            value = np.asarray(value)
            if key.endswith("_chunks"):  # per-chunk logits that carry a loss (ST-ResNet, §4.3.5)
                assert value.shape[::2] == (batch, NUM_CLASSES) and value.ndim == 3, key
                np.testing.assert_allclose(value.mean(1), np.asarray(out[key[:-7]]), atol=1e-5)
            else:
                assert value.shape == (batch, NUM_CLASSES), (key, value.shape)

    @staticmethod
    def untrained_by_the_loss(model):
        return set()


class DetectionCase:
    """Detectors (R-FCN, D&T): frames (B, H, W, 3) -> the RPN's and the head's score maps;
    the loss takes boxes and classes (`RFCN.detection_loss`)."""

    geometry = {"frames": None, "size": 64}

    @staticmethod
    def labels(batch):
        boxes = [[10, 10, 40, 50], [30, 20, 60, 60]]
        return {"gt_boxes": tf.constant([boxes] * batch, tf.float32),
                "gt_classes": tf.constant([[0, 2]] * batch, tf.int32),
                "image_size": tf.constant([[64, 64]] * batch, tf.int32)}

    @staticmethod
    def check_outputs(out, batch, size):
        from tfzoo.models.rfcn import STRIDE
        from tfzoo.tasks.detection import OUTPUTS

        assert sorted(out) == sorted(OUTPUTS)
        for key, value in out.items():  # every map on the stride-16 grid
            assert value.shape[:3] == (batch, size // STRIDE, size // STRIDE), (key, value.shape)

    @staticmethod
    def untrained_by_the_loss(model):
        # D&T's tracking head learns from frame pairs (DetectTrack.train_step, test_dt.py),
        # not from the per-frame detection loss
        if not hasattr(model, "detect_track"):
            return set()
        return {v.path for v in model.trainable_variables if v.path.startswith("track_")}


CASES = {"classification": ClassificationCase, "detection": DetectionCase}


def case(name):
    return CASES[get_entry(name).task]


def test_every_task_has_a_case():
    assert {get_entry(n).task for n in NAMES} <= set(CASES)


def geometry(name):
    return {**case(name).geometry, **(get_entry(name).test_input or {})}


def build(name):
    return tfzoo.create_model(name, num_classes=NUM_CLASSES, **(get_entry(name).test_overrides or {}))


_BUILT = {}


def small_model(name):
    """The module's shared float32 build of `name` (checks that change a model build their own)."""
    if name not in _BUILT:
        keras.utils.set_random_seed(0)
        _BUILT[name] = build(name)
    return _BUILT[name], geometry(name)


def sample_inputs(model, frames, size, batch=2, seed=0):
    """Random inputs for every input of `model`: (B, T, S, S, C) clips, or (B, S, S, C)
    frames for a model that takes single frames (`frames` is then ignored)."""
    rng = np.random.default_rng(seed)
    data = {}
    for spec in model.inputs:
        channels = spec.shape[-1]
        low, high = (0.0, 255.0) if channels == 3 else (-5.0, 5.0)
        time = (frames,) if len(spec.shape) == 5 else ()
        data[spec.name] = rng.uniform(low, high, (batch, *time, size, size, channels)).astype("float32")
    return data if len(data) > 1 else next(iter(data.values()))


def as_dict(out):
    return out if isinstance(out, dict) else {"logits": out}


def test_registry_lists_the_spine_models():
    for name in ("resnet50", "resnet101", "resnet152", "tresnet50", "tresnet_small", "resnet_small"):
        assert name in CLASSIFIERS
    assert tfzoo.list_models("tresnet*") == [n for n in NAMES if n.startswith("tresnet")]
    assert tfzoo.list_models(task="detection") == ["dt", "dt_resnet101", "rfcn", "rfcn_resnet101",
                                                   "rfcn_resnet50"]
    assert sorted(CLASSIFIERS + tfzoo.list_models(task="detection")) == NAMES


@pytest.mark.parametrize("name", sorted(set(NAMES) - set(DISTINCT)))
def test_presets_of_one_small_build_are_the_same_model(name):
    first = _FIRST[small_build_key(name)]
    model, _ = small_model(first)
    keras.utils.set_random_seed(0)
    other = build(name)
    assert other.get_config() == model.get_config(), (name, first)
    assert [w.shape for w in other.weights] == [w.shape for w in model.weights]


def test_unknown_model_suggests_close_matches():
    with pytest.raises(UnknownModelError, match="Did you mean: tresnet50"):
        tfzoo.create_model("tresnet5O")


@pytest.mark.parametrize("name", DISTINCT)
def test_build_run_and_keras_round_trip(name, tmp_path):
    model, g = small_model(name)
    task = get_task(model)
    assert task.name == get_entry(name).task
    task.check_outputs(model)
    x = sample_inputs(model, g["frames"], g["size"])
    out = as_dict(model(x, training=False))
    case(name).check_outputs(out, 2, g["size"])
    assert all(np.isfinite(np.asarray(v)).all() for v in out.values())

    def same_outputs(other):
        got = as_dict(other(x, training=False))
        assert sorted(got) == sorted(out)
        for key in out:
            np.testing.assert_allclose(np.asarray(got[key]), np.asarray(out[key]), atol=1e-5,
                                       err_msg=key)

    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    same_outputs(loaded)
    assert loaded.endpoints == model.endpoints
    config = model.get_config()
    rebuilt = type(model).from_config(config)
    assert rebuilt.get_config() == config
    rebuilt.set_weights(model.get_weights())
    same_outputs(rebuilt)


@pytest.mark.parametrize("name", DISTINCT)
def test_task_loss_on_a_tiny_batch_reaches_every_trainable_weight(name):
    model, g = small_model(name)
    batch = 4 if get_entry(name).task == "classification" else 2
    x = sample_inputs(model, g["frames"], g["size"], batch=batch)
    task = get_task(model)
    with tf.GradientTape() as tape:
        loss = task.loss(model, model(x, training=True), case(name).labels(batch))
    grads = tape.gradient(loss, model.trainable_variables)
    assert np.isfinite(float(loss)) and float(loss) > 0
    assert all(np.isfinite(np.asarray(g_)).all() for g_ in grads if g_ is not None)
    dead = {v.path for v, g_ in zip(model.trainable_variables, grads)
            if g_ is None or not np.any(np.asarray(g_))}
    assert dead == case(name).untrained_by_the_loss(model), f"no gradient reaches {dead}"


@pytest.mark.parametrize("name", DISTINCT)
def test_outputs_are_float32_under_mixed_bfloat16(name):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build(name)
        get_task(model).check_outputs(model)
        g = geometry(name)
        out = as_dict(model(sample_inputs(model, g["frames"], g["size"], batch=1), training=False))
        assert {k: v.dtype for k, v in out.items()} == {k: tf.float32 for k in out}
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _map_sizes(model, names, frames, size):
    maps = feature_extractor(model, names)(sample_inputs(model, frames, size, batch=1), training=False)
    return {n: tuple(m.shape) for n, m in maps.items()}


@pytest.mark.parametrize("name", DISTINCT)
def test_endpoints_match_the_tensors(name):
    model, g = small_model(name)
    endpoints = model.endpoints
    assert endpoints, f"{name} publishes no feature maps"
    for ep in endpoints.values():
        assert model.get_layer(ep.layer).output.shape[-1] == ep.channels, ep
        assert ep.stream in (None, "rgb", "flow"), ep
        if ep.name.startswith(("rgb/", "flow/")):
            assert ep.stream == ep.name.split("/")[0], ep
    # Stride: growing the input by 64 px grows every map by 64 / stride units, whatever the
    # padding (a cascade of floors shifts with whole multiples of the total stride).
    small, large = g["size"], g["size"] + 64
    a = _map_sizes(model, list(endpoints), 1, small)
    b = _map_sizes(model, list(endpoints), 1, large)
    for n, ep in endpoints.items():  # (..., H, W, C) maps, with or without a time axis
        assert a[n][-1] == b[n][-1] == ep.channels, (n, a[n], ep)
        assert (b[n][-3] - a[n][-3]) * ep.stride == 64, (n, a[n], b[n], ep.stride)
        assert (b[n][-2] - a[n][-2]) * ep.stride == 64, (n, a[n], b[n], ep.stride)


def receptive_field_probe(model, name, batch=6, seed=0):
    """(rows, cols): the extent of the input that the centre unit of endpoint `name` depends on.

    The support of d(centre unit)/d(input) on an input large enough to hold the whole field,
    united over a batch of random clips (max pooling passes gradient to one input of each
    window, so a single clip can miss the field's border). The probe's cost is linear in
    `batch` (a 256 px clip each): the default suite probes with 2, the slow sweep with 6.
    """
    ep = model.endpoints[name]
    size = 32 * math.ceil((ep.receptive_field + 2 * ep.stride) / 32)
    x = sample_inputs(model, 1, size, batch=batch, seed=seed)
    xs = [tf.constant(v) for v in (x.values() if isinstance(x, dict) else [x])]
    fe = feature_extractor(model, [name])
    with tf.GradientTape() as tape:
        tape.watch(xs)
        m = fe(dict(zip(x, xs)) if isinstance(x, dict) else xs[0], training=False)[name]
        centre = tf.reduce_sum(m[..., m.shape[-3] // 2, m.shape[-2] // 2, :])
    # summed over everything but the input's (H, W)
    support = sum(tf.reduce_sum(tf.abs(gr), axis=[0, *range(1, gr.shape.rank - 3), -1])
                  for gr in tape.gradient(centre, xs) if gr is not None).numpy()
    rows, cols = np.nonzero(support.sum(1))[0], np.nonzero(support.sum(0))[0]
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def _deepest_and_fusion(endpoints):
    last = {}
    for n, ep in endpoints.items():
        if n.startswith("fusion/"):
            last[n] = n
        else:
            last[ep.stream] = n  # shallow to deep: the last one of a stream wins
    return sorted(set(last.values()))


# One small build per builder in make test (the fusion functions and presets of a builder share
# its towers' geometry); the other builds in make test-e2e.
_PER_BUILDER = {}
for _name in DISTINCT:
    _PER_BUILDER.setdefault(get_entry(_name).builder, _name)
BY_BUILDER = [n if n in _PER_BUILDER.values() else pytest.param(n, marks=pytest.mark.e2e)
              for n in DISTINCT]


@pytest.mark.parametrize("name", BY_BUILDER)
def test_receptive_field_matches_a_gradient_probe(name):
    # The deepest map of every stream and every fusion map: their fields compose those of
    # all shallower layers. Every endpoint: test_every_receptive_field_matches (slow).
    model, _ = small_model(name)
    for endpoint in _deepest_and_fusion(model.endpoints):
        rf = model.endpoints[endpoint].receptive_field
        assert receptive_field_probe(model, endpoint, batch=2) == (rf, rf), endpoint


@pytest.mark.slow
@pytest.mark.parametrize("name", DISTINCT)
def test_every_receptive_field_matches(name):
    model, _ = small_model(name)
    for endpoint, ep in model.endpoints.items():
        assert receptive_field_probe(model, endpoint) == (ep.receptive_field,) * 2, endpoint


# One model per class runs in the default suite as
# tests/export/test_export.py::test_every_family_runs_in_the_session_loader; every model here.
@pytest.mark.slow
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_export_round_trip_in_the_session_loader(name, tmp_path):
    from export.saved_model import export_saved_model
    from _saved_model import SessionLoaded
    from tfzoo.rundir import RunInfo

    model, g = small_model(name)
    t, s = g["frames"], g["size"]
    classes = [f"class{i}" for i in range(NUM_CLASSES)]
    info = RunInfo(model=name, model_config=model.get_config(), class_names=classes,
                   num_frames=t, image_size=(s, s))
    path = export_saved_model(model, info, tmp_path, warmup=False)
    x = sample_inputs(model, t, s, batch=2, seed=3)
    feeds = dict(x) if isinstance(x, dict) else {"rgb" if x.shape[-1] == 3 else "flow": x}
    feeds["rgb"] = np.round(feeds["rgb"]).astype("uint8")
    keras_in = {k: v.astype("float32") for k, v in feeds.items()}
    want = tf.nn.softmax(get_task(model).test_score(
        model(keras_in if len(keras_in) > 1 else next(iter(keras_in.values())), training=False)))
    loaded = SessionLoaded(path)
    try:
        assert list(loaded.uninitialized) == []
        out = loaded.run("serving_default", **feeds)
    finally:
        loaded.close()
    np.testing.assert_allclose(out["probabilities"], want.numpy(), atol=1e-5)
    top = np.argsort(-want.numpy(), axis=-1)
    np.testing.assert_array_equal(out["top_k_indices"], top)
    assert [v.decode() for v in out["top_k_labels"][0]] == [classes[i] for i in top[0]]


# ST-ResNet (its dict output once crashed the bench's training step) in `make test-e2e`, every
# classifier with -m slow. The default suite benchmarks a tiny frame-wise ResNet through the CLI
# in tests/cli/test_bench.py.
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.e2e if n == "stresnet50" else pytest.mark.slow)
             for n in CLASSIFIERS])
def test_bench_smoke(name):
    from tfzoo import bench

    g = geometry(name)
    row = bench.bench_model(name, frames=2, size=g["size"], runs=1, warmup=0, matmul_n=256,
                            overrides={"num_classes": NUM_CLASSES, **(get_entry(name).test_overrides or {})})
    for key in ("params", "gflops_per_clip", "forward_ms", "train_step_ms", "train_gflops_per_step"):
        assert row[key] > 0, key
    # A training step does forward + backward: more FLOPs than the forward alone.
    assert row["train_gflops_per_step"] > row["gflops_per_clip"] * row["batch"]


@pytest.mark.parametrize("name", DISTINCT)
def test_bad_input_is_a_clear_error(name):
    model, g = small_model(name)
    x = sample_inputs(model, g["frames"], g["size"], batch=1)
    first = x if not isinstance(x, dict) else x[model.inputs[0].name]
    wrong_rank = first[:, 0]
    bad = wrong_rank if not isinstance(x, dict) else {**x, model.inputs[0].name: wrong_rank}
    with pytest.raises(InputSpecError, match=f"rank-{first.ndim - 1}"):
        model(bad)
    wrong_channels = first[..., :1]
    bad = wrong_channels if not isinstance(x, dict) else {**x, model.inputs[0].name: wrong_channels}
    with pytest.raises(InputSpecError, match="channels"):
        model(bad)
    strings = np.full(first.shape, "a")
    bad = strings if not isinstance(x, dict) else {**x, model.inputs[0].name: strings}
    with pytest.raises(InputSpecError, match="dtype"):
        model(bad)


TWO_STREAM = [n for n in DISTINCT if "two_stream" in get_entry(n).tags]


@pytest.mark.parametrize("name", TWO_STREAM)
def test_two_stream_model_composes_with_dict_inputs(name):
    # Inside another functional model (e.g. behind tfzoo.flow.TwoStreamFrames) the inputs
    # arrive as a dict of symbolic tensors; they must reach the right streams.
    model, g = small_model(name)
    x = sample_inputs(model, g["frames"], g["size"], batch=1)
    assert sorted(x) == ["flow", "rgb"]
    inputs = {k: keras.Input(v.shape[1:], name=k) for k, v in x.items()}
    outer = keras.Model(inputs, model(inputs))
    got, want = as_dict(outer(x)), as_dict(model(x))
    for key in want:
        np.testing.assert_allclose(np.asarray(got[key]), np.asarray(want[key]), atol=1e-5)
