"""Temporal building blocks shared by T-ResNet, ST-ResNet and MulNet."""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

TEMPORAL_INITS = ("random", "avg", "diff", "center", "noise")


def temporal_kernel_initializer(mode: str, seed: int | None = None):
    """Initializer for a (T, 1, 1, C, C) temporal conv kernel.

    - "random": He-normal (T-ResNet, thesis §7.3.3).
    - "avg": identity x [1/3, 1/3, 1/3] (MulNet eq. 5.9, average).
    - "center": identity x [0, 1, 0] (MulNet eq. 5.8, reference code).
    - "diff": identity x [-1, 3, -1] (insert_temporal_res_layers.m option).
    - "noise": N(0, 0.01^2) (insert_temporal_res_layers.m option).
    """
    if mode not in TEMPORAL_INITS:
        raise ValueError(f"unknown temporal init {mode!r}; expected one of {TEMPORAL_INITS}")
    if mode == "random":
        return keras.initializers.HeNormal(seed=seed)
    if mode == "noise":
        return keras.initializers.RandomNormal(stddev=0.01, seed=seed)

    def init(shape, dtype=None):
        t, kh, kw, cin, cout = shape
        if (kh, kw) != (1, 1) or cin != cout:
            raise ValueError(f"{mode!r} init needs a (T, 1, 1, C, C) kernel, got {shape}")
        taps = {"avg": np.full(t, 1.0 / t), "center": np.eye(t)[t // 2]}.get(mode)
        if taps is None:  # "diff": the reference's [-1 3 -1], centred on the middle tap
            taps = -np.ones(t)
            taps[t // 2] = t
        kernel = taps[:, None, None, None, None] * np.eye(cin)[None, None, None]
        return ops.convert_to_tensor(kernel, dtype=dtype or "float32")

    return init


@keras.saving.register_keras_serializable(package="tfzoo")
class ChannelScale(keras.layers.Layer):
    """Channel-wise affine scaling `S`: y = gamma * x + beta (T-ResNet eq. 7.6).

    Example:
    >>> import numpy as np
    >>> ChannelScale(scale_init=0.01)(np.ones((1, 2, 3), "float32")).numpy()[0, 0, 0]
    0.01
    """

    def __init__(self, scale_init: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        self.scale_init = scale_init

    def build(self, input_shape):
        c = input_shape[-1]
        self.gamma = self.add_weight(
            name="gamma", shape=(c,), initializer=keras.initializers.Constant(self.scale_init)
        )
        self.beta = self.add_weight(name="beta", shape=(c,), initializer="zeros")

    def call(self, x):
        return x * ops.cast(self.gamma, x.dtype) + ops.cast(self.beta, x.dtype)

    def get_config(self):
        return {**super().get_config(), "scale_init": self.scale_init}
