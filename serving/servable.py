"""One loaded version of one model: a SavedModel in its own graph and session, as TF Serving
loads it (the TF1 session loader, `tf.compat.v1.saved_model.loader.load`, tag `serve`)."""

from __future__ import annotations

import os
from concurrent import futures
from pathlib import Path

import grpc
import tensorflow as tf
from tensorflow.python.util import deprecation
from tensorflow_serving.apis import prediction_log_pb2

from .batching import BatchOptions, BatchScheduler
from .errors import ServingError, invalid
from .tensors import protos_to_inputs

DEFAULT_SIGNATURE = "serving_default"
MAX_BODY_BYTES = 32 * 1024 * 1024  # a 16x224x298 clip is ~10 MB of JSON, 3.2 MB of gRPC
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


class LoadError(Exception):
    """A version that cannot be served; the message holds no path (clients read it)."""


def _status_code(error_code: int) -> grpc.StatusCode:
    return next((c for c in grpc.StatusCode if c.value[0] == error_code),
                grpc.StatusCode.INVALID_ARGUMENT)


class Servable:
    """One version of one model, loaded with the TF1 session loader as TF Serving loads it."""

    def __init__(self, name: str, version: int, path: Path, *, batching: BatchOptions | None,
                 max_tensor_bytes: int = MAX_BODY_BYTES):
        self.name, self.version, self.path = name, version, path
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        # TF Serving's own loader, on purpose: its deprecation notice is not the user's business.
        with self.graph.as_default(), deprecation.silence():
            meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], str(path))
        self.signature_defs = dict(meta.signature_def)
        self.signatures = {k: s for k, s in self.signature_defs.items() if s.inputs}
        if not self.signatures:
            self.session.close()
            raise LoadError("the SavedModel has no signature with inputs; expected a Predict "
                            "SignatureDef such as serving_default")
        self._feeds = {k: {a: self.graph.get_tensor_by_name(i.name) for a, i in s.inputs.items()}
                       for k, s in self.signatures.items()}
        self._fetches = {k: {a: self.graph.get_tensor_by_name(i.name)
                             for a, i in s.outputs.items()} for k, s in self.signatures.items()}
        self.max_tensor_bytes = max_tensor_bytes
        self.scheduler = (BatchScheduler(self._run_key, batching, f"{name}-{version}")
                          if batching else None)
        self.in_flight = 0  # guarded by ModelManager's lock

    def signature(self, name: str):
        name = name or DEFAULT_SIGNATURE
        sig = self.signatures.get(name)
        if sig is None:
            raise invalid(f'Serving signature name: "{name}" not found in signature def '
                          f"(this model has {sorted(self.signatures)})")
        return name, sig

    def _session_run(self, signature, inputs, output_filter=(), timeout_ms=0):
        fetches = self._fetches[signature]
        if output_filter:
            unknown = sorted(set(output_filter) - set(fetches))
            if unknown:
                raise invalid(f"output_filter {unknown} are not outputs of {signature!r}; it has "
                              f"{sorted(fetches)}")
            fetches = {k: fetches[k] for k in output_filter}
        feed = {self._feeds[signature][k]: v for k, v in inputs.items()}
        options = tf.compat.v1.RunOptions(timeout_in_ms=timeout_ms) if timeout_ms else None
        try:
            return self.session.run(fetches, feed_dict=feed, options=options)
        except tf.errors.OpError as e:
            # The op's message names the bad value (TF Serving forwards it too); the first line
            # only: the rest is the graph's node and stack context.
            raise ServingError(e.message.strip().splitlines()[0],
                               _status_code(e.error_code)) from None

    def _run_key(self, key, inputs):
        return self._session_run(key[0], inputs, key[2])

    def predict(self, signature: str, inputs: dict, output_filter=(), timeout_s: float = 0):
        """Validated inputs -> outputs, through the batch scheduler when batching is on."""
        timeout_ms = int(timeout_s * 1000) if timeout_s else 0
        if self.scheduler is None or not inputs or any(a.ndim == 0 for a in inputs.values()):
            return self._session_run(signature, inputs, tuple(output_filter), timeout_ms)
        sizes = {a.shape[0] for a in inputs.values()}
        if len(sizes) != 1:
            raise invalid(f"inputs have different batch sizes {sorted(sizes)}; batching needs "
                          "one 0th dimension")
        key = (signature, tuple(sorted((k, a.shape[1:], a.dtype.str) for k, a in inputs.items())),
               tuple(output_filter))
        future = self.scheduler.submit(key, inputs)
        try:
            return future.result(timeout=timeout_s or None)
        except futures.TimeoutError:
            raise ServingError(f"the request did not finish within {timeout_s:g} s",
                               grpc.StatusCode.DEADLINE_EXCEEDED) from None

    def replay_warmup(self) -> int:
        """Replays assets.extra/tf_serving_warmup_requests; raises LoadError on a failure."""
        path = self.path / WARMUP_FILE
        if not path.exists():
            return 0
        n = 0
        for i, record in enumerate(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()):
            where = f"warmup record {i}"
            try:
                log = prediction_log_pb2.PredictionLog.FromString(record)
            except Exception:  # protobuf raises DecodeError; never serve on a bad file
                raise LoadError(f"{where} is not a PredictionLog") from None
            if log.WhichOneof("log_type") != "predict_log":
                raise LoadError(f"{where} is a {log.WhichOneof('log_type')}; the dev server "
                                "replays predict_log records only")
            request = log.predict_log.request
            try:
                name, sig = self.signature(request.model_spec.signature_name)
                self._session_run(name, protos_to_inputs(request.inputs, dict(sig.inputs), name,
                                                         self.max_tensor_bytes))
            except ServingError as e:
                raise LoadError(f"{where} failed: {e}") from None
            n += 1
        return n

    def close(self):
        if self.scheduler is not None:
            self.scheduler.stop()
        self.session.close()
