"""Exact transplant of keras.applications ResNet and VGG-16 weights into tfzoo's video models.

Layers are matched by name (tfzoo keeps keras.applications' names). A Conv2D kernel
(kh, kw, cin, cout) becomes a Conv3D kernel (kt, kh, kw, cin', cout):
- cin' != cin (a flow stack of 2L channels): conv1's RGB filters are averaged over the colour
  channels and replicated cin' times (reference code `cnn_ucf101_temporal.m`);
- kt > 1 (a 1x1 conv made temporal): "avg" spreads w / kt over the taps (thesis eq. 4.5),
  "center" puts w on the middle tap (an identity in time).
Layers the source lacks (temporal blocks, the classifier) keep their initialisation; the
source's ImageNet classifier (include_top=True) is skipped; a source of another depth is an
error.
VGG-16 (`transplant_vgg16`): keras' blockB_convJ, fc1, fc2 become tfzoo's convB_J, fc6, fc7 (the
fully connected layers as the convolutions of a fully convolutional tower; fc1's kernel is
keras' flattened 7x7x512 map, so it reshapes exactly); the 1000-way classifier is not copied.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import keras

from tfzoo.backbones.resnet import STAGE_BLOCKS
from tfzoo.errors import TfzooError
from tfzoo.utils import check_choice

KERAS_RESNETS = {50: "ResNet50", 101: "ResNet101", 152: "ResNet152"}
WEIGHT_FILES = {
    50: "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    101: "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5",
    152: "resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5",
}


# keras.applications.VGG16's cached weight files, with and without the classifier.
VGG16_FILES = ("vgg16_weights_tf_dim_ordering_tf_kernels.h5",
               "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")


class TransplantError(TfzooError):
    pass


def _keras_cache() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def depth_of(model: keras.Model) -> int:
    blocks = tuple(getattr(model, "blocks", ()))
    for depth, b in STAGE_BLOCKS.items():
        if b == blocks:
            return depth
    raise TransplantError(
        f"{model.name} has blocks {blocks}; ImageNet weights exist only for "
        f"ResNet-50/101/152 blocks {sorted(STAGE_BLOCKS.values())}"
    )


def keras_resnet(depth: int, weights: str | None) -> keras.Model:
    """keras.applications ResNet without top, with `weights` a local .h5 path or None."""
    if depth not in KERAS_RESNETS:
        raise TransplantError(f"no keras.applications ResNet of depth {depth}")
    fn = getattr(keras.applications, KERAS_RESNETS[depth])
    return fn(weights=weights, include_top=False)


def imagenet_weights_path(depth: int) -> str:
    """The Keras cache file of the ImageNet weights; never downloads."""
    path = _keras_cache() / WEIGHT_FILES[depth]
    if not path.exists():
        raise TransplantError(
            f"ImageNet weights for ResNet-{depth} are not in the Keras cache ({path}). tfzoo does "
            f"not download: fetch them once with keras.applications.{KERAS_RESNETS[depth]}"
            f"(weights='imagenet', include_top=False) on a machine with network access, or pass "
            f"weights='/path/to/{WEIGHT_FILES[depth]}'."
        )
    return str(path)


def resolve_source(model: keras.Model, weights: Any) -> keras.Model:
    if isinstance(weights, keras.Model):
        return weights
    if weights == "imagenet":
        depth = depth_of(model)
        return keras_resnet(depth, imagenet_weights_path(depth))
    if isinstance(weights, (str, os.PathLike)):
        path = Path(weights)
        if not path.exists():
            raise TransplantError(f"weights file {str(path)!r} does not exist")
        if path.suffix.lower() == ".mat":
            raise TransplantError(
                f"{path} is a MatConvNet .mat: tfzoo reads those for VGG-M-2048 towers "
                f"(twostream_vggm, fusion_vggm_*); {model.name} takes keras.applications .h5")
        depth = depth_of(model)
        try:
            return keras_resnet(depth, str(path))
        except ValueError:  # a file saved with the classifier on top
            full = getattr(keras.applications, KERAS_RESNETS[depth])(weights=None)
            full.load_weights(str(path))
            return full
    raise TransplantError(
        f"weights must be None, 'imagenet', a .h5 path or a keras.Model, got {weights!r}"
    )


def convert_kernel(kernel: np.ndarray, target_shape: tuple, temporal_init: str = "avg") -> np.ndarray:
    """A Conv2D kernel (kh, kw, cin, cout), or a Conv3D one with one tap (1, kh, kw, cin,
    cout), as a Conv3D kernel of `target_shape` (see the module docstring)."""
    if kernel.ndim == 5 and kernel.shape[0] == 1:
        kernel = kernel[0]
    kt, kh, kw, cin, cout = target_shape
    check_choice("temporal_init", temporal_init, ("avg", "center"), error=TransplantError)
    if kernel.ndim != 4 or kernel.shape[:2] != (kh, kw) or kernel.shape[3] != cout:
        raise TransplantError(f"cannot map kernel {kernel.shape} onto {target_shape}")
    if kernel.shape[2] != cin:
        kernel = np.repeat(kernel.mean(axis=2, keepdims=True), cin, axis=2)
    if kt == 1:
        return kernel[None]
    if temporal_init == "avg":
        return np.repeat(kernel[None] / kt, kt, axis=0)
    if temporal_init == "center":
        out = np.zeros(target_shape, kernel.dtype)
        out[kt // 2] = kernel
        return out


def convert_weight(value: np.ndarray, target_shape: tuple, temporal_init: str = "avg") -> np.ndarray:
    """`value` as a weight of `target_shape`: as is, a 2-D kernel made 3-D (`convert_kernel`),
    or a fully connected kernel as the equivalent convolution (keras flattens (h, w, c)
    row-major, as numpy reshapes)."""
    target_shape = tuple(target_shape)
    if value.shape == target_shape:
        return value
    if len(target_shape) == 5 and value.ndim in (4, 5):
        return convert_kernel(value, target_shape, temporal_init)
    if value.ndim == 2 and value.size == int(np.prod(target_shape)) and value.shape[-1] == target_shape[-1]:
        return value.reshape(target_shape)
    raise TransplantError(f"cannot map a weight of shape {value.shape} onto {target_shape}")


def copy_weights(
    source,
    target: keras.Model,
    name_map=lambda name: name,
    *,
    temporal_init: str = "avg",
    strict=True,
    skip_mismatched: bool = False,
) -> list[str]:
    """The one weight-copy mechanism: every weighted layer of `source` into the layer
    `name_map(name)` of `target` (None: not copied), each weight through `convert_weight`.

    Args:
      source: a keras.Model, or {layer name: [weights in Keras order]} (weights read from
        another framework's file, e.g. `tfzoo.backbones.matconvnet`).
      strict: True: every mapped source layer must exist in the target; a predicate on the
        source layer (keras sources): only those it accepts must; False: none must.
      skip_mismatched: leave a layer whose weights do not convert alone instead of failing.

    Returns the names of the target layers set.
    """
    if isinstance(source, keras.Model):
        source_name = source.name
        items = [(layer.name, layer.get_weights(), layer) for layer in source.layers]
    else:
        source_name = "the source weights"
        items = [(name, list(weights), None) for name, weights in source.items()]
    target_layers = {layer.name: layer for layer in target.layers}
    done, missing = [], []
    for layer_name, weights, layer in items:
        name = name_map(layer_name) if weights else None
        if name is None:
            continue
        dst = target_layers.get(name)
        if dst is None or not dst.weights:
            if strict is True or (callable(strict) and layer is not None and strict(layer)):
                missing.append(name)
            continue
        try:
            values = [convert_weight(w, tuple(t.shape), temporal_init)
                      for w, t in zip(weights, dst.weights)]
            if len(values) != len(dst.weights):
                raise TransplantError(f"{layer_name} has {len(values)} weights, {name} "
                                      f"{len(dst.weights)}")
        except TransplantError as e:
            if skip_mismatched:
                continue
            raise TransplantError(f"{layer_name} -> {name}: {e}") from None
        dst.set_weights(values)
        done.append(name)
    if missing:
        raise TransplantError(
            f"{len(missing)} weighted layers of {source_name} have no counterpart in "
            f"{target.name} (first: {missing[:5]})"
        )
    return done


def transplant(
    source: keras.Model,
    target: keras.Model,
    *,
    temporal_init: str = "avg",
    prefix: str = "",
    strict: bool = True,
    classifier: bool = False,
) -> list[str]:
    """keras.applications ResNet weights into `target`'s layers `prefix + name`.

    Returns the names of target layers that were set. With `strict`, every weighted source
    layer must exist in the target (a missing one means the structures diverged) and the
    source must have as many units per stage as the target (a shallower source would leave
    the extra units at their random init). The source's ImageNet classifier (keras'
    `include_top=True`) is skipped unless `classifier=True`, which needs a 1000-way target.
    """
    if strict:
        have, want = units_per_stage(source), units_per_stage(target, prefix)
        if any(have) and have != want:
            raise TransplantError(
                f"source {source.name!r} has ResNet units per stage {have}, but {target.name}"
                f"{f' ({prefix!r} stream)' if prefix else ''} has {want}: a source of the wrong "
                f"depth is an error; pass the keras.applications ResNet of the same depth")
    # keras' include_top=True: the 1000-way ImageNet classifier; the target has its own classes.
    top = {layer.name for layer in source.layers if isinstance(layer, keras.layers.Dense)}
    return copy_weights(source, target,
                        lambda n: None if n in top and not classifier else prefix + n,
                        temporal_init=temporal_init, strict=strict)


def units_per_stage(model: keras.Model, prefix: str = "") -> tuple[int, ...]:
    """Residual units in conv2..conv5 of a ResNet with keras.applications layer names."""
    found = [0, 0, 0, 0]
    for layer in model.layers:
        m = re.fullmatch(rf"{re.escape(prefix)}conv([2-5])_block(\d+)_out", layer.name)
        if m:
            i = int(m.group(1)) - 2
            found[i] = max(found[i], int(m.group(2)))
    return tuple(found)


def load_pretrained(model: keras.Model, weights: Any, **kwargs) -> list[str]:
    """Loads `weights` into `model`; see `tfzoo.create_model`. Models with several streams
    define `load_pretrained(weights)` themselves."""
    if hasattr(model, "load_pretrained"):
        return model.load_pretrained(weights, **kwargs)
    return transplant(resolve_source(model, weights), model, **kwargs)


def vgg16_source(weights: Any) -> keras.Model:
    """keras.applications.VGG16 holding `weights`: "imagenet" (the Keras cache, never
    downloaded), a local .h5 file (with or without the classifier), or a keras.Model."""
    if isinstance(weights, keras.Model):
        return weights
    if weights == "imagenet":
        found = [_keras_cache() / f for f in VGG16_FILES if (_keras_cache() / f).exists()]
        if not found:
            raise TransplantError(
                f"ImageNet weights for VGG-16 are not in the Keras cache ({_keras_cache()}: "
                f"{' or '.join(VGG16_FILES)}). tfzoo does not download: fetch them once with "
                "keras.applications.VGG16(weights='imagenet') on a machine with network access, "
                "or pass weights='/path/to/the.h5'."
            )
        weights = found[0]
    if not isinstance(weights, (str, os.PathLike)):
        raise TransplantError(
            f"weights must be None, 'imagenet', a .h5 path or a keras.Model, got {weights!r}")
    path = Path(weights)
    if not path.exists():
        raise TransplantError(f"weights file {str(path)!r} does not exist")
    for include_top in (True, False):
        try:
            return keras.applications.VGG16(weights=str(path), include_top=include_top)
        except ValueError:
            continue
    raise TransplantError(f"{path} holds no keras.applications VGG16 weights (tried with and "
                          "without the classifier)")


def vgg16_target_name(name: str) -> str | None:
    """tfzoo's name for a keras VGG16 layer, None for the ImageNet classifier."""
    m = re.fullmatch(r"block(\d)_conv(\d)", name)
    if m:
        return f"conv{m.group(1)}_{m.group(2)}"
    return {"fc1": "fc6", "fc2": "fc7"}.get(name)


def transplant_vgg16(source: keras.Model, target: keras.Model, *, prefix: str = "") -> list[str]:
    """Copies keras VGG16's convolutions (and fc1/fc2 when present) into the tower `prefix`.

    Every convolution must have a counterpart; fc6/fc7 are copied where the tower has them (a
    tower truncated after a fusion has none). A flow tower's conv1_1 gets the RGB filters
    averaged over colour and replicated over its 2L channels. Returns the layers set.
    """

    def name_map(name):
        mapped = vgg16_target_name(name)
        return None if mapped is None else prefix + mapped

    try:
        return copy_weights(source, target, name_map,
                            strict=lambda layer: isinstance(layer, keras.layers.Conv2D))
    except TransplantError as e:
        raise TransplantError(f"{e}; ImageNet VGG-16 needs a VGG-16 tower with prefix "
                              f"{prefix!r}, fc6_kernel=7 and width_multiplier=1") from None
