"""TF Serving warmup records: `assets.extra/tf_serving_warmup_requests`.

The file is a TFRecord of `tensorflow.serving.PredictionLog` messages; TF Serving replays each
`predict_log.request` once when it loads a version, so the first real request does not pay for
graph initialisation. We use `tensorflow-serving-api`'s protos when it is installed (the
`serving` extra) and otherwise encode the few fields we need with the protobuf wire format
ourselves: the export must not depend on an optional package.

Each input tensor is written as a constant-filled TensorProto (shape plus one value): TensorFlow
fills the rest of the tensor with the last value given (`Tensor::FromProto`, also what
`tf.make_ndarray` does), so a 16x224x224 request costs a few bytes instead of megabytes.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from tfzoo.errors import DataError
from tfzoo.utils import varint as _varint

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"

_DTYPES = {"uint8": types_pb2.DT_UINT8, "float32": types_pb2.DT_FLOAT}


def constant_tensor_proto(shape: Sequence[int], dtype: str, value: float) -> tensor_pb2.TensorProto:
    """A TensorProto of `shape` filled with `value` (dtype "uint8" or "float32")."""
    if dtype not in _DTYPES:
        raise DataError(f"warmup dtype {dtype!r} is not supported; expected one of {sorted(_DTYPES)}")
    proto = tensor_pb2.TensorProto(
        dtype=_DTYPES[dtype],
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(s)) for s in shape]
        ),
    )
    if dtype == "uint8":
        proto.int_val.append(int(value))
    else:
        proto.float_val.append(float(value))
    return proto


def have_serving_api() -> bool:
    try:
        # deferred: optional TF Serving's protos (the serving extra)
        import tensorflow_serving.apis.prediction_log_pb2  # noqa: F401
    except ImportError:
        return False
    return True


def prediction_log_bytes(
    model_name: str,
    signature_name: str,
    inputs: Mapping[str, tensor_pb2.TensorProto],
    *,
    use_serving_api: bool | None = None,
) -> bytes:
    """One serialized PredictionLog holding a PredictRequest."""
    if use_serving_api is None:
        use_serving_api = have_serving_api()
    if use_serving_api:
        # deferred: optional TF Serving's protos (the serving extra)
        from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = signature_name
        for key, tensor in inputs.items():
            request.inputs[key].CopyFrom(tensor)
        log = prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)
        )
        return log.SerializeToString()
    return _encode_prediction_log(model_name, signature_name, inputs)


# Field numbers from tensorflow_serving/apis/{prediction_log,predict,model}.proto.
_PREDICTION_LOG_PREDICT_LOG = 6
_PREDICT_LOG_REQUEST = 1
_PREDICT_REQUEST_MODEL_SPEC = 1
_PREDICT_REQUEST_INPUTS = 2
_MODEL_SPEC_NAME = 1
_MODEL_SPEC_SIGNATURE_NAME = 3
_MAP_KEY, _MAP_VALUE = 1, 2


def _field(number: int, payload: bytes) -> bytes:
    # Wire type 2 (length-delimited): strings, bytes, sub-messages and map entries.
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _encode_prediction_log(model_name, signature_name, inputs) -> bytes:
    spec = _field(_MODEL_SPEC_NAME, model_name.encode()) + _field(
        _MODEL_SPEC_SIGNATURE_NAME, signature_name.encode()
    )
    request = _field(_PREDICT_REQUEST_MODEL_SPEC, spec)
    for key, tensor in inputs.items():
        entry = _field(_MAP_KEY, key.encode()) + _field(_MAP_VALUE, tensor.SerializeToString())
        request += _field(_PREDICT_REQUEST_INPUTS, entry)
    return _field(_PREDICTION_LOG_PREDICT_LOG, _field(_PREDICT_LOG_REQUEST, request))


def decode_warmup_request(record: bytes) -> tuple[str, str, dict[str, tensor_pb2.TensorProto]]:
    """(model name, signature name, inputs) of one PredictionLog record.

    A minimal reader for exactly the fields written above, so the dev server can replay warmup
    records without `tensorflow-serving-api`; other fields are skipped.
    """
    log = _fields(record)
    request = _fields(_one(log, _PREDICTION_LOG_PREDICT_LOG, "PredictionLog.predict_log"))
    request = _fields(_one(request, _PREDICT_LOG_REQUEST, "PredictLog.request"))
    spec = _fields(_one(request, _PREDICT_REQUEST_MODEL_SPEC, "PredictRequest.model_spec"))
    name = spec.get(_MODEL_SPEC_NAME, [b""])[-1].decode()
    signature = spec.get(_MODEL_SPEC_SIGNATURE_NAME, [b""])[-1].decode()
    inputs = {}
    for entry in request.get(_PREDICT_REQUEST_INPUTS, []):
        kv = _fields(entry)
        key = kv.get(_MAP_KEY, [b""])[-1].decode()
        inputs[key] = tensor_pb2.TensorProto.FromString(kv.get(_MAP_VALUE, [b""])[-1])
    return name, signature, inputs


def _one(fields, number, what):
    if number not in fields:
        raise DataError(f"warmup record: {what} (field {number}) is missing")
    return fields[number][-1]


def _fields(data: bytes) -> dict[int, list[bytes]]:
    """Length-delimited fields by number; varint and fixed-width fields are skipped."""
    out: dict[int, list[bytes]] = {}
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _read_varint(data, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = _read_varint(data, i)
            if i + n > len(data):
                raise DataError("warmup record: truncated length-delimited field")
            out.setdefault(number, []).append(data[i : i + n])
            i += n
        else:
            raise DataError(f"warmup record: unsupported wire type {wire} for field {number}")
    return out


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(data):
            raise DataError("warmup record: truncated varint")
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def write_warmup_file(saved_model_dir: str | os.PathLike, records: Sequence[bytes]) -> str:
    """Writes `records` to SAVED_MODEL_DIR/assets.extra/tf_serving_warmup_requests."""
    directory = os.path.join(os.fspath(saved_model_dir), WARMUP_DIR)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    return path


def read_warmup_file(saved_model_dir: str | os.PathLike):
    """Decoded warmup requests of a SavedModel directory: [(name, signature, inputs)]."""
    path = os.path.join(os.fspath(saved_model_dir), WARMUP_DIR, WARMUP_FILE)
    if not os.path.exists(path):
        return []
    return [decode_warmup_request(r.numpy()) for r in tf.data.TFRecordDataset(path)]
