"""The protocol-compatible dev server, the REST client and the example serving config."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import av
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfzoo
from export.saved_model import export_saved_model
from export.warmup import have_serving_api
from serving import client
from serving.dev_server import ModelServer, make_http_server
from tfzoo.rundir import RunInfo

CLASSES = ["biking", "surfing", "juggling"]
REPO = Path(__file__).resolve().parents[1]


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
def direct(export_base):
    """The SavedModel called directly: what every server answer must equal."""
    fn = tf.saved_model.load(str(export_base / "tresnet_small" / "1")).signatures["serving_default"]

    def run(clip):
        return {k: v.numpy() for k, v in fn(rgb=tf.constant(clip)).items()}

    return run


@pytest.fixture(scope="module")
def url(export_base):
    logs = []
    server = ModelServer(export_base, warmup=True, log=logs.append)
    assert logs == [f"loaded tresnet_small version 1 from {export_base / 'tresnet_small' / '1'} "
                    "(1 warmup request replayed)"]
    httpd = make_http_server(server, "127.0.0.1", 0, quiet=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    yield f"http://{host}:{port}"
    httpd.shutdown()
    httpd.server_close()


def _call(url, path, payload=None, raw: bytes | None = None):
    data = raw if raw is not None else (None if payload is None else json.dumps(payload).encode())
    req = urllib.request.Request(url + path, data=data)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _clip(shape, seed):
    return np.random.RandomState(seed).randint(0, 256, shape).astype(np.uint8)


def test_status_and_metadata(url):
    assert _call(url, "/v1/models/tresnet_small") == (200, {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})
    status, meta = _call(url, "/v1/models/tresnet_small/versions/1/metadata")
    assert status == 200 and meta["model_spec"]["version"] == "1"
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["rgb"]["dtype"] == "DT_UINT8"
    assert [d["size"] for d in sig["inputs"]["rgb"]["tensor_shape"]["dim"]] == ["-1"] * 4 + ["3"]
    assert sorted(sig["outputs"]) == ["probabilities", "top_k_indices", "top_k_labels"]


def test_predict_columnar_and_row_formats_equal_direct_call(url, direct):
    clip = _clip((2, 3, 24, 32, 3), 0)
    want = direct(clip)
    status, reply = _call(url, "/v1/models/tresnet_small:predict",
                          {"signature_name": "serving_default", "inputs": {"rgb": clip.tolist()}})
    assert status == 200, reply
    out = reply["outputs"]
    # JSON carries float32 values exactly (shortest round-trip repr), so equality is exact.
    np.testing.assert_array_equal(np.float32(out["probabilities"]), want["probabilities"])
    np.testing.assert_array_equal(out["top_k_indices"], want["top_k_indices"])
    assert out["top_k_labels"] == want["top_k_labels"].astype(str).tolist()
    assert out["top_k_labels"][0] == [CLASSES[i] for i in want["top_k_indices"][0]]

    # Row format, bare instances (single-input signature), via an explicit version.
    status, reply = _call(url, "/v1/models/tresnet_small/versions/1:predict",
                          {"instances": [clip[0].tolist(), clip[1].tolist()]})
    assert status == 200, reply
    rows = reply["predictions"]
    assert len(rows) == 2
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(np.float32(row["probabilities"]), want["probabilities"][i])
        assert row["top_k_labels"] == want["top_k_labels"][i].astype(str).tolist()
    # Named instances are the same request.
    status, named = _call(url, "/v1/models/tresnet_small:predict",
                          {"instances": [{"rgb": clip[0].tolist()}, {"rgb": clip[1].tolist()}]})
    assert status == 200 and named == reply


@pytest.mark.parametrize(
    "path, body, status, message",
    [
        ("/v1/models/tresnet_small:predict", b"{not json", 400, "not valid JSON"),
        ("/v1/models/tresnet_small:predict", b"[1, 2]", 400, "is a JSON list; expected an object"),
        ("/v1/models/tresnet_small:predict", {"instances": [], "inputs": []}, 400,
         "exactly one of 'instances' (row format) or 'inputs'"),
        ("/v1/models/tresnet_small:predict", {"inputs": np.zeros((1, 2, 8, 8, 4), int).tolist()},
         400, "input 'rgb': got shape (1, 2, 8, 8, 4); expected (?, ?, ?, ?, 3)"),
        ("/v1/models/tresnet_small:predict", {"inputs": np.full((1, 2, 8, 8, 3), 300).tolist()},
         400, "values span [300, 300]; uint8 expects [0, 255]"),
        ("/v1/models/tresnet_small:predict", {"inputs": np.full((1, 2, 8, 8, 3), 0.5).tolist()},
         400, "got non-integer values; expected integers for uint8"),
        ("/v1/models/tresnet_small:predict", {"inputs": [[[[[1, 2, 3]]], [[[1, 2]]]]]}, 400,
         "the nested lists are ragged"),
        ("/v1/models/tresnet_small:predict", {"inputs": {"video": [[[[[1, 2, 3]]]]]}}, 400,
         "got a JSON object (keys ['video'])"),
        ("/v1/models/tresnet_small:predict", {"instances": [[[[[1, 2, 3]]]]], "signature_name": "x"},
         400, "signature_name 'x' not found; this model has ['serving_default']"),
        ("/v1/models/tresnet_small:predict",
         {"instances": [np.zeros((2, 8, 8, 3), int).tolist(), np.zeros((3, 8, 8, 3), int).tolist()]},
         400, "instances have different shapes"),
        ("/v1/models/nope:predict", {"instances": [1]}, 404, "Servable not found for request: Latest(nope)"),
        ("/v1/models/tresnet_small/versions/7:predict", {"instances": [1]}, 404,
         "Specific(tresnet_small, 7); version 1 is the one loaded"),
        ("/v1/models/tresnet_small:explode", {"instances": [1]}, 404, "Malformed request: POST"),
    ],
)
def test_malformed_requests_get_clear_errors(url, path, body, status, message):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    got_status, reply = _call(url, path, raw=raw)
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


def test_client_against_dev_server(url, direct, bikes_path, capsys):
    frames = client.sample_frames(bikes_path, num_frames=4, short_side=32)
    want = direct(frames[None])
    assert client.signature_inputs(url, "tresnet_small") == ["rgb"]
    got = client.predict_rest(url, "tresnet_small", {"rgb": frames[None]})
    np.testing.assert_array_equal(got["probabilities"].astype(np.float32), want["probabilities"])
    np.testing.assert_array_equal(got["top_k_indices"], want["top_k_indices"])

    client.main(["--url", url, "--model", "tresnet_small", "--video", str(bikes_path),
                 "--num_frames", "4", "--short_side", "32"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].endswith("4 frames of 32x75")
    labels = [ln.split()[0] for ln in lines[1:]]
    probs = [float(ln.split()[1]) for ln in lines[1:]]
    assert labels == want["top_k_labels"][0].astype(str).tolist()
    np.testing.assert_allclose(probs, want["probabilities"][0][want["top_k_indices"][0]], atol=1e-4)

    with pytest.raises(client.ServingError, match=r"HTTP 404: Servable not found"):
        client.predict_rest(url, "missing", {"rgb": frames[None]})


@pytest.mark.skipif(not have_serving_api(), reason="tensorflow-serving-api not installed")
def test_models_config_parses():
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = text_format.Parse((REPO / "serving" / "models.config").read_text(),
                               model_server_config_pb2.ModelServerConfig())
    names = [c.name for c in config.model_config_list.config]
    assert names == ["tresnet50", "tresnet_small"]
    assert config.model_config_list.config[0].model_version_policy.latest.num_versions == 1


@pytest.mark.skipif(not have_serving_api(), reason="tensorflow-serving-api not installed")
def test_grpc_client_request(export_base, direct, bikes_path):
    # No TF Serving binary here: a stand-in PredictionService on loopback checks what the gRPC
    # client sends (model spec, uint8 TensorProto) and that it decodes the reply.
    from concurrent import futures

    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from serving.dev_server import Servable

    servable = Servable("tresnet_small", 1, export_base / "tresnet_small" / "1")
    seen = []

    class Service(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            seen.append(request)
            arrays = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            reply = predict_pb2.PredictResponse()
            for k, v in servable.run(request.model_spec.signature_name, arrays).items():
                reply.outputs[k].CopyFrom(tf.make_tensor_proto(v))
            return reply

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        frames = client.sample_frames(bikes_path, num_frames=2, short_side=32)[None]
        got = client.predict_grpc(f"127.0.0.1:{port}", "tresnet_small", {"rgb": frames}, version=1)
    finally:
        server.stop(None)
    (request,) = seen
    assert (request.model_spec.name, request.model_spec.version.value) == ("tresnet_small", 1)
    assert request.model_spec.signature_name == "serving_default"
    assert request.inputs["rgb"].dtype == tf.uint8.as_datatype_enum
    want = direct(frames)
    np.testing.assert_array_equal(got["probabilities"], want["probabilities"])
    np.testing.assert_array_equal(got["top_k_labels"], want["top_k_labels"])
