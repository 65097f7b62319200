"""In-graph input normalisation, so models and SavedModels take raw frames."""

from __future__ import annotations

import keras
from keras import ops

from tfzoo.utils import check_choice

# keras.applications ResNet ("caffe" mode): BGR channel order, ImageNet means, no scaling.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
NORMALIZATIONS = ("caffe", "flow_uint8", "none")


@keras.saving.register_keras_serializable(package="tfzoo")
class VideoNormalization(keras.layers.Layer):
    """Normalises raw video input inside the graph.

    Modes:
      - "caffe": RGB in [0, 255] -> BGR minus the ImageNet mean, exactly
        `keras.applications.resnet.preprocess_input`, so transplanted weights see what they saw.
      - "flow_uint8": flow stored in the papers' uint8 encoding; subtracts 128 (thesis §5.4.1).
      - "none": identity (flow in pixels).

    Example:
    >>> import numpy as np
    >>> layer = VideoNormalization("caffe")
    >>> out = layer(np.full((1, 2, 4, 4, 3), 255.0, "float32"))
    >>> [round(float(v), 3) for v in out[0, 0, 0, 0]]
    [151.061, 138.221, 131.32]
    """

    def __init__(self, mode: str = "caffe", **kwargs):
        super().__init__(**kwargs)
        check_choice("normalization", mode, NORMALIZATIONS)
        self.mode = mode

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1)
            return x - ops.convert_to_tensor(CAFFE_BGR_MEAN, dtype=x.dtype)
        if self.mode == "flow_uint8":
            return x - 128.0
        return x

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
