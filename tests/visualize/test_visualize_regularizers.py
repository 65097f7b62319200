"""The visualiser's regularisers against brute-force numpy loops (thesis eq. 6.2-6.5) and
finite differences."""

import numpy as np
import pytest
import tensorflow as tf

from tfzoo.visualize import regularizers as R


def _tv_loops(x, kind, kappa, chi):
    # Eq. 6.3-6.5 written as the thesis sums them: forward differences, no wrap.
    b, t, h, w, c = x.shape
    out = np.zeros(b)
    for n in range(b):
        for k in range(t):
            for i in range(h):
                for j in range(w):
                    for d in range(c):
                        s = 0.0
                        if i + 1 < h:
                            s += (x[n, k, i + 1, j, d] - x[n, k, i, j, d]) ** 2
                        if j + 1 < w:
                            s += (x[n, k, i, j + 1, d] - x[n, k, i, j, d]) ** 2
                        tt = (x[n, k + 1, i, j, d] - x[n, k, i, j, d]) ** 2 if k + 1 < t else 0.0
                        out[n] += {"2d": s, "3d": kappa * (s + tt), "2d1d": s + chi * tt}[kind]
    return out


@pytest.mark.parametrize("kind", R.TV_KINDS)
def test_total_variation_equals_numpy_loops(kind):
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 5, 2))
    got = R.total_variation(tf.constant(x), kind, kappa=2.5, chi=0.7).numpy()
    np.testing.assert_allclose(got, _tv_loops(x, kind, 2.5, 0.7), rtol=1e-10)


def test_total_variation_no_wrap_and_special_cases():
    x = np.zeros((1, 4, 3, 3, 1))
    x[0, -1] = 1.0  # the last frame differs: a wrap would also count frame 3 -> frame 0
    assert float(R.total_variation(x, "2d1d", chi=2.0)[0]) == 2.0 * 9
    assert float(R.total_variation(x, "2d")[0]) == 0.0
    # 2d1d with chi = 0 is 2d; 3d with kappa = 1 is 2d1d with chi = 1
    y = np.random.default_rng(1).normal(size=(2, 3, 4, 4, 3))
    np.testing.assert_allclose(R.total_variation(y, "2d1d", chi=0.0),
                               R.total_variation(y, "2d"), rtol=1e-6)
    np.testing.assert_allclose(R.total_variation(y, "3d", kappa=1.0),
                               R.total_variation(y, "2d1d", chi=1.0), rtol=1e-6)


def test_local_norm_equals_numpy_and_projection():
    x = np.random.default_rng(2).normal(0, 100, size=(2, 2, 3, 3, 3))
    want = (np.sum(x ** 2, -1) ** 1.5).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(R.local_norm(tf.constant(x), 3.0).numpy(), want, rtol=1e-8)
    p = R.project_local_norm(tf.constant(x), 160.0).numpy()
    norms = np.linalg.norm(x, axis=-1)
    np.testing.assert_allclose(np.linalg.norm(p, axis=-1), np.minimum(norms, 160.0), rtol=1e-8)
    inside = norms <= 160
    np.testing.assert_array_equal(p[inside], x[inside])


@pytest.mark.parametrize("fn", [
    lambda x: R.total_variation(x, "2d"),
    lambda x: R.total_variation(x, "3d", kappa=1.7),
    lambda x: R.total_variation(x, "2d1d", chi=3.0),
    lambda x: R.local_norm(x, 3.0),
])
def test_regularizer_gradients_match_finite_differences(fn):
    x0 = np.random.default_rng(3).normal(size=(1, 3, 4, 4, 2))
    x = tf.Variable(x0)
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(fn(x))
    g = tape.gradient(y, x).numpy()
    eps = 1e-6
    fd = np.zeros_like(x0)
    for idx in np.ndindex(x0.shape):
        d = np.zeros_like(x0)
        d[idx] = eps
        fd[idx] = (float(tf.reduce_sum(fn(tf.constant(x0 + d))))
                   - float(tf.reduce_sum(fn(tf.constant(x0 - d))))) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6)


def test_default_weights_are_the_papers():
    w = R.default_weights(112, 112)
    assert w["lambda_b"] == pytest.approx(1 / (112 * 112 * 160.0 ** 3))
    assert w["lambda_tv"] == pytest.approx(1 / (112 * 112 * (160 / 6.5) ** 2))


def test_bad_kind_and_rank_are_errors():
    with pytest.raises(ValueError, match="'4d'"):
        R.total_variation(np.zeros((1, 2, 2, 2, 1)), "4d")
    with pytest.raises(ValueError, match=r"\(B, T, H, W, C\)"):
        R.total_variation(np.zeros((2, 2, 2, 1)), "2d")
