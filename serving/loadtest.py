"""Load test: N concurrent clients against a server on 127.0.0.1, next to in-process calls.

    python -m serving.loadtest --model_base_path=/srv/models/tresnet_small \\
        --model_name=tresnet_small --clients=1,8,32,64 --enable_batching \\
        --batching_parameters_file=serving/batching.config

Starts `python -m serving.dev_server` on free loopback ports with the given model (or uses a
running server: `--rest=http://127.0.0.1:8501 --grpc=127.0.0.1:8500`), then for each N runs N
client threads, each sending one clip (1, T, H, W, 3) uint8 per request over REST (JSON,
keep-alive connection) and over gRPC (the official stub) -- raw uint8 frames to serving_default,
or with `--encoding=jpeg` JPEG frames to the encoded-frames signature -- until `--requests` requests or
`--max_seconds` have passed, and reports throughput, p50/p99 latency and errors. The baseline
runs the same signature in this process through the same TF1 session loader with N threads
(no network, no serialisation, no batching), in the same run, so the ratio is measured on the
same machine under the same load.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from . import cli  # noqa: E402
from .client import ENCODED_INPUT, ENCODED_SIGNATURE, _json_tensor, encode_jpeg  # noqa: E402
from .errors import ServingError  # noqa: E402

PROG = "python -m serving.loadtest"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_clients(n: int, call, requests: int, max_seconds: float) -> dict:
    """N threads calling `call()` until `requests` calls are made or time is up."""
    latencies, errors, lock = [], [], threading.Lock()
    budget = [requests]
    deadline = time.monotonic() + max_seconds

    def worker():
        state = {}
        while time.monotonic() < deadline:
            with lock:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
            t = time.perf_counter()
            try:
                call(state)
            except Exception as e:  # counted and reported, never fatal to the run
                with lock:
                    errors.append(f"{type(e).__name__}: {e}"[:200])
                continue
            with lock:
                latencies.append(time.perf_counter() - t)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(n)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return _summary(n, latencies, errors, elapsed)


def _summary(n, latencies, errors, elapsed) -> dict:
    lat = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {"clients": n, "ok": len(latencies), "errors": len(errors),
            "first_errors": errors[:3], "seconds": elapsed, "latencies": list(latencies),
            "error_list": list(errors),
            "throughput": len(latencies) / elapsed if elapsed else 0.0,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def merge(rows: list[dict]) -> dict:
    """One summary of several rounds of the same N and path."""
    return _summary(rows[0]["clients"], [x for r in rows for x in r["latencies"]],
                    [x for r in rows for x in r["error_list"]], sum(r["seconds"] for r in rows))


def request(frames: int, size: int, encoding: str = "raw"):
    """(signature, inputs, REST body) for one synthetic clip (1, frames, size, size, 3).

    The clip is a moving gradient with mild noise, so JPEG sizes are like real video's.
    """
    rng = np.random.RandomState(0)
    y, x = np.mgrid[:size, :size].astype(np.float32)
    clip = np.stack([np.stack([(x * 2 + y + 8 * t) % 256, (y * 2 + 4 * t) % 256,
                               (x + y * 0.5 + 16 * t) % 256], axis=-1) for t in range(frames)])
    clip = np.clip(clip + rng.normal(0, 4, clip.shape), 0, 255).astype(np.uint8)[None]
    if encoding == "raw":
        inputs = {"rgb": clip}
        return "serving_default", inputs, json.dumps({"inputs": {"rgb": clip.tolist()}}).encode()
    encoded = np.empty((1, frames), dtype=object)
    encoded[0, :] = encode_jpeg(clip[0])
    body = json.dumps({"signature_name": ENCODED_SIGNATURE,
                       "inputs": {ENCODED_INPUT: _json_tensor(encoded)}}).encode()
    return ENCODED_SIGNATURE, {ENCODED_INPUT: encoded}, body


def rest_call(url: str, model: str, body: bytes, timeout: float):
    parsed = urllib.parse.urlsplit(url)
    path = f"/v1/models/{model}:predict"

    def call(state):
        conn = state.get("conn")
        if conn is None:
            conn = state["conn"] = http.client.HTTPConnection(parsed.hostname, parsed.port,
                                                              timeout=timeout)
        try:
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            state.pop("conn", None)
            raise
        if resp.status != 200:
            raise ServingError(f"HTTP {resp.status}: {data[:200]!r}")
        json.loads(data)

    return call


def grpc_call(target: str, model: str, inputs: dict, timeout: float,
              signature: str = "serving_default"):
    import grpc  # deferred: the serving extra, off --help and the REST-only paths
    import tensorflow as tf  # deferred: loads TensorFlow
    # deferred: the serving extra (loads TensorFlow)
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", -1),
                                                     ("grpc.max_receive_message_length", -1)])
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for k, v in inputs.items():
        request.inputs[k].CopyFrom(tf.make_tensor_proto(v))

    def call(state):
        stub.Predict(request, timeout=timeout)

    return call


def in_process_call(servable, inputs: dict, signature: str = "serving_default"):
    def call(state):
        servable.predict(signature, inputs)

    return call


def wait_ready(url: str, model: str, proc, timeout: float = 300):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise ServingError(f"the dev server exited with code {proc.returncode}; run "
                               "python -m serving.dev_server with the same flags to see why")
        try:
            with socket.create_connection((urllib.parse.urlsplit(url).hostname,
                                           urllib.parse.urlsplit(url).port), timeout=1):
                pass
            conn = http.client.HTTPConnection(urllib.parse.urlsplit(url).hostname,
                                              urllib.parse.urlsplit(url).port, timeout=5)
            conn.request("GET", f"/v1/models/{model}")
            resp = conn.getresponse()
            if resp.status == 200 and b"AVAILABLE" in resp.read():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise ServingError(f"{url}: model {model!r} not available after {timeout:g} s")


def format_table(rows: list[dict]) -> str:
    out = ["| N | path | requests | errors | req/s | p50 ms | p99 ms | vs in-process |",
           "|---|---|---|---|---|---|---|---|"]
    base = {r["clients"]: r["throughput"] for r in rows if r["path"] == "in-process"}
    for r in rows:
        ratio = r["throughput"] / base[r["clients"]] if base.get(r["clients"]) else float("nan")
        out.append(f"| {r['clients']} | {r['path']} | {r['ok'] + r['errors']} | {r['errors']} | "
                   f"{r['throughput']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                   f"{ratio:.2f}x |")
    return "\n".join(out)


def define_flags(f):
    d = dict(flag_values=f)
    F = cli.flags
    F.DEFINE_string("model_base_path", None, "The model's directory (version dirs inside); the "
                    "in-process baseline loads its highest version.", **d)
    F.DEFINE_string("model_name", None, "The model's name on the server.", **d)
    F.DEFINE_string("rest", None, "A running server's REST URL (else one is started).", **d)
    F.DEFINE_string("grpc", None, "A running server's gRPC target.", **d)
    F.DEFINE_string("before_rest", None, "Another running server's REST URL (e.g. an earlier "
                    "version), measured in the same rounds as path rest-before.", **d)
    F.DEFINE_string("before_grpc", None, "Another running server's gRPC target (grpc-before).",
                    **d)
    F.DEFINE_list("clients", ["1", "8", "32", "64"], "Comma-separated N.", **d)
    F.DEFINE_integer("requests", 256, "Requests per N and path (bound).", **d)
    F.DEFINE_float("max_seconds", 60, "Time per N and path (bound).", **d)
    F.DEFINE_integer("frames", 8, "Frames per clip.", **d)
    F.DEFINE_integer("size", 64, "Frame height and width.", **d)
    F.DEFINE_enum("encoding", "raw", ["raw", "jpeg"], "Raw uint8 frames to serving_default, or "
                  "JPEG frames to the export's encoded-frames signature (what serving.client "
                  "sends).", **d)
    F.DEFINE_float("timeout", 60, "Per-request timeout, seconds.", **d)
    F.DEFINE_boolean("enable_batching", False, "Passed to the started server.", **d)
    F.DEFINE_string("batching_parameters_file", None, "Passed to the started server.", **d)
    F.DEFINE_list("paths", ["in-process", "rest", "grpc"], "Paths to measure (add rest-before, "
                  "grpc-before with --before_rest/--before_grpc).", **d)
    F.DEFINE_integer("rounds", 4, "The paths alternate in this many rounds (the order rotates each "
                     "round).", **d)
    F.mark_flags_as_required(["model_base_path", "model_name"], flag_values=f)


def main(argv=None):
    args = cli.parse(define_flags, PROG, argv, __doc__)
    from .models import disk_versions  # deferred: loads TensorFlow (--help stays fast)
    from .servable import Servable  # deferred: loads TensorFlow (--help stays fast)

    try:
        ns = [int(n) for n in args.clients]
        versions = disk_versions(Path(args.model_base_path))
    except (ValueError, OSError) as e:
        cli.fail(PROG, f"--clients={args.clients} / --model_base_path={args.model_base_path}: "
                       f"{e}")
    if not versions:
        cli.fail(PROG, f"no version directory in --model_base_path={args.model_base_path}")
    signature, inputs, body = request(args.frames, args.size, args.encoding)
    paths = list(args.paths) + [p for p, url in (("rest-before", args.before_rest),
                                                 ("grpc-before", args.before_grpc))
                                if url and p not in args.paths]

    proc = None
    rest, target = args.rest, args.grpc
    if rest is None or target is None:
        rest_port, grpc_port = _free_port(), _free_port()
        cmd = [sys.executable, "-m", f"{__package__}.dev_server",
               f"--model_name={args.model_name}",
               f"--model_base_path={args.model_base_path}", f"--port={grpc_port}",
               f"--rest_api_port={rest_port}", "--file_system_poll_wait_seconds=0"]
        if args.enable_batching:
            cmd.append("--enable_batching")
        if args.batching_parameters_file:
            cmd.append(f"--batching_parameters_file={args.batching_parameters_file}")
        proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        rest, target = f"http://127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_port}"
        print("server:", " ".join(cmd[1:]), flush=True)
    try:
        try:
            wait_ready(rest, args.model_name, proc)
        except ServingError as e:  # a wrong --rest/--model_name, or a server that would not start
            cli.fail(PROG, e)
        servable = Servable(args.model_name, max(versions), versions[max(versions)], batching=None)
        calls = {"in-process": in_process_call(servable, inputs, signature),
                 "rest": rest_call(rest, args.model_name, body, args.timeout),
                 "grpc": grpc_call(target, args.model_name, inputs, args.timeout, signature)}
        if args.before_rest:
            calls["rest-before"] = rest_call(args.before_rest, args.model_name, body, args.timeout)
        if args.before_grpc:
            calls["grpc-before"] = grpc_call(args.before_grpc, args.model_name, inputs,
                                             args.timeout, signature)
        unknown = sorted(set(paths) - set(calls))
        if unknown:
            cli.fail(PROG, f"--paths has {unknown}; known here: {sorted(calls)}")
        calls = {p: calls[p] for p in paths}
        for call in calls.values():  # first calls pay for graph set-up, not measured
            call({})
        rows = []
        for n in ns:
            # Paths take turns in short rounds, so a change in the machine's load (other
            # processes) hits all of them alike instead of biasing the ratio. The order rotates
            # each round: in a fixed order, whichever path ran right after in-process measured
            # ~0.1x lower at N=1 (REST before and after, swapped, in the same session).
            parts = {path: [] for path in paths}
            for r in range(args.rounds):
                for path in paths[r % len(paths):] + paths[:r % len(paths)]:
                    parts[path].append(run_clients(n, calls[path], args.requests // args.rounds,
                                                   args.max_seconds / args.rounds))
            for path in paths:
                row = merge(parts[path])
                row["path"] = path
                rows.append(row)
                print(f"N={n:<3d} {path:<10s} {row['throughput']:7.1f} req/s  p50 "
                      f"{row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  errors "
                      f"{row['errors']} {row['first_errors'][:1]}", flush=True)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    print()
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}; "
          f"clip of {args.frames} frames {args.size}x{args.size} sent as {args.encoding} to "
          f"{signature}; REST body {len(body)} bytes")
    print(format_table(rows))
    return rows


if __name__ == "__main__":
    main()
