"""TF Serving's REST API (https://www.tensorflow.org/tfx/serving/api_rest) on aiohttp.

`RestApi` is the API's semantics (routes, JSON, status codes) over a ModelManager, independent
of HTTP. `RestServer` serves it with aiohttp's asyncio server, whose maintained HTTP/1.1 parser
refuses malformed framing (duplicate or conflicting Content-Length, Transfer-Encoding with
Content-Length, bad chunks) with 400 and a closed connection. On top of it, for a server that
web pages and slow or hostile clients can reach:

- `Host` must name the bound address (or one of `allowed_hosts`), POSTs must be
  `application/json` and other methods carry no body, so a page on another origin cannot drive
  a loopback server (DNS rebinding, "simple" cross-origin requests);
- headers must arrive within `socket_timeout` of the connection going idle (aiohttp's keep-alive
  timer, which data does not reset), the body within `socket_timeout` of the headers and at
  `min_upload_rate` bytes/s on average after its first second: absolute deadlines, not
  per-read timeouts, and a trickling connection costs a socket, not a thread;
- bodies are charged to a byte budget (`max_inflight_bytes`) as they are received, not by the
  length they claim, and a body is capped at `max_body_bytes` after decompression; a predict's
  tensors are charged too, at their decoded size, once validated and before they are built
  (a compact or gzipped body can decode to many times its size).
Parsing and session runs go to a thread pool of `max_workers` threads; every reply carries an
`X-Request-Id` header, also in the server log for unexpected errors.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import socket
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote_to_bytes

from aiohttp import web, web_protocol
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

from .errors import ServingError, invalid, new_request_id, unavailable
from .metrics import Metrics
from .models import log
from .servable import MAX_BODY_BYTES
from .tensors import json_to_inputs, loads, outputs_to_json

MAX_INFLIGHT_BYTES = 128 * 1024 * 1024  # request bodies held at once (admission control)
MIN_UPLOAD_RATE = 16 * 1024             # bytes/s a body must average after its first second
LINGER_SECONDS = 5.0                    # reading a refused body so the client sees the reply
_GRACE_SECONDS = 1.0


_PREDICT_RE = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?"
                         r":(classify|regress|predict)", re.I | re.A)
_STATUS_RE = re.compile(r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?"
                        r"(?:/(metadata))?", re.I | re.A)
_MODEL_RE = re.compile(r"/v1/models/([^/:]+)", re.I | re.A)
_JSON_OPTS = dict(preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
INT64_MAX = 2**63 - 1


def _decode(part: str, what: str) -> str:
    try:
        return unquote_to_bytes(part.encode("utf-8", "surrogateescape")).decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise invalid(f"Failed to decode {what}: {part[:100]!r} is not UTF-8") from None


class RestApi:
    """TF Serving's REST API over a ModelManager, independent of the HTTP server."""

    def __init__(self, manager, metrics: Metrics | None = None,
                 timeout_ms: int = 30000, prometheus_path: str | None = None):
        self.manager, self.metrics = manager, metrics or Metrics()
        self.timeout_s = timeout_ms / 1000 if timeout_ms > 0 else 0
        self.prometheus_path = prometheus_path

    def handle(self, method: str, path: str, body: bytes | None,
               request_id: str = "", reserve=None) -> tuple[int, object]:
        """(HTTP status, JSON payload or str for the metrics page).

        reserve(n): called with a predict's decoded tensor bytes before they are built; it
        raises a ServingError to refuse the request (the server's admission budget).
        """
        path = path.split("?", 1)[0]
        start, status = time.perf_counter(), "OK"
        try:
            if self.prometheus_path and path == self.prometheus_path and method == "GET":
                return 200, self.metrics.page(self.manager)
            if not path.lower().startswith("/v1/"):
                return 404, {"error": f"Not found: {path[:200]!r}; the REST API is under "
                                      "/v1/models"}
            return 200, self._route(method, path, body, reserve)
        except ServingError as e:
            status = e.code.name
            return e.http_status, {"error": str(e)}
        except Exception:  # a bug: the client gets the id, the log gets the traceback
            status = "INTERNAL"
            log(f"request {request_id} ({method} {path[:200]}) failed:\n"
                f"{traceback.format_exc().rstrip()}")
            return 500, {"error": f"internal error (request id {request_id}; see the server "
                                  "log)"}
        finally:
            m = _MODEL_RE.match(path)
            # Only configured names: a fuzzer's made-up names must not grow the metrics.
            if m and m[1] in self.manager.configs:
                self.metrics.record("REST", m[1], status, time.perf_counter() - start)

    def _route(self, method, path, body, reserve=None):
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
            raise invalid(f"the request body is not valid JSON ({str(e)[:200]}); expected "
                          '{"signature_name": ..., "instances": [...]} or {"inputs": ...}'
                          ) from None
        except RecursionError:
            raise invalid("the request body's JSON is nested too deeply") from None
        if isinstance(request, dict):
            sig_name = request.get("signature_name", "")
            if not isinstance(sig_name, str):
                raise invalid(f"signature_name must be a string, got {sig_name!r}")
            spec.signature_name = sig_name

        def inputs_fn(sig, signature):
            return json_to_inputs(request, dict(sig.inputs), signature,
                                  self.manager.max_tensor_bytes, reserve)

        _, _, outputs, fmt = self.manager.predict(spec, inputs_fn, (), self.timeout_s)
        return outputs_to_json(outputs, fmt)


class _HttpError(Exception):
    def __init__(self, status: int, message: str, close: bool = False):
        super().__init__(message)
        self.status, self.close = status, close


class _ByteBudget:
    """Bytes of request bodies and decoded tensors held at once.

    A body is charged as it arrives and released with the reply; its tensors are charged
    once validation knows their decoded size, before they are built, and released when the
    outputs are ready. The counter is behind a lock, so the worker threads charge and release
    tensors directly: a round trip through the event loop per request cost the loop CPU and the
    worker a wait. Only the loop waits (`take`), for bodies; `give` wakes it.
    """

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0
        self._lock = threading.Lock()
        self._waiters: list[asyncio.Future] = []

    def try_take(self, n: int) -> bool:
        """Takes n bytes if they fit now (any thread)."""
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True

    async def take(self, n: int, timeout: float) -> bool:
        """Takes n bytes, waiting up to `timeout` s for others to be given back (loop only)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not self.try_take(n):
            if end - loop.time() <= 0:
                return False
            freed = loop.create_future()
            with self._lock:  # a give() between try_take and here would not wake us: recheck
                if self.used + n <= self.limit:
                    continue
                self._waiters.append(freed)
            try:
                await asyncio.wait_for(freed, end - loop.time())
            except asyncio.TimeoutError:
                return False
            finally:
                with self._lock:
                    if freed in self._waiters:
                        self._waiters.remove(freed)
        return True

    def give(self, n: int):
        """Gives n bytes back (any thread) and wakes the waiting `take`s to retry."""
        if not n:
            return
        with self._lock:
            self.used -= n
            waiters, self._waiters = self._waiters, []
        for freed in waiters:
            freed.get_loop().call_soon_threadsafe(_wake, freed)


def _wake(future: asyncio.Future):
    if not future.done():
        future.set_result(None)


class _Connection(web_protocol.RequestHandler):
    """aiohttp's connection handler; what its HTTP parser refuses (malformed framing, bad
    chunks, oversized headers) is answered in the API's own shape: a JSON `{"error": ...}`
    and an `X-Request-Id`, still closing the connection."""

    def handle_error(self, request, status=500, exc=None, message=None):
        response = super().handle_error(request, status, exc, message)  # logs, checks, closes
        rid = new_request_id()
        if status >= 500:
            log(f"request {rid}: aiohttp error {status}: {exc!r}")
            error = f"internal error (request id {rid}; see the server log)"
        else:
            # The parser's own words ("Duplicate 'Content-Length' header found", ...): they
            # describe the request's bytes, never the server.
            error = (message or "").strip().splitlines()[0] if (message or "").strip() else \
                f"malformed HTTP request ({status})"
            error = f"malformed HTTP request: {error[:300].rstrip(': ')}"
        reply = web.Response(status=status, body=json.dumps({"error": error}).encode(),
                             content_type="application/json")
        reply.headers["X-Request-Id"] = rid
        reply.force_close()
        del response
        return reply


class _Server(web.Server):
    """web.Server with `_Connection` as its connection handler (web.Server's own __call__
    makes a RequestHandler with the same arguments)."""

    def __call__(self) -> web_protocol.RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)


def _host_name(header: str) -> str:
    """The host part of a Host header ("[::1]:8501" -> "::1"), lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def allowed_host_names(host: str, extra=()) -> set[str] | None:
    """Host header names a server bound to `host` answers; None: any (`*` in `extra`)."""
    extra = {h.strip().lower() for h in extra if h.strip()}
    if "*" in extra:
        return None
    names = {host.lower()} | extra
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if host.lower() == "localhost" or (ip is not None and ip.is_loopback):
        names |= {"localhost", "127.0.0.1", "::1"}
    if ip is not None and ip.is_unspecified:  # 0.0.0.0 / :: : the machine's own names too
        names |= {"localhost", socket.gethostname().lower(), socket.getfqdn().lower()}
    return names


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class RestServer:
    """Serves a RestApi on host:port (0: a free port) from a thread running an asyncio loop.

        server = RestServer(api, "127.0.0.1", 0).start()
        print(server.port)
        server.stop()
    """

    def __init__(self, api: RestApi, host: str = "127.0.0.1", port: int = 8501, *,
                 max_body_bytes: int = MAX_BODY_BYTES,
                 max_inflight_bytes: int = MAX_INFLIGHT_BYTES, socket_timeout: float = 30,
                 min_upload_rate: int = MIN_UPLOAD_RATE, max_workers: int = 64,
                 allowed_hosts=(), quiet: bool = True):
        self.api, self.host = api, host
        self.max_body_bytes, self.socket_timeout = max_body_bytes, socket_timeout
        # A body and its tensors (each at most max_body_bytes) always fit an idle server.
        self.max_inflight_bytes = max(max_inflight_bytes, 2 * max_body_bytes)
        self.min_upload_rate = min_upload_rate
        self.allowed = allowed_host_names(host, allowed_hosts)
        self._any_ip = _is_ip(host) and ipaddress.ip_address(host).is_unspecified
        self.quiet = quiet
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="rest")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError:
            self._sock.close()
            raise
        self.port = self._sock.getsockname()[1]
        self.server_address = (host, self.port)
        self._loop = self._runner = self._thread = None
        if quiet:
            # Malformed HTTP is answered with 400 by aiohttp; its traceback is not news.
            logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)

    # lifecycle ---------------------------------------------------------------------------
    def start(self) -> "RestServer":
        started = threading.Event()
        errors = []

        def run():
            loop = self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start_site())
            except BaseException as e:  # noqa: BLE001 - re-raised in the starting thread
                errors.append(e)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            pending = asyncio.all_tasks(loop)  # connections still open: end their handlers
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, name="rest-loop", daemon=True)
        self._thread.start()
        started.wait()
        if errors:
            raise errors[0]
        return self

    async def _start_site(self):
        self._budget = _ByteBudget(self.max_inflight_bytes)
        server = _Server(self._handle, keepalive_timeout=self.socket_timeout,
                            lingering_time=LINGER_SECONDS, access_log=None)
        self._runner = web.ServerRunner(server, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock, backlog=1024, shutdown_timeout=1).start()

    def stop(self):
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # one request -------------------------------------------------------------------------
    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        rid = new_request_id()
        held, close = 0, False
        try:
            self._check_host(request)
            if request.method != "POST":
                if request.body_exists:
                    raise _HttpError(400, f"a {request.method} request has no body; got one "
                                     "(Content-Length or Transfer-Encoding)", close=True)
                body = None
            else:
                ctype = request.headers.get("Content-Type", "")
                if ctype.split(";")[0].strip().lower() != "application/json":
                    raise _HttpError(415, f"Content-Type {ctype[:100]!r}; a POST must be "
                                     "'application/json'", close=True)
                body, held = await self._read_body(request)
            loop = asyncio.get_running_loop()
            status, payload = await loop.run_in_executor(
                self._pool, self._handle_in_thread, request.method, request.raw_path,
                body, held, rid)
            del body
        except _HttpError as e:
            status, payload, close = e.status, {"error": str(e)}, e.close
        except Exception:  # a bug in this layer: logged with the id the client gets
            log(f"request {rid} ({request.method} {request.raw_path[:200]}) failed:\n"
                f"{traceback.format_exc().rstrip()}")
            status, close = 500, True
            payload = {"error": f"internal error (request id {rid}; see the server log)"}
        finally:
            self._budget.give(held)
        if not self.quiet:
            log(f"{rid} {request.remote} {request.method} {request.raw_path[:200]} {status}")
        if isinstance(payload, str):
            response = web.Response(status=status, text=payload,
                                    content_type="text/plain", charset=None)
            response.headers["Content-Type"] = "text/plain; version=0.0.4"
        else:
            response = web.Response(status=status, body=json.dumps(payload).encode(),
                                    content_type="application/json")
        response.headers["X-Request-Id"] = rid
        if close:
            response.force_close()
        return response

    def _handle_in_thread(self, method, path, body, held, rid):
        charged = 0

        def reserve(n: int):
            nonlocal charged
            limit = self._budget.limit
            if held + n > limit:
                raise unavailable(f"the request's tensors are {n} bytes decoded, on top of its "
                                  f"{held}-byte body; this server holds at most {limit} bytes "
                                  "of request bodies and tensors (--max_inflight_bytes)")
            # No waiting here: a worker thread waiting for bytes that queued bodies hold could
            # wait for itself. The client gets 503 and retries.
            if n and not self._budget.try_take(n):
                raise unavailable(f"server busy: the request's tensors need {n} bytes decoded "
                                  f"and {self._budget.used} bytes of request bodies and "
                                  "tensors are in flight (--max_inflight_bytes); retry later")
            charged += n

        try:
            return self.api.handle(method, path, body, rid, reserve)
        finally:
            self._budget.give(charged)

    def _check_host(self, request):
        header = request.headers.get("Host")
        if header is None:
            raise _HttpError(400, "the request has no Host header (HTTP/1.1 requires one)")
        if self.allowed is None:
            return
        name = _host_name(header)
        if name in self.allowed or (self._any_ip and _is_ip(name)):
            return
        raise _HttpError(403, f"Host {header[:100]!r} is not this server's; expected one of "
                         f"{sorted(self.allowed)} (add names with --rest_allowed_hosts)",
                         close=True)

    async def _read_body(self, request) -> tuple[bytearray, int]:
        """The body, within the deadline and rate; returns (body, bytes charged)."""
        limit, length = self.max_body_bytes, request.content_length
        if length is not None and length > limit:
            raise _HttpError(413, f"request body of {length} bytes exceeds the limit of {limit} "
                             "bytes (--max_body_bytes)", close=True)
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + self.socket_timeout
        body, received, held = bytearray(), 0, 0
        try:
            while True:
                # What has arrived is read first: only a wait for more data can be too slow
                # (the server's own delays under load must not count against the client).
                try:
                    chunk = request.content.read_nowait()
                except Exception as e:  # the stream's error: the client went away
                    raise _HttpError(400, f"the body ended after {received} bytes "
                                     f"({type(e).__name__})", close=True) from None
                if not chunk:
                    if request.content.is_eof():
                        break
                    now = loop.time()
                    # Past its first second the body must average min_upload_rate bytes/s.
                    rate_end = start + _GRACE_SECONDS + received / max(self.min_upload_rate, 1)
                    wait = min(deadline, rate_end) - now
                    if wait <= 0:
                        raise self._too_slow(received, now - start, now >= deadline)
                    try:
                        chunk = await asyncio.wait_for(request.content.readany(), wait)
                    except asyncio.TimeoutError:
                        now = loop.time()
                        raise self._too_slow(received, now - start, now >= deadline) from None
                    except Exception as e:  # the client went away or broke the framing
                        raise _HttpError(400, f"the body ended after {received} bytes "
                                         f"({type(e).__name__})", close=True) from None
                    if not chunk:
                        break
                received += len(chunk)
                if received > limit:  # a chunked or compressed body past the limit
                    raise _HttpError(413, f"request body exceeds the limit of {limit} bytes "
                                     "after decompression (--max_body_bytes)", close=True)
                if not await self._budget.take(len(chunk), deadline - loop.time()):
                    raise _HttpError(503, f"server busy: {self._budget.used} bytes of request "
                                     "bodies in flight; retry later", close=True)
                held += len(chunk)
                body += chunk  # one growing buffer: a list of chunks joined at the end
                # would hold the body twice
        except BaseException:
            self._budget.give(held)
            raise
        if length is not None and received < length:
            self._budget.give(held)
            raise _HttpError(400, f"the body ended after {received} of {length} bytes "
                             "(Content-Length)", close=True)
        return body, held

    def _too_slow(self, received: int, elapsed: float, deadline: bool) -> _HttpError:
        if deadline:
            why = f"the body did not arrive within {self.socket_timeout:g} s"
        else:
            why = (f"the body arrives at {received / max(elapsed, 1e-9):.0f} bytes/s; the "
                   f"minimum is {self.min_upload_rate} bytes/s")
        return _HttpError(408, f"{why} ({received} bytes received)", close=True)


def make_http_server(api: RestApi, host: str = "127.0.0.1", port: int = 8501,
                     **kwargs) -> RestServer:
    """A started RestServer (port 0 picks a free port: see `.port`)."""
    return RestServer(api, host, port, **kwargs).start()
