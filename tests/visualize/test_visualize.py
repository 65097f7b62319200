"""The visualiser recovers planted units (CVPR 2018 eq. 1 on models whose unit is a known
spatiotemporal filter), is deterministic, measures strides/receptive fields, and renders."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tfzoo.flow.encoding import flow_to_uvm
from tfzoo.visualize import layer_geometry, max_activations, maximize
from tfzoo.visualize.render import flow_sequence, motion_frames, write_gallery
from _paths import REPO

T, S = 5, 32
_t, _y, _x = np.meshgrid(np.arange(T), np.arange(S), np.arange(S), indexing="ij")


def _zero_mean(p):
    return (p - p.mean(axis=(1, 2), keepdims=True)).astype("float32")


# A disc of radius 7 moving right at 3 px per frame, as a pattern of rightward flow (u > 0).
MOVING_DISC = _zero_mean(1 / (1 + np.exp(-(7.0 - np.hypot(_x - 9 - 3 * _t, _y - 16)))))
# A static colour-opponent pattern: a red blob left of a green one (each channel positive on
# its blob, negative on the other).
_g1 = np.exp(-((_x - 10) ** 2 + (_y - 16) ** 2) / (2 * 4.0 ** 2))
_g2 = np.exp(-((_x - 22) ** 2 + (_y - 16) ** 2) / (2 * 4.0 ** 2))
COLOUR = np.stack([_g1 - _g2, _g2 - _g1, 0 * _g1], -1)
COLOUR = (COLOUR - COLOUR.mean(axis=(1, 2), keepdims=True)).astype("float32")


def _unit(name, channels, pattern):
    """A (T, S, S) valid Conv3D: the whole clip is its receptive field, one output value."""
    inp = keras.Input((None, None, None, channels), name=name)
    conv = keras.layers.Conv3D(1, (T, S, S), use_bias=False, name=f"{name}_unit")
    out = conv(inp)
    conv.set_weights([pattern[..., None]])
    return inp, out


def _motion_model():
    w = np.zeros((T, S, S, 2), "float32")
    w[..., 0] = MOVING_DISC
    inp, out = _unit("flow", 2, w)
    return keras.Model(inp, out), w


def _a_hat(model, channels, seed=1):
    # "Validation data": random flows / frames at plausible scales.
    rng = np.random.default_rng(seed)
    data = [rng.normal(0, 5 if channels == 2 else 60, (2, T, S, S, channels)).astype("float32")
            for _ in range(3)]
    return max_activations(model, model.layers[-1].name, data)


def _corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_planted_motion_unit_is_recovered_and_chi_slows_it():
    model, w = _motion_model()
    a_hat = _a_hat(model, 2)
    energies = []
    for chi in (0.0, 1.0, 5.0, 10.0):
        flow = maximize(model, "flow_unit", [0], steps=200, regularizer="2d1d", chi=chi,
                        clip_shape=(T, S, S), a_hat=a_hat)["flow"][0]
        if chi == 0.0:
            assert _corr(flow, w) > 0.8
            # in pixels, rightward where the disc is, no vertical motion
            assert flow[..., 0][w[..., 0] > 0.3].mean() > 1.0
            assert np.abs(flow[..., 1]).max() < 0.1 * np.abs(flow[..., 0]).max()
        energies.append(float(np.sum(np.diff(flow, axis=0) ** 2)))
    assert all(a > b for a, b in zip(energies, energies[1:])), energies


@pytest.mark.slow
def test_planted_two_stream_unit_is_recovered_jointly():
    wf = np.zeros((T, S, S, 2), "float32")
    wf[..., 0] = MOVING_DISC
    rgb_in, rgb_out = _unit("rgb", 3, COLOUR)
    # flow in pixels is ~25x smaller than RGB in 0..255: weight it up so that both streams
    # contribute comparably to the fused unit (and to its a_hat)
    flow_in, flow_out = _unit("flow", 2, 25.0 * wf)
    fused = keras.layers.Add(name="fused")([rgb_out, flow_out])
    model = keras.Model([rgb_in, flow_in], fused)
    rng = np.random.default_rng(2)
    data = [{"rgb": rng.uniform(0, 255, (2, T, S, S, 3)).astype("float32"),
             "flow": rng.normal(0, 5, (2, T, S, S, 2)).astype("float32")} for _ in range(3)]
    a_hat = max_activations(model, "fused", data)
    out = maximize(model, "fused", [0], steps=200, chi=0.0, clip_shape=(T, S, S), a_hat=a_hat)
    assert set(out) == {"rgb", "flow"}
    assert out["rgb"].shape == (1, T, S, S, 3) and out["flow"].shape == (1, T, S, S, 2)
    # Jointly optimised, both patterns come out with the right structure; in this shared
    # unit the RGB half is driven into the 0..255 box (measured flow 0.84, RGB 0.73).
    corr = (_corr(out["flow"][0], wf), _corr(out["rgb"][0], COLOUR))
    assert corr[0] > 0.75 and corr[1] > 0.6, corr


def _regularised_optimum(w, a_hat, bound=160.0, alpha=3.0):
    """The exact maximiser of eq. 1 for a linear unit `w` (one frame, H x W x C) under the
    paper's appearance regularisers, solved independently (numpy + L-BFGS): the reference the
    visualiser should converge to. Minimises (same minimiser as eq. 1 scaled by a_hat)
    a_hat (lambda_B sum_p |z_p|^alpha + lambda_TV sum |grad z|^2) - <w, z>, lambda_B =
    1/(H W B^alpha), lambda_TV = 1/(H W V^2), V = B/6.5 (the R_B ball and the 0..255 box are
    checked to be inactive below). No jitter: H W is the clip's, where `maximize` weighs its
    1 px larger jitter canvas (both weights 6% smaller, the same ratio)."""
    from scipy.optimize import minimize

    h, w_ = w.shape[:2]
    lb = a_hat / (h * w_ * bound ** alpha)
    ltv = a_hat / (h * w_ * (bound / 6.5) ** 2)

    def f(flat):
        z = flat.reshape(w.shape)
        n = np.sqrt((z ** 2).sum(-1, keepdims=True))
        dy, dx = np.diff(z, axis=0), np.diff(z, axis=1)
        g_tv = np.zeros_like(z)
        g_tv[1:] += dy
        g_tv[:-1] -= dy
        g_tv[:, 1:] += dx
        g_tv[:, :-1] -= dx
        val = -(w * z).sum() + lb * (n ** alpha).sum() + ltv * ((dy ** 2).sum() + (dx ** 2).sum())
        return val, (-w + alpha * lb * n ** (alpha - 2) * z + 2 * ltv * g_tv).ravel()

    r = minimize(f, np.zeros(w.size), jac=True, method="L-BFGS-B", options={"maxiter": 2000})
    assert r.success, r.message
    return r.x.reshape(w.shape)


def test_planted_appearance_unit_is_recovered():
    inp, out = _unit("rgb", 3, COLOUR)
    model = keras.Model(inp, out)
    # "validation data": mid-contrast noise frames, with the pattern at low contrast (a
    # unit's maximum on real data comes from inputs that resemble what it detects)
    rng = np.random.default_rng(2)
    data = rng.uniform(64, 192, (2, T, S, S, 3)) + 60 * COLOUR / np.abs(COLOUR).max()
    a_hat = max_activations(model, "rgb_unit", [data.astype("float32")])
    rgb = maximize(model, "rgb_unit", [0], steps=200, regularizer="2d", clip_shape=(T, S, S),
                   a_hat=a_hat)["rgb"][0]
    # For a linear unit the maximiser of eq. 1 is not the filter: stationarity reads
    # w = a_hat (alpha lambda_B |z_p| z_p + 2 lambda_TV (-Laplacian) z), so R_B compresses the
    # amplitude like sqrt|w| and R_TV smooths the result like an inverse Laplacian of w. The
    # exact optimum (the same in every frame: the filter is static and "2d" TV does not couple
    # frames) correlates with the planted filter at only 0.77 (R_B alone 0.95, TV alone 0.66).
    assert np.ptp(COLOUR, axis=0).max() == 0
    ref = np.broadcast_to(_regularised_optimum(COLOUR[0], float(a_hat[0])), COLOUR.shape)
    assert np.abs(ref).max() < 127.5  # the box / R_B ball constraints are not active
    assert _corr(ref, COLOUR) < 0.8, _corr(ref, COLOUR)
    # Recovery is measured against that optimum, over the whole clip (= the receptive field):
    # measured correlation 0.996, relative error 0.11 (jitter 1 px, 200 steps); with the
    # planted filter 0.79, i.e. as close as the regularised objective allows.
    z = rgb - 127.5
    assert _corr(z, ref) > 0.98, _corr(z, ref)
    assert np.linalg.norm(z - ref) / np.linalg.norm(ref) < 0.2
    assert _corr(rgb, COLOUR) > _corr(ref, COLOUR) - 0.02, _corr(rgb, COLOUR)
    red, green = rgb[:, 12:20, 7:13].mean((0, 1, 2)), rgb[:, 12:20, 19:25].mean((0, 1, 2))
    assert red[0] > red[1] + 50 and green[1] > green[0] + 50  # red blob left, green right


def test_deterministic_for_a_seed_and_batched_units_are_independent():
    x = keras.Input((None, None, None, 3), name="rgb")
    h = keras.layers.Conv3D(4, (1, 3, 3), strides=(1, 2, 2), activation="relu", name="c1")(x)
    y = keras.layers.Conv3D(6, 3, padding="same", name="c2")(h)
    model = keras.Model(x, y)
    kw = dict(steps=12, clip_shape=(3, 24, 24))
    a = maximize(model, "c2", [1, 4], seed=3, **kw)["rgb"]
    b = maximize(model, "c2", [1, 4], seed=3, **kw)["rgb"]
    c = maximize(model, "c2", [1, 4], seed=4, **kw)["rgb"]
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1.0
    # examples do not interact: unit 1 alone equals unit 1 inside the batch [1, 4] (same
    # initial noise for the first example, same jitter offsets for the seed)
    alone = maximize(model, "c2", [1], seed=3, **kw)["rgb"]
    np.testing.assert_allclose(alone[0], a[0], atol=1e-2)
    # convergence stop: the loss changes by < 1% between checks long before 400 steps
    _, info = maximize(model, "c2", [1], seed=3, steps=400, tol=1e-2, check_every=8,
                       clip_shape=(3, 24, 24), return_info=True)
    assert info["steps"] < 400
    last = [loss for _, loss in info["losses"][-2:]]
    assert abs(last[0] - last[1]) <= 1e-2 * abs(last[0])


def test_geometry_probe_matches_the_analytic_stride_and_receptive_field():
    x = keras.Input((None, None, None, 3))
    h = keras.layers.Conv3D(4, (1, 3, 3), strides=(1, 2, 2), padding="same", name="a")(x)
    h = keras.layers.Conv3D(4, (3, 5, 5), padding="same", name="b")(h)
    model = keras.Model(x, h)
    g = layer_geometry(model, "b", frames=8)
    # stride 2; RF = 3 + (5 - 1) * 2 = 11; temporal 3
    assert (g.stride, g.receptive_field, g.temporal_receptive_field) == (2, (11, 11), 3)
    assert g.source == "probe" and g.channels == 4


def test_probe_agrees_with_the_endpoints_tfzoo_models_publish():
    import tfzoo

    model = tfzoo.create_model("resnet_small", num_classes=3)
    for name in ("conv2", "conv3"):
        ep = model.endpoints[name]
        g = layer_geometry(model, ep.layer, frames=2)  # by Keras layer name: measured
        assert g.source == "probe"
        assert (g.stride, g.receptive_field) == (ep.stride, (ep.receptive_field,) * 2)
        assert layer_geometry(model, name, frames=2).source == "endpoint"


def test_published_endpoints_are_accepted_by_name():
    class Endpoint:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    x = keras.Input((None, None, None, 3), name="rgb")
    y = keras.layers.Conv3D(5, (1, 3, 3), strides=(1, 2, 2), padding="same", name="conv_x")(x)
    model = keras.Model(x, y)
    model.endpoints = {"conv1": Endpoint(name="conv1", layer="conv_x", stride=2,
                                         receptive_field=3, channels=5, stream="rgb")}
    g = layer_geometry(model, "conv1")
    assert (g.layer, g.stride, g.receptive_field, g.source) == ("conv_x", 2, (3, 3), "endpoint")
    out = maximize(model, "conv1", [2], steps=3, clip_shape=(2, 16, 16))
    assert out["rgb"].shape == (1, 2, 16, 16, 3)


def test_max_activations_is_the_per_channel_maximum_and_is_cached(tmp_path):
    x = keras.Input((None, None, None, 2), name="flow")
    conv = keras.layers.Conv3D(3, 1, name="c")
    model = keras.Model(x, conv(x))
    data = [np.random.default_rng(i).normal(size=(2, 2, 4, 4, 2)).astype("float32")
            for i in range(3)]
    k, b = conv.get_weights()
    want = np.max([np.einsum("bthwc,cd->bthwd", d, k[0, 0, 0]) + b for d in data],
                  axis=(0, 1, 2, 3, 4))
    cache = tmp_path / "a_hat.json"
    got = max_activations(model, "c", data, cache=cache)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert json.loads(cache.read_text())["a_hat"] == pytest.approx(got.tolist())
    conv.set_weights([k * 0, b])  # a cached value is reused, not recomputed
    np.testing.assert_allclose(max_activations(model, "c", data, cache=cache), want, rtol=1e-5)


def test_bad_arguments_are_clear_errors():
    model, _ = _motion_model()
    with pytest.raises(ValueError, match="'nope' is neither an endpoint nor a layer"):
        maximize(model, "nope", [0], steps=1, clip_shape=(T, S, S))
    with pytest.raises(ValueError, match=r"units \[3\] out of range; the layer has 1"):
        maximize(model, "flow_unit", [3], steps=1, clip_shape=(T, S, S))
    with pytest.raises(ValueError, match="unknown regularizer '4d'"):
        maximize(model, "flow_unit", [0], regularizer="4d", clip_shape=(T, S, S))


def test_motion_rendering_orders_stacked_flow_and_normalises_over_the_sequence(tmp_path):
    rng = np.random.default_rng(0)
    flow = rng.normal(size=(2, 6, 7, 4)).astype("float32")  # 2 chunks of L = 2 fields
    seq = flow_sequence(flow)
    np.testing.assert_array_equal(seq[1], flow[0, ..., 2:4])  # chunk 0, field 2
    np.testing.assert_array_equal(seq[2], flow[1, ..., 0:2])
    np.testing.assert_array_equal(motion_frames(flow, "uvm"), flow_to_uvm(seq))
    u = motion_frames(flow, "u")[..., 0]
    assert u.min() == 0 and u.max() == 255  # min-max over the whole sequence, not per frame
    page = write_gallery(tmp_path, [{"unit": 3, "setting": "chi=1",
                                     "inputs": {"flow": flow}, "kinds": {"flow": "motion"},
                                     "activation": 1.5}],
                         {"layer": "x", "settings": {}}, formats=("png", "gif", "mp4"),
                         tensorboard=False)
    text = page.read_text()
    assert "u0003_chi_1_flow_uvm.gif" in text and "unit 3" in text
    for ext in ("png", "gif", "mp4"):
        assert (tmp_path / f"u0003_chi_1_flow_uvm.{ext}").stat().st_size > 0


@pytest.mark.e2e
def test_cli_writes_a_gallery(tmp_path):
    root = REPO
    out = tmp_path / "gallery"
    cmd = [sys.executable, "-m", "tfzoo.visualize", "--model=resnet_small",
           "--layer=pool1_pool", "--units=0:2", "--chi=0,5", "--steps=2",
           "--a_hat=none", "--clip_shape=2,32,32", f"--out={out}"]
    r = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300,
                       env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-2000:]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["units"] == [0, 1] and meta["strengths"] == [0.0, 5.0]
    assert [run["settings"]["chi"] for run in meta["runs"]] == [0.0, 5.0]
    assert meta["geometry"]["stride"] == 4  # conv1 stride 2, pool stride 2
    assert len(list(out.glob("u0001_chi_5_*.png"))) == 1
    assert "%" in r.stderr  # the progress bar
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


def test_list_layers_prints_measured_strides_and_receptive_fields(capsys):
    from tfzoo.visualize.__main__ import print_layers

    x = keras.Input((None, None, None, 3), name="rgb")
    h = keras.layers.Conv3D(4, (1, 3, 3), strides=(1, 2, 2), padding="same", name="c1")(x)
    h = keras.layers.Conv3D(4, (3, 3, 3), padding="same", name="c2")(h)
    y = keras.layers.Dense(2, name="logits")(keras.layers.GlobalAveragePooling3D()(h))
    print_layers(keras.Model(x, y), frames=4)
    lines = {ln.split()[0]: ln.split() for ln in capsys.readouterr().out.splitlines()[1:]}
    assert lines["c1"][2:5] == ["2", "3x3", "1"]  # stride, receptive field, frames
    assert lines["c2"][2:5] == ["2", "7x7", "3"]
    assert "logits" not in lines  # not a conv-like (5-D) layer


def test_fixed_size_model_probes_at_its_own_size_and_recovers_the_planted_unit(capsys):
    """Issue 24 item 1: a model with a fixed input size (the issue's example, and the planted
    colour unit) is probed at that size, says when the receptive field is clipped by it, and
    its planted unit is recovered as on a model of dynamic size."""
    from tfzoo.visualize.__main__ import print_layers

    inp = keras.Input((4, 12, 12, 3), name="video")
    y = keras.layers.Conv3D(2, (3, 9, 9), name="planted")(inp)
    small = keras.Model(inp, keras.layers.GlobalAveragePooling3D()(y))
    out = maximize(small, "planted", [0], steps=20, clip_shape=(4, 12, 12))
    assert out["video"].shape == (1, 4, 12, 12, 3)
    g = layer_geometry(small, "planted")
    assert (g.stride, g.receptive_field, g.temporal_receptive_field, g.clipped) == (
        1, (9, 9), 3, False)
    with pytest.raises(ValueError, match=r"clip_shape=\(4, 16, 16\).*takes clips of .*"
                                         r"\(4, 12, 12\) only"):
        maximize(small, "planted", [0], steps=2, clip_shape=(4, 16, 16))

    inp = keras.Input((T, S, S, 3), name="rgb")
    conv = keras.layers.Conv3D(1, (T, S, S), use_bias=False, name="rgb_unit")
    model = keras.Model(inp, conv(inp))
    conv.set_weights([COLOUR[..., None]])
    g = layer_geometry(model, "rgb_unit")
    # The whole fixed input is the receptive field: measured, and flagged as clipped by it.
    assert (g.receptive_field, g.temporal_receptive_field, g.clipped, g.temporal_clipped) == (
        (S, S), T, True, True)
    print_layers(model, frames=T)
    row = [ln.split() for ln in capsys.readouterr().out.splitlines() if ln.startswith("rgb_unit")]
    assert row[0][3:5] == [f">={S}x{S}", f">={T}"]
    rng = np.random.default_rng(2)
    data = rng.uniform(64, 192, (2, T, S, S, 3)) + 60 * COLOUR / np.abs(COLOUR).max()
    a_hat = max_activations(model, "rgb_unit", [data.astype("float32")])
    rgb = maximize(model, "rgb_unit", [0], steps=200, regularizer="2d", a_hat=a_hat)["rgb"][0]
    ref = np.broadcast_to(_regularised_optimum(COLOUR[0], float(a_hat[0])), COLOUR.shape)
    assert _corr(rgb - 127.5, ref) > 0.98, _corr(rgb - 127.5, ref)
    red, green = rgb[:, 12:20, 7:13].mean((0, 1, 2)), rgb[:, 12:20, 19:25].mean((0, 1, 2))
    assert red[0] > red[1] + 50 and green[1] > green[0] + 50


def _gallery(tmp_path):
    rng = np.random.default_rng(0)
    cells = [{"unit": u, "setting": f"chi={chi:g}",
              "inputs": {"rgb": rng.uniform(0, 255, (3, 12, 12, 3)).astype("float32")},
              "kinds": {"rgb": "appearance"}, "activation": 3.0 * (u + 1)}
             for u in (0, 2) for chi in (0, 1, 5, 10)]
    runs = [{"setting": f"chi={chi:g}", "settings": {"regularizer": "2d1d", "chi": float(chi),
                                                     "kappa": 1.0, "a_hat": [4.0, 6.0]}}
            for chi in (0, 1, 5, 10)]
    meta = {"model": "tresnet_small", "layer": "logits", "units": [0, 2], "a_hat": [4.0, 6.0],
            "unit_names": {0: "static", 2: "fast"}, "runs": runs, "settings": runs[0]["settings"]}
    return write_gallery(tmp_path, cells, meta, formats=("png", "gif"), tensorboard=False)


def test_gallery_page_is_readable(tmp_path):
    """Issue 24 item 13: settings as a table with each column's chi (not the first run's
    0.0 as one JSON line), activation / a_hat as the CLI prints it, class names on the rows,
    cells upscaled without smoothing."""
    import html.parser

    page = _gallery(tmp_path).read_text()

    class Cells(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.text, self.imgs = [], []

        def handle_data(self, data):
            self.text.append(data.strip())

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.imgs.append(dict(attrs))

    p = Cells()
    p.feed(page)
    text = [t for t in p.text if t]
    i = text.index("chi")
    assert text[i + 1] == "0.0, 1.0, 5.0, 10.0 (by column)"
    assert text[text.index("regularizer") + 1] == '"2d1d"'
    assert "activation / a_hat 0.75" in text and "activation / a_hat 1.5" in text  # 3/4, 9/6
    assert "static" in text and "fast" in text
    assert len(p.imgs) == 8 and all(int(img["width"]) >= 192 for img in p.imgs)
    assert "image-rendering:pixelated" in page and "<pre>" not in page


def test_gallery_screenshot_in_headless_chromium(tmp_path):
    """The page as a browser draws it (a documented check: look at gallery.png)."""
    import shutil

    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                    if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no headless Chromium (apt-get install chromium)")
    page = _gallery(tmp_path / "gallery")
    shot = tmp_path / "gallery.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                    f"--screenshot={shot}", "--window-size=1400,1000", page.as_uri()],
                   capture_output=True, timeout=120)
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB"), np.float32)
    assert img.shape[:2] == (1000, 1400)
    # Drawn: images of noise (high local variance) in the cells' area, text above them.
    assert img.std() > 20
    if os.environ.get("TFZOO_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["TFZOO_KEEP_SCREENSHOT"])
