"""ResNet v1 on video tensors (B, T, H, W, C), with keras.applications' structure and names.

Every spatial op is a Conv3D with a (1, k, k) kernel, so layer names, padding and strides match
`keras.applications.ResNet50/101/152` one to one and ImageNet weights transplant exactly
(`tfzoo.backbones.transplant`). Models extend the network through the per-unit hooks of
`bottleneck_unit` instead of copying it. The (1, k, k) convs are `SpatialConv3D`, a Conv3D
subclass with the same variables that runs them as Conv2D on the frames folded into the batch
(faster under bfloat16 on oneDNN CPUs, docs/bench.md); temporal kernels stay Conv3D.

- `temporal_kernels`: temporal extent of the unit's three convs, e.g. (3, 1, 3) turns both 1x1
  convs into 1x1x3 convs (ST-ResNet, thesis eq. 4.5);
- `branch_input`: a function of the unit input feeding the residual branch, for cross-stream
  connections (ST-ResNet eq. 4.2, MulNet eq. 5.5);
- `after_spatial`: a function applied after the 3x3 conv's ReLU (MulNet identity filters);
- `temporal_branch`: T-ResNet's spatiotemporal residual unit (thesis eq. 7.6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras

from tfzoo.errors import TfzooError
from tfzoo.layers.preprocessing import VideoNormalization
from tfzoo.layers.spatial import SpatialConv3D
from tfzoo.layers.temporal import ChannelScale, temporal_kernel_initializer

BN_EPSILON = 1.001e-5  # keras.applications' value; needed for an exact transplant.
STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}

Tensor = keras.KerasTensor
NormFactory = Callable[[str], keras.layers.Layer]


def batch_norm(name: str, momentum: float = 0.99) -> keras.layers.Layer:
    return keras.layers.BatchNormalization(axis=-1, epsilon=BN_EPSILON, momentum=momentum, name=name)


@dataclass(frozen=True)
class UnitSpec:
    """One bottleneck residual unit: stage 2..5, block 1-based, as keras.applications names it."""

    stage: int
    block: int
    filters: int
    stride: int
    dilation: int = 1

    @property
    def name(self) -> str:
        return f"conv{self.stage}_block{self.block}"

    @property
    def conv_shortcut(self) -> bool:
        return self.block == 1


def resnet_units(
    blocks: tuple[int, ...] = STAGE_BLOCKS[50], width: int = 64, output_stride: int = 32
) -> list[UnitSpec]:
    """The units of a ResNet body, conv2_x .. conv5_x.

    `output_stride=16` keeps conv5 at stride 16 with dilation 2 in its 3x3 convs (D&T, thesis §8).
    """
    if len(blocks) != 4 or min(blocks) < 1:
        raise TfzooError(f"blocks must be 4 positive unit counts (conv2..conv5), got {blocks}")
    if output_stride not in (16, 32):
        raise TfzooError(f"output_stride must be 16 or 32, got {output_stride}")
    units = []
    for i, n in enumerate(blocks):
        stage = i + 2
        dilated = stage == 5 and output_stride == 16
        stride = 1 if (stage == 2 or dilated) else 2
        for b in range(1, n + 1):
            units.append(
                UnitSpec(
                    stage=stage,
                    block=b,
                    filters=width * 2**i,
                    stride=stride if b == 1 else 1,
                    dilation=2 if dilated else 1,
                )
            )
    return units


def stem(x: Tensor, width: int = 64, norm: NormFactory = batch_norm, prefix: str = "") -> Tensor:
    """conv1 (7x7/2) and pool1 (3x3/2 max), with keras.applications' explicit zero padding.

    `prefix` is prepended to every layer name (one stream of a two-stream model)."""
    p = prefix
    x = keras.layers.ZeroPadding3D(((0, 0), (3, 3), (3, 3)), name=f"{p}conv1_pad")(x)
    x = SpatialConv3D(width, (1, 7, 7), strides=(1, 2, 2), name=f"{p}conv1_conv")(x)
    x = norm(f"{p}conv1_bn")(x)
    x = keras.layers.Activation("relu", name=f"{p}conv1_relu")(x)
    x = keras.layers.ZeroPadding3D(((0, 0), (1, 1), (1, 1)), name=f"{p}pool1_pad")(x)
    return keras.layers.MaxPooling3D((1, 3, 3), strides=(1, 2, 2), name=f"{p}pool1_pool")(x)


@dataclass(frozen=True)
class TemporalBranch:
    """T-ResNet's temporal block (thesis eq. 7.6): BN, ReLU, 1x1x3 conv C->C, scaled by S."""

    init: str = "random"
    scale_init: float = 0.01
    kernel: int = 3


def bottleneck_unit(
    x: Tensor,
    spec: UnitSpec,
    *,
    norm: NormFactory = batch_norm,
    temporal_kernels: tuple[int, int, int] = (1, 1, 1),
    branch_input: Callable[[Tensor], Tensor] | None = None,
    after_spatial: Callable[[Tensor], Tensor] | None = None,
    temporal_branch: TemporalBranch | None = None,
    prefix: str = "",
) -> Tensor:
    """A ResNet v1 bottleneck unit (thesis eq. 4.1 / 7.3) with the model hooks described above.

    Stride sits on the first 1x1 conv and on the projection shortcut, as in keras.applications.
    `prefix` is prepended to every layer name.
    """
    n = prefix + spec.name
    t1, t2, t3 = temporal_kernels
    stride = (1, spec.stride, spec.stride)
    if spec.conv_shortcut:
        shortcut = SpatialConv3D(4 * spec.filters, 1, strides=stride, name=f"{n}_0_conv")(x)
        shortcut = norm(f"{n}_0_bn")(shortcut)
    else:
        shortcut = x

    y = branch_input(x) if branch_input is not None else x
    y = SpatialConv3D(
        spec.filters, (t1, 1, 1), strides=stride, padding="same", name=f"{n}_1_conv"
    )(y)
    y = norm(f"{n}_1_bn")(y)
    x1 = keras.layers.Activation("relu", name=f"{n}_1_relu")(y)

    y = SpatialConv3D(
        spec.filters,
        (t2, 3, 3),
        padding="same",
        dilation_rate=(1, spec.dilation, spec.dilation),
        name=f"{n}_2_conv",
    )(x1)
    y = norm(f"{n}_2_bn")(y)
    y = keras.layers.Activation("relu", name=f"{n}_2_relu")(y)
    if after_spatial is not None:
        y = after_spatial(y)
    if temporal_branch is not None:
        y = keras.layers.Add(name=f"{n}_st_add")([y, _temporal_block(x1, spec, temporal_branch, norm, prefix)])

    y = SpatialConv3D(4 * spec.filters, (t3, 1, 1), padding="same", name=f"{n}_3_conv")(y)
    y = norm(f"{n}_3_bn")(y)
    y = keras.layers.Add(name=f"{n}_add")([shortcut, y])
    return keras.layers.Activation("relu", name=f"{n}_out")(y)


def _temporal_block(
    x1: Tensor, spec: UnitSpec, cfg: TemporalBranch, norm: NormFactory, prefix: str = ""
) -> Tensor:
    # Pre-activation order (BN, ReLU, conv) inside the temporal block (thesis §7.3.3).
    n = prefix + spec.name
    t = norm(f"{n}_t_bn")(x1)
    t = keras.layers.Activation("relu", name=f"{n}_t_relu")(t)
    t = keras.layers.Conv3D(
        spec.filters,
        (cfg.kernel, 1, 1),
        padding="same",
        kernel_initializer=temporal_kernel_initializer(cfg.init),
        bias_initializer="zeros",
        name=f"{n}_t_conv",
    )(t)
    return ChannelScale(cfg.scale_init, name=f"{n}_t_scale")(t)


UnitFn = Callable[[Tensor, UnitSpec], Tensor]


def resnet_body(
    inputs: Tensor,
    *,
    blocks: tuple[int, ...] = STAGE_BLOCKS[50],
    width: int = 64,
    normalization: str = "caffe",
    output_stride: int = 32,
    unit_fn: UnitFn | None = None,
    norm: NormFactory = batch_norm,
    prefix: str = "",
) -> dict[str, Tensor]:
    """Builds the backbone on `inputs` and returns the endpoints conv1 .. conv5.

    `unit_fn(x, spec)` builds each unit; by default `bottleneck_unit(x, spec, norm=norm,
    prefix=prefix)`. `prefix` is prepended to every layer name the body creates.
    """
    x = VideoNormalization(normalization, name=f"{prefix}normalization")(inputs)
    x = stem(x, width, norm, prefix)
    endpoints = {"conv1": x}
    build = unit_fn or (lambda y, spec: bottleneck_unit(y, spec, norm=norm, prefix=prefix))
    for spec in resnet_units(tuple(blocks), width, output_stride):
        x = build(x, spec)
        endpoints[f"conv{spec.stage}"] = x  # the last unit of a stage wins
    return endpoints


def video_input(in_channels: int, name: str = "video") -> Tensor:
    return keras.Input(shape=(None, None, None, in_channels), name=name)
