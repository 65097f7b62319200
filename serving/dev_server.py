"""A small development server speaking TF Serving's REST protocol, for exported tfzoo models.

No TF Serving binary can be installed everywhere (it ships as the `tensorflow/serving` Docker
image); this server lets clients and CI exercise the same REST API with nothing but the stdlib
`http.server` and `tf.saved_model.load`. It never imports tfzoo. Not for production: one
process, no batching, no auth; it binds to loopback unless told otherwise.

    python -m serving.dev_server --model_base_path=/srv/models --model_name=tresnet50 --port=8501

Layout, as in the `tensorflow/serving` image (MODEL_BASE_PATH/MODEL_NAME/VERSION/): each model
directory's highest integer version is loaded (TF Serving's default "latest" policy) and its
`assets.extra/tf_serving_warmup_requests` are replayed once, as TF Serving does.

Endpoints (https://www.tensorflow.org/tfx/serving/api_rest):
  GET  /v1/models/NAME[/versions/N]                   version status
  GET  /v1/models/NAME[/versions/N]/metadata          signatures (inputs, outputs, dtypes, shapes)
  POST /v1/models/NAME[/versions/N]:predict           {"signature_name": ..., "instances": [...]}
                                                      or {"signature_name": ..., "inputs": ...}
Errors are {"error": "..."}: HTTP 400 for a bad request, 404 for an unknown model/version/path.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.core.framework import types_pb2  # noqa: E402

DEFAULT_SIGNATURE = "serving_default"
MAX_BODY_BYTES = 512 * 1024 * 1024
_PATH_RE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?/?$"
)


class RequestError(Exception):
    """A request the server refuses; `status` is the HTTP code, the message goes to the client."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class Servable:
    """One loaded version of one model."""

    def __init__(self, name: str, version: int, path: Path):
        self.name, self.version, self.path = name, version, path
        self.loaded = tf.saved_model.load(str(path))
        self.signatures = dict(self.loaded.signatures)
        if not self.signatures:
            raise ValueError(f"{path} has no signatures; expected a TF Serving SavedModel")
        # One request at a time: TF already uses every core per op, and this bounds memory.
        self.lock = threading.Lock()

    def input_specs(self, signature: str) -> dict[str, tf.TensorSpec]:
        return dict(self.signatures[signature].structured_input_signature[1])

    def output_specs(self, signature: str) -> dict[str, tf.TensorSpec]:
        return dict(self.signatures[signature].structured_outputs)

    def run(self, signature: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        fn = self.signatures[signature]
        specs = self.input_specs(signature)
        tensors = {k: tf.constant(v, dtype=specs[k].dtype) for k, v in arrays.items()}
        try:
            with self.lock:
                outputs = fn(**tensors)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
            message = getattr(e, "message", None) or str(e)
            raise RequestError(f"the model rejected the request: {message.strip()}") from None
        return {k: v.numpy() for k, v in outputs.items()}

    def replay_warmup(self) -> int:
        from export.warmup import read_warmup_file

        requests = read_warmup_file(self.path)
        for i, (_, signature, inputs) in enumerate(requests):
            # Like TF Serving, a version whose warmup fails is not served.
            where = f"{self.path}: warmup request {i}"
            if signature not in self.signatures:
                raise ValueError(f"{where} is for unknown signature {signature!r}; the model has "
                                 f"{sorted(self.signatures)}")
            expected = sorted(self.input_specs(signature))
            if sorted(inputs) != expected:
                raise ValueError(f"{where} has inputs {sorted(inputs)}; {signature!r} expects "
                                 f"{expected}")
            try:
                self.run(signature, {k: tf.make_ndarray(v) for k, v in inputs.items()})
            except RequestError as e:
                raise ValueError(f"{where} failed: {e}") from None
        return len(requests)

    def status(self) -> dict:
        return {
            "model_version_status": [
                {
                    "version": str(self.version),
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        }

    def metadata(self) -> dict:
        def tensor_info(spec):
            dims = [{"size": str(-1 if d is None else d), "name": ""} for d in spec.shape]
            return {"dtype": types_pb2.DataType.Name(spec.dtype.as_datatype_enum),
                    "tensor_shape": {"dim": dims, "unknown_rank": False}, "name": spec.name or ""}

        defs = {}
        for sig in self.signatures:
            defs[sig] = {
                "inputs": {k: tensor_info(s) for k, s in self.input_specs(sig).items()},
                "outputs": {k: tensor_info(s) for k, s in self.output_specs(sig).items()},
                "method_name": "tensorflow/serving/predict",
            }
        return {
            "model_spec": {"name": self.name, "signature_name": "", "version": str(self.version)},
            "metadata": {"signature_def": {"signature_def": defs}},
        }


def latest_version(model_dir: Path) -> int | None:
    versions = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(versions) if versions else None


class ModelServer:
    """The protocol logic, independent of HTTP: tests and other front ends call `handle`."""

    def __init__(self, model_base_path: str | os.PathLike, model_names=None, *, warmup=True,
                 log=print):
        base = Path(model_base_path)
        if not base.is_dir():
            raise ValueError(f"model_base_path {str(base)!r} is not a directory; expected "
                             "MODEL_BASE_PATH/NAME/VERSION/saved_model.pb")
        if model_names:
            dirs = [base / n for n in model_names]
            for d in dirs:
                if not d.is_dir():
                    raise ValueError(f"model {d.name!r}: {d} is not a directory")
        else:
            dirs = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
        self.models: dict[str, Servable] = {}
        for d in dirs:
            version = latest_version(d)
            if version is None:
                if model_names:
                    raise ValueError(f"model {d.name!r}: no integer version directory in {d}")
                continue
            servable = Servable(d.name, version, d / str(version))
            n = servable.replay_warmup() if warmup else 0
            log(f"loaded {d.name} version {version} from {servable.path} "
                f"({n} warmup request{'s' * (n != 1)} replayed)")
            self.models[d.name] = servable
        if not self.models:
            raise ValueError(f"no servable model under {base}: expected NAME/VERSION/ directories "
                             "(write one with `python -m export`)")

    def servable(self, name: str, version: str | None) -> Servable:
        servable = self.models.get(name)
        if servable is None:
            raise RequestError(
                f"Servable not found for request: {'Specific' if version else 'Latest'}"
                f"({name}{', ' + version if version else ''}); this server has "
                f"{sorted(self.models)}", 404)
        if version is not None:
            if not version.isdigit():
                raise RequestError(f"version {version!r} is not an integer", 400)
            if int(version) != servable.version:
                raise RequestError(
                    f"Servable not found for request: Specific({name}, {version}); "
                    f"version {servable.version} is the one loaded", 404)
        return servable

    def handle(self, method: str, path: str, body: bytes | None) -> tuple[int, dict]:
        try:
            return 200, self._route(method, path, body)
        except RequestError as e:
            return e.status, {"error": str(e)}

    def _route(self, method, path, body):
        m = _PATH_RE.match(path.split("?", 1)[0])
        if not m:
            raise RequestError(f"Malformed request: {method} {path}; expected "
                               "/v1/models/NAME[/versions/N][/metadata|:predict]", 404)
        servable = self.servable(m["name"], m["version"])
        if method == "GET" and m["verb"] is None:
            return servable.metadata() if m["metadata"] else servable.status()
        if method == "POST" and m["verb"] == "predict":
            return self.predict(servable, body or b"")
        if method == "POST" and m["verb"] in ("classify", "regress"):
            raise RequestError(f"{m['verb']} is not supported: tfzoo exports Predict signatures "
                               "only; use :predict", 400)
        raise RequestError(f"Malformed request: {method} {path}", 404)

    def predict(self, servable: Servable, body: bytes) -> dict:
        try:
            request = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RequestError(f"the request body is not valid JSON ({e}); expected "
                               '{"signature_name": ..., "instances": [...]} or {"inputs": ...}')
        if not isinstance(request, dict):
            raise RequestError(f"the request body is a JSON {type(request).__name__}; expected "
                               'an object {"instances": [...]} or {"inputs": ...}')
        signature = request.get("signature_name", DEFAULT_SIGNATURE)
        if signature not in servable.signatures:
            raise RequestError(f"signature_name {signature!r} not found; this model has "
                               f"{sorted(servable.signatures)}")
        unknown = set(request) - {"signature_name", "instances", "inputs"}
        if unknown:
            raise RequestError(f"unknown request keys {sorted(unknown)}; expected "
                               "'signature_name' and one of 'instances' or 'inputs'")
        specs = servable.input_specs(signature)
        if ("instances" in request) == ("inputs" in request):
            raise RequestError("the request must have exactly one of 'instances' (row format) "
                               "or 'inputs' (columnar format)")
        if "instances" in request:
            arrays = _rows_to_arrays(request["instances"], specs)
            outputs = servable.run(signature, arrays)
            return {"predictions": _outputs_to_rows(outputs)}
        arrays = _columns_to_arrays(request["inputs"], specs)
        outputs = servable.run(signature, arrays)
        if len(outputs) == 1:
            return {"outputs": _to_json(next(iter(outputs.values())))}
        return {"outputs": {k: _to_json(v) for k, v in outputs.items()}}


def _named(value, specs: dict, where: str) -> dict:
    """{input name: value}; a single-input signature also accepts the bare value."""
    if isinstance(value, dict) and set(value) & set(specs) or len(specs) > 1:
        if not isinstance(value, dict):
            raise RequestError(f"{where} is a JSON {type(value).__name__}; this signature has "
                               f"inputs {sorted(specs)}, so expected an object with those keys")
        missing, unknown = set(specs) - set(value), set(value) - set(specs)
        if missing or unknown:
            raise RequestError(f"{where} has keys {sorted(value)}; expected exactly "
                               f"{sorted(specs)}" + (f" (missing {sorted(missing)})" if missing else "")
                               + (f" (unknown {sorted(unknown)})" if unknown else ""))
        return value
    return {next(iter(specs)): value}


def _rows_to_arrays(instances, specs) -> dict[str, np.ndarray]:
    if not isinstance(instances, list) or not instances:
        raise RequestError("'instances' must be a non-empty JSON list (one entry per example)")
    rows = [_named(v, specs, f"instances[{i}]") for i, v in enumerate(instances)]
    arrays = {}
    for name, spec in specs.items():
        items = [_to_array(r[name], spec, f"instances[{i}] input {name!r}", batch=False)
                 for i, r in enumerate(rows)]
        shapes = {a.shape for a in items}
        if len(shapes) > 1:
            raise RequestError(f"input {name!r}: instances have different shapes "
                               f"{sorted(shapes)}; in row format every instance must have the "
                               "same shape (send the clips in separate requests)")
        arrays[name] = np.stack(items)
    return arrays


def _columns_to_arrays(inputs, specs) -> dict[str, np.ndarray]:
    named = _named(inputs, specs, "'inputs'")
    arrays = {k: _to_array(named[k], spec, f"input {k!r}", batch=True) for k, spec in specs.items()}
    batches = {k: a.shape[0] for k, a in arrays.items()}
    if len(set(batches.values())) > 1:
        raise RequestError(f"inputs have different batch sizes {batches}; expected one batch size")
    return arrays


def _to_array(value, spec: tf.TensorSpec, where: str, *, batch: bool) -> np.ndarray:
    dims = list(spec.shape)[0 if batch else 1:]
    expected = "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"
    if isinstance(value, dict):
        raise RequestError(f"{where}: got a JSON object (keys {sorted(value)[:5]}); expected a "
                           f"nested list of numbers of shape {expected}")
    try:
        array = np.asarray(value)
    except ValueError:
        raise RequestError(f"{where}: the nested lists are ragged; expected a rectangular "
                           f"array of shape {expected}") from None
    if array.dtype == object or array.dtype.kind not in "iuf":
        raise RequestError(f"{where}: got {'strings' if array.dtype.kind in 'US' else 'non-numeric values'}"
                           f" ({array.dtype}); expected numbers of dtype {spec.dtype.name}")
    if array.ndim != len(dims) or any(d is not None and d != s for d, s in zip(dims, array.shape)):
        raise RequestError(f"{where}: got shape {array.shape}; expected {expected}"
                           + (" (frames, height, width, channels)" if len(dims) == 4 else "")
                           + (" (batch, frames, height, width, channels)" if len(dims) == 5 else ""))
    if array.size == 0:
        raise RequestError(f"{where}: got an empty array of shape {array.shape}")
    if spec.dtype.is_integer:
        info = np.iinfo(spec.dtype.as_numpy_dtype)
        if array.dtype.kind == "f" and not np.all(np.floor(array) == array):
            raise RequestError(f"{where}: got non-integer values; expected integers for "
                               f"{spec.dtype.name}")
        lo, hi = array.min(), array.max()
        if lo < info.min or hi > info.max:
            raise RequestError(f"{where}: values span [{lo}, {hi}]; {spec.dtype.name} expects "
                               f"[{info.min}, {info.max}]")
    return array.astype(spec.dtype.as_numpy_dtype)


def _to_json(array: np.ndarray):
    if array.dtype == object or array.dtype.kind == "S":
        flat = [_string(b) for b in array.reshape(-1).tolist()]
        return np.array(flat, dtype=object).reshape(array.shape).tolist() if array.ndim else flat[0]
    return array.tolist()


def _string(b):
    # TF Serving returns bytes that are not UTF-8 as {"b64": ...}.
    if isinstance(b, bytes):
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(b).decode("ascii")}
    return b


def _outputs_to_rows(outputs: dict) -> list:
    batch = {k: (v.shape[0] if v.ndim else None) for k, v in outputs.items()}
    if len(set(batch.values())) != 1 or None in batch.values():
        raise RequestError(f"outputs have batch sizes {batch}; the row format ('instances') "
                           "needs one batch dimension on every output: use 'inputs'")
    n = next(iter(batch.values()))
    columns = {k: _to_json(v) for k, v in outputs.items()}
    if len(columns) == 1:
        return next(iter(columns.values()))
    return [{k: columns[k][i] for k in columns} for i in range(n)]


def make_handler(server: ModelServer, max_body_bytes: int = MAX_BODY_BYTES, quiet: bool = False):
    class Handler(BaseHTTPRequestHandler):
        server_version = "tfzoo-dev-server/1"

        def _reply(self, status: int, payload: dict):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._reply(*server.handle("GET", self.path, None))

        def do_POST(self):
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self._reply(411, {"error": "a POST needs a Content-Length header"})
                return
            if int(length) > max_body_bytes:
                self._reply(413, {"error": f"request body of {length} bytes exceeds the limit of "
                                  f"{max_body_bytes} bytes (--max_body_bytes)"})
                self.close_connection = True
                return
            self._reply(*server.handle("POST", self.path, self.rfile.read(int(length))))

        def log_message(self, fmt, *args):
            if not quiet:
                super().log_message(fmt, *args)

    return Handler


def make_http_server(server: ModelServer, host: str = "127.0.0.1", port: int = 8501, **kwargs):
    """A ThreadingHTTPServer for `server`; port 0 picks a free port (see `.server_address`)."""
    httpd = ThreadingHTTPServer((host, port), make_handler(server, **kwargs))
    httpd.daemon_threads = True
    return httpd


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m serving.dev_server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_base_path", default=os.environ.get("MODEL_BASE_PATH", "/models"),
                        help="directory holding NAME/VERSION/ (default: $MODEL_BASE_PATH or /models)")
    parser.add_argument("--model_name", action="append", default=None,
                        help="model to serve (repeatable; default: $MODEL_NAME, else every "
                             "model under the base path)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default loopback; this server has no auth)")
    parser.add_argument("--port", "--rest_api_port", type=int, default=8501)
    parser.add_argument("--max_body_bytes", type=int, default=MAX_BODY_BYTES)
    parser.add_argument("--nowarmup", action="store_true", help="do not replay warmup requests")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    names = args.model_name or ([os.environ["MODEL_NAME"]] if os.environ.get("MODEL_NAME") else None)
    if not _is_loopback(args.host):
        print(f"warning: binding to {args.host}: this development server has no authentication "
              "and is reachable from other machines", file=sys.stderr)
    try:
        server = ModelServer(args.model_base_path, names, warmup=not args.nowarmup,
                             log=lambda m: print(m, file=sys.stderr))
    except ValueError as e:
        sys.exit(f"dev_server: {e}")
    httpd = make_http_server(server, args.host, args.port, max_body_bytes=args.max_body_bytes,
                             quiet=args.quiet)
    host, port = httpd.server_address[:2]
    print(f"serving {sorted(server.models)} on http://{host}:{port}/v1/models/", file=sys.stderr,
          flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


if __name__ == "__main__":
    main()
