"""The dev server against TF Serving's clients and rules, the client, the shipped configs.

The server is driven through the official `tensorflow_serving.apis` gRPC stubs and plain HTTP;
answers are compared with the SavedModel called through `tf.saved_model.load` (a different
loader from the server's TF1 session loader).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import av
import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

import tfzoo
from export.saved_model import export_saved_model
from serving import cli, client, dev_server, protos
from serving.batching import BatchOptions
from serving.models import ModelConfig, ModelManager
from tfzoo.rundir import RunInfo
from _serving_models import start_servers
from _paths import REPO

CLASSES = ["biking", "surfing", "juggling"]


@pytest.fixture(scope="module")
def export_base(tmp_path_factory):
    keras.utils.set_random_seed(2)
    model = tfzoo.create_model("tresnet_small", num_classes=3, blocks=(1, 1, 1, 1), width=8)
    info = RunInfo(model="tresnet_small", model_config=model.get_config(), class_names=CLASSES,
                   num_frames=4, image_size=(32, 32))
    base = tmp_path_factory.mktemp("models")
    export_saved_model(model, info, base, version=1, top_k=3)
    return base


@pytest.fixture(scope="module")
def loaded(export_base):
    return tf.saved_model.load(str(export_base / "tresnet_small" / "1"))


@pytest.fixture(scope="module")
def direct(loaded):
    """The SavedModel called through tf.saved_model.load: what every answer must equal."""
    fn = loaded.signatures["serving_default"]

    def run(clip):
        return {k: v.numpy() for k, v in fn(rgb=tf.constant(clip)).items()}

    return run


@pytest.fixture(scope="module")
def servers(export_base):
    logs = []
    manager = ModelManager([ModelConfig("tresnet_small", export_base / "tresnet_small")],
                           log=logs.append)
    manager.poll()
    assert logs == [f"loaded tresnet_small version 1 from {export_base / 'tresnet_small' / '1'} "
                    "(2 warmup requests replayed)"]  # serving_default and serving_encoded
    url, target, stop = start_servers(manager)
    yield url, target
    stop()
    manager.close()


@pytest.fixture(scope="module")
def url(servers):
    return servers[0]


def _call(url, path, payload=None, raw: bytes | None = None, method=None):
    data = raw if raw is not None else (None if payload is None else json.dumps(payload).encode())
    req = urllib.request.Request(url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _clip(shape, seed):
    return np.random.RandomState(seed).randint(0, 256, shape).astype(np.uint8)


def test_status_and_metadata_as_tf_serving(url):
    assert _call(url, "/v1/models/tresnet_small") == (200, {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})
    status, meta = _call(url, "/v1/models/tresnet_small/versions/1/metadata")
    assert status == 200
    assert meta["model_spec"] == {"name": "tresnet_small", "signature_name": "", "version": "1"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    # The graph's tensor names, as TF Serving reports them (clients may feed by them).
    assert sig["inputs"]["rgb"]["name"] == "serving_default_rgb:0"
    assert sig["inputs"]["rgb"]["dtype"] == "DT_UINT8"
    assert [d["size"] for d in sig["inputs"]["rgb"]["tensor_shape"]["dim"]] == ["-1"] * 4 + ["3"]
    assert sorted(sig["outputs"]) == ["probabilities", "top_k_indices", "top_k_labels"]
    assert all(o["name"].startswith("StatefulPartitionedCall") for o in sig["outputs"].values())
    assert sig["method_name"] == "tensorflow/serving/predict"


def test_predict_columnar_and_row_formats_equal_direct_call(url, direct):
    clip = _clip((2, 3, 24, 32, 3), 0)
    want = direct(clip)
    status, reply = _call(url, "/v1/models/tresnet_small:predict",
                          {"signature_name": "serving_default", "inputs": {"rgb": clip.tolist()}})
    assert status == 200, reply
    out = reply["outputs"]
    # JSON carries float32 values exactly (shortest round-trip repr); the two loaders agree to
    # float rounding.
    np.testing.assert_allclose(np.float32(out["probabilities"]), want["probabilities"], atol=1e-6)
    np.testing.assert_array_equal(out["top_k_indices"], want["top_k_indices"])
    assert out["top_k_labels"] == want["top_k_labels"].astype(str).tolist()
    assert out["top_k_labels"][0] == [CLASSES[i] for i in want["top_k_indices"][0]]

    status, reply = _call(url, "/v1/models/tresnet_small/versions/1:predict",
                          {"instances": [clip[0].tolist(), clip[1].tolist()]})
    assert status == 200, reply
    rows = reply["predictions"]
    assert len(rows) == 2
    for i, row in enumerate(rows):
        np.testing.assert_allclose(np.float32(row["probabilities"]), want["probabilities"][i],
                                   atol=1e-6)
        assert row["top_k_labels"] == want["top_k_labels"][i].astype(str).tolist()
    status, named = _call(url, "/v1/models/tresnet_small:predict",
                          {"instances": [{"rgb": clip[0].tolist()}, {"rgb": clip[1].tolist()}]})
    assert status == 200 and named == reply


def test_official_grpc_stubs(servers, direct):
    _, target = servers
    clip = _clip((1, 2, 16, 16, 3), 3)
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "tresnet_small"
        request.inputs["rgb"].CopyFrom(tf.make_tensor_proto(clip))
        response = stub.Predict(request, timeout=60)
        assert (response.model_spec.name, response.model_spec.version.value,
                response.model_spec.signature_name) == ("tresnet_small", 1, "serving_default")
        want = direct(clip)
        np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]),
                                   want["probabilities"], atol=1e-6)
        np.testing.assert_array_equal(tf.make_ndarray(response.outputs["top_k_labels"]),
                                      want["top_k_labels"])
        request.output_filter.append("top_k_indices")
        assert list(stub.Predict(request, timeout=60).outputs) == ["top_k_indices"]

        meta = stub.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec={"name": "tresnet_small"}, metadata_field=["signature_def"]), timeout=10)
        sigs = get_model_metadata_pb2.SignatureDefMap()
        assert meta.metadata["signature_def"].Unpack(sigs)
        assert sigs.signature_def["serving_default"].inputs["rgb"].name == "serving_default_rgb:0"

        status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "tresnet_small"}),
            timeout=10)
        (v,) = status.model_version_status
        assert (v.version, v.state) == (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)

        # TF Serving's status codes: unknown model NOT_FOUND, a bad input INVALID_ARGUMENT.
        bad = predict_pb2.PredictRequest(model_spec={"name": "nope"})
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(bad, timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        assert "Servable not found for request: Latest(nope)" in e.value.details()
        bad = predict_pb2.PredictRequest(model_spec={"name": "tresnet_small"})
        bad.inputs["rgb"].CopyFrom(tf.make_tensor_proto(clip.astype(np.float32)))
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(bad, timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Expects arg to be uint8 but float32 is provided" in e.value.details()


# One row per TF Serving rule where a looser server would accept or answer differently.
@pytest.mark.parametrize(
    "method, path, body, status, message",
    [
        ("POST", "/v1/models/tresnet_small:predict", b"{not json", 400, "not valid JSON"),
        ("POST", "/v1/models/tresnet_small:predict", b"[1, 2]", 400,
         "is a JSON list; expected an object"),
        ("POST", "/v1/models/tresnet_small:predict", {"instances": [], "inputs": []}, 400,
         "exactly one of 'instances' (row format) or 'inputs'"),
        ("POST", "/v1/models/tresnet_small:predict",
         {"inputs": np.zeros((1, 2, 8, 8, 4), int).tolist()}, 400,
         "input 'rgb': got shape (1, 2, 8, 8, 4); signature 'serving_default' expects "
         "(?, ?, ?, ?, 3)"),
        ("POST", "/v1/models/tresnet_small:predict",
         {"inputs": np.full((1, 2, 8, 8, 3), 300).tolist()}, 400,
         "values span [300, 300]; uint8 holds [0, 255]"),
        # TF Serving refuses JSON floats for integer tensors, even integral ones such as 1.0.
        ("POST", "/v1/models/tresnet_small:predict",
         {"inputs": np.full((1, 2, 8, 8, 3), 0.5).tolist()}, 400,
         "JSON Value: 0.5 is a float; a uint8 input takes JSON integers only"),
        ("POST", "/v1/models/tresnet_small:predict",
         {"inputs": np.full((1, 2, 8, 8, 3), 1.0).tolist()}, 400,
         "JSON Value: 1.0 is a float; a uint8 input takes JSON integers only"),
        ("POST", "/v1/models/tresnet_small:predict", {"inputs": [[[[[True, False, True]]]]]}, 400,
         "got true/false; expected uint8 numbers"),
        ("POST", "/v1/models/tresnet_small:predict", {"inputs": [[[[[1, 2, 3]]], [[[1, 2]]]]]},
         400, "the nested lists are ragged"),
        ("POST", "/v1/models/tresnet_small:predict", {"inputs": {"video": [[[[[1, 2, 3]]]]]}},
         400, "missing ['rgb'], unexpected ['video']"),
        ("POST", "/v1/models/tresnet_small:predict",
         {"instances": [[[[[1, 2, 3]]]]], "signature_name": "x"}, 400,
         'Serving signature name: "x" not found in signature def'),
        ("POST", "/v1/models/tresnet_small:predict",
         {"instances": [np.zeros((2, 8, 8, 3), int).tolist(),
                        np.zeros((3, 8, 8, 3), int).tolist()]}, 400,
         "instances have different shapes"),
        ("POST", "/v1/models/nope:predict", {"instances": [1]}, 404,
         "Servable not found for request: Latest(nope)"),
        ("POST", "/v1/models/tresnet_small/versions/7:predict", {"instances": [1]}, 404,
         "Servable not found for request: Specific(tresnet_small, 7)"),
        ("GET", "/v1/models/tresnet_small/versions/7", None, 404,
         "Could not find version 7 of model tresnet_small"),
        ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
        ("GET", "/v1/models/nope/metadata", None, 404,
         "Servable not found for request: Latest(nope)"),
        # Malformed paths are INVALID_ARGUMENT (400) in TF Serving, not 404.
        ("POST", "/v1/models/tresnet_small:explode", {"instances": [1]}, 400,
         "Malformed request: POST /v1/models/tresnet_small:explode"),
        ("POST", "/v1/models/tresnet_small/versions/x1:predict", {"instances": [1]}, 400,
         "Malformed request"),
        ("GET", "/v1/models", None, 400, "Missing model name in request."),
        ("POST", "/v1/models/tresnet_small/labels/stable:predict", {"instances": [1]}, 400,
         "Unrecognized servable version label: stable"),
        ("POST", "/v1/models/tresnet_small:regress", {"instances": [1]}, 400,
         "regress is not supported"),
        ("GET", "/v2/models/tresnet_small", None, 404, "the REST API is under /v1/models"),
        ("PUT", "/v1/models/tresnet_small", b"", 400, "Malformed request: PUT"),
    ],
)
def test_malformed_requests_get_tf_serving_errors(url, method, path, body, status, message):
    raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    got_status, reply = _call(url, path, raw=raw, method=method)
    assert got_status == status, reply
    assert list(reply) == ["error"] and message in reply["error"], reply["error"]


def test_sample_frames_are_equally_spaced_decoded_frames(bikes_path):
    frames = client.sample_frames(bikes_path, num_frames=3, short_side=0)
    with av.open(str(bikes_path)) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(decoded) == 250
    np.testing.assert_array_equal(frames, np.stack([decoded[0], decoded[124], decoded[249]]))
    small = client.sample_frames(bikes_path, num_frames=2, short_side=34)
    assert small.shape == (2, 34, 80, 3) and small.dtype == np.uint8


def test_client_rest_and_grpc_against_dev_server(servers, direct, bikes_path, capsys):
    url, target = servers
    frames = client.sample_frames(bikes_path, num_frames=4, short_side=32)
    want = direct(frames[None])
    assert client.signature_inputs(url, "tresnet_small", timeout=10) == ["rgb"]
    for got in (client.predict_rest(url, "tresnet_small", {"rgb": frames[None]}, timeout=30),
                client.predict_grpc(target, "tresnet_small", {"rgb": frames[None]}, timeout=30,
                                    version=1)):
        np.testing.assert_allclose(got["probabilities"].astype(np.float32),
                                   want["probabilities"], atol=1e-6)
        np.testing.assert_array_equal(got["top_k_indices"], want["top_k_indices"])

    for where in (["--url", url], ["--grpc", target]):
        client.main(where + ["--model", "tresnet_small", "--video", str(bikes_path),
                             "--num_frames", "4", "--short_side", "32", "--timeout", "30",
                             "--frames", "raw"])
        lines = capsys.readouterr().out.strip().splitlines()
        # It says what it classified (issue 24 item 12): one clip over the whole video.
        assert ": one clip of 4 frames equally spaced over the whole video, 32x75, sent as raw " \
            "frames" in lines[0]
        labels = [ln.split()[0] for ln in lines[1:]]
        probs = [float(ln.split()[1]) for ln in lines[1:]]
        assert labels == want["top_k_labels"][0].astype(str).tolist()
        np.testing.assert_allclose(probs, want["probabilities"][0][want["top_k_indices"][0]],
                                   atol=1e-4)

    with pytest.raises(client.ServingError, match=r"HTTP 404: Servable not found"):
        client.predict_rest(url, "missing", {"rgb": frames[None]}, timeout=10)
    with pytest.raises(client.ServingError, match=r"NOT_FOUND: Servable not found"):
        client.predict_grpc(target, "missing", {"rgb": frames[None]}, timeout=10)


def test_shipped_configs_parse_with_tf_serving_protos_and_the_dev_server_accepts_them(tmp_path):
    config = protos.parse_text_file(REPO / "serving" / "models.config",
                                    protos.model_server_config(), "--model_config_file")
    models = config.model_config_list.config
    assert [c.name for c in models] == ["tresnet50", "tresnet_small"]
    assert models[0].model_version_policy.latest.num_versions == 1
    assert dict(models[1].version_labels) == {"stable": 1, "canary": 2}
    # Same files the docker command mounts: they point into /models.
    assert all(c.base_path == f"/models/{c.name}" for c in models)

    batching = protos.parse_text_file(REPO / "serving" / "batching.config",
                                      protos.BatchingParameters(), "--batching_parameters_file")
    assert batching.DESCRIPTOR.full_name == "tensorflow.serving.BatchingParameters"
    options = BatchOptions.from_proto(batching)
    assert options.max_batch_size == batching.max_batch_size.value == 8
    assert list(options.allowed_batch_sizes) == [1, 2, 4, 8]
    assert options.batch_timeout_micros == 0  # TF Serving's advice for CPUs (docs/serving.md)

    monitoring = protos.parse_text_file(REPO / "serving" / "monitoring.config",
                                        protos.MonitoringConfig(), "--monitoring_config_file")
    assert monitoring.prometheus_config.enable
    assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"

    # The dev server reads the same files through the same flags as tensorflow_model_server.
    args = cli.parse(dev_server.define_flags, "dev_server", [
        f"--model_config_file={REPO / 'serving' / 'models.config'}", "--enable_batching",
        f"--batching_parameters_file={REPO / 'serving' / 'batching.config'}",
        f"--monitoring_config_file={REPO / 'serving' / 'monitoring.config'}",
        "--allow_version_labels_for_unavailable_models"])
    configs = dev_server.configs_from_flags(args)
    assert [(c.name, str(c.base_path), c.policy) for c in configs] == [
        ("tresnet50", "/models/tresnet50", ("latest", 1)),
        ("tresnet_small", "/models/tresnet_small", ("specific", frozenset({1, 2})))]
    assert dev_server.batching_from_flags(args) == options
    assert dev_server.prometheus_path_from_flags(args) == "/monitoring/prometheus/metrics"

    bad = tmp_path / "bad.config"
    bad.write_text("max_batch_size: 8\n")  # not a wrapper message
    with pytest.raises(ValueError, match=r"--batching_parameters_file=.*not a text-format "
                                         r"tensorflow.serving.BatchingParameters"):
        protos.parse_text_file(bad, protos.BatchingParameters(), "--batching_parameters_file")


def test_client_sends_jpeg_frames_to_the_exports_encoded_signature(servers, loaded, bikes_path,
                                                                    capsys):
    url, target = servers
    frames = client.sample_frames(bikes_path, num_frames=4, short_side=32)
    encoded = client.encode_jpeg(frames)
    # What the export's own signature answers for exactly these bytes.
    want = {k: v.numpy() for k, v in loaded.signatures[client.ENCODED_SIGNATURE](
        **{client.ENCODED_INPUT: tf.constant([encoded])}).items()}
    for where in (["--url", url], ["--grpc", target]):
        client.main(where + ["--model", "tresnet_small", "--video", str(bikes_path),
                             "--num_frames", "4", "--short_side", "32", "--timeout", "30"])
        lines = capsys.readouterr().out.strip().splitlines()
        assert [ln.split()[0] for ln in lines[1:]] == want["top_k_labels"][0].astype(str).tolist()
        np.testing.assert_allclose([float(ln.split()[1]) for ln in lines[1:]],
                                   want["probabilities"][0][want["top_k_indices"][0]], atol=1e-4)
