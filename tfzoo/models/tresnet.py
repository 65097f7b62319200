"""T-ResNet: temporal residual networks (thesis §7.3; Feichtenhofer et al., CVPR 2017)."""

from __future__ import annotations

import keras

from tfzoo.backbones.resnet import STAGE_BLOCKS, TemporalBranch
from tfzoo.models.resnet import ResNetClassifier, register_depths
from tfzoo.models._registry import register_model


@keras.saving.register_keras_serializable(package="tfzoo")
class TResNet(ResNetClassifier):
    """Temporal residual network for dynamic scene / action recognition.

    Feichtenhofer, Pinz, Wildes, "Temporal Residual Networks for Dynamic Scene Recognition",
    CVPR 2017; thesis §7.3. A ResNet whose first and third units of every stage become
    spatiotemporal residual units (eq. 7.6): a pre-activation 1x1x3 temporal conv runs in
    parallel with the 3x3 conv on the reduced features, scaled by a channel-wise affine `S`
    initialised to 0.01. Spatial average, then global temporal max pooling, then the classifier.
    Returns logits. With every `S` at zero it is the frame-wise ResNet.

    Args:
      num_classes: classifier outputs (20 for YUP++).
      blocks, width, in_channels, normalization: see `tfzoo.backbones.VideoResNet`.
      temporal_units: 1-based unit indices transformed in every stage ((1, 3) in the paper);
        indices beyond a stage's length are skipped.
      temporal_init: "random" (paper: N(0, 0.01^2)), "he_normal", "avg", "diff", "center" or
        "noise" (= "random").
      temporal_scale_init: initial value of `S`.
      temporal_pool: "max" (paper) or "avg".
      dropout: before the classifier (0: the paper uses none).
      bn_momentum: moving-average momentum of every BatchNormalization (0.99 as
        keras.applications; lower for short runs such as the embedded demo).
      zero_init_head: start the classifier at zero (uniform predictions).

    Example:
    >>> import numpy as np
    >>> model = TResNet(num_classes=5, blocks=(1, 1, 1, 1), width=8)
    >>> model(np.zeros((2, 4, 32, 32, 3), "float32")).shape
    TensorShape([2, 5])
    """

    def __init__(
        self,
        num_classes: int = 20,
        blocks=STAGE_BLOCKS[50],
        width: int = 64,
        in_channels: int = 3,
        normalization: str = "caffe",
        temporal_units=(1, 3),
        temporal_init: str = "random",
        temporal_scale_init: float = 0.01,
        temporal_pool: str = "max",
        dropout: float = 0.0,
        bn_momentum: float = 0.99,
        zero_init_head: bool = False,
        **kwargs,
    ):
        config = self.capture(locals())
        branch = TemporalBranch(init=temporal_init, scale_init=temporal_scale_init)
        units = set(temporal_units)
        self._build(config, temporal_pool=temporal_pool, kwargs=kwargs, name="tresnet",
                    temporal_branch=lambda spec: branch if spec.block in units else None)


def register() -> None:
    """Registers the T-ResNet presets (called once by `tfzoo.models`)."""
    register_depths("tresnet", TResNet, "T-ResNet-{depth}, thesis §7.3 (CVPR 2017)")
    register_model(
        "tresnet_small", TResNet, blocks=(2, 2, 2, 2), width=16, temporal_units=(1, 2),
        bn_momentum=0.9, description="Small T-ResNet for the embedded synthetic demo",
    )
