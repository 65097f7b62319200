from tfzoo.layers.correlation import Correlation
from tfzoo.layers.cross_stream import CrossStreamConnection
from tfzoo.layers.fusion import (
    AlignSpatial, BilinearFusion, ConvFusion, LateFusion, SpatialFusion, fusion_layer,
)
from tfzoo.layers.ghost_bn import GhostBatchNormalization
from tfzoo.layers.pooling import (
    GlobalSpatialPooling, GlobalTemporalPooling, SpatioTemporalMaxPooling,
)
from tfzoo.layers.preprocessing import VideoNormalization
from tfzoo.layers.roi_pooling import PSRoIPooling
from tfzoo.layers.spatial import SpatialConv3D
from tfzoo.layers.temporal import ChannelScale, temporal_kernel_initializer
from tfzoo.layers.temporal import TemporalConv, TemporalPooling

__all__ = [
    "ChannelScale", "GlobalSpatialPooling", "GlobalTemporalPooling", "VideoNormalization",
    "temporal_kernel_initializer",
    "CrossStreamConnection", "GhostBatchNormalization", "TemporalConv",
    "TemporalPooling", "SpatialConv3D", "AlignSpatial", "BilinearFusion", "ConvFusion", "LateFusion",
    "SpatialFusion", "SpatioTemporalMaxPooling", "fusion_layer", "PSRoIPooling", "Correlation",
]
