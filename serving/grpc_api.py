"""TF Serving's gRPC services on grpcio: PredictionService (Predict, GetModelMetadata) and
ModelService (GetModelStatus), through the `tensorflow_serving.apis` servicers."""

from __future__ import annotations

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


def _call(context, fn, what: str, status: list | None = None):
    """Runs `fn()`; a ServingError aborts with its code, anything else is logged and INTERNAL.

    Every reply carries the request id in its trailing metadata (`x-request-id`); `status[0]`
    gets the status code's name.
    """
    rid = new_request_id()
    context.set_trailing_metadata((("x-request-id", rid),))
    status = status if status is not None else [None]
    try:
        status[0] = "OK"
        return fn()
    except ServingError as e:
        status[0] = e.code.name
        context.abort(e.code, str(e))
    except Exception:  # a bug: the client gets the id, the log gets the traceback
        status[0] = "INTERNAL"
        log(f"request {rid} ({what}) failed:\n{traceback.format_exc().rstrip()}")
        context.abort(grpc.StatusCode.INTERNAL,
                      f"internal error (request id {rid}; see the server log)")


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ModelManager, metrics, max_tensor_bytes: int):
        self.manager, self.metrics, self.max_tensor_bytes = manager, metrics, max_tensor_bytes

    def _predict(self, request, context):
        def inputs_fn(sig, signature):
            return protos_to_inputs(request.inputs, dict(sig.inputs), signature,
                                    self.max_tensor_bytes), None

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

    def Predict(self, request, context):
        start, status = time.perf_counter(), [None]
        try:
            return _call(context, lambda: self._predict(request, context), "Predict", status)
        finally:
            if request.model_spec.name in self.manager.configs:
                self.metrics.record("gRPC", request.model_spec.name, status[0],
                                    time.perf_counter() - start)

    def GetModelMetadata(self, request, context):
        return _call(context, lambda: self.manager.metadata(request), "GetModelMetadata")


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager):
        self.manager = manager

    def GetModelStatus(self, request, context):
        return _call(context, lambda: self.manager.status(request.model_spec),
                     "GetModelStatus")


def make_grpc_server(manager: ModelManager, metrics, host: str = "127.0.0.1",
                     port: int = 8500, *, max_body_bytes: int = MAX_BODY_BYTES,
                     max_threads: int = 64):
    """A started gRPC server and its bound port (port 0 picks a free one)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="grpc"),
        # Beyond this many RPCs in progress, new ones get RESOURCE_EXHAUSTED instead of waiting.
        maximum_concurrent_rpcs=max_threads * 4,
        options=[("grpc.max_receive_message_length", max_body_bytes),
                 ("grpc.max_send_message_length", -1),
                 # Off, so that a second server on the same port fails to bind instead of
                 # silently sharing (and splitting) the traffic.
                 ("grpc.so_reuseport", 0)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(manager, metrics, max_body_bytes), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager), server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:  # grpcio raises instead of returning 0 on some versions
        bound = 0
    if not bound:
        raise OSError(f"cannot bind gRPC to {host}:{port} (in use?)")
    server.start()
    return server, bound
