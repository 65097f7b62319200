"""Named feature maps ("endpoints") that every tfzoo model publishes.

A detector, a visualiser or a feature probe attaches to a model through `model.endpoints`: an
ordered dict (shallow to deep) `name -> Endpoint`, in the spirit of timm's `feature_info` and
keras-hub's `pyramid_outputs`. Names are stable across families:

- single-stream ResNets (frame-wise, T-ResNet, `VideoResNet`): `conv1` (the stem, after
  pool1) .. `conv5` (the last unit of each stage);
- two-stream models: `rgb/conv1` .. `rgb/conv5`, `flow/conv1` .. `flow/conv5` (VGG towers add
  `rgb/fc6`, `rgb/fc7`, ...), and the maps where the streams meet, `fusion/<where>`
  (`fusion/conv5` is ConvFusion's relu5 output or the ST-ResNet/MulNet connection into the
  second unit of conv5); a connection into the motion stream is `fusion/<where>_flow`.

Stride and receptive field are computed in closed form from the layer graph (`spatial_geometry`)
and checked for every registered model against the gradient of a centre unit
(tests/models/test_models_common.py).

Example:
>>> import numpy as np
>>> import tfzoo
>>> from tfzoo.models import feature_extractor
>>> model = tfzoo.create_model("resnet50", blocks=(1, 1, 1, 1), width=8, num_classes=3)
>>> [(e.name, e.stride, e.channels) for e in model.endpoints.values()][-2:]
[('conv4', 16, 128), ('conv5', 32, 256)]
>>> maps = feature_extractor(model, ["conv3"])(np.zeros((1, 2, 64, 64, 3), "float32"))
>>> tuple(maps["conv3"].shape)
(1, 2, 8, 8, 64)
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import keras
from tfzoo.errors import TfzooError


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One published feature map of a model.

    Attributes:
      name: the stable name (`conv4`, `rgb/conv5`, `fusion/conv5`, ...).
      layer: the Keras layer whose output is the map: `model.get_layer(ep.layer).output`.
      stride: spatial stride of the map relative to the input frames.
      receptive_field: spatial extent (pixels, per side) of the input that one unit sees.
      channels: channels of the map.
      stream: "rgb", "flow", or None for a single-stream model.
    """

    name: str
    layer: str
    stride: int
    receptive_field: int
    channels: int
    stream: str | None = None


def _layer_of(tensor) -> keras.layers.Layer:
    return tensor._keras_history.operation


def _spatial_op(layer) -> tuple[int, int, int] | None:
    """(kernel, stride, dilation) along the height axis, or None if the layer ends space."""
    name = type(layer).__name__
    if name.startswith("Global") or name in ("BilinearFusion", "Flatten"):
        return None  # the map's spatial layout is gone after these
    kernel = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
    # Integer kernels belong to tfzoo's temporal layers (TemporalConv, TemporalPooling); keras
    # and tfzoo spatial layers store (t, h, w) or (h, w) tuples.
    if isinstance(kernel, (tuple, list)):
        strides = getattr(layer, "strides", None) or (1,) * len(kernel)
        dilation = getattr(layer, "dilation_rate", None) or (1,) * len(kernel)
        return int(kernel[-2]), int(strides[-2]), int(dilation[-2])
    return 1, 1, 1


def spatial_geometry(model: keras.Model) -> dict[str, tuple[int, int] | None]:
    """{layer name: (stride, receptive field)} for every layer of a functional model.

    The closed form (Araujo et al., "Computing receptive fields of CNNs", Distill 2019): a
    layer with kernel k, stride s and dilation d on an input of stride S and receptive field R
    gives stride S * s and receptive field R + (k - 1) * d * S; a merge takes the largest
    receptive field. None after a layer that removes the spatial layout (global pooling).
    """
    geometry: dict[str, tuple[int, int] | None] = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            geometry[layer.name] = (1, 1)
            continue
        parents = [geometry.get(_layer_of(t).name) for t in _input_tensors(layer)]
        op = _spatial_op(layer)
        if op is None or not parents or any(p is None for p in parents):
            geometry[layer.name] = None
            continue
        k, s, d = op
        stride = max(p[0] for p in parents)
        rf = max(p[1] for p in parents)
        geometry[layer.name] = (stride * s, rf + (k - 1) * d * stride)
    return geometry


def _input_tensors(layer) -> list:
    node = layer._inbound_nodes[0]
    return list(node.arguments.keras_tensors)


def make_endpoints(model: keras.Model, maps: dict) -> dict[str, Endpoint]:
    """Endpoints of `model` from {name: tensor or (tensor, stream)} (in shallow-to-deep order).

    The stream defaults to the name's prefix (`rgb/...`, `flow/...`), else None.
    """
    geometry = spatial_geometry(model)
    out = {}
    for name, value in maps.items():
        tensor, stream = value if isinstance(value, tuple) else (value, None)
        if stream is None and "/" in name and name.split("/")[0] in ("rgb", "flow"):
            stream = name.split("/")[0]
        layer = _layer_of(tensor).name
        geo = geometry.get(layer)
        if geo is None:
            raise TfzooError(f"endpoint {name!r} (layer {layer!r}) is not a spatial map")
        out[name] = Endpoint(name, layer, geo[0], geo[1], int(tensor.shape[-1]), stream)
    return out


def feature_extractor(model: keras.Model, names: Iterable[str] | None = None) -> keras.Model:
    """A keras.Model sharing `model`'s layers, from its inputs to {name: feature map}.

    Args:
      model: a tfzoo model (anything with `endpoints`).
      names: endpoint names (see `model.endpoints`); None = all of them.
    """
    endpoints = model.endpoints
    names = list(endpoints) if names is None else list(names)
    unknown = [n for n in names if n not in endpoints]
    if unknown or not names:
        raise TfzooError(f"unknown endpoints {unknown} of {model.name}; expected a non-empty "
                         f"list from {list(endpoints)}")
    outputs = {n: model.get_layer(endpoints[n].layer).output for n in names}
    inputs = {t.name: t for t in model.inputs} if len(model.inputs) > 1 else model.inputs[0]
    return keras.Model(inputs, outputs, name=f"{model.name}_features")
