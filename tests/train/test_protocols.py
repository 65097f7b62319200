"""The named test protocols (tfzoo.protocols): each one's frames, crops and flips, and the
averaged prediction, against views cut by hand with numpy from the raw video."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest

from tfzoo import config as cfglib
from tfzoo.data import clip_spec
from tfzoo.sources import make_source
from tfzoo.errors import TfzooError
from tfzoo.evaluate import evaluate_model_dir
from tfzoo.protocols import protocol_views
from tfzoo.tasks.classification import predict_scores
from tfzoo.protocols import PROTOCOLS, get_protocol, protocol_of
from tfzoo.rundir import RunInfo, save_model, write_run_info
from tfzoo.tasks.classification import CLASSIFICATION
from _paths import REPO


def _tiny_model(channels=3, name="probe"):
    # A 2-tap temporal kernel, an asymmetric spatial kernel and a global max: the prediction
    # changes with which frames form a clip, where the crop is and whether it is flipped.
    x = keras.Input((None, None, None, channels))
    h = keras.layers.Conv3D(4, (2, 3, 3), kernel_initializer=keras.initializers.RandomNormal(seed=1),
                            bias_initializer="zeros")(x)
    h = keras.layers.GlobalMaxPooling3D()(keras.layers.ReLU()(h))
    out = keras.layers.Dense(3, kernel_initializer=keras.initializers.RandomNormal(seed=2))(h)
    return keras.Model(x, out, name=name)


def _score(model, clip):
    return np.asarray(model(clip[None].astype("float32"), training=False))[0]


def _spaced(n, k):
    # k equally spaced frame indices over n frames, rounded half to even (as tf.round)
    return np.round(np.linspace(0, n - 1, k)).astype(int)


SYNTH = {"size": 16, "video_frames": 45, "videos_per_class": (1, 1, 1)}


def _config(**kw):
    return cfglib.TrainConfig(dataset="synthetic", dataset_options=SYNTH, num_frames=2,
                              test_short_side=None, batch_size=2, **kw)


def _hand_scores(model, videos, protocol: str, clip_frames=2):
    p = get_protocol(protocol)
    out = []
    for v in videos.astype("float32"):
        chunks = v[_spaced(len(v), p.clips * (p.frames or clip_frames))]
        preds = []
        for clip in np.split(chunks, p.clips):
            preds += [_score(model, clip), _score(model, clip[:, :, ::-1])]
        out.append(np.mean(preds, axis=0))
    return np.stack(out)


@pytest.mark.parametrize("protocol", ["dense20", "chunks25_flip", "chunks5_flip"])
def test_protocol_frames_and_average_match_hand_views(protocol):
    # dense20 with T = 2: 40 equally spaced frames, clips (0,1), (2,3), ..., each + its flip
    config = _config(test_protocol=protocol)
    spec = clip_spec(config)
    p = protocol_of(config)
    assert spec.test_num_frames == {"dense20": 40, "chunks25_flip": 25, "chunks5_flip": 5}[protocol]
    source = make_source(config)
    model = _tiny_model()
    ds = source.dataset("test", training=False, spec=spec, seed=0).batch(2)
    scores, labels = predict_scores(model, ds, flip=p.flip, views=protocol_views(p))
    videos, want_labels = source.splits["test"]
    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_allclose(scores, _hand_scores(model, videos, protocol), rtol=1e-5, atol=1e-5)


def test_dense20_differs_from_one_clip_over_the_same_frames():
    # the clips are predicted separately: one pass over all 40 chunks is a different number
    model = _tiny_model()
    x = np.random.default_rng(0).uniform(0, 255, (1, 40, 12, 12, 3)).astype("float32")
    dense = np.asarray(CLASSIFICATION.predict(model, x, clips=20))
    whole = np.asarray(CLASSIFICATION.predict(model, x))
    want = np.mean([_score(model, c) for c in np.split(x[0], 20)], axis=0)
    np.testing.assert_allclose(dense[0], want, rtol=1e-5, atol=1e-5)
    assert np.abs(dense - whole).max() > 1e-3


def test_crop10_takes_the_four_corners_the_centre_and_their_flips():
    # 40 x 56 frames: 224/256 of the short side is a 35 px square at rows/columns
    # (0, 0), (0, 21), (5, 0), (5, 21) and the centre (2, 10)
    rng = np.random.default_rng(1)
    rgb = rng.uniform(0, 255, (1, 3, 40, 56, 3)).astype("float32")
    flow = rng.normal(0, 3, (1, 3, 40, 56, 4)).astype("float32")
    a, b = _tiny_model(3, "a"), _tiny_model(4, "b")
    inputs = {"rgb": keras.Input((None, None, None, 3), name="rgb"),
              "flow": keras.Input((None, None, None, 4), name="flow")}
    model = keras.Model(inputs, {"rgb": a(inputs["rgb"]), "flow": b(inputs["flow"])})
    p = get_protocol("crop10")
    got = np.asarray(CLASSIFICATION.predict(model, {"rgb": rgb, "flow": flow}, flip=p.flip,
                                            **protocol_views(p)))
    preds = []
    for y, x in ((0, 0), (0, 21), (5, 0), (5, 21), (2, 10)):
        r, f = rgb[0, :, y:y + 35, x:x + 35], flow[0, :, y:y + 35, x:x + 35]
        preds.append((_score(a, r) + _score(b, f)) / 2)  # no "fused": the streams' mean
        f_flip = f[:, :, ::-1].copy()
        f_flip[..., 0::2] *= -1  # a horizontal flip negates u
        preds.append((_score(a, r[:, :, ::-1]) + _score(b, f_flip)) / 2)
    np.testing.assert_allclose(got[0], np.mean(preds, axis=0), rtol=1e-5, atol=1e-5)


def test_evaluate_protocol_overrides_the_runs(tmp_path):
    config = _config(test_protocol="chunks5_flip")
    model = _tiny_model()
    source = make_source(config)
    save_model(model, tmp_path)
    write_run_info(tmp_path, RunInfo(model="probe", model_config={},
                                     class_names=list(source.info.class_names), num_frames=5,
                                     image_size=(16, 16), config=config.to_json()))
    videos, labels = source.splits["test"]
    for protocol in (None, "dense20"):
        m = evaluate_model_dir(tmp_path, split="test", protocol=protocol)
        want = _hand_scores(model, videos, protocol or "chunks5_flip").argmax(1)
        assert m["accuracy"] == pytest.approx(float(np.mean(want == labels)))
        assert m["protocol"].startswith(f"{protocol or 'chunks5_flip'}: ")
    with pytest.raises(TfzooError, match=r"unknown config key 'test_protocol' value 'dense2'; "
                                         r"expected one of \['chunks5_flip'.*'crop10'\]"):
        evaluate_model_dir(tmp_path, split="test", protocol="dense2")
    with pytest.raises(TfzooError, match="--flip applies to tests without a named protocol"):
        evaluate_model_dir(tmp_path, split="test", flip=False)
    # the command line: --protocol overrides the run's
    proc = subprocess.run([sys.executable, "-m", "tfzoo.evaluate", f"--model_dir={tmp_path}",
                           "--split=test", "--protocol=dense20"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "dense20: 20 clips of 2 chunks (40 equally spaced)" in proc.stdout


def test_a_named_protocol_owns_the_chunk_count_and_flips():
    base = cfglib.load_config_file("fusion_vgg16_ucf101")
    stages = dict(cfglib.stage_configs(base))
    # Table 3.5's dense protocol for the fusion model, Simonyan & Zisserman's 25 for the streams
    assert stages["2-fusion"].test_protocol == "dense20"
    assert clip_spec(stages["2-fusion"]).test_num_frames == 100  # 20 clips of T = 5
    assert stages["1-streams"].test_protocol == "chunks25_flip"
    with pytest.raises(cfglib.ConfigError, match="test_num_frames=3 would have no effect"):
        base.replace(test_num_frames=3)
    assert base.replace(test_protocol=None, test_num_frames=3).test_num_frames == 3
    assert set(PROTOCOLS) == {"chunks5_flip", "chunks16_flip", "chunks25_flip", "dense20", "crop10"}
