"""Model families; importing this package registers every preset."""

from tfzoo.backbones.resnet import STAGE_BLOCKS
from tfzoo.models.resnet import FrameResNet
from tfzoo.models.tresnet import TResNet
from tfzoo.registry import register_model

_TINY = dict(blocks=(1, 1, 1, 1), width=8)

for _depth, _blocks in STAGE_BLOCKS.items():
    register_model(
        f"resnet{_depth}",
        FrameResNet,
        blocks=_blocks,
        description=f"Frame-wise ResNet-{_depth} baseline (temporal average of frame scores)",
        test_overrides=_TINY,
        tags=("imagenet",),
    )
    register_model(
        f"tresnet{_depth}",
        TResNet,
        blocks=_blocks,
        description=f"T-ResNet-{_depth}, thesis §7.3 (CVPR 2017)",
        test_overrides=_TINY,
        tags=("imagenet",),
    )

# Small variants for the embedded demo and tests (no ImageNet weights).
register_model(
    "resnet_small", FrameResNet, blocks=(2, 2, 2, 2), width=16, bn_momentum=0.9,
    description="Small frame-wise ResNet for the embedded synthetic demo",
)
register_model(
    "tresnet_small", TResNet, blocks=(2, 2, 2, 2), width=16, temporal_units=(1, 2), bn_momentum=0.9,
    description="Small T-ResNet for the embedded synthetic demo",
)

from tfzoo.models import fusion as _fusion; _fusion.register()  # noqa: E402,E702

from tfzoo.models import two_stream_resnet as _tsr; _tsr.register()  # noqa: E402,E702

__all__ = ["FrameResNet", "TResNet"]
