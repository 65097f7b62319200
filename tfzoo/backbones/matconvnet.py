"""MatConvNet's `imagenet-vgg-m-2048.mat` (the authors' VGG-M-2048 ImageNet model) in tfzoo's
VGG-M towers (thesis ch. 3: Tables 3.1-3.4 start both streams from it).

The file is MatConvNet's SimpleNN format, read with scipy.io.loadmat: a cell array `layers` of
structs {name, type, weights = {filters (H, W, Cin, Cout), biases}, stride, pad} (older files:
`filters` and `biases` fields instead of `weights`), LRN layers (type "lrn", or "normalize" in
older files) with `param` = [N kappa alpha beta], and `meta.normalization` (older files:
`normalization` at the top level) with `averageImage`, the mean subtracted from RGB input in
[0, 255]. Nothing is downloaded: pass the file's path, e.g.

    create_model("fusion_vggm_conv_relu5", weights="/path/imagenet-vgg-m-2048.mat")
    create_model("twostream_vggm", weights={"rgb": "/path/imagenet-vgg-m-2048.mat"})

What is copied, exactly:
- conv1..conv5, fc6, fc7 into `<tower>_conv1` .. `<tower>_fc7` (fc6 is a 6x6 convolution in
  both, so no flattening order is involved); fc8 (1000 ImageNet classes) is not copied.
- The RGB tower normalises in-graph ("caffe": BGR minus keras' ImageNet mean) while MatConvNet
  subtracts `averageImage` from RGB: conv1's filters are reordered to BGR and the difference of
  the two means is folded into conv1's biases (exact, as conv1 has no padding). A mean *image*
  (H, W, 3) is reduced to its per-channel mean, since the towers run on frames of any size.
- The motion tower's conv1 averages the RGB filters over colour and replicates them over the 2L
  flow channels (cross-modality initialisation, thesis §3.3.5), as for keras weights.
- The LRN layers must match: MatConvNet's `vl_nnnormalize` computes x / (kappa + alpha *
  sum_window x^2)^beta with alpha per element (not divided by N as in Caffe), which is
  `tfzoo.backbones.vgg.LocalResponseNormalization`; the file's [N kappa alpha beta] is checked
  against the tower's layers, as are every conv's and pool's stride and padding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfzoo.backbones.transplant import TransplantError, copy_weights
from tfzoo.backbones.vgg import LocalResponseNormalization
from tfzoo.layers.preprocessing import CAFFE_BGR_MEAN

# VGG-M-2048 as tfzoo's tower builds it (tfzoo/backbones/vgg.py), in MatConvNet's terms:
# kernel size, stride, pad [top bottom left right].
VGGM_CONVS = {"conv1": (7, 2, (0, 0, 0, 0)), "conv2": (5, 2, (1, 1, 1, 1)),
              "conv3": (3, 1, (1, 1, 1, 1)), "conv4": (3, 1, (1, 1, 1, 1)),
              "conv5": (3, 1, (1, 1, 1, 1)), "fc6": (6, 1, (0, 0, 0, 0)),
              "fc7": (1, 1, (0, 0, 0, 0))}
VGGM_POOLS = {"pool1": (3, 2, (0, 1, 0, 1)), "pool2": (3, 2, (0, 1, 0, 1)),
              "pool5": (3, 2, (0, 0, 0, 0))}
VGGM_NORMS = ("norm1", "norm2")


@dataclass
class MatLayer:
    name: str
    type: str
    weights: list = field(default_factory=list)  # [filters (H, W, Cin, Cout), biases (Cout,)]
    stride: tuple = (1, 1)
    pad: tuple = (0, 0, 0, 0)
    pool: tuple = ()
    method: str = ""
    param: tuple = ()


@dataclass
class MatConvNet:
    """A MatConvNet SimpleNN network read from a .mat file."""

    path: str
    layers: dict  # name -> MatLayer, in network order
    average_rgb: np.ndarray  # (3,) per-channel mean subtracted from RGB in [0, 255]
    image_size: tuple = ()


def _unwrap(x):
    # loadmat (squeeze_me=False) wraps every struct and string in (1, 1) / (1, n) arrays.
    while isinstance(x, np.ndarray) and x.dtype == object and x.size == 1:
        x = x.reshape(-1)[0]
    return x


def _field(struct, name: str, where: str):
    if not hasattr(struct, name):
        have = sorted(getattr(struct, "_fieldnames", []) or [])
        raise TransplantError(f"{where} has no field {name!r} (fields: {have}); expected "
                              "MatConvNet's SimpleNN layout (e.g. imagenet-vgg-m-2048.mat)")
    return _unwrap(getattr(struct, name))


def _string(x) -> str:
    x = _unwrap(x)
    if isinstance(x, np.ndarray):
        return "".join(x.reshape(-1).tolist()) if x.dtype.kind == "U" else str(x.tolist())
    return str(x)


def _numbers(x, n: int | None = None) -> tuple:
    v = np.asarray(_unwrap(x), dtype=np.float64).reshape(-1)
    if n is not None and v.size == 1:
        v = np.repeat(v, n)  # MatConvNet allows a scalar stride / pad
    return tuple(float(a) for a in v)


def read_matconvnet(path) -> MatConvNet:
    """Reads a MatConvNet SimpleNN .mat (see the module docstring); a file in another layout
    is a TransplantError naming the missing field."""
    import scipy.io  # deferred: optional SciPy (the test extra)

    path = Path(path)
    if not path.exists():
        raise TransplantError(f"weights file {str(path)!r} does not exist")
    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=False, struct_as_record=False)
    except Exception as e:  # scipy raises several types for non-.mat or v7.3 (HDF5) files
        raise TransplantError(f"{path}: not a MATLAB .mat file scipy can read ({e}); "
                              "MatConvNet models are saved as v5/v7 .mat") from None
    where = str(path)
    if "layers" not in mat:
        top = sorted(k for k in mat if not k.startswith("__"))
        raise TransplantError(f"{where} has no field 'layers' (top-level fields: {top}); "
                              "expected MatConvNet's SimpleNN layout (e.g. imagenet-vgg-m-2048.mat)")
    if "meta" in mat:
        norm = _field(_unwrap(mat["meta"]), "normalization", f"{where}: meta")
        norm_where = f"{where}: meta.normalization"
    elif "normalization" in mat:  # MatConvNet before beta17
        norm, norm_where = _unwrap(mat["normalization"]), f"{where}: normalization"
    else:
        raise TransplantError(f"{where} has no field 'meta.normalization' (nor the older "
                              "top-level 'normalization'): the input mean is unknown")
    avg = np.asarray(_field(norm, "averageImage", norm_where), dtype=np.float64)
    if avg.size % 3 or avg.size == 0:
        raise TransplantError(f"{norm_where}.averageImage has shape {avg.shape}; expected 3 "
                              "channel means or an (H, W, 3) mean image")
    average_rgb = avg.reshape(-1, 3).mean(axis=0) if avg.ndim != 1 else avg
    image_size = _numbers(getattr(norm, "imageSize", ()))

    layers = {}
    cells = np.asarray(mat["layers"]).reshape(-1)
    for i, cell in enumerate(cells):
        s = _unwrap(cell)
        lw = f"{where}: layers{{{i + 1}}}"
        name = _string(_field(s, "name", lw))
        kind = _string(_field(s, "type", f"{lw} ({name})"))
        lw = f"{where}: layer {name!r}"
        layer = MatLayer(name=name, type=kind)
        if kind == "conv":
            if hasattr(s, "weights"):
                w = np.asarray(getattr(s, "weights")).reshape(-1)
                if w.size != 2:
                    raise TransplantError(f"{lw}.weights has {w.size} entries; expected "
                                          "{filters, biases}")
                filters, biases = (np.asarray(_unwrap(a)) for a in w)
            elif hasattr(s, "filters"):  # older MatConvNet
                filters, biases = np.asarray(getattr(s, "filters")), np.asarray(getattr(s, "biases"))
            else:
                _field(s, "weights", lw)
            filters = np.asarray(filters, np.float32)
            filters = filters.reshape(filters.shape + (1,) * (4 - filters.ndim))  # MATLAB drops trailing 1s
            layer.weights = [filters, np.asarray(biases, np.float32).reshape(-1)]
            layer.stride = _numbers(_field(s, "stride", lw), 2)
            layer.pad = _numbers(_field(s, "pad", lw), 4)
        elif kind == "pool":
            layer.pool = _numbers(_field(s, "pool", lw), 2)
            layer.stride = _numbers(_field(s, "stride", lw), 2)
            layer.pad = _numbers(_field(s, "pad", lw), 4)
            layer.method = _string(getattr(s, "method", "max"))
        elif kind in ("lrn", "normalize"):
            layer.param = _numbers(_field(s, "param", lw))
            if len(layer.param) != 4:
                raise TransplantError(f"{lw}.param is {layer.param}; expected [N kappa alpha beta]")
        layers[name] = layer
    return MatConvNet(str(path), layers, average_rgb, image_size)


def is_matconvnet_file(weights) -> bool:
    return isinstance(weights, (str, os.PathLike)) and str(weights).lower().endswith(".mat")


def _check_structure(net: MatConvNet, target, prefix: str) -> None:
    def layer(name):
        if name not in net.layers:
            raise TransplantError(f"{net.path} has no layer {name!r}; VGG-M-2048 has "
                                  f"{list(VGGM_CONVS) + list(VGGM_POOLS) + list(VGGM_NORMS)}")
        return net.layers[name]

    for name, (k, stride, pad) in VGGM_CONVS.items():
        m = layer(name)
        if m.type != "conv":
            raise TransplantError(f"{net.path}: layer {name!r} is a {m.type!r}; expected 'conv'")
        got = (m.weights[0].shape[:2], m.stride, m.pad)
        want = ((k, k), (stride, stride), pad)
        if got[0] != want[0] or got[1:] != tuple(tuple(float(v) for v in w) for w in want[1:]):
            raise TransplantError(f"{net.path}: layer {name!r} has kernel {got[0]}, stride "
                                  f"{got[1]}, pad {got[2]}; VGG-M-2048 (tfzoo's tower) has "
                                  f"{want[0]}, {want[1]}, {want[2]}")
    for name, (k, stride, pad) in VGGM_POOLS.items():
        m = layer(name)
        got = (m.method, m.pool, m.stride, m.pad)
        want = ("max", (float(k),) * 2, (float(stride),) * 2, tuple(float(p) for p in pad))
        if got != want:
            raise TransplantError(f"{net.path}: layer {name!r} is (method, pool, stride, pad) "
                                  f"{got}; VGG-M-2048 (tfzoo's tower) has {want}")
    for name in VGGM_NORMS:
        n, kappa, alpha, beta = layer(name).param
        lrn = next((l for l in target.layers if l.name == prefix + name), None)
        if not isinstance(lrn, LocalResponseNormalization):
            raise TransplantError(f"{target.name} has no LRN layer {prefix + name!r}")
        ours = (2 * lrn.radius + 1, lrn.bias, lrn.alpha, lrn.beta)
        if not np.allclose((n, kappa, alpha, beta), ours, rtol=1e-6, atol=0):
            raise TransplantError(
                f"{net.path}: layer {name!r} param [N kappa alpha beta] = {[n, kappa, alpha, beta]}"
                f" but {prefix + name} computes {list(ours)} (MatConvNet's alpha is per element)")


def matconvnet_weights(net: MatConvNet, *, normalization: str | None) -> dict:
    """{tfzoo layer name (no prefix): [kernel, bias]} for conv1..fc7. With `normalization`
    ("caffe" or "none": what the tower's input went through) conv1 takes that input in place
    of RGB minus `averageImage` (see the module docstring); None leaves conv1 as stored (the
    motion tower, whose conv1 is averaged over colour)."""
    out = {name: list(net.layers[name].weights) for name in VGGM_CONVS}
    if normalization is not None:
        kernel, bias = out["conv1"]
        if normalization == "caffe":
            ours_rgb = np.asarray(CAFFE_BGR_MEAN[::-1], np.float64)
            shift = net.average_rgb - ours_rgb
            kernel = kernel[:, :, ::-1]  # the tower sees BGR
        elif normalization == "none":
            shift = net.average_rgb
        else:
            raise TransplantError(f"MatConvNet weights need an RGB tower normalised with "
                                  f"'caffe' or 'none', got {normalization!r}")
        # conv1 has no padding, so a per-channel input offset is a constant per output channel
        fold = np.einsum("hwco,c->o", out["conv1"][0].astype(np.float64), shift)
        out["conv1"] = [np.ascontiguousarray(kernel), (bias - fold).astype(np.float32)]
    return out


def load_matconvnet_vggm(net_or_path, target, *, prefix: str, rgb: bool,
                         normalization: str = "caffe") -> list[str]:
    """Copies a MatConvNet VGG-M-2048 into the VGG-M tower `prefix` of `target` through
    `copy_weights`; `rgb`: the tower takes RGB (mean folded into conv1) rather than flow."""
    net = net_or_path if isinstance(net_or_path, MatConvNet) else read_matconvnet(net_or_path)
    _check_structure(net, target, prefix)
    weights = matconvnet_weights(net, normalization=normalization if rgb else None)
    present = {layer.name for layer in target.layers}
    # a tower truncated after a fusion has no fc6 / fc7; every convolution must exist
    weights = {k: v for k, v in weights.items() if k.startswith("conv") or prefix + k in present}
    try:
        return copy_weights(weights, target, lambda name: prefix + name)
    except TransplantError as e:
        raise TransplantError(f"{net.path}: {e}; the .mat must be VGG-M-2048 for a tower with "
                              "width_multiplier=1 and fc6_kernel=6 (or of the tower's reduced "
                              "widths)") from None
