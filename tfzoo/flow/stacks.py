"""Two-stream inputs from raw RGB: sampled frames plus stacked TV-L1 flow, in the graph."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfzoo.errors import TfzooError
from tfzoo.flow.solver import TVL1, TVNet, FlowInputError, _check_frames_static
from tfzoo.utils import check_choice
from tfzoo.video import test_indices

METHODS = {"tvl1": TVL1, "tvnet": TVNet}


def flow_indices(frame_indices, num_video_frames, flow_stack: int):
    """(T, L) flow-field indices of the motion chunks centred on `frame_indices`."""
    offsets = tf.range(flow_stack) - flow_stack // 2
    idx = frame_indices[:, None] + offsets[None, :]
    return tf.clip_by_value(idx, 0, tf.maximum(tf.cast(num_video_frames, tf.int32) - 2, 0))



@keras.saving.register_keras_serializable(package="tfzoo")
class TwoStreamFrames(keras.layers.Layer):
    """A dense RGB clip -> `{"rgb", "flow"}`, the inputs of a two-stream model.

    Simonyan & Zisserman (NIPS 2014) and Feichtenhofer et al. (thesis §3.3, §4.3) feed the
    motion stream a stack of L consecutive optical-flow fields per chunk. This layer does what
    `tfzoo.data` does offline, inside the graph, so that an exported two-stream SavedModel takes
    raw RGB only: it picks `num_chunks` equally spaced frames of the clip (the test protocol,
    `tfzoo.video.test_indices`), and for each computes the L = `flow_stack` TV-L1 fields
    centred on it (fields t-L/2 .. t+L/2-1, clamped at the clip's ends, as
    `tfzoo.data.readers.flow_indices`). Only those T*L frame pairs are solved.
    `method="tvnet"` computes the flow with a `TVNet` (trainable kernels; Fan et al. CVPR 2018),
    so a two-stream model behind this layer trains end to end on RGB alone.

    Input `(B, N, H, W, 3)` RGB in [0, 255], N >= 2 consecutive frames. Output
    `{"rgb": (B, T, H, W, 3), "flow": (B, T, H, W, 2L)}`, flow in pixels, channels u1, v1, ...
    `flow_params` are the constructor arguments of `TVL1` / `TVNet` (defaults: theirs).

    Example:
    >>> import numpy as np
    >>> from tfzoo.flow import TwoStreamFrames
    >>> clip = np.random.default_rng(0).uniform(0, 255, (1, 12, 24, 32, 3)).astype("float32")
    >>> out = TwoStreamFrames(num_chunks=3, flow_stack=2, flow_params={"iterations": 5})(clip)
    >>> tuple(out["rgb"].shape), tuple(out["flow"].shape)
    ((1, 3, 24, 32, 3), (1, 3, 24, 32, 4))
    """

    def __init__(self, num_chunks: int = 5, flow_stack: int = 10, method: str = "tvl1",
                 flow_params: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        if int(num_chunks) < 1 or int(flow_stack) < 1:
            raise TfzooError(f"num_chunks and flow_stack must be >= 1, got {num_chunks!r}, "
                             f"{flow_stack!r}")
        check_choice("flow method", method, sorted(METHODS))
        self.num_chunks = int(num_chunks)
        self.flow_stack = int(flow_stack)
        self.method = method
        self.flow_params = dict(flow_params or {})
        self.flow = METHODS[method](**self.flow_params, name=method)

    def call(self, frames):
        _check_frames_static(frames, f"{type(self).__name__} {self.name!r}")
        frames = tf.cast(frames, self.compute_dtype)
        shape = tf.shape(frames)
        b, n, h, w = shape[0], shape[1], shape[2], shape[3]
        if tf.executing_eagerly() and int(n) < 2:
            raise FlowInputError(f"{self.name}: got {int(n)} frame(s); expected at least 2")
        centres = test_indices(n, self.num_chunks)  # (T,)
        fields = tf.reshape(flow_indices(centres, n, self.flow_stack), [-1])  # (T*L,)
        pairs = tf.stack([tf.gather(frames, fields, axis=1),
                          tf.gather(frames, fields + 1, axis=1)], axis=2)  # (B, T*L, 2, ...)
        flow = self.flow(tf.reshape(pairs, [-1, 2, h, w, 3]))[:, 0]  # (B*T*L, H, W, 2)
        flow = tf.reshape(flow, [b, self.num_chunks, self.flow_stack, h, w, 2])
        flow = tf.transpose(flow, [0, 1, 3, 4, 2, 5])  # (B, T, H, W, L, 2): u1, v1, u2, ...
        flow = tf.reshape(flow, [b, self.num_chunks, h, w, 2 * self.flow_stack])
        return {"rgb": tf.gather(frames, centres, axis=1), "flow": flow}

    def compute_output_shape(self, input_shape):
        b, _, h, w = input_shape[:4]
        return {"rgb": (b, self.num_chunks, h, w, 3),
                "flow": (b, self.num_chunks, h, w, 2 * self.flow_stack)}

    def get_config(self):
        return {**super().get_config(), "num_chunks": self.num_chunks,
                "flow_stack": self.flow_stack, "method": self.method,
                "flow_params": dict(self.flow_params)}
