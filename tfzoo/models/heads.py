"""The classification head every tfzoo classifier ends in, the two-stream score fusion, and
the per-chunk loss of heads that return chunk logits (a saved model's compile state names it,
so loading a model registers it with the heads)."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfzoo.errors import TfzooError
from tfzoo.layers.fusion import LateFusion
from tfzoo.layers.pooling import GlobalSpatialPooling, GlobalTemporalPooling
from tfzoo.layers.temporal import TemporalPooling


def classification_head(
    x, num_classes: int | None, *, prefix: str = "", temporal_pool: str = "avg",
    chunk_pool=None, dropout: float = 0.0, zero_init: bool = False, time_first: bool = False,
    return_chunks: bool = False,
):
    """Global spatial average, optional sliding temporal max, global temporal pool, classifier.

    Returns (B, num_classes) logits, float32 under mixed precision. Spatial averaging before a
    linear classifier equals averaging the classifier's outputs over all locations, so running
    the model on a full frame is the papers' fully convolutional test; with
    `temporal_pool="avg"` the logits are the average of the per-chunk logits too. Thesis §7.3.2:
    temporal max pooling beats averaging by ~2% for T-ResNet.

    Args:
      x: a (B, T, H, W, C) feature map, or per-location class scores (a VGG tower's fc8) when
        `num_classes` is None: then only the pooling is added (in float32).
      num_classes: classifier outputs, or None (see `x`).
      prefix: prepended to every layer name (one stream of a two-stream model).
      temporal_pool: "avg" or "max" over the remaining chunks.
      chunk_pool: (window, stride) of a sliding temporal max pool first (ST-ResNet*, §4.3.5).
      dropout: before the classifier.
      time_first: pool time first, per spatial location, then space (MulNet eq. 5.10:
        `max_t` of each conv5 location, then the spatial average; it differs from the default
        order whenever locations peak at different times). Not with `chunk_pool`.
      return_chunks: also return the per-chunk logits (B, T', C) (classified before the
        temporal average, which is then the average of the per-chunk logits): ST-ResNet's
        "single loss for each of the 5 inputs" (§4.3.5). Needs `temporal_pool="avg"`.
      zero_init: start the classifier at zero, i.e. every clip at the uniform prediction; it
        speeds up training from scratch (the embedded demo) and changes nothing for
        transplanted backbones.

    Example:
    >>> import keras
    >>> x = keras.Input((None, 7, 7, 32))
    >>> tuple(classification_head(x, 5, prefix="rgb_").shape)
    (None, 5)
    """
    # Class scores stay float32: pooling them in bfloat16 would round the logits.
    dtype = "float32" if num_classes is None else None
    if time_first:
        if chunk_pool is not None:
            raise TfzooError("classification_head: time_first pools all chunks per location; "
                             f"it takes no chunk_pool (got {chunk_pool})")
        x = GlobalTemporalPooling(temporal_pool, name=f"{prefix}temporal_pool", dtype=dtype)(x)
        x = keras.layers.GlobalAveragePooling2D(name=f"{prefix}spatial_pool", dtype=dtype)(x)
        return _classifier(x, num_classes, prefix, dropout, zero_init)
    x = GlobalSpatialPooling("avg", name=f"{prefix}spatial_pool", dtype=dtype)(x)
    if chunk_pool is not None:
        size, stride = chunk_pool
        x = TemporalPooling(int(size), int(stride), "max", name=f"{prefix}chunk_pool", dtype=dtype)(x)
    if return_chunks:
        if temporal_pool != "avg" or num_classes is None:
            raise TfzooError("return_chunks needs temporal_pool='avg' and a classifier")
        chunks = _classifier(x, num_classes, prefix, dropout, zero_init)  # Dense per chunk
        logits = GlobalTemporalPooling("avg", name=f"{prefix}temporal_pool", dtype="float32")(chunks)
        return logits, chunks
    x = GlobalTemporalPooling(temporal_pool, name=f"{prefix}temporal_pool", dtype=dtype)(x)
    return _classifier(x, num_classes, prefix, dropout, zero_init)


def _classifier(x, num_classes, prefix, dropout, zero_init):
    if num_classes is None:
        return x
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{prefix}dropout")(x)
    init = "zeros" if zero_init else "glorot_uniform"
    return keras.layers.Dense(num_classes, kernel_initializer=init, name=f"{prefix}predictions",
                              dtype="float32")(x)


def two_stream_outputs(rgb, flow, *, mode: str = "logits", stream_weights=None) -> dict:
    """{"rgb", "flow", "fused"} logits, all float32: the two-stream classification output.

    "fused" is `LateFusion(mode, stream_weights)` of the two streams: the test-time score. It
    gets no loss in training (one loss per stream; the thesis found one joint classifier
    overfits to appearance, §4.4.1).
    """
    fused = LateFusion(mode, stream_weights=stream_weights, name="fused", dtype="float32")([rgb, flow])
    return {"rgb": rgb, "flow": flow, "fused": fused}


@keras.saving.register_keras_serializable(package="tfzoo")
class PerChunkCrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy of every chunk's logits (B, T, C) against the clip's label, averaged
    over chunks: ST-ResNet's "single loss for each of the 5 inputs" (thesis §4.3.5). Labels are
    (B,) class ids, or (B, C) one-hot / smoothed targets."""

    def __init__(self, label_smoothing: float = 0.0, name="per_chunk_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        y_pred = tf.cast(y_pred, tf.float32)
        t = tf.shape(y_pred)[1]
        if self.label_smoothing or y_true.shape.rank == 2:
            y = tf.repeat(tf.cast(y_true, tf.float32)[:, None], t, axis=1)
            ce = keras.losses.categorical_crossentropy(
                y, y_pred, from_logits=True, label_smoothing=self.label_smoothing)
        else:
            y = tf.repeat(tf.cast(tf.reshape(y_true, [-1]), tf.int32)[:, None], t, axis=1)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=y_pred)
        return tf.reduce_mean(ce, axis=1)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}
