"""Hypothesis properties on small shapes: exact OT duality against linprog, 1-D OT against the
network simplex, Sinkhorn marginals (and POT), attention forward/backward against NumPy with
random structural masks, BatchNorm against NumPy, masked softmax / log-sum-exp against SciPy.

Magnitudes stay moderate (|x| <= 1e3); the profiles of conftest.py set the number of examples.
"""
import warnings

import numpy as np
import scipy.special
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import fastcore
from fastcore import norm, ot
from fastcore.attention import attention, attention_backward
from _helpers import needs, ot_linprog_cost

seeds = st.integers(0, 2**32 - 1)
dtypes = st.sampled_from([np.float32, np.float64])


def _weights(rng, n, zeros):
    w = rng.random(n) + 0.05
    if zeros and n > 1:
        w[rng.random(n) < 0.3] = 0.0
        if not w.any():
            w[0] = 1.0
    return w / w.sum()


def _cost(rng, n, m, kind):
    if kind == "euclid":
        x, y = rng.random((n, 2)), rng.random((m, 2))
        return np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1)) * 10
    if kind == "ties":  # degenerate: few distinct costs
        return rng.integers(0, 3, (n, m)).astype(np.float64)
    return rng.uniform(-5, 5, (n, m))  # costs of any sign


problems = st.tuples(st.integers(1, 7), st.integers(1, 7), seeds, st.booleans(),
                     st.sampled_from(["euclid", "ties", "signed"]))


# ---------------------------------------------------------------- exact OT
@given(problems)
def test_emd_duality_and_complementary_slackness(pb):
    n, m, seed, zeros, kind = pb
    rng = np.random.default_rng(seed)
    a, b, M = _weights(rng, n, zeros), _weights(rng, m, zeros), _cost(rng, n, m, kind)
    G, log = ot.emd(a, b, M, log=True)
    u, v = log["u"], log["v"]
    scale = 1 + np.abs(M).max()
    assert log["result_code"] == 1 and log["warning"] is None
    np.testing.assert_allclose(G.sum(1), a, atol=1e-12)
    np.testing.assert_allclose(G.sum(0), b, atol=1e-12)
    assert (G >= 0).all()
    assert np.count_nonzero(G) <= n + m - 1  # a basic plan
    slack = M - u[:, None] - v[None, :]
    assert slack.min() >= -1e-9 * scale, "dual infeasible: u_i + v_j > M_ij"
    assert np.abs(slack[G > 0]).max(initial=0) <= 1e-9 * scale, "complementary slackness"
    np.testing.assert_allclose(log["cost"], (G * M).sum(), rtol=1e-12, atol=1e-12 * scale)
    np.testing.assert_allclose(log["cost"], a @ u + b @ v, rtol=1e-10, atol=1e-10 * scale)


@given(problems)
def test_emd2_equals_linprog(pb):
    n, m, seed, zeros, kind = pb
    rng = np.random.default_rng(seed)
    a, b, M = _weights(rng, n, zeros), _weights(rng, m, zeros), _cost(rng, n, m, kind)
    ref = ot_linprog_cost(a, b, M)
    scale = 1 + np.abs(M).max()
    np.testing.assert_allclose(ot.emd2(a, b, M), ref, rtol=1e-8, atol=1e-9 * scale)
    # the log path and the float32 path agree too
    np.testing.assert_allclose(ot.emd2(a, b, M, log=True)[0], ref, rtol=1e-8, atol=1e-9 * scale)
    c32 = ot.emd2(a, b, M.astype(np.float32))
    assert c32.dtype == np.float32
    np.testing.assert_allclose(c32, ot_linprog_cost(a, b, M.astype(np.float32).astype(np.float64)),
                               rtol=2e-6, atol=1e-6 * scale)


@given(st.integers(1, 8), st.integers(1, 8), seeds, st.booleans(),
       st.sampled_from(["sqeuclidean", "euclidean", "minkowski"]))
def test_1d_ot_equals_network_simplex(n, m, seed, ties, metric):
    rng = np.random.default_rng(seed)
    xa = rng.uniform(-10, 10, n)
    xb = rng.uniform(-10, 10, m)
    if ties:  # repeated positions
        xa, xb = np.round(xa / 5) * 5, np.round(xb / 5) * 5
    a, b = _weights(rng, n, ties), _weights(rng, m, ties)
    p = 1.5
    d = np.abs(xa[:, None] - xb[None, :])
    M = {"sqeuclidean": d**2, "euclidean": d, "minkowski": d**p}[metric]
    expected = ot.emd2(a, b, M)
    np.testing.assert_allclose(ot.emd2_1d(xa, xb, a, b, metric=metric, p=p), expected, rtol=1e-9, atol=1e-12)
    G = ot.emd_1d(xa, xb, a, b, metric=metric, p=p)
    np.testing.assert_allclose(G.sum(1), a, atol=1e-12)
    np.testing.assert_allclose(G.sum(0), b, atol=1e-12)
    np.testing.assert_allclose((G * M).sum(), expected, rtol=1e-9, atol=1e-12)
    if metric != "sqeuclidean":
        pp = 1 if metric == "euclidean" else p
        np.testing.assert_allclose(ot.wasserstein_1d(xa, xb, a * 3, b, p=pp), expected, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- Sinkhorn
sinkhorn_problems = st.tuples(st.integers(1, 6), st.integers(1, 6), seeds,
                              st.sampled_from([0.05, 0.2, 1.0]), st.sampled_from(["sinkhorn_log", "sinkhorn"]))


def _sinkhorn_problem(n, m, seed):
    rng = np.random.default_rng(seed)
    return _weights(rng, n, False), _weights(rng, m, False), _cost(rng, n, m, "euclid") / 10


@given(sinkhorn_problems)
def test_sinkhorn_marginals_when_converged(pb):
    n, m, seed, reg, method = pb
    a, b, M = _sinkhorn_problem(n, m, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastcore.ConvergenceWarning)
        P, log = ot.sinkhorn(a, b, M, reg, method=method, numItermax=20000, stopThr=1e-10, log=True)
    assume(log["converged"])  # (convergence reports are tested elsewhere); hypothesis fails if this is rare
    assert (P >= 0).all()
    np.testing.assert_allclose(P.sum(1), a, atol=1e-9)
    assert np.linalg.norm(P.sum(0) - b) < 1e-10 * 1.0001
    # the plan is the Gibbs kernel scaled by the potentials (log-domain methods report them)
    if method == "sinkhorn_log":
        np.testing.assert_allclose(P, np.exp(log["log_u"][:, None] + log["log_v"][None, :] - M / reg),
                                   rtol=1e-10, atol=1e-300)
    cost = ot.sinkhorn2(a, b, M, reg, method=method, numItermax=20000, stopThr=1e-10)
    np.testing.assert_allclose(cost, (P * M).sum(), rtol=1e-9, atol=1e-12)


@needs("ot")
@settings(max_examples=30)
@given(sinkhorn_problems)
def test_sinkhorn_equals_pot(pb):
    import ot as pot

    n, m, seed, reg, method = pb
    a, b, M = _sinkhorn_problem(n, m, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P, log = ot.sinkhorn(a, b, M, reg, method=method, numItermax=20000, stopThr=1e-12, log=True)
        ref = pot.sinkhorn(a, b, M, reg, method=method, numItermax=20000, stopThr=1e-12)
    assume(log["converged"])
    np.testing.assert_allclose(P, ref, rtol=1e-6, atol=1e-10)


# ---------------------------------------------------------------- attention
def _np_attention_mask(B, H, T, S, lengths, causal, seg, mask):
    keep = np.ones((B, H, T, S), bool)
    j, i = np.arange(S)[None, :], np.arange(T)[:, None]
    if lengths is not None:
        keep &= (np.arange(S)[None, :] < lengths[:, None])[:, None, None, :]
    if causal:
        keep &= (j <= i + S - T)[None, None]
    if seg is not None:
        c = np.cumsum(seg, axis=1)
        keep &= (c[:, None, :] <= c[:, :, None])[:, None]
    if mask is not None:
        keep &= np.broadcast_to(mask, keep.shape)
    return keep


def _np_forward(q, k, v, keep, scale):
    z = scale * np.einsum("bhid,bhjd->bhij", q, k)
    z = np.where(keep, z, -np.inf)
    mx = np.max(z, -1, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    e = np.where(keep, np.exp(z - mx), 0.0)
    s = e.sum(-1, keepdims=True)
    P = np.divide(e, s, out=np.zeros_like(e), where=s > 0)
    with np.errstate(divide="ignore"):
        lse = np.where(s[..., 0] > 0, mx[..., 0] + np.log(s[..., 0]), -np.inf)
    return P @ v, lse, P


def _np_backward(dout, q, k, v, P, scale):
    dv = np.einsum("bhij,bhid->bhjd", P, dout)
    dP = np.einsum("bhid,bhjd->bhij", dout, v)
    dz = P * (dP - (dP * P).sum(-1, keepdims=True))
    return scale * dz @ k, scale * np.einsum("bhij,bhid->bhjd", dz, q), dv


attention_cases = st.tuples(
    st.integers(1, 2), st.integers(1, 3), st.integers(1, 9), st.integers(0, 4), st.integers(1, 5), st.integers(1, 4),
    seeds, st.booleans(), st.booleans(), st.booleans(), st.booleans(), dtypes)


def _attention_inputs(case):
    B, H, T, extra, dk, dv, seed, use_len, causal, use_seg, use_mask, dtype = case
    rng = np.random.default_rng(seed)
    S = T if use_seg else T + extra
    q = rng.uniform(-2, 2, (B, H, T, dk)).astype(dtype)
    k = rng.uniform(-2, 2, (B, H, S, dk)).astype(dtype)
    v = rng.uniform(-3, 3, (B, H, S, dv)).astype(dtype)
    kw = {"causal": causal}
    if use_len:
        kw["lengths"] = rng.integers(0, S + 1, B)
    if use_seg:
        kw["segment_ids"] = (rng.random((B, S)) < 0.3).astype(np.int64)
    if use_mask:
        kw["mask"] = rng.random((B, 1 if rng.random() < 0.5 else H, T, S)) < 0.7
    keep = _np_attention_mask(B, H, T, S, kw.get("lengths"), causal, kw.get("segment_ids"), kw.get("mask"))
    return q, k, v, kw, keep, dtype


@given(attention_cases)
def test_attention_forward_matches_numpy(case):
    q, k, v, kw, keep, dtype = _attention_inputs(case)
    scale = 1 / np.sqrt(q.shape[-1])
    out, lse = attention(q, k, v, return_lse=True, n_threads=1, **kw)
    assert out.dtype == dtype and lse.dtype == dtype
    ref_out, ref_lse, _ = _np_forward(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64), keep, scale)
    rtol, atol = (1e-4, 1e-5) if dtype == np.float32 else (1e-10, 1e-12)
    np.testing.assert_allclose(out, ref_out, rtol=rtol, atol=atol)
    np.testing.assert_array_equal(np.isneginf(lse), ~keep.any(-1))  # no visible key <=> lse = -inf
    np.testing.assert_allclose(lse, ref_lse, rtol=rtol, atol=atol)
    # the same masks as one explicit boolean mask give the same result
    alt = attention(q, k, v, mask=keep, n_threads=1)
    np.testing.assert_allclose(alt, out, rtol=rtol, atol=atol)


@given(attention_cases)
def test_attention_backward_matches_numpy(case):
    q, k, v, kw, keep, dtype = _attention_inputs(case)
    scale = 1 / np.sqrt(q.shape[-1])
    rng = np.random.default_rng(1)
    out, lse = attention(q, k, v, return_lse=True, n_threads=1, **kw)
    dout = rng.uniform(-1, 1, out.shape).astype(dtype)
    dq, dk, dv = attention_backward(dout, q, k, v, out, lse, n_threads=1, **kw)
    q64, k64, v64 = (x.astype(np.float64) for x in (q, k, v))
    _, _, P = _np_forward(q64, k64, v64, keep, scale)
    rq, rk, rv = _np_backward(dout.astype(np.float64), q64, k64, v64, P, scale)
    rtol, atol = (2e-4, 2e-5) if dtype == np.float32 else (1e-9, 1e-11)
    for got, ref, name in ((dq, rq, "dq"), (dk, rk, "dk"), (dv, rv, "dv")):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol, err_msg=name)


@settings(max_examples=15)
@given(seeds, st.booleans())
def test_attention_backward_matches_finite_differences(seed, causal):
    rng = np.random.default_rng(seed)
    B, H, T, S, d = 1, 2, 3, 4, 3
    q, k, v = rng.standard_normal((B, H, T, d)), rng.standard_normal((B, H, S, d)), rng.standard_normal((B, H, S, d))
    lengths = np.array([rng.integers(1, S + 1)])
    w = rng.standard_normal((B, H, T, d))  # loss = sum(w * out)

    def loss(q, k, v):
        return float((w * attention(q, k, v, causal=causal, lengths=lengths, n_threads=1)).sum())

    out, lse = attention(q, k, v, causal=causal, lengths=lengths, return_lse=True)
    grads = attention_backward(w, q, k, v, out, lse, causal=causal, lengths=lengths)
    h = 1e-6
    for x, g, name in zip((q, k, v), grads, "qkv"):
        num = np.zeros_like(x)
        for idx in np.ndindex(*x.shape):
            xp, xm = x.copy(), x.copy()
            xp[idx] += h
            xm[idx] -= h
            args_p = {"q": q, "k": k, "v": v, name: xp}
            args_m = {"q": q, "k": k, "v": v, name: xm}
            num[idx] = (loss(**args_p) - loss(**args_m)) / (2 * h)
        np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-7, err_msg=f"d{name}")


# ---------------------------------------------------------------- BatchNorm
def _np_batch_norm(x, gamma, beta, rm, rv, training, momentum, eps):
    n, c = x.shape[:2]
    x3 = x.reshape(n, c, -1).astype(np.float64)
    if training:
        mean = x3.mean(axis=(0, 2))
        var = x3.var(axis=(0, 2))
        cnt = x3.shape[0] * x3.shape[2]
        new_rm = (1 - momentum) * rm + momentum * mean
        new_rv = (1 - momentum) * rv + momentum * var * cnt / (cnt - 1)
    else:
        mean, var, new_rm, new_rv = rm, rv, rm, rv
    invstd = 1 / np.sqrt(var + eps)
    y = (x3 - mean[None, :, None]) * invstd[None, :, None] * gamma[None, :, None] + beta[None, :, None]
    return y.reshape(x.shape), mean, invstd, new_rm, new_rv


@given(st.integers(1, 5), st.integers(1, 4), st.integers(0, 2), seeds, st.booleans(), dtypes,
       st.floats(0, 1), st.sampled_from([1e-5, 1e-3, 0.1]))
def test_batch_norm_matches_numpy(n, c, ell, seed, training, dtype, momentum, eps):
    rng = np.random.default_rng(seed)
    shape = (n + 1, c) if ell == 0 else (n + 1, c, ell)  # N*L >= 2 for training
    x = (rng.standard_normal(shape) * 3 + rng.uniform(-100, 100)).astype(dtype)
    gamma = rng.uniform(0.5, 2, c).astype(dtype)
    beta = rng.uniform(-1, 1, c).astype(dtype)
    rm = rng.standard_normal(c).astype(dtype)
    rv = rng.uniform(0.5, 2, c).astype(dtype)
    ref_y, ref_mean, ref_invstd, ref_rm, ref_rv = _np_batch_norm(
        x, gamma.astype(np.float64), beta.astype(np.float64), rm.astype(np.float64), rv.astype(np.float64),
        training, momentum, eps)
    y, (mean, invstd) = norm.batch_norm_forward(x, gamma, beta, rm, rv, training=training, momentum=momentum,
                                                eps=eps, n_threads=1)
    rtol, atol = (1e-4, 1e-4) if dtype == np.float32 else (1e-10, 1e-10)
    assert y.dtype == dtype and mean.dtype == dtype and invstd.dtype == dtype
    np.testing.assert_allclose(y, ref_y, rtol=rtol, atol=atol)
    np.testing.assert_allclose(mean, ref_mean, rtol=rtol, atol=atol)
    np.testing.assert_allclose(invstd, ref_invstd, rtol=rtol, atol=atol)
    np.testing.assert_allclose(rm, ref_rm, rtol=rtol, atol=atol)  # updated in place when training
    np.testing.assert_allclose(rv, ref_rv, rtol=rtol, atol=atol)
    # the backward against the analytic formula
    dy = rng.standard_normal(shape).astype(dtype)
    dx, dgamma, dbeta = norm.batch_norm_backward(dy, x, gamma, mean, invstd, training=training, n_threads=1)
    d3 = dy.reshape(n + 1, c, -1).astype(np.float64)
    xhat = ((x.reshape(n + 1, c, -1) - mean.astype(np.float64)[None, :, None])
            * invstd.astype(np.float64)[None, :, None])
    g = (gamma.astype(np.float64) * invstd.astype(np.float64))[None, :, None]
    if training:
        ref_dx = g * (d3 - d3.mean(axis=(0, 2), keepdims=True) - xhat * (d3 * xhat).mean(axis=(0, 2), keepdims=True))
    else:
        ref_dx = g * d3
    np.testing.assert_allclose(dx, ref_dx.reshape(shape), rtol=rtol, atol=atol * 10)
    np.testing.assert_allclose(dgamma, (d3 * xhat).sum(axis=(0, 2)), rtol=rtol, atol=atol * 10)
    np.testing.assert_allclose(dbeta, d3.sum(axis=(0, 2)), rtol=rtol, atol=atol * 10)


# ---------------------------------------------------------------- softmax / log-sum-exp
@given(st.lists(st.integers(1, 5), min_size=1, max_size=4), seeds, dtypes, st.booleans(), st.floats(1e-3, 1e3))
def test_masked_softmax_and_logsumexp_match_scipy(shape, seed, dtype, use_mask, spread):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * spread).astype(dtype)
    axis = int(rng.integers(-len(shape), len(shape)))
    if use_mask:
        mshape = [s if rng.random() < 0.6 else 1 for s in shape]  # broadcast axes
        mask = rng.random(mshape) < 0.6
        keep = np.broadcast_to(mask, x.shape)
    else:
        mask, keep = None, np.ones(x.shape, bool)
    p = fastcore.masked_softmax(x, mask, axis=axis, n_threads=1)
    lse = fastcore.logsumexp(x, axis=axis, mask=mask, n_threads=1)
    x64 = np.where(keep, x.astype(np.float64), -np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        ref_lse = scipy.special.logsumexp(x64, axis=axis)
        ref_p = np.nan_to_num(np.exp(x64 - np.expand_dims(ref_lse, axis)), nan=0.0)  # empty slices: zeros
    rtol, atol = (1e-5, 1e-6) if dtype == np.float32 else (1e-12, 1e-14)
    assert p.dtype == dtype and lse.dtype == dtype
    np.testing.assert_allclose(p, ref_p, rtol=rtol, atol=atol)
    np.testing.assert_allclose(lse, ref_lse, rtol=rtol, atol=atol * max(1.0, spread))
    assert (p[~keep] == 0).all()
