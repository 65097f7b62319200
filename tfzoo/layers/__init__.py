from tfzoo.layers.pooling import GlobalSpatialPooling, GlobalTemporalPooling
from tfzoo.layers.preprocessing import VideoNormalization
from tfzoo.layers.temporal import ChannelScale, temporal_kernel_initializer

__all__ = [
    "ChannelScale", "GlobalSpatialPooling", "GlobalTemporalPooling", "VideoNormalization",
    "temporal_kernel_initializer",
]
