"""A small development stand-in for TensorFlow Serving: its gRPC and REST APIs and semantics.

TF Serving ships as the `tensorflow/serving` Docker image; where Docker is not available (CI,
laptops) this server lets clients exercise the same protocols. It loads SavedModels as TF
Serving does (the TF1 session loader, `tf.compat.v1.saved_model.loader.load`, in its own graph
and session; warmup records replayed, a version whose warmup fails is not served), polls the
model directories for new and removed versions, and answers with TF Serving's status codes,
messages and JSON. It needs no tfzoo (only its start-up log filter, when installed). Not for production: no auth, one process.

    python -m serving.dev_server --model_name=tresnet50 --model_base_path=/srv/models/tresnet50
    python -m serving.dev_server --model_config_file=serving/models.config \\
        --allow_version_labels_for_unavailable_models --enable_batching \\
        --batching_parameters_file=serving/batching.config \\
        --monitoring_config_file=serving/monitoring.config

gRPC (--port, 8500): tensorflow.serving.PredictionService/{Predict, GetModelMetadata} and
ModelService/GetModelStatus, served with grpcio and the `tensorflow_serving.apis` servicers.
REST (--rest_api_port, 8501; https://www.tensorflow.org/tfx/serving/api_rest):
  GET  /v1/models/NAME[/versions/N | /labels/L]            version status
  GET  /v1/models/NAME[/versions/N | /labels/L]/metadata   signature defs
  POST /v1/models/NAME[/versions/N | /labels/L]:predict    "instances" or "inputs" JSON
  GET  /monitoring/prometheus/metrics                      with --monitoring_config_file
Errors are {"error": "..."} with TF Serving's codes (400 for a bad request, 404 for an unknown
model or version, 503 when busy, ...), including malformed HTTP (408, 411, 413, 414, 431, 501).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import socket
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote_to_bytes

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
try:  # TF's C++ start-up lines ignore TF_CPP_MIN_LOG_LEVEL; tfzoo filters them when installed
    from tfzoo.errors import quiet_tensorflow_start_up
except ImportError:  # the server itself needs no tfzoo
    pass
else:
    quiet_tensorflow_start_up()

import grpc  # noqa: E402
import tensorflow as tf  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    get_model_metadata_pb2, get_model_status_pb2, model_pb2, model_service_pb2_grpc,
    predict_pb2, prediction_log_pb2, prediction_service_pb2_grpc)

from serving import protos  # noqa: E402
from serving.batching import BatchOptions, BatchScheduler  # noqa: E402
from serving.errors import ServingError, StatusCode, invalid  # noqa: E402
from serving.tensors import (  # noqa: E402
    check_inputs, json_to_inputs, loads, outputs_to_json, proto_to_array)

DEFAULT_SIGNATURE = "serving_default"
LINGER_SECONDS = 5.0
MAX_BODY_BYTES = 32 * 1024 * 1024       # a 16x224x298 clip is ~10 MB of JSON, 3.2 MB of gRPC
MAX_INFLIGHT_BYTES = 128 * 1024 * 1024  # large bodies read/parsed at once (admission control)
LARGE_BODY_BYTES = 1024 * 1024          # bodies above this need admission; small ones never wait
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
_STATE = get_model_status_pb2.ModelVersionStatus.State


def _log(message: str):
    print(f"dev_server: {message}", file=sys.stderr, flush=True)


# --- one loaded version ---------------------------------------------------------------------

class Servable:
    """One version of one model, loaded with the TF1 session loader as TF Serving loads it."""

    def __init__(self, name: str, version: int, path: Path, *, batching: BatchOptions | None,
                 max_tensor_bytes: int = MAX_BODY_BYTES):
        self.name, self.version, self.path = name, version, path
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        # TF Serving's own loader, on purpose: its deprecation notice is not the user's business.
        from tensorflow.python.util import deprecation

        with self.graph.as_default(), deprecation.silence():
            meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], str(path))
        self.signature_defs = dict(meta.signature_def)
        self.signatures = {k: s for k, s in self.signature_defs.items() if s.inputs}
        if not self.signatures:
            raise ValueError(f"{path} has no signature with inputs; expected a Predict "
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
            code = StatusCode.INVALID_ARGUMENT
            for c in StatusCode:
                if c.value[0] == e.error_code:
                    code = c
            raise ServingError(code, e.message.strip().splitlines()[0]) from None
        except (ValueError, TypeError) as e:
            raise invalid(str(e)) from None

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
            raise ServingError(StatusCode.DEADLINE_EXCEEDED,
                               f"the request did not finish within {timeout_s:g} s") from None

    def replay_warmup(self) -> int:
        """Replays assets.extra/tf_serving_warmup_requests; raises ValueError on a failure."""
        path = self.path / WARMUP_FILE
        if not path.exists():
            return 0
        n = 0
        for i, record in enumerate(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()):
            where = f"warmup record {i} of {path}"
            try:
                log = prediction_log_pb2.PredictionLog.FromString(record)
            except Exception as e:  # protobuf raises DecodeError; never serve on a bad file
                raise ValueError(f"{where} is not a PredictionLog ({e})") from None
            if log.WhichOneof("log_type") != "predict_log":
                raise ValueError(f"{where} is a {log.WhichOneof('log_type')}; the dev server "
                                 "replays predict_log records only")
            request = log.predict_log.request
            try:
                name, sig = self.signature(request.model_spec.signature_name)
                arrays = {k: proto_to_array(k, v, self.max_tensor_bytes)
                          for k, v in request.inputs.items()}
                self._session_run(name, check_inputs(arrays, dict(sig.inputs), name))
            except ServingError as e:
                raise ValueError(f"{where} failed: {e}") from None
            n += 1
        return n

    def close(self):
        if self.scheduler is not None:
            self.scheduler.stop()
        self.session.close()


# --- versions of the configured models ------------------------------------------------------

@dataclass
class ModelConfig:
    name: str
    base_path: Path
    policy: tuple = ("latest", 1)       # ("latest", n) | ("all",) | ("specific", frozenset)
    labels: dict = field(default_factory=dict)


@dataclass
class _Version:
    state: int
    servable: Servable | None = None
    error: ServingError | None = None


def read_model_config_file(path) -> list[ModelConfig]:
    """ModelServerConfig text proto (TF Serving's --model_config_file) -> ModelConfigs."""
    config = protos.parse_text_file(path, protos.model_server_config(), "--model_config_file")
    if config.WhichOneof("config") != "model_config_list":
        raise ValueError(f"--model_config_file={path}: expected a model_config_list")
    out = []
    for c in config.model_config_list.config:
        if not c.name or not c.base_path:
            raise ValueError(f"--model_config_file={path}: every config needs a name and a "
                             f"base_path (got name={c.name!r}, base_path={c.base_path!r})")
        if c.model_platform not in ("", "tensorflow"):
            raise ValueError(f"model {c.name!r}: model_platform {c.model_platform!r}; the dev "
                             "server serves 'tensorflow' SavedModels only")
        policy = c.model_version_policy
        kind = policy.WhichOneof("policy_choice")
        if kind == "all":
            p = ("all",)
        elif kind == "specific":
            if not policy.specific.versions:
                raise ValueError(f"model {c.name!r}: specific version policy lists no versions")
            p = ("specific", frozenset(int(v) for v in policy.specific.versions))
        else:
            p = ("latest", int(policy.latest.num_versions) or 1)
        out.append(ModelConfig(c.name, Path(c.base_path), p, dict(c.version_labels)))
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ValueError(f"--model_config_file={path}: model names repeat: {names}")
    if not out:
        raise ValueError(f"--model_config_file={path}: no model configured")
    return out


def _disk_versions(base: Path) -> dict[int, Path]:
    """All-digit version directories of a model (TF Serving ignores any other name)."""
    try:
        entries = list(base.iterdir())
    except OSError:
        return {}
    return {int(p.name): p for p in entries
            if p.name.isascii() and p.name.isdigit() and p.is_dir()}


class ModelManager:
    """The configured models, their versions (polled from disk) and version labels."""

    def __init__(self, configs: list[ModelConfig], *, batching: BatchOptions | None = None,
                 warmup: bool = True, allow_labels_for_unavailable: bool = False,
                 max_tensor_bytes: int = MAX_BODY_BYTES, log=_log):
        self.configs = {c.name: c for c in configs}
        self.batching, self.warmup, self.log = batching, warmup, log
        self.max_tensor_bytes = max_tensor_bytes
        self._lock = threading.Condition()
        self._versions: dict[str, dict[int, _Version]] = {c.name: {} for c in configs}
        for c in configs:
            if not c.base_path.is_dir():
                raise ValueError(f"model {c.name!r}: base_path {str(c.base_path)!r} is not a "
                                 "directory; expected the directory holding its version "
                                 "directories (BASE_PATH/1/saved_model.pb)")
            if c.labels and not allow_labels_for_unavailable:
                # As TF Serving: at start-up no version is available yet, so labels need the flag.
                raise ValueError(
                    f"model {c.name!r}: version_labels {c.labels} are assigned at start-up, "
                    "before any version is available; TF Serving refuses that without "
                    "--allow_version_labels_for_unavailable_models (pass it, as docs/serving.md "
                    "does)")
        self._poller = None
        self._stop = threading.Event()

    # loading -----------------------------------------------------------------------------
    def poll(self):
        """One pass over every model's base path: load aspired versions, unload the others."""
        for c in self.configs.values():
            on_disk = _disk_versions(c.base_path)
            if c.policy[0] == "latest":
                aspired = set(sorted(on_disk)[-c.policy[1]:]) if on_disk else set()
            elif c.policy[0] == "all":
                aspired = set(on_disk)
            else:
                aspired = set(on_disk) & c.policy[1]
            with self._lock:
                known = self._versions[c.name]
                for v in [v for v, s in known.items() if s.error is not None and v not in on_disk]:
                    del known[v]  # a failed version that was removed may come back and load
                new = sorted(v for v in aspired if v not in known
                             or (known[v].state == _STATE.END and known[v].error is None))
            # New versions load before old ones unload, so a model never goes unavailable.
            for v in new:
                self._load(c, v, on_disk[v])
            with self._lock:
                gone = [v for v, s in known.items() if s.state == _STATE.AVAILABLE
                        and v not in aspired]
                if c.policy[0] == "latest" and not any(
                        s.state == _STATE.AVAILABLE for v, s in known.items() if v in aspired):
                    # Keep serving the old version until a newer one is available.
                    gone = [v for v in gone if on_disk.get(v) is None]
                for v in gone:
                    known[v].state = _STATE.UNLOADING
            for v in gone:
                self._unload(c.name, v)

    def _load(self, c: ModelConfig, version: int, path: Path):
        with self._lock:
            self._versions[c.name][version] = _Version(_STATE.LOADING)
        servable, error = None, None
        try:
            real, base = path.resolve(), c.base_path.resolve()
            if not real.is_relative_to(base):
                raise ValueError(f"{path} resolves to {real}, outside the model's base path "
                                 f"{base}; refusing to load it")
            servable = Servable(c.name, version, path, batching=self.batching,
                                max_tensor_bytes=self.max_tensor_bytes)
            n = servable.replay_warmup() if self.warmup else 0
            self.log(f"loaded {c.name} version {version} from {path} ({n} warmup "
                     f"request{'s' * (n != 1)} replayed)")
        except Exception as e:  # any load failure ends this version, as in TF Serving
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            error = ServingError(StatusCode.UNKNOWN if not isinstance(e, ValueError)
                                 else StatusCode.INVALID_ARGUMENT,
                                 f"Failed to load version {version} of {c.name!r}: {message}")
            self.log(f"{error} (not served)")
            if servable is not None:
                servable.close()
                servable = None
        with self._lock:
            self._versions[c.name][version] = (
                _Version(_STATE.AVAILABLE, servable) if error is None
                else _Version(_STATE.END, None, error))
            self._lock.notify_all()

    def _unload(self, name: str, version: int):
        with self._lock:
            entry = self._versions[name][version]
            servable = entry.servable
            # Requests that already hold this version finish on it.
            while servable is not None and servable.in_flight:
                self._lock.wait()
        if servable is not None:
            servable.close()
        with self._lock:
            entry.state, entry.servable = _STATE.END, None
        self.log(f"unloaded {name} version {version}")

    def start_polling(self, every_seconds: float):
        if every_seconds <= 0:
            return

        def loop():
            while not self._stop.wait(every_seconds):
                try:
                    self.poll()
                except Exception as e:  # a bad poll must not end polling
                    self.log(f"poll failed: {e}")

        self._poller = threading.Thread(target=loop, name="poll", daemon=True)
        self._poller.start()

    def close(self):
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
        with self._lock:
            servables = [v.servable for m in self._versions.values() for v in m.values()
                         if v.servable is not None]
        for s in servables:
            s.close()

    # lookup ------------------------------------------------------------------------------
    def _spec(self, name, version, label) -> str:
        return f"Specific({name}, {version})" if version is not None else f"Latest({name})"

    def resolve(self, name: str, version: int | None = None, label: str | None = None):
        """(model, version number) a request addresses; raises NOT_FOUND / INVALID_ARGUMENT."""
        c = self.configs.get(name)
        if c is None:
            raise ServingError(StatusCode.NOT_FOUND, "Servable not found for request: "
                               f"{self._spec(name, version, label)}")
        if label:
            if label not in c.labels:
                raise invalid(f"Unrecognized servable version label: {label}")
            version = int(c.labels[label])
        return c, version

    def acquire(self, name: str, version: int | None = None, label: str | None = None):
        c, version = self.resolve(name, version, label)
        with self._lock:
            available = {v: s.servable for v, s in self._versions[c.name].items()
                         if s.state == _STATE.AVAILABLE}
            if version is None and available:
                version = max(available)
            servable = available.get(version)
            if servable is None:
                raise ServingError(StatusCode.NOT_FOUND, "Servable not found for request: "
                                   f"{self._spec(name, version, label)}")
            servable.in_flight += 1
            return servable

    def release(self, servable: Servable):
        with self._lock:
            servable.in_flight -= 1
            if not servable.in_flight:
                self._lock.notify_all()

    def available(self) -> dict[str, list[int]]:
        with self._lock:
            return {n: sorted(v for v, s in m.items() if s.state == _STATE.AVAILABLE)
                    for n, m in self._versions.items()}

    def wait_until_available(self, timeout: float = 60) -> bool:
        end = time.monotonic() + timeout
        with self._lock:
            while not all(any(s.state in (_STATE.AVAILABLE, _STATE.END) for s in m.values())
                          for m in self._versions.values()):
                if not self._lock.wait(max(0.0, end - time.monotonic())):
                    return False
        return True

    # the three APIs ----------------------------------------------------------------------
    def status(self, spec) -> get_model_status_pb2.GetModelStatusResponse:
        if spec.name not in self.configs:
            raise ServingError(StatusCode.NOT_FOUND,
                               f"Could not find any versions of model {spec.name}")
        version = spec.version.value if spec.HasField("version") else None
        c, version = self.resolve(spec.name, version, spec.version_label or None)
        response = get_model_status_pb2.GetModelStatusResponse()
        with self._lock:
            known = dict(self._versions[c.name])
        if version is not None:
            if version not in known:
                raise ServingError(StatusCode.NOT_FOUND,
                                   f"Could not find version {version} of model {c.name}")
            known = {version: known[version]}
        elif not known:
            raise ServingError(StatusCode.NOT_FOUND, f"Could not find any versions of model "
                               f"{c.name}")
        for v in sorted(known, reverse=True):
            s = known[v]
            entry = response.model_version_status.add(version=v, state=s.state)
            entry.status.SetInParent()  # TF Serving always reports a status, OK included
            if s.error is not None:
                entry.status.error_code = s.error.code.value[0]
                entry.status.error_message = str(s.error)
        return response

    def metadata(self, request) -> get_model_metadata_pb2.GetModelMetadataResponse:
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            raise invalid(f"metadata_field {fields}: only ['signature_def'] is supported")
        spec = request.model_spec
        servable = self.acquire(spec.name, spec.version.value if spec.HasField("version")
                                else None, spec.version_label or None)
        try:
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            sigs = get_model_metadata_pb2.SignatureDefMap()
            for k, s in servable.signature_defs.items():
                sigs.signature_def[k].CopyFrom(s)
            response.metadata["signature_def"].Pack(sigs)
            return response
        finally:
            self.release(servable)

    def predict(self, spec, inputs_fn, output_filter=(), timeout_s: float = 0):
        """Runs a Predict; `inputs_fn(signature_def)` turns the request into checked arrays."""
        servable = self.acquire(spec.name, spec.version.value if spec.HasField("version")
                                else None, spec.version_label or None)
        try:
            signature, sig = servable.signature(spec.signature_name)
            inputs, extra = inputs_fn(sig, signature)
            outputs = servable.predict(signature, inputs, output_filter, timeout_s)
            return servable, signature, outputs, extra
        finally:
            self.release(servable)


# --- metrics (Prometheus text format) -------------------------------------------------------

class Metrics:
    _BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30)

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple, int] = {}
        self.latency: dict[tuple, list] = {}

    def record(self, entrypoint: str, model: str, status: str, seconds: float):
        with self._lock:
            key = (entrypoint, model, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            buckets = self.latency.setdefault((entrypoint, model),
                                              [0] * len(self._BUCKETS) + [0, 0.0])
            for i, b in enumerate(self._BUCKETS):
                if seconds <= b:
                    buckets[i] += 1
            buckets[-2] += 1
            buckets[-1] += seconds

    def page(self, manager: ModelManager) -> str:
        lines = ["# TYPE :tensorflow:serving:request_count counter"]
        with self._lock:
            for (entry, model, status), n in sorted(self.requests.items()):
                lines.append(f':tensorflow:serving:request_count{{entrypoint="{entry}",'
                             f'model_name="{model}",status="{status}"}} {n}')
            lines.append("# TYPE :tensorflow:serving:request_latency histogram")
            for (entry, model), b in sorted(self.latency.items()):
                labels = f'entrypoint="{entry}",model_name="{model}"'
                for edge, n in zip(self._BUCKETS, b):
                    lines.append(f':tensorflow:serving:request_latency_bucket{{{labels},'
                                 f'le="{edge}"}} {n}')
                lines.append(f':tensorflow:serving:request_latency_bucket{{{labels},le="+Inf"}} '
                             f"{b[-2]}")
                lines.append(f":tensorflow:serving:request_latency_count{{{labels}}} {b[-2]}")
                lines.append(f":tensorflow:serving:request_latency_sum{{{labels}}} {b[-1]:.6f}")
        lines.append("# TYPE :tensorflow:core:servable_available gauge")
        for name, versions in sorted(manager.available().items()):
            for v in versions:
                lines.append(f':tensorflow:core:servable_available{{model_name="{name}",'
                             f'version="{v}"}} 1')
        return "\n".join(lines) + "\n"


# --- REST -----------------------------------------------------------------------------------

_PREDICT_RE = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?"
                         r":(classify|regress|predict)", re.I | re.A)
_STATUS_RE = re.compile(r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?"
                        r"(?:/(metadata))?", re.I | re.A)
_MODEL_RE = re.compile(r"/v1/models/([^/:]+)", re.I | re.A)
_JSON_OPTS = dict(preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
INT64_MAX = 2**63 - 1


def _decode(part: str, what: str) -> str:
    try:
        # http.server decodes the request line as latin-1; undo that, then percent-decode.
        return unquote_to_bytes(part.encode("latin-1")).decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise invalid(f"Failed to decode {what}: {part!r} is not UTF-8") from None


class RestApi:
    """TF Serving's REST API over a ModelManager, independent of the HTTP server."""

    def __init__(self, manager: ModelManager, metrics: Metrics | None = None,
                 timeout_ms: int = 30000, prometheus_path: str | None = None):
        self.manager, self.metrics = manager, metrics or Metrics()
        self.timeout_s = timeout_ms / 1000 if timeout_ms > 0 else 0
        self.prometheus_path = prometheus_path

    def handle(self, method: str, path: str, body: bytes | None) -> tuple[int, object]:
        """(HTTP status, JSON payload or str for the metrics page)."""
        path = path.split("?", 1)[0]
        start, status = time.perf_counter(), "OK"
        try:
            if self.prometheus_path and path == self.prometheus_path and method == "GET":
                return 200, self.metrics.page(self.manager)
            if not path.lower().startswith("/v1/"):
                return 404, {"error": f"Not found: {path!r}; the REST API is under /v1/models"}
            return 200, self._route(method, path, body)
        except ServingError as e:
            status = e.code.name
            return e.http_status, {"error": str(e)}
        finally:
            m = _MODEL_RE.match(path)
            # Only configured names: a fuzzer's made-up names must not grow the metrics.
            if m and m[1] in self.manager.configs:
                self.metrics.record("REST", m[1], status, time.perf_counter() - start)

    def _route(self, method, path, body):
        m = _PREDICT_RE.fullmatch(path) if method == "POST" else (
            _STATUS_RE.fullmatch(path) if method == "GET" else None)
        if m is None:
            raise invalid(f"Malformed request: {method} {path}")
        name = _decode(m[1], "model name") if m[1] else ""
        if not name:
            raise invalid("Missing model name in request.")
        spec = model_pb2.ModelSpec(name=name)
        if m[2]:
            if int(m[2]) > INT64_MAX:
                raise invalid(f"Failed to convert version: {m[2]} to numeric.")
            spec.version.value = int(m[2])
        if m[3]:
            spec.version_label = _decode(m[3], "model version label")
        if method == "GET":
            if m[4]:
                request = get_model_metadata_pb2.GetModelMetadataRequest(
                    model_spec=spec, metadata_field=["signature_def"])
                response = self.manager.metadata(request)
                sigs = get_model_metadata_pb2.SignatureDefMap()
                response.metadata["signature_def"].Unpack(sigs)
                return {"model_spec": json_format.MessageToDict(response.model_spec, **_JSON_OPTS),
                        "metadata": {"signature_def": json_format.MessageToDict(
                            sigs, **_JSON_OPTS)}}
            return json_format.MessageToDict(self.manager.status(spec), **_JSON_OPTS)
        if m[4].lower() != "predict":
            raise invalid(f"{m[4]} is not supported by tfzoo exports (Predict signatures "
                          "only); use :predict")
        try:
            request = loads(body or b"")
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise invalid(f"the request body is not valid JSON ({e}); expected "
                          '{"signature_name": ..., "instances": [...]} or {"inputs": ...}') from None
        except RecursionError:
            raise invalid("the request body's JSON is nested too deeply") from None
        if isinstance(request, dict):
            sig_name = request.get("signature_name", "")
            if not isinstance(sig_name, str):
                raise invalid(f"signature_name must be a string, got {sig_name!r}")
            spec.signature_name = sig_name

        def inputs_fn(sig, signature):
            return json_to_inputs(request, dict(sig.inputs), signature)

        _, _, outputs, fmt = self.manager.predict(spec, inputs_fn, (), self.timeout_s)
        return outputs_to_json(outputs, fmt)


class _ByteBudget:
    """Admission for large bodies: at most `limit` bytes of them are read and parsed at once."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0
        self._cond = threading.Condition()

    def acquire(self, n: int, timeout: float) -> bool:
        end = time.monotonic() + timeout
        with self._cond:
            while self.used + n > self.limit:
                left = end - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    if self.used + n > self.limit:
                        return False
            self.used += n
            return True

    def release(self, n: int):
        with self._cond:
            self.used -= n
            self._cond.notify_all()


def make_handler(api: RestApi, *, max_body_bytes: int = MAX_BODY_BYTES,
                 max_inflight_bytes: int = MAX_INFLIGHT_BYTES, socket_timeout: float = 30,
                 quiet: bool = True):
    budget = _ByteBudget(max(max_inflight_bytes, max_body_bytes))

    class Handler(BaseHTTPRequestHandler):
        server_version = "tfzoo-dev-server/2"
        protocol_version = "HTTP/1.1"  # keep-alive, as TF Serving
        # Headers and body are two writes: with Nagle, the body waits for the client's delayed
        # ACK (~40 ms per reply).
        disable_nagle_algorithm = True
        timeout = socket_timeout

        def _reply(self, status: int, payload):
            if isinstance(payload, str):
                data, ctype = payload.encode(), "text/plain; version=0.0.4"
            else:
                data, ctype = json.dumps(payload).encode(), "application/json"
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
            except OSError:  # the client went away; nothing to tell it
                self.close_connection = True

        def send_error(self, code, message=None, explain=None):
            # http.server's own errors (400, 414, 431, 501, ...) as JSON, never HTML.
            self.close_connection = True
            if self.request_version == "HTTP/0.9":  # unparsed request line: still send headers
                self.request_version = "HTTP/1.0"
            phrase = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else ""
            self._reply(code, {"error": f"{code} {phrase}: {message or explain or ''}".strip()})

        def handle_one_request(self):
            # As BaseHTTPRequestHandler's, but a request that stalls after its first byte gets
            # a 408 JSON reply instead of a silently closed connection.
            self.requestline, self.request_version, self.command = "", "", ""
            try:
                if not self.rfile.peek(1):  # the client closed an idle connection
                    self.close_connection = True
                    return
            except (TimeoutError, OSError):  # idle keep-alive connection: just close it
                self.close_connection = True
                return
            try:
                self.raw_requestline = self.rfile.readline(65537)
                if len(self.raw_requestline) > 65536:
                    self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
                    return
                if not self.parse_request():
                    return
                method = getattr(self, "do_" + self.command, None)
                if method is None:
                    self.send_error(HTTPStatus.NOT_IMPLEMENTED,
                                    f"unsupported method {self.command!r}")
                    return
                method()
            except TimeoutError:
                self.send_error(HTTPStatus.REQUEST_TIMEOUT,
                                f"no complete request within {socket_timeout:g} s")
            except OSError:
                self.close_connection = True
            except Exception as e:  # a bug must still answer, as JSON
                self.send_error(500, f"internal error: {type(e).__name__}: {e}")

        def _dispatch(self, method: str, body: bytes | None):
            status, payload = api.handle(method, self.path, body)
            self._reply(status, payload)

        def do_GET(self):
            self._dispatch("GET", None)

        def _other(self):
            self._read_body(allow_missing=True)
            self._dispatch(self.command, None)

        do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _other

        def _read_body(self, allow_missing=False) -> bytes | None:
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                self._reply(411, {"error": "chunked bodies are not supported; send a "
                                  "Content-Length header"})
                return None
            length = self.headers.get("Content-Length")
            if length is None and allow_missing:
                return b""
            if length is None or not length.isascii() or not length.isdigit():
                self.close_connection = True
                self._reply(411, {"error": f"a POST needs a Content-Length header (got "
                                  f"{length!r})"})
                return None
            n = int(length)
            if n > max_body_bytes:
                self.close_connection = True
                self._reply(413, {"error": f"request body of {n} bytes exceeds the limit of "
                                  f"{max_body_bytes} bytes (--max_body_bytes)"})
                return None
            body = bytearray()
            while len(body) < n:
                chunk = self.rfile.read(min(1 << 20, n - len(body)))
                if not chunk:
                    self.close_connection = True
                    self._reply(400, {"error": f"the body ended after {len(body)} of {n} "
                                      "bytes (Content-Length)"})
                    return None
                body += chunk
            return bytes(body)

        def do_POST(self):
            length = self.headers.get("Content-Length") or "0"
            n = int(length) if length.isascii() and length.isdigit() else 0
            large = LARGE_BODY_BYTES < n <= max_body_bytes
            if large and not budget.acquire(n, timeout=socket_timeout):
                self.close_connection = True
                self._reply(503, {"error": f"server busy: {budget.used} bytes of large "
                                  "requests in flight; retry later"})
                return
            try:
                body = self._read_body()
                if body is not None:
                    self._dispatch("POST", body)
            finally:
                if large:
                    budget.release(n)

        def log_message(self, fmt, *args):
            if not quiet:
                super().log_message(fmt, *args)

    return Handler


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # listen backlog: bursts of connections wait, never get reset
    allow_reuse_address = True

    def __init__(self, address, handler, max_connections: int):
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        # At the connection cap the accept loop waits: new clients queue in the backlog.
        self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def shutdown_request(self, request):
        # A "lingering close" (as nginx's lingering_time): closing a socket that still holds
        # unread client bytes (a refused 413 body still arriving, the rest of an over-long
        # request line) sends a reset, and the client sees ECONNRESET/EPIPE instead of the
        # error reply already written. Stop writing, then drain until the client closes,
        # bounded in time so a client that keeps sending cannot hold the thread.
        try:
            request.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_SECONDS
            while (left := deadline - time.monotonic()) > 0:
                request.settimeout(left)
                if not request.recv(1 << 20):
                    break
        except OSError:
            pass
        self.close_request(request)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def make_http_server(api: RestApi, host: str = "127.0.0.1", port: int = 8501, *,
                     max_connections: int = 256, **handler_kwargs):
    """A threading HTTP server for `api`; port 0 picks a free port (see `.server_address`)."""
    return _HTTPServer((host, port), make_handler(api, **handler_kwargs), max_connections)


# --- gRPC -----------------------------------------------------------------------------------

class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ModelManager, metrics: Metrics, max_tensor_bytes: int):
        self.manager, self.metrics, self.max_tensor_bytes = manager, metrics, max_tensor_bytes

    def Predict(self, request, context):
        start, status = time.perf_counter(), "OK"
        try:
            def inputs_fn(sig, signature):
                arrays = {k: proto_to_array(k, v, self.max_tensor_bytes)
                          for k, v in request.inputs.items()}
                return check_inputs(arrays, dict(sig.inputs), signature), None

            remaining = context.time_remaining()
            servable, signature, outputs, _ = self.manager.predict(
                request.model_spec, inputs_fn, tuple(request.output_filter),
                remaining if remaining is not None and remaining < 1e6 else 0)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = servable.name
            response.model_spec.version.value = servable.version
            response.model_spec.signature_name = signature
            for k, v in outputs.items():
                response.outputs[k].CopyFrom(tf.make_tensor_proto(v))
            return response
        except ServingError as e:
            status = e.code.name
            context.abort(e.code, str(e))
        finally:
            if request.model_spec.name in self.manager.configs:
                self.metrics.record("gRPC", request.model_spec.name, status,
                                    time.perf_counter() - start)

    def GetModelMetadata(self, request, context):
        try:
            return self.manager.metadata(request)
        except ServingError as e:
            context.abort(e.code, str(e))


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager):
        self.manager = manager

    def GetModelStatus(self, request, context):
        try:
            return self.manager.status(request.model_spec)
        except ServingError as e:
            context.abort(e.code, str(e))


def make_grpc_server(manager: ModelManager, metrics: Metrics, host: str = "127.0.0.1",
                     port: int = 8500, *, max_body_bytes: int = MAX_BODY_BYTES,
                     max_threads: int = 64):
    """A started gRPC server and its bound port (port 0 picks a free one)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="grpc"),
        # Beyond this many RPCs in progress, new ones get RESOURCE_EXHAUSTED instead of waiting.
        maximum_concurrent_rpcs=max_threads * 4,
        options=[("grpc.max_receive_message_length", max_body_bytes),
                 ("grpc.max_send_message_length", -1)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(manager, metrics, max_body_bytes), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"cannot bind gRPC to {host}:{port}")
    server.start()
    return server, bound


# --- the program ----------------------------------------------------------------------------

def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r}: expected true or false")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m serving.dev_server", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    flag = dict(nargs="?", const=True, default=False, type=_bool)
    p.add_argument("--port", type=int, default=8500, help="gRPC port (0: no gRPC)")
    p.add_argument("--rest_api_port", type=int, default=8501, help="REST port (0: no REST)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default loopback; this server has no auth)")
    p.add_argument("--model_name", default=os.environ.get("MODEL_NAME", "default"))
    p.add_argument("--model_base_path", default=None,
                   help="the model's directory, holding its version directories (as TF Serving; "
                        "default $MODEL_BASE_PATH/$MODEL_NAME as in the Docker image)")
    p.add_argument("--model_config_file", default=None,
                   help="text ModelServerConfig (model_config_list); replaces --model_name/"
                        "--model_base_path")
    p.add_argument("--file_system_poll_wait_seconds", type=float, default=1,
                   help="poll interval for new/removed versions (<= 0: only at start-up)")
    p.add_argument("--allow_version_labels_for_unavailable_models", **flag)
    p.add_argument("--enable_batching", **flag)
    p.add_argument("--batching_parameters_file", default=None,
                   help="text BatchingParameters (needs --enable_batching)")
    p.add_argument("--enable_model_warmup", nargs="?", const=True, default=True, type=_bool)
    p.add_argument("--rest_api_timeout_in_ms", type=int, default=30000)
    p.add_argument("--monitoring_config_file", default=None,
                   help="text MonitoringConfig: prometheus_config { enable: true path: ... }")
    p.add_argument("--grpc_max_threads", type=int, default=64)
    p.add_argument("--max_body_bytes", type=int, default=MAX_BODY_BYTES,
                   help="largest REST body / gRPC message (dev server only)")
    p.add_argument("--max_inflight_bytes", type=int, default=MAX_INFLIGHT_BYTES,
                   help="bytes of large REST bodies read and parsed at once (dev server only)")
    p.add_argument("--max_connections", type=int, default=256,
                   help="REST connections handled at once; more wait in the backlog")
    p.add_argument("--socket_timeout_seconds", type=float, default=30,
                   help="a REST connection silent this long is closed (408 mid-request)")
    p.add_argument("--verbose", action="store_true", help="log every REST request")
    return p


def configs_from_args(args) -> list[ModelConfig]:
    if args.model_config_file:
        return read_model_config_file(args.model_config_file)
    base = args.model_base_path
    if base is None:
        base = os.path.join(os.environ.get("MODEL_BASE_PATH", "/models"), args.model_name)
    return [ModelConfig(args.model_name, Path(base))]


def batching_from_args(args) -> BatchOptions | None:
    if args.batching_parameters_file and not args.enable_batching:
        raise ValueError("--batching_parameters_file needs --enable_batching")
    if not args.enable_batching:
        return None
    if not args.batching_parameters_file:
        return BatchOptions()
    params = protos.parse_text_file(args.batching_parameters_file, protos.BatchingParameters(),
                                    "--batching_parameters_file")
    return BatchOptions.from_proto(params)


def prometheus_path_from_args(args) -> str | None:
    if not args.monitoring_config_file:
        return None
    config = protos.parse_text_file(args.monitoring_config_file, protos.MonitoringConfig(),
                                    "--monitoring_config_file")
    if not config.prometheus_config.enable:
        return None
    return config.prometheus_config.path or PROMETHEUS_PATH


def _is_loopback(host: str) -> bool:
    try:
        addresses = {a[4][0] for a in socket.getaddrinfo(host, None)}
        return all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)
    except (OSError, ValueError):
        return False


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        manager = ModelManager(
            configs_from_args(args), batching=batching_from_args(args),
            warmup=args.enable_model_warmup,
            allow_labels_for_unavailable=args.allow_version_labels_for_unavailable_models,
            max_tensor_bytes=args.max_body_bytes)
        prometheus = prometheus_path_from_args(args)
    except ValueError as e:
        sys.exit(f"dev_server: {e}")
    if not _is_loopback(args.host):
        _log(f"warning: binding to {args.host}: this development server has no authentication "
             "and is reachable from other machines")
    manager.poll()
    for name, versions in manager.available().items():
        if not versions:
            _log(f"model {name!r}: no version available yet under "
                 f"{manager.configs[name].base_path} (polling)")
    manager.start_polling(args.file_system_poll_wait_seconds)
    metrics = Metrics()
    grpc_server = httpd = None
    if args.port:
        grpc_server, port = make_grpc_server(manager, metrics, args.host, args.port,
                                             max_body_bytes=args.max_body_bytes,
                                             max_threads=args.grpc_max_threads)
        _log(f"gRPC on {args.host}:{port}")
    if args.rest_api_port:
        api = RestApi(manager, metrics, args.rest_api_timeout_in_ms, prometheus)
        httpd = make_http_server(api, args.host, args.rest_api_port,
                                 max_connections=args.max_connections,
                                 max_body_bytes=args.max_body_bytes,
                                 max_inflight_bytes=args.max_inflight_bytes,
                                 socket_timeout=args.socket_timeout_seconds,
                                 quiet=not args.verbose)
        _log(f"REST on http://{args.host}:{httpd.server_address[1]}/v1/models/"
             + (f" (metrics at {prometheus})" if prometheus else ""))
    try:
        if httpd is not None:
            httpd.serve_forever()
        elif grpc_server is not None:
            grpc_server.wait_for_termination()
    except KeyboardInterrupt:
        pass
    finally:
        if httpd is not None:
            httpd.server_close()
        if grpc_server is not None:
            grpc_server.stop(1)
        manager.close()


if __name__ == "__main__":
    main()
