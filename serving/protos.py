"""TF Serving config protos that the `tensorflow-serving-api` wheel does not ship.

The wheel (2.21) has `ModelServerConfig` (tensorflow_serving.config.model_server_config_pb2) but
not `tensorflow_serving/config/monitoring_config.proto` (MonitoringConfig, for
`--monitoring_config_file`) nor `tensorflow_serving/servables/tensorflow/
session_bundle_config.proto` (BatchingParameters, for `--batching_parameters_file`). When a
build with those modules is installed we use them; otherwise we declare the same messages (same
package, names, field numbers and types as TF Serving's .proto files) in the default descriptor
pool, so the text-format files TF Serving reads parse identically here.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf import wrappers_pb2  # noqa: F401  (registers google/protobuf/wrappers.proto)

from tfzoo.errors import TfzooError

_F = descriptor_pb2.FieldDescriptorProto


def _field(name, number, kind, type_name=None, repeated=False):
    field = _F(name=name, number=number, type=kind,
               label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
    if type_name:
        field.type_name = type_name
    return field


def _declare(filename: str, messages: dict, deps=()):
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(filename)
    except KeyError:
        proto = descriptor_pb2.FileDescriptorProto(name=filename, package="tensorflow.serving",
                                                   syntax="proto3", dependency=list(deps))
        for name, fields in messages.items():
            proto.message_type.add(name=name, field=fields)
        pool.Add(proto)
    return {name: message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"tensorflow.serving.{name}")) for name in messages}


def _monitoring():
    try:
        # deferred: an optional module of the serving extra, declared here when absent
        from tensorflow_serving.config import monitoring_config_pb2

        return monitoring_config_pb2.MonitoringConfig
    except ImportError:
        pass
    classes = _declare("tensorflow_serving/config/monitoring_config.proto", {
        "PrometheusConfig": [_field("enable", 1, _F.TYPE_BOOL), _field("path", 2, _F.TYPE_STRING)],
        "MonitoringConfig": [_field("prometheus_config", 1, _F.TYPE_MESSAGE,
                                    ".tensorflow.serving.PrometheusConfig")],
    })
    return classes["MonitoringConfig"]


def _batching():
    try:
        # deferred: an optional module of the serving extra, declared here when absent
        from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2

        return session_bundle_config_pb2.BatchingParameters
    except ImportError:
        pass
    i64, s = ".google.protobuf.Int64Value", ".google.protobuf.StringValue"
    # Only BatchingParameters: SessionBundleConfig would drag in tensorflow's ConfigProto.
    classes = _declare("tensorflow_serving/servables/tensorflow/session_bundle_config.proto", {
        "BatchingParameters": [
            _field("max_batch_size", 1, _F.TYPE_MESSAGE, i64),
            _field("batch_timeout_micros", 2, _F.TYPE_MESSAGE, i64),
            _field("max_enqueued_batches", 3, _F.TYPE_MESSAGE, i64),
            _field("num_batch_threads", 4, _F.TYPE_MESSAGE, i64),
            _field("thread_pool_name", 5, _F.TYPE_MESSAGE, s),
            _field("allowed_batch_sizes", 6, _F.TYPE_INT64, repeated=True),
            _field("pad_variable_length_inputs", 7, _F.TYPE_BOOL),
        ],
    }, deps=["google/protobuf/wrappers.proto"])
    return classes["BatchingParameters"]


MonitoringConfig = _monitoring()
BatchingParameters = _batching()


def model_server_config():
    # deferred: the serving extra, loads TensorFlow (dev_server --help stays fast)
    from tensorflow_serving.config import model_server_config_pb2

    return model_server_config_pb2.ModelServerConfig()


def parse_text_file(path, message, flag: str):
    """Parses a text-format proto file into `message`; ValueError names the flag and the file."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise TfzooError(f"{flag}={path}: cannot read it ({e})") from None
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as e:
        raise TfzooError(f"{flag}={path}: not a text-format {message.DESCRIPTOR.full_name}: "
                         f"{e}") from None
