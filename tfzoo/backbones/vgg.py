"""VGG-M-2048 and VGG-16 towers on video tensors (B, T, H, W, C), built segment by segment.

The two-stream fusion models (thesis ch. 3) run two towers side by side and splice a fusion
layer in between at a named endpoint, so a tower is built in segments: `tower.build(x, start,
stop)` adds the layers after endpoint `start` up to and including endpoint `stop`. Endpoints:

  relu1 .. relu5   rectified output of the last conv of each block (VGG-16: relu5 = relu5_3)
  pool5            after the last max pooling (2-D per chunk, or 3-D over chunks, §3.3.3)
  fc6, fc7         rectified outputs of the fully connected layers
  fc8              class scores (logits), one per chunk and location

Every spatial op is a Conv3D/pooling with a (1, k, k) kernel (docs/design.md, "Tensor conventions"),
and fc6..fc8 are convolutions (fc6 is 6x6 for VGG-M, 7x7 for VGG-16) so a tower runs on any
frame size: at 224x224 fc6 sees exactly the pretrained 6x6 / 7x7 map and the parameter
counts are those of the paper; on a full frame it is the fully convolutional test.

VGG-M-2048: Chatfield et al., "Return of the Devil in the Details", BMVC 2014 (conv1 96x7x7/2,
LRN, pool 3x3/2; conv2 256x5x5/2, LRN, pool 3x3/2; conv3-5 512x3x3; pool 3x3/2; fc 4096, 2048).
VGG-16: Simonyan & Zisserman, ICLR 2015. Neither has batch normalisation (thesis §3.3.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
from keras import ops

from tfzoo.errors import TfzooError
from tfzoo.layers.pooling import SpatioTemporalMaxPooling
from tfzoo.utils import check_choice

ENDPOINTS = ("input", "relu1", "relu2", "relu3", "relu4", "relu5", "pool5", "fc6", "fc7", "fc8")
ARCHS = ("vggm", "vgg16")
TEMPORAL_POOLS = ("2d", "3d")

Tensor = keras.KerasTensor


@keras.saving.register_keras_serializable(package="tfzoo")
class LocalResponseNormalization(keras.layers.Layer):
    """Cross-channel local response normalisation (Krizhevsky et al. 2012), as in VGG-M.

    y_c = x_c / (bias + alpha * sum_{|c' - c| <= radius} x_{c'}^2) ** beta. The defaults are
    VGG-M's Caffe LRN (local_size 5, alpha 5e-4 / 5 per element, k 2, beta 0.75). Works on
    any rank, normalising over the last axis.

    Example:
    >>> import numpy as np
    >>> y = LocalResponseNormalization(radius=0, bias=1.0, alpha=1.0, beta=0.5)(np.full((1, 1), 3.0, "float32"))
    >>> round(float(y[0, 0]), 4)
    0.9487
    """

    def __init__(
        self, radius: int = 2, bias: float = 2.0, alpha: float = 1e-4, beta: float = 0.75, **kwargs
    ):
        super().__init__(**kwargs)
        if radius < 0:
            raise TfzooError(f"radius must be >= 0, got {radius}")
        self.radius = int(radius)
        self.bias = float(bias)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def call(self, x):
        sq = ops.square(x)
        r = self.radius
        c = x.shape[-1]
        if r:
            pad = [[0, 0]] * (len(x.shape) - 1) + [[r, r]]
            sq = ops.pad(sq, pad)
            # 2r + 1 shifted slices: cheaper than a conv for r = 2 and exact.
            sq = sum(sq[..., i : i + c] for i in range(2 * r + 1))
        return x / ops.power(self.bias + self.alpha * sq, self.beta)

    def get_config(self):
        return {
            **super().get_config(),
            "radius": self.radius,
            "bias": self.bias,
            "alpha": self.alpha,
            "beta": self.beta,
        }


@dataclass(frozen=True)
class ArchSpec:
    conv_blocks: tuple[tuple[int, ...], ...]  # output channels of the convs of each block
    fc: tuple[int, int]  # fc6, fc7 widths
    fc6_kernel: int


ARCH_SPECS = {
    "vggm": ArchSpec(((96,), (256,), (512,), (512,), (512,)), (4096, 2048), 6),
    "vgg16": ArchSpec(
        ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)), (4096, 4096), 7
    ),
}


def endpoint_index(name: str) -> int:
    return ENDPOINTS.index(check_choice("VGG endpoint", name, ENDPOINTS))


class VGGTower:
    """Builds a VGG-M-2048 or VGG-16 tower on 5-D tensors, segment by segment.

    Args:
      arch: "vggm" (VGG-M-2048) or "vgg16".
      num_classes: fc8 outputs.
      prefix: layer-name prefix, e.g. "spatial_" / "temporal_", so two towers share a model.
      dropout: before fc7 and fc8, i.e. on the fc6 and fc7 outputs (0.85 for the spatial net).
      width_multiplier: scales every conv/fc width (1.0 = the paper's; small for tests).
      fc6_kernel: spatial size of fc6; None = the pretrained size (6 VGG-M, 7 VGG-16). 1 lets
        tiny test inputs through.
      temporal_pool: "2d" (pool5 per chunk) or "3d" (pool5 also over `temporal_pool_size`
        chunks with stride `temporal_pool_stride`, "same" padding in time; window None: all
        chunks, the thesis's T' = T = 5, §3.3.4).

    Example:
    >>> import keras
    >>> tower = VGGTower("vggm", num_classes=5, width_multiplier=1 / 16, fc6_kernel=1)
    >>> x = keras.Input((None, 64, 64, 3))
    >>> ends = tower.build(x, stop="relu5")
    >>> ends["relu5"].shape, tower.build(ends["relu5"], start="relu5")["fc8"].shape
    ((None, None, 3, 3, 32), (None, None, 1, 1, 5))
    """

    def __init__(
        self,
        arch: str = "vggm",
        *,
        num_classes: int = 101,
        prefix: str = "",
        dropout: float = 0.0,
        width_multiplier: float = 1.0,
        fc6_kernel: int | None = None,
        temporal_pool: str = "2d",
        temporal_pool_size: int = 3,
        temporal_pool_stride: int = 2,
    ):
        check_choice("VGG architecture", arch, ARCHS)
        check_choice("temporal pooling", temporal_pool, TEMPORAL_POOLS)
        if width_multiplier <= 0:
            raise TfzooError(f"width_multiplier must be positive, got {width_multiplier}")
        if not 0.0 <= dropout < 1.0:
            raise TfzooError(f"dropout must be in [0, 1), got {dropout}")
        self.arch = arch
        self.spec = ARCH_SPECS[arch]
        self.num_classes = num_classes
        self.prefix = prefix
        self.dropout = dropout
        self.width_multiplier = width_multiplier
        self.fc6_kernel = fc6_kernel or self.spec.fc6_kernel
        self.temporal_pool = temporal_pool
        self.temporal_pool_size = temporal_pool_size
        self.temporal_pool_stride = temporal_pool_stride
        # endpoint -> the weighted layers built in its segment (to freeze a tower's lower part)
        self.layers_by_endpoint: dict[str, list[keras.layers.Layer]] = {}
        self._segment_name = None

    def width(self, channels: int) -> int:
        return max(1, int(round(channels * self.width_multiplier)))

    def channels(self, endpoint: str) -> int:
        """Channels of an endpoint's output (with the width multiplier applied)."""
        i = endpoint_index(endpoint)
        if endpoint == "input":
            raise TfzooError("the input's channels are the data's")
        if endpoint == "fc8":
            return self.num_classes
        if endpoint in ("fc6", "fc7"):
            return self.width(self.spec.fc[i - ENDPOINTS.index("fc6")])
        return self.width(self.spec.conv_blocks[min(i, 5) - 1][-1])

    def build(self, x: Tensor, start: str = "input", stop: str = "fc8") -> dict[str, Tensor]:
        """Adds the layers after `start` up to `stop` on x (the `start` endpoint's tensor)."""
        i0, i1 = endpoint_index(start), endpoint_index(stop)
        if i1 <= i0:
            raise TfzooError(f"stop endpoint {stop!r} must come after start endpoint {start!r}")
        out = {}
        for name in ENDPOINTS[i0 + 1 : i1 + 1]:
            self._segment_name = name
            x = self._segment(name)(x)
            out[name] = x
        return out

    def layers_up_to(self, endpoint: str) -> list[keras.layers.Layer]:
        """The weighted layers built so far for endpoints up to and including `endpoint`."""
        i = endpoint_index(endpoint)
        return [l for e in ENDPOINTS[1 : i + 1] for l in self.layers_by_endpoint.get(e, [])]

    def _track(self, layer):
        self.layers_by_endpoint.setdefault(self._segment_name, []).append(layer)
        return layer

    # -- segments ---------------------------------------------------------------------------

    def _name(self, n: str) -> str:
        return f"{self.prefix}{n}"

    def _conv(self, x, filters, k, name, stride=1, padding="same", relu=True):
        x = self._track(keras.layers.Conv3D(
            filters, (1, k, k), strides=(1, stride, stride), padding=padding, name=self._name(name)
        ))(x)
        if relu:
            relu_name = name.replace("conv", "relu").replace("fc", "relu")
            x = keras.layers.Activation("relu", name=self._name(relu_name))(x)
        return x

    def _pool(self, x, k, s, name, pad_br: bool = False):
        if pad_br:
            # MatConvNet's VGG-M pools pad one row/column at the bottom/right (109 -> 54,
            # 26 -> 13); inputs are rectified, so zeros act like the -inf of max pooling.
            x = keras.layers.ZeroPadding3D(((0, 0), (0, 1), (0, 1)), name=self._name(f"{name}_pad"))(x)
        return keras.layers.MaxPooling3D((1, k, k), (1, s, s), name=self._name(name))(x)

    def _segment(self, endpoint: str) -> Callable[[Tensor], Tensor]:
        if endpoint.startswith("relu"):
            block = int(endpoint[4:])
            return (self._vggm_block if self.arch == "vggm" else self._vgg16_block)(block)
        if endpoint == "pool5":
            return self._pool5
        if endpoint == "fc6":
            return lambda x: self._conv(x, self.width(self.spec.fc[0]), self.fc6_kernel, "fc6", padding="valid")
        if endpoint == "fc7":
            return lambda x: self._conv(self._drop(x, "drop6"), self.width(self.spec.fc[1]), 1, "fc7")
        return lambda x: self._track(keras.layers.Conv3D(
            self.num_classes, 1, name=self._name("fc8"), dtype="float32"
        ))(self._drop(x, "drop7"))

    def _drop(self, x, name):
        if not self.dropout:
            return x
        return keras.layers.Dropout(self.dropout, name=self._name(name))(x)

    def _vggm_block(self, block: int):
        c = self.width(self.spec.conv_blocks[block - 1][0])

        def apply(x):
            if block == 1:
                return self._conv(x, c, 7, "conv1", stride=2, padding="valid")
            if block in (2, 3):
                x = LocalResponseNormalization(name=self._name(f"norm{block - 1}"))(x)
                x = self._pool(x, 3, 2, f"pool{block - 1}", pad_br=True)
            if block == 2:
                x = keras.layers.ZeroPadding3D(((0, 0), (1, 1), (1, 1)), name=self._name("conv2_pad"))(x)
                return self._conv(x, c, 5, "conv2", stride=2, padding="valid")
            return self._conv(x, c, 3, f"conv{block}")

        return apply

    def _vgg16_block(self, block: int):
        widths = self.spec.conv_blocks[block - 1]

        def apply(x):
            if block > 1:
                x = self._pool(x, 2, 2, f"pool{block - 1}")
            for j, c in enumerate(widths, 1):
                x = self._conv(x, self.width(c), 3, f"conv{block}_{j}")
            return x

        return apply

    def _pool5(self, x):
        k, s = (3, 2) if self.arch == "vggm" else (2, 2)
        if self.temporal_pool == "2d":
            return self._pool(x, k, s, "pool5")
        return SpatioTemporalMaxPooling(
            (self.temporal_pool_size, k, k),
            (self.temporal_pool_stride, s, s),
            temporal_padding="same",
            spatial_padding="valid",
            name=self._name("pool5_3d"),
        )(x)

