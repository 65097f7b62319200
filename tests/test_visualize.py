"""The visualiser recovers planted units (CVPR 2018 eq. 1 on models whose unit is a known
spatiotemporal filter), is deterministic, measures strides/receptive fields, and renders."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tfzoo.flow.encoding import flow_to_uvm
from tfzoo.visualize import layer_geometry, max_activations, maximize
from tfzoo.visualize.render import flow_sequence, motion_frames, write_gallery

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
    # unit the RGB half saturates the 0..255 box (measured 0.69; alone it is > 0.8, below).
    corr = (_corr(out["flow"][0], wf), _corr(out["rgb"][0], COLOUR))
    assert corr[0] > 0.75 and corr[1] > 0.6, corr


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
    # Measured 0.78 with the paper's appearance weights: the blobs come out smoothed and
    # stretched vertically by R_B (alpha = 3 favours spreading) and TV; the motion input
    # reaches 0.83 above.
    assert _corr(rgb, COLOUR) > 0.7, _corr(rgb, COLOUR)
    red, green = rgb[:, 12:20, 7:13].mean((0, 1, 2)), rgb[:, 12:20, 19:25].mean((0, 1, 2))
    assert red[0] > red[1] + 50 and green[1] > green[0] + 50  # red blob left, green right
