"""Every fast training-step kernel against the C reference path (csrc/optim/optim_reference.c).

The reference path is plain C in double, one element at a time, written from the formulas of
csrc/optim/optim.h and norm.h; the public functions (fastcore.optim, fastcore.norm) reach it
through the same bindings when ``_optim.use_reference(True)`` routes the calls there.  Each case
runs a public function twice, fast and reference, and compares: global norms and clipping (both
dtypes, every norm type, an empty array, one longer than the kernels' 65536-element chunk, huge
and tiny values), the WEISSI regulariser, one step of SGD / Adam / AdamW for each option (from
zeros, and from a random state loaded with ``load_state_dict``: one step, so that the tolerance
is that of one float32 update and not of a chain), and batch norm in both layouts, training and
inference.  tests/c/test_optim_reference.c runs the same comparison in C on many more problems
and every option combination (also the negative clip scale of ``maximize``, which only
fastcore.torch.optim exposes).
"""
import contextlib
import math

import numpy as np
import pytest

from fastcore import _optim, norm, optim

DTYPES = [np.float32, np.float64]
# one update (or one batch norm) in float32 / float64 arithmetic against double, relative to the
# array's largest value (an element that cancels keeps the error of its terms)
TOL = {np.float32: 1e-5, np.float64: 1e-12}
# norms: float64 sums in both paths, in different orders, over up to ~70000 elements
NORM_RTOL = 1e-10
# one array longer than the work-list chunk (65536), empty ones, sizes off the vector widths
SHAPES = [(5, 7), (0,), (17,), (2, 3, 4), (1,), (65536 + 123,), (0, 3), (33,)]


@contextlib.contextmanager
def reference_path():
    _optim.use_reference(True)
    try:
        yield
    finally:
        _optim.use_reference(False)


def both(fn, *args, **kwargs):
    fast = fn(*args, **kwargs)
    with reference_path():
        ref = fn(*args, **kwargs)
    return fast, ref


def close(fast, ref, dtype, what=""):
    fast, ref = np.asarray(fast), np.asarray(ref)
    assert fast.shape == ref.shape and fast.dtype == ref.dtype, what
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    np.testing.assert_allclose(fast, ref, rtol=TOL[dtype], atol=TOL[dtype] * scale, err_msg=what)


def arrays(rng, dtype, shapes=SHAPES, scale=1.0):
    return [(rng.standard_normal(s) * scale).astype(dtype) for s in shapes]


# ---------------------------------------------------------------- norms, clipping, WEISSI
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [2.0, 1.0, 3.0, 0.5, 1.7, np.inf])
@pytest.mark.parametrize("scale", [1.0, 1e30, 1e-30])
def test_global_norm(rng, dtype, p, scale):
    if dtype == np.float32 and scale != 1.0:
        scale = 1e30 if scale > 1 else 1e-40  # float32: near the top, and subnormal
    elif scale != 1.0:
        scale = 1e300 if scale > 1 else 1e-300  # float64: sums that overflow / underflow
    g = arrays(rng, dtype, scale=scale)
    fast, ref = both(optim.global_norm, g, p)
    if math.isinf(ref):  # (sum |x|^0.5)^2 of 1e300s overflows float64: both say so
        assert fast == ref
    else:
        assert fast == pytest.approx(ref, rel=NORM_RTOL)


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_norm_nan_and_inf(rng, dtype):
    g = arrays(rng, dtype)
    g[3][1, 2, 0] = np.inf
    for p in (2.0, 1.0, 3.0, np.inf):
        fast, ref = both(optim.global_norm, g, p)
        assert fast == ref == np.inf
    g[0][4, 6] = np.nan
    for p in (2.0, 1.0, 3.0, np.inf):
        fast, ref = both(optim.global_norm, g, p)
        assert math.isnan(fast) and math.isnan(ref)
    assert both(optim.global_norm, [np.zeros(0, dtype)]) == (0.0, 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["hard", "soft"])
@pytest.mark.parametrize("p", [2.0, 1.0, np.inf])
def test_clip_grad_norm(rng, dtype, mode, p):
    g = arrays(rng, dtype)
    gf, gr = [x.copy() for x in g], [x.copy() for x in g]
    nf = optim.clip_grad_norm(gf, 0.5, mode, norm_type=p)
    with reference_path():
        nr = optim.clip_grad_norm(gr, 0.5, mode, norm_type=p)
    assert nf == pytest.approx(nr, rel=NORM_RTOL)
    for a, b in zip(gf, gr):
        close(a, b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weissi(rng, dtype):
    w = arrays(rng, dtype, shapes=[(5, 7), (2, 3, 4), (300, 250), (17,)])
    (vf, gf), (vr, gr) = both(optim.weissi, w, 1e-2, 3e-3)
    assert vf == pytest.approx(vr, rel=NORM_RTOL, abs=1e-14)
    for a, b in zip(gf, gr):
        close(a, b, dtype)


# ---------------------------------------------------------------- optimisers
def adam_state(rng, params):
    """Adam moments as a run leaves them: |m| <= sqrt(v), vmax around v."""
    m = [(rng.standard_normal(p.shape) * 0.1).astype(p.dtype) for p in params]
    v = [(x.astype(np.float64) ** 2 * (1 + rng.random(x.shape)) + 1e-4 * rng.random(x.shape)).astype(x.dtype) for x in m]
    vmax = [(x * (0.5 + 1.5 * rng.random(x.shape))).astype(x.dtype) for x in v]
    return {"exp_avg": m, "exp_avg_sq": v, "max_exp_avg_sq": vmax}


def step_both(cls, params, grads, state=None, step=5, **kwargs):
    """One step of cls(params copy, **kwargs) on each path, after loading ``state`` (a dict of
    state arrays, at step count ``step``) when given; returns the two (result, params, state)."""
    out = []
    for ref in (False, True):
        ps = [p.copy() for p in params]
        opt = cls(ps, n_threads=2, **kwargs)
        if state is not None:
            sd = opt.state_dict()
            sd["state"] = {name: [a.copy() for a in state[name]] for name in sd["state"]}
            sd["step"] = step
            opt.load_state_dict(sd)
        with reference_path() if ref else contextlib.nullcontext():
            res = opt.step([g.copy() for g in grads])
        out.append((res, ps, opt.state_dict()["state"]))
    return out


def compare_steps(fast, ref, dtype):
    (rf, pf, sf), (rr, pr, sr) = fast, ref
    assert rf.skipped == rr.skipped
    assert rf.norm == pytest.approx(rr.norm, rel=NORM_RTOL)
    assert rf.scale == pytest.approx(rr.scale, rel=NORM_RTOL)
    assert rf.regularization == pytest.approx(rr.regularization, rel=NORM_RTOL, abs=1e-14)
    for k, (a, b) in enumerate(zip(pf, pr)):
        close(a, b, dtype, f"params[{k}]")
    assert sf.keys() == sr.keys()
    for name in sf:
        for k, (a, b) in enumerate(zip(sf[name], sr[name])):
            close(a, b, dtype, f"{name}[{k}]")


CLIPS = [{}, {"clip": 0.5, "clip_mode": "hard"}, {"clip": 0.5, "clip_mode": "soft"}]
# WEISSI on (5, 7), (2, 3, 4) and the long 1-D array (the empty (0, 3) has no log-norm), with
# a > 0 in d = g + a p + b sign(p) (lam1 > lam2 ||W||_1 / ||W||, ~204 lam2 for the long one): see test_adam
WEISSI = [{}, {"regularizer": "weissi", "reg_lambdas": (5e-2, 1e-4), "reg_params": [0, 3, 5]}]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,dampening,nesterov", [(0.0, 0.0, False), (0.9, 0.0, False), (0.9, 0.3, False),
                                                          (0.9, 0.0, True)])
@pytest.mark.parametrize("wd,decoupled", [(0.0, False), (0.01, False), (0.01, True)])
@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("reg", WEISSI)
@pytest.mark.parametrize("started", [False, True])
def test_sgd(rng, dtype, momentum, dampening, nesterov, wd, decoupled, clip, reg, started):
    params = arrays(rng, dtype)
    grads = arrays(rng, dtype)
    state = None
    if started and momentum > 0:
        state = {"momentum_buffer": arrays(rng, dtype, scale=0.5)}
    fast, ref = step_both(optim.SGD, params, grads, state, lr=0.05, momentum=momentum, dampening=dampening,
                          nesterov=nesterov, weight_decay=wd, decoupled_weight_decay=decoupled, **clip, **reg)
    compare_steps(fast, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls,wd", [(optim.Adam, 0.0), (optim.Adam, 0.01), (optim.AdamW, 0.01)])
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.3, 0.99)])
@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("reg", WEISSI)
@pytest.mark.parametrize("started", [False, True])
def test_adam(rng, dtype, cls, wd, amsgrad, betas, clip, reg, started):
    params = arrays(rng, dtype)
    # Gradients along the parameters: d = scale g + (wd + a) p + b sign(p) then never cancels.
    # Where it does, a float32 d is mostly rounding, and a first step's d / (|d| + eps) (eps =
    # 1e-8) turns that into an O(lr) difference between two correct kernels (the C test leaves
    # those elements out, see cancel_masks there).
    grads = [(np.abs(g) * np.sign(p)).astype(dtype) for g, p in zip(arrays(rng, dtype), params)]
    state = adam_state(rng, params) if started else None
    fast, ref = step_both(cls, params, grads, state, lr=1e-2, betas=betas, weight_decay=wd, amsgrad=amsgrad,
                          **clip, **reg)
    compare_steps(fast, ref, dtype)


@pytest.mark.parametrize("cls", [optim.SGD, optim.AdamW])
def test_nonfinite_gradient_skips_on_both_paths(rng, cls):
    params = arrays(rng, np.float32)
    grads = arrays(rng, np.float32)
    grads[2][5] = np.nan
    (rf, pf, _), (rr, pr, _) = step_both(cls, params, grads, lr=0.1)
    assert rf.skipped and rr.skipped
    for a, b, p in zip(pf, pr, params):
        np.testing.assert_array_equal(a, p)
        np.testing.assert_array_equal(b, p)


# ---------------------------------------------------------------- batch norm
BN_SHAPES = [(16, 70), (7, 3), (6, 5, 13), (4, 3, 2, 5), (2, 1, 9)]


def bn_problem(rng, dtype, shape):
    c = shape[1]
    off = rng.uniform(-3, 3, size=(1, c) + (1,) * (len(shape) - 2))
    x = (rng.standard_normal(shape) * rng.uniform(0.3, 3) + off).astype(dtype)
    gamma = rng.uniform(0.5, 1.5, c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    rm = rng.standard_normal(c).astype(dtype)
    rv = rng.uniform(0.5, 2.0, c).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, gamma, beta, rm, rv, dy


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("affine", [True, False])
# (inference reads the running statistics: no (training=False, running=False) case)
@pytest.mark.parametrize("training,running", [(True, True), (True, False), (False, True)])
def test_batch_norm(rng, dtype, shape, training, affine, running):
    x, gamma, beta, rm, rv, dy = bn_problem(rng, dtype, shape)
    g, b = (gamma, beta) if affine else (None, None)
    outs = []
    for ref in (False, True):
        rmc, rvc = (rm.copy(), rv.copy()) if running else (None, None)
        with reference_path() if ref else contextlib.nullcontext():
            y, (sm, si) = norm.batch_norm_forward(x, g, b, rmc, rvc, training, momentum=0.1, eps=1e-5)
            dx, dg, db = norm.batch_norm_backward(dy, x, g, sm, si, training)  # from its own forward
        outs.append((y, sm, si, rmc, rvc, dx, dg, db))
    names = ["y", "saved_mean", "saved_invstd", "running_mean", "running_var", "dx", "dgamma", "dbeta"]
    for name, a, r in zip(names, *outs):
        if r is None:
            assert a is None, name
        else:
            close(a, r, dtype, name)


def test_use_reference_reaches_the_kernels(rng):
    """The switch reaches C: a float32 Adam step computed in float32 (fast) and in double then
    rounded (reference) agrees to rounding but not bit for bit on 10000 parameters; were both
    answers from one path, they would be identical."""
    params = arrays(rng, np.float32, shapes=[(100, 100)])
    grads = [(np.abs(g) * np.sign(params[0])).astype(np.float32) for g in arrays(rng, np.float32, shapes=[(100, 100)])]
    fast, ref = step_both(optim.AdamW, params, grads, adam_state(rng, params), lr=1e-2, amsgrad=True)
    compare_steps(fast, ref, np.float32)
    assert not np.array_equal(fast[1][0], ref[1][0])
