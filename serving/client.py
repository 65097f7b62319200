"""Classifies a video with a model behind TF Serving (or serving.dev_server), over REST or gRPC.

    python -m serving.client --url http://localhost:8501 --model tresnet50 --video clip.mp4
    python -m serving.client --grpc localhost:8500 --model tresnet50 --video clip.mp4

Decodes the clip with PyAV, takes `--num_frames` equally spaced frames (the papers' test
protocol), scales them so the shorter side is `--short_side` pixels (0 keeps the decoded size)
and sends them as JPEG-encoded frames (`--frames=jpeg`, the default: a (B=1, T) string tensor
`ENCODED_INPUT` of signature `ENCODED_SIGNATURE`; a 16-frame 224 clip is a few hundred KB instead
of 2.4 MB raw or ~8 MB as JSON) or as raw uint8 `rgb` (B=1, T, H, W, 3) to `serving_default`
(`--frames=raw`), then prints the top-k labels. A model with a `flow` input also needs `--flow`,
a .npy float32 array (T, H, W, 2L) in pixels at the same resolution (sent raw).

Every call honours `--timeout`; connection failures and "unavailable" answers (HTTP 503, gRPC
UNAVAILABLE) are retried `--retries` times with exponential backoff, nothing else is. Errors are
one line. REST needs only the standard library; gRPC needs tensorflow-serving-api and grpcio
(the `serving` extra).
"""

from __future__ import annotations

import base64
import fractions
import http.client
import json
import socket
import sys
import time
import urllib.error
import urllib.request

import numpy as np

from tfzoo.errors import DataError, TfzooError

from . import cli
from .errors import ServingError

# The export's encoded-frames signature (export/saved_model.py): adjust here if it is renamed.
ENCODED_SIGNATURE = "serving_encoded"
ENCODED_INPUT = "frames"
JPEG_QSCALE = 2  # FFmpeg's mjpeg quantiser, 2 (best) .. 31: ~quality 95


PROG = "python -m serving.client"


class _Retryable(ServingError):
    """A connection failure or an "unavailable" answer: worth retrying."""


def sample_frames(video_path: str, num_frames: int = 16, short_side: int = 0) -> np.ndarray:
    """`num_frames` equally spaced RGB frames of a video as uint8 (T, H, W, 3)."""
    import av  # deferred: PyAV (0.2 s) stays off the client's --help and flag errors

    if num_frames < 1:
        raise TfzooError(f"num_frames={num_frames}; expected a positive integer")
    try:
        container = av.open(str(video_path))
    except (av.FFmpegError, OSError) as e:
        raise DataError(f"cannot open video {str(video_path)!r}: {e}") from None
    with container:
        if not container.streams.video:
            raise DataError(f"{video_path!r} has no video stream")
        stream = container.streams.video[0]
        # stream.frames is a container estimate (0 when unknown); count by demuxing instead,
        # which reads packets without decoding them.
        total = sum(1 for p in container.demux(stream) if p.size)
        if total == 0:
            raise DataError(f"{video_path!r} has no video frames")
        wanted = np.linspace(0, total - 1, num_frames).round().astype(int)
        container.seek(0)
        wanted_set, picked = set(wanted.tolist()), {}
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted_set:
                picked[i] = _to_rgb(frame, short_side)
            if i >= wanted[-1]:
                break
    if not picked:
        raise DataError(f"{video_path!r}: decoded no frames")
    last = max(picked)
    # A repeated index (num_frames > total) repeats the frame; a frame that would not decode
    # (demux count over-estimates) falls back to the last decoded one.
    frames = [picked.get(i, picked[last]) for i in wanted]
    return np.stack(frames)


def _to_rgb(frame, short_side: int) -> np.ndarray:
    if short_side:
        w, h = frame.width, frame.height
        scale = short_side / min(w, h)
        frame = frame.reformat(width=max(1, round(w * scale)), height=max(1, round(h * scale)))
    return frame.to_ndarray(format="rgb24")


def encode_jpeg(frames: np.ndarray, qscale: int = JPEG_QSCALE) -> list[bytes]:
    """uint8 RGB frames (T, H, W, 3) as baseline JPEG files (full-range 4:4:4, PyAV's mjpeg)."""
    import av  # deferred: PyAV (0.2 s) stays off the client's --help and flag errors

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise TfzooError(f"frames have shape {frames.shape} and dtype {frames.dtype}; expected "
                         "uint8 (T, H, W, 3)")
    out = []
    for rgb in frames:
        codec = av.CodecContext.create("mjpeg", "w")
        codec.width, codec.height = rgb.shape[1], rgb.shape[0]
        codec.pix_fmt = "yuvj444p"
        codec.time_base = fractions.Fraction(1, 25)
        codec.options = {"qscale": str(qscale)}
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuvj444p")
        out.append(b"".join(bytes(p) for p in codec.encode(frame) + codec.encode(None)))
    return out


def _with_retries(call, retries: int, backoff: float):
    for attempt in range(retries + 1):
        try:
            return call()
        except _Retryable as e:
            if attempt == retries:
                raise ServingError(f"{e} (after {retries + 1} attempts)") from None
            time.sleep(backoff * 2 ** attempt)


def _request(url: str, payload: dict | None, timeout: float, retries: int = 3,
             backoff: float = 0.5) -> dict:
    data = None if payload is None else json.dumps(payload).encode()

    def once():
        req = urllib.request.Request(url, data=data,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                message = json.loads(body).get("error", body.decode(errors="replace"))
            except (ValueError, AttributeError):
                message = body.decode(errors="replace")[:200]
            error = _Retryable if e.code == 503 else ServingError
            raise error(f"{url}: HTTP {e.code}: {message}") from None
        except (TimeoutError, socket.timeout):
            raise ServingError(f"{url}: no reply within --timeout={timeout:g} s") from None
        except urllib.error.URLError as e:
            if isinstance(e.reason, (TimeoutError, socket.timeout)):
                raise ServingError(f"{url}: no reply within --timeout={timeout:g} s") from None
            raise _Retryable(f"{url}: cannot connect ({e.reason})") from None
        except (ConnectionError, http.client.HTTPException) as e:
            raise _Retryable(f"{url}: connection failed ({type(e).__name__}: {e})") from None
        except ValueError as e:
            raise ServingError(f"{url}: the reply is not JSON ({e})") from None

    return _with_retries(once, retries, backoff)


def _model_url(url: str, model: str, version: int | None, label: str | None = None) -> str:
    url = url.rstrip("/") + f"/v1/models/{model}"
    if version is not None:
        return url + f"/versions/{version}"
    return url + (f"/labels/{label}" if label else "")


def rest_metadata(url: str, model: str, version: int | None = None, *, label=None,
                  timeout: float = 30, retries: int = 3) -> dict:
    """{signature: {"inputs": {name: dtype}, ...}} from GET /v1/models/NAME/metadata."""
    meta = _request(_model_url(url, model, version, label) + "/metadata", None, timeout, retries)
    defs = meta["metadata"]["signature_def"]["signature_def"]
    return {k: {"inputs": {n: i["dtype"] for n, i in s.get("inputs", {}).items()}}
            for k, s in defs.items()}


def signature_inputs(url: str, model: str, signature: str = "serving_default",
                     version: int | None = None, timeout: float = 30) -> list[str]:
    """Input names of a signature, from GET /v1/models/NAME/metadata."""
    defs = rest_metadata(url, model, version, timeout=timeout)
    if signature not in defs:
        raise ServingError(f"model {model!r} has no signature {signature!r}; it has {sorted(defs)}")
    return sorted(defs[signature]["inputs"])


def _json_tensor(value):
    value = np.asarray(value) if not isinstance(value, list) else value
    if isinstance(value, np.ndarray) and value.dtype == object:
        flat = [{"b64": base64.b64encode(b).decode("ascii")} for b in value.reshape(-1)]
        holder = np.empty(len(flat), dtype=object)
        holder[:] = flat
        return holder.reshape(value.shape).tolist()
    return np.asarray(value).tolist()


def predict_rest(url: str, model: str, inputs: dict, *, signature: str = "serving_default",
                 version: int | None = None, label: str | None = None, timeout: float = 300,
                 retries: int = 3) -> dict[str, np.ndarray]:
    """POSTs batched `inputs` in the columnar ("inputs") format; returns the outputs as arrays.

    Byte-string inputs (numpy object arrays of bytes) are sent as {"b64": ...}.
    """
    payload = {"signature_name": signature,
               "inputs": {k: _json_tensor(v) for k, v in inputs.items()}}
    reply = _request(_model_url(url, model, version, label) + ":predict", payload, timeout,
                     retries)
    outputs = reply["outputs"]
    if not isinstance(outputs, dict):  # a single-output signature returns the bare value
        outputs = {"output": outputs}
    return {k: np.asarray(v) for k, v in outputs.items()}


def _grpc():
    try:
        import grpc  # deferred: the serving extra; the REST client needs none of it
        import tensorflow as tf  # deferred: loads TensorFlow
        # deferred: the serving extra (loads TensorFlow)
        from tensorflow_serving.apis import (get_model_metadata_pb2, predict_pb2,
                                             prediction_service_pb2_grpc)
    except ImportError as e:
        raise ServingError(f"the gRPC client needs tensorflow-serving-api ({e}); install it "
                           "with `pip install tfzoo[serving]` or use --url (REST)") from None
    return grpc, tf, predict_pb2, get_model_metadata_pb2, prediction_service_pb2_grpc


def _grpc_call(target: str, method: str, request, timeout: float, retries: int,
               backoff: float = 0.5):
    grpc, _, _, _, services = _grpc()
    # Raw video requests can exceed gRPC's 4 MB default message size.
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]

    def once():
        with grpc.insecure_channel(target, options=options) as channel:
            stub = services.PredictionServiceStub(channel)
            try:
                return getattr(stub, method)(request, timeout=timeout)
            except grpc.RpcError as e:
                error = _Retryable if e.code() == grpc.StatusCode.UNAVAILABLE else ServingError
                if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise ServingError(f"{target}: no reply within --timeout={timeout:g} s"
                                       ) from None
                raise error(f"{target}: {e.code().name}: {e.details()}") from None

    return _with_retries(once, retries, backoff)


def grpc_metadata(target: str, model: str, version: int | None = None, *, label=None,
                  timeout: float = 30, retries: int = 3) -> dict:
    """Same as `rest_metadata`, over PredictionService/GetModelMetadata."""
    _, _, _, meta_pb2, _ = _grpc()
    request = meta_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    elif label:
        request.model_spec.version_label = label
    response = _grpc_call(target, "GetModelMetadata", request, timeout, retries)
    sigs = meta_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sigs)
    from tensorflow.core.framework import types_pb2  # deferred: loads TensorFlow

    return {k: {"inputs": {n: types_pb2.DataType.Name(i.dtype) for n, i in s.inputs.items()}}
            for k, s in sigs.signature_def.items()}


def predict_grpc(target: str, model: str, inputs: dict, *, signature: str = "serving_default",
                 version: int | None = None, label: str | None = None, timeout: float = 300,
                 retries: int = 3) -> dict[str, np.ndarray]:
    """Calls PredictionService/Predict over gRPC (needs tensorflow-serving-api)."""
    _, tf, predict_pb2, _, _ = _grpc()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    elif label:
        request.model_spec.version_label = label
    for k, v in inputs.items():
        request.inputs[k].CopyFrom(tf.make_tensor_proto(np.asarray(v)))
    response = _grpc_call(target, "Predict", request, timeout, retries)
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


def format_top_k(outputs: dict[str, np.ndarray], row: int = 0) -> list[str]:
    """'label  probability' lines for one example, best first."""
    indices = outputs["top_k_indices"][row]
    labels = outputs["top_k_labels"][row]
    probs = outputs["probabilities"][row]
    lines = []
    for idx, label in zip(indices, labels):
        label = label.decode() if isinstance(label, bytes) else str(label)
        lines.append(f"{label:<30s} {float(probs[int(idx)]):.4f}")
    return lines


def build_inputs(frames: np.ndarray, how: str, signatures: dict, model: str,
                 flow: np.ndarray | None = None, signature: str | None = None):
    """(signature, inputs) for `frames` sent as `how` ("jpeg" or "raw")."""
    if how == "jpeg":
        sig = signature or ENCODED_SIGNATURE
        if sig not in signatures:
            raise ServingError(
                f"model {model!r} has no signature {sig!r} taking encoded frames (it has "
                f"{sorted(signatures)}): re-export it with `python -m export`, or pass "
                "--frames raw")
        encoded = np.empty((1, len(frames)), dtype=object)
        encoded[0, :] = encode_jpeg(frames)
        inputs = {ENCODED_INPUT: encoded}
    else:
        sig = signature or "serving_default"
        inputs = {"rgb": frames[None]}
    expected = set(signatures.get(sig, {}).get("inputs", {}))
    if flow is not None:
        inputs["flow"] = flow[None]
    if expected and set(inputs) != expected:
        hint = " (pass --flow)" if "flow" in expected - set(inputs) else ""
        raise TfzooError(f"signature {sig!r} of {model!r} takes inputs {sorted(expected)}; "
                         f"this call would send {sorted(inputs)}{hint}")
    return sig, inputs


def define_flags(f):
    d = dict(flag_values=f)
    F = cli.flags
    F.DEFINE_string("url", None, "REST base URL (default http://localhost:8501).", **d)
    F.DEFINE_string("grpc", None, "gRPC target host:port, e.g. localhost:8500 (instead of --url).",
                    **d)
    F.DEFINE_string("model", None, "Model name on the server.", **d)
    F.DEFINE_integer("version", None, "A version (default: latest).", **d)
    F.DEFINE_string("label", None, "A version label, e.g. stable (instead of --version).", **d)
    F.DEFINE_string("video", None, "Video file (anything FFmpeg decodes).", **d)
    F.DEFINE_integer("num_frames", 16, "Frames to sample, equally spaced.", **d)
    F.DEFINE_integer("short_side", 224, "Scale frames to this shorter side; 0 keeps the size.",
                     **d)
    F.DEFINE_enum("frames", "jpeg", ["jpeg", "raw"],
                  "Send JPEG-encoded frames (default) or raw uint8 frames.", **d)
    F.DEFINE_string("flow", None, ".npy float32 (T, H, W, 2L) for two-stream models.", **d)
    F.DEFINE_string("signature", None,
                    f"Default: {ENCODED_SIGNATURE} (jpeg) or serving_default (raw).", **d)
    F.DEFINE_float("timeout", 60, "Seconds, for every call.", **d)
    F.DEFINE_integer("retries", 3, "Retries on connection errors and 503/UNAVAILABLE only.", **d)
    F.mark_flags_as_required(["model", "video"], flag_values=f)


def main(argv=None):
    args = cli.parse(define_flags, PROG, argv, __doc__)
    if args.url and args.grpc:
        cli.fail(PROG, f"--url={args.url} and --grpc={args.grpc}: pass one of them")
    if args.version is not None and args.label:
        cli.fail(PROG, f"--version={args.version} and --label={args.label}: pass one of them")
    try:
        if args.timeout <= 0 or args.retries < 0:
            raise TfzooError(f"--timeout={args.timeout} and --retries={args.retries}; expected "
                             "a positive timeout and retries >= 0")
        frames = sample_frames(args.video, args.num_frames, args.short_side)
        flow = None
        if args.flow:
            flow = np.load(args.flow).astype(np.float32)
            if flow.shape[:3] != frames.shape[:3]:
                raise TfzooError(f"--flow has shape {flow.shape}; expected (T, H, W, 2L) with "
                                 f"(T, H, W) = {frames.shape[:3]} like the sampled frames")
        common = dict(version=args.version, label=args.label, timeout=args.timeout,
                      retries=args.retries)
        if args.grpc:
            signatures = grpc_metadata(args.grpc, args.model, **common)
            sig, inputs = build_inputs(frames, args.frames, signatures, args.model, flow,
                                       args.signature)
            outputs = predict_grpc(args.grpc, args.model, inputs, signature=sig, **common)
        else:
            url = args.url or "http://localhost:8501"
            signatures = rest_metadata(url, args.model, **common)
            sig, inputs = build_inputs(frames, args.frames, signatures, args.model, flow,
                                       args.signature)
            outputs = predict_rest(url, args.model, inputs, signature=sig, **common)
        lines = format_top_k(outputs)
    except (ValueError, OSError, KeyError, ServingError) as e:
        sys.exit(f"client: {e}")
    # Say what was classified: one clip spread over the whole video, not predict's windows.
    print(f"{args.video}: one clip of {frames.shape[0]} frames equally spaced over the whole "
          f"video, {frames.shape[1]}x{frames.shape[2]}, sent as {args.frames} frames; the "
          f"model's prediction for that clip (python -m tfzoo.predict averages windows taken "
          f"along the video at the training frame rate instead)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
