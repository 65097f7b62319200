from tfzoo.backbones.resnet import (
    STAGE_BLOCKS,
    TemporalBranch,
    UnitSpec,
    bottleneck_unit,
    resnet_body,
    resnet_units,
    stem,
)
from tfzoo.backbones.transplant import load_pretrained, transplant
from tfzoo.backbones.video_resnet import VideoResNet

__all__ = [
    "STAGE_BLOCKS", "TemporalBranch", "UnitSpec", "VideoResNet", "bottleneck_unit",
    "resnet_body", "resnet_units", "stem", "load_pretrained", "transplant",
]
