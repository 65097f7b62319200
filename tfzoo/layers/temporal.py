"""Temporal building blocks shared by T-ResNet, ST-ResNet and MulNet."""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

from tfzoo.errors import InputSpecError, TfzooError
from tfzoo.utils import check_choice

TEMPORAL_INITS = ("random", "avg", "diff", "center", "noise", "he_normal")


def temporal_kernel_initializer(mode: str, seed: int | None = None):
    """Initializer for a (T, 1, 1, C, C) temporal conv kernel.

    - "random": N(0, 0.01^2) (T-ResNet's "initialized randomly", thesis §7.3.3; the value of
      the reference code insert_temporal_res_layers.m).
    - "he_normal": He-normal (this project's earlier "random"; an option, not the paper's).
    - "avg": identity x [1/3, 1/3, 1/3] (MulNet eq. 5.9, average).
    - "center": identity x [0, 1, 0] (MulNet eq. 5.8, reference code).
    - "diff": identity x [-1, 3, -1] (insert_temporal_res_layers.m option).
    - "noise": N(0, 0.01^2) (insert_temporal_res_layers.m option).
    """
    check_choice("temporal init", mode, TEMPORAL_INITS)
    if mode == "he_normal":
        return keras.initializers.HeNormal(seed=seed)
    if mode in ("random", "noise"):
        return keras.initializers.RandomNormal(stddev=0.01, seed=seed)

    def init(shape, dtype=None):
        t, kh, kw, cin, cout = shape
        if (kh, kw) != (1, 1) or cin != cout:
            raise InputSpecError(f"{mode!r} init needs a (T, 1, 1, C, C) kernel, got {shape}")
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
    >>> round(float(ChannelScale(scale_init=0.01)(np.ones((1, 2, 3), "float32"))[0, 0, 0]), 6)
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


@keras.saving.register_keras_serializable(package="tfzoo")
class TemporalConv(keras.layers.Layer):
    """A 1x1xk convolution over time on (B, T, H, W, C) maps, zero-padded ("same").

    MulNet's identity-mapping temporal filters (thesis eq. 5.8/5.9): with `init="center"` the
    kernel is identity x [0, 1, 0] and the layer is exactly the identity; with `init="avg"`
    it is identity x [1/3, 1/3, 1/3], the identity on temporally constant features away from
    the clip ends. The bias starts at zero. `filters=None` keeps the channel count (required by
    the identity inits). The kernel has Conv3D's layout (k, 1, 1, C_in, C_out).

    Args:
      kernel_size: temporal extent k (odd, so "same" padding is centred).
      init: see `temporal_kernel_initializer` ("center", "avg", "diff", "random", "noise").
      filters: output channels; None = input channels.
      use_bias: add a bias (initialised to 0).

    Example:
    >>> import numpy as np
    >>> x = np.random.rand(1, 4, 2, 2, 3).astype("float32")
    >>> bool(np.allclose(TemporalConv(3, init="center")(x), x))
    True
    """

    def __init__(
        self,
        kernel_size: int = 3,
        init: str = "center",
        filters: int | None = None,
        use_bias: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 \
                or kernel_size % 2 == 0:
            raise TfzooError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
        check_choice("temporal init", init, TEMPORAL_INITS)
        if filters is not None and (not isinstance(filters, int) or filters < 1):
            raise TfzooError(f"filters must be None or a positive integer, got {filters!r}")
        self.kernel_size = kernel_size
        self.init = init
        self.filters = filters
        self.use_bias = use_bias

    def build(self, input_shape):
        if len(input_shape) != 5 or input_shape[-1] is None:
            raise InputSpecError(
                f"{self.name} expects (B, T, H, W, C) with known C, got shape {tuple(input_shape)}"
            )
        c = input_shape[-1]
        out = self.filters or c
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.kernel_size, 1, 1, c, out),
            initializer=temporal_kernel_initializer(self.init),
        )
        self.bias = (
            self.add_weight(name="bias", shape=(out,), initializer="zeros") if self.use_bias else None
        )

    def call(self, x):
        y = ops.conv(x, ops.cast(self.kernel, x.dtype), strides=1, padding="same")
        if self.bias is not None:
            y = y + ops.cast(self.bias, x.dtype)
        return y

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters or input_shape[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_size": self.kernel_size,
            "init": self.init,
            "filters": self.filters,
            "use_bias": self.use_bias,
        }


@keras.saving.register_keras_serializable(package="tfzoo")
class TemporalPooling(keras.layers.Layer):
    """Sliding-window max (or average) pooling over time, (B, T, ...) -> (B, T', ...).

    ST-ResNet* (thesis §4.3.5, Table 4.1): max pooling with window 5 and stride 2 after pool5;
    11 training chunks give 4 outputs, each seeing 47 chunks of the input. "valid" windows as
    in the paper (T' = (T - pool_size) // strides + 1). A clip shorter than the window is
    padded by repeating its last step, so it still yields one output: for max pooling that is
    the global max over the clip (for "avg" the repeated step weighs more).

    Args:
      pool_size: window length in chunks.
      strides: step between windows.
      mode: "max" (paper: better than average) or "avg".

    Example:
    >>> import numpy as np
    >>> x = np.arange(7, dtype="float32").reshape(1, 7, 1)
    >>> TemporalPooling(5, 2)(x).numpy().ravel().tolist()
    [4.0, 6.0]
    """

    def __init__(self, pool_size: int = 5, strides: int = 2, mode: str = "max", **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("pool_size", pool_size), ("strides", strides)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TfzooError(f"{arg} must be a positive integer, got {value!r}")
        check_choice("temporal pooling mode", mode, ("max", "avg"))
        self.pool_size = pool_size
        self.strides = strides
        self.mode = mode

    def call(self, x):
        if len(x.shape) < 3:
            raise InputSpecError(f"{self.name} expects (B, T, ..., C), got shape {tuple(x.shape)}")
        shape = ops.shape(x)
        flat = ops.reshape(x, (shape[0], shape[1], -1))
        short = ops.maximum(0, self.pool_size - shape[1])
        flat = ops.concatenate([flat, ops.repeat(flat[:, -1:], short, axis=1)], axis=1)
        pool = ops.max_pool if self.mode == "max" else ops.average_pool
        y = pool(flat, pool_size=self.pool_size, strides=self.strides, padding="valid")
        return ops.reshape(y, (shape[0], -1, *shape[2:]))

    def compute_output_shape(self, input_shape):
        t = input_shape[1]
        if t is not None:
            t = (max(t, self.pool_size) - self.pool_size) // self.strides + 1
        return (input_shape[0], t, *input_shape[2:])

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "strides": self.strides,
            "mode": self.mode,
        }
