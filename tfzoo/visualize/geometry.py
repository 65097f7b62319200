"""Where a unit looks: the spatial stride and receptive field of any layer of any Keras model.

A tfzoo backbone publishes them (`model.endpoints`); for any other model, or a layer that is
not an endpoint, they are measured: the stride from the output sizes at two input sizes, the
receptive field as the support of the gradient of the centre unit on random inputs (grown until
it no longer touches the border). A model with a fixed input size is probed at that size only:
the stride from the supports of two neighbouring units, the receptive field as the support
within the input, reported as clipped when it reaches the input's border. The temporal
receptive field (frames) is the same support along time. Results are cached per model and
layer.
"""

from __future__ import annotations

import dataclasses
import weakref

import numpy as np
import tensorflow as tf

from tfzoo.errors import TfzooError

_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
MAX_PROBE = 512  # px; a receptive field larger than this is reported as "at least" this


@dataclasses.dataclass(frozen=True)
class LayerGeometry:
    """A layer as the visualiser sees it.

    `name` is what the user asked for (an endpoint or a layer name), `layer` the Keras layer
    name, `stride` the spatial stride in input pixels (None for a global layer such as a
    classifier), `receptive_field` (height, width) in input pixels and `temporal_receptive_field`
    in input frames (None when global / unknown), `channels` the number of units,
    `stream` the input(s) it sees ("rgb", "flow", "rgb+flow", ...), `source` "endpoint" or
    "probe", `clipped` True when the receptive field reached the probe's size limit or, for a
    model with a fixed input size, that size (the unit sees the whole input and may want more);
    `temporal_clipped` the same for the frames.
    """

    name: str
    layer: str
    stride: int | None
    receptive_field: tuple[int, int] | None
    temporal_receptive_field: int | None
    channels: int
    stream: str
    source: str
    clipped: bool = False
    temporal_clipped: bool = False


def fixed_size(model) -> tuple[int | None, int | None, int | None]:
    """(T, H, W) of the model's first input; None where it is dynamic."""
    t, h, w = model.inputs[0].shape[1:4]
    return t, h, w


def input_specs(model) -> list[tuple[str, int]]:
    """[(input name, channels)] in `model.inputs` order."""
    specs = []
    for t in model.inputs:
        c = t.shape[-1]
        if len(t.shape) != 5 or c is None:
            raise TfzooError(
                f"input {t.name!r} of {model.name!r} has shape {tuple(t.shape)}; the visualiser "
                f"needs video inputs (B, T, H, W, C) with a known channel count")
        specs.append((t.name.split(":")[0], int(c)))
    return specs


def resolve(model, name: str):
    """(Keras layer, endpoint or None) for an endpoint name or a layer name."""
    endpoints = getattr(model, "endpoints", None) or {}
    ep = endpoints.get(name) if hasattr(endpoints, "get") else None
    layer_name = ep.layer if ep is not None else name
    try:
        return model.get_layer(layer_name), ep
    except ValueError:
        pass
    known = list(endpoints.keys()) if endpoints else []
    sample = known or [l.name for l in model.layers][-8:]
    raise TfzooError(f"{name!r} is neither an endpoint nor a layer of {model.name!r}; "
                     f"expected one of e.g. {sample} (`python -m tfzoo.visualize --list_layers`)")


def feature_model(model, layer):
    """A model from all of `model`'s inputs to `layer`'s output (one tensor)."""
    import keras  # deferred: loads Keras (TensorFlow)

    out = layer.output
    if isinstance(out, (list, tuple, dict)):
        raise TfzooError(f"layer {layer.name!r} has several outputs; choose a single-output layer")
    return keras.Model(model.inputs, out, name=f"{model.name}_to_{layer.name}")


def _streams_seen(feat, specs, shape, rng) -> list[str]:
    xs = [tf.constant(rng.uniform(-1, 1, (1, *shape, c)).astype("float32")) for _, c in specs]
    with tf.GradientTape() as tape:
        tape.watch(xs)
        y = feat(xs, training=False)
        total = tf.reduce_sum(y)
    grads = tape.gradient(total, xs, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return [n for (n, _), g in zip(specs, grads) if float(tf.reduce_max(tf.abs(g))) > 0]


def _out_hw(feat, specs, t, size):
    xs = [tf.zeros((1, t, size, size, c)) for _, c in specs]
    shape = feat(xs, training=False).shape
    return shape


def _support(feat, specs, shape, rng, offset: int = 0):
    """Extent of the inputs (of `shape` (T, H, W)) that change one output unit: the centre one,
    `offset` columns to its right. Returns ((first, last) frames, rows, cols) or None."""
    t, h, w = shape
    xs = [tf.constant(rng.uniform(0, 255, (2, t, h, w, c)).astype("float32"))
          for _, c in specs]
    with tf.GradientTape() as tape:
        tape.watch(xs)
        y = feat(xs, training=False)
        centre = [d // 2 for d in y.shape[1:-1]]
        centre[-1] = min(centre[-1] + offset, y.shape[-2] - 1)
        total = tf.reduce_sum(y[(slice(None), *centre)])
    grads = tape.gradient(total, xs, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    mask = sum(np.abs(g.numpy()).sum(axis=(0, -1)) for g in grads) > 0  # (T, H, W)
    extents = [np.nonzero(mask.any(axis=a))[0] for a in ((1, 2), (0, 2), (0, 1))]
    if len(extents[1]) == 0:
        return None
    return tuple((int(e[0]), int(e[-1])) for e in extents)


MAX_PROBE_FRAMES = 64


def _frames_seen(feat, specs, frames, hw, rng, dynamic: bool, sup=None):
    """(temporal receptive field, clipped): the support along time of the centre unit, probed
    with more frames while it reaches the clip's ends (a dynamic T), else at `frames`."""
    t = frames
    while True:
        if sup is None:
            try:
                sup = _support(feat, specs, (t, *hw), rng)
            except (ValueError, tf.errors.InvalidArgumentError):  # too small for the network
                return None, False
            if sup is None:
                return None, False
        if not _touches(sup[0], t) or not dynamic or t >= MAX_PROBE_FRAMES:
            return _extent(sup[0]), _touches(sup[0], t)
        t, sup = t * 2, None


def _extent(span) -> int:
    return span[1] - span[0] + 1


def _touches(span, size) -> bool:
    return span[0] == 0 or span[1] == size - 1


def layer_geometry(model, name: str, *, frames: int = 8) -> LayerGeometry:
    """The `LayerGeometry` of endpoint or layer `name` of `model` (cached per model and name).

    Example:
    >>> import keras
    >>> x = keras.Input((None, None, None, 3))
    >>> y = keras.layers.Conv3D(4, (1, 3, 3), strides=(1, 2, 2), name="c1")(x)
    >>> g = layer_geometry(keras.Model(x, y), "c1")
    >>> (g.stride, g.receptive_field, g.temporal_receptive_field)
    (2, (3, 3), 1)
    """
    per_model = _CACHE.setdefault(model, {})
    fixed_t, fixed_h, fixed_w = fixed_size(model)
    frames = fixed_t or frames
    if (name, frames) in per_model:
        return per_model[(name, frames)]
    layer, ep = resolve(model, name)
    feat = feature_model(model, layer)
    specs = input_specs(model)
    rng = np.random.default_rng(0)
    channels = int(feat.output.shape[-1])
    spatial = len(feat.output.shape) == 5
    fixed = fixed_h is not None and fixed_w is not None
    small = (frames, fixed_h or 32, fixed_w or 32)
    if ep is not None and getattr(ep, "stream", None):
        stream = ep.stream
    elif len(specs) > 1:
        stream = "+".join(_streams_seen(feat, specs, small, rng)) or "none"
    else:
        stream = specs[0][0]
    if ep is not None and getattr(ep, "stride", None) is not None:
        rf = ep.receptive_field
        rf = (int(rf), int(rf)) if np.isscalar(rf) else tuple(int(v) for v in rf)[-2:]
        # The frames it sees: measured (the closed form is spatial only).
        trf, tclip = (_frames_seen(feat, specs, frames, small[1:], rng, fixed_t is None)
                      if spatial else (None, False))
        geo = LayerGeometry(name, layer.name, int(np.max(ep.stride)), rf, trf,
                            int(getattr(ep, "channels", channels)),
                            getattr(ep, "stream", None) or stream, "endpoint",
                            clipped=fixed and (rf[0] > fixed_h or rf[1] > fixed_w),
                            temporal_clipped=tclip)
    elif not spatial:
        geo = LayerGeometry(name, layer.name, None, None, None, channels, stream, "probe")
    elif fixed:
        # One size only: the stride is how far the support moves between neighbouring units
        # (its unclipped edge), the receptive field the support inside the input.
        sup = _support(feat, specs, small, rng)
        stride = None
        if sup is not None and feat.output.shape[-2] and feat.output.shape[-2] > 1:
            nxt = _support(feat, specs, small, rng, offset=1)
            if nxt is not None:
                moves = [b - a for a, b in zip(sup[2], nxt[2]) if b - a > 0]
                stride = min(moves) if moves else None
        if stride is None:  # a single output column: the input per output column
            stride = max(1, round(fixed_w / max(int(feat.output.shape[-2] or 1), 1)))
        trf, tclip = (_frames_seen(feat, specs, frames, small[1:], rng, fixed_t is None, sup)
                      if sup is not None else (None, False))
        geo = LayerGeometry(
            name, layer.name, stride, None if sup is None else (_extent(sup[1]), _extent(sup[2])),
            trf, channels, stream, "probe",
            clipped=sup is not None and (_touches(sup[1], fixed_h) or _touches(sup[2], fixed_w)),
            temporal_clipped=tclip)
    else:
        a, b = 64, 128
        ha, hb = _out_hw(feat, specs, frames, a)[2], _out_hw(feat, specs, frames, b)[2]
        stride = max(1, int(round((b - a) / max(hb - ha, 1))))
        size, sup = 64, None
        while True:
            sup = _support(feat, specs, (frames, size, size), rng)
            clipped = sup is not None and (_touches(sup[1], size) or _touches(sup[2], size))
            if sup is None or not clipped or size >= MAX_PROBE:
                break
            size *= 2
        if sup is None:
            geo = LayerGeometry(name, layer.name, stride, None, None, channels, stream, "probe")
        else:
            trf, tclip = _frames_seen(feat, specs, frames, (size, size), rng, fixed_t is None,
                                      sup)
            geo = LayerGeometry(name, layer.name, stride, (_extent(sup[1]), _extent(sup[2])),
                                trf, channels, stream, "probe", clipped, tclip)
    per_model[(name, frames)] = geo
    return geo


def list_layers(model, *, frames: int = 8, probe: bool = True) -> list[LayerGeometry]:
    """The endpoints of `model` if it publishes them, else every layer with a 5-D output
    (conv-like) after the input normalisation, with stride and receptive field."""
    endpoints = getattr(model, "endpoints", None)
    if endpoints:
        names = list(endpoints.keys())
    else:
        inputs = {t.name.split(":")[0] for t in model.inputs}
        names = [l.name for l in model.layers
                 if l.name not in inputs and not isinstance(l.output, (list, tuple, dict))
                 and len(l.output.shape) == 5 and "normalization" not in l.name
                 and not l.name.endswith(("_pad", "_bn"))]
        # keras.applications-style names: the block outputs and pools are the feature maps.
        blocks = [n for n in names if n.endswith(("_out", "_pool", "conv1_relu"))]
        names = blocks or names
    if not probe:
        return names
    return [layer_geometry(model, n, frames=frames) for n in names]
