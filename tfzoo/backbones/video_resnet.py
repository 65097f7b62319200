"""`VideoResNet`: the video ResNet body as a model that publishes its feature maps."""

from __future__ import annotations

import keras

from tfzoo.backbones.resnet import STAGE_BLOCKS, resnet_body, video_input
from tfzoo.models.base import VideoModel


@keras.saving.register_keras_serializable(package="tfzoo")
class VideoResNet(VideoModel):
    """ResNet v1 (He et al. 2016) applied to video, returning the feature maps conv1 .. conv5.

    Thesis §4.3.1. Input `(B, T, H, W, in_channels)`, raw values (RGB in [0, 255] for
    `normalization="caffe"`). With ImageNet weights (`tfzoo.backbones.load_pretrained`) every
    frame's conv5 equals keras.applications' `conv5_block3_out`. The outputs are its
    `endpoints`: a backbone with no task, for detectors and feature extraction.

    Args:
      blocks: units per stage conv2..conv5; (3, 4, 6, 3) is ResNet-50.
      width: filters of the first stage's bottleneck (64 in the paper; smaller for tests).
      in_channels: 3 for RGB, 2L = 20 for a flow stack.
      normalization: see `VideoNormalization`.
      output_stride: 32, or 16 with a dilated conv5.

    Example:
    >>> import numpy as np
    >>> net = VideoResNet(blocks=(1, 1, 1, 1), width=8)
    >>> out = net(np.zeros((1, 2, 32, 32, 3), "float32"))
    >>> tuple(out["conv5"].shape), net.endpoints["conv5"].stride
    ((1, 2, 1, 1, 256), 32)
    """

    TASK = None

    def __init__(
        self,
        blocks=STAGE_BLOCKS[50],
        width: int = 64,
        in_channels: int = 3,
        normalization: str = "caffe",
        output_stride: int = 32,
        **kwargs,
    ):
        config = self.capture(locals())
        inputs = video_input(in_channels)
        maps = resnet_body(
            inputs,
            blocks=tuple(blocks),
            width=width,
            normalization=normalization,
            output_stride=output_stride,
        )
        super().__init__(inputs, maps, config=config, endpoints=maps, **kwargs)
        self.blocks = tuple(blocks)
