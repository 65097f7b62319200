"""Classifies a video with a model behind TF Serving (or serving.dev_server).

    python -m serving.client --url http://localhost:8501 --model tresnet50 --video clip.mp4
    python -m serving.client --grpc localhost:8500 --model tresnet50 --video clip.mp4

Decodes the clip with PyAV, takes `--num_frames` equally spaced frames (the papers' test
protocol), scales them so the shorter side is `--short_side` pixels (0 keeps the decoded size),
sends them as uint8 `rgb` (B=1, T, H, W, 3) to the `serving_default` signature and prints the
top-k labels. A model with a `flow` input also needs `--flow`, a .npy float32 array
(T, H, W, 2L) in pixels at the same resolution.

The REST client needs only the standard library; the gRPC client needs the `serving` extra
(`pip install tfzoo[serving]`: tensorflow-serving-api and grpcio).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request

import numpy as np


class ServingError(RuntimeError):
    """The server refused the request or could not be reached; the message says which."""


def sample_frames(video_path: str, num_frames: int = 16, short_side: int = 0) -> np.ndarray:
    """`num_frames` equally spaced RGB frames of a video as uint8 (T, H, W, 3)."""
    import av

    if num_frames < 1:
        raise ValueError(f"num_frames={num_frames}; expected a positive integer")
    try:
        container = av.open(str(video_path))
    except (av.FFmpegError, OSError) as e:
        raise ValueError(f"cannot open video {str(video_path)!r}: {e}") from None
    with container:
        if not container.streams.video:
            raise ValueError(f"{video_path!r} has no video stream")
        stream = container.streams.video[0]
        # stream.frames is a container estimate (0 when unknown); count by demuxing instead,
        # which reads packets without decoding them.
        total = sum(1 for p in container.demux(stream) if p.size)
        if total == 0:
            raise ValueError(f"{video_path!r} has no video frames")
        wanted = np.linspace(0, total - 1, num_frames).round().astype(int)
        container.seek(0)
        wanted_set, picked = set(wanted.tolist()), {}
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted_set:
                picked[i] = _to_rgb(frame, short_side)
            if i >= wanted[-1]:
                break
    if not picked:
        raise ValueError(f"{video_path!r}: decoded no frames")
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


def _request(url: str, payload: dict | None, timeout: float) -> dict:
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            message = json.loads(body).get("error", body.decode(errors="replace"))
        except ValueError:
            message = body.decode(errors="replace")
        raise ServingError(f"{url}: HTTP {e.code}: {message}") from None
    except urllib.error.URLError as e:
        raise ServingError(f"{url}: cannot connect ({e.reason})") from None


def _model_url(url: str, model: str, version: int | None) -> str:
    url = url.rstrip("/") + f"/v1/models/{model}"
    return url + (f"/versions/{version}" if version is not None else "")


def signature_inputs(url: str, model: str, signature: str = "serving_default",
                     version: int | None = None, timeout: float = 30) -> list[str]:
    """Input names of a signature, from GET /v1/models/NAME/metadata."""
    meta = _request(_model_url(url, model, version) + "/metadata", None, timeout)
    defs = meta["metadata"]["signature_def"]["signature_def"]
    if signature not in defs:
        raise ServingError(f"model {model!r} has no signature {signature!r}; it has {sorted(defs)}")
    return sorted(defs[signature]["inputs"])


def predict_rest(url: str, model: str, inputs: dict[str, np.ndarray], *,
                 signature: str = "serving_default", version: int | None = None,
                 timeout: float = 300) -> dict[str, np.ndarray]:
    """POSTs batched `inputs` in the columnar ("inputs") format; returns the outputs as arrays."""
    payload = {"signature_name": signature,
               "inputs": {k: np.asarray(v).tolist() for k, v in inputs.items()}}
    reply = _request(_model_url(url, model, version) + ":predict", payload, timeout)
    outputs = reply["outputs"]
    if not isinstance(outputs, dict):  # a single-output signature returns the bare value
        outputs = {"output": outputs}
    return {k: np.asarray(v) for k, v in outputs.items()}


def predict_grpc(target: str, model: str, inputs: dict[str, np.ndarray], *,
                 signature: str = "serving_default", version: int | None = None,
                 timeout: float = 300) -> dict[str, np.ndarray]:
    """Calls PredictionService/Predict over gRPC (needs tensorflow-serving-api)."""
    try:
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    except ImportError as e:
        raise ServingError(f"the gRPC client needs tensorflow-serving-api ({e}); install it "
                           "with `pip install tfzoo[serving]` or use --url (REST)") from None
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    for k, v in inputs.items():
        request.inputs[k].CopyFrom(tf.make_tensor_proto(np.asarray(v)))
    # Video requests exceed gRPC's 4 MB default message size.
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout=timeout)
        except grpc.RpcError as e:
            raise ServingError(f"{target}: {e.code().name}: {e.details()}") from None
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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m serving.client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", default=None, help="REST base URL (default http://localhost:8501)")
    where.add_argument("--grpc", default=None, help="gRPC target host:port, e.g. localhost:8500")
    parser.add_argument("--model", required=True, help="model name on the server")
    parser.add_argument("--version", type=int, default=None, help="a specific version (default: latest)")
    parser.add_argument("--video", required=True, help="video file (anything FFmpeg decodes)")
    parser.add_argument("--num_frames", type=int, default=16)
    parser.add_argument("--short_side", type=int, default=224, help="0 keeps the decoded size")
    parser.add_argument("--flow", default=None, help=".npy float32 (T, H, W, 2L) for two-stream models")
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args(argv)

    try:
        frames = sample_frames(args.video, args.num_frames, args.short_side)
        inputs = {"rgb": frames[None]}
        if args.flow:
            flow = np.load(args.flow).astype(np.float32)
            if flow.shape[:3] != frames.shape[:3]:
                raise ValueError(f"--flow has shape {flow.shape}; expected (T, H, W, 2L) with "
                                 f"(T, H, W) = {frames.shape[:3]} like the sampled frames")
            inputs["flow"] = flow[None]
        if args.grpc:
            outputs = predict_grpc(args.grpc, args.model, inputs, signature=args.signature,
                                   version=args.version, timeout=args.timeout)
        else:
            url = args.url or "http://localhost:8501"
            expected = signature_inputs(url, args.model, args.signature, args.version)
            if "flow" in expected and "flow" not in inputs:
                raise ValueError(f"model {args.model!r} takes inputs {expected}: pass --flow")
            outputs = predict_rest(url, args.model, inputs, signature=args.signature,
                                   version=args.version, timeout=args.timeout)
    except (ValueError, ServingError) as e:
        sys.exit(f"client: {e}")
    print(f"{args.video}: {frames.shape[0]} frames of {frames.shape[1]}x{frames.shape[2]}")
    print("\n".join(format_top_k(outputs)))


if __name__ == "__main__":
    main()
