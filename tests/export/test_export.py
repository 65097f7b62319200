"""SavedModel export: round trip without tfzoo, dynamic shapes, atomicity, warmup, bad input."""

from __future__ import annotations

import os
import socket
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
from _saved_model import SessionLoaded, warmup_requests
from _paths import REPO

CLASSES = ["biking", "surfing", "juggling"]
NUM_FRAMES, IMAGE_SIZE = 4, (32, 40)


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


@pytest.mark.e2e
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
    assert len(records) == 2  # serving_default, serving_encoded
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


def _two_stream(num_classes=3, with_fused=False, flow_channels=20):
    rgb = keras.Input((None, None, None, 3), name="rgb")
    flow = keras.Input((None, None, None, flow_channels), name="flow")

    def tower(x, prefix):
        x = keras.layers.Conv3D(4, (1, 3, 3), padding="same", name=f"{prefix}_conv")(x)
        x = keras.layers.GlobalAveragePooling3D()(x)
        return keras.layers.Dense(num_classes, name=f"{prefix}_fc")(x)

    # Inputs scaled to O(1), as real models normalise theirs, so the softmax is not saturated.
    out = {"rgb": tower(keras.layers.Rescaling(1 / 64)(rgb), "rgb"),
           "flow": tower(keras.layers.Rescaling(1 / 4)(flow), "flow")}
    if with_fused:
        out["fused"] = keras.layers.Dense(num_classes, name="fused_fc")(
            keras.layers.Concatenate()([out["rgb"], out["flow"]]))
    return keras.Model({"rgb": rgb, "flow": flow}, out)


def _info(name="twostream"):
    return RunInfo(model=name, model_config={}, class_names=CLASSES, num_frames=2,
                   image_size=(8, 8))


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
    assert sorted(sigs) == ["serving_default", "serving_encoded", "serving_rgb_flow"]
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
    with pytest.raises(ExportError, match=r"encoded_short_side=-1; expected a positive integer"):
        export_saved_model(model, info, tmp_path, encoded_short_side=-1)
    # The default encoded-frames size: the run's test_short_side, else the training crop's.
    assert sm.default_encoded_short_side(info) == min(IMAGE_SIZE)
    tested = RunInfo(**{**info.__dict__, "config": {"test_short_side": 256}})
    assert sm.default_encoded_short_side(tested) == 256
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


# --- The real consumer: TF Serving's TF1 session loader --------------------------------------


@pytest.fixture(scope="module")
def session_loaded(exported):
    loaded = SessionLoaded(exported)
    yield loaded
    loaded.close()


def _check_against_keras(out, logits, k):
    want = _softmax(np.asarray(CLASSIFICATION.test_score(logits), np.float64))
    np.testing.assert_allclose(out["probabilities"], want, atol=1e-5)
    # A saturated softmax (all but one class < 1e-5) would make the comparison meaningless.
    assert np.sort(want, axis=-1)[:, -2].max() > 1e-4, want
    np.testing.assert_array_equal(out["top_k_indices"], np.argsort(-want, axis=-1)[:, :k])


def _replay_warmup(loaded, path):
    """Runs every warmup request through the session loader, as TF Serving does at load."""
    requests = warmup_requests(path)
    assert sorted(r.model_spec.signature_name for r in requests) == sorted(loaded.signatures)
    outs = {}
    for r in requests:
        inputs = {k: tf.make_ndarray(v) for k, v in r.inputs.items()}
        out = loaded.run(r.model_spec.signature_name, **inputs)
        np.testing.assert_allclose(out["probabilities"].sum(-1), 1.0, atol=1e-5)
        outs[r.model_spec.signature_name] = (inputs, out)
    return outs


def test_session_loader_matches_keras_and_replays_warmup(loaded, exported, session_loaded):
    model, _ = loaded
    assert list(session_loaded.uninitialized) == []
    assert sorted(session_loaded.signatures) == ["serving_default", "serving_encoded"]
    clip = _clip((2, 5, 32, 44, 3), 7)
    out = session_loaded.run("serving_default", rgb=clip)
    _check_against_keras(out, model(clip.astype("float32")), k=2)
    np.testing.assert_array_equal(out["top_k_labels"].astype(str),
                                  np.array(CLASSES)[out["top_k_indices"]])
    replayed = _replay_warmup(session_loaded, exported)
    rgb = replayed["serving_default"][0]["rgb"]
    _check_against_keras(replayed["serving_default"][1], model(rgb.astype("float32")), k=2)
    # The encoded warmup frames are the same mid-grey frames as PNGs.
    np.testing.assert_allclose(replayed["serving_encoded"][1]["probabilities"],
                               replayed["serving_default"][1]["probabilities"], atol=1e-5)


def test_saved_model_cli_run(loaded, exported, tmp_path):
    model, _ = loaded
    clip = _clip((1, 4, 32, 40, 3), 8)
    np.save(tmp_path / "clip.npy", clip)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    res = subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "run",
         "--dir", str(exported), "--tag_set", "serve", "--signature_def", "serving_default",
         "--inputs", f"rgb={tmp_path / 'clip.npy'}", "--outdir", str(tmp_path / "out")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    out = {k: np.load(tmp_path / "out" / f"{k}.npy", allow_pickle=True)
           for k in ("probabilities", "top_k_indices", "top_k_labels")}
    _check_against_keras(out, model(clip.astype("float32")), k=2)
    np.testing.assert_array_equal(out["top_k_labels"].astype(str),
                                  np.array(CLASSES)[out["top_k_indices"]])


def _encode(clip, fmt, quality=90):
    enc = (lambda f: tf.io.encode_png(f)) if fmt == "png" else (
        lambda f: tf.io.encode_jpeg(f, quality=quality))
    return np.array([[enc(f).numpy() for f in c] for c in clip], dtype=object)


def test_encoded_png_equals_raw_frames(session_loaded):
    # Frames already at the export's short side (min(IMAGE_SIZE) = 32): no resize, and PNG is
    # lossless, so both signatures see the same values.
    clip = _clip((2, 4, 32, 48, 3), 9)
    raw = session_loaded.run("serving_default", rgb=clip)
    enc = session_loaded.run("serving_encoded", frames=_encode(clip, "png"))
    np.testing.assert_allclose(enc["probabilities"], raw["probabilities"], atol=1e-5)
    np.testing.assert_array_equal(enc["top_k_labels"], raw["top_k_labels"])


def test_encoded_jpeg_decodes_and_resizes_in_graph(loaded, session_loaded, bikes_path):
    from tfzoo.video import read_video

    model, _ = loaded
    smooth = read_video(bikes_path, num_frames=6, short_side=64)[:, :, :96]  # real frames
    jpeg = _encode(smooth.reshape(2, 3, 64, 96, 3), "jpeg")
    decoded = np.stack([[tf.io.decode_jpeg(f).numpy() for f in c] for c in jpeg])
    assert 0 < np.abs(decoded.astype(int) - smooth.reshape(decoded.shape)).max()  # lossy
    # 64x96 frames, short side 64 -> 32: bilinear to 32x48, as the evaluation protocol does.
    resized = tf.image.resize(decoded.reshape(6, 64, 96, 3).astype("float32"), (32, 48),
                              method="bilinear").numpy().reshape(2, 3, 32, 48, 3)
    enc = session_loaded.run("serving_encoded", frames=jpeg)
    _check_against_keras(enc, model(resized), k=2)
    # At the short side already, JPEG input equals the raw signature on the decoded frames.
    jpeg32 = _encode(smooth[:, :32, :48].reshape(2, 3, 32, 48, 3), "jpeg")
    decoded32 = np.stack([[tf.io.decode_jpeg(f).numpy() for f in c] for c in jpeg32])
    np.testing.assert_allclose(session_loaded.run("serving_encoded", frames=jpeg32)["probabilities"],
                               session_loaded.run("serving_default", rgb=decoded32)["probabilities"],
                               atol=1e-5)


def test_encoded_bad_input_names_the_frame(session_loaded):
    good = _encode(_clip((1, 2, 32, 40, 3), 11), "png")
    small = tf.io.encode_png(_clip((16, 40, 3), 12)).numpy()
    huge = tf.io.encode_png(np.zeros((5000, 40, 3), np.uint8)).numpy()  # refused before decoding
    wide = tf.io.encode_jpeg(np.zeros((40, 4097, 3), np.uint8)).numpy()
    cases = {
        "not a JPEG or PNG": np.array([[good[0, 0], b"GIF89a..."]], dtype=object),
        "has shape.*0 2.*expected \\(B, T\\) encoded frames": np.zeros((0, 2), dtype=object),
        "is\\] \\[5000 40\\] \\[pixels.*at most 4096": np.array([[huge]], dtype=object),
        "is\\] \\[40 4097\\] \\[pixels.*at most 4096": np.array([[wide]], dtype=object),
        "\\[0\\] \\[1\\] \\[has height, width\\] \\[16 40\\] \\[but frames\\[0, 0\\] has\\] \\[32 40\\]":
            np.array([[good[0, 0], small]], dtype=object),
    }
    for message, frames in cases.items():
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            session_loaded.run("serving_encoded", frames=frames)


def _bikes_clip(bikes_path, frames=16, size=224):
    from tfzoo.video import read_video

    video = read_video(bikes_path, num_frames=frames, short_side=size)
    left = (video.shape[2] - size) // 2
    return video[:, :, left:left + size]


def test_encoded_request_of_a_real_clip_fits_grpc_limit(loaded, session_loaded, bikes_path):
    import cv2
    from tensorflow_serving.apis import predict_pb2

    model, _ = loaded
    clip = _bikes_clip(bikes_path)  # (16, 224, 224, 3) uint8
    jpeg = [cv2.imencode(".jpg", f[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
            for f in clip]

    def request(signature, key, tensor):
        r = predict_pb2.PredictRequest()
        r.model_spec.name, r.model_spec.signature_name = "tresnet_small", signature
        r.inputs[key].CopyFrom(tensor)
        return r

    raw = request("serving_default", "rgb", tf.make_tensor_proto(clip[None]))
    encoded = request("serving_encoded", "frames", tf.make_tensor_proto([jpeg], dtype=tf.string))
    assert raw.ByteSize() > 16 * 224 * 224 * 3  # 2.4 MB: near the 4 MB default limit
    assert encoded.ByteSize() < 1_000_000 and encoded.ByteSize() < raw.ByteSize() / 4
    # The request runs: JPEG decoded in the graph, 224 -> 32 (the export's short side).
    out = session_loaded.run("serving_encoded", frames=tf.make_ndarray(encoded.inputs["frames"]))
    decoded = np.stack([cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
                        for j in jpeg])
    resized = tf.image.resize(decoded.astype("float32"), (32, 32), method="bilinear").numpy()
    # OpenCV's libjpeg and TensorFlow's may round chroma differently: a looser tolerance.
    want = _softmax(model(resized[None]).numpy().astype(np.float64))
    np.testing.assert_allclose(out["probabilities"], want, atol=2e-3)


def _doc_block(marker):
    """The ```python block of docs/serving.md that contains `marker`."""
    text = (REPO / "docs" / "serving.md").read_text()
    blocks = text.split("```python\n")[1:]
    found = [b.split("```")[0] for b in blocks if marker in b.split("```")[0]]
    assert len(found) == 1, f"docs/serving.md: expected one python block with {marker!r}"
    return found[0]


def test_docs_encoded_examples_build_valid_requests(session_loaded, bikes_path):
    import base64
    import json

    frames = _bikes_clip(bikes_path, frames=4, size=64)
    # gRPC: the documented request, run through the session loader.
    scope = {"frames": frames}
    exec(_doc_block("# build an encoded-frames PredictRequest"), scope)
    request = scope["request"]
    assert request.model_spec.signature_name == "serving_encoded"
    grpc_out = session_loaded.run("serving_encoded",
                                  frames=tf.make_ndarray(request.inputs["frames"]))
    # REST: the documented JSON body; TF Serving decodes {"b64": ...} into the string tensor.
    scope = {"frames": frames}
    exec(_doc_block("# build an encoded-frames REST body"), scope)
    body = json.loads(scope["body"])
    assert body["signature_name"] == "serving_encoded"
    (instance,) = body["instances"]
    strings = np.array([[base64.b64decode(f["b64"]) for f in instance["frames"]]], dtype=object)
    rest_out = session_loaded.run("serving_encoded", frames=strings)
    np.testing.assert_allclose(rest_out["probabilities"], grpc_out["probabilities"], atol=1e-6)


# Every registered classifier family (models grouped by the class that builds them), tiny;
# detectors (video frames in, boxes out) are exported in tests/models/test_rfcn.py.
def _families():
    from tfzoo.registry import get_entry

    first = {}
    for name in tfzoo.list_models(task="classification"):
        first.setdefault(get_entry(name).builder, name)
    return sorted(first.values())


# The two-stream family, VGG towers and the frame-wise ResNet in make test; MulNet and T-ResNet
# (15 and 9 s of CPU) in make test-e2e.
E2E_FAMILIES = ("mulnet50", "tresnet101")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.e2e) if n in E2E_FAMILIES
                                  else n for n in _families()])
def test_every_family_runs_in_the_session_loader(name, tmp_path):
    from tfzoo.registry import get_entry

    entry = get_entry(name)
    keras.utils.set_random_seed(0)
    model = tfzoo.create_model(name, num_classes=3, **(entry.test_overrides or {}))
    geometry = {"frames": 3, "size": 32, **(entry.test_input or {})}
    t, s = geometry["frames"], geometry["size"]
    info = RunInfo(model=name, model_config={}, class_names=CLASSES, num_frames=t,
                   image_size=(s, s))
    path = export_saved_model(model, info, tmp_path)
    feeds = {}
    for spec in model.inputs:
        if spec.shape[-1] == 3:
            feeds["rgb"] = _clip((2, t, s, s + 8, 3), 5)
        else:
            feeds["flow"] = np.random.RandomState(6).normal(
                0, 3, (2, t, s, s + 8, spec.shape[-1])).astype("float32")
    keras_in = {k: v.astype("float32") for k, v in feeds.items()}
    logits = model(keras_in if len(keras_in) > 1 else next(iter(keras_in.values())))
    loaded = SessionLoaded(path)
    try:
        assert list(loaded.uninitialized) == []
        _check_against_keras(loaded.run("serving_default", **feeds), logits, k=3)
        _replay_warmup(loaded, path)
        # RGB-only models also take encoded frames; two-stream models only with in-graph flow.
        assert ("serving_encoded" in loaded.signatures) == (sorted(feeds) == ["rgb"])
    finally:
        loaded.close()


@pytest.mark.e2e
def test_in_graph_flow_runs_in_the_session_loader(tmp_path, bikes_path):
    from tfzoo.flow import TwoStreamFrames

    model = _two_stream(with_fused=True, flow_channels=4)  # flow input: L = 2 fields
    info = _info()  # num_frames=2: two chunks
    # What flow_fn="tvl1" builds (`sm.in_graph_flow`), with a cheap TV-L1 for the test.
    flow_fn = TwoStreamFrames(num_chunks=2, flow_stack=2,
                              flow_params=dict(iterations=5, warps=1, max_scales=2))
    default = sm.in_graph_flow("tvl1", model, info)
    assert (default.num_chunks, default.flow_stack, default.method) == (2, 2, "tvl1")
    path = export_saved_model(model, info, tmp_path, flow_fn=flow_fn, encoded_short_side=24)
    clip = _bikes_clip(bikes_path, frames=6, size=24)[None]  # (1, 6, 24, 24, 3)
    inputs = tf.function(flow_fn.__call__)(clip.astype(np.float32))
    assert np.abs(inputs["flow"].numpy()).mean() > 0.05
    logits = model(inputs)
    loaded = SessionLoaded(path)
    try:
        assert list(loaded.uninitialized) == []
        assert sorted(loaded.signatures) == ["serving_default", "serving_encoded",
                                             "serving_rgb_flow"]
        out = loaded.run("serving_default", rgb=clip)
        _check_against_keras(out, logits, k=3)
        both = loaded.run("serving_rgb_flow", rgb=inputs["rgb"].numpy().astype(np.uint8),
                          flow=inputs["flow"].numpy())
        np.testing.assert_allclose(both["probabilities"], out["probabilities"], atol=1e-5)
        # Encoded frames: flow computed from the decoded frames (PNG: the same values).
        enc = loaded.run("serving_encoded", frames=_encode(clip, "png"))
        np.testing.assert_allclose(enc["probabilities"], out["probabilities"], atol=1e-5)
        _replay_warmup(loaded, path)
    finally:
        loaded.close()
    with pytest.raises(ExportError, match="two-stream models"):
        sm.in_graph_flow("tvl1", keras.Sequential([keras.Input((None, None, None, 3)),
                                                   keras.layers.Dense(3)]), info)
    with pytest.raises(ExportError, match="expected 'tvl1'"):
        sm.in_graph_flow("farneback", model, info)


_HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def test_stale_temporaries_are_removed(loaded, tmp_path):
    """Issue 24 item 8: liveness is the exporter's lock on its temporary directory, not a
    hostname + pid (another container can share both): a live export whose name carries this
    host and a pid that no longer runs here is kept, a killed one (lock free) is removed."""
    model, info = loaded
    base = tmp_path / "tresnet_small"
    base.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    host = socket.gethostname()
    # Written by a live export in another container that has the same host name and whose pid
    # does not run here: its lock is held (by a process standing in for it).
    live = base / f".tmp-export-4-{host}-{dead}-def456"
    killed = base / ".tmp-export-3-0a1b2c3d4e5f"  # its exporter ended: the lock is free
    legacy_old = base / ".tmp-export-5-otherhost-1-ghi789"  # no lock file: by age
    legacy_new = base / ".tmp-export-6-otherhost-1-jkl012"
    for d in (live, killed, legacy_old, legacy_new):
        (d / "variables").mkdir(parents=True)
    killed.with_name(killed.name + ".lock").touch()
    old = legacy_old.stat().st_mtime - sm.STALE_AFTER_SECONDS - 60
    os.utime(legacy_old, (old, old))
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(base / (live.name + ".lock"))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        path = export_saved_model(model, info, tmp_path, warmup=False)
        assert path == base / "1"
        assert sorted(p.name for p in base.iterdir()) == sorted(
            ["1", live.name, live.name + ".lock", legacy_new.name])
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    # The live export's process ended without renaming its directory: the next export removes it.
    assert export_saved_model(model, info, tmp_path, warmup=False) == base / "2"
    assert sorted(p.name for p in base.iterdir()) == sorted(["1", "2", legacy_new.name])
