"""Two-stream ResNets with cross-stream connections: ST-ResNet (thesis ch. 4) and MulNet (ch. 5).

Both models are one functional Keras model holding an appearance stream (RGB, layer names
prefixed "rgb_") and a motion stream (2L flow channels, prefixed "flow_"), built stage by stage
from `tfzoo.backbones.resnet`'s `stem` and `bottleneck_unit`, so each stream keeps
keras.applications' layer names behind its prefix and ImageNet weights transplant exactly.

At every stage conv2..conv5 the output of the first unit of one stream is injected into the
second unit of the other (thesis Table 4.1 "skip-stream", Table 5.1 "⊙"). Inputs are
`{"rgb": (B, T, H, W, 3), "flow": (B, T, H, W, 2L)}`, T chunks, RGB in [0, 255], flow in pixels
(u1, v1, ..., uL, vL), flow chunk t centred on frame t.
Outputs are `{"rgb": logits, "flow": logits, "fused": (rgb + w * flow) / (1 + w)}`: one loss per
stream in training (the thesis found one joint classifier overfits to appearance, §4.4.1), the
pre-softmax average at test.

A note on eq. 4.2 / 5.5: the thesis writes the residual branch input as `x^a_l ∘ f(x^m_l)`
with `f(x^a_l)` on the skip path: `x^a_l` is the appearance unit's output *before* its ReLU (the
reference code feeds `res2a` etc., not `res2a_relu`), `f(x^m_l)` the rectified motion unit
output. That is `cross_input="pre_relu"` (default); "post_relu" feeds the rectified `f(x^a_l)`
(this project's earlier behaviour, kept as an option). The skip path keeps `f(x^a_l)`, so
with the connection off the stream is the unmodified ResNet (the transplant invariant).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable

import keras

from tfzoo.backbones.resnet import (
    BN_EPSILON,
    STAGE_BLOCKS,
    UnitSpec,
    batch_norm,
    bottleneck_unit,
    resnet_units,
    stem,
    video_input,
)
from tfzoo.backbones.transplant import resolve_source, transplant, units_per_stage
from tfzoo.errors import TfzooError
from tfzoo.layers.cross_stream import CrossStreamConnection
from tfzoo.layers.ghost_bn import GhostBatchNormalization
from tfzoo.layers.preprocessing import VideoNormalization
from tfzoo.layers.temporal import TEMPORAL_INITS, TemporalConv
from tfzoo.models._registry import register_model
from tfzoo.models.base import VideoModel
from tfzoo.models.heads import classification_head, two_stream_outputs
from tfzoo.utils import check_choice

STREAMS = ("rgb", "flow")
PREFIXES = {"rgb": "rgb_", "flow": "flow_"}
CONNECTIONS = ("residual", "direct")
FUSIONS = ("add", "multiply", "none")
DIRECTIONS = ("motion_to_appearance", "appearance_to_motion", "bidirectional")
# Table 5.1: ‡ after the 3x3 conv of the gated unit of every stage, § only in conv5's,
# † on the network's shortcut path (each stage's output).
TEMPORAL_FILTERS = ("none", "residual", "conv5", "shortcut")
TEMPORAL_FILTER_SYMBOLS = {"double_dagger": "residual", "section": "conv5", "dagger": "shortcut"}


def _check_blocks(name: str, blocks) -> tuple[int, ...]:
    blocks = tuple(int(b) for b in blocks)
    if len(blocks) != 4 or min(blocks) < 2:
        raise TfzooError(
            f"{name} must be 4 unit counts (conv2..conv5) of at least 2 each (the connections "
            f"go from the first into the second unit of a stage), got {blocks}"
        )
    return blocks


def _norm_factory(group_size: int | None) -> Callable[[str], keras.layers.Layer]:
    if group_size is None:
        return batch_norm
    return lambda name: GhostBatchNormalization(group_size, axis=-1, epsilon=BN_EPSILON, name=name)


def _receivers(fusion: str, direction: str) -> set[str]:
    if fusion == "none":
        return set()
    return {
        "motion_to_appearance": {"rgb"},
        "appearance_to_motion": {"flow"},
        "bidirectional": {"rgb", "flow"},
    }[direction]


def build_two_streams(
    *,
    blocks: dict[str, tuple[int, ...]],
    width: int,
    flow_channels: int,
    normalization: dict[str, str],
    connection: str,
    fusion: str,
    direction: str,
    unit_temporal_kernels: tuple[int, int, int],
    temporal_filters: str,
    temporal_init: str,
    bn_group_size: dict[str, int | None],
    cross_input: str = "pre_relu",
):
    """Inputs, per-stream conv5 features and the endpoint maps of a connected two-stream ResNet.

    The connected ("second") unit of every stage gets `unit_temporal_kernels` (ST-ResNet:
    (3, 1, 3), eq. 4.5) and, with `temporal_filters="residual"`, an identity temporal filter
    after its 3x3 conv (MulNet ‡, eq. 5.8).
    """
    inputs = {"rgb": video_input(3, "rgb"), "flow": video_input(flow_channels, "flow")}
    norms = {s: _norm_factory(bn_group_size[s]) for s in STREAMS}
    receivers = _receivers(fusion, direction)
    x, maps, fused = {}, {}, {}
    for s in STREAMS:
        p = PREFIXES[s]
        y = VideoNormalization(normalization[s], name=f"{p}normalization")(inputs[s])
        x[s] = stem(y, width, norms[s], p)
        maps[f"{s}/conv1"] = x[s]

    units = {s: resnet_units(blocks[s], width) for s in STREAMS}
    for stage in (2, 3, 4, 5):
        stage_units = {s: [u for u in units[s] if u.stage == stage] for s in STREAMS}
        first = {
            s: bottleneck_unit(x[s], stage_units[s][0], norm=norms[s], prefix=PREFIXES[s])
            for s in STREAMS
        }
        for s in STREAMS:
            other = "flow" if s == "rgb" else "rgb"
            x[s], cross = _connected_unit(
                first[s],
                first[other] if s in receivers else None,
                stage_units[s][1],
                prefix=PREFIXES[s],
                norm=norms[s],
                connection=connection,
                fusion=fusion,
                temporal_kernels=unit_temporal_kernels,
                temporal_filter=temporal_filters == "residual"
                or (temporal_filters == "conv5" and stage == 5),
                temporal_init=temporal_init,
                cross_input=cross_input,
            )
            if cross is not None:
                fused[f"fusion/conv{stage}" + ("" if s == "rgb" else "_flow")] = (cross, s)
            for spec in stage_units[s][2:]:
                x[s] = bottleneck_unit(x[s], spec, norm=norms[s], prefix=PREFIXES[s])
            if temporal_filters == "shortcut":
                x[s] = TemporalConv(3, init=temporal_init, name=f"{PREFIXES[s]}conv{stage}_temporal")(x[s])
            maps[f"{s}/conv{stage}"] = x[s]
    ordered = {f"{s}/conv{i}": maps[f"{s}/conv{i}"] for s in STREAMS for i in range(1, 6)}
    return inputs, x, {**ordered, **fused}


def _connected_unit(
    x, sender, spec: UnitSpec, *, prefix, norm, connection, fusion, temporal_kernels,
    temporal_filter, temporal_init, cross_input="pre_relu",
):
    cross, fused = None, []
    if sender is not None:
        cross = CrossStreamConnection(fusion, name=f"{prefix}{spec.name}_cross")

    def fuse(y):  # records the fused map: the endpoint fusion/convN
        fused.append(cross([y, sender]))
        return fused[-1]

    branch_input = None
    if cross is not None and connection == "direct":
        # Fig. 5.1a/b: the fused signal replaces the stream's signal on both paths.
        x = fuse(x)
    elif cross is not None:
        # eq. 4.2 / 5.5: the branch gets x^a_l (pre-ReLU) combined with f(x^m_l)
        branch_input = (lambda y: fuse(_pre_relu(y))) if cross_input == "pre_relu" else fuse
    after_spatial = None
    if temporal_filter:
        after_spatial = TemporalConv(3, init=temporal_init, name=f"{prefix}{spec.name}_temporal")
    y = bottleneck_unit(
        x,
        spec,
        norm=norm,
        prefix=prefix,
        temporal_kernels=tuple(temporal_kernels),
        branch_input=branch_input,
        after_spatial=after_spatial,
    )
    return y, (fused[0] if fused else None)


def _pre_relu(x):
    """The input of the ReLU that produced `x` (a unit's `_out` activation): eq. 4.2's x^a_l."""
    op = x._keras_history.operation
    if not (isinstance(op, keras.layers.Activation) and op.name.endswith("_out")):
        # internal: the builder passed a tensor that is not a unit's output (a bug, not input)
        raise ValueError(f"expected a residual unit's output ReLU, got {op.name!r}")
    return op._inbound_nodes[x._keras_history.node_index].input_tensors[0]


class TwoStreamResNet(VideoModel):
    """What ST-ResNet and MulNet share: two-stream outputs and the weight transplant."""

    STREAM_PREFIXES = PREFIXES

    def _finish(self, inputs, features, endpoints, heads: dict, flow_weight: float, config, kwargs):
        logits = {
            s: classification_head(features[s], _num_classes(config), prefix=PREFIXES[s], **heads[s])
            for s in STREAMS
        }
        chunks = {}
        if any(h.get("return_chunks") for h in heads.values()):
            chunks = {f"{s}_chunks": logits[s][1] for s in STREAMS}
            logits = {s: logits[s][0] for s in STREAMS}
        outputs = two_stream_outputs(logits["rgb"], logits["flow"], stream_weights=(1.0, flow_weight))
        outputs.update(chunks)
        VideoModel.__init__(self, inputs, outputs, config=config, endpoints=endpoints, **kwargs)

    def stream_blocks(self, stream: str) -> tuple[int, ...]:
        raise NotImplementedError

    def load_pretrained(
        self, weights: Any, *, temporal_init: str | None = None, strict: bool = True
    ) -> list[str]:
        """Transplants ImageNet ResNet weights into both streams.

        Args:
          weights: "imagenet" (Keras cache), a keras.applications `.h5` path or model, applied to
            both streams (each resolved at its own depth), or a dict {"rgb": ..., "flow": ...}.
          temporal_init: how 1x1 kernels fill 1x1x3 ones: "avg" (w/3 per tap, eq. 4.5) or
            "center"; default is the model's `temporal_init` when that is one of the two.

        The motion conv1 gets the RGB filters averaged over colour and replicated 2L times.
        Returns the names of the layers set.
        """
        init = temporal_init or (
            self._tfzoo_config.get("temporal_init")
            if self._tfzoo_config.get("temporal_init") in ("avg", "center")
            else "center"
        )
        per_stream = weights if isinstance(weights, dict) else {s: weights for s in STREAMS}
        for key in per_stream:
            check_choice("weights key", key, STREAMS)
        done = []
        for s, w in per_stream.items():
            if w is None:
                continue
            shim = SimpleNamespace(blocks=self.stream_blocks(s), name=f"{self.name} {s} stream")
            source = resolve_source(shim, w)
            _check_source_depth(source, self.stream_blocks(s), s)
            done += transplant(source, self, temporal_init=init, prefix=PREFIXES[s], strict=strict)
        return done


def _check_source_depth(source: keras.Model, blocks: tuple[int, ...], stream: str) -> None:
    # transplant() only checks that every source layer has a target; a shallower source would
    # silently leave the stream's extra units at random init.
    found = units_per_stage(source)
    if found != tuple(blocks):
        raise TfzooError(
            f"source {source.name!r} has units per stage {tuple(found)}, but the {stream} stream "
            f"has {tuple(blocks)}; pass a source of the same depth (weights={{'rgb': ..., "
            f"'flow': ...}} for streams of different depths)"
        )


def _num_classes(config: dict) -> int:
    n = config["num_classes"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise TfzooError(f"num_classes must be a positive integer, got {n!r}")
    return n


@keras.saving.register_keras_serializable(package="tfzoo")
class STResNet(TwoStreamResNet):
    """Spatiotemporal residual network (ST-ResNet / ST-ResNet*), thesis ch. 4 (NIPS 2016).

    Feichtenhofer, Pinz, Wildes, "Spatiotemporal Residual Networks for Video Action
    Recognition", NIPS 2016. Two ResNets (appearance on RGB, motion on 2L stacked flow fields);
    at conv2..conv5 the motion stream's first unit is added into the residual branch of the
    appearance stream's second unit (eq. 4.2), and both 1x1 convs of every stage's second unit
    are 1x1x3 temporal convs (16 in all), filled from the ImageNet 1x1 weights as w/3 per tap
    (eq. 4.5) by `load_pretrained`. Temporal receptive fields at conv2..conv5: 5, 9, 13, 17
    chunks (Table 4.1). ST-ResNet* (`star=True`) max-pools pool5 over time (window 5, stride 2)
    before the classifier; logits are averaged over the remaining chunks.

    Args:
      num_classes: 101 (UCF101) or 51 (HMDB51).
      blocks, width: ResNet depth per stage and base width (both streams).
      flow_channels: 2L (20).
      rgb_normalization, flow_normalization: `VideoNormalization` modes. Flow comes in pixels
        (tfzoo's data pipeline, "none"); "flow_uint8" takes the papers' raw uint8 codes and
        subtracts 128 (§5.4.1).
      fusion: "add" (paper), "multiply" (MulNet's gate) or "none" (plain two-stream).
      temporal_kernels: temporal extents of the second unit's (1x1, 3x3, 1x1) convs.
      temporal_init: "avg" (eq. 4.5) or "center", used by `load_pretrained`.
      star: ST-ResNet* temporal max pooling after pool5.
      chunk_pool: its (window, stride).
      rgb_bn_group_size, flow_bn_group_size: sub-batch BN group sizes (§4.3.4); None = full batch.
      flow_weight: motion weight in the "fused" output (e.g. 3 on HMDB51).
      cross_input: "pre_relu" (eq. 4.2: the appearance unit's output before its ReLU, paper)
        or "post_relu" (its rectified output).
      chunk_loss: also output the per-chunk logits "rgb_chunks" / "flow_chunks" (B, T', C), on
        which the task puts its losses: "a single loss for each of the 5 inputs" (§4.3.5,
        paper); False: one loss on the chunk-averaged logits.

    Example:
    >>> import numpy as np
    >>> model = STResNet(num_classes=5, blocks=(2, 2, 2, 2), width=4)
    >>> out = model({"rgb": np.zeros((1, 3, 32, 32, 3), "float32"),
    ...              "flow": np.zeros((1, 3, 32, 32, 20), "float32")})
    >>> sorted(out), tuple(out["fused"].shape), tuple(out["rgb_chunks"].shape)
    (['flow', 'flow_chunks', 'fused', 'rgb', 'rgb_chunks'], (1, 5), (1, 3, 5))
    """

    def __init__(
        self,
        num_classes: int = 101,
        blocks=STAGE_BLOCKS[50],
        width: int = 64,
        flow_channels: int = 20,
        rgb_normalization: str = "caffe",
        flow_normalization: str = "none",
        fusion: str = "add",
        temporal_kernels=(3, 1, 3),
        temporal_init: str = "avg",
        star: bool = False,
        chunk_pool=(5, 2),
        rgb_bn_group_size: int | None = None,
        flow_bn_group_size: int | None = None,
        flow_weight: float = 1.0,
        cross_input: str = "pre_relu",
        chunk_loss: bool = True,
        **kwargs,
    ):
        config = self.capture(locals())
        _num_classes(config)
        blocks = _check_blocks("blocks", blocks)
        check_choice("fusion", fusion, FUSIONS)
        check_choice("temporal_init", temporal_init, ("avg", "center"))
        if len(tuple(temporal_kernels)) != 3:
            raise TfzooError(f"temporal_kernels must be 3 temporal extents, got {temporal_kernels}")
        inputs, features, endpoints = build_two_streams(
            blocks={"rgb": blocks, "flow": blocks},
            width=width,
            flow_channels=flow_channels,
            normalization={"rgb": rgb_normalization, "flow": flow_normalization},
            connection="residual",
            fusion=fusion,
            direction="motion_to_appearance",
            unit_temporal_kernels=tuple(temporal_kernels),
            temporal_filters="none",
            temporal_init=temporal_init,
            bn_group_size={"rgb": rgb_bn_group_size, "flow": flow_bn_group_size},
            cross_input=check_choice("cross_input", cross_input, ("pre_relu", "post_relu")),
        )
        head = {"chunk_pool": tuple(chunk_pool) if star else None, "temporal_pool": "avg",
                "return_chunks": bool(chunk_loss)}
        kwargs.setdefault("name", "stresnet_star" if star else "stresnet")
        self._finish(inputs, features, endpoints, {s: head for s in STREAMS}, flow_weight,
                     config, kwargs)
        self.blocks = blocks

    def stream_blocks(self, stream: str) -> tuple[int, ...]:
        return self.blocks


@keras.saving.register_keras_serializable(package="tfzoo")
class MulNet(TwoStreamResNet):
    """Spatiotemporal multiplier network, thesis ch. 5 (CVPR 2017), and its ablations.

    Feichtenhofer, Pinz, Wildes, "Spatiotemporal Multiplier Networks for Video Action
    Recognition", CVPR 2017. The motion stream gates the appearance stream multiplicatively
    (eq. 5.5, `x^a * f(x^m)` into the residual branch of every stage's second unit), so each
    stream's gradient is scaled by the other's signal (eq. 5.6/5.7). Identity-mapping 1x1x3
    temporal filters (eq. 5.8/5.9) are injected at one of Table 5.1's placements, and conv5 is
    max-pooled globally over time (eq. 5.10). Every connection of Fig. 5.1 / Table 5.2 is
    selectable. The final model is a ResNet-50 appearance and a ResNet-152 motion stream.

    Args:
      num_classes: 101 (UCF101) or 51 (HMDB51).
      rgb_blocks, flow_blocks: units per stage of each stream ((3, 4, 6, 3) = ResNet-50,
        (3, 8, 36, 3) = ResNet-152).
      width, flow_channels, rgb_normalization, flow_normalization: as in `STResNet`.
      connection: "residual" (into the residual unit, Fig. 5.1c-e) or "direct" (into the
        stream itself, Fig. 5.1a/b).
      fusion: "multiply" (⊙, paper), "add" (⊕) or "none".
      direction: "motion_to_appearance" (←, paper), "appearance_to_motion" (→) or
        "bidirectional" (↔).
      temporal_filters: "residual" (‡, after the gated unit's 3x3 conv at every stage; paper's
        final model), "conv5" (§, only there in conv5), "shortcut" (†, on every stage's output)
        or "none"; the symbols "double_dagger", "section", "dagger" are accepted too.
      temporal_init: "center" ([0, 1, 0], final model) or "avg" ([1/3, 1/3, 1/3]).
      temporal_pool: global pooling over time, "max" (eq. 5.10) or "avg".
      pool_order: "time_first" (eq. 5.10: the temporal max of every conv5 location, then the
        spatial average; paper) or "space_first" (spatial average, then over time).
      rgb_dropout, flow_dropout: dropout before each classifier (motion 0.8 in §5.4.1).
      rgb_bn_group_size, flow_bn_group_size, flow_weight, cross_input: as in `STResNet`.

    Example:
    >>> import numpy as np
    >>> model = MulNet(num_classes=5, rgb_blocks=(2, 2, 2, 2), flow_blocks=(2, 2, 2, 2), width=4)
    >>> out = model({"rgb": np.zeros((1, 3, 32, 32, 3), "float32"),
    ...              "flow": np.zeros((1, 3, 32, 32, 20), "float32")})
    >>> tuple(out["rgb"].shape)
    (1, 5)
    """

    def __init__(
        self,
        num_classes: int = 101,
        rgb_blocks=STAGE_BLOCKS[50],
        flow_blocks=STAGE_BLOCKS[152],
        width: int = 64,
        flow_channels: int = 20,
        rgb_normalization: str = "caffe",
        flow_normalization: str = "none",
        connection: str = "residual",
        fusion: str = "multiply",
        direction: str = "motion_to_appearance",
        temporal_filters: str = "residual",
        temporal_init: str = "center",
        temporal_pool: str = "max",
        pool_order: str = "time_first",
        rgb_dropout: float = 0.0,
        flow_dropout: float = 0.8,
        rgb_bn_group_size: int | None = None,
        flow_bn_group_size: int | None = None,
        flow_weight: float = 1.0,
        cross_input: str = "pre_relu",
        **kwargs,
    ):
        config = self.capture(locals())
        _num_classes(config)
        rgb_blocks = _check_blocks("rgb_blocks", rgb_blocks)
        flow_blocks = _check_blocks("flow_blocks", flow_blocks)
        check_choice("connection", connection, CONNECTIONS)
        check_choice("fusion", fusion, FUSIONS)
        check_choice("direction", direction, DIRECTIONS)
        temporal_filters = TEMPORAL_FILTER_SYMBOLS.get(temporal_filters, temporal_filters or "none")
        check_choice("temporal_filters", temporal_filters,
               TEMPORAL_FILTERS + tuple(TEMPORAL_FILTER_SYMBOLS))
        check_choice("temporal_init", temporal_init, TEMPORAL_INITS)
        check_choice("temporal_pool", temporal_pool, ("max", "avg"))
        check_choice("pool_order", pool_order, ("time_first", "space_first"))
        inputs, features, endpoints = build_two_streams(
            blocks={"rgb": rgb_blocks, "flow": flow_blocks},
            width=width,
            flow_channels=flow_channels,
            normalization={"rgb": rgb_normalization, "flow": flow_normalization},
            connection=connection,
            fusion=fusion,
            direction=direction,
            unit_temporal_kernels=(1, 1, 1),
            temporal_filters=temporal_filters,
            temporal_init=temporal_init,
            bn_group_size={"rgb": rgb_bn_group_size, "flow": flow_bn_group_size},
            cross_input=check_choice("cross_input", cross_input, ("pre_relu", "post_relu")),
        )
        first = pool_order == "time_first"
        heads = {
            "rgb": {"temporal_pool": temporal_pool, "dropout": rgb_dropout, "time_first": first},
            "flow": {"temporal_pool": temporal_pool, "dropout": flow_dropout, "time_first": first},
        }
        kwargs.setdefault("name", "mulnet")
        self._finish(inputs, features, endpoints, heads, flow_weight, config, kwargs)
        self.rgb_blocks, self.flow_blocks = rgb_blocks, flow_blocks

    def stream_blocks(self, stream: str) -> tuple[int, ...]:
        return {"rgb": self.rgb_blocks, "flow": self.flow_blocks}[check_choice("stream", stream, STREAMS)]


_TINY_ST = dict(blocks=(2, 2, 2, 2), width=4)
_TINY_MUL = dict(rgb_blocks=(2, 2, 2, 2), flow_blocks=(2, 2, 2, 2), width=4)


def register() -> None:
    """Registers the presets (called once by `tfzoo.models`)."""
    register_model(
        "stresnet50", STResNet, blocks=STAGE_BLOCKS[50], rgb_bn_group_size=4, flow_bn_group_size=4,
        description="ST-ResNet, two ResNet-50 streams, additive motion residuals, thesis ch. 4",
        test_overrides=_TINY_ST, tags=("imagenet", "two_stream"),
    )
    register_model(
        "stresnet50_star", STResNet, blocks=STAGE_BLOCKS[50], star=True, rgb_bn_group_size=4,
        flow_bn_group_size=4,
        description="ST-ResNet*: ST-ResNet + temporal max pooling after pool5, thesis §4.3.5",
        test_overrides=_TINY_ST, tags=("imagenet", "two_stream"),
    )
    register_model(
        "mulnet50", MulNet, rgb_blocks=STAGE_BLOCKS[50], flow_blocks=STAGE_BLOCKS[50],
        description="MulNet with ResNet-50 streams (the ablations of thesis Tables 5.2, 5.3)",
        test_overrides=_TINY_MUL, tags=("imagenet", "two_stream"),
    )
    register_model(
        "mulnet50_152", MulNet, rgb_blocks=STAGE_BLOCKS[50], flow_blocks=STAGE_BLOCKS[152],
        description="MulNet: ResNet-50 appearance x ResNet-152 motion, thesis ch. 5 final model",
        test_overrides=_TINY_MUL, tags=("imagenet", "two_stream"),
    )
