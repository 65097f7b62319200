"""The configured models and their versions, polled from disk with TF Serving's semantics.

Only all-digit directory names up to int64 are versions. A poll that cannot list a model's base
path keeps its loaded versions; a version that fails to load is retried
(`max_num_load_retries` times, `load_retry_interval_micros` apart); new versions load before
old ones unload, and an unload waits for requests in flight at most `unload_timeout_s`.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from . import protos
from .batching import BatchOptions
from .errors import ServingError, invalid, not_found
from .servable import MAX_BODY_BYTES, LoadError, Servable

INT64_MAX = 2**63 - 1
_STATE = get_model_status_pb2.ModelVersionStatus.State


def log(message: str):
    print(f"dev_server: {message}", file=sys.stderr, flush=True)


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
    attempts: int = 0        # failed loads so far
    retry_at: float = 0.0    # monotonic time of the next try after a failure


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


def disk_versions(base: Path) -> dict[int, Path]:
    """All-digit version directories of a model up to int64 (TF Serving ignores other names).

    Raises OSError when the base path cannot be listed (then a poll changes nothing).
    """
    out = {}
    for p in Path(base).iterdir():
        if p.name.isascii() and p.name.isdigit() and int(p.name) <= INT64_MAX and p.is_dir():
            out[int(p.name)] = p
    return out


class ModelManager:
    """The configured models, their versions (polled from disk) and version labels."""

    def __init__(self, configs: list[ModelConfig], *, batching: BatchOptions | None = None,
                 warmup: bool = True, allow_labels_for_unavailable: bool = False,
                 max_tensor_bytes: int = MAX_BODY_BYTES, max_num_load_retries: int = 5,
                 load_retry_interval_s: float = 60.0, unload_timeout_s: float = 30.0, log=log):
        self.configs = {c.name: c for c in configs}
        self.batching, self.warmup, self.log = batching, warmup, log
        self.max_num_load_retries, self.load_retry_interval_s = (max_num_load_retries,
                                                                 load_retry_interval_s)
        self.unload_timeout_s = unload_timeout_s
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
            try:
                on_disk = disk_versions(c.base_path)
            except OSError as e:
                # As TF Serving: a base path that is briefly missing or unreadable (renamed,
                # remounted) is a failed poll, not a request to unload everything.
                self.log(f"poll of model {c.name!r} failed ({e.strerror or type(e).__name__} "
                         f"listing {c.base_path}); keeping its loaded versions")
                continue
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
                now = time.monotonic()
                new = sorted(v for v in aspired if v not in known
                             or (known[v].state == _STATE.END and known[v].error is None)
                             or (known[v].error is not None and now >= known[v].retry_at
                                 and known[v].attempts <= self.max_num_load_retries))
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
            previous = self._versions[c.name].get(version)
            attempts = previous.attempts if previous is not None and previous.error else 0
            self._versions[c.name][version] = _Version(_STATE.LOADING, attempts=attempts)
        servable, error, left = None, None, 0
        try:
            real, base = path.resolve(), c.base_path.resolve()
            if not real.is_relative_to(base):
                self.log(f"{c.name} version {version}: {path} resolves to {real}, outside the "
                         f"model's base path {base}")
                raise LoadError("the version directory resolves outside the model's base path "
                                "(a symlink?); refusing to load it")
            servable = Servable(c.name, version, path, batching=self.batching,
                                max_tensor_bytes=self.max_tensor_bytes)
            n = servable.replay_warmup() if self.warmup else 0
            self.log(f"loaded {c.name} version {version} from {path} ({n} warmup "
                     f"request{'s' * (n != 1)} replayed)")
        except Exception as e:  # any load failure ends this try, as in TF Serving
            attempts += 1
            if isinstance(e, LoadError):
                reason = str(e)
            else:  # the loader's own text names files: server log only
                reason = f"the SavedModel could not be loaded ({type(e).__name__})"
                self.log(f"{c.name} version {version} from {path}: {type(e).__name__}: "
                         + " ".join(str(e).split())[:2000])
            error = ServingError(f"Failed to load version {version} of {c.name!r}: {reason}",
                                 grpc.StatusCode.INVALID_ARGUMENT if isinstance(e, LoadError)
                                 else grpc.StatusCode.UNKNOWN)
            left = self.max_num_load_retries + 1 - attempts
            self.log(f"{error} (attempt {attempts}; "
                     + (f"retrying in {self.load_retry_interval_s:g} s)" if left > 0
                        else "not retried again until the directory is removed and re-added)"))
            if servable is not None:
                servable.close()
                servable = None
        with self._lock:
            # As TF Serving (LoaderHarness::Load retries inside the load), a version waiting
            # for its retry is still LOADING, with an OK status; END and the error come when
            # no retry is left. Each failure is in the log.
            self._versions[c.name][version] = (
                _Version(_STATE.AVAILABLE, servable) if error is None
                else _Version(_STATE.LOADING if left > 0 else _STATE.END, None, error,
                              attempts, time.monotonic() + self.load_retry_interval_s))
            self._lock.notify_all()

    def _unload(self, name: str, version: int):
        with self._lock:
            entry = self._versions[name][version]
            servable = entry.servable
            # Requests that already hold this version finish on it, for a bounded time.
            end = time.monotonic() + self.unload_timeout_s
            while servable is not None and servable.in_flight:
                if not self._lock.wait(max(0.0, end - time.monotonic())):
                    if servable.in_flight:
                        self.log(f"unloading {name} version {version} with "
                                 f"{servable.in_flight} request(s) still running after "
                                 f"{self.unload_timeout_s:g} s")
                        break
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
            raise not_found("Servable not found for request: "
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
                raise not_found("Servable not found for request: "
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
            raise not_found(f"Could not find any versions of model {spec.name}")
        version = spec.version.value if spec.HasField("version") else None
        c, version = self.resolve(spec.name, version, spec.version_label or None)
        response = get_model_status_pb2.GetModelStatusResponse()
        with self._lock:
            known = dict(self._versions[c.name])
        if version is not None:
            if version not in known:
                raise not_found(f"Could not find version {version} of model {c.name}")
            known = {version: known[version]}
        elif not known:
            raise not_found(f"Could not find any versions of model {c.name}")
        for v in sorted(known, reverse=True):
            s = known[v]
            entry = response.model_version_status.add(version=v, state=s.state)
            entry.status.SetInParent()  # TF Serving always reports a status, OK included
            if s.error is not None and s.state == _STATE.END:
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
