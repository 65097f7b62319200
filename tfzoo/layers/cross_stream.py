"""Connections between the appearance and the motion stream of a two-stream network."""

from __future__ import annotations

import keras
from keras import ops

from tfzoo.errors import InputSpecError
from tfzoo.utils import check_choice

CROSS_STREAM_MODES = ("add", "multiply")


@keras.saving.register_keras_serializable(package="tfzoo")
class CrossStreamConnection(keras.layers.Layer):
    """Injects one stream's features into the other: `x + f(other)` or `x * f(other)`, f = ReLU.

    Thesis eq. 4.2 / 5.2 (additive, ST-ResNet) and eq. 5.5 (multiplicative gating, MulNet):
    called as `layer([x, other])` on two maps of equal shape, it returns the receiving
    stream's signal `x` combined with the rectified signal of the sending stream. With
    "multiply" the gradient reaching `other` is the incoming gradient times `x` (eq. 5.7), and
    the gradient reaching `x` is scaled by `f(other)` (eq. 5.6).

    Args:
      mode: "add" or "multiply".

    Example:
    >>> import numpy as np
    >>> x = np.array([[1.0, 2.0]], "float32"); m = np.array([[3.0, -1.0]], "float32")
    >>> CrossStreamConnection("add")([x, m]).numpy().tolist()
    [[4.0, 2.0]]
    >>> CrossStreamConnection("multiply")([x, m]).numpy().tolist()
    [[3.0, 0.0]]
    """

    def __init__(self, mode: str = "multiply", **kwargs):
        super().__init__(**kwargs)
        check_choice("cross-stream mode", mode, CROSS_STREAM_MODES)
        self.mode = mode

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise InputSpecError(f"{self.name} expects [x, other], got {type(inputs).__name__}")
        x, other = inputs
        gate = ops.relu(ops.cast(other, x.dtype))
        return x + gate if self.mode == "add" else x * gate

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
