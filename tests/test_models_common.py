"""Every registered model, automatically: builds, runs, serialises, rejects bad input.

A model registered with `tfzoo.register_model` is enrolled here through its `test_overrides`
(a small variant) and `test_input` (clip geometry).
"""

import numpy as np
import keras
import pytest

import tfzoo
from tfzoo.models.base import InputSpecError
from tfzoo.registry import UnknownModelError, get_entry

NAMES = tfzoo.list_models()


def small_model(name):
    entry = get_entry(name)
    model = tfzoo.create_model(name, num_classes=3, **(entry.test_overrides or {}))
    geometry = {"frames": 3, "size": 32, **(entry.test_input or {})}
    return model, geometry


def sample_inputs(model, frames, size, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    data = {}
    for spec in model.inputs:
        channels = spec.shape[-1]
        scale = 255.0 if channels == 3 else 5.0
        data[spec.name] = rng.uniform(0, scale, (batch, frames, size, size, channels)).astype("float32")
    return data if len(data) > 1 else next(iter(data.values()))


def as_dict(out):
    return out if isinstance(out, dict) else {"logits": out}


def test_registry_lists_the_spine_models():
    for name in ("resnet50", "resnet101", "resnet152", "tresnet50", "tresnet_small", "resnet_small"):
        assert name in NAMES
    assert tfzoo.list_models("tresnet*") == [n for n in NAMES if n.startswith("tresnet")]


def test_unknown_model_suggests_close_matches():
    with pytest.raises(UnknownModelError, match="Did you mean: tresnet50"):
        tfzoo.create_model("tresnet5O")


@pytest.mark.parametrize("name", NAMES)
def test_build_run_and_keras_round_trip(name, tmp_path):
    model, g = small_model(name)
    x = sample_inputs(model, g["frames"], g["size"])
    out = as_dict(model(x, training=False))
    for key, value in out.items():
        value = np.asarray(value)
        assert value.shape == (2, 3), (key, value.shape)
        assert np.isfinite(value).all()
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    reloaded = as_dict(loaded(x, training=False))
    for key in out:
        np.testing.assert_allclose(np.asarray(reloaded[key]), np.asarray(out[key]), atol=1e-5)
    config = model.get_config()
    assert type(model).from_config(config).get_config() == config


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_a_clear_error(name):
    model, g = small_model(name)
    x = sample_inputs(model, g["frames"], g["size"], batch=1)
    first = x if not isinstance(x, dict) else x[model.inputs[0].name]
    wrong_rank = first[:, 0]
    bad = wrong_rank if not isinstance(x, dict) else {**x, model.inputs[0].name: wrong_rank}
    with pytest.raises(InputSpecError, match="rank-4"):
        model(bad)
    wrong_channels = first[..., :1]
    bad = wrong_channels if not isinstance(x, dict) else {**x, model.inputs[0].name: wrong_channels}
    with pytest.raises(InputSpecError, match="channels"):
        model(bad)
    strings = np.full(first.shape, "a")
    bad = strings if not isinstance(x, dict) else {**x, model.inputs[0].name: strings}
    with pytest.raises(InputSpecError, match="dtype"):
        model(bad)


TWO_STREAM = [n for n in NAMES if "two_stream" in get_entry(n).tags]


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
