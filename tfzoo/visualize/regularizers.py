"""The visualiser's regularisers (Feichtenhofer et al., "What have we learned from deep
representations for action recognition?", CVPR 2018, eq. 2-3; thesis ch. 6, eq. 6.2-6.5).

All functions take a `(B, T, H, W, C)` tensor in the optimiser's normalised input space (RGB
centred at 0 on the 0-255 scale, flow on the papers' uint8 code scale, see
`tfzoo.visualize.maximize`) and return one value per example, shape `(B,)`.

Example:
>>> import numpy as np
>>> from tfzoo.visualize.regularizers import total_variation
>>> x = np.zeros((1, 2, 3, 3, 1), "float32"); x[0, 1] = 1.0   # a step in time only
>>> [float(total_variation(x, kind)[0]) for kind in ("2d", "3d", "2d1d")]
[0.0, 9.0, 9.0]
"""

from __future__ import annotations

import tensorflow as tf

from tfzoo.errors import InputSpecError
from tfzoo.utils import check_choice

TV_KINDS = ("2d", "3d", "2d1d")
# The papers' defaults (Mahendran & Vedaldi 2016, used unchanged in CVPR 2018 §3.4).
DEFAULT_B = 160.0
DEFAULT_ALPHA = 3.0
V_FRACTION = 6.5  # V = B / 6.5
MOTION_TV_FACTOR = 10.0  # "the total-variation term of motion inputs has 10x higher weight"


def _check_video(x) -> tf.Tensor:
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        x = tf.cast(x, tf.float32)
    if x.shape.rank != 5:
        raise InputSpecError(f"expected a (B, T, H, W, C) tensor, got shape {x.shape}")
    return x


def _squared_differences(x):
    """Sums of squared forward differences along H, W and T per example (no boundary wrap:
    the last row/column/frame has no forward neighbour and contributes nothing)."""
    dy = x[:, :, 1:, :, :] - x[:, :, :-1, :, :]
    dx = x[:, :, :, 1:, :] - x[:, :, :, :-1, :]
    dt = x[:, 1:] - x[:, :-1]
    axes = [1, 2, 3, 4]
    return (tf.reduce_sum(tf.square(dy), axes) + tf.reduce_sum(tf.square(dx), axes),
            tf.reduce_sum(tf.square(dt), axes))


def total_variation(x, kind: str, kappa: float = 1.0, chi: float = 1.0) -> tf.Tensor:
    """Squared total variation of a `(B, T, H, W, C)` video, per example, as written in the
    thesis: `kind="2d"` eq. 6.3 (spatial only; the paper's chi = 0), `"3d"` eq. 6.4
    (`kappa` times spatial + temporal, isotropic), `"2d1d"` eq. 6.5 (spatial with weight 1 +
    `chi` times temporal, anisotropic). `kappa` is used only by "3d", `chi` only by "2d1d".
    """
    check_choice("total variation kind", kind, TV_KINDS)
    x = _check_video(x)
    spatial, temporal = _squared_differences(x)
    if kind == "2d":
        return spatial
    if kind == "3d":
        return kappa * (spatial + temporal)
    return spatial + chi * temporal


def local_norm(x, alpha: float = DEFAULT_ALPHA) -> tf.Tensor:
    """N_B of eq. 2: sum over all (t, y, x) of `(sum_d x^2)^(alpha/2)`, per example. The
    `+inf` branch (a pixel's norm above B) is enforced by `project_local_norm`, not here."""
    x = _check_video(x)
    sq = tf.reduce_sum(tf.square(x), axis=-1)
    # A tiny floor keeps the gradient of sqrt finite at 0 for alpha < 2.
    return tf.reduce_sum(tf.pow(sq + 1e-12, alpha / 2.0), axis=[1, 2, 3])


def project_local_norm(x, bound: float = DEFAULT_B) -> tf.Tensor:
    """Rescales every pixel whose channel norm exceeds `bound` onto the ball: the feasible set
    of eq. 2 (R_B is +inf outside it), applied after each optimiser step."""
    x = _check_video(x)
    norm = tf.sqrt(tf.reduce_sum(tf.square(x), axis=-1, keepdims=True))
    return x * tf.minimum(1.0, bound / tf.maximum(norm, 1e-12))


def default_weights(height: int, width: int, *, bound: float = DEFAULT_B,
                    alpha: float = DEFAULT_ALPHA) -> dict:
    """The papers' weights for a clip of `height` x `width`: lambda_B = 1 / (H W B^alpha),
    lambda_TV = 1 / (H W V^2) with V = B / 6.5 (CVPR 2018 §3.4). The motion input's TV weight
    is `MOTION_TV_FACTOR` times this (applied by `maximize`)."""
    v = bound / V_FRACTION
    return {"lambda_b": 1.0 / (height * width * bound ** alpha),
            "lambda_tv": 1.0 / (height * width * v ** 2)}
