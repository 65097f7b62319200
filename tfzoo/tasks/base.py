"""The task contract: what train, evaluate, export and bench ask of a model's outputs.

A model (`tfzoo.models.base.VideoModel`) computes tensors; its task says what they mean. Every
piece of tfzoo that trains, scores, exports or benchmarks a model goes through the model's task
(`tfzoo.tasks.get_task(model)`) and knows nothing about output structures itself, as mmaction2's
recognizers own their test-time averaging. A new task (detection) implements this class and
registers itself with `register_task`; train/evaluate/export/bench need no change.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, Sequence

import keras

from tfzoo.errors import TfzooError
from tfzoo.utils import check_choice


class Task(abc.ABC):
    """The contract between a model's outputs and the programs that use them.

    Attributes:
      name: the registry name (`list_models(task=name)`, `VideoModel.TASK`).
    """

    name: str = ""

    @abc.abstractmethod
    def check_outputs(self, model: keras.Model) -> None:
        """Raises ValueError unless `model`'s symbolic outputs have this task's structure and
        are float32 (under mixed precision too: losses, scores and exports read them)."""

    @abc.abstractmethod
    def compile(self, model: keras.Model, *, optimizer, label_smoothing: float = 0.0,
                jit_compile: bool = False) -> None:
        """`model.compile` with the task's losses and metrics for `model`'s outputs."""

    @abc.abstractmethod
    def targets(self, model: keras.Model, num_classes: int, *,
                label_smoothing: float = 0.0) -> Callable[[Any, Any], tuple[Any, Any]]:
        """The dataset map `(x, labels) -> (x, targets)` that matches `compile`'s losses."""

    @abc.abstractmethod
    def loss(self, model: keras.Model, outputs: Any, labels) -> Any:
        """The training loss of one batch's `outputs` (a scalar tensor), for custom loops."""

    @abc.abstractmethod
    def test_score(self, outputs: Any) -> Any:
        """The float32 test-time prediction of one view from the model's outputs."""

    @abc.abstractmethod
    def predict(self, model: keras.Model, x: Any, *, flip: bool = False,
                flip_label_map: Sequence[int] | None = None) -> Any:
        """The test-time prediction of a batch: `test_score` averaged over the test views (the
        clip, and its horizontal flip with `flip`; `flip_label_map[c]` is the class a flipped
        clip of class c looks like)."""

    @abc.abstractmethod
    def export_outputs(self, outputs: Any, *, class_names: Sequence[str], top_k: int) -> dict:
        """The serving signature's outputs (name -> tensor) from the model's outputs."""

    @abc.abstractmethod
    def check_export(self, model: keras.Model, class_names: Sequence[str], top_k: int) -> None:
        """Raises ValueError unless `class_names` and `top_k` fit `model` for export."""

    @abc.abstractmethod
    def evaluate(self, model: keras.Model, source, split: str, config, *, flip: bool) -> dict:
        """The test metrics of `model` on `split` of `source` with the run's `config` (a
        `tfzoo.config.TrainConfig`), a JSON-able dict."""

    @abc.abstractmethod
    def describe(self, metrics: dict) -> list[str]:
        """Lines that report `evaluate`'s metrics on the console, headline first."""

    # -- hooks whose default fits tasks with fixed-size examples ---------------------------

    def batch(self, dataset, batch_size: int, *, drop_remainder: bool):
        """Batches a dataset of examples (`(inputs, targets)` from the source). Padded: a
        packed training clip's crop windows differ in size (`tfzoo.data.packed`; its grid
        never reads the padding); fixed-size examples batch as with `batch`."""
        return dataset.padded_batch(batch_size, drop_remainder=drop_remainder)

    def synthetic_targets(self, model: keras.Model, inputs) -> Any:
        """Valid training targets for a batch of random `inputs` (benchmarks time a training
        step with them): class 0 for every example."""
        import tensorflow as tf  # deferred: loads TensorFlow

        first = inputs if not isinstance(inputs, dict) else next(iter(inputs.values()))
        return tf.zeros(tf.shape(first)[:1], tf.int32)

    def prepare_model(self, model: keras.Model, source, config) -> dict:
        """Settings the task derives from the training data before `fit` (after `init_from`),
        applied to `model`'s config so the run records them; returns them for the log. None by
        default; a detector sets its box-target normalisation."""
        return {}

    def serve(self, model: keras.Model, inputs) -> Any:
        """What a serving signature computes from the (float32) model inputs before
        `export_outputs`: by default the model's outputs in inference mode. `keras.Model`'s
        `__call__` directly: tfzoo's eager input check cannot read symbolic tensors."""
        return keras.Model.__call__(model, inputs, training=False)

    def extra_signatures(self, model: keras.Model, class_names: Sequence[str]) -> dict:
        """Serving signatures besides the per-input ones export makes for every model:
        `{name: (input TensorSpecs, function of those inputs returning a dict of tensors)}`.
        None by default; a D&T detector adds `detect_track` and `class_names`."""
        return {}


_TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Makes `task` available as `get_task(task.name)`."""
    if not task.name or task.name in _TASKS:
        raise TfzooError(f"task name {task.name!r} is empty or already registered")
    _TASKS[task.name] = task
    return task


def get_task(model_or_name) -> Task:
    """The task of a model (its class's `TASK`) or of a task name.

    A Keras model that is not a tfzoo model (no `TASK`) is taken as a classifier returning
    logits, Keras' own convention; a tfzoo backbone (`TASK = None`) has no task.
    """
    name = (model_or_name if isinstance(model_or_name, str)
            else getattr(model_or_name, "TASK", "classification"))
    if name not in _TASKS:
        what = model_or_name if isinstance(model_or_name, str) else getattr(model_or_name, "name", model_or_name)
        check_choice(f"task of {what!r}:", name, sorted(_TASKS),
                     hint="(a tfzoo model, whose class sets TASK)")
    return _TASKS[name]
