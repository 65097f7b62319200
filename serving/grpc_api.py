"""TF Serving's gRPC services on grpcio's asyncio server: PredictionService (Predict,
GetModelMetadata) and ModelService (GetModelStatus), through the `tensorflow_serving.apis`
servicers.

grpc.aio, not grpcio's thread-per-call server: there a call took a worker thread as soon as
its headers arrived and held it while waiting for the request message, so 64 clients that
stalled mid-message blocked every other call. Here a call costs no thread until its message
is complete; then the work runs in a pool of `max_threads` threads.
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from concurrent import futures

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from .errors import ServingError, new_request_id
from .models import ModelManager, log
from .servable import MAX_BODY_BYTES
from .tensors import protos_to_inputs

# Idle connections are closed after this, and any connection is asked to reconnect after
# MAX_CONNECTION_AGE_MS (its calls get the grace period to finish): the outer bound on a
# connection that stalls mid-message. Dead peers are found by keepalive pings.
MAX_CONNECTION_IDLE_MS = 5 * 60 * 1000
MAX_CONNECTION_AGE_MS = 30 * 60 * 1000
MAX_CONNECTION_AGE_GRACE_MS = 60 * 1000
KEEPALIVE_TIME_MS = 2 * 60 * 1000
MAX_STREAMS_PER_CONNECTION = 100


async def _call(context, pool, fn, what: str, status: list | None = None):
    """Runs `fn()` in `pool`; a ServingError aborts with its code, anything else is logged
    and INTERNAL.

    Every reply carries the request id in its trailing metadata (`x-request-id`); `status[0]`
    gets the status code's name.
    """
    rid = new_request_id()
    context.set_trailing_metadata((("x-request-id", rid),))
    status = status if status is not None else [None]
    try:
        status[0] = "OK"
        return await asyncio.get_running_loop().run_in_executor(pool, fn)
    except ServingError as e:
        status[0] = e.code.name
        error = (e.code, str(e))
    except Exception:  # a bug: the client gets the id, the log gets the traceback
        status[0] = "INTERNAL"
        log(f"request {rid} ({what}) failed:\n{traceback.format_exc().rstrip()}")
        error = (grpc.StatusCode.INTERNAL, f"internal error (request id {rid}; see the server "
                                           "log)")
    await context.abort(*error)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ModelManager, metrics, max_tensor_bytes: int, pool):
        self.manager, self.metrics, self.max_tensor_bytes = manager, metrics, max_tensor_bytes
        self.pool = pool

    def _predict(self, request, remaining):
        def inputs_fn(sig, signature):
            return protos_to_inputs(request.inputs, dict(sig.inputs), signature,
                                    self.max_tensor_bytes), None

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

    async def Predict(self, request, context):
        start, status = time.perf_counter(), [None]
        remaining = context.time_remaining()
        try:
            return await _call(context, self.pool, lambda: self._predict(request, remaining),
                               "Predict", status)
        finally:
            if request.model_spec.name in self.manager.configs:
                self.metrics.record("gRPC", request.model_spec.name, status[0],
                                    time.perf_counter() - start)

    async def GetModelMetadata(self, request, context):
        return await _call(context, self.pool, lambda: self.manager.metadata(request),
                           "GetModelMetadata")


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager, pool):
        self.manager, self.pool = manager, pool

    async def GetModelStatus(self, request, context):
        return await _call(context, self.pool,
                           lambda: self.manager.status(request.model_spec), "GetModelStatus")


class GrpcServer:
    """The services on a grpc.aio server whose event loop runs in a thread of its own.

        server = GrpcServer(manager, metrics, "127.0.0.1", 0)
        print(server.port)
        server.stop(None)
    """

    def __init__(self, manager: ModelManager, metrics, host: str = "127.0.0.1",
                 port: int = 8500, *, max_body_bytes: int = MAX_BODY_BYTES,
                 max_threads: int = 64):
        self._pool = futures.ThreadPoolExecutor(max_threads, thread_name_prefix="grpc")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="grpc-loop",
                                        daemon=True)
        self._thread.start()
        self._server = None
        try:
            self.port = self._run(self._start(manager, metrics, host, port, max_body_bytes,
                                              max_threads))
        except BaseException:
            self._close_loop()
            raise

    def _run(self, coro, timeout=None):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self, manager, metrics, host, port, max_body_bytes, max_threads):
        server = grpc.aio.server(
            # Calls waiting for their message take no thread, so this bounds work queued
            # for the pool: beyond it, new calls get RESOURCE_EXHAUSTED instead of waiting.
            maximum_concurrent_rpcs=max_threads * 16,
            options=[("grpc.max_receive_message_length", max_body_bytes),
                     ("grpc.max_send_message_length", -1),
                     ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
                     ("grpc.max_connection_idle_ms", MAX_CONNECTION_IDLE_MS),
                     ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS),
                     ("grpc.max_connection_age_grace_ms", MAX_CONNECTION_AGE_GRACE_MS),
                     ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
                     # Off, so that a second server on the same port fails to bind instead of
                     # silently sharing (and splitting) the traffic.
                     ("grpc.so_reuseport", 0)])
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionService(manager, metrics, max_body_bytes, self._pool), server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelService(manager, self._pool), server)
        try:
            bound = server.add_insecure_port(f"{host}:{port}")
        except RuntimeError:  # grpcio raises instead of returning 0 on some versions
            bound = 0
        if not bound:
            raise OSError(f"cannot bind gRPC to {host}:{port} (in use?)")
        await server.start()
        self._server = server
        return bound

    def stop(self, grace: float | None = None):
        """Stops serving; calls in progress get `grace` seconds (None: cancelled now)."""
        if self._server is not None and self._thread.is_alive():
            self._run(self._server.stop(grace), timeout=(grace or 0) + 30)
            self._server = None
        self._close_loop()

    def _close_loop(self):
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
        self._pool.shutdown(wait=False, cancel_futures=True)


def make_grpc_server(manager: ModelManager, metrics, host: str = "127.0.0.1",
                     port: int = 8500, *, max_body_bytes: int = MAX_BODY_BYTES,
                     max_threads: int = 64) -> tuple[GrpcServer, int]:
    """A started GrpcServer and its bound port (port 0 picks a free one)."""
    server = GrpcServer(manager, metrics, host, port, max_body_bytes=max_body_bytes,
                        max_threads=max_threads)
    return server, server.port
