"""The dev server against hostile and unlucky clients and operators (issue 21).

One test per probe of the issue's table (each failed against the hand-written http.server
front end), plus the limits around them. Memory is the server process' own peak RSS (VmHWM,
reset through /proc/PID/clear_refs before each request), read from this test process; servers
listen on 127.0.0.1 only, and every many-connection loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from serving import loadtest
from serving.grpc_api import make_grpc_server
from serving.metrics import Metrics
from serving.models import ModelConfig, ModelManager
from serving.rest import _ByteBudget
from _serving_models import reference, write_tiny_version
from _serving_models import start_servers
from _paths import REPO

PREDICT = "/v1/models/tiny:predict"
STATE = get_model_status_pb2.ModelVersionStatus.State


def _clip(batch=1, seed=0, t=2, size=4):
    return np.random.RandomState(seed).randint(0, 256, (batch, t, size, size, 3)).astype(np.uint8)


def _post(url, body: bytes, headers=None, timeout=60, path=PREDICT):
    headers = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url + path, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


def _clip_body(clip) -> bytes:
    return json.dumps({"inputs": {"rgb": clip.tolist()}}).encode()


def _exchange(url, data: bytes, timeout=10) -> bytes:
    """Sends raw bytes, reads until the server closes (or `timeout`): every byte it replied."""
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(data)
        out, end = b"", time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                return out
            out += chunk
    raise AssertionError(f"the server kept the connection open after {out[:200]!r}")


# --- a real server process, for memory and connection counts -------------------------------

def _status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def peak_growth_mb(pid: int, action) -> float:
    """How far the server's RSS rose above its level before `action()` (peak, in MB)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    before = _status_kb(pid, "VmRSS")
    action()
    return (_status_kb(pid, "VmHWM") - before) / 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile") / "tiny"
    write_tiny_version(base, 1)
    rest_port, grpc_port = loadtest._free_port(), loadtest._free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving.dev_server", "--model_name=tiny",
         f"--model_base_path={base}", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
         "--file_system_poll_wait_seconds=0"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{rest_port}"
    try:
        loadtest.wait_ready(url, "tiny", proc, timeout=120)
        # The first requests build the session's kernels: not the requests under test.
        for size in (4, 64):
            assert _post(url, _clip_body(_clip(size=size)))[0] == 200
        yield url, f"127.0.0.1:{grpc_port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(30)


def test_grpc_inputs_are_checked_against_the_signature_before_decoding(server):
    # Row 1: 200 inputs the signature does not have, each declaring 1M floats with one value:
    # 5.7 KB on the wire, 800 MB if decoded first.
    _, target, pid = server
    request = predict_pb2.PredictRequest(model_spec={"name": "tiny"})
    for i in range(200):
        proto = request.inputs[f"x{i}"]
        proto.dtype = types_pb2.DT_FLOAT
        proto.tensor_shape.dim.add(size=1_000_000)
        proto.float_val.append(1.0)
    assert request.ByteSize() < 8000
    # The signature's own input, declaring 3 GB with one value: refused by the total size.
    huge = predict_pb2.PredictRequest(model_spec={"name": "tiny"})
    huge.inputs["rgb"].dtype = types_pb2.DT_UINT8
    for d in (1, 1000, 1000, 1000, 3):
        huge.inputs["rgb"].tensor_shape.dim.add(size=d)
    huge.inputs["rgb"].int_val.append(7)
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        errors = []

        def call(r):
            with pytest.raises(grpc.RpcError) as e:
                stub.Predict(r, timeout=30)
            errors.append(e.value)

        grown = peak_growth_mb(pid, lambda: (call(request), call(huge)))
        assert [e.code() for e in errors] == [grpc.StatusCode.INVALID_ARGUMENT] * 2
        assert "missing ['rgb'], unexpected ['x0', 'x1'" in errors[0].details()
        assert "3000000000 bytes decoded; the limit is 33554432" in errors[1].details()
        assert grown < 50, grown
        ok = predict_pb2.PredictRequest(model_spec={"name": "tiny"})
        ok.inputs["rgb"].CopyFrom(tf.make_tensor_proto(_clip()))
        np.testing.assert_allclose(tf.make_ndarray(stub.Predict(ok, timeout=30).outputs[
            "probabilities"]), reference(_clip(), 1), atol=1e-6)


def test_rest_rows_stop_at_the_first_bad_one_and_values_are_bounded(server):
    # Row 2: 3.9 MB of empty rows took 10-15 s and +800 MB before its 400.
    url, _, pid = server
    empty_rows = b'{"instances": [' + b"[], " * 1_300_000 + b"[]]}"
    replies = []
    start = time.monotonic()
    grown = peak_growth_mb(pid, lambda: replies.append(_post(url, empty_rows)))
    status, reply, _ = replies[0]
    assert status == 400 and "JSON values outside large numeric arrays" in reply["error"], reply
    assert time.monotonic() - start < 5
    assert grown < 50, grown
    # Within the value bound, a row of another shape ends the parse at that row.
    row = _clip()[0].tolist()
    body = json.dumps({"instances": [row] + [[]] * 100_000}).encode()
    status, reply, _ = _post(url, body)
    assert status == 400 and "instances[1] is (0,), instances[0] is (2, 4, 4, 3)" in \
        reply["error"], reply
    # A row count whose decoded total is over --max_body_bytes is refused from the first row.
    body = json.dumps({"instances": [_clip(size=64)[0].tolist()] + [0] * 2000}).encode()
    status, reply, _ = _post(url, body)
    assert status == 400 and "the limit is 33554432 bytes" in reply["error"], reply


_BAD_TAILS = [b"[1, " + bad + b", 3, 4]" for bad in
              (b"007", b"+5", b"1 2", b"-01", b"0x1", b"1e", b"--1", b"1.", b".5")] + [
    b"[1, 2, 3, 4]5", b"5[1, 2, 3, 4]", b"5[, 2, 3, 4]", b"[1, 2, 3, 4, ]", b"[1, 2, 3,, 4]"]


@pytest.mark.parametrize("tail", _BAD_TAILS)
@pytest.mark.parametrize("sep", [b",", b", ", b",\n  "])
def test_the_fast_json_path_refuses_what_json_refuses(tail, sep):
    from serving.errors import ServingError
    from serving.tensors import NumericArray, json_to_array, loads

    good = sep.join([b"[" + sep.join([b"12", b"0", b"-0.5e+3", b"7"]) + b"]"] * 5000)
    body = b'{"inputs": [' + good + sep + tail + b"]}"
    assert len(body) > 65536
    with pytest.raises(ValueError):  # the reference: Python's json refuses it
        json.loads(body)
    # Refused by the generic parser (ValueError), or when the numbers are parsed.
    with pytest.raises((ValueError, ServingError)) as e:
        json_to_array(loads(body)["inputs"], tf.float32, "input 'x'")
    if isinstance(e.value, ServingError):
        assert "is not valid JSON" in str(e.value), e.value
    parsed = loads(b'{"inputs": [' + good + b"]}")["inputs"]
    assert isinstance(parsed, NumericArray) and parsed.shape == (5000, 4)
    array = json_to_array(parsed, tf.float32, "input 'x'")
    assert array.dtype == np.float32 and array.shape == (5000, 4)
    assert (array == np.float32([12, 0, -500, 7])).all()


def test_the_fast_json_path_takes_any_rectangular_array_and_leaves_empty_lists():
    from serving.tensors import NumericArray, json_to_array, loads

    rng = np.random.RandomState(0)
    for shape in [(6000, 3, 1), (40000,), (2, 3, 4, 5, 6, 7, 8)]:
        value = rng.randint(-1000, 1000, shape)
        for sep in ((",", ":"), (", ", ": ")):
            body = bytearray(json.dumps({"inputs": value.tolist()}, separators=sep).encode())
            parsed = loads(body)["inputs"]
            assert isinstance(parsed, NumericArray) and parsed.shape == shape
            np.testing.assert_array_equal(json_to_array(parsed, tf.int16, "x"), value)
    # Empty lists go to the generic parser (whose value bound refuses millions of them).
    body = json.dumps({"inputs": [[[] for _ in range(3)] for _ in range(6000)]}).encode()
    assert loads(body)["inputs"] == [[[] for _ in range(3)] for _ in range(6000)]


def test_a_large_json_request_grows_the_server_by_at_most_four_times_its_size(server):
    url, _, pid = server
    clip = _clip(batch=4, t=16, size=96, seed=1)  # 1.8 M numbers
    body = _clip_body(clip)
    activations = clip.size * 4 * 2 / 2**20  # the float32 cast and its scaled copy
    # A warm-up request of the same shape first: the allocator's and the session's first-time
    # growth for this shape (kept for the next request) is not what a request costs.
    status, reply, _ = _post(url, body)
    assert status == 200, reply
    replies = []
    grown = peak_growth_mb(pid, lambda: replies.append(_post(url, body)))
    status, reply, _ = replies[0]
    assert status == 200, reply
    np.testing.assert_allclose(reply["outputs"]["probabilities"], reference(clip, 1), atol=1e-6)
    limit = max(50, 4 * len(body) / 2**20) + activations
    assert grown < limit, (grown, limit, len(body))
    first = grown
    # The same clip as compact JSON ("1,2,3": 2-4 bytes a number) against the same bound.
    compact = json.dumps({"inputs": {"rgb": clip.tolist()}}, separators=(",", ":")).encode()
    grown = peak_growth_mb(pid, lambda: replies.append(_post(url, compact)))
    assert replies[-1][0] == 200, replies[-1][1]
    limit = max(50, 4 * len(compact) / 2**20) + activations
    assert grown < limit, (grown, limit, len(compact))
    print(f"RSS growth: {len(body) / 2**20:.1f} MB body -> +{first:.1f} MB, "
          f"{len(compact) / 2**20:.1f} MB compact -> +{grown:.1f} MB (activations {activations:.1f} MB)")


def test_idle_and_trickling_connections_do_not_delay_a_normal_request(server):
    # Row 3: 300 connections trickling a byte a second made a normal predict time out.
    url, _, _ = server
    body = _clip_body(_clip(seed=2))

    def latency():
        t = time.monotonic()
        status, _, _ = _post(url, body, timeout=20)
        assert status == 200
        return time.monotonic() - t

    baseline = sorted(latency() for _ in range(3))[1]
    host, port = url.split("//")[1].split(":")
    conns = [socket.create_connection((host, int(port))) for _ in range(1000)]
    head = b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    stop = threading.Event()

    def trickle():  # half of them send their headers one byte at a time
        i = 0
        while not stop.is_set() and i < len(head):
            for s in conns[::2]:
                try:
                    s.send(head[i:i + 1])
                except OSError:
                    pass
            i += 1
            stop.wait(0.5)

    thread = threading.Thread(target=trickle)
    thread.start()
    try:
        # A request behind all 1000 in the accept queue: once answered, the server holds
        # every connection (accepting a burst of 1000 is not what is measured).
        latency()
        time.sleep(1)
        delays = [latency() - baseline for _ in range(5)]
    finally:
        stop.set()
        thread.join()
        for s in conns:
            s.close()
    assert max(delays) < 1.0, (baseline, delays)


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload))[1:] + bytes([kind, flags])
            + struct.pack(">I", stream) + payload)


def _stalled_grpc_predict(target: str, claimed: int = 1 << 20) -> socket.socket:
    """A gRPC Predict whose request message stops after its first byte: HTTP/2's preface,
    SETTINGS, HEADERS (HPACK literals, RFC 7541 6.2.2) and a DATA frame with the gRPC length
    prefix, then nothing more."""
    host, port = target.rsplit(":", 1)
    block = b"".join(b"\x00" + bytes([len(k)]) + k + bytes([len(v)]) + v for k, v in [
        (b":method", b"POST"), (b":scheme", b"http"),
        (b":path", b"/tensorflow.serving.PredictionService/Predict"),
        (b":authority", target.encode()), (b"content-type", b"application/grpc"),
        (b"te", b"trailers")])
    s = socket.create_connection((host, int(port)))
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _h2_frame(4, 0, 0, b"")
              + _h2_frame(1, 4, 1, block)
              + _h2_frame(0, 0, 1, b"\x00" + struct.pack(">I", claimed) + b"\x0a"))
    return s


def test_idle_and_stalled_grpc_clients_do_not_delay_a_normal_predict(server):
    # grpcio's thread-per-call server gave a call a worker thread once its headers arrived;
    # 100 streams stalled mid-message took all 64 and a normal Predict timed out.
    _, target, _ = server
    clip = _clip(seed=5)
    ok = predict_pb2.PredictRequest(model_spec={"name": "tiny"})
    ok.inputs["rgb"].CopyFrom(tf.make_tensor_proto(clip))
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        def latency():
            t = time.monotonic()
            reply = stub.Predict(ok, timeout=20)
            np.testing.assert_allclose(tf.make_ndarray(reply.outputs["probabilities"]),
                                       reference(clip, 1), atol=1e-6)
            return time.monotonic() - t

        baseline = sorted(latency() for _ in range(3))[1]
        idle = [grpc.insecure_channel(target) for _ in range(200)]
        stalled = []
        try:
            for c in idle:  # connected (one call each), then idle
                model_service_pb2_grpc.ModelServiceStub(c).GetModelStatus(
                    get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "tiny"}),
                    timeout=20)
            stalled = [_stalled_grpc_predict(target) for _ in range(200)]
            time.sleep(1)
            delays = [latency() - baseline for _ in range(5)]
        finally:
            for s in stalled:
                s.close()
            for c in idle:
                c.close()
    assert max(delays) < 1.0, (baseline, delays)


# --- in-process servers ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny") / "tiny"
    write_tiny_version(base, 1)
    return base


@pytest.fixture
def rest(tiny_base):
    """An in-process REST + gRPC server on the tiny model; yields a factory of them."""
    stops = []

    def make(**kwargs):
        manager = ModelManager([ModelConfig("tiny", tiny_base)], log=lambda m: None)
        manager.poll()
        url, target, stop = start_servers(manager, **kwargs)
        stops.append(lambda: (stop(), manager.close()))
        return url, target, manager

    yield make
    for stop in stops:
        stop()


def test_admission_is_charged_by_bytes_received_not_claimed(rest):
    # Row 4: a body claiming 3.9 MB and trickling took the budget a real 2 MB request needed.
    url, _, _ = rest(max_body_bytes=4 << 20, max_inflight_bytes=4 << 20, socket_timeout=10)
    host, port = url.split("//")[1].split(":")
    liar = socket.create_connection((host, int(port)))
    liar.sendall(b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 3900000\r\n\r\n")
    stop = threading.Event()

    def trickle():  # a byte every 0.2 s: no read ever times out, the rate check ends it
        while not stop.wait(0.2):
            try:
                liar.send(b"[")
            except OSError:
                return

    thread = threading.Thread(target=trickle)
    thread.start()
    try:
        time.sleep(0.5)
        clip = _clip(batch=4, t=8, size=64, seed=3)
        body = _clip_body(clip)
        assert 1.5e6 < len(body) < 4 << 20
        start = time.monotonic()
        status, reply, _ = _post(url, body, timeout=30)
        assert status == 200, reply
        assert time.monotonic() - start < 5
        np.testing.assert_allclose(reply["outputs"]["probabilities"], reference(clip, 1),
                                   atol=1e-6)
    finally:
        stop.set()
        thread.join()
        liar.close()


def test_admission_charges_decoded_tensors_not_only_body_bytes(rest):
    # A compact or compressed body can decode to several times its size (8 bytes for "1,"):
    # the decoded tensors are charged to the budget too, after validation, before building.
    url, _, _ = rest(max_body_bytes=1 << 20, max_inflight_bytes=2 << 20)

    def body(n):
        return (b'{"signature_name": "moments", "inputs": {"values": [[' + b"1," * (n - 1)
                + b'1]]}}')

    big = body(300_000)  # 600 KB of JSON, 2.4 MB of float64: over the 2 MB budget
    assert len(big) < 1 << 20 and 300_000 * 8 + len(big) > 2 << 20
    status, reply, headers = _post(url, big)
    assert status == 503, reply
    assert "tensors are 2400000 bytes decoded" in reply["error"], reply
    assert "X-Request-Id" in headers
    # Gzip makes it 2 KB on the wire; the budget sees what it decodes to.
    packed = gzip.compress(big)
    assert len(packed) < 4000
    status, reply, _ = _post(url, packed, {"Content-Encoding": "gzip"})
    assert status == 503 and "tensors are 2400000 bytes decoded" in reply["error"], reply
    # Requests that fit are served, and release what they were charged: ten in a row.
    for _ in range(10):
        status, reply, _ = _post(url, body(150_000))  # 300 KB + 1.2 MB
        assert status == 200, reply
        assert reply["outputs"] == [1.0]


def test_byte_budget_wakes_a_waiting_body_when_a_worker_thread_gives_back():
    # Worker threads charge and release a request's tensors directly, without a round trip
    # through the event loop; a body waiting on the loop must still be woken by their release.
    budget = _ByteBudget(100)
    assert budget.try_take(80) and not budget.try_take(30) and budget.used == 80

    async def main():
        loop = asyncio.get_running_loop()
        waiting = asyncio.ensure_future(budget.take(30, 10.0))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        giver = threading.Timer(0.05, budget.give, (50,))
        start = loop.time()
        giver.start()
        assert await waiting
        assert loop.time() - start < 5  # woken by the release, not by the 10 s timeout
        giver.join()
        assert budget.used == 60
        start = loop.time()
        assert not await budget.take(50, 0.2)  # nothing given back: refused at the deadline
        assert 0.15 < loop.time() - start < 5
        assert budget.used == 60 and not budget._waiters

    asyncio.run(main())


def test_max_body_bytes_counts_the_body_after_decompression(rest):

    url, _, _ = rest(max_body_bytes=1 << 20, max_inflight_bytes=1 << 20)
    clip = _clip(seed=6)
    status, reply, _ = _post(url, gzip.compress(_clip_body(clip)),
                             {"Content-Encoding": "gzip"})
    assert status == 200, reply
    np.testing.assert_allclose(reply["outputs"]["probabilities"], reference(clip, 1),
                               atol=1e-6)
    bomb = gzip.compress(b'{"inputs": [' + b"0, " * (1 << 20) + b"0]}")  # 3 MB in 3 KB
    assert len(bomb) < 20_000
    status, reply, _ = _post(url, bomb, {"Content-Encoding": "gzip"})
    assert status == 413 and "after decompression" in reply["error"], reply


@pytest.mark.parametrize("name, raw", [
    # Row 5: a GET whose body is itself a request was answered twice (request smuggling).
    ("GET with a body", b"GET /v1/models/tiny HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Content-Length: 49\r\n\r\n"
                        b"GET /v1/models/tiny HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
    ("Transfer-Encoding and Content-Length",
     b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
     b"application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
     b"GET /v1/models/tiny HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
    ("duplicate Content-Length",
     b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
     b"application/json\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}"
     b"GET /v1/models/tiny HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
    ("conflicting Content-Length",
     b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
     b"application/json\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}"
     b"GET /v1/models/tiny HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
])
def test_ambiguous_framing_gets_one_400_and_a_closed_connection(rest, name, raw):
    url, _, _ = rest()
    replies = _exchange(url, raw)
    assert replies.count(b"HTTP/1.") == 1 and replies.split(b" ", 2)[1] == b"400", replies
    _assert_api_error(replies)


def _assert_api_error(reply: bytes):
    """One reply in the API's error shape: JSON {"error": ...} and an X-Request-Id."""
    head, body = reply.split(b"\r\n\r\n", 1)
    headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    assert headers[b"Content-Type"].startswith(b"application/json"), reply
    assert len(headers[b"X-Request-Id"]) == 16, reply
    assert set(json.loads(body)) == {"error"}, reply


@pytest.mark.parametrize("raw, words", [
    # What aiohttp's own parser refuses, before any handler of ours runs.
    (b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: "
     b"chunked\r\n\r\nzz\r\n", b"chunk size"),
    (b"GARBAGE\r\n\r\n", b"method"),
    (b"GET /v1/models/tiny HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20000
     + b"\r\n\r\n", b"8190 bytes"),
])
def test_the_http_parsers_own_refusals_are_api_errors_with_a_request_id(rest, raw, words):
    url, _, _ = rest()
    reply = _exchange(url, raw)
    assert reply.count(b"HTTP/1.") == 1 and reply.split(b" ", 2)[1] == b"400", reply
    _assert_api_error(reply)
    assert words in reply and b"malformed HTTP request" in reply, reply


def test_web_pages_on_other_origins_cannot_drive_a_loopback_server(rest):
    # Row 8: a page POSTing text/plain to 127.0.0.1 got predictions; DNS rebinding (a page's
    # own host name resolving to 127.0.0.1) reached every route.
    url, _, _ = rest(allowed_hosts=("models.internal",))
    body = _clip_body(_clip())
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        status, reply, _ = _post(url, body, {"Content-Type": ctype})
        assert status == 415 and "a POST must be 'application/json'" in reply["error"], reply
    # A fetch() of a Blob body sends no Content-Type at all.
    raw = (b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
           + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    assert _exchange(url, raw).split(b" ", 2)[1] == b"415"
    for host in ("evil.example", "evil.example:" + url.rsplit(":", 1)[1], "127.0.0.2"):
        status, reply, _ = _post(url, body, {"Host": host})
        assert status == 403 and "--rest_allowed_hosts" in reply["error"], (host, reply)
        req = urllib.request.Request(url + "/v1/models/tiny", headers={"Host": host})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 403
    for host in ("localhost", "127.0.0.1", "models.internal:8501"):
        status, reply, _ = _post(url, body, {"Host": host})
        assert status == 200, (host, reply)


def test_unsupported_dtypes_are_invalid_argument(rest):
    # Row 9: a DT_RESOURCE input got "UNKNOWN: Exception calling application: 20".
    _, target, _ = rest()
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for dtype in ("DT_RESOURCE", "DT_VARIANT", "DT_FLOAT_REF", "DT_QINT8"):
            request = predict_pb2.PredictRequest(model_spec={"name": "tiny"})
            request.inputs["rgb"].dtype = getattr(types_pb2, dtype)
            request.inputs["rgb"].tensor_shape.dim.add(size=1)
            with pytest.raises(grpc.RpcError) as e:
                stub.Predict(request, timeout=10)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (dtype, e.value)
            assert f"dtype {dtype} is not supported" in e.value.details()


def test_replies_carry_no_paths_and_unexpected_errors_a_request_id(tmp_path, capfd):
    # Row 10: absolute paths, symlink targets and Python exception text reached clients.
    base = tmp_path / "tiny"
    write_tiny_version(base, 1)
    outside = tmp_path / "elsewhere"
    write_tiny_version(outside, 2)
    os.symlink(outside / "2", base / "2")
    write_tiny_version(base, 3)
    (base / "3" / "saved_model.pb").write_bytes(b"not a SavedModel")
    logs = []
    manager = ModelManager([ModelConfig("tiny", base, ("all",))], max_num_load_retries=0,
                           log=logs.append)
    manager.poll()
    url, target, stop = start_servers(manager)
    try:
        req = urllib.request.Request(url + "/v1/models/tiny")
        with urllib.request.urlopen(req, timeout=10) as r:
            page = r.read().decode()
        assert "outside the model's base path" in page and "could not be loaded" in page
        assert str(tmp_path) not in page and "/elsewhere" not in page, page
        # The server log has the details.
        assert any(str(outside / "2") in m for m in logs)
        assert any("saved_model.pb" in m or str(base / "3") in m for m in logs)

        def boom(*args, **kwargs):
            raise RuntimeError(f"secret state in {tmp_path}")

        manager.predict = boom
        status, reply, headers = _post(url, _clip_body(_clip()))
        rid = headers["X-Request-Id"]
        assert status == 500 and reply == {
            "error": f"internal error (request id {rid}; see the server log)"}
        with grpc.insecure_channel(target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            request = predict_pb2.PredictRequest(model_spec={"name": "tiny"})
            request.inputs["rgb"].CopyFrom(tf.make_tensor_proto(_clip()))
            with pytest.raises(grpc.RpcError) as e:
                stub.Predict(request, timeout=10)
        grpc_rid = dict(e.value.trailing_metadata())["x-request-id"]
        assert e.value.code() == grpc.StatusCode.INTERNAL
        assert e.value.details() == f"internal error (request id {grpc_rid}; see the server log)"
        err = capfd.readouterr().err
        for r in (rid, grpc_rid):
            assert f"request {r}" in err and "secret state in" in err
    finally:
        stop()
        manager.close()


# --- the model directory under faults -------------------------------------------------------

def _manager(base, **kwargs):
    logs = []
    manager = ModelManager([ModelConfig("tiny", base)], log=logs.append, **kwargs)
    return manager, logs


def test_a_failed_poll_keeps_the_loaded_versions(tmp_path):
    # Row 6: the base path renamed away for 3 s unloaded every version.
    base = tmp_path / "tiny"
    write_tiny_version(base, 1)
    manager, logs = _manager(base)
    manager.poll()
    url, _, stop = start_servers(manager)
    try:
        os.rename(base, tmp_path / "moved")
        manager.poll()
        assert manager.available() == {"tiny": [1]}
        assert any("poll of model 'tiny' failed" in m for m in logs)
        clip = _clip(seed=4)
        status, reply, _ = _post(url, _clip_body(clip))
        assert status == 200
        np.testing.assert_allclose(reply["outputs"]["probabilities"], reference(clip, 1),
                                   atol=1e-6)
        os.rename(tmp_path / "moved", base)
        write_tiny_version(base, 2)
        manager.poll()
        assert manager.available() == {"tiny": [2]}
    finally:
        stop()
        manager.close()


def test_a_version_that_fails_to_load_is_retried(tmp_path):
    # Row 7: a version directory caught half copied was never retried.
    base = tmp_path / "tiny"
    write_tiny_version(base, 1)
    complete = write_tiny_version(tmp_path / "staging", 2)
    manager, logs = _manager(base, max_num_load_retries=3, load_retry_interval_s=0.2)
    try:
        manager.poll()
        shutil.copytree(complete / "variables", base / "2" / "variables")  # no saved_model.pb
        manager.poll()
        assert manager.available() == {"tiny": [1]}
        shutil.copytree(complete, base / "2", dirs_exist_ok=True)
        manager.poll()  # before the retry interval: not tried again yet
        assert manager.available() == {"tiny": [1]}
        time.sleep(0.25)
        manager.poll()
        assert manager.available() == {"tiny": [2]}
        assert any("(attempt 1; retrying in 0.2 s)" in m for m in logs)
        # A version that never loads is tried 1 + max_num_load_retries times, then left. While
        # it waits for a retry its status is LOADING with an OK status, as TF Serving's (its
        # retries run inside LoaderHarness::Load); END and the error come after the last try.
        (base / "3").mkdir()
        spec = predict_pb2.PredictRequest(model_spec={"name": "tiny", "version": {"value": 3}}).model_spec
        seen = []
        for _ in range(8):
            manager.poll()
            status = manager.status(spec).model_version_status[0]
            seen.append((status.state, status.status.error_code, status.status.error_message))
            time.sleep(0.21)
        tries = [m for m in logs if m.startswith("Failed to load version 3")]
        assert len(tries) == 4 and "not retried again" in tries[-1], tries
        assert manager.available() == {"tiny": [2]}
        loading, end = seen[0], seen[-1]
        assert loading == (STATE.LOADING, 0, ""), seen
        assert end[:2] == (STATE.END, grpc.StatusCode.UNKNOWN.value[0]), seen
        assert "Failed to load version 3 of 'tiny'" in end[2], seen
        assert seen.index(end) >= 3 and set(seen[:seen.index(end)]) == {loading}, seen
    finally:
        manager.close()


def test_version_directories_beyond_int64_are_ignored_and_export_refuses_them(tmp_path):
    from export.saved_model import ExportError, resolve_version_dir

    base = tmp_path / "tiny"
    write_tiny_version(base, 1)
    shutil.copytree(base / "1", base / str(2**63))  # one past int64: not a TF Serving version
    manager, _ = _manager(base)
    try:
        manager.poll()
        assert manager.available() == {"tiny": [1]}
        status = manager.status(predict_pb2.PredictRequest(model_spec={"name": "tiny"})
                                .model_spec)
        assert [s.version for s in status.model_version_status] == [1]
    finally:
        manager.close()
    with pytest.raises(ExportError, match=r"version=9223372036854775808; expected .* 2\^63 - 1"):
        resolve_version_dir(tmp_path, "tiny", 2**63)
    assert resolve_version_dir(tmp_path, "tiny", None) == base / "2"
    (base / str(2**63 - 1)).mkdir()
    with pytest.raises(ExportError, match=r"no version after 9223372036854775807"):
        resolve_version_dir(tmp_path, "tiny", None)


def test_unloading_waits_for_requests_in_flight_a_bounded_time(tmp_path):
    base = tmp_path / "tiny"
    write_tiny_version(base, 1)
    manager, logs = _manager(base, unload_timeout_s=0.5)
    manager.poll()
    held = manager.acquire("tiny")  # a request that never finishes
    shutil.rmtree(base / "1")
    write_tiny_version(base, 2)
    poll = threading.Thread(target=manager.poll)
    start = time.monotonic()
    poll.start()
    poll.join(20)
    try:
        assert not poll.is_alive(), "the unload waited for the stuck request forever"
        assert 0.4 < time.monotonic() - start < 20
        assert manager.available() == {"tiny": [2]}
        assert any("with 1 request(s) still running after 0.5 s" in m for m in logs)
    finally:
        manager.release(held)
        manager.close()


def test_a_second_grpc_server_cannot_share_the_port(tiny_base):
    manager = ModelManager([ModelConfig("tiny", tiny_base)], log=lambda m: None)
    server, port = make_grpc_server(manager, Metrics(), "127.0.0.1", 0)
    try:
        with pytest.raises(OSError, match=f"cannot bind gRPC to 127.0.0.1:{port}"):
            make_grpc_server(manager, Metrics(), "127.0.0.1", port)
    finally:
        server.stop(None)
        manager.close()
