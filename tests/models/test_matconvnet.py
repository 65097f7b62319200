"""MatConvNet's imagenet-vgg-m-2048.mat in the VGG-M towers (tfzoo.backbones.matconvnet).

The test writes a .mat in MatConvNet's SimpleNN layout with scipy.io.savemat (random weights, a
VGG-M of 1/16 the widths; layer shapes, strides and pads as the real file) and checks the
towers against a numpy implementation of MatConvNet's forward pass (vl_nnconv, vl_nnrelu,
vl_nnnormalize, vl_nnpool) that walks the file's layer list: mean subtraction, conv1's channel
order, LRN, padding and the 6x6 fc6."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from numpy.lib.stride_tricks import sliding_window_view

import tfzoo
from tfzoo.backbones.transplant import TransplantError
from tfzoo.models import feature_extractor
from tfzoo.models.fusion import FLOW_SCALE

WM = 1 / 16
MEAN = np.array([120.0, 110.0, 100.0])  # not keras' ImageNet mean: the fold is exercised


def _cell(items):
    out = np.empty((1, len(items)), dtype=object)
    for i, x in enumerate(items):
        out[0, i] = x
    return out


def _vggm_layers(rng, old=False):
    """(SimpleNN layer structs, the same as python dicts for the reference)."""
    w = lambda c: max(1, round(c * WM))
    spec = [("conv1", 7, 3, w(96), 2, [0, 0, 0, 0]), "relu1", ("norm1",), ("pool1", [0, 1, 0, 1]),
            ("conv2", 5, w(96), w(256), 2, [1, 1, 1, 1]), "relu2", ("norm2",), ("pool2", [0, 1, 0, 1]),
            ("conv3", 3, w(256), w(512), 1, [1, 1, 1, 1]), "relu3",
            ("conv4", 3, w(512), w(512), 1, [1, 1, 1, 1]), "relu4",
            ("conv5", 3, w(512), w(512), 1, [1, 1, 1, 1]), "relu5", ("pool5", [0, 0, 0, 0]),
            ("fc6", 6, w(512), w(4096), 1, [0, 0, 0, 0]), "relu6",
            ("fc7", 1, w(4096), w(2048), 1, [0, 0, 0, 0]), "relu7",
            ("fc8", 1, w(2048), 1000, 1, [0, 0, 0, 0])]
    layers = []
    for s in spec:
        if isinstance(s, str):
            layers.append({"name": s, "type": "relu"})
        elif len(s) == 1:
            layers.append({"name": s[0], "type": "normalize" if old else "lrn",
                           "param": np.array([[5, 2, 1e-4, 0.75]])})
        elif len(s) == 2:
            layers.append({"name": s[0], "type": "pool", "method": "max",
                           "pool": np.array([[3.0, 3.0]]), "stride": np.array([[2.0, 2.0]]),
                           "pad": np.array([s[1]], float)})
        else:
            name, k, cin, cout, stride, pad = s
            f = rng.normal(0, np.sqrt(2 / (k * k * cin)), (k, k, cin, cout)).astype(np.float32)
            b = rng.normal(0, 0.1, (1, cout)).astype(np.float32)
            layer = {"name": name, "type": "conv", "stride": np.array([[stride, stride]], float),
                     "pad": np.array([pad], float)}
            if old:
                layer.update(filters=f, biases=b)
            else:
                layer["weights"] = _cell([f, b])
            layers.append(layer)
    return layers


def write_vggm_mat(path, seed=0, old=False, average_image=MEAN.reshape(1, 1, 3)):
    layers = _vggm_layers(np.random.default_rng(seed), old=old)
    norm = {"averageImage": np.asarray(average_image, np.float32),
            "imageSize": np.array([[224.0, 224.0, 3.0]])}
    content = {"layers": _cell(layers)}
    if old:
        content["normalization"] = norm
    else:
        content["meta"] = {"normalization": norm, "classes": {"name": _cell(["n01440764"])}}
    scipy.io.savemat(str(path), content)
    return layers


# -- MatConvNet's forward pass, numpy -----------------------------------------------------------

def _conv(x, f, b, stride, pad):
    t, bt, l, r = (int(p) for p in np.ravel(pad))
    x = np.pad(x, ((t, bt), (l, r), (0, 0)))
    k = f.shape[0]
    win = sliding_window_view(x, (k, k), axis=(0, 1))[::stride, ::stride]  # (H', W', C, k, k)
    return np.einsum("ijcuv,uvco->ijo", win, f.astype(np.float64)) + np.ravel(b)


def _pool(x, pad):
    t, bt, l, r = (int(p) for p in np.ravel(pad))
    x = np.pad(x, ((t, bt), (l, r), (0, 0)), constant_values=-np.inf)
    return sliding_window_view(x, (3, 3), axis=(0, 1))[::2, ::2].max(axis=(-2, -1))


def _lrn(x, param):
    n, kappa, alpha, beta = np.ravel(param)
    d = x.shape[-1]
    out = np.empty_like(x)
    for k in range(d):  # vl_nnnormalize: G(k) = [k - floor((N-1)/2), k + ceil((N-1)/2)]
        lo, hi = max(0, k - int(np.floor((n - 1) / 2))), min(d - 1, k + int(np.ceil((n - 1) / 2)))
        out[..., k] = x[..., k] / (kappa + alpha * (x[..., lo:hi + 1] ** 2).sum(-1)) ** beta
    return out


def matconvnet_forward(layers, image, first_filters=None):
    """Activations after each layer of a SimpleNN list on image (H, W, C) (already mean
    subtracted); `first_filters` replaces conv1's filters (the motion tower's)."""
    x, acts = image.astype(np.float64), {}
    for layer in layers:
        kind = layer["type"]
        if kind == "conv":
            f, b = (layer["weights"][0] if "weights" in layer else
                    [layer["filters"], layer["biases"]])
            if layer["name"] == "conv1" and first_filters is not None:
                f = first_filters
            x = _conv(x, f, b, int(layer["stride"][0, 0]), layer["pad"])
        elif kind == "relu":
            x = np.maximum(x, 0)
        elif kind in ("lrn", "normalize"):
            x = _lrn(x, layer["param"])
        elif kind == "pool":
            x = _pool(x, layer["pad"])
        acts[layer["name"]] = x
    return acts


def _model(path):
    return tfzoo.create_model("twostream_vggm", num_classes=4, width_multiplier=WM,
                              weights=str(path))


def test_vggm_mat_matches_matconvnet_forward(tmp_path):
    path = tmp_path / "imagenet-vgg-m-2048.mat"
    layers = write_vggm_mat(path)
    model = _model(path)
    rng = np.random.default_rng(3)
    rgb = rng.uniform(0, 255, (224, 224, 3)).astype(np.float32)
    flow = rng.normal(0, 4, (224, 224, 20)).astype(np.float32)
    names = ["rgb/conv1", "rgb/conv2", "rgb/conv5", "rgb/fc6", "rgb/fc7", "flow/conv1", "flow/fc7"]
    got = feature_extractor(model, names)({"rgb": rgb[None, None], "flow": flow[None, None]})
    got = {k: np.asarray(v)[0, 0] for k, v in got.items()}

    ref = matconvnet_forward(layers, rgb - MEAN)  # MatConvNet: RGB minus averageImage
    for ours, theirs in (("conv1", "relu1"), ("conv2", "relu2"), ("conv5", "relu5"),
                         ("fc6", "relu6"), ("fc7", "relu7")):
        want = ref[theirs]
        np.testing.assert_allclose(got[f"rgb/{ours}"], want, rtol=1e-4,
                                   atol=1e-4 * np.abs(want).max(), err_msg=ours)
    assert got["rgb/fc6"].shape == (1, 1, 256)  # the 6x6 pool5 map, one fc6 position

    # the motion tower: conv1 = the RGB filters averaged over colour, replicated over 2L
    f1 = layers[0]["weights"][0, 0]
    flow_f = np.repeat(f1.mean(axis=2, keepdims=True), 20, axis=2)
    ref = matconvnet_forward(layers, flow * FLOW_SCALE, first_filters=flow_f)
    for ours, theirs in (("conv1", "relu1"), ("fc7", "relu7")):
        want = ref[theirs]
        np.testing.assert_allclose(got[f"flow/{ours}"], want, rtol=1e-4,
                                   atol=1e-4 * np.abs(want).max(), err_msg=ours)


def test_older_layout_and_a_mean_image_load_the_same(tmp_path):
    # MatConvNet before beta17: filters/biases fields, top-level `normalization`, "normalize"
    # LRN type, a 224x224 mean image (reduced to its per-channel mean)
    new, old = tmp_path / "new.mat", tmp_path / "old.mat"
    write_vggm_mat(new)
    image = MEAN + np.random.default_rng(1).normal(0, 5, (224, 224, 3))
    image -= image.mean(axis=(0, 1)) - MEAN
    write_vggm_mat(old, old=True, average_image=image)
    a, b = _model(new), _model(old)
    loaded = [(la, lb) for la, lb in zip(a.layers, b.layers)
              if la.get_weights() and not la.name.endswith("fc8")]  # fc8: random, not loaded
    assert len(loaded) == 14  # conv1..fc7 of both towers
    for la, lb in loaded:
        for wa, wb in zip(la.get_weights(), lb.get_weights()):
            np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-3, err_msg=la.name)


def _edit(path, fn):
    m = scipy.io.loadmat(str(path), squeeze_me=False, struct_as_record=False)
    m = {k: v for k, v in m.items() if not k.startswith("__")}
    fn(m)
    scipy.io.savemat(str(path), m)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.pop("layers"), r"has no field 'layers' \(top-level fields: \['meta'\]\)"),
    (lambda m: m.pop("meta"), r"has no field 'meta.normalization'"),
    (lambda m: delattr(m["meta"][0, 0].normalization[0, 0], "averageImage"),
     r"meta.normalization has no field 'averageImage'"),
    (lambda m: delattr(m["layers"][0, 0][0, 0], "weights"), r"layer 'conv1' has no field 'weights'"),
    # Caffe's alpha (5e-4, divided by N inside Caffe) is not MatConvNet's per-element alpha
    (lambda m: setattr(m["layers"][0, 2][0, 0], "param", np.array([[5, 2, 5e-4, 0.75]])),
     r"layer 'norm1' param \[N kappa alpha beta\] = \[5.0, 2.0, 0.0005, 0.75\]"),
    (lambda m: setattr(m["layers"][0, 3][0, 0], "pad", np.array([[0.0, 0, 0, 0]])),
     r"layer 'pool1' is \(method, pool, stride, pad\)"),
])
def test_a_mat_in_another_layout_names_what_is_wrong(tmp_path, edit, message):
    path = tmp_path / "vggm.mat"
    write_vggm_mat(path)
    _edit(path, edit)
    with pytest.raises(TransplantError, match=message):
        _model(path)


def test_vgg16_towers_refuse_the_vggm_mat(tmp_path):
    path = tmp_path / "vggm.mat"
    write_vggm_mat(path)
    with pytest.raises(TransplantError, match="the spatial tower is 'vgg16'"):
        tfzoo.create_model("twostream_vgg16", num_classes=4, width_multiplier=WM,
                           weights={"rgb": str(path)})


def test_a_resnet_refuses_a_mat(tmp_path):
    path = tmp_path / "vggm.mat"
    write_vggm_mat(path)
    with pytest.raises(TransplantError, match="is a MatConvNet .mat: tfzoo reads those for VGG-M"):
        tfzoo.create_model("resnet_small", num_classes=3, weights=str(path))
