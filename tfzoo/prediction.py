"""Run a trained model on your own videos: `tfzoo.predict(...)` (this module's `predict`) and
`python -m tfzoo.predict` (the program, tfzoo/predict/__main__.py).

A video is classified the way the papers test (thesis §3.3.5, §4.3.5): the model scores
windows taken along the whole video and the video's prediction is the average of the windows'
pre-softmax scores. The video is streamed: a producer thread decodes (PyAV), keeps only the
sampled frames, rescales them while decoding, and hands them to the model thread through a
bounded queue, so memory is constant in the video's length and decoding overlaps the forward
pass.

Sampling (all of it is reported in the result's "sampling" entry):
- frames: the training stride. A model trained with stride tau in `stride_range` (a, b) on
  videos at `train_fps` frames/s (25, UCF101's rate, unless given) sees every
  (a + b) / 2 * fps / train_fps-th frame of a video at `fps` frames/s (rounded index by index),
  so motion has the speed it had in training whatever the video's frame rate. Two-stream models
  whose flow is computed in the graph take consecutive frames (flow is between adjacent frames).
- precomputed flow (`flow=`, two-stream models): field i is frame i -> i+1 of the video, as
  `python -m tfzoo.flow` writes it. Each window's `num_frames` chunk centres (equally spaced,
  `tfzoo.video.test_indices`) get the L consecutive fields centred on their frame
  (`tfzoo.flow.stacks.flow_indices`: fields t-L/2 .. t+L/2-1, clamped to the window's frames,
  as `TwoStreamFrames` clamps to its clip), resized with the frames and scaled by the resize
  factor (pixels at the network resolution, `tfzoo.data.readers.scale_flow`). The frames keep
  the training stride.
- space: the full frame, shorter side rescaled to the run's `test_short_side` (else the shorter
  side of its training crop), as evaluate does: the models are fully convolutional.
- windows: `window` sampled frames (default: the run's test clip length), one every `stride`
  sampled frames (default window // 2); a last window ends at the video's last sampled frame so
  the whole video is covered; a video shorter than one window repeats its last frame (as
  training does). Each window is scored with the model's task (`task.predict`, which adds the
  horizontal flip when the run's `test_flip` is set).

Result (the JSON that `--json` writes, see docs/predict.md):

    {"video", "model", "classes", "fps", "num_frames", "duration",
     "sampling": {"frame_step", "window", "stride", "short_side", "flip", ...},
     "windows": [{"start", "end", "start_frame", "end_frame", "scores", "top_k": [...]}, ...],
     "video_prediction": {"scores", "probabilities", "top_k": [{"index", "label",
                          "probability"}, ...]}}

`scores` are pre-softmax: logits for a Keras model, log-probabilities for a SavedModel (they
differ from the logits by one constant per window, so the averaged prediction is the same).
With `features=ENDPOINT` the windows are not scored: the result has "features" (num_windows, C),
the endpoint's map averaged over time and space per window (`feature_pool="none"` keeps the
whole maps, (num_windows, T', H', W', C)), and no "video_prediction".

Example:
>>> import numpy as np, tfzoo
>>> model = tfzoo.create_model("tresnet_small", num_classes=3, blocks=(1, 1, 1, 1), width=8)
>>> frames = np.random.default_rng(0).integers(0, 255, (40, 32, 32, 3), dtype="uint8")
>>> out = tfzoo.predict(model, frames, window=8, stride=4, frame_step=1, short_side=32)
>>> len(out["windows"]), out["windows"][1]["start_frame"], len(out["video_prediction"]["top_k"])
(9, 4, 3)
"""

from __future__ import annotations

import math
import os
import queue
import threading
from typing import Iterator, Sequence

import av
import numpy as np
from tqdm import tqdm

from tfzoo.errors import DataError, TfzooError
from tfzoo.protocols import get_protocol
from tfzoo.video import _open, scaled_size, test_indices, video_info

DEFAULT_TRAIN_FPS = 25.0  # UCF101 and most of HMDB51 (the papers' datasets)
DEFAULT_WINDOW = 16
DEFAULT_SHORT_SIDE = 256  # a SavedModel without its run directory: the papers' test scale


class PredictError(TfzooError):
    """Bad model, arguments or task for prediction (the message says what was expected)."""


# --------------------------------------------------------------------------------------------
# Models: anything tfzoo.runnable takes (a Keras model with its run.json, or an export)
# --------------------------------------------------------------------------------------------

class Predictor:
    """A model ready to score windows: `scores(batch) -> (B, C)` pre-softmax, float32.

    Built once per model (the `tf.function` traces are reused across videos). `model` is a
    Keras model, a model directory (run.json + model.keras), a SavedModel directory, or a
    SavedModel loaded with `tf.saved_model.load` (`tfzoo.runnable.load_runnable`); `run_info`
    (a `tfzoo.rundir.RunInfo`) supplies class names and the test geometry when `model` is not a
    model directory.
    """

    def __init__(self, model, *, run_info=None, flip: bool | None = None,
                 features: str | None = None, feature_pool: str = "mean",
                 class_names: Sequence[str] | None = None):
        from tfzoo.runnable import RunnableError, load_runnable  # deferred: loads TensorFlow

        try:
            self.runnable = load_runnable(model, run_info=run_info)
        except RunnableError as e:
            raise PredictError(str(e)) from None
        self.source = self.runnable.source
        self.run_info = run_info = self.runnable.run_info
        # Chunks per window of a two-stream model (its flow stacks), as the export's
        # TwoStreamFrames: the run's clip length.
        self.num_chunks = run_info.num_frames if run_info is not None else 5
        config = dict(run_info.config) if run_info is not None else {}
        if flip is None:
            named = config.get("test_protocol")
            if named:
                flip = get_protocol(named).flip
            else:
                flip = config.get("test_flip", False)
        self.flip = bool(flip)
        self.features, self.feature_pool = features, feature_pool
        try:
            clf = self.runnable.classifier(flip=self.flip, num_chunks=self.num_chunks,
                                           class_names=class_names, features=features,
                                           feature_pool=feature_pool)
        except RunnableError as e:
            raise PredictError(str(e)) from None
        self.name, self.class_names = clf.name, clf.class_names
        self.two_stream, self.flow_stack, self.needs_flow = (clf.two_stream, clf.flow_stack,
                                                             clf.needs_flow)
        self._scores, self._flow_scores = clf.scores, clf.flow_scores
        self._features, self._flow_features = clf.features, clf.flow_features

    # -- geometry ---------------------------------------------------------------------------

    def default_sampling(self, *, window=None, stride=None, frame_step=None, short_side=None,
                         train_fps=None, precomputed_flow: bool = False) -> dict:
        """The sampling parameters not given, from the run (see the module docstring)."""
        info = self.run_info
        config = dict(info.config) if info is not None else {}
        if window is None:
            window = info.num_frames if info is not None else DEFAULT_WINDOW
        if stride is None:
            stride = max(1, int(window) // 2)
        if short_side is None:
            short_side = config.get("test_short_side") or (
                min(info.image_size) if info is not None else DEFAULT_SHORT_SIDE)
        tau = 1.0
        # Flow computed in the graph is between the sampled frames, so they are consecutive;
        # precomputed flow is between the video's frames, so the RGB keeps the training stride.
        if (precomputed_flow or not self.two_stream) and config.get("stride_range"):
            a, b = config["stride_range"]
            tau = (float(a) + float(b)) / 2
        for what, v in (("window", window), ("stride", stride), ("short_side", short_side)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise PredictError(f"{what}={v!r}; expected a positive integer")
        if frame_step is not None and not frame_step > 0:
            raise PredictError(f"frame_step={frame_step!r}; expected a positive number")
        train_fps = DEFAULT_TRAIN_FPS if train_fps is None else float(train_fps)
        if not train_fps > 0:
            raise PredictError(f"train_fps={train_fps!r}; expected a positive frame rate")
        return {"window": int(window), "stride": int(stride), "short_side": int(short_side),
                "frame_step": None if frame_step is None else float(frame_step),
                "training_stride": tau, "train_fps": train_fps}

    def scores(self, batch: np.ndarray) -> np.ndarray:
        import tensorflow as tf  # deferred: loads TensorFlow

        return np.asarray(self._scores(tf.constant(batch, tf.float32)), np.float32)

    def feature_batch(self, batch: np.ndarray) -> np.ndarray:
        import tensorflow as tf  # deferred: loads TensorFlow

        return np.asarray(self._features(tf.constant(batch, tf.float32)))

    def flow_scores(self, rgb: np.ndarray, flow: np.ndarray) -> np.ndarray:
        """Scores of (B, T, H, W, 3) frames with their (B, T, H, W, 2L) precomputed flow."""
        import tensorflow as tf  # deferred: loads TensorFlow

        return np.asarray(self._flow_scores(tf.constant(rgb, tf.float32),
                                            tf.constant(flow, tf.float32)), np.float32)

    def flow_feature_batch(self, rgb: np.ndarray, flow: np.ndarray) -> np.ndarray:
        import tensorflow as tf  # deferred: loads TensorFlow

        return np.asarray(self._flow_features(tf.constant(rgb, tf.float32),
                                              tf.constant(flow, tf.float32)))


# --------------------------------------------------------------------------------------------
# Precomputed flow
# --------------------------------------------------------------------------------------------

def load_flow(flow) -> np.ndarray:
    """Per-frame flow fields (F, H, W, 2) in pixels from an array or a `.npy` / `.npz` path
    (`python -m tfzoo.flow --format npz`); a `.npy` is memory-mapped."""
    if isinstance(flow, (str, os.PathLike)):
        path = os.fspath(flow)
        if not os.path.isfile(path):
            raise PredictError(f"flow={path!r}: no such file; expected a .npy or .npz of flow "
                               "fields (python -m tfzoo.flow --format npz)")
        if path.lower().endswith(".npz"):
            from tfzoo.flow.encoding import load_npz  # deferred: loads TensorFlow

            flow = load_npz(path)
        elif path.lower().endswith(".npy"):
            flow = np.load(path, mmap_mode="r")
        else:
            raise PredictError(f"flow={path!r}; expected a .npy or .npz file")
    elif not isinstance(flow, np.ndarray):
        flow = np.asarray(flow)
    if flow.ndim != 4 or flow.shape[-1] != 2 or flow.shape[0] < 1:
        raise PredictError(f"flow of shape {flow.shape}; expected (N-1 or N, H, W, 2) flow "
                           "fields (u, v) in pixels, field i from frame i to i+1")
    if not np.issubdtype(flow.dtype, np.floating):
        raise PredictError(f"flow of dtype {flow.dtype}; expected floating-point pixels")
    return flow


def check_flow(flow: np.ndarray, num_frames: int, height: int, width: int, name: str) -> None:
    """Raises unless `flow` has N-1 or N fields of the video's (H, W)."""
    if num_frames and flow.shape[0] not in (num_frames - 1, num_frames):
        raise PredictError(f"flow has {flow.shape[0]} fields for {name} with {num_frames} "
                           f"frames; expected {num_frames - 1} (or {num_frames})")
    if tuple(flow.shape[1:3]) != (height, width):
        raise PredictError(f"flow fields of size {tuple(flow.shape[1:3])} (H, W) for {name} with "
                           f"frames of {(height, width)}; expected the frames' size")


def flow_window(flow: np.ndarray, frame_indices: Sequence[int], num_video_frames: int,
                num_chunks: int, flow_stack: int, size: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray]:
    """The chunk positions in a window and their (T, H', W', 2L) flow stacks.

    `frame_indices` are the window's frames in the video; the chunks are `num_chunks` equally
    spaced of them, each with the `flow_stack` consecutive fields of the video centred on its
    frame, clamped to the window's span of frames (the window is the clip, as for
    `TwoStreamFrames`, so consecutive frames get exactly the in-graph stacks), channels u1, v1,
    u2, ..., resized to `size` and scaled by the resize factor.
    """
    import tensorflow as tf  # deferred: loads TensorFlow

    from tfzoo.data.readers import scale_flow  # deferred: loads TensorFlow
    from tfzoo.flow.stacks import flow_indices  # deferred: loads TensorFlow

    frame_indices = np.asarray(frame_indices)
    centres = test_indices(len(frame_indices), num_chunks).numpy()
    first, last = int(frame_indices[0]), int(frame_indices.max())
    if last >= num_video_frames:
        raise PredictError(f"frame {last} decoded but the flow has {flow.shape[0]} fields, for "
                           f"{num_video_frames} frames; expected one field per frame pair of "
                           "the video")
    # The window's frames first..last as the "video" of flow_indices: fields clamped to it.
    rel = tf.constant(frame_indices[centres] - first, tf.int32)
    idx = flow_indices(rel, last - first + 1, flow_stack).numpy() + first
    idx = np.clip(idx, 0, max(num_video_frames - 2, 0))  # a one-frame window at the video's end
    h, w = flow.shape[1:3]
    x = np.asarray(flow[idx.reshape(-1)], np.float32).reshape(num_chunks, flow_stack, h, w, 2)
    x = x.transpose(0, 2, 3, 1, 4).reshape(num_chunks, h, w, 2 * flow_stack)
    if (h, w) != tuple(size):
        x = tf.image.resize(x, size, method="bilinear")
        x = scale_flow(x, size[0] / h, size[1] / w).numpy()
    return centres, x


# --------------------------------------------------------------------------------------------
# Streaming: decode -> sampled frames -> windows -> batches
# --------------------------------------------------------------------------------------------

def _sampled_indices(step: float) -> Iterator[int]:
    k = 0
    while True:
        yield int(math.floor(k * step + 0.5))  # half up: even spacing for steps like 2.5
        k += 1


def _decode_sampled(path, step: float, short_side: int, counter: list) -> Iterator:
    """Yields (frame index, RGB uint8 frame) of frames round(k * step), rescaled while
    decoding; `counter[0]` counts decoded frames (for the progress bar)."""
    path_s = os.fspath(path)
    container, stream = _open(path)
    stream.thread_type = "AUTO"
    targets = _sampled_indices(step)
    target = next(targets)
    index = 0
    size = interp = None
    try:
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except (av.FFmpegError, MemoryError, ValueError) as e:
                raise DataError(f"{path_s}: decoding failed after {index} frames "
                                f"({type(e).__name__}: {e})") from e
            counter[0] = index + 1
            if index == target:
                if size is None:
                    size = scaled_size(frame.height, frame.width, short_side)
                    interp = "AREA" if size[0] * size[1] <= frame.height * frame.width else "BICUBIC"
                if (frame.height, frame.width) == size:
                    img = frame.to_ndarray(format="rgb24")
                else:
                    img = frame.to_ndarray(format="rgb24", width=size[1], height=size[0],
                                           interpolation=interp)
                while target == index:  # a step below 1 uses a frame more than once
                    yield index, img
                    target = next(targets)
            index += 1
    finally:
        container.close()
    if index == 0:
        raise DataError(f"{path_s}: no decodable video frames (empty or corrupt stream)")


def _array_sampled(frames: np.ndarray, step: float, short_side: int, counter: list) -> Iterator:
    import tensorflow as tf  # deferred: loads TensorFlow

    n, h, w = frames.shape[:3]
    size = scaled_size(h, w, short_side)
    targets = _sampled_indices(step)
    for k in targets:
        if k >= n:
            return
        img = frames[k]
        if (h, w) != size:
            img = tf.image.resize(img, size, method="area" if size[0] <= h else "bicubic")
            img = np.clip(np.round(img.numpy()), 0, 255).astype(np.uint8)
        counter[0] = k + 1
        yield k, img


class _Producer(threading.Thread):
    """Runs an iterator in a thread and hands its items over a bounded queue (errors too)."""

    _END = object()

    def __init__(self, iterator, maxsize: int):
        super().__init__(daemon=True)
        self.iterator, self.queue, self.stop = iterator, queue.Queue(maxsize), threading.Event()

    def _put(self, item):
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self):
        try:
            for item in self.iterator:
                if not self._put(item):
                    return
            self._put(self._END)
        except BaseException as e:  # handed to the consumer, which re-raises it
            self._put(e)

    def __iter__(self):
        self.start()
        try:
            while True:
                item = self.queue.get()
                if item is self._END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.stop.set()


def iter_windows(frames: Iterator, window: int, stride: int) -> Iterator[tuple[list, np.ndarray]]:
    """(frame indices, (window, H, W, 3) uint8) windows from a stream of (index, frame): one
    every `stride` frames, plus a last one ending at the last frame; fewer than `window` frames
    repeat the last one. Holds at most `window` frames."""
    ring: list = []
    seen = 0
    last_end = 0  # sampled frames covered by the windows so far
    for item in frames:
        ring.append(item)
        if len(ring) > window:
            ring.pop(0)
        seen += 1
        if seen >= window and (seen - window) % stride == 0:
            last_end = seen
            yield [i for i, _ in ring], np.stack([f for _, f in ring])
    if seen == 0:
        return
    if seen < window:
        pad = ring + [ring[-1]] * (window - seen)
        yield [i for i, _ in pad], np.stack([f for _, f in pad])
    elif last_end < seen:
        yield [i for i, _ in ring], np.stack([f for _, f in ring])


def _batches(windows: Iterator, batch_size: int):
    batch = []
    for w in windows:
        batch.append(w)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _top_k(scores: np.ndarray, names: Sequence[str], k: int) -> list[dict]:
    p = _softmax(scores.astype(np.float64))
    order = np.argsort(-p, kind="stable")[:k]
    return [{"index": int(i), "label": names[i], "probability": float(p[i])} for i in order]


def predict_video(predictor: Predictor, video, *, window=None, stride=None, top_k: int = 5,
                  frame_step=None, short_side=None, fps=None, train_fps=None,
                  batch_size: int = 4, progress: bool = False, queue_frames: int | None = None,
                  flow=None) -> dict:
    """`tfzoo.predict` with a ready `Predictor` (reuse it across videos)."""
    if flow is not None:
        if not predictor.two_stream:
            raise PredictError(f"flow given for {predictor.name}, which takes RGB only; "
                               "expected a two-stream model (an 'rgb' and a 'flow' input)")
        flow = load_flow(flow)
    elif predictor.needs_flow:
        raise PredictError(f"{predictor.name}'s serving_default takes a 'flow' input; pass "
                           "precomputed flow (flow=, --flow=PATH from python -m tfzoo.flow), or "
                           "export with flow computed in the graph (python -m export --flow=tvl1)")
    s = predictor.default_sampling(window=window, stride=stride, frame_step=frame_step,
                                   short_side=short_side, train_fps=train_fps,
                                   precomputed_flow=flow is not None)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise PredictError(f"top_k={top_k!r}; expected a positive integer")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise PredictError(f"batch_size={batch_size!r}; expected a positive integer")
    counter = [0]
    if isinstance(video, np.ndarray):
        if video.ndim != 4 or video.shape[-1] != 3 or video.shape[0] < 1:
            raise PredictError(f"frames of shape {video.shape}; expected (T, H, W, 3) RGB")
        num_frames, video_fps = int(video.shape[0]), float(fps or 0.0)
        name = "<array>"
        size = video.shape[1:3]
    else:
        num_frames, video_fps, *size = video_info(video)
        video_fps = float(fps or video_fps)
        name = os.fspath(video)
    if flow is not None:
        check_flow(flow, num_frames, *size, name)
        # A container without a frame count: the flow says how many frames there are.
        flow_frames = min(num_frames, flow.shape[0] + 1) if num_frames else flow.shape[0] + 1
    step = s["frame_step"]
    if step is None:
        ratio = video_fps / s["train_fps"] if video_fps > 0 else 1.0
        step = s["training_stride"] * ratio
    if isinstance(video, np.ndarray):
        source = _array_sampled(video, step, s["short_side"], counter)
    else:
        source = _decode_sampled(video, step, s["short_side"], counter)
    # The queue holds a few batches of sampled frames: decoding runs ahead of the model by
    # that much and no more (constant memory).
    producer = _Producer(source, queue_frames or 2 * batch_size * s["stride"] + s["window"])
    bar = None
    if progress:
        bar = tqdm(total=num_frames, unit="frame", desc=os.path.basename(name), leave=False,
                   dynamic_ncols=True)
    windows_out, scores_out, features_out = [], [], []
    try:
        for batch in _batches(iter_windows(iter(producer), s["window"], s["stride"]), batch_size):
            x = np.stack([w for _, w in batch])
            if flow is not None:
                stacks = [flow_window(flow, idx, flow_frames, predictor.num_chunks,
                                      predictor.flow_stack, x.shape[2:4]) for idx, _ in batch]
                rgb = np.stack([w[c] for (_, w), (c, _) in zip(batch, stacks)])
                f = np.stack([st for _, st in stacks])
                if predictor.features is not None:
                    features_out.extend(predictor.flow_feature_batch(rgb, f))
                else:
                    scores_out.extend(predictor.flow_scores(rgb, f))
            elif predictor.features is not None:
                features_out.extend(predictor.feature_batch(x))
            else:
                scores_out.extend(predictor.scores(x))
            windows_out.extend((idx[0], idx[-1]) for idx, _ in batch)
            if bar is not None:
                bar.update(counter[0] - bar.n)
    finally:
        producer.stop.set()  # an error here must not leave the decoder blocked on the queue
        if bar is not None:
            bar.close()
    if not windows_out:
        raise DataError(f"{name}: no frames to classify")
    names = predictor.class_names
    k = min(top_k, len(names))
    n = max(num_frames, counter[0])
    result = {
        "video": name, "model": predictor.name, "classes": list(names),
        "fps": video_fps, "num_frames": n, "duration": n / video_fps if video_fps > 0 else None,
        "sampling": {**{k_: v for k_, v in s.items() if k_ != "frame_step"},
                     "frame_step": float(step), "flip": predictor.flip,
                     "flow": None if not predictor.two_stream else (
                         "tvl1 in the graph" if flow is None else "precomputed")},
    }
    windows = [{"start": i0 / video_fps if video_fps > 0 else None,
                "end": (i1 + 1) / video_fps if video_fps > 0 else None,
                "start_frame": int(i0), "end_frame": int(i1)} for i0, i1 in windows_out]
    if predictor.features is not None:
        # Features instead of scores: one forward pass per window, through the endpoint only.
        result.update(windows=windows, feature_endpoint=predictor.features,
                      feature_pool=predictor.feature_pool, features=np.stack(features_out))
        return result
    scores = np.stack(scores_out)
    for w, row in zip(windows, scores):
        w.update(scores=[float(v) for v in row], top_k=_top_k(row, names, k))
    # The papers' video score: the average of the windows' pre-softmax scores.
    mean = scores.astype(np.float64).mean(axis=0)
    result["windows"] = windows
    result["video_prediction"] = {"scores": [float(v) for v in mean],
                                  "probabilities": [float(v) for v in _softmax(mean)],
                                  "top_k": _top_k(mean, names, k)}
    return result


def predict(model, video, *, window: int | None = None, stride: int | None = None,
            top_k: int = 5, frame_step: float | None = None, short_side: int | None = None,
            fps: float | None = None, train_fps: float | None = None, flip: bool | None = None,
            features: str | None = None, feature_pool: str = "mean", batch_size: int = 4,
            run_info=None, class_names: Sequence[str] | None = None,
            progress: bool = False, flow=None) -> dict:
    """Classifies a video (a file, or RGB uint8 frames (T, H, W, 3)) with window scores.

    Args:
      model: a Keras model, a model directory, a SavedModel directory, a SavedModel loaded
        with `tf.saved_model.load`, or a `Predictor`.
      video: a video file (any PyAV-readable format), or frames (T, H, W, 3) uint8.
      window, stride: window length and hop in sampled frames (default: the run's test clip
        length and half of it).
      top_k: classes listed per window and for the video.
      frame_step: keep every frame_step-th frame (default: from the training stride and the
        frame rates, see the module docstring); fps: the frame rate of `video` (files: read
        from the container); train_fps: the frame rate of the training videos.
      short_side: the frames' shorter side for the model (default: the run's test scale).
      flip: also score the horizontal flip (default: the run's `test_flip`).
      features: an endpoint name (`model.endpoints`): adds "features" (num_windows, C).
      run_info: the `RunInfo` of a Keras model or SavedModel given as an object or path without
        its model directory (class names, geometry).
      flow: two-stream models: precomputed flow, (N-1 or N, H, W, 2) float fields in pixels of
        the video's N frames of (H, W) (field i: frame i -> i+1), or a `.npy` / `.npz` path
        (`python -m tfzoo.flow --format npz`). Default: TV-L1 computed in the graph.

    Returns the result dict (see the module docstring); raises `DataError` for an unreadable
    video and `PredictError` for bad arguments.
    """
    predictor = model if isinstance(model, Predictor) else Predictor(
        model, run_info=run_info, flip=flip, features=features, feature_pool=feature_pool,
        class_names=class_names)
    return predict_video(predictor, video, window=window, stride=stride, top_k=top_k,
                         frame_step=frame_step, short_side=short_side, fps=fps,
                         train_fps=train_fps, batch_size=batch_size, progress=progress,
                         flow=flow)


# docs/predict.md's `tfzoo.predict.Predictor(model_dir)`: the function offers the class too.
predict.Predictor = Predictor
