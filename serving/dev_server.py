"""A small development stand-in for TensorFlow Serving: its gRPC and REST APIs and semantics.

TF Serving ships as the `tensorflow/serving` Docker image; where Docker is not available (CI,
laptops) this server lets clients exercise the same protocols. It loads SavedModels as TF
Serving does (the TF1 session loader in its own graph and session; warmup records replayed),
polls the model directories for new and removed versions, and answers with TF Serving's status
codes, messages and JSON. Not for production: no authentication, one process.

    python -m serving.dev_server --model_name=tresnet50 --model_base_path=/srv/models/tresnet50
    python -m serving.dev_server --model_config_file=serving/models.config \\
        --allow_version_labels_for_unavailable_models --enable_batching \\
        --batching_parameters_file=serving/batching.config \\
        --monitoring_config_file=serving/monitoring.config

gRPC (--port, 8500): tensorflow.serving.PredictionService/{Predict, GetModelMetadata} and
ModelService/GetModelStatus on grpcio (serving/grpc_api.py).
REST (--rest_api_port, 8501) on aiohttp (serving/rest.py):
  GET  /v1/models/NAME[/versions/N | /labels/L]            version status
  GET  /v1/models/NAME[/versions/N | /labels/L]/metadata   signature defs
  POST /v1/models/NAME[/versions/N | /labels/L]:predict    "instances" or "inputs" JSON
  GET  /monitoring/prometheus/metrics                      with --monitoring_config_file
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from tfzoo.errors import quiet_tensorflow_start_up

from . import cli

quiet_tensorflow_start_up()  # TF's C++ start-up lines before our one-line errors

PROG = "python -m serving.dev_server"


def define_flags(f):
    d = dict(flag_values=f)
    f_int, f_str, f_bool, f_float = (cli.flags.DEFINE_integer, cli.flags.DEFINE_string,
                                     cli.flags.DEFINE_boolean, cli.flags.DEFINE_float)
    f_int("port", 8500, "gRPC port (0: no gRPC).", **d)
    f_int("rest_api_port", 8501, "REST port (0: no REST).", **d)
    f_str("host", "127.0.0.1", "Address to bind (default loopback; this server has no auth).", **d)
    f_str("model_name", os.environ.get("MODEL_NAME", "default"), "The model's name.", **d)
    f_str("model_base_path", None, "The model's directory, holding its version directories "
          "(default $MODEL_BASE_PATH/$MODEL_NAME as in the Docker image).", **d)
    f_str("model_config_file", None, "Text ModelServerConfig (model_config_list); replaces "
          "--model_name/--model_base_path.", **d)
    f_float("file_system_poll_wait_seconds", 1, "Poll interval for new/removed versions "
            "(<= 0: only at start-up).", **d)
    f_bool("allow_version_labels_for_unavailable_models", False,
           "Allow version labels in the config file (assigned before versions load).", **d)
    f_bool("enable_batching", False, "Batch concurrent requests.", **d)
    f_str("batching_parameters_file", None, "Text BatchingParameters (needs --enable_batching).",
          **d)
    f_bool("enable_model_warmup", True, "Replay assets.extra/tf_serving_warmup_requests.", **d)
    f_int("max_num_load_retries", 5, "Retries of a version that fails to load (TF Serving's).",
          **d)
    f_int("load_retry_interval_micros", 60_000_000, "Wait between load retries (TF Serving's).",
          **d)
    f_int("rest_api_timeout_in_ms", 30000, "Deadline of a REST predict (504 after it).", **d)
    f_str("monitoring_config_file", None, "Text MonitoringConfig: prometheus_config { enable: "
          "true path: ... }.", **d)
    f_int("grpc_max_threads", 64, "gRPC worker threads.", **d)
    # Dev-server-only limits (TF Serving sets these elsewhere).
    f_int("max_body_bytes", 32 * 1024 * 1024, "Largest REST body (after decompression) and gRPC "
          "message, and the decoded size of one request's tensors together.", **d)
    f_int("max_inflight_bytes", 128 * 1024 * 1024, "REST body bytes and decoded tensor bytes "
          "held at once: bodies are charged as they arrive, tensors once validated and before "
          "they are built (beyond: 503); at least twice --max_body_bytes.", **d)
    f_int("max_connections", 64, "REST requests parsed and run at once (worker threads); more "
          "wait for a worker.", **d)
    f_float("socket_timeout_seconds", 30, "A REST connection's headers must arrive within this "
            "of it going idle, and a body within this of its headers (absolute deadlines).", **d)
    f_int("min_upload_bytes_per_second", 16384, "After its first second, a REST body must "
          "average this rate (else 408).", **d)
    f_str("rest_allowed_hosts", "", "Comma-separated extra Host header names the REST API "
          "answers (default: the bound address; '*': any).", **d)
    f_float("unload_timeout_seconds", 30, "An unloading version waits this long for requests "
            "in flight.", **d)
    f_bool("verbose", False, "Log every REST request.", **d)


def configs_from_flags(f):
    from .models import ModelConfig, read_model_config_file

    if f.model_config_file:
        return read_model_config_file(f.model_config_file)
    base = f.model_base_path
    if base is None:
        base = os.path.join(os.environ.get("MODEL_BASE_PATH", "/models"), f.model_name)
    return [ModelConfig(f.model_name, Path(base))]


def batching_from_flags(f):
    from . import protos
    from .batching import BatchOptions

    if f.batching_parameters_file and not f.enable_batching:
        raise ValueError("--batching_parameters_file needs --enable_batching")
    if not f.enable_batching:
        return None
    if not f.batching_parameters_file:
        return BatchOptions()
    params = protos.parse_text_file(f.batching_parameters_file, protos.BatchingParameters(),
                                    "--batching_parameters_file")
    return BatchOptions.from_proto(params)


def prometheus_path_from_flags(f) -> str | None:
    from . import protos
    from .metrics import PROMETHEUS_PATH

    if not f.monitoring_config_file:
        return None
    config = protos.parse_text_file(f.monitoring_config_file, protos.MonitoringConfig(),
                                    "--monitoring_config_file")
    if not config.prometheus_config.enable:
        return None
    return config.prometheus_config.path or PROMETHEUS_PATH


def _check(f):
    for name in ("max_body_bytes", "max_inflight_bytes", "max_connections",
                 "grpc_max_threads", "min_upload_bytes_per_second"):
        if getattr(f, name) < 1:
            raise ValueError(f"--{name}={getattr(f, name)}; expected a positive number")
    for name in ("max_num_load_retries", "load_retry_interval_micros"):
        if getattr(f, name) < 0:
            raise ValueError(f"--{name}={getattr(f, name)}; expected >= 0")
    if f.socket_timeout_seconds <= 0:
        raise ValueError(f"--socket_timeout_seconds={f.socket_timeout_seconds}; expected > 0")


def main(argv=None):
    f = cli.parse(define_flags, PROG, argv, __doc__)
    from .grpc_api import make_grpc_server
    from .metrics import Metrics
    from .models import ModelManager, log
    from .rest import RestApi, RestServer, allowed_host_names

    try:
        _check(f)
        manager = ModelManager(
            configs_from_flags(f), batching=batching_from_flags(f),
            warmup=f.enable_model_warmup,
            allow_labels_for_unavailable=f.allow_version_labels_for_unavailable_models,
            max_tensor_bytes=f.max_body_bytes, max_num_load_retries=f.max_num_load_retries,
            load_retry_interval_s=f.load_retry_interval_micros / 1e6,
            unload_timeout_s=f.unload_timeout_seconds)
        prometheus = prometheus_path_from_flags(f)
    except ValueError as e:
        cli.fail("dev_server", e)
    if allowed_host_names(f.host) != allowed_host_names("127.0.0.1"):
        log(f"warning: binding to {f.host}: this development server has no authentication "
            "and may be reachable from other machines")
    manager.poll()
    for name, versions in manager.available().items():
        if not versions:
            log(f"model {name!r}: no version available yet (polling)")
    manager.start_polling(f.file_system_poll_wait_seconds)
    metrics = Metrics()
    grpc_server = rest = None
    try:
        if f.port:
            grpc_server, port = make_grpc_server(manager, metrics, f.host, f.port,
                                                 max_body_bytes=f.max_body_bytes,
                                                 max_threads=f.grpc_max_threads)
            log(f"gRPC on {f.host}:{port}")
        if f.rest_api_port:
            api = RestApi(manager, metrics, f.rest_api_timeout_in_ms, prometheus)
            rest = RestServer(
                api, f.host, f.rest_api_port, max_body_bytes=f.max_body_bytes,
                max_inflight_bytes=f.max_inflight_bytes, socket_timeout=f.socket_timeout_seconds,
                min_upload_rate=f.min_upload_bytes_per_second, max_workers=f.max_connections,
                allowed_hosts=f.rest_allowed_hosts.split(","), quiet=not f.verbose).start()
            log(f"REST on http://{f.host}:{rest.port}/v1/models/"
                + (f" (metrics at {prometheus})" if prometheus else ""))
    except OSError as e:
        manager.close()
        cli.fail("dev_server", e)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if rest is not None:
            rest.stop()
        if grpc_server is not None:
            grpc_server.stop(1)
        manager.close()


if __name__ == "__main__":
    main()
