"""The dev server under abuse: fuzzing, stalled and giant requests, version swaps under load,
batching, labels, failed warmups. Uses a tiny SavedModel (tests/_serving_models.py) so each
test takes seconds; `python -m serving.loadtest` gives the real figures (docs/serving.md).
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (get_model_status_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from serving import client, loadtest
from serving.batching import BatchOptions
from serving.models import ModelConfig, ModelManager
from serving.rest import RestApi, make_http_server
from _serving_models import reference, write_tiny_version
from _serving_models import start_servers
from _paths import REPO

STATE = get_model_status_pb2.ModelVersionStatus


def _clip(batch=1, seed=0, t=2, size=4):
    return np.random.RandomState(seed).randint(0, 256, (batch, t, size, size, 3)).astype(np.uint8)


def _post(url, path, payload, timeout=30):
    req = urllib.request.Request(url + path, data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _raw(url, data: bytes, *, shut_write=False, timeout=10) -> tuple[int, dict]:
    """Sends raw bytes; returns (status, JSON body). Fails on a dropped connection or non-JSON."""
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(data)
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = s.recv(65536)
            assert chunk, f"connection closed without an HTTP reply to {data[:80]!r}"
            reply += chunk
        head, body = reply.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
        n = int(headers["content-length"])
        while len(body) < n:
            chunk = s.recv(65536)
            assert chunk, "reply truncated"
            body += chunk
    status = int(lines[0].split()[1])
    # Every reply, malformed HTTP framing refused by aiohttp's parser included, is JSON.
    assert headers["content-type"] == "application/json", (data[:80], head)
    assert len(headers["x-request-id"]) == 16, (data[:80], head)
    return status, json.loads(body)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny") / "tiny"
    write_tiny_version(base, 1)
    return base


@pytest.fixture(scope="module")
def fuzz_server(tiny_base):
    manager = ModelManager([ModelConfig("tiny", tiny_base)], log=lambda m: None)
    manager.poll()
    url, target, stop = start_servers(manager, max_body_bytes=2 << 20,
                                      max_inflight_bytes=2 << 20, socket_timeout=1.0,
                                      max_workers=16)
    yield url, target
    stop()
    manager.close()


def _malformed_requests(rng: random.Random) -> list[tuple[str, bytes, bool]]:
    """(category, raw HTTP request, close write side after sending)."""
    def post(path, body: bytes, extra=""):
        return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
                f"Content-Type: application/json\r\n{extra}Connection: close\r\n\r\n"
                ).encode("utf-8", "surrogateescape") + body

    def get(path):
        return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode(
            "utf-8", "surrogateescape")

    ok = "/v1/models/tiny:predict"
    good = json.dumps({"inputs": {"rgb": _clip().tolist()}}).encode()
    out = []
    for i in range(40):  # bad JSON: random bytes, truncations, garbage
        n = rng.randint(1, 200)
        body = [bytes(rng.getrandbits(8) for _ in range(n)), good[: rng.randint(1, len(good) - 1)],
                b"{" * n, b'{"inputs": ' + b"nan" * n, b"\xff\xfe" + good][i % 5]
        out.append(("bad json", post(ok, body), False))
    for i in range(40):  # wrong dtype
        value = [np.full((1, 2, 4, 4, 3), rng.random()).tolist(), "a string",
                 [[[[["x", "y", "z"]]]]], [[[[[True, False, True]]]]], {"b64": "AAAA"},
                 [[[[[1e30, 2, 3]]]]], [[[[[None, 2, 3]]]]], [[[[[{"a": 1}, 2, 3]]]]]][i % 8]
        out.append(("dtype", post(ok, json.dumps({"inputs": {"rgb": value}}).encode()), False))
    for i in range(40):  # wrong rank / shape
        rank = rng.choice([0, 1, 2, 3, 5, 6])
        shape = [rng.randint(1, 3) for _ in range(rank)] + ([rng.choice([1, 2, 4])] if rank else [])
        if i % 4 == 0:
            shape = [1, 2, 4, 4, rng.choice([1, 2, 4, 5])]
        value = np.zeros(shape, int).tolist()
        key = "instances" if i % 2 else "inputs"
        out.append(("shape", post(ok, json.dumps({key: value if key == "inputs" else [value]})
                                  .encode()), False))
    for i in range(30):  # huge / negative sizes, oversized bodies
        if i % 3 == 0:
            raw = (f"POST {ok} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {10**12 + i}\r\n\r\n"
                   ).encode()
        elif i % 3 == 1:
            raw = f"POST {ok} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -{i + 1}\r\n\r\n".encode()
        else:
            raw = post(ok, b"[" + b"0," * (1_100_000 + i) + b"0]")  # 2.2 MB > 2 MB limit
        out.append(("size", raw, False))
    for i in range(20):  # truncated bodies: Content-Length promises more than is sent
        body = good[: rng.randint(0, len(good) - 1)]
        raw = (f"POST {ok} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(good)}\r\n\r\n").encode() + body
        out.append(("truncated", raw, False))  # the body deadline (1 s) answers 408
    names = ["nope", "tiny/versions/9", "tiny/versions/99999999999999999999999",
             "tiny/labels/stable", "tiny/versions/1/labels/x", "%ff%fe", "tiny/versions/-1",
             "ti%00ny", "tiny/versions/\u0661", "\u00e9\u00e8", "\u6a21\u578b", "tiny/labels/\u2603",
             "tiny/metadata/x", "tiny/versions/1/versions/1", ""]
    for i in range(45):  # unknown model / version / signature / label, non-ASCII paths
        name = names[i % len(names)]
        if i % 3 == 0:
            out.append(("unknown", get(f"/v1/models/{name}"), False))
        elif i % 3 == 1:
            out.append(("unknown", post(f"/v1/models/{name}:predict", good), False))
        else:
            body = json.dumps({"signature_name": ["x", "Serving_Default", "serving_defaul", 5][i % 4],
                               "inputs": {"rgb": _clip().tolist()}}).encode()
            out.append(("unknown", post(ok, body), False))
    for i in range(30):  # deep nesting
        depth = [50, 500, 1000, 5000, 100000][i % 5]
        body = (b'{"inputs": {"rgb": ' + b"[" * depth + b"1" + b"]" * depth + b"}}") if i % 2 \
            else b"[" * depth
        out.append(("nesting", post(ok, body), False))
    for i in range(30):  # HTTP itself: request line, headers, methods, framing
        raw = [
            b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",                # 414
            b"GET /v1/models/tiny HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n",  # 431
            b"GET /v1/models/tiny HTTP/1.1\r\n" + b"X: y\r\n" * 150 + b"\r\n",   # 431
            b"BREW /v1/models/tiny HTTP/1.1\r\n\r\n",                     # 501
            b"NONSENSE\r\n\r\n",                                          # 400
            f"POST {ok} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode(),           # 411
            f"POST {ok} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".encode(),
            b"GET /v1/models/tiny HTTP/9.9\r\n\r\n",                      # 505
            f"POST {ok} HTTP/1.1\r\nContent-Length: 12a\r\n\r\n".encode(),
            b"GET /\xff\xfe/v1 HTTP/1.1\r\n\r\n",
        ][i % 10]
        out.append(("http", raw, False))
    for i in range(30):  # well-formed JSON of the wrong structure
        body = [{"instances": []}, {"instances": "x"}, {"inputs": {}}, {"instance": [1]},
                {"inputs": {"rgb": [[[[[1, 2, 3]]]]], "extra": 1}}, {"signature_name": None,
                 "inputs": 1}][i % 6]
        out.append(("structure", post(ok, json.dumps(body).encode()), False))
    return out


def test_oversized_body_gets_its_413_not_a_reset(fuzz_server):
    # Without a lingering close the server shuts the socket while the client is still sending
    # the refused body, and the client sees EPIPE/ECONNRESET instead of the 413.
    url, _ = fuzz_server
    body = b"[" + b"0," * (6 << 20) + b"0]"  # 12 MB against a 2 MB limit
    raw = (f"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}"
           "\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n").encode() + body
    for _ in range(3):
        status, reply = _raw(url, raw)
        assert status == 413 and "exceeds the limit" in reply["error"], reply


def test_fuzz_every_malformed_request_gets_a_json_error_and_memory_returns(fuzz_server):
    url, target = fuzz_server
    good = {"inputs": {"rgb": _clip().tolist()}}
    assert _post(url, "/v1/models/tiny:predict", good)[0] == 200
    rss_before = _rss_mb()
    requests = _malformed_requests(random.Random(0))
    assert len(requests) >= 300
    failures = []

    def send(item):
        category, raw, shut = item
        try:
            status, body = _raw(url, raw, shut_write=shut)
        except (AssertionError, OSError, ValueError) as e:  # dropped, non-JSON, no reply
            failures.append((category, raw[:80], type(e).__name__, str(e)[:200]))
            return
        # 501 (an unknown HTTP method) and 505 (HTTP version) are the server-side "cannot do"
        # codes; everything else a client sends wrong is a 4xx.
        if not (400 <= status < 500 or status in (501, 505)) or list(body) != ["error"]:
            failures.append((category, raw[:80], status, body))

    threads = []
    for i, item in enumerate(requests):
        threads.append(threading.Thread(target=send, args=(item,)))
        threads[-1].start()
        if len(threads) >= 16:  # 16 at a time: concurrency without a thread per request
            for t in threads:
                t.join()
            threads = []
    for t in threads:
        t.join()
    assert not failures, failures[:5]

    # gRPC: malformed TensorProtos through the official stub.
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        bad_protos = []
        for dims in ([-1, 2], [10**12, 10**6], [1, 2, 4, 4, 3]):
            p = tf.make_tensor_proto(np.zeros(1, np.uint8))
            p.tensor_shape.Clear()
            for d in dims:
                p.tensor_shape.dim.add(size=d)
            p.tensor_content = b"\x00" * 5  # wrong length for every shape above
            bad_protos.append(p)
        bad_protos.append(tf.make_tensor_proto(np.zeros((1, 2, 4, 4, 3), np.float32)))
        for proto in bad_protos:
            request = predict_pb2.PredictRequest(model_spec={"name": "tiny"})
            request.inputs["rgb"].CopyFrom(proto)
            with pytest.raises(grpc.RpcError) as e:
                stub.Predict(request, timeout=10)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()

    # Still serving, correctly, and memory is back within bounds.
    status, reply = _post(url, "/v1/models/tiny:predict", good)
    assert status == 200
    np.testing.assert_allclose(reply["outputs"]["probabilities"], reference(_clip(), 1), atol=1e-6)
    assert _rss_mb() < rss_before + 200, (rss_before, _rss_mb())


def test_stalled_requests_end_within_their_deadlines_and_do_not_starve_small_ones(fuzz_server):
    url, _ = fuzz_server
    host, port = url.split("//")[1].split(":")
    # 40 stalled connections: half mid-headers, half mid-body. Headers have an absolute
    # deadline (socket_timeout = 1 s from the connection going idle: closed), bodies too (408).
    stalled = []
    for i in range(40):
        s = socket.create_connection((host, int(port)))
        if i % 2:
            s.sendall(b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        else:
            s.sendall(b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 2000000\r\n\r\n"
                      + b"[" * 1000)
        stalled.append(s)
    opened = time.monotonic()
    # Small requests are answered while those wait.
    for _ in range(5):
        status, reply = _post(url, "/v1/models/tiny:predict", {"inputs": {"rgb": _clip().tolist()}})
        assert status == 200
    assert time.monotonic() - opened < 5
    codes = []
    for s in stalled:
        s.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        codes.append(int(data.split()[1]) if data else "closed")
        s.close()
    assert time.monotonic() - opened < 8  # deadlines of 1 s (+ 5 s lingering at most)
    assert codes == ["closed" if i % 2 else 408 for i in range(40)], codes


def test_versions_swap_under_load_without_a_failed_request(tmp_path):
    base = tmp_path / "tiny"
    write_tiny_version(base, 1)
    manager = ModelManager([ModelConfig("tiny", base)], log=lambda m: None)
    manager.poll()
    manager.start_polling(0.1)
    url, target, stop = start_servers(manager)
    clip = _clip(seed=5)
    payload = {"inputs": {"rgb": clip.tolist()}}
    want = {v: reference(clip, v) for v in (1, 2, 3)}
    failures, served, done = [], [], threading.Event()

    def rest_worker():
        while not done.is_set():
            status, reply = _post(url, "/v1/models/tiny:predict", payload)
            if status != 200:
                failures.append(reply)
                continue
            got = np.float32(reply["outputs"]["probabilities"])
            served.append(next((v for v, p in want.items() if np.allclose(got, p, atol=1e-6)),
                               None))

    def grpc_worker():
        with grpc.insecure_channel(target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            request = predict_pb2.PredictRequest(model_spec={"name": "tiny"})
            request.inputs["rgb"].CopyFrom(tf.make_tensor_proto(clip))
            while not done.is_set():
                try:
                    response = stub.Predict(request, timeout=30)
                except grpc.RpcError as e:
                    failures.append(e.details())
                    continue
                v = response.model_spec.version.value
                ok = np.allclose(tf.make_ndarray(response.outputs["probabilities"]), want[v],
                                 atol=1e-6)
                served.append(v if ok else None)

    workers = [threading.Thread(target=f) for f in (rest_worker, rest_worker, grpc_worker,
                                                      grpc_worker)]
    for w in workers:
        w.start()
    try:
        time.sleep(0.5)
        write_tiny_version(base, 2)
        _wait(lambda: manager.available()["tiny"] == [2])
        write_tiny_version(base, 3)
        _wait(lambda: manager.available()["tiny"] == [3])
        shutil.rmtree(base / "3")  # removing the newest falls back to the newest left (2)
        shutil.rmtree(base / "1")
        _wait(lambda: manager.available()["tiny"] == [2])
        n = len(served)
        _wait(lambda: len(served) > n + 8)
    finally:
        done.set()
        for w in workers:
            w.join()
        stop()
        manager.close()
    assert not failures, failures[:3]
    assert None not in served  # every reply came from one whole version
    assert {1, 2, 3} <= set(served) and served[-1] == 2
    status = manager.status(predict_pb2.PredictRequest(model_spec={"name": "tiny"}).model_spec)
    states = {s.version: s.state for s in status.model_version_status}
    assert states == {1: STATE.END, 2: STATE.AVAILABLE, 3: STATE.END}


def _wait(predicate, timeout=30):
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out waiting for the server"
        time.sleep(0.05)


def test_batching_without_timeout_runs_a_lone_request_at_once_and_merges_the_queue():
    # batch_timeout_micros 0 (the shipped batching.config, TF Serving's advice for CPUs): a
    # request is not held back to wait for others, and those that arrive while every batch
    # thread is busy share the next batch.
    from serving.batching import BatchScheduler

    release, started, runs = threading.Event(), threading.Event(), []

    def run(key, inputs):
        runs.append(inputs["x"][:, 0].tolist())
        started.set()
        release.wait(30)
        return {"y": inputs["x"] * 10}

    scheduler = BatchScheduler(run, BatchOptions(max_batch_size=8, batch_timeout_micros=0,
                                                 num_batch_threads=1))
    try:
        x = lambda v: {"x": np.full((1, 2), v, np.float32)}
        first = scheduler.submit("k", x(1))
        assert started.wait(5), "a lone request waited for a batch to fill"
        rest = [scheduler.submit("k", x(v)) for v in (2, 3, 4)]  # the only thread is busy
        time.sleep(0.2)
        assert runs == [[1.0]]
        release.set()
        got = [f.result(10)["y"] for f in [first] + rest]
        assert runs == [[1.0], [2.0, 3.0, 4.0]]
        for v, y in zip((1, 2, 3, 4), got):
            np.testing.assert_array_equal(y, np.full((1, 2), 10 * v, np.float32))
    finally:
        release.set()
        scheduler.stop()


def test_batching_merges_concurrent_requests_and_pads_to_allowed_sizes(tiny_base):
    options = BatchOptions(max_batch_size=4, batch_timeout_micros=200_000,
                           max_enqueued_batches=4, num_batch_threads=1,
                           allowed_batch_sizes=(2, 4))
    manager = ModelManager([ModelConfig("tiny", tiny_base)], batching=options, log=lambda m: None)
    manager.poll()
    url, target, stop = start_servers(manager)
    scheduler = manager.acquire("tiny").scheduler
    try:
        scheduler.batch_sizes.clear()
        clips = [_clip(seed=s) for s in range(8)]
        replies = [None] * 8

        def one(i):
            replies[i] = _post(url, "/v1/models/tiny:predict", {"inputs": {"rgb": clips[i].tolist()}})

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for clip, (status, reply) in zip(clips, replies):
            assert status == 200, reply
            np.testing.assert_allclose(reply["outputs"]["probabilities"], reference(clip, 1),
                                       atol=1e-6)
        # 8 single-clip requests ran as fewer, larger session runs.
        assert sum(scheduler.batch_sizes) >= 8 and len(scheduler.batch_sizes) < 8
        assert set(scheduler.batch_sizes) <= {2, 4}

        # A batch of 3 alone is padded to 4 and the padding is cut off; 5 is refused.
        scheduler.batch_sizes.clear()
        clip3 = _clip(batch=3, seed=9)
        status, reply = _post(url, "/v1/models/tiny:predict", {"inputs": {"rgb": clip3.tolist()}})
        assert status == 200 and scheduler.batch_sizes == [4]
        np.testing.assert_allclose(reply["outputs"]["probabilities"], reference(clip3, 1),
                                   atol=1e-6)
        status, reply = _post(url, "/v1/models/tiny:predict",
                              {"inputs": {"rgb": _clip(batch=5).tolist()}})
        assert status == 400 and "Task size 5 is larger than maximum input batch size 4" in \
            reply["error"]
        # Clips of different sizes are never concatenated: each gets its own, correct answer.
        a, b = _clip(seed=1, size=4), _clip(seed=2, size=6)
        out = {}
        ta = threading.Thread(target=lambda: out.__setitem__("a", _post(
            url, "/v1/models/tiny:predict", {"inputs": {"rgb": a.tolist()}})))
        ta.start()
        out["b"] = _post(url, "/v1/models/tiny:predict", {"inputs": {"rgb": b.tolist()}})
        ta.join()
        np.testing.assert_allclose(out["a"][1]["outputs"]["probabilities"], reference(a, 1),
                                   atol=1e-6)
        np.testing.assert_allclose(out["b"][1]["outputs"]["probabilities"], reference(b, 1),
                                   atol=1e-6)
    finally:
        manager.release(manager.acquire("tiny"))
        stop()
        manager.close()


def test_labels_failed_warmup_paths_and_string_inputs(tmp_path):
    base = tmp_path / "tiny"
    write_tiny_version(base, 1)
    write_tiny_version(base, 2)
    write_tiny_version(base, 3, warmup="bad")
    outside = tmp_path / "elsewhere"
    write_tiny_version(outside, 4)
    os.symlink(outside / "4", base / "4")
    config = ModelConfig("tiny", base, ("specific", frozenset({1, 2, 3, 4})),
                         {"stable": 1, "canary": 2})
    with pytest.raises(ValueError, match="--allow_version_labels_for_unavailable_models"):
        ModelManager([config])
    # No load retries: a failed version is END at once (with retries it stays LOADING until
    # the last one, as TF Serving's).
    manager = ModelManager([config], allow_labels_for_unavailable=True, log=lambda m: None,
                           max_num_load_retries=0)
    manager.poll()
    url, target, stop = start_servers(manager, prometheus_path="/monitoring/prometheus/metrics")
    try:
        clip = _clip(seed=3)
        for label, version in (("stable", 1), ("canary", 2)):
            status, reply = _post(url, f"/v1/models/tiny/labels/{label}:predict",
                                  {"inputs": {"rgb": clip.tolist()}})
            assert status == 200
            np.testing.assert_allclose(reply["outputs"]["probabilities"],
                                       reference(clip, version), atol=1e-6)
        got = client.predict_grpc(target, "tiny", {"rgb": clip}, label="canary", timeout=10)
        np.testing.assert_allclose(got["probabilities"], reference(clip, 2), atol=1e-6)

        with grpc.insecure_channel(target) as channel:
            status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "tiny"}),
                timeout=10)
        by_version = {s.version: s for s in status.model_version_status}
        assert by_version[2].state == STATE.AVAILABLE
        # A failed warmup aborts the version (as TF Serving), with the reason in its status.
        assert by_version[3].state == STATE.END
        assert "warmup record 0" in by_version[3].status.error_message
        assert "missing ['rgb'], unexpected ['video']" in by_version[3].status.error_message
        # Never loads from outside the configured base path (a symlinked version).
        assert by_version[4].state == STATE.END
        assert "outside the model's base path" in by_version[4].status.error_message
        status, reply = _post(url, "/v1/models/tiny/versions/3:predict",
                              {"inputs": {"rgb": clip.tolist()}})
        assert status == 404 and "Specific(tiny, 3)" in reply["error"]

        # String inputs: {"b64": ...} carries arbitrary bytes (e.g. JPEG frames) over JSON.
        frames = np.array([[b"\xff\xd8\x00abc", b"\x00"], [b"", b"\x80\x81"]], dtype=object)
        got = client.predict_rest(url, "tiny", {"frames": frames}, signature="lengths",
                                  timeout=10)
        np.testing.assert_array_equal(got["total_bytes"], [7, 2])
        status, reply = _post(url, "/v1/models/tiny:predict", {
            "signature_name": "lengths", "inputs": {"frames": [[{"b64": "not base64!"}]]}})
        assert status == 400 and "not valid base64" in reply["error"]
        # Outputs named *_bytes come back as {"b64": ...}, as TF Serving sends them.
        status, reply = _post(url, "/v1/models/tiny:predict", {
            "signature_name": "lengths",
            "inputs": {"frames": [[{"b64": base64.b64encode(b"\xff\x00").decode()}]]}})
        assert reply["outputs"]["first_bytes"] == [{"b64": base64.b64encode(b"\xff\x00").decode()}]

        with urllib.request.urlopen(url + "/monitoring/prometheus/metrics", timeout=10) as r:
            page = r.read().decode()
        assert ':tensorflow:serving:request_count{entrypoint="REST",model_name="tiny",' \
               'status="OK"}' in page
        assert ':tensorflow:serving:request_count{entrypoint="REST",model_name="tiny",' \
               'status="NOT_FOUND"} 1' in page
        assert ':tensorflow:serving:request_count{entrypoint="gRPC",model_name="tiny",' \
               'status="OK"} 1' in page
        assert ':tensorflow:core:servable_available{model_name="tiny",version="2"} 1' in page
    finally:
        stop()
        manager.close()


def test_loadtest_runs_clients_against_rest_grpc_and_in_process(tiny_base):
    manager = ModelManager([ModelConfig("tiny", tiny_base)],
                           batching=BatchOptions(max_batch_size=4, batch_timeout_micros=1000),
                           log=lambda m: None)
    manager.poll()
    url, target, stop = start_servers(manager)
    try:
        signature, inputs, body = loadtest.request(frames=2, size=8)
        assert json.loads(body) == {"inputs": {"rgb": inputs["rgb"].tolist()}}
        assert inputs["rgb"].shape == (1, 2, 8, 8, 3) and inputs["rgb"].dtype == np.uint8
        servable = manager.acquire("tiny")
        calls = {"in-process": loadtest.in_process_call(servable, inputs, signature),
                 "rest": loadtest.rest_call(url, "tiny", body, 10),
                 "grpc": loadtest.grpc_call(target, "tiny", inputs, 10, signature)}
        rows = []
        for n in (1, 4):
            for path, call in calls.items():
                row = loadtest.run_clients(n, call, requests=12, max_seconds=20)
                row["path"] = path
                rows.append(row)
        manager.release(servable)
    finally:
        stop()
        manager.close()
    assert [(r["clients"], r["path"], r["ok"], r["errors"]) for r in rows] == [
        (n, p, 12, 0) for n in (1, 4) for p in ("in-process", "rest", "grpc")]
    assert all(r["p99_ms"] >= r["p50_ms"] > 0 for r in rows)
    merged = loadtest.merge(rows[:1] * 2)
    assert (merged["ok"], merged["seconds"]) == (24, 2 * rows[0]["seconds"])
    assert merged["throughput"] == pytest.approx(rows[0]["throughput"])
    table = loadtest.format_table(rows)
    assert table.count("\n") == 7 and "| 4 | grpc | 12 | 0 |" in table


def test_large_json_bodies_take_the_numpy_parser_with_the_same_rules(fuzz_server):
    url, _ = fuzz_server
    clip = _clip(batch=2, seed=4, t=8, size=32)  # 49k numbers: > 64 KB, parsed by numpy
    want = reference(clip, 1)
    bodies = [{"inputs": {"rgb": clip.tolist()}}, {"inputs": clip.tolist()},
              {"instances": clip.tolist()}, {"instances": [{"rgb": c.tolist()} for c in clip]}]
    for body in bodies:
        for indent in (None, 1):
            raw = json.dumps(body, indent=indent).encode()
            assert len(raw) > 65536
            status, reply = _raw(url, b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: "
                                 b"127.0.0.1\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: " + str(len(raw)).encode() + b"\r\n\r\n"
                                 + raw)
            assert status == 200, reply
            probs = reply["outputs"]["probabilities"] if "outputs" in reply else [
                r["probabilities"] for r in reply["predictions"]]
            np.testing.assert_allclose(probs, want, atol=1e-6)
    # The same refusals as the generic parser.
    first = int(clip.flat[0])
    cases = [(clip + 0.5, f"JSON Value: {first + 0.5} is a float"),
             (clip * 1.0, f"JSON Value: {first:.1f} is a float"),
             (clip.astype(int) + 100, "values span [100, 355]; uint8 holds [0, 255]"),
             (-clip.astype(int) - 1, "values span [-256, -1]")]
    for value, message in cases:
        status, reply = _post(url, "/v1/models/tiny:predict", {"inputs": {"rgb": value.tolist()}})
        assert status == 400 and message in reply["error"], reply
    ragged = clip.tolist()
    ragged[1][7][31].pop()
    status, reply = _post(url, "/v1/models/tiny:predict", {"inputs": {"rgb": ragged}})
    assert status == 400 and "ragged" in reply["error"], reply
    # A long numeric-looking run inside a JSON string stays a string.
    name = json.dumps(clip.tolist())
    status, reply = _post(url, "/v1/models/tiny:predict",
                          {"signature_name": name, "inputs": {"rgb": clip.tolist()}})
    assert status == 400 and f'Serving signature name: "{name[:40]}' in reply["error"]


def test_client_sends_jpeg_frames_that_tensorflow_decodes(tiny_base, bikes_path):
    frames = client.sample_frames(bikes_path, num_frames=3, short_side=48)
    encoded = client.encode_jpeg(frames)
    # TensorFlow's own decoder (what an encoded-frames signature runs in the graph) reads them
    # back close to the frames (quality ~95).
    for data, frame in zip(encoded, frames):
        decoded = tf.io.decode_jpeg(data, channels=3).numpy()
        assert decoded.shape == frame.shape
        assert np.abs(decoded.astype(int) - frame).mean() < 3
    assert sum(map(len, encoded)) < frames.nbytes / 3

    manager = ModelManager([ModelConfig("tiny", tiny_base)], log=lambda m: None)
    manager.poll()
    url, target, stop = start_servers(manager)
    try:
        signatures = client.rest_metadata(url, "tiny", timeout=10)
        assert signatures == client.grpc_metadata(target, "tiny", timeout=10)
        sig, inputs = client.build_inputs(frames, "jpeg", signatures, "tiny", signature="lengths")
        assert sig == "lengths" and list(inputs) == [client.ENCODED_INPUT]
        assert inputs[client.ENCODED_INPUT].shape == (1, 3)
        for got in (client.predict_rest(url, "tiny", inputs, signature=sig, timeout=10),
                    client.predict_grpc(target, "tiny", inputs, signature=sig, timeout=10)):
            np.testing.assert_array_equal(got["total_bytes"], [sum(map(len, encoded))])
        # A model without the encoded-frames signature: one line saying what to do.
        with pytest.raises(client.ServingError, match=r"no signature 'serving_encoded' taking "
                                                      r"encoded frames .* --frames raw"):
            client.build_inputs(frames, "jpeg", signatures, "tiny")
        with pytest.raises(SystemExit, match=r"^client: .*HTTP 404: Servable not found"):
            client.main(["--url", url, "--model", "nope", "--video", str(bikes_path),
                         "--num_frames", "2", "--short_side", "32", "--timeout", "5"])
    finally:
        stop()
        manager.close()


def test_client_retries_connection_errors_and_503_only(monkeypatch):
    calls = []

    def flaky(kind):
        def call():
            calls.append(kind)
            if calls.count(kind) < 3:
                raise (client._Retryable if kind == "retry" else client.ServingError)(kind)
            return "ok"
        return call

    monkeypatch.setattr(time, "sleep", lambda s: calls.append(s))
    assert client._with_retries(flaky("retry"), retries=3, backoff=0.5) == "ok"
    assert calls == ["retry", 0.5, "retry", 1.0, "retry"]  # exponential backoff between tries
    calls.clear()
    with pytest.raises(client.ServingError, match="^fatal$"):
        client._with_retries(flaky("fatal"), retries=3, backoff=0.5)
    assert calls == ["fatal"]  # a 4xx / INVALID_ARGUMENT is not retried
    # A closed port: retried, then one line naming the attempts.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    calls.clear()
    with pytest.raises(client.ServingError, match=r"cannot connect .* \(after 3 attempts\)"):
        client.rest_metadata(f"http://127.0.0.1:{port}", "x", timeout=2, retries=2)
    assert calls == [0.5, 1.0]


def test_dev_server_program_with_tf_serving_flags_and_config_files(tmp_path, capsys):
    import subprocess
    import sys

    base = tmp_path / "models" / "tiny"
    write_tiny_version(base, 1)
    write_tiny_version(base, 2)
    config = tmp_path / "models.config"
    config.write_text('model_config_list { config { name: "tiny" base_path: "%s" '
                      'model_platform: "tensorflow" model_version_policy { specific { '
                      'versions: 1 versions: 2 } } version_labels { key: "stable" value: 1 } '
                      'version_labels { key: "canary" value: 2 } } }' % base)
    repo = str(REPO)
    flags = [f"--model_config_file={config}", "--enable_batching",
             f"--batching_parameters_file={repo}/serving/batching.config",
             f"--monitoring_config_file={repo}/serving/monitoring.config"]
    # Bad combinations end with one line naming the flag, before anything is served.
    from serving import dev_server

    with pytest.raises(SystemExit):
        dev_server.main(flags)
    assert re.match(r"^dev_server: error: model 'tiny': version_labels .* "
                    r"--allow_version_labels_for_unavailable_models", capsys.readouterr().err)
    with pytest.raises(SystemExit):
        dev_server.main([f"--model_config_file={config}", flags[2]])
    assert capsys.readouterr().err.startswith(
        "dev_server: error: --batching_parameters_file needs --enable_batching")

    rest_port, grpc_port = loadtest._free_port(), loadtest._free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving.dev_server", f"--port={grpc_port}",
         f"--rest_api_port={rest_port}", "--allow_version_labels_for_unavailable_models"] + flags,
        cwd=repo, env={**os.environ, "PYTHONPATH": repo}, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{rest_port}"
    try:
        loadtest.wait_ready(url, "tiny", proc, timeout=120)
        clip = _clip(seed=8)
        status, reply = _post(url, "/v1/models/tiny/labels/canary:predict",
                              {"instances": clip.tolist()})
        assert status == 200
        np.testing.assert_allclose([r["probabilities"] for r in reply["predictions"]],
                                   reference(clip, 2), atol=1e-6)
        got = client.predict_grpc(f"127.0.0.1:{grpc_port}", "tiny", {"rgb": clip}, version=1,
                                  timeout=10)
        np.testing.assert_allclose(got["probabilities"], reference(clip, 1), atol=1e-6)
        with urllib.request.urlopen(url + "/monitoring/prometheus/metrics", timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/plain")
            assert ':tensorflow:core:servable_available{model_name="tiny",version="1"} 1' in \
                r.read().decode()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "dev_server: loaded tiny version 2" in err and "gRPC on 127.0.0.1" in err


def test_client_timeout_is_one_line_and_not_retried():
    # A server that accepts and never answers: the metadata call honours --timeout too.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(client.ServingError, match=r"no reply within --timeout=0.5 s$"):
            client.rest_metadata(url, "x", timeout=0.5, retries=3)
        assert time.monotonic() - start < 3  # one attempt: a timeout is not retried


def test_rest_api_timeout_gives_504(tiny_base):
    # A batch that waits 3 s for company outlives a 200 ms --rest_api_timeout_in_ms.
    manager = ModelManager([ModelConfig("tiny", tiny_base)], log=lambda m: None,
                           batching=BatchOptions(max_batch_size=4, batch_timeout_micros=3_000_000))
    manager.poll()
    server = make_http_server(RestApi(manager, timeout_ms=200), "127.0.0.1", 0)
    try:
        status, reply = _post(f"http://127.0.0.1:{server.port}",
                              "/v1/models/tiny:predict", {"inputs": {"rgb": _clip().tolist()}})
        assert status == 504 and "did not finish within 0.2 s" in reply["error"]
    finally:
        server.stop()
        manager.close()
