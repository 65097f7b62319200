"""A trained model ready to run, however it was saved: `load_runnable(model)`.

predict, detect and evaluate take "a Keras model or a SavedModel" (a model directory, a Keras
model, an exported SavedModel directory, or a SavedModel loaded with `tf.saved_model.load`).
`Runnable` is the one interface they use; `KerasRunnable` and `SavedModelRunnable` are its two
implementations, so no caller switches on the model's form:

- classification (`classifier`): class names, the inputs a window needs (RGB, or RGB + flow),
  and a batch's pre-softmax class scores with the test protocol's flip, with precomputed flow,
  or a feature map (Keras only: an export has class scores only);
- D&T detection (`tracker`): frame pairs -> both frames' detections and the tracks between
  them, and, when the model offers it, a run of frames at once (each frame's network once).

Example:
>>> import numpy as np, tfzoo
>>> model = tfzoo.create_model("tresnet_small", num_classes=3, blocks=(1, 1, 1, 1), width=8)
>>> clf = load_runnable(model).classifier(flip=False)
>>> clf.class_names, clf.two_stream
(['0', '1', '2'], False)
>>> tuple(clf.scores(np.zeros((2, 4, 32, 32, 3), "float32")).shape)
(2, 3)
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfzoo.data.augment import flip_flow
from tfzoo.errors import TfzooError
from tfzoo.flow import TwoStreamFrames
from tfzoo.rundir import RunInfo, load_model
from tfzoo.tasks.base import get_task
from tfzoo.utils import check_choice

FEATURE_POOLS = ("mean", "none")


class RunnableError(TfzooError):
    """A model that cannot do what was asked (the message says what was expected)."""


@dataclass
class Classifier:
    """What a video classifier needs from a model.

    `scores(x)` takes float32 frames (B, T, H, W, 3) and returns (B, C) pre-softmax float32
    scores (logits of a Keras model, log-probabilities of a SavedModel: they differ by one
    constant per window, so averaged predictions agree); `flow_scores(rgb, flow)` the same with
    precomputed flow stacks (B, T, H, W, 2L) (two-stream models; None otherwise);
    `features` / `flow_features` return an endpoint's map instead (None unless asked for).
    `needs_flow`: the model cannot compute flow from the frames itself.
    """

    name: str
    class_names: list[str]
    two_stream: bool
    flow_stack: int | None
    needs_flow: bool
    scores: Callable
    flow_scores: Callable | None = None
    features: Callable | None = None
    flow_features: Callable | None = None


@dataclass
class Tracker:
    """What the D&T video loop needs from a model (docs/detection.md, "The model contract").

    `pairs(images)`: uint8 (B, 2, H, W, 3) -> numpy outputs `detection_boxes` (B, 2, M, 4),
    `detection_scores`, `detection_classes`, `num_detections` (B, 2) and `track_boxes` (B, M, 4)
    or `track_deltas`. `clip(frames, previous)`: uint8 (T, H, W, 3) consecutive frames and the
    state the previous call returned (None first) -> `(outputs, carried, state)`: outputs as
    `pairs`' with a clip axis (batch of 1), `track_boxes` (1, T', M, 4) between consecutive
    frames; `carried` the (boxes, counts) of tracked frames that come before the outputs' own
    (a model that carries the previous frame's maps), else (); None when the model has no clip
    entry (the loop then runs pairs). `maps_carried`: one network pass a frame.
    """

    class_names: list[str] | None
    pairs: Callable
    clip: Callable | None
    maps_carried: bool


class Runnable(abc.ABC):
    """A Keras model or a SavedModel, behind one interface.

    Attributes: `source` (a path, or the object's type, for messages), `name` (the run's
    registry name, else the model's or folder's), `run_info` (the run's `RunInfo`, when known).
    """

    source: str
    name: str
    run_info: RunInfo | None

    @abc.abstractmethod
    def classifier(self, *, flip: bool = False, num_chunks: int | None = None,
                   class_names: Sequence[str] | None = None, features: str | None = None,
                   feature_pool: str = "mean") -> Classifier:
        """The model as a video classifier; `num_chunks` is a two-stream window's chunk count
        when the flow is computed from the frames (default: the run's `num_frames`, else 5)."""

    @abc.abstractmethod
    def tracker(self) -> Tracker:
        """The model as a D&T detector-tracker; raises RunnableError for another model."""

    def _class_names(self, given, count: int) -> list[str]:
        names = given if given is not None else (
            self.run_info.class_names if self.run_info is not None else None)
        names = list(names) if names is not None else [str(i) for i in range(count)]
        if len(names) != count:
            raise RunnableError(f"{len(names)} class names for {self.name}, which has {count} "
                                "outputs; they must match")
        return [str(c) for c in names]

    def _num_chunks(self, num_chunks):
        if num_chunks is not None:
            return num_chunks
        return self.run_info.num_frames if self.run_info is not None else 5


def load_runnable(model, *, run_info: RunInfo | None = None) -> Runnable:
    """`model` as a Runnable: a Runnable (as is), a model directory (run.json + model.keras), a
    Keras model, a SavedModel directory, or a SavedModel loaded with `tf.saved_model.load`.
    `run_info` gives class names and the test geometry when `model` is not a model directory."""
    if isinstance(model, Runnable):
        return model
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return SavedModelRunnable(tf.saved_model.load(path), source=path, run_info=run_info)
        model, run_info = load_model(path)
        return KerasRunnable(model, source=path, run_info=run_info)
    if isinstance(model, keras.Model):
        return KerasRunnable(model, run_info=run_info)
    if getattr(model, "signatures", None) is not None:
        return SavedModelRunnable(model, run_info=run_info)
    raise RunnableError(f"model is a {type(model).__name__}; expected a keras.Model, a model "
                        "directory, or a SavedModel (path or tf.saved_model.load)")


def _check_pool(feature_pool: str) -> None:
    check_choice("feature_pool", feature_pool, FEATURE_POOLS, error=RunnableError)


class KerasRunnable(Runnable):
    """A Keras model (tfzoo's, or any Keras classifier returning logits): its task scores it
    (`Task.predict`), its endpoints give features, a D&T model carries each run's last maps."""

    def __init__(self, model: keras.Model, *, source: str | None = None,
                 run_info: RunInfo | None = None):
        self.model, self.run_info = model, run_info
        self.source = source or model.name
        self.name = run_info.model if run_info is not None else model.name

    def classifier(self, *, flip=False, num_chunks=None, class_names=None, features=None,
                   feature_pool="mean") -> Classifier:
        _check_pool(feature_pool)
        model = self.model
        task = get_task(model)
        if task.name != "classification":
            raise RunnableError(
                f"{model.name} is a {task.name!r} model; tfzoo.predict classifies videos. Use "
                "python -m tfzoo.detect (tfzoo.detection.detector.Detector) for detection models")
        names = [t.name for t in model.inputs]
        two_stream = len(model.inputs) == 2
        if len(model.inputs) == 1 and int(model.inputs[0].shape[-1]) != 3:
            raise RunnableError(f"{model.name} takes flow only (input {names[0]!r} with "
                                f"{model.inputs[0].shape[-1]} channels); predict needs an RGB "
                                "input, or 'rgb' and 'flow' inputs")
        streams = flow_stack = None
        if two_stream:
            flow_input = next(t for t in model.inputs if int(t.shape[-1]) != 3)
            flow_stack = int(flow_input.shape[-1]) // 2
            # the window's flow stacks computed from its frames, as the export's
            streams = TwoStreamFrames(num_chunks=self._num_chunks(num_chunks),
                                      flow_stack=flow_stack)
        extractor = None
        if features is not None:
            # deferred: tfzoo.models imports every model family
            from tfzoo.models import feature_extractor

            if not hasattr(model, "endpoints"):
                raise RunnableError(f"{model.name} publishes no endpoints; --features needs a "
                                    "tfzoo model")
            extractor = feature_extractor(model, [features])
        rgb = tf.TensorSpec([None, None, None, None, 3], tf.float32)
        flow = tf.TensorSpec([None, None, None, None, None], tf.float32)

        def inputs(x):
            return streams(x) if streams is not None else x

        def pool(f):
            if feature_pool == "mean":
                f = tf.reduce_mean(tf.cast(f, tf.float32), axis=list(range(1, len(f.shape) - 1)))
            return f

        @tf.function(input_signature=[rgb], reduce_retracing=True)
        def scores(x):
            return task.predict(model, inputs(x), flip=flip)

        @tf.function(input_signature=[rgb, flow], reduce_retracing=True)
        def flow_scores(r, f):
            return task.predict(model, {"rgb": r, "flow": f}, flip=flip)

        @tf.function(input_signature=[rgb], reduce_retracing=True)
        def feature_maps(x):
            return pool(extractor(inputs(x), training=False)[features])

        @tf.function(input_signature=[rgb, flow], reduce_retracing=True)
        def flow_feature_maps(r, f):
            return pool(extractor({"rgb": r, "flow": f}, training=False)[features])

        return Classifier(
            name=self.name, class_names=self._class_names(class_names, task.num_classes(model)),
            two_stream=two_stream, flow_stack=flow_stack, needs_flow=False, scores=scores,
            flow_scores=flow_scores if two_stream else None,
            features=feature_maps if extractor is not None else None,
            flow_features=flow_feature_maps if two_stream and extractor is not None else None)

    def tracker(self) -> Tracker:
        model = self.model
        if not hasattr(model, "detect_track"):
            raise RunnableError(
                f"{self.source}: not a D&T model: it has no detect_track signature or method "
                "(frame pairs -> both frames' detections + track boxes; docs/detection.md)")

        def pairs(images):
            return {k: np.asarray(v) for k, v in model.detect_track(tf.constant(images)).items()}

        clip = None
        if hasattr(model, "detect_track_clip"):
            # one graph for the whole clip (the box voting's per-class loop and the correlations
            # run eagerly op by op otherwise); traced per (T, previous or not)
            run = tf.function(lambda clips, previous: model.detect_track_clip(
                clips, previous, return_state=True), reduce_retracing=True)

            def clip(frames, previous):
                out, state = run(tf.constant(frames[None]), previous)
                # the tracks start at the carried frame, whose boxes come with the state
                carried = ([] if previous is None else
                           [(np.asarray(previous["boxes"]), np.asarray(previous["num_detections"]))])
                return {k: np.asarray(v) for k, v in out.items()}, carried, state

        names = self.run_info.class_names if self.run_info is not None else getattr(
            model, "class_names", None)
        return Tracker(class_names=names, pairs=pairs, clip=clip, maps_carried=clip is not None)


class SavedModelRunnable(Runnable):
    """An export of `python -m export`, read through its signatures only (a process that runs
    it needs no Keras model): `serving_default` (+ `serving_rgb_flow`) for classification,
    `detect_track` (+ `detect_track_clip`, `class_names`) for D&T."""

    def __init__(self, loaded, *, source: str | None = None, run_info: RunInfo | None = None):
        self.loaded, self.run_info = loaded, run_info
        self.source = source or type(loaded).__name__
        self.name = run_info.model if run_info is not None else os.path.basename(
            os.path.normpath(self.source))

    def classifier(self, *, flip=False, num_chunks=None, class_names=None, features=None,
                   feature_pool="mean") -> Classifier:
        _check_pool(feature_pool)
        if features is not None:
            raise RunnableError("features need the Keras model (--model_dir): a SavedModel "
                                "exports class scores only")
        signatures = self.loaded.signatures
        fn = signatures.get("serving_default")
        if fn is None:
            raise RunnableError(f"the SavedModel has signatures {list(signatures)}; expected "
                                "'serving_default' (python -m export)")
        spec = fn.structured_input_signature[1]
        if "rgb" not in spec:
            raise RunnableError(f"the SavedModel's serving_default takes {sorted(spec)}; "
                                "expected an 'rgb' input")
        # A `flow` input in serving_default: the flow must come precomputed. Flow computed in
        # the graph (export's --in_graph_flow): serving_default takes consecutive RGB frames and
        # serving_rgb_flow takes precomputed flow.
        needs_flow = "flow" in spec
        flow_fn = fn if needs_flow else signatures.get("serving_rgb_flow")
        flow_stack = None
        if flow_fn is not None:
            channels = flow_fn.structured_input_signature[1]["flow"].shape[-1]
            if channels is None:
                raise RunnableError("the SavedModel's 'flow' input has no static channel count")
            flow_stack = int(channels) // 2
        num_classes = fn.structured_outputs["probabilities"].shape[-1]
        if num_classes is None:
            raise RunnableError("the SavedModel's probabilities have no static class count")
        rgb_dtype = spec["rgb"].dtype
        if class_names is None and self.run_info is None:
            # The signature names only its top-k classes; the rest get their index.
            probe_in = {"rgb": tf.zeros([1, 8, 64, 64, 3], rgb_dtype)}
            if needs_flow:
                probe_in["flow"] = tf.zeros([1, 8, 64, 64, 2 * flow_stack], tf.float32)
            probe = fn(**probe_in)
            labels = dict(zip(probe["top_k_indices"].numpy()[0].tolist(),
                              [s.decode() for s in probe["top_k_labels"].numpy()[0]]))
            class_names = [labels.get(i, str(i)) for i in range(num_classes)]
        tiny = np.finfo(np.float32).tiny

        def log_p(p):
            # log p = logits - logsumexp(logits): a constant per window, so the averaged
            # scores give the same prediction as averaged logits.
            return tf.math.log(tf.maximum(tf.cast(p, tf.float32), tiny))

        def one_view(x):
            return log_p(fn(rgb=tf.cast(x, rgb_dtype))["probabilities"])

        def scores(x):
            s = one_view(x)
            if flip:
                s = (s + one_view(x[:, :, :, ::-1])) / 2
            return s

        def flow_scores(rgb, flow):
            r_dtype = flow_fn.structured_input_signature[1]["rgb"].dtype

            def view(r, f):
                return log_p(flow_fn(rgb=tf.cast(r, r_dtype), flow=f)["probabilities"])

            s = view(rgb, flow)
            if flip:
                s = (s + view(rgb[:, :, :, ::-1], flip_flow(flow))) / 2
            return s

        return Classifier(
            name=self.name, class_names=self._class_names(class_names, num_classes),
            two_stream=flow_fn is not None, flow_stack=flow_stack, needs_flow=needs_flow,
            scores=scores, flow_scores=flow_scores if flow_fn is not None else None)

    def tracker(self) -> Tracker:
        signatures = getattr(self.loaded, "signatures", None) or {}
        if "detect_track" not in signatures:
            raise RunnableError(
                f"{self.source}: not a D&T model: it has no detect_track signature or method "
                "(frame pairs -> both frames' detections + track boxes; docs/detection.md)")
        pairs = self._signature(signatures["detect_track"], "detect_track",
                                "uint8 frame pairs (B, 2, H, W, 3)")
        clip = None
        if "detect_track_clip" in signatures:
            run = self._signature(signatures["detect_track_clip"], "detect_track_clip",
                                  "uint8 clips (B, T, H, W, 3)")

            def clip(frames, previous):
                # A SavedModel cannot carry tensors between calls: the previous run's last
                # frame is computed again as the clip's first, and is the state.
                whole = frames if previous is None else np.concatenate([previous[None], frames])
                return run(whole[None]), (), frames[-1]

        names = None
        if self.run_info is not None:
            names = self.run_info.class_names
        elif "class_names" in signatures:
            names = [c.decode() for c in signatures["class_names"]()["class_names"].numpy()]
        elif getattr(self.loaded, "class_names", None) is not None:
            names = self.loaded.class_names
            if hasattr(names, "numpy"):
                names = [c.decode() for c in names.numpy()]
        return Tracker(class_names=names, pairs=pairs, clip=clip, maps_carried=False)

    def _signature(self, fn, name, what):
        inputs = list(fn.structured_input_signature[1])
        if len(inputs) != 1:
            raise RunnableError(f"{self.source}: {name} takes {inputs}; expected one input, "
                                f"{what}")
        return lambda x: {k: np.asarray(v)
                          for k, v in fn(**{inputs[0]: tf.constant(x, tf.uint8)}).items()}
