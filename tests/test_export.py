"""SavedModel export: round trip without tfzoo, dynamic shapes, atomicity, warmup, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfzoo
from export import saved_model as sm
from export.saved_model import ExportError, export_saved_model
from tfzoo.tasks import CLASSIFICATION
from export.warmup import (
    WARMUP_DIR,
    WARMUP_FILE,
    constant_tensor_proto,
    decode_warmup_request,
    have_serving_api,
    prediction_log_bytes,
)
from tfzoo.rundir import RunInfo, load_model, save_model, write_run_info

CLASSES = ["biking", "surfing", "juggling"]
NUM_FRAMES, IMAGE_SIZE = 4, (32, 40)
REPO = Path(__file__).resolve().parents[1]


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _clip(shape, seed):
    return np.random.RandomState(seed).randint(0, 256, shape).astype(np.uint8)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    keras.utils.set_random_seed(1)
    model = tfzoo.create_model("tresnet_small", num_classes=3, blocks=(1, 1, 1, 1), width=8)
    d = tmp_path_factory.mktemp("run")
    save_model(model, d)
    write_run_info(d, RunInfo(model="tresnet_small", model_config=model.get_config(),
                              class_names=CLASSES, num_frames=NUM_FRAMES, image_size=IMAGE_SIZE))
    return d


@pytest.fixture(scope="module")
def loaded(model_dir):
    return load_model(model_dir)


def _run_cli(*args, timeout=180):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "export", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory):
    """The export every test inspects, written by the CLI (`python -m export`)."""
    out = tmp_path_factory.mktemp("export")
    res = _run_cli(f"--model_dir={model_dir}", f"--export_dir={out}", "--top_k=2")
    assert res.returncode == 0, res.stderr[-3000:]
    path = Path(res.stdout.strip().splitlines()[-1])
    assert path == out / "tresnet_small" / "1"
    return path


def test_round_trip_without_tfzoo_dynamic_shapes(loaded, exported, tmp_path):
    model, _ = loaded
    # Two clip geometries through the same export: T, H and W are all dynamic.
    clips = {"a": _clip((2, 4, 32, 40, 3), 0), "b": _clip((1, 7, 48, 24, 3), 1)}
    for k, v in clips.items():
        np.save(tmp_path / f"{k}.npy", v)
    script = textwrap.dedent(
        f"""
        import sys, numpy as np, tensorflow as tf
        m = tf.saved_model.load({str(exported)!r})
        fn = m.signatures["serving_default"]
        spec = fn.structured_input_signature[1]
        assert list(spec) == ["rgb"], spec
        assert spec["rgb"].shape.as_list() == [None, None, None, None, 3], spec
        assert spec["rgb"].dtype == tf.uint8, spec
        out = {{}}
        for k in ("a", "b"):
            r = fn(rgb=tf.constant(np.load({str(tmp_path)!r} + f"/{{k}}.npy")))
            for name, v in r.items():
                out[f"{{k}}/{{name}}"] = v.numpy().astype(str) if v.dtype == tf.string else v.numpy()
        np.savez({str(tmp_path / "out.npz")!r}, **out)
        assert "tfzoo" not in sys.modules, "the SavedModel needed tfzoo"
        print("ok")
        """
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    for k, clip in clips.items():
        want = _softmax(model(clip.astype("float32")).numpy().astype(np.float64))
        np.testing.assert_allclose(out[f"{k}/probabilities"], want, atol=1e-5)
        order = np.argsort(-want, axis=-1)[:, :2]
        np.testing.assert_array_equal(out[f"{k}/top_k_indices"], order)
        np.testing.assert_array_equal(out[f"{k}/top_k_labels"], np.array(CLASSES)[order])


def test_signature_def_dynamic_uint8_input(exported):
    # The SignatureDef TF Serving reads, as `saved_model_cli show --all` prints it (the CLI is
    # not run here: it costs a TensorFlow start-up; docs/serving.md shows its output).
    from tensorflow.python.tools import saved_model_utils

    sig = saved_model_utils.get_meta_graph_def(str(exported), "serve").signature_def
    sig = sig["serving_default"]
    assert sig.method_name == "tensorflow/serving/predict"
    assert list(sig.inputs) == ["rgb"]
    assert sig.inputs["rgb"].dtype == tf.uint8.as_datatype_enum
    assert [d.size for d in sig.inputs["rgb"].tensor_shape.dim] == [-1, -1, -1, -1, 3]
    outputs = {k: (tf.as_dtype(v.dtype).name, [d.size for d in v.tensor_shape.dim])
               for k, v in sig.outputs.items()}
    assert outputs == {"probabilities": ("float32", [-1, 3]), "top_k_indices": ("int32", [-1, 2]),
                       "top_k_labels": ("string", [-1, 2])}


def test_layout_and_versions(exported):
    assert exported.name == "1" and exported.parent.name == "tresnet_small"
    assert (exported / "saved_model.pb").is_file()
    assert (exported / WARMUP_DIR / WARMUP_FILE).is_file()
    # A readable directory, not mkdtemp's owner-only mode.
    assert os.stat(exported).st_mode & 0o055 == 0o055 & ~_umask()
    assert sorted(p.name for p in exported.parent.iterdir()) == ["1"]


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_existing_version_refused_and_next_version(loaded, exported, tmp_path):
    model, info = loaded
    before = (exported / "saved_model.pb").read_bytes()
    with pytest.raises(ExportError, match=r"1 already exists.*never overwritten.*omit it to use 2"):
        export_saved_model(model, info, exported.parents[1], version=1)
    assert (exported / "saved_model.pb").read_bytes() == before
    # The default version is one past the highest integer directory; other names are ignored.
    for d in ("1", "5", ".tmp-export-9-x", "notes"):
        (tmp_path / "m" / d).mkdir(parents=True)
    assert sm.resolve_version_dir(tmp_path, "m", None) == tmp_path / "m" / "6"
    with pytest.raises(ExportError, match=r"m/5 already exists.*omit it to use 6"):
        sm.resolve_version_dir(tmp_path, "m", 5)


def test_failure_mid_export_leaves_nothing(loaded, tmp_path, monkeypatch):
    model, info = loaded

    def crash_while_writing(obj, path, **kwargs):
        (Path(path) / "variables").mkdir()
        (Path(path) / "saved_model.pb").write_bytes(b"half a graph")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(sm.tf.saved_model, "save", crash_while_writing)
    with pytest.raises(OSError, match="simulated"):
        export_saved_model(model, info, tmp_path, version=3)
    # Neither version 3 nor a stray temporary directory may remain for TF Serving to see.
    assert [p.name for p in (tmp_path / "tresnet_small").iterdir()] == []


def test_warmup_records_parse_and_run(loaded, exported):
    model, info = loaded
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(exported / WARMUP_DIR / WARMUP_FILE))]
    assert len(records) == 1
    name, signature, inputs = decode_warmup_request(records[0])
    assert (name, signature, list(inputs)) == ("tresnet_small", "serving_default", ["rgb"])
    rgb = tf.make_ndarray(inputs["rgb"])
    assert rgb.dtype == np.uint8 and rgb.shape == (1, NUM_FRAMES, *IMAGE_SIZE, 3)
    assert (rgb == 128).all()
    if have_serving_api():
        from tensorflow_serving.apis import prediction_log_pb2

        log = prediction_log_pb2.PredictionLog.FromString(records[0])
        req = log.predict_log.request
        assert req.model_spec.name == "tresnet_small"
        assert req.model_spec.signature_name == "serving_default"
        np.testing.assert_array_equal(tf.make_ndarray(req.inputs["rgb"]), rgb)
    # The warmup request is a valid request for the exported signature.
    out = tf.saved_model.load(str(exported)).signatures["serving_default"](rgb=tf.constant(rgb))
    want = _softmax(model(rgb.astype("float32")).numpy())
    np.testing.assert_allclose(out["probabilities"].numpy(), want, atol=1e-5)


@pytest.mark.skipif(not have_serving_api(), reason="tensorflow-serving-api not installed")
def test_wire_format_fallback_matches_serving_api():
    from tensorflow_serving.apis import prediction_log_pb2

    inputs = {"rgb": constant_tensor_proto((1, 2, 3, 4, 3), "uint8", 7),
              "flow": constant_tensor_proto((1, 2, 3, 4, 20), "float32", -1.5)}
    ours = prediction_log_bytes("m", "sig", inputs, use_serving_api=False)
    theirs = prediction_log_bytes("m", "sig", inputs, use_serving_api=True)
    assert prediction_log_pb2.PredictionLog.FromString(ours) == \
        prediction_log_pb2.PredictionLog.FromString(theirs)
    name, sig, decoded = decode_warmup_request(theirs)
    assert (name, sig) == ("m", "sig") and decoded == inputs
    assert tf.make_ndarray(decoded["flow"]).shape == (1, 2, 3, 4, 20)
    assert (tf.make_ndarray(decoded["flow"]) == -1.5).all()


def _two_stream(num_classes=3, with_fused=False):
    rgb = keras.Input((None, None, None, 3), name="rgb")
    flow = keras.Input((None, None, None, 20), name="flow")

    def tower(x, prefix):
        x = keras.layers.Conv3D(4, (1, 3, 3), padding="same", name=f"{prefix}_conv")(x)
        x = keras.layers.GlobalAveragePooling3D()(x)
        return keras.layers.Dense(num_classes, name=f"{prefix}_fc")(x)

    out = {"rgb": tower(rgb, "rgb"), "flow": tower(flow, "flow")}
    if with_fused:
        out["fused"] = keras.layers.Dense(num_classes, name="fused_fc")(
            keras.layers.Concatenate()([out["rgb"], out["flow"]]))
    return keras.Model({"rgb": rgb, "flow": flow}, out)


def _info(name="twostream"):
    return RunInfo(model=name, model_config={}, class_names=CLASSES, num_frames=2,
                   image_size=(8, 8), input_kind="rgb+flow")


def test_two_stream_signature_and_average_rule(tmp_path):
    model = _two_stream()
    path = export_saved_model(model, _info(), tmp_path)
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    spec = fn.structured_input_signature[1]
    assert spec["rgb"].dtype == tf.uint8 and spec["rgb"].shape.as_list() == [None] * 4 + [3]
    assert spec["flow"].dtype == tf.float32 and spec["flow"].shape.as_list() == [None] * 4 + [20]
    rgb = _clip((2, 3, 8, 10, 3), 2)
    flow = np.random.RandomState(3).uniform(-20, 20, (2, 3, 8, 10, 20)).astype("float32")
    out = fn(rgb=tf.constant(rgb), flow=tf.constant(flow))
    logits = model({"rgb": rgb.astype("float32"), "flow": flow})
    want = _softmax((logits["rgb"].numpy() + logits["flow"].numpy()) / 2)
    np.testing.assert_allclose(out["probabilities"].numpy(), want, atol=1e-5)
    # Warmup has both inputs, flow as float32 zeros.
    (record,) = [r.numpy() for r in tf.data.TFRecordDataset(str(path / WARMUP_DIR / WARMUP_FILE))]
    _, _, inputs = decode_warmup_request(record)
    assert tf.make_ndarray(inputs["flow"]).shape == (1, 2, 8, 8, 20)
    assert tf.make_ndarray(inputs["flow"]).dtype == np.float32
    again = export_saved_model(model, _info(), tmp_path, warmup=False)
    assert again == path.parent / "2" and not (again / WARMUP_DIR).exists()


def test_fused_logits_win_and_flow_hook(tmp_path):
    model = _two_stream(with_fused=True)

    def flow_fn(rgb):  # stands in for tfzoo.flow's TV-L1
        return tf.tile(tf.reduce_mean(rgb, -1, keepdims=True), [1, 1, 1, 1, 20]) / 255.0 - 0.5

    path = export_saved_model(model, _info(), tmp_path, flow_fn=flow_fn)
    sigs = tf.saved_model.load(str(path)).signatures
    assert sorted(sigs) == ["serving_default", "serving_rgb_flow"]
    assert list(sigs["serving_default"].structured_input_signature[1]) == ["rgb"]
    rgb = _clip((1, 2, 8, 8, 3), 4)
    flow = flow_fn(tf.constant(rgb, tf.float32)).numpy()
    want = _softmax(model({"rgb": rgb.astype("float32"), "flow": flow})["fused"].numpy())
    out = sigs["serving_default"](rgb=tf.constant(rgb))
    np.testing.assert_allclose(out["probabilities"].numpy(), want, atol=1e-5)
    out2 = sigs["serving_rgb_flow"](rgb=tf.constant(rgb), flow=tf.constant(flow))
    np.testing.assert_allclose(out2["probabilities"].numpy(), want, atol=1e-5)
    # A warmup request per signature.
    records = list(tf.data.TFRecordDataset(str(path / WARMUP_DIR / WARMUP_FILE)))
    assert sorted(decode_warmup_request(r.numpy())[1] for r in records) == sorted(sigs)


def test_classification_test_score_rule():
    select_logits = CLASSIFICATION.test_score
    a, b, c = (tf.constant([[float(i), 0.0]]) for i in (1, 3, 8))
    np.testing.assert_allclose(select_logits({"rgb": a, "flow": b}), [[2.0, 0.0]])
    np.testing.assert_allclose(select_logits({"rgb": a, "flow": b, "fused": c}), [[8.0, 0.0]])
    np.testing.assert_allclose(select_logits(a), [[1.0, 0.0]])


def test_bad_requests_name_the_problem(loaded, tmp_path):
    model, info = loaded
    with pytest.raises(ExportError, match=r"'\.\./evil'.*expected letters"):
        export_saved_model(model, info, tmp_path, name="../evil")
    with pytest.raises(ExportError, match=r"version=0; expected a positive integer"):
        export_saved_model(model, info, tmp_path, version=0)
    bad = RunInfo(**{**info.__dict__, "class_names": ["a", "b"]})
    with pytest.raises(ExportError, match=r"2 names but the model has 3 outputs"):
        export_saved_model(model, bad, tmp_path)
    rgb = keras.Input((None, None, None, 3), name="frames")
    extra = keras.Input((None, None, None, 20), name="motion")
    pooled = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling3D()(rgb),
                                         keras.layers.GlobalAveragePooling3D()(extra)])
    two = keras.Model([rgb, extra], keras.layers.Dense(3)(pooled))
    with pytest.raises(ExportError, match=r"\['frames', 'motion'\].*exactly the inputs 'rgb'"):
        export_saved_model(two, info, tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing created for a refused export


def test_cli_errors(model_dir, exported, tmp_path):
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    res = _run_cli(f"--model_dir={not_a_run}", f"--export_dir={tmp_path / 'out'}")
    assert res.returncode != 0
    assert f"{str(not_a_run)!r} is not a tfzoo model directory: run.json is missing" in res.stderr
    res = _run_cli(f"--model_dir={model_dir}", f"--export_dir={exported.parents[1]}", "--version=1")
    assert res.returncode != 0
    assert f"{exported} already exists; versions are never overwritten" in res.stderr
    assert not (tmp_path / "out").exists()


def test_in_graph_tvl1_flow_serves_rgb_only(tmp_path, bikes_path):
    from tfzoo.data.decode import read_video

    model = _two_stream(with_fused=True)  # flow input: 20 channels, L = 10
    info = _info()  # num_frames=2: two chunks
    path = export_saved_model(model, info, tmp_path, flow_fn="tvl1")
    sigs = tf.saved_model.load(str(path)).signatures
    assert list(sigs["serving_default"].structured_input_signature[1]) == ["rgb"]
    clip = read_video(bikes_path, num_frames=12, short_side=24)[:, :, :32]  # (12, 24, 32, 3)
    out = sigs["serving_default"](rgb=tf.constant(clip[None]))
    # The same layer in Python picks the frames and stacks the flow the model is given.
    from tfzoo.flow import TwoStreamFrames

    inputs = tf.function(TwoStreamFrames(num_chunks=2, flow_stack=10).__call__)(
        clip[None].astype(np.float32))
    assert np.abs(inputs["flow"].numpy()).mean() > 0.05
    want = _softmax(model(inputs)["fused"].numpy())
    np.testing.assert_allclose(out["probabilities"].numpy(), want, atol=1e-5)
    again = sigs["serving_rgb_flow"](rgb=tf.constant(inputs["rgb"].numpy().astype(np.uint8)),
                                     flow=inputs["flow"])
    np.testing.assert_allclose(again["probabilities"].numpy(), want, atol=1e-5)
    with pytest.raises(ExportError, match="two-stream models"):
        sm.in_graph_flow("tvl1", keras.Sequential([keras.Input((None, None, None, 3)),
                                                   keras.layers.Dense(3)]), info)
    with pytest.raises(ExportError, match="expected 'tvl1'"):
        sm.in_graph_flow("farneback", model, info)


@pytest.mark.parametrize("name", ["fusion_vgg16_conv_relu5", "stresnet50", "mulnet50_152"])
def test_registered_two_stream_models_round_trip(name, tmp_path):
    from tfzoo.registry import get_entry

    entry = get_entry(name)
    keras.utils.set_random_seed(0)
    model = tfzoo.create_model(name, num_classes=3, **entry.test_overrides)
    geometry = {"frames": 3, "size": 32, **(entry.test_input or {})}
    t, s = geometry["frames"], geometry["size"]
    info = RunInfo(model=name, model_config={}, class_names=CLASSES, num_frames=t,
                   image_size=(s, s), input_kind="rgb+flow")
    path = export_saved_model(model, info, tmp_path, warmup=False)
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    rgb = _clip((1, t, s, s, 3), 5)
    flow = np.random.RandomState(6).normal(0, 3, (1, t, s, s, 20)).astype("float32")
    out = fn(rgb=tf.constant(rgb), flow=tf.constant(flow))
    logits = model({"rgb": rgb.astype("float32"), "flow": flow})
    want = _softmax(CLASSIFICATION.test_score(logits).numpy())
    np.testing.assert_allclose(out["probabilities"].numpy(), want, atol=1e-5)
