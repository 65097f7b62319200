"""Spatial (1, k, k) convolutions on video tensors, run as Conv2D on frames folded into the batch."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfzoo")
class SpatialConv3D(keras.layers.Conv3D):
    """A `keras.layers.Conv3D` that runs (1, k, k) kernels as a Conv2D over the B*T frames.

    Same arguments, config, variables (`kernel` (1, k, k, Cin, Cout), `bias` (Cout,)) and
    variable paths as Conv3D, so keras.applications weights transplant exactly and existing
    checkpoints load unchanged; float32 outputs are bit-identical to Conv3D's. Kernels with a
    temporal extent > 1, a temporal stride, groups or channels_first run the stock Conv3D.

    Why (docs/bench.md): under bfloat16 on oneDNN/AMX CPUs, Conv3D with these kernels is slower
    than Conv2D on the same data (conv1 7x7/2 with 3 input channels ~3x, the 1x1 convs ~1.25x),
    which made our ResNet-50 >10% slower per frame than keras.applications. The bias is added
    while the tensor is still 4-D so grappler treats Conv2D + bias as for keras.applications.

    Example:
    >>> import numpy as np
    >>> conv = SpatialConv3D(4, (1, 3, 3), padding="same")
    >>> tuple(conv(np.zeros((2, 3, 8, 8, 5), "float32")).shape)
    (2, 3, 8, 8, 4)
    """

    def _folds(self) -> bool:
        return (
            self.kernel_size[0] == 1
            and self.strides[0] == 1
            and self.data_format == "channels_last"
            and self.groups == 1
        )

    def call(self, inputs):
        if not self._folds():
            return super().call(inputs)
        b, t, h, w, c = ops.shape(inputs)
        y = ops.conv(
            ops.reshape(inputs, (-1, h, w, c)),
            self.kernel[0],  # (k, k, Cin, Cout)
            strides=self.strides[1:],
            padding=self.padding,
            dilation_rate=self.dilation_rate[1:],
            data_format="channels_last",
        )
        if self.use_bias:
            y = ops.add(y, ops.reshape(self.bias, (1, 1, 1, self.filters)))
        _, ho, wo, co = ops.shape(y)
        y = ops.reshape(y, (b, t, ho, wo, co))
        return self.activation(y) if self.activation is not None else y
