"""Frame-wise ResNet baseline: a spatial ResNet applied to every frame."""

from __future__ import annotations

import functools

import keras

from tfzoo.backbones.resnet import (
    STAGE_BLOCKS, batch_norm, bottleneck_unit, resnet_body, video_input,
)
from tfzoo.models.base import VideoModel
from tfzoo.models.heads import classification_head
from tfzoo.models._registry import register_model

# The variant the common model tests build (tests/models/test_models_common.py).
TINY = dict(blocks=(1, 1, 1, 1), width=8)


class ResNetClassifier(VideoModel):
    """What the single-stream ResNet classifiers share: a video ResNet body publishing
    conv1..conv5, and the classification head on conv5."""

    def _build(self, config: dict, *, temporal_pool: str, kwargs: dict, name: str,
               temporal_branch=None):
        """`temporal_branch(spec)`: the unit's T-ResNet branch, or None for a plain unit."""
        norm = functools.partial(batch_norm, momentum=config["bn_momentum"])

        def unit_fn(x, spec):
            branch = temporal_branch(spec) if temporal_branch is not None else None
            return bottleneck_unit(x, spec, norm=norm, temporal_branch=branch)

        inputs = video_input(config["in_channels"])
        maps = resnet_body(inputs, blocks=tuple(config["blocks"]), width=config["width"],
                           normalization=config["normalization"], unit_fn=unit_fn, norm=norm)
        logits = classification_head(maps["conv5"], config["num_classes"],
                                     temporal_pool=temporal_pool, dropout=config["dropout"],
                                     zero_init=config["zero_init_head"])
        kwargs.setdefault("name", name)
        VideoModel.__init__(self, inputs, logits, config=config, endpoints=maps, **kwargs)
        self.blocks = tuple(config["blocks"])


@keras.saving.register_keras_serializable(package="tfzoo")
class FrameResNet(ResNetClassifier):
    """Frame-wise ResNet (He et al. 2016) classifier for video: the spatial baseline.

    Each frame goes through a ResNet v1 independently; the clip score is the temporal average
    of the frame scores (logits). It is stage 1 of the T-ResNet recipe (thesis §7.3.3: train
    purely spatially on single frames), and its layers carry the same names as T-ResNet's, so
    stage 2 starts from its weights.

    Args:
      num_classes, blocks, width, in_channels, normalization, dropout, bn_momentum,
        zero_init_head: as in `TResNet`.

    Example:
    >>> import numpy as np
    >>> model = FrameResNet(num_classes=3, blocks=(1, 1, 1, 1), width=8)
    >>> model(np.zeros((1, 2, 32, 32, 3), "float32")).shape
    TensorShape([1, 3])
    """

    def __init__(
        self,
        num_classes: int = 20,
        blocks=STAGE_BLOCKS[50],
        width: int = 64,
        in_channels: int = 3,
        normalization: str = "caffe",
        dropout: float = 0.0,
        bn_momentum: float = 0.99,
        zero_init_head: bool = False,
        **kwargs,
    ):
        # Averaging pooled features over time before the linear classifier equals averaging
        # the per-frame logits.
        self._build(self.capture(locals()), temporal_pool="avg", kwargs=kwargs, name="resnet")


def register_depths(prefix: str, builder, description: str) -> None:
    """Registers `builder` as `{prefix}50/101/152` (ImageNet depths; `description` may use
    {depth}), each with the tiny test variant."""
    for depth, blocks in STAGE_BLOCKS.items():
        register_model(f"{prefix}{depth}", builder, blocks=blocks,
                       description=description.format(depth=depth), test_overrides=TINY,
                       tags=("imagenet",))


def register() -> None:
    """Registers the frame-wise ResNet presets (called once by `tfzoo.models`)."""
    register_depths("resnet", FrameResNet,
                    "Frame-wise ResNet-{depth} baseline (temporal average of frame scores)")
    # For the embedded demo and tests (no ImageNet weights).
    register_model(
        "resnet_small", FrameResNet, blocks=(2, 2, 2, 2), width=16, bn_momentum=0.9,
        description="Small frame-wise ResNet for the embedded synthetic demo",
    )
