from tfzoo.backbones.resnet import (
    STAGE_BLOCKS,
    TemporalBranch,
    UnitSpec,
    VideoResNet,
    bottleneck_unit,
    resnet_body,
    resnet_units,
    stem,
)
from tfzoo.backbones.transplant import load_pretrained, transplant

__all__ = [
    "STAGE_BLOCKS", "TemporalBranch", "UnitSpec", "VideoResNet", "bottleneck_unit",
    "resnet_body", "resnet_units", "stem", "load_pretrained", "transplant",
]
