"""Batch norm forward/backward against a NumPy reference, torch.nn.functional.batch_norm
(forward, running statistics, autograd) and finite differences."""
import numpy as np
import pytest

from _helpers import FLOAT_DTYPES, needs, tol
from fastcore.norm import batch_norm_backward, batch_norm_forward

SHAPES = [(16, 5), (7, 3, 11), (2, 130, 1), (3, 70), (4, 2, 3, 5)]


def np_forward(x, gamma, beta, rm, rv, training, momentum, eps):
    x = x.astype(np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    bshape = (1, -1) + (1,) * (x.ndim - 2)
    if training:
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)
        m = x.size // x.shape[1]
        new_rm = (1 - momentum) * rm + momentum * mean
        new_rv = (1 - momentum) * rv + momentum * var * m / (m - 1)
    else:
        mean, var, new_rm, new_rv = rm, rv, rm, rv
    inv = 1 / np.sqrt(var + eps)
    y = (x - mean.reshape(bshape)) * (inv * gamma).reshape(bshape) + beta.reshape(bshape)
    return y, mean, inv, new_rm, new_rv


def np_backward(dy, x, gamma, mean, inv, training):
    x, dy = x.astype(np.float64), dy.astype(np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    b = (1, -1) + (1,) * (x.ndim - 2)
    xhat = (x - mean.reshape(b)) * inv.reshape(b)
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * xhat).sum(axis=axes)
    m = x.size // x.shape[1]
    if training:
        dx = (gamma * inv).reshape(b) * (dy - dbeta.reshape(b) / m - xhat * dgamma.reshape(b) / m)
    else:
        dx = (gamma * inv).reshape(b) * dy
    return dx, dgamma, dbeta


def _data(rng, shape, dtype):
    c = shape[1]
    x = (rng.standard_normal(shape) * 2 + 5).astype(dtype)
    gamma = rng.uniform(0.5, 2, c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    rm = rng.standard_normal(c).astype(dtype)
    rv = rng.uniform(0.5, 2, c).astype(dtype)
    return x, gamma, beta, rm, rv


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_matches_numpy(rng, dtype, shape, training):
    x, gamma, beta, rm, rv = _data(rng, shape, dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    x0 = x.copy()
    y, (sm, si) = batch_norm_forward(x, gamma, beta, rm, rv, training, 0.1, 1e-5)
    ry, rmean, rinv, rrm, rrv = np_forward(x, gamma.astype(float), beta.astype(float), rm0.astype(float),
                                           rv0.astype(float), training, 0.1, 1e-5)
    rtol, atol = tol(dtype)
    rtol, atol = max(rtol, 1e-13) * 5, max(atol, 1e-13) * 5
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_allclose(y, ry, rtol=rtol, atol=atol)
    np.testing.assert_allclose(sm, rmean, rtol=rtol, atol=atol)
    np.testing.assert_allclose(si, rinv, rtol=rtol, atol=atol)
    np.testing.assert_allclose(rm, rrm, rtol=rtol, atol=atol)
    np.testing.assert_allclose(rv, rrv, rtol=rtol, atol=atol)
    dy = rng.standard_normal(shape).astype(dtype)
    dx, dg, db = batch_norm_backward(dy, x, gamma, sm, si, training)
    rdx, rdg, rdb = np_backward(dy, x, gamma.astype(float), sm.astype(float), si.astype(float), training)
    np.testing.assert_allclose(dx, rdx, rtol=rtol * 10, atol=atol * 10)
    np.testing.assert_allclose(dg, rdg, rtol=rtol * 10, atol=atol * 10)
    np.testing.assert_allclose(db, rdb, rtol=rtol * 10, atol=atol * 10)


def test_finite_differences(rng):
    shape = (5, 3, 4)
    x, gamma, beta, _, _ = _data(rng, shape, np.float64)
    w = rng.standard_normal(shape)  # loss = sum(w * y)

    def loss(x, gamma, beta):
        return float((w * batch_norm_forward(x, gamma, beta, None, None, True)[0]).sum())

    y, (sm, si) = batch_norm_forward(x, gamma, beta, None, None, True)
    dx, dg, db = batch_norm_backward(w, x, gamma, sm, si, True)
    h = 1e-6
    for arr, grad in ((x, dx), (gamma, dg), (beta, db)):
        for idx in list(np.ndindex(arr.shape))[:25]:
            ap, am = arr.copy(), arr.copy()
            ap[idx] += h
            am[idx] -= h
            args_p = [ap if a is arr else a for a in (x, gamma, beta)]
            args_m = [am if a is arr else a for a in (x, gamma, beta)]
            fd = (loss(*args_p) - loss(*args_m)) / (2 * h)
            assert fd == pytest.approx(grad[idx], rel=1e-5, abs=1e-7)


def test_large_offset_keeps_variance(rng):
    x = (rng.standard_normal((1000, 3)) + 1e4).astype(np.float32)
    y, (sm, si) = batch_norm_forward(x, None, None, None, None, True)
    np.testing.assert_allclose(y.astype(np.float64).std(axis=0), 1.0, rtol=1e-3)


def test_threads_identical(rng):
    for shape in [(4000, 200), (64, 37, 300)]:
        x, gamma, beta, rm, rv = _data(rng, shape, np.float32)
        rm2, rv2 = rm.copy(), rv.copy()
        y1, c1 = batch_norm_forward(x, gamma, beta, rm, rv, True, n_threads=1)
        y2, c2 = batch_norm_forward(x, gamma, beta, rm2, rv2, True, n_threads=2)
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_array_equal(rm, rm2)
        np.testing.assert_array_equal(rv, rv2)
        b1 = batch_norm_backward(y1, x, gamma, *c1, n_threads=1)
        b2 = batch_norm_backward(y1, x, gamma, *c1, n_threads=2)
        for a, b in zip(b1, b2):
            np.testing.assert_array_equal(a, b)


@needs("torch")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", [(16, 5), (7, 3, 11), (4, 6, 2, 3)])
def test_matches_torch(rng, dtype, shape):
    import torch
    import torch.nn.functional as F

    x, gamma, beta, rm, rv = _data(rng, shape, dtype)
    trm, trv = torch.tensor(rm.copy()), torch.tensor(rv.copy())
    tx = torch.tensor(x, requires_grad=True)
    tg = torch.tensor(gamma, requires_grad=True)
    tb = torch.tensor(beta, requires_grad=True)
    ty = F.batch_norm(tx, trm, trv, tg, tb, training=True, momentum=0.2, eps=1e-3)
    dy = rng.standard_normal(shape).astype(dtype)
    ty.backward(torch.tensor(dy))
    y, cache = batch_norm_forward(x, gamma, beta, rm, rv, True, 0.2, 1e-3)
    dx, dg, db = batch_norm_backward(dy, x, gamma, *cache)
    rtol, atol = (1e-4, 1e-5) if dtype == np.float32 else (1e-10, 1e-12)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(dg, tg.grad.numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(db, tb.grad.numpy(), rtol=rtol, atol=atol)
    # inference mode with the updated running statistics
    ye, _ = batch_norm_forward(x, gamma, beta, rm, rv, False, 0.2, 1e-3)
    te = F.batch_norm(torch.tensor(x), trm, trv, torch.tensor(gamma), torch.tensor(beta), training=False, eps=1e-3)
    np.testing.assert_allclose(ye, te.numpy(), rtol=rtol, atol=atol)


def test_bad_input(rng):
    x = rng.standard_normal((4, 3))
    with pytest.raises(ValueError, match="more than one value"):
        batch_norm_forward(x[:1], training=True)
    with pytest.raises(ValueError, match="required"):
        batch_norm_forward(x, training=False)
    with pytest.raises(ValueError, match="gamma must have shape"):
        batch_norm_forward(x, gamma=np.ones(4))
    with pytest.raises(TypeError, match="running_mean must have the dtype"):
        batch_norm_forward(x, running_mean=np.zeros(3, np.float32), running_var=np.ones(3))
    with pytest.raises(TypeError, match="running_var must be a numpy"):
        batch_norm_forward(x, running_mean=np.zeros(3), running_var=[1.0, 1.0, 1.0])
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="x contains NaN"):
        batch_norm_forward(bad)
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        batch_norm_forward(np.ones(5))
    with pytest.raises(ValueError, match="momentum"):
        batch_norm_forward(x, momentum=1.5)
    with pytest.raises(ValueError, match="eps"):
        batch_norm_forward(x, eps=0.0)
    with pytest.raises(ValueError, match="dy must have the shape"):
        batch_norm_backward(np.ones((4, 4)), x, None, np.zeros(3), np.ones(3))
    y, (sm, si) = batch_norm_forward(np.zeros((0, 3)), None, None, np.zeros(3), np.ones(3), False)
    assert y.shape == (0, 3)
