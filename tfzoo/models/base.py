"""What every tfzoo model shares: constructor-argument configs, input checks, endpoints."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfzoo.data.packed import unpack_data
from tfzoo.errors import InputSpecError, TfzooError
from tfzoo.utils import check_arguments


class VideoModel(keras.Model):
    """A functional Keras model whose config is exactly its constructor arguments.

    Subclasses build `inputs`/`outputs` in `__init__` and call
    `super().__init__(inputs, outputs, config=...)` with their arguments. Calling the model
    checks each input's rank, channels and dtype first, so a user mistake gives one clear
    message instead of a trace from deep inside the graph.

    `endpoints` ({name: tensor or (tensor, stream)}, shallow to deep) are the feature maps the
    model publishes as `model.endpoints` (see `tfzoo.models.features`). `TASK` names the task
    that owns the model's outputs, losses, test-time score and export outputs
    (`tfzoo.tasks.get_task`).
    """

    TASK = "classification"

    def __init__(self, inputs, outputs, *, config: dict, endpoints: dict | None = None, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self._tfzoo_config = dict(config)
        from tfzoo.models.features import make_endpoints  # deferred: loads TensorFlow

        # A tuple, not a dict: Keras would wrap a dict attribute in its tracking structures.
        self._endpoints = tuple(make_endpoints(self, endpoints or {}).values())

    @property
    def endpoints(self) -> dict:
        """{name: `Endpoint`} of the published feature maps, shallow to deep."""
        return {e.name: e for e in self._endpoints}

    @staticmethod
    def capture(local_vars: dict) -> dict:
        """Constructor arguments from `locals()`, minus self/kwargs."""
        return {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in local_vars.items()
            if k not in ("self", "kwargs", "__class__")
        }

    def get_config(self):
        return {"name": self.name, **self._tfzoo_config}

    @classmethod
    def from_config(cls, config):
        # A key the constructor does not take is an error, not dropped: a config edited by hand
        # or written by another version would otherwise build a different model.
        check_arguments(f"{cls.__name__}.from_config", cls, config)
        return cls(**config)

    def __call__(self, *args, **kwargs):
        if args:
            check_inputs(self, args[0])
            if isinstance(args[0], dict) and isinstance(self._inputs_struct, (list, tuple)):
                # Keras maps a dict onto list inputs by name when called eagerly, but by sorted
                # key when called on symbolic tensors ({"flow", "rgb"} -> [rgb, flow] swapped),
                # e.g. behind tfzoo.flow.TwoStreamFrames in a functional model.
                args = ([args[0][s.name] for s in self.inputs], *args[1:])
        return super().__call__(*args, **kwargs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None and self._distribute_strategy is None:
            # Without a distribution strategy Keras 3 (3.15) defers building the optimizer
            # and the compiled metrics to the first trace of train_step; creating variables
            # inside a tf.function makes TensorFlow trace it a second time. Building them
            # here from the dataset's element spec (no batch consumed) traces once: a
            # tiny training's CPU 17.2 -> 12.9 s. The spec is the unpacked batch's: the
            # model sees float clips, not the packed ones of the pipeline.
            dataset = iterator.data_adapter.get_tf_dataset()
            spec = dataset.map(lambda *d: unpack_data(d if len(d) > 1 else d[0])).element_spec
            return self._symbolic_build(data_batch=spec)
        # Keras 3 (3.15) reduces the first distributed batch with strategy.reduce("MEAN") only
        # to learn its shapes; under MultiWorkerMirroredStrategy that reduce fails eagerly
        # (keras-team/keras#20585). One replica's values have the same shapes.
        if iterator is not None and self._distribute_strategy is not None:
            for _, _, it in iterator:
                batch = next(it)
                data_batch = tf.nest.map_structure(
                    lambda v: v.values[0] if isinstance(v, tf.distribute.DistributedValues) else v,
                    batch,
                )
                break
        return super()._maybe_symbolic_build(iterator=None, data_batch=unpack_data(data_batch))

    # The step's first op makes packed training clips (uint8 crop windows from the input
    # pipeline, `tfzoo.data.packed`) the float inputs, on the device; other inputs pass as is.
    def train_step(self, data):
        return _multi_worker_logs(self, super().train_step(unpack_data(data)))

    def test_step(self, data):
        return _multi_worker_logs(self, super().test_step(unpack_data(data)))


def _multi_worker_logs(model, logs):
    # Keras 3 (3.15) averages step logs across workers with reduce("MEAN", axis=0), which fails
    # on scalars (keras-team/keras#20585); as shape-[1] tensors they average to the scalar.
    if isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return {k: tf.reshape(v, [1]) for k, v in logs.items()}
    return logs


def set_trainable_streams(model: keras.Model, streams) -> int:
    """Freezes every layer of a two-stream model's streams not in `streams`; returns how many.

    Streams are independent before any cross-stream connection, so training one stream with
    the other frozen is training it alone: Table 4.2 trains the appearance and motion streams
    on different schedules this way (one recipe stage each).
    """
    prefixes = getattr(model, "STREAM_PREFIXES", None)
    if not prefixes:
        raise TfzooError(f"{model.name} has no separate streams; train_streams is for "
                         "two-stream models")
    streams = tuple(streams)
    unknown = sorted(set(streams) - set(prefixes))
    if unknown or not streams:
        raise TfzooError(f"train_streams={streams!r}: expected a non-empty subset of "
                         f"{sorted(prefixes)}")
    frozen = 0
    for layer in model.layers:
        for stream, prefix in prefixes.items():
            if stream not in streams and layer.name.startswith(prefix) and layer.weights:
                layer.trainable = False
                frozen += 1
    return frozen


def check_inputs(model: keras.Model, data) -> None:
    specs = model.inputs
    if isinstance(data, dict):
        items = [(s, data.get(s.name)) for s in specs]
        unknown = set(data) - {s.name for s in specs}
        if unknown:
            raise InputSpecError(
                f"{model.name}: unknown inputs {sorted(unknown)}; expected {[s.name for s in specs]}"
            )
    elif len(specs) > 1:
        names = [s.name for s in specs]
        shown = sorted(names, key=lambda n: n != "rgb")  # {'rgb': ..., 'flow': ...} reads best
        pass_dict = "pass {" + ", ".join(f"{n!r}: ..." for n in shown) + "}"
        if not isinstance(data, (list, tuple)):
            raise InputSpecError(
                f"{model.name} takes {len(specs)} inputs {names}; got one "
                f"{type(data).__name__}{_shape_of(data)}: {pass_dict}")
        if isinstance(getattr(model, "_inputs_struct", None), dict) or len(data) != len(specs):
            raise InputSpecError(
                f"{model.name} takes {len(specs)} inputs {names}; got a {type(data).__name__} of "
                f"{len(data)}: {pass_dict}")
        try:
            check_inputs(model, dict(zip(names, data)))
        except InputSpecError as e:
            raise InputSpecError(f"{e} (a {type(data).__name__} is read in the order {names}; "
                                 f"{pass_dict})") from None
        return
    else:
        items = [(specs[0], data)]
    for spec, value in items:
        if value is None:
            raise InputSpecError(f"{model.name}: missing input {spec.name!r}")
        if isinstance(value, keras.KerasTensor):
            continue
        if isinstance(value, tf.distribute.DistributedValues):  # one replica's share
            value = value.values[0]
        if not hasattr(value, "shape"):
            if not isinstance(value, (list, tuple, int, float)):
                continue  # a container Keras understands and we do not: let Keras check it
            value = np.asarray(value)
        shape = tuple(value.shape)
        expected = tuple(spec.shape)
        dtype = tf.as_dtype(value.dtype)
        what = f"{model.name} input {spec.name!r}"
        if len(shape) != len(expected):
            raise InputSpecError(
                f"{what}: got a rank-{len(shape)} tensor of shape {shape}; expected rank "
                f"{len(expected)}, shape {_fmt(expected)} (batch, frames, height, width, channels)"
            )
        if expected[-1] is not None and shape[-1] is not None and shape[-1] != expected[-1]:
            raise InputSpecError(
                f"{what}: got {shape[-1]} channels (shape {shape}); expected {expected[-1]}"
            )
        if not (dtype.is_floating or dtype.is_integer):
            raise InputSpecError(f"{what}: got dtype {dtype.name}; expected a float or integer type")
    _check_same_clip(model, items)


def _shape_of(value) -> str:
    return f" of shape {tuple(value.shape)}" if hasattr(value, "shape") else ""


def _check_same_clip(model, items) -> None:
    """The streams of a two-stream model see the same clip: frames, height and width agree
    (flow field t is between frames t and t + 1 of the RGB clip)."""
    known = [(spec.name, tuple(value.shape)) for spec, value in items
             if hasattr(value, "shape") and not isinstance(value, keras.KerasTensor)
             and len(value.shape) == 5]
    if len(known) < 2:
        return
    (first, a), *rest = known
    for name, b in rest:
        diff = [(axis, x, y) for axis, x, y in zip(("frames", "height", "width"), a[1:4], b[1:4])
                if x is not None and y is not None and x != y]
        if diff:
            axis, x, y = diff[0]
            raise InputSpecError(
                f"{model.name}: input {first!r} has {x} {axis} (shape {a}) but {name!r} has {y} "
                f"(shape {b}); expected the same clip: equal frames, height and width")


def _fmt(shape) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"
