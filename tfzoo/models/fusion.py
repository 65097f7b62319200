"""Convolutional two-stream network fusion (thesis ch. 3; Feichtenhofer, Pinz, Zisserman, CVPR 2016).

Two models, both taking {"rgb": (B, T, H, W, 3) RGB in [0, 255], "flow": (B, T, H, W, 2L)
flow in pixels}, where chunk t is one RGB frame and the 2L-channel flow stack centred on it:

- `TwoStreamFusion`: a spatial (appearance) and a temporal (motion) VGG tower fused at one or
  several layers (sum / max / concat / conv / bilinear, eq. 3.1-3.5), with 2-D or 3-D pooling
  at pool5 (§3.3.3). The proposed model (§3.3.4): 3-D conv fusion of relu5 (3x3x3, 1024 -> 512,
  init [0.25 I; 0.75 I] x Gaussian), 3-D max pooling, the temporal tower kept and 3-D pooled
  too, one loss per tower, tower scores averaged at test.
- `TwoStreamNet`: the late-fusion baseline (Simonyan & Zisserman 2014): two full towers whose
  softmax posteriors are averaged (Table 3.1, "Sum, Softmax").

Scores are logits (B, num_classes): fc8 averaged over chunks and locations (the fully
convolutional test). A model that keeps both towers returns the zoo's two-stream dict
{"rgb": appearance (or fused spatiotemporal) tower, "flow": motion tower, "fused": the test-time
combination}: tfzoo.train puts one loss on each tower and none on "fused" (thesis §3.3.4),
evaluation and export read "fused". A model with one tower left after fusion returns logits.
"""

from __future__ import annotations

import keras

from tfzoo.backbones.transplant import TransplantError, transplant_vgg16, vgg16_source
from tfzoo.backbones.vgg import ARCHS, TEMPORAL_POOLS, VGGTower, endpoint_index
from tfzoo.errors import TfzooError
from tfzoo.layers.fusion import (
    AlignSpatial,
    BilinearFusion,
    ConvFusion,
    FUSION_METHODS,
    SpatialFusion,
)
from tfzoo.layers.pooling import GlobalTemporalPooling
from tfzoo.layers.preprocessing import VideoNormalization
from tfzoo.models._registry import register_model
from tfzoo.models.base import VideoModel
from tfzoo.models.heads import classification_head, two_stream_outputs
from tfzoo.utils import check_choice

FUSION_POINTS = ("relu1", "relu2", "relu3", "relu4", "relu5", "fc6", "fc7", "fc8")
# The papers' flow JPEGs map [-20, 20] px to [0, 255] and the nets see (uint8 - 128): flow in
# pixels times 255/40. Scaling in-graph keeps that input range while the model takes pixels.
FLOW_SCALE = 255.0 / 40.0


def _inputs(flow_channels: int):
    rgb = keras.Input(shape=(None, None, None, 3), name="rgb")
    flow = keras.Input(shape=(None, None, None, flow_channels), name="flow")
    return rgb, flow


class _VGGTowers:
    """Models built from two VGG towers: their stream prefixes and `load_pretrained`."""

    STREAM_PREFIXES = {"rgb": "spatial_", "flow": "temporal_"}

    def load_pretrained(self, weights, **kwargs) -> list[str]:
        """Transplants ImageNet weights into the towers: keras.applications VGG-16 weights into
        VGG-16 towers, MatConvNet's `imagenet-vgg-m-2048.mat` into VGG-M-2048 towers.

        `weights`: "imagenet" (the Keras cache; VGG-16), a local .h5 or a keras VGG16 model, or
        a path ending in .mat (`tfzoo.backbones.matconvnet`), for both towers, or a dict
        {"rgb": ..., "flow": ...} (None skips a tower). The temporal tower's conv1 gets the RGB
        filters averaged over colour and replicated 2L times (cross-modality initialisation,
        thesis §3.3.5). fc8 and the fusion layers keep their initialisation.
        """
        # deferred: the tfzoo.backbones package imports tfzoo.models
        from tfzoo.backbones import matconvnet

        if kwargs:
            raise TransplantError(f"load_pretrained: {sorted(kwargs)} are for ResNet streams; the VGG "
                                  "towers take weights only")
        per_stream = weights if isinstance(weights, dict) else {"rgb": weights, "flow": weights}
        for key in per_stream:
            check_choice("weights key", key, ("rgb", "flow"))
        cfg = self._tfzoo_config
        done, read = [], {}
        for stream, w in per_stream.items():
            if w is None:
                continue
            tower = "spatial" if stream == "rgb" else "temporal"
            arch = cfg[f"{tower}_arch"]
            if matconvnet.is_matconvnet_file(w):
                if arch != "vggm":
                    raise TransplantError(
                        f"{w} is a MatConvNet .mat, which tfzoo reads for VGG-M-2048 towers; "
                        f"the {tower} tower is {arch!r} (VGG-16: keras.applications' weights)")
                net = read.setdefault(str(w), None) or matconvnet.read_matconvnet(w)
                read[str(w)] = net
                done += matconvnet.load_matconvnet_vggm(
                    net, self, prefix=f"{tower}_", rgb=stream == "rgb",
                    normalization=cfg.get("normalization", "caffe"))
                continue
            if arch != "vgg16":
                raise TransplantError(
                    f"the {tower} tower is {arch!r}: VGG-M-2048 weights are MatConvNet's "
                    f"imagenet-vgg-m-2048.mat (pass its path); keras.applications has ImageNet "
                    f"weights for VGG-16 only")
            source = vgg16_source(w)
            if cfg.get("width_multiplier", 1.0) != 1.0:
                raise TransplantError(f"ImageNet weights need width_multiplier=1.0, got "
                                      f"{cfg['width_multiplier']}")
            done += transplant_vgg16(source, self, prefix=f"{tower}_")
        return done


def _normalize(rgb, flow, normalization: str, flow_scale: float):
    x_a = VideoNormalization(normalization, name="rgb_normalization")(rgb)
    x_b = flow
    if flow_scale != 1.0:
        x_b = keras.layers.Rescaling(flow_scale, name="flow_scaling")(flow)
    return x_a, x_b


def _score_head(fc8, name: str):
    # Averaging the linear fc8 over locations and chunks = averaging the per-crop, per-chunk
    # predictions of the papers' fully convolutional test.
    return classification_head(fc8, None, prefix=f"{name}_")


# VGG tower endpoint -> the published name (relu5 is the output of conv5_3 / conv5).
_TOWER_MAPS = {"relu1": "conv1", "relu2": "conv2", "relu3": "conv3", "relu4": "conv4",
               "relu5": "conv5", "fc6": "fc6", "fc7": "fc7"}


def _publish(maps: dict, stream: str, segment: dict) -> None:
    for k, v in segment.items():
        if k in _TOWER_MAPS:
            maps[f"{stream}/{_TOWER_MAPS[k]}"] = v


def _ordered(maps: dict) -> dict:
    # rgb/ maps, then flow/, then fusion/, each shallow to deep (as the two-stream ResNets).
    group, depth = ("rgb", "flow", "fusion"), list(_TOWER_MAPS.values())

    def key(name):
        head, tail = name.split("/")
        return group.index(head), depth.index(tail)

    return {n: maps[n] for n in sorted(maps, key=key)}


@keras.saving.register_keras_serializable(package="tfzoo")
class TwoStreamFusion(_VGGTowers, VideoModel):
    """Two-stream ConvNet fusion (Feichtenhofer, Pinz, Zisserman, CVPR 2016; thesis ch. 3).

    The temporal (motion) tower is fused into the spatial (appearance) tower at each layer of
    `fusion_layers` (in network order). After the last fusion the temporal tower is truncated
    or, with `keep_temporal`, continues to its own fc8 (Fig. 3.1 right, Fig. 3.4); every
    earlier fusion keeps it, as later fusions need it. Fusing at fc8 ends both towers.

    Args:
      num_classes: 101 (UCF101) or 51 (HMDB51).
      spatial_arch, temporal_arch: "vggm" (VGG-M-2048) or "vgg16". Mixed towers are aligned by
        zero-padding the smaller map (VGG-M's 13x13 relu5 to VGG-16's 14x14, §3.3.5).
      flow_channels: 2L (20).
      fusion: "sum", "max", "concat", "conv" or "bilinear" (eq. 3.1-3.5).
      fusion_layers: endpoints to fuse at, from relu1..relu5, fc6, fc7, fc8.
      fusion_kernel: (T, H, W) of the conv fusion; (1, 1, 1) is 2-D conv fusion (eq. 3.4),
        (3, 3, 3) the proposed 3-D conv fusion (eq. 3.6).
      fusion_init: "identity" (the paper's) or "random".
      fusion_init_weights: (appearance, motion) identity scales: (0.25, 0.75) for the proposed
        model, (1, 1) initialises 2-D conv fusion to sum fusion.
      fusion_sigma: Gaussian sigma of the conv fusion init over its taps.
      keep_temporal: keep the fused-from tower after the last fusion ("ReLU5 +" in Table 3.4).
      temporal_pool: "3d" (3-D max pooling at pool5 of both towers) or "2d" (per chunk).
      temporal_pool_size, temporal_pool_stride: temporal window/stride of the 3-D pool5; window
        None (paper, §3.3.4) pools all T chunks into one; 3 with stride 2 and "same" padding
        was this model's earlier default (5 chunks -> 3), kept as an option.
      spatial_dropout, temporal_dropout: dropout on fc6/fc7 of each tower: 0.85 for the
        spatial net (§3.3.5), 0.9 for the temporal net (Simonyan & Zisserman's, whose training
        §3.3.5 follows, and the reference code's).
      freeze_below_fusion: make both towers' layers up to the first fusion point
        non-trainable: "We only propagate back to the injected fusion layer, since full
        backpropagation did not result in an improvement" (§3.3.5). Off by default.
      width_multiplier, fc6_kernel: see `tfzoo.backbones.vgg.VGGTower` (tiny variants).
      normalization: RGB normalisation (`VideoNormalization` mode; "caffe" = BGR minus the
        ImageNet mean, what keras.applications' VGG16 weights expect).
      flow_scale: multiplies the flow (pixels) in-graph; 255/40 reproduces the papers'
        uint8-minus-128 flow encoding.

    Example:
    >>> import numpy as np
    >>> model = TwoStreamFusion(num_classes=5, width_multiplier=1 / 32, fc6_kernel=1)
    >>> clip = {"rgb": np.zeros((1, 5, 64, 64, 3), "float32"),
    ...         "flow": np.zeros((1, 5, 64, 64, 20), "float32")}
    >>> model(clip)["fused"].shape
    TensorShape([1, 5])
    """

    def __init__(
        self,
        num_classes: int = 101,
        spatial_arch: str = "vgg16",
        temporal_arch: str = "vgg16",
        flow_channels: int = 20,
        fusion: str = "conv",
        fusion_layers=("relu5",),
        fusion_kernel=(3, 3, 3),
        fusion_init: str = "identity",
        fusion_init_weights=(0.25, 0.75),
        fusion_sigma: float = 1.0,
        keep_temporal: bool = True,
        temporal_pool: str = "3d",
        temporal_pool_size: int | None = None,
        temporal_pool_stride: int = 2,
        spatial_dropout: float = 0.85,
        temporal_dropout: float = 0.9,
        freeze_below_fusion: bool = False,
        width_multiplier: float = 1.0,
        fc6_kernel: int | None = None,
        normalization: str = "caffe",
        flow_scale: float = FLOW_SCALE,
        **kwargs,
    ):
        config = self.capture(locals())
        check_choice("spatial_arch", spatial_arch, ARCHS)
        check_choice("temporal_arch", temporal_arch, ARCHS)
        check_choice("fusion method", fusion, FUSION_METHODS)
        check_choice("temporal_pool", temporal_pool, TEMPORAL_POOLS)
        if isinstance(fusion_layers, str):
            fusion_layers = (fusion_layers,)
        for p in fusion_layers:
            check_choice("fusion layer", p, FUSION_POINTS)
        points = sorted(set(fusion_layers), key=endpoint_index)
        if not points:
            raise TfzooError("fusion_layers must name at least one layer")
        if fusion == "bilinear" and (len(points) > 1 or not points[0].startswith("relu")):
            raise TfzooError(
                f"bilinear fusion marginalises space, so it must be the only fusion and at a conv "
                f"layer (relu1..relu5); got fusion_layers={list(fusion_layers)}"
            )

        common = dict(
            num_classes=num_classes,
            width_multiplier=width_multiplier,
            fc6_kernel=fc6_kernel,
            temporal_pool=temporal_pool,
            temporal_pool_size=temporal_pool_size,
            temporal_pool_stride=temporal_pool_stride,
        )
        tower_a = VGGTower(spatial_arch, prefix="spatial_", dropout=spatial_dropout, **common)
        tower_b = VGGTower(temporal_arch, prefix="temporal_", dropout=temporal_dropout, **common)

        rgb, flow = _inputs(flow_channels)
        x_a, x_b = _normalize(rgb, flow, normalization, flow_scale)
        start = "input"
        maps = {}
        for p in points:
            seg_a, seg_b = tower_a.build(x_a, start, p), tower_b.build(x_b, start, p)
            _publish(maps, "rgb", seg_a)
            _publish(maps, "flow", seg_b)
            x_a, x_b = seg_a[p], seg_b[p]
            start = p
            x_b_aligned = x_b
            if spatial_arch != temporal_arch and p.startswith("relu"):
                x_b_aligned = AlignSpatial(name=f"fusion_{p}_align")([x_b, x_a])
            x_a = self._fuse(
                fusion, p, x_a, x_b_aligned, fusion_kernel, fusion_init, fusion_init_weights, fusion_sigma
            )
            if fusion != "bilinear" and p in _TOWER_MAPS:  # bilinear pooling removes space
                maps[f"fusion/{_TOWER_MAPS[p]}"] = (x_a, "rgb")

        last = points[-1]
        towers = {}
        if fusion == "bilinear":
            # Lin et al. 2015 / the paper: no fc layers after bilinear pooling, a linear
            # classifier (the paper's SVM) on the normalised descriptor of each chunk.
            scores = keras.layers.Dense(num_classes, name="bilinear_classifier", dtype="float32")(x_a)
            towers["rgb"] = GlobalTemporalPooling("avg", name="spatial_temporal_avg", dtype="float32")(scores)
        elif last == "fc8":
            towers["rgb"] = _score_head(x_a, "spatial")
        else:
            seg = tower_a.build(x_a, last, "fc8")
            _publish(maps, "rgb", seg)
            towers["rgb"] = _score_head(seg["fc8"], "spatial")
        if keep_temporal and last != "fc8":
            seg = tower_b.build(x_b, last, "fc8")
            _publish(maps, "flow", seg)
            towers["flow"] = _score_head(seg["fc8"], "temporal")

        if len(towers) == 1:
            outputs = towers["rgb"]
        else:
            # §3.4.4: "During testing, we average the FC8 predictions for both towers."
            outputs = two_stream_outputs(towers["rgb"], towers["flow"])
        if freeze_below_fusion:
            for layer in tower_a.layers_up_to(points[0]) + tower_b.layers_up_to(points[0]):
                layer.trainable = False
        kwargs.setdefault("name", "two_stream_fusion")
        super().__init__([rgb, flow], outputs, config=config, endpoints=_ordered(maps), **kwargs)
        self.fusion_points = tuple(points)

    @staticmethod
    def _fuse(method, point, x_a, x_b, kernel, init, init_weights, sigma):
        name = f"fusion_{point}"
        if method == "conv":
            return ConvFusion(
                kernel_size=kernel, init=init, init_weights=init_weights, sigma=sigma, name=name
            )([x_a, x_b])
        if method == "bilinear":
            return BilinearFusion(name=name)([x_a, x_b])
        return SpatialFusion(method, name=name)([x_a, x_b])


@keras.saving.register_keras_serializable(package="tfzoo")
class TwoStreamNet(_VGGTowers, VideoModel):
    """The two-stream baseline: late fusion of two full towers (Simonyan & Zisserman, NIPS 2014).

    Thesis §2.3 and Table 3.1 ("Sum, Softmax", 181.42M parameters with VGG-M-2048 towers): a
    spatial net on single RGB frames and a temporal net on 2L-channel flow stacks, each
    classifying every chunk; per-chunk scores are averaged over chunks and locations and the
    two towers' softmax posteriors are averaged ("softmax", returned as log of the average so
    the output stays a logit tensor) or their logits ("logits").

    Args: as `TwoStreamFusion` where they apply; `score_fusion` is "softmax" or "logits".
    Returns {"rgb": spatial logits, "flow": temporal logits, "fused": late fusion}; the towers
    train with separate losses, as in the paper.

    Example:
    >>> import numpy as np
    >>> model = TwoStreamNet(num_classes=5, width_multiplier=1 / 32, fc6_kernel=1)
    >>> clip = [np.zeros((2, 1, 64, 64, 3), "float32"), np.zeros((2, 1, 64, 64, 20), "float32")]
    >>> {k: tuple(v.shape) for k, v in model(clip).items()}
    {'rgb': (2, 5), 'flow': (2, 5), 'fused': (2, 5)}
    """

    def __init__(
        self,
        num_classes: int = 101,
        spatial_arch: str = "vggm",
        temporal_arch: str = "vggm",
        flow_channels: int = 20,
        score_fusion: str = "softmax",
        spatial_dropout: float = 0.85,
        temporal_dropout: float = 0.9,
        width_multiplier: float = 1.0,
        fc6_kernel: int | None = None,
        normalization: str = "caffe",
        flow_scale: float = FLOW_SCALE,
        **kwargs,
    ):
        config = self.capture(locals())
        check_choice("spatial_arch", spatial_arch, ARCHS)
        check_choice("temporal_arch", temporal_arch, ARCHS)
        common = dict(num_classes=num_classes, width_multiplier=width_multiplier, fc6_kernel=fc6_kernel)
        rgb, flow = _inputs(flow_channels)
        x_a, x_b = _normalize(rgb, flow, normalization, flow_scale)
        seg_a = VGGTower(spatial_arch, prefix="spatial_", dropout=spatial_dropout, **common).build(x_a)
        seg_b = VGGTower(temporal_arch, prefix="temporal_", dropout=temporal_dropout, **common).build(x_b)
        maps = {}
        _publish(maps, "rgb", seg_a)
        _publish(maps, "flow", seg_b)
        outputs = two_stream_outputs(_score_head(seg_a["fc8"], "spatial"),
                                     _score_head(seg_b["fc8"], "temporal"), mode=score_fusion)
        kwargs.setdefault("name", "two_stream")
        super().__init__([rgb, flow], outputs, config=config, endpoints=_ordered(maps), **kwargs)


def register() -> None:
    """Registers the chapter-3 presets (called from tfzoo.models)."""
    tiny = dict(width_multiplier=1 / 32, fc6_kernel=1)
    # VGG-M needs frames of at least 57 px to reach pool5 (with fc6_kernel=1).
    clip = {"frames": 3, "size": 64}
    proposed = dict(fusion="conv", fusion_layers=("relu5",), fusion_kernel=(3, 3, 3),
                    fusion_init_weights=(0.25, 0.75), keep_temporal=True, temporal_pool="3d")
    for name, s, t, what in (
        ("fusion_vgg16_conv_relu5", "vgg16", "vgg16", "S: VGG-16, T: VGG-16 (Table 3.5, 92.5% UCF101)"),
        ("fusion_vgg16m_conv_relu5", "vgg16", "vggm", "S: VGG-16, T: VGG-M (Table 3.4/3.5)"),
        ("fusion_vggm_conv_relu5", "vggm", "vggm", "S: VGG-M-2048, T: VGG-M-2048"),
    ):
        register_model(
            name, TwoStreamFusion, spatial_arch=s, temporal_arch=t, **proposed,
            description=f"Two-stream 3-D conv fusion at relu5 + 3-D pooling, both towers kept; {what}",
            test_overrides=tiny, test_input=clip, tags=("two_stream",),
        )

    # Table 3.1: spatial fusion at relu5 of two VGG-M-2048 towers, one tower after fusion.
    table31 = dict(spatial_arch="vggm", temporal_arch="vggm", fusion_layers=("relu5",),
                   keep_temporal=False, temporal_pool="2d", fusion_kernel=(1, 1, 1),
                   fusion_init_weights=(1.0, 1.0))
    for method in ("sum", "max", "concat", "bilinear"):
        register_model(
            f"fusion_vggm_{method}_relu5", TwoStreamFusion, fusion=method, **table31,
            description=f"{method} fusion at relu5, temporal tower truncated (Table 3.1)",
            test_overrides=tiny, test_input=clip, tags=("two_stream", "ablation"),
        )
    register_model(
        "fusion_vggm_conv2d_relu5", TwoStreamFusion, fusion="conv", **table31,
        description="1x1 conv fusion (identity init = sum) at relu5, temporal tower truncated (Table 3.1)",
        test_overrides=tiny, test_input=clip, tags=("two_stream", "ablation"),
    )

    for arch, label in (("vggm", "VGG-M-2048"), ("vgg16", "VGG-16")):
        register_model(
            f"twostream_{arch}", TwoStreamNet, spatial_arch=arch, temporal_arch=arch,
            description=f"Two-stream late fusion (softmax average) of two {label} towers (Table 3.1/3.3)",
            test_overrides=tiny, test_input=clip, tags=("two_stream",),
        )
