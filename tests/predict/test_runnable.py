"""`tfzoo.runnable`: a Keras model and its SavedModel behind one interface give the same answers.

The SavedModel is read by TensorFlow alone (signatures); its class scores are log-probabilities,
the Keras model's logits: they must differ by one constant per clip (log-softmax), whatever the
views (the flip) and the clip size.
"""

from __future__ import annotations

from types import SimpleNamespace

import keras
import numpy as np
import pytest

import tfzoo
from tfzoo.rundir import RunInfo, save_model, write_run_info
from tfzoo.runnable import (
    KerasRunnable,
    RunnableError,
    SavedModelRunnable,
    load_runnable,
)

CLASSES = ["biking", "surfing", "juggling"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    keras.utils.set_random_seed(4)
    model = tfzoo.create_model("tresnet_small", num_classes=3, blocks=(1, 1, 1, 1), width=8)
    d = tmp_path_factory.mktemp("run")
    write_run_info(d, RunInfo(model="tresnet_small", model_config=model.get_config(),
                              class_names=CLASSES, num_frames=4, image_size=(32, 32),
                              config={"test_flip": True}))
    save_model(model, d)
    from tfzoo.export.saved_model import export_saved_model
    from tfzoo.rundir import load_model

    keras_model, info = load_model(d)
    path = export_saved_model(keras_model, info, tmp_path_factory.mktemp("exports"),
                              warmup=False)
    return SimpleNamespace(dir=d, path=path, model=keras_model, keras=load_runnable(d),
                           saved=load_runnable(str(path)))


def _log_softmax(x):
    x = np.asarray(x, np.float64)
    return x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)) - x.max(
        -1, keepdims=True)


def test_loads_each_form(run):
    from_dir = run.keras
    assert isinstance(from_dir, KerasRunnable) and from_dir.name == "tresnet_small"
    assert from_dir.run_info.class_names == CLASSES
    assert isinstance(run.saved, SavedModelRunnable) and run.saved.source == str(run.path)
    assert isinstance(load_runnable(run.saved.loaded), SavedModelRunnable)
    assert isinstance(load_runnable(run.model), KerasRunnable)
    assert load_runnable(from_dir) is from_dir
    with pytest.raises(RunnableError, match="list.*expected a keras.Model"):
        load_runnable([1, 2])


def test_keras_and_saved_model_score_alike(run):
    clips = np.random.default_rng(0).integers(0, 256, (2, 4, 32, 40, 3)).astype(np.float32)
    for flip in (False, True):
        k = run.keras.classifier(flip=flip)
        s = run.saved.classifier(flip=flip)
        # the export names its classes in its outputs; the run names them in run.json
        assert k.class_names == s.class_names == CLASSES
        assert not k.two_stream and not s.two_stream and not s.needs_flow
        got, want = s.scores(clips).numpy(), k.scores(clips).numpy()
        assert got.shape == want.shape == (2, 3)
        if not flip:  # one view: log p is exactly the log-softmax of the logits
            np.testing.assert_allclose(got, _log_softmax(want), atol=1e-4)
        # averaged over views too, log p and logits differ by one constant per clip
        shift = got - want
        np.testing.assert_allclose(shift, shift[:, :1].repeat(3, 1), atol=1e-4)
        if flip:  # the flip-averaged score is the mean of the two views' scores
            flipped = np.ascontiguousarray(clips[:, :, :, ::-1])
            views = one_view.scores(clips).numpy(), one_view.scores(flipped).numpy()
            np.testing.assert_allclose(want, (views[0] + views[1]) / 2, atol=1e-5)
        one_view = k


def test_what_a_form_cannot_do_is_a_clear_error(run):
    with pytest.raises(RunnableError, match="features need the Keras model"):
        run.saved.classifier(features="conv5")
    with pytest.raises(RunnableError, match="not a D&T model"):
        run.keras.tracker()
    with pytest.raises(RunnableError, match="not a D&T model"):
        run.saved.tracker()
    with pytest.raises(RunnableError, match="2 class names"):
        run.keras.classifier(class_names=["a", "b"])
    with pytest.raises(RunnableError, match="expected 'serving_default'"):
        load_runnable(SimpleNamespace(signatures={})).classifier()
    features = run.keras.classifier(features="conv5")
    clip = np.random.default_rng(1).integers(0, 256, (1, 4, 32, 32, 3)).astype(np.float32)
    maps = features.features(clip).numpy()
    assert maps.shape == (1, run.model.endpoints["conv5"].channels)
    assert np.isfinite(maps).all() and np.abs(maps).sum() > 0
