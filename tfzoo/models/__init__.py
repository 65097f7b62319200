"""Model families. Each family module registers its own presets in `register()`; importing
this package calls them (in a fixed order, so `list_models()` is stable)."""

from tfzoo.models import dt, fusion, resnet, rfcn, tresnet, two_stream_resnet
from tfzoo.models._registry import (
    UnknownModelError,
    create_model,
    get_entry,
    list_models,
    register_model,
)
from tfzoo.models.base import VideoModel
from tfzoo.models.dt import DetectTrack
from tfzoo.models.features import Endpoint, feature_extractor
from tfzoo.models.fusion import TwoStreamFusion, TwoStreamNet
from tfzoo.models.resnet import FrameResNet
from tfzoo.models.rfcn import RFCN
from tfzoo.models.tresnet import TResNet
from tfzoo.models.two_stream_resnet import MulNet, STResNet

for _family in (resnet, tresnet, fusion, two_stream_resnet, rfcn, dt):
    _family.register()

__all__ = [
    "create_model", "get_entry", "list_models", "register_model", "UnknownModelError",
    "DetectTrack", "Endpoint", "FrameResNet", "MulNet", "RFCN", "STResNet", "TResNet", "TwoStreamFusion",
    "TwoStreamNet", "VideoModel", "feature_extractor",
]
