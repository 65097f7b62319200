"""Video classification: the task of every model in the zoo so far.

A classifier returns logits `(B, C)`, or, with two streams trained separately, the dict
`{"rgb", "flow", "fused"}` of logits (`tfzoo.models.heads.two_stream_outputs`): one loss per
stream, none on "fused" (thesis §3.3.5, §4.3.5), and "fused" is the test-time score. All
outputs are float32 under mixed precision (`tfzoo.models.heads.classification_head`).
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfzoo.data import clip_spec
from tfzoo.data.augment import flip_flow
from tfzoo.errors import TfzooError
from tfzoo.models.heads import PerChunkCrossEntropy
from tfzoo.protocols import protocol_of, protocol_views
from tfzoo.tasks.base import Task, get_task, register_task

FUSED = "fused"
CHUNKS = "_chunks"  # "<stream>_chunks": (B, T, C) per-chunk logits that carry the stream's loss


def _flip_views(x):
    # A horizontal flip negates every horizontal flow component (u), see tfzoo.data.augment.
    if isinstance(x, dict):
        return {k: (flip_flow(v) if k == "flow" else tf.reverse(v, axis=[-2])) for k, v in x.items()}
    return tf.reverse(x, axis=[-2])


def _map_views(fn, x):
    return {k: fn(v) for k, v in x.items()} if isinstance(x, dict) else fn(x)


def _split_clips(x, clips: int):
    # (B, clips * T, H, W, C) -> (B * clips, T, H, W, C): clip j holds chunks j*T .. j*T+T-1.
    if clips == 1:
        return x

    def split(v):
        shape = tf.shape(v)
        tf.debugging.assert_equal(shape[1] % clips, 0, message=f"the chunks of a test video "
                                  f"must split into {clips} clips of equal length")
        return tf.reshape(v, tf.concat([[shape[0] * clips, shape[1] // clips], shape[2:]], 0))

    return _map_views(split, x)


def _crop_views(x, crops: int, crop_fraction: float):
    # The full frame, or the four corner squares then the centre one, of side crop_fraction x
    # the shorter side (224 of 256: Simonyan & Zisserman's 10-crop test with the flips).
    if crops == 1:
        return [x]
    ref = x["rgb"] if isinstance(x, dict) else x
    h, w = tf.shape(ref)[2], tf.shape(ref)[3]
    s = tf.cast(tf.round(crop_fraction * tf.cast(tf.minimum(h, w), tf.float32)), tf.int32)
    corners = [(0, 0), (0, w - s), (h - s, 0), (h - s, w - s), ((h - s) // 2, (w - s) // 2)]
    return [_map_views(lambda v, y=y, x0=x0: v[:, :, y:y + s, x0:x0 + s], x) for y, x0 in corners]


def predict_scores(model, dataset, *, flip: bool, flip_label_map=None, task=None, views=None):
    """(scores (N, C), labels (N,)) over a batched dataset: the task's test-time prediction
    (`Task.predict`, with the flipped view averaged in; `views`: its clips / crops options,
    `protocol_views`). `task` defaults to the model's."""
    task = task or get_task(model)

    @tf.function(reduce_retracing=True)
    def forward(x):
        return task.predict(model, x, flip=flip, flip_label_map=flip_label_map, **(views or {}))

    scores, labels = [], []
    for x, y in dataset:
        scores.append(forward(x).numpy())
        labels.append(np.asarray(y))
    return np.concatenate(scores), np.concatenate(labels)


def metrics_from_scores(scores, labels, class_names) -> dict:
    """Accuracy, mean class accuracy (over the classes with test videos), per-class accuracy
    and the confusion matrix of `scores` (N, C) against `labels` (N,)."""
    pred = scores.argmax(1)
    c = len(class_names)
    confusion = np.zeros((c, c), np.int64)
    np.add.at(confusion, (labels, pred), 1)
    support = confusion.sum(1)
    per_class = {
        name: (float(confusion[i, i] / support[i]) if support[i] else None)
        for i, name in enumerate(class_names)
    }
    valid = [v for v in per_class.values() if v is not None]
    return {
        "accuracy": float((pred == labels).mean()),
        "mean_class_accuracy": float(np.mean(valid)) if valid else 0.0,
        "per_class_accuracy": per_class,
        "confusion_matrix": confusion.tolist(),
        "num_videos": int(len(labels)),
    }


class ClassificationTask(Task):
    """Logits in, softmax cross-entropy, accuracy, softmax + top-k in serving.

    Example:
    >>> import numpy as np
    >>> task = ClassificationTask()
    >>> a, b, c = (np.array([[float(i), 0.0]], "float32") for i in (1, 3, 8))
    >>> task.test_score({"rgb": a, "flow": b}).numpy().tolist()
    [[2.0, 0.0]]
    >>> task.test_score({"rgb": a, "flow": b, "fused": c}).numpy().tolist()
    [[8.0, 0.0]]
    """

    name = "classification"

    # -- outputs ------------------------------------------------------------------------------

    @staticmethod
    def heads(model: keras.Model) -> list[str] | None:
        """The output names that get a loss (None: one logits tensor): each stream's logits, or
        its per-chunk logits "<stream>_chunks" when the model has them."""
        if isinstance(model.output, dict):
            keys = [k for k in model.output if k != FUSED and not k.endswith(CHUNKS)]
            return sorted(k + CHUNKS if k + CHUNKS in model.output else k for k in keys)
        return None

    @staticmethod
    def _scores(model: keras.Model) -> list:
        if isinstance(model.output, dict):
            return [v for k, v in model.output.items() if not k.endswith(CHUNKS)]
        return list(model.outputs)

    def num_classes(self, model: keras.Model) -> int:
        shapes = [tuple(o.shape) for o in self._scores(model)]
        classes = {s[-1] for s in shapes}
        if len(classes) != 1 or None in classes or any(len(s) != 2 for s in shapes):
            raise TfzooError(f"{model.name} outputs have shapes {shapes}; expected (batch, "
                             "classes) logits with one fixed class count")
        return int(classes.pop())

    def check_outputs(self, model: keras.Model) -> None:
        self.num_classes(model)
        if isinstance(model.output, (list, tuple)):
            raise TfzooError(f"{model.name} returns a list of {len(model.output)} outputs; "
                             "expected logits or a dict of logits per stream")
        bad = {o.name: o.dtype for o in model.outputs if o.dtype != "float32"}  # chunks too
        if bad:
            raise TfzooError(f"{model.name} outputs {bad} are not float32; build them with "
                             "tfzoo.models.heads (float32 under mixed precision)")

    # -- training -----------------------------------------------------------------------------

    @staticmethod
    def _loss_fn(label_smoothing: float):
        if label_smoothing:
            return keras.losses.CategoricalCrossentropy(from_logits=True,
                                                        label_smoothing=label_smoothing)
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def compile(self, model, *, optimizer, label_smoothing: float = 0.0, jit_compile: bool = False):
        loss = self._loss_fn(label_smoothing)
        heads = self.heads(model)
        if heads is None:
            model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], jit_compile=jit_compile)
            return
        # Two-stream models: one loss per stream (thesis §3.3.5, §4.3.5); accuracy of each
        # output, the fusion's included.
        model.compile(optimizer=optimizer,
                      loss={k: (PerChunkCrossEntropy(label_smoothing) if k.endswith(CHUNKS) else loss)
                            for k in heads},
                      metrics={k: ["accuracy"] for k in model.output if not k.endswith(CHUNKS)},
                      jit_compile=jit_compile)

    def targets(self, model, num_classes: int, *, label_smoothing: float = 0.0):
        # Named functions, not lambdas: AutoGraph cannot find the source of two lambdas on
        # one line and warns on every training start.
        def encode(y):
            return tf.one_hot(y, num_classes) if label_smoothing else y

        names = None if self.heads(model) is None else list(model.output)

        def label_fn(x, y):
            return x, (encode(y) if names is None else {k: encode(y) for k in names})

        return label_fn

    def loss(self, model, outputs, labels):
        fn = self._loss_fn(0.0)
        heads = self.heads(model)
        if heads is None:
            return fn(labels, outputs)
        return tf.add_n([(PerChunkCrossEntropy() if k.endswith(CHUNKS) else fn)(labels, outputs[k])
                         for k in heads])

    # -- test ---------------------------------------------------------------------------------

    def test_score(self, outputs):
        """The logits of one view: a dict's "fused" entry if present, else the mean of its
        entries; float32."""
        if isinstance(outputs, dict):
            if not outputs:
                raise TfzooError("the model returned an empty dict; expected logits per stream")
            scores = sorted(k for k in outputs if not k.endswith(CHUNKS))
            outputs = outputs[FUSED] if FUSED in outputs else (
                tf.add_n([tf.cast(outputs[k], tf.float32) for k in scores]) / len(scores))
        elif isinstance(outputs, (list, tuple)):
            raise TfzooError(f"the model returns a {type(outputs).__name__} of {len(outputs)} "
                             "outputs; expected one logits tensor or a dict of logits per stream")
        return tf.cast(outputs, tf.float32)

    def predict(self, model, x, *, flip: bool = False, flip_label_map=None, clips: int = 1,
                crops: int = 1, crop_fraction: float = 224 / 256):
        """The video's test score: `test_score` averaged over every view of a test protocol
        (`tfzoo.protocols`): the T chunks of `x` cut into `clips` consecutive clips, each
        clip's full frame (`crops=1`) or its four corner and centre crops (`crops=5`, squares
        of `crop_fraction` of the shorter side), each view also flipped with `flip`; every
        prediction has the same weight. Logits are averaged, as over chunks and locations
        inside the model (thesis §3.3.5, §4.3.5)."""
        if crops not in (1, 5):
            raise TfzooError(f"crops={crops!r}; expected 1 (full frame) or 5 (corners + centre)")
        x = _split_clips(x, clips)
        scores = []
        for view in _crop_views(x, crops, crop_fraction):
            scores.append(self.test_score(model(view, training=False)))
            if flip:
                f = self.test_score(model(_flip_views(view), training=False))
                if flip_label_map is not None:
                    # A flipped clip of class c looks like class flip_label_map[c].
                    f = tf.gather(f, flip_label_map, axis=1)
                scores.append(f)
        s = tf.add_n(scores) / len(scores)
        if clips == 1:
            return s
        return tf.reduce_mean(tf.reshape(s, [-1, clips, tf.shape(s)[-1]]), axis=1)

    def evaluate(self, model, source, split, config, *, flip: bool) -> dict:
        """Accuracy, mean class accuracy, per-class accuracy and the confusion matrix with the
        run's test protocol (`tfzoo.protocols`): its clips, crops and flips, scores averaged."""
        test = protocol_of(config)
        spec = clip_spec(config)
        ds = source.dataset(split, training=False, spec=spec, seed=config.seed)
        fixed = source.info.extra.get("fixed_frame_size", source.info.name == "synthetic")
        ds = ds.batch(config.batch_size if fixed else 1)
        scores, labels = predict_scores(model, ds, flip=flip, task=self,
                                        flip_label_map=source.info.flip_label_map,
                                        views=protocol_views(test))
        metrics = metrics_from_scores(scores, labels, source.info.class_names)
        if test.name == "custom":
            metrics["protocol"] = (f"{spec.test_num_frames} equally spaced frames, full frame"
                                   + (" + horizontal flip" if flip else "") + ", scores averaged")
        else:
            metrics["protocol"] = test.describe(config.num_frames)
        return metrics

    def describe(self, metrics: dict) -> list[str]:
        lines = [f"accuracy {metrics['accuracy']:.4f}  mean class accuracy "
                 f"{metrics['mean_class_accuracy']:.4f}  ({metrics['num_videos']} videos, "
                 f"{metrics['protocol']})"]
        for name, acc in metrics["per_class_accuracy"].items():
            lines.append(f"  {name:24s} {'n/a' if acc is None else f'{acc:.3f}'}")
        return lines

    # -- export -------------------------------------------------------------------------------

    def check_export(self, model, class_names: Sequence[str], top_k: int) -> None:
        num_classes = self.num_classes(model)
        if len(class_names) != num_classes:
            raise TfzooError(f"RunInfo.class_names has {len(class_names)} names but the model "
                             f"has {num_classes} outputs; they must match")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise TfzooError(f"top_k={top_k!r}; expected a positive integer")

    def export_outputs(self, outputs, *, class_names, top_k: int) -> dict:
        """probabilities (B, C) float32, top_k_indices (B, k) int32, top_k_labels (B, k)
        string; k is clipped to the class count."""
        probabilities = tf.nn.softmax(self.test_score(outputs), axis=-1)
        k = min(top_k, int(probabilities.shape[-1]))
        _, indices = tf.math.top_k(probabilities, k=k)
        names = tf.constant([str(c) for c in class_names], dtype=tf.string)
        return {"probabilities": probabilities, "top_k_indices": indices,
                "top_k_labels": tf.gather(names, indices)}


CLASSIFICATION = register_task(ClassificationTask())
