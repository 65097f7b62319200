"""A tiny SavedModel with tfzoo's serving signature, for server tests that need many versions.

`write_tiny_version(base, version)` writes BASE/VERSION/ in a fraction of a second (a Keras
export takes ~20 s), with plain tf.Variables so TF Serving's session loader restores it, and
the warmup records `python -m export` writes. Version v's weights are seeded with v and its
first logit is offset by v, so `reference(rgb, v)` tells which version answered.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from export.warmup import constant_tensor_proto, prediction_log_bytes, write_warmup_file
from serving.grpc_api import make_grpc_server
from serving.metrics import Metrics
from serving.rest import RestApi, make_http_server

CLASSES = np.array([b"biking", b"surfing", b"juggling"])


class _Tiny(tf.Module):
    def __init__(self, version: int):
        super().__init__()
        rng = np.random.RandomState(version)
        self.w = tf.Variable(rng.normal(size=(3, 3)).astype(np.float32))
        self.b = tf.Variable(np.array([version, 0, 0], np.float32))

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, None, 3), tf.uint8, "rgb")])
    def serve(self, rgb):
        x = tf.reduce_mean(tf.cast(rgb, tf.float32) / 255.0, axis=[1, 2, 3])
        logits = tf.matmul(x, self.w) + self.b
        probs = tf.nn.softmax(logits)
        top = tf.math.top_k(probs, k=3)
        return {"probabilities": probs, "top_k_indices": top.indices,
                "top_k_labels": tf.gather(tf.constant(CLASSES), top.indices)}

    @tf.function(input_signature=[tf.TensorSpec((None, None), tf.string, "frames")])
    def lengths(self, frames):
        # Stands in for an encoded-frames signature: a (B, T) string tensor in, per-clip data out.
        return {"total_bytes": tf.reduce_sum(tf.strings.length(frames), axis=1),
                "first_bytes": frames[:, 0]}

    @tf.function(input_signature=[tf.TensorSpec((None, None), tf.float64, "values")])
    def moments(self, values):
        # A float64 input: its decoded size is 8 bytes a number, 2-4x a compact JSON body.
        return {"mean": tf.reduce_mean(values, axis=1)}


def reference(rgb: np.ndarray, version: int) -> np.ndarray:
    """What version `version` returns as probabilities, computed with numpy."""
    rng = np.random.RandomState(version)
    w = rng.normal(size=(3, 3)).astype(np.float32)
    x = (rgb.astype(np.float32) / 255.0).mean(axis=(1, 2, 3))
    logits = x @ w + np.array([version, 0, 0], np.float32)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def write_tiny_version(base, version: int, *, warmup: str = "ok") -> Path:
    """BASE/VERSION written atomically (temp dir + rename, as `python -m export` does).

    warmup: "ok" (one valid request per signature), "bad" (a request for a missing input, so
    loading must fail) or "none".
    """
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    module = _Tiny(version)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=base))
    try:
        tf.saved_model.save(module, str(tmp), signatures={
            "serving_default": module.serve, "lengths": module.lengths,
            "moments": module.moments})
        if warmup != "none":
            name = "rgb" if warmup == "ok" else "video"
            records = [prediction_log_bytes("tiny", "serving_default", {
                name: constant_tensor_proto((1, 2, 4, 4, 3), "uint8", 128)})]
            write_warmup_file(tmp, records)
        os.chmod(tmp, 0o755)
        os.rename(tmp, base / str(version))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return base / str(version)


def start_servers(manager, **rest_kwargs):
    """REST and gRPC on free loopback ports; returns (url, grpc target, stop)."""
    metrics = Metrics()
    api = RestApi(manager, metrics, prometheus_path=rest_kwargs.pop("prometheus_path", None))
    rest = make_http_server(api, "127.0.0.1", 0, **rest_kwargs)
    server, port = make_grpc_server(manager, metrics, "127.0.0.1", 0)

    def stop():
        rest.stop()
        server.stop(None)

    return f"http://127.0.0.1:{rest.port}", f"127.0.0.1:{port}", stop
