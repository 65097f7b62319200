"""Activation maximisation for video models (CVPR 2018 eq. 1; thesis eq. 6.1-6.7).

The optimiser works in a normalised space `z` per input and feeds the model raw values:
appearance (3 channels, or an input named "rgb") `raw = 127.5 + z` (RGB 0-255, z on the 0-255
scale centred at 0, kept in [-127.5, 127.5]); motion (any other input, e.g. "flow") `raw =
z * 40 / 255` pixels, i.e. `z` is the papers' uint8 flow code (+-20 px -> 0..255) centred at 0.
Both live on the scale the papers' defaults (B = 160, V = B / 6.5) were chosen for.
"""

from __future__ import annotations

import dataclasses
import json
import weakref
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfzoo.errors import TfzooError
from tfzoo.rundir import atomic_write_text
from tfzoo.utils import check_choice
from tfzoo.visualize import regularizers as R
from tfzoo.visualize.geometry import (feature_model, fixed_size, input_specs, layer_geometry,
                                      resolve)

PARAMETRIZATIONS = ("pixel", "fourier")
UNIT_LOCATIONS = ("sum", "center")
APPEARANCE_OFFSET = 127.5
MOTION_PX_PER_UNIT = 40.0 / 255.0  # the papers' +-20 px uint8 flow code
# An orthonormal opponent-colour basis (luminance, red-blue, green-magenta) with per-axis
# scales: the Fourier parametrisation draws decorrelated colour, luminance dominating.
_OPPONENT = (np.array([[1, 1, 1], [1, 0, -1], [1, -2, 1]], np.float32)
             / np.array([[np.sqrt(3)], [np.sqrt(2)], [np.sqrt(6)]], np.float32))
_OPPONENT_SCALE = np.array([1.0, 0.35, 0.2], np.float32)

_STEP_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def stream_kind(name: str, channels: int) -> str:
    """"appearance" for an RGB input (named rgb*/image*, or 3 channels not named flow*),
    else "motion"."""
    lname = name.lower()
    if "flow" in lname or "motion" in lname:
        return "motion"
    if "rgb" in lname or "image" in lname or channels == 3:
        return "appearance"
    return "motion"


@dataclasses.dataclass(frozen=True)
class _Spec:
    """Everything that changes the traced graph (so one trace serves a whole chi sweep)."""
    layer: str
    n: int
    clip: tuple
    canvas: tuple
    streams: tuple  # ((name, channels, kind, tv_kind), ...) in model.inputs order
    parametrization: str
    unit_location: str
    transforms: bool
    diversity: bool


def _fourier_weights(h, w):
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2) * max(h, w)
    return (1.0 / np.maximum(f, 1.0)).astype(np.float32)  # 1/f, flat below one cycle


def _to_z(param, spec: _Spec, kind: str):
    """Parameters -> normalised canvas (N, T, Hc, Wc, C)."""
    if spec.parametrization == "pixel":
        return param
    n, t, c, hc, wf, _ = param.shape
    wc = spec.canvas[2]
    coeffs = tf.complex(param[..., 0], param[..., 1]) * tf.cast(
        _fourier_weights(hc, wc), tf.complex64)
    z = tf.signal.irfft2d(coeffs, fft_length=[hc, wc]) * float(np.sqrt(hc * wc))
    z = tf.transpose(z, [0, 1, 3, 4, 2])  # (N, T, H, W, C)
    if kind == "appearance" and c == 3:
        z = tf.einsum("nthwc,cd->nthwd", z * _OPPONENT_SCALE, _OPPONENT)
        z = APPEARANCE_OFFSET * tf.tanh(z / APPEARANCE_OFFSET)  # stay inside 0..255
    return z


def _to_raw(z, kind: str):
    return APPEARANCE_OFFSET + z if kind == "appearance" else z * MOTION_PX_PER_UNIT


def _build_step(model, feat, spec: _Spec):
    """The whole optimisation step (forward, backward, Adam, projection) as one tf.function."""
    h, w = spec.clip[1], spec.clip[2]
    jit = spec.canvas[1] - h

    @tf.function(reduce_retracing=True)
    def step(params, ms, vs, t, seed, units, norm, hyper):
        # hyper: lr, lambda_b[s], lambda_tv[s], kappa, chi, bound, alpha, diversity (tensors)
        key = tf.stack([seed, t])
        off = tf.random.stateless_uniform([2], key, 0, jit + 1, dtype=tf.int32) if jit else \
            tf.zeros([2], tf.int32)
        scale = tf.random.stateless_uniform([], key + 7, 0.9, 1.1) if spec.transforms else None
        with tf.GradientTape() as tape:
            tape.watch(params)
            reg = tf.zeros([spec.n])
            inputs = []
            for i, (name, c, kind, tv_kind) in enumerate(spec.streams):
                z = _to_z(params[i], spec, kind)
                lb, ltv = hyper["lambda_b"][i], hyper["lambda_tv"][i]
                reg += lb * R.local_norm(z, hyper["alpha"])
                reg += ltv * R.total_variation(z, tv_kind, hyper["kappa"], hyper["chi"])
                if scale is not None:
                    # Transformation robustness: rescale the frames (and the flow vectors
                    # with them, a zoom scales displacements).
                    tt, hc, wc = spec.canvas
                    size = tf.cast(tf.round(scale * [hc, wc]), tf.int32)
                    frames = tf.reshape(z, [-1, hc, wc, c])
                    frames = tf.image.resize_with_crop_or_pad(
                        tf.image.resize(frames, size), hc, wc)
                    z = tf.reshape(frames, [spec.n, tt, hc, wc, c])
                    if kind == "motion":
                        z = z * scale
                z = z[:, :, off[0]:off[0] + h, off[1]:off[1] + w, :]
                inputs.append(_to_raw(z, kind))
            act = tf.cast(feat(inputs, training=False), tf.float32)  # mixed-precision models
            chan = tf.gather(act, units, axis=-1, batch_dims=1)  # (N, ...) this example's unit
            if len(act.shape) == 2:
                value = chan
            elif spec.unit_location == "sum":
                value = tf.reduce_sum(chan, axis=list(range(1, len(chan.shape))))
            else:
                centre = [d // 2 for d in chan.shape[1:]]
                value = chan[(slice(None), *centre)]
            objective = value / norm
            loss = tf.reduce_sum(reg - objective)
            if spec.diversity:
                f = tf.reshape(act, [spec.n, -1])
                f = f / (tf.norm(f, axis=1, keepdims=True) + 1e-6)
                same = tf.cast(tf.equal(units[:, None], units[None, :]), f.dtype)
                same -= tf.eye(spec.n)
                sim = tf.matmul(f, f, transpose_b=True) * same
                loss += hyper["diversity"] * tf.reduce_sum(
                    sim / tf.maximum(tf.reduce_sum(same, 1, keepdims=True), 1.0))
        grads = tape.gradient(loss, params,
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
        tf1 = tf.cast(t, tf.float32) + 1.0
        for i, (p, g) in enumerate(zip(params, grads)):
            ms[i].assign(0.9 * ms[i] + 0.1 * g)
            vs[i].assign(0.999 * vs[i] + 0.001 * tf.square(g))
            mh = ms[i] / (1 - 0.9 ** tf1)
            vh = vs[i] / (1 - 0.999 ** tf1)
            # Cosine decay to 0: Adam's steps are ~lr per pixel whatever the gradient, so a
            # constant rate leaves lr-sized speckle on the result ("adaptively decreasing
            # learning rate until the input converges", §3).
            lr = hyper["lr"] * 0.5 * (1.0 + tf.cos(np.pi * tf.minimum(
                tf.cast(t, tf.float32) / hyper["total_steps"], 1.0)))
            new = p - lr * mh / (tf.sqrt(vh) + 1e-8)
            if spec.parametrization == "pixel":
                # The feasible set of R_B (eq. 2) and, for RGB, the 0..255 range.
                new = R.project_local_norm(new, hyper["bound"])
                if spec.streams[i][2] == "appearance":
                    new = tf.clip_by_value(new, -APPEARANCE_OFFSET, APPEARANCE_OFFSET)
            p.assign(new)
        return loss, objective

    return step


def _centre_crop(z, spec: _Spec):
    jit = spec.canvas[1] - spec.clip[1]
    a = jit // 2
    return z[:, :, a:a + spec.clip[1], a:a + spec.clip[2], :]


def _parse_units(units, channels):
    units = [int(u) for u in (range(*units.indices(channels)) if isinstance(units, slice)
                              else np.atleast_1d(units))]
    bad = [u for u in units if not 0 <= u < channels]
    if not units or bad:
        raise TfzooError(f"units {bad or units!r} out of range; the layer has {channels} "
                         f"channels (0..{channels - 1})")
    return units


def _default_clip(model):
    shapes = [tuple(t.shape[1:4]) for t in model.inputs]
    t, h, w = shapes[0]
    return (t or 5, h or 112, w or 112)


def maximize(model, layer, units, *, steps: int = 256, regularizer: str = "2d1d",
             kappa: float = 1.0, chi: float = 1.0, seed: int = 0, clip_shape=None,
             learning_rate: float | None = None, appearance_regularizer: str | None = None,
             unit_location: str = "sum", a_hat=None, bound: float = R.DEFAULT_B,
             alpha: float = R.DEFAULT_ALPHA, weights: dict | None = None,
             objective_scale: float | None = None, jitter: int | None = None,
             parametrization: str = "pixel", transforms: bool = False,
             diversity: float = 0.0, streams: dict | None = None, init_std: float = 2.0,
             tol: float | None = None, check_every: int = 16, progress=None,
             return_info: bool = False):
    """Inputs that maximally excite `units` of `layer` (CVPR 2018 eq. 1; thesis eq. 6.1).

    Maximises, for each unit c (a channel of the layer; summed over all locations, or at the
    centre location with `unit_location="center"`; a logit of a classifier layer):
    `objective_scale * a_c(x) / (rho^2 * a_hat_c) - sum over inputs (lambda_B R_B +
    lambda_TV R_TV)`, with Adam on the inputs, a random spatial jitter of up to the layer's
    stride per step (the clip is cropped from a larger canvas: no temporal roll, no wrap), all
    units in one batch, deterministic for a `seed`.

    Args:
      model: any `keras.Model` with video inputs `(B, T, H, W, C)` and named layers; a
        two-stream model (inputs "rgb" and "flow") is optimised jointly.
      layer: an endpoint name (if the model publishes `model.endpoints`) or a layer name.
      units: channel indices (int, list or slice); a unit may repeat (see `diversity`).
      steps: optimiser steps (fewer if `tol` is set and the loss converges).
      regularizer: R_TV of the motion input (and of the only input of a single-stream
        model): "2d" (eq. 6.3), "3d" (eq. 6.4, `kappa`), "2d1d" (eq. 6.5, `chi`).
      appearance_regularizer: R_TV of a two-stream model's appearance input; default "2d"
        (thesis eq. 6.7).
      clip_shape: (T, H, W) of the optimised clip; default the model's input shape or
        (5, 112, 112).
      objective_scale: multiplies the objective; default rho^2 (see docs/visualize.md).
      a_hat: per-channel maximum activations (see `max_activations`), or None for no
        normalisation (a_hat = 1).
      weights: override the papers' {"lambda_b", "lambda_tv"} for all inputs, or per input
        name: {"flow": {"lambda_tv": ...}}. Defaults: lambda_B = 1/(H W B^alpha), lambda_TV =
        1/(H W V^2), V = B/6.5, motion lambda_TV x10.
      jitter: max spatial shift in pixels; default the layer's stride.
      parametrization: "pixel" (the paper) or "fourier" (decorrelated colour, 1/f spectrum,
        per frame; Lucid-style, beyond the paper).
      transforms: random rescaling in [0.9, 1.1] per step on top of the jitter.
      diversity: weight of a penalty on the cosine similarity of the layer activations of
        examples that optimise the same unit.
      streams: {input name: "appearance" | "motion"} to override the guess by name/channels.
      progress: called as `progress(steps_done, loss)` after every `check_every` steps.
      return_info: also return a dict with the final objective per unit, the geometry and
        the settings (for the gallery's metadata).

    Returns:
      {input name: np.ndarray (len(units), T, H, W, C)} in the model's raw input space (RGB
      0-255, flow in pixels) [, info].

    Example:
    >>> import keras
    >>> x = keras.Input((None, None, None, 3), name="rgb")
    >>> y = keras.layers.Conv3D(4, 3, padding="same", name="conv")(x)
    >>> out = maximize(keras.Model(x, y), "conv", [0, 3], steps=8, clip_shape=(3, 16, 16))
    >>> out["rgb"].shape
    (2, 3, 16, 16, 3)
    """
    check_choice("regularizer", regularizer, R.TV_KINDS)
    app_reg = check_choice("appearance_regularizer", appearance_regularizer or "2d", R.TV_KINDS)
    check_choice("unit_location", unit_location, UNIT_LOCATIONS)
    check_choice("parametrization", parametrization, PARAMETRIZATIONS)
    if steps < 1 or check_every < 1:
        raise TfzooError(f"steps and check_every must be >= 1, got {steps}, {check_every}")
    for what, v in (("kappa", kappa), ("chi", chi), ("bound", bound), ("alpha", alpha)):
        if not v >= 0:
            raise TfzooError(f"{what} must be >= 0, got {v!r}")
    clip = tuple(int(v) for v in (clip_shape or _default_clip(model)))
    if len(clip) != 3 or min(clip) < 1:
        raise TfzooError(f"clip_shape must be (T, H, W) of positive ints, got {clip_shape!r}")
    wanted = fixed_size(model)
    if any(f is not None and f != c for f, c in zip(wanted, clip)):
        raise TfzooError(f"clip_shape={clip} but {model.name!r} takes clips of (T, H, W) = "
                         f"{tuple(wanted)} only (None: any); pass clip_shape="
                         f"{tuple(f or c for f, c in zip(wanted, clip))} or leave it out")
    geo = layer_geometry(model, layer, frames=clip[0])
    units_l = _parse_units(units, geo.channels)
    keras_layer, _ = resolve(model, layer)
    feat = feature_model(model, keras_layer)
    specs = input_specs(model)
    streams = dict(streams or {})
    unknown = set(streams) - {n for n, _ in specs}
    if unknown:
        raise TfzooError(f"streams names {sorted(unknown)} are not inputs of the model; "
                         f"expected some of {[n for n, _ in specs]}")
    kinds = [streams.get(n) or stream_kind(n, c) for n, c in specs]
    for k in kinds:
        check_choice("stream kind", k, ("appearance", "motion"))
    two_stream = "appearance" in kinds and "motion" in kinds
    stream_spec = tuple(
        (n, c, k, app_reg if (two_stream and k == "appearance") else regularizer)
        for (n, c), k in zip(specs, kinds))
    if jitter is None:
        jitter = min(geo.stride or 0, clip[1] // 4, clip[2] // 4)
    jitter = int(jitter)
    if jitter < 0:
        raise TfzooError(f"jitter must be >= 0 px, got {jitter}")
    canvas = (clip[0], clip[1] + jitter, clip[2] + jitter)
    spec = _Spec(keras_layer.name, len(units_l), clip, canvas, stream_spec, parametrization,
                 unit_location, bool(transforms), diversity > 0)

    # Normalisation of eq. 1: receptive field area (clipped to the clip) times a_hat.
    if geo.receptive_field is None:
        rho2 = clip[1] * clip[2]
    else:
        rho2 = min(geo.receptive_field[0], clip[1]) * min(geo.receptive_field[1], clip[2])
    a = np.ones(geo.channels, np.float32) if a_hat is None else np.asarray(a_hat, np.float32)
    if a.shape != (geo.channels,):
        raise TfzooError(f"a_hat has shape {a.shape}; expected ({geo.channels},), one maximum "
                         f"activation per channel of {layer!r}")
    a = np.where(a > 0, a, 1.0)  # a unit never active on the data: leave it unnormalised
    if objective_scale is None:
        # Eq. 1 divides by rho^2 a_hat while the regularisers are per-pixel means (1/(H W));
        # scaling by rho^2 makes the objective the activation relative to its maximum on
        # data, O(1) like each regulariser ("similar weights for the different terms", §3.4).
        # Measured: with a scale of 1 a planted unit's result collapses to ~0.
        objective_scale = float(rho2)
    norm = tf.constant(rho2 * a[units_l] / objective_scale, tf.float32)

    # Regulariser weights (CVPR 2018 §3.4), per input.
    base = R.default_weights(canvas[1], canvas[2], bound=bound, alpha=alpha)
    lam_b, lam_tv = [], []
    weights = dict(weights or {})
    for n, c, k, _ in stream_spec:
        wgt = dict(base, lambda_tv=base["lambda_tv"] * (R.MOTION_TV_FACTOR if k == "motion"
                                                          else 1.0))
        wgt.update({kk: v for kk, v in weights.items() if kk in ("lambda_b", "lambda_tv")})
        wgt.update(weights.get(n, {}))
        lam_b.append(float(wgt["lambda_b"]))
        lam_tv.append(float(wgt["lambda_tv"]))
    bad = set(weights) - {"lambda_b", "lambda_tv"} - {n for n, _ in specs}
    if bad:
        raise TfzooError(f"unknown weights keys {sorted(bad)}; expected 'lambda_b', "
                         f"'lambda_tv' or input names {[n for n, _ in specs]}")
    if learning_rate is None:
        learning_rate = 2.0
    hyper = {"lr": tf.constant(learning_rate, tf.float32),
             "total_steps": tf.constant(float(steps), tf.float32),
             "lambda_b": tf.constant(lam_b, tf.float32),
             "lambda_tv": tf.constant(lam_tv, tf.float32),
             "kappa": tf.constant(kappa, tf.float32), "chi": tf.constant(chi, tf.float32),
             "bound": tf.constant(bound, tf.float32), "alpha": tf.constant(alpha, tf.float32),
             "diversity": tf.constant(diversity, tf.float32)}

    rng = np.random.default_rng(seed)
    params = []
    for n, c, k, _ in stream_spec:
        if parametrization == "pixel":
            init = rng.normal(0, init_std, (spec.n, *canvas, c))
        else:
            init = rng.normal(0, init_std * 0.01, (spec.n, canvas[0], c, canvas[1],
                                                   canvas[2] // 2 + 1, 2))
        params.append(tf.Variable(init.astype(np.float32), name=f"x_{n}"))
    ms = [tf.Variable(tf.zeros_like(p)) for p in params]
    vs = [tf.Variable(tf.zeros_like(p)) for p in params]

    per_model = _STEP_CACHE.setdefault(model, {})
    if spec not in per_model:
        per_model[spec] = _build_step(model, feat, spec)
    step = per_model[spec]
    units_t = tf.constant(units_l, tf.int32)
    seed_t = tf.constant(seed, tf.int32)
    losses, last, prev, done = [], None, None, 0
    for i in range(steps):
        loss, objective = step(params, ms, vs, tf.constant(i, tf.int32), seed_t, units_t,
                               norm, hyper)
        done = i + 1
        if done % check_every == 0 or done == steps:
            last = float(loss)
            losses.append((done, last))
            if progress is not None:
                progress(done, last)
            if tol is not None and prev is not None and \
                    abs(prev - last) <= tol * max(abs(prev), 1e-12):
                break
            prev = last
    out, z_out = {}, {}
    for p, (n, c, k, _) in zip(params, stream_spec):
        z = _centre_crop(_to_z(p, spec, k), spec)
        z_out[n] = z.numpy()
        out[n] = _to_raw(z, k).numpy().astype(np.float32)
    if not return_info:
        return out
    # The unit's raw activation on the returned (un-jittered) clip.
    raw_in = [tf.constant(out[n]) for n, *_ in stream_spec]
    act = tf.cast(feat(raw_in, training=False), tf.float32)
    chan = tf.gather(act, units_t, axis=-1, batch_dims=1)
    if len(act.shape) == 2 or unit_location == "sum":
        value = tf.reduce_sum(tf.reshape(chan, [spec.n, -1]), axis=1)
    else:
        value = chan[(slice(None), *[d // 2 for d in chan.shape[1:]])]
    info = {
        "layer": layer, "keras_layer": keras_layer.name, "units": units_l,
        "geometry": dataclasses.asdict(geo), "steps": done, "losses": losses,
        "activation": value.numpy().tolist(),
        "settings": dict(regularizer=regularizer, appearance_regularizer=app_reg,
                         kappa=kappa, chi=chi, seed=seed, clip_shape=list(clip),
                         learning_rate=learning_rate, unit_location=unit_location,
                         bound=bound, alpha=alpha, objective_scale=objective_scale,
                         jitter=jitter, parametrization=parametrization,
                         transforms=bool(transforms), diversity=diversity,
                         a_hat=None if a_hat is None else a[units_l].tolist(),
                         rho2=rho2, streams={n: k for n, _, k, _ in stream_spec},
                         lambda_b=dict(zip([s[0] for s in stream_spec], lam_b)),
                         lambda_tv=dict(zip([s[0] for s in stream_spec], lam_tv))),
        "normalized": z_out,
    }
    return out, info


def max_activations(model, layer, dataset, *, cache: str | Path | None = None,
                    max_batches: int | None = None) -> np.ndarray:
    """a_hat of eq. 1: each channel's maximum activation (over locations and clips) of
    `layer` on `dataset` (yielding `x` or `(x, y)`, x as the model takes it). With `cache`, a
    JSON file is read if it holds this layer and `max_batches`, else written atomically.

    Example:
    >>> import keras
    >>> x = keras.Input((None, None, None, 3), name="rgb")
    >>> m = keras.Model(x, keras.layers.Conv3D(2, 1, name="c")(x))
    >>> max_activations(m, "c", [np.ones((1, 2, 4, 4, 3), "float32")]).shape
    (2,)
    """
    keras_layer, _ = resolve(model, layer)
    if cache is not None and Path(cache).exists():
        data = json.loads(Path(cache).read_text())
        if (data.get("layer"), data.get("keras_layer"), data.get("max_batches")) == (
                layer, keras_layer.name, max_batches):
            return np.asarray(data["a_hat"], np.float32)
    feat = feature_model(model, keras_layer)
    names = [n for n, _ in input_specs(model)]
    best, batches = None, 0
    for batch in dataset:
        x = batch[0] if isinstance(batch, tuple) else batch
        if isinstance(x, dict):
            x = [x[n] for n in names]
        elif not isinstance(x, (list, tuple)):
            x = [x]
        act = feat(x, training=False)
        m = tf.reduce_max(tf.reshape(act, [-1, act.shape[-1]]), axis=0).numpy()
        best = m if best is None else np.maximum(best, m)
        batches += 1
        if max_batches is not None and batches >= max_batches:
            break
    if best is None:
        raise TfzooError("max_activations: the dataset yielded no batches")
    if cache is not None:
        atomic_write_text(cache, json.dumps({"layer": layer, "keras_layer": keras_layer.name,
                                             "batches": batches, "max_batches": max_batches,
                                             "a_hat": best.tolist()}) + "\n")
    return best.astype(np.float32)
