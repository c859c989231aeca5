"""Every fast Sinkhorn kernel against the C reference path (csrc/ot/sinkhorn_reference.c).

The reference path is plain C in log space and double, written from the maths of sinkhorn.h; the
public functions (``fastcore.sinkhorn.sinkhorn`` / ``sinkhorn2``, also ``fastcore.ot.sinkhorn``
/ ``sinkhorn2``) reach it through the same bindings when ``_sinkhorn.use_reference(True)`` routes
the calls there.  Each case runs a public function twice, fast and reference, on random problems
(both dtypes of ``M``, 1 to 3 histograms, zeros in ``a`` and ``b``, regularisations down to
0.001 x max|M|, where the row maxima shifts matter) and compares.

The reference does plain Sinkhorn only: over-relaxation (``overrelaxation`` != 1, and the
automatic one that ``"sinkhorn_epsilon_scaling"`` uses by default) is an accelerator of the fast
path whose iterates differ by design.  The log-domain comparisons therefore pass
``overrelaxation=1.0`` (POT's iterates; the default of ``"sinkhorn_log"`` and
``"sinkhorn_stabilized"`` already) and ``stopThr=0``, so that both paths run ``numItermax``
iterations, whose potentials, errors and plans must agree to rounding.  tests/c/ runs the same
comparison in C, on more problems (and the bad arguments, breakdowns of the scaling form), also
for aarch64 under qemu in CI.
"""
import contextlib

import numpy as np
import pytest

from fastcore import _sinkhorn, ot
from fastcore.sinkhorn import sinkhorn, sinkhorn2

TOL = 1e-9  # potentials, errors, costs: double in both paths, whatever the dtype of M
PLAN_TOL = {np.float32: dict(rtol=2e-6, atol=1e-12), np.float64: dict(rtol=1e-9, atol=1e-15)}


@contextlib.contextmanager
def reference_path():
    _sinkhorn.use_reference(True)
    try:
        yield
    finally:
        _sinkhorn.use_reference(False)


def both(fn, *args, **kwargs):
    fast = fn(*args, **kwargs)
    with reference_path():
        ref = fn(*args, **kwargs)
    return fast, ref


def problem(seed, dtype, n, m, k, zeros=True):
    """Squared distances between random points (M of dtype), a (n,), b (m,) or (m, k), masses 1."""
    rng = np.random.default_rng(seed)
    x, y = rng.random((n, 2)), rng.random((m, 2)) + 0.3
    M = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1).astype(dtype)
    a = rng.random(n) + 0.05
    b = rng.random((m, k)) + 0.05
    if zeros and n > 2:
        a[rng.random(n) < 0.2] = 0.0
    if zeros and m > 2:
        b[rng.random((m, k)) < 0.2] = 0.0
    a[0], b[0] = max(a[0], 0.05), np.maximum(b[0], 0.05)  # some mass in a and in every histogram
    a /= a.sum()
    b /= b.sum(0)
    return M, a, (b[:, 0] if k == 1 else b)


def close(x, y, tol=TOL):
    """Equal to rounding: |x - y| <= tol (1 + max |y|) over the finite entries, infinities alike."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    fin = np.isfinite(y)
    scale = 1.0 + (np.abs(y[fin]).max() if fin.any() else 0.0)
    np.testing.assert_allclose(x, y, rtol=tol, atol=tol * scale)


def close_logs(lf, lr):
    """The logs of both paths: iterations, outcome, the error after every iteration, potentials
    (log-domain methods) or scalings (method="sinkhorn")."""
    assert np.array_equal(lf["niter"], lr["niter"])
    assert np.array_equal(lf["converged"], lr["converged"])
    multi = np.ndim(lf["niter"]) == 1
    for ef, er in zip(lf["err"], lr["err"]) if multi else [(lf["err"], lr["err"])]:
        assert len(ef) == len(er)
        close(ef, er)
    for key in ("log_u", "log_v") if "log_u" in lf else ("u", "v"):
        close(lf[key], lr[key])


SHAPES = [(1, 7, 1), (9, 1, 1), (13, 17, 1), (40, 30, 2), (25, 60, 3), (60, 45, 1)]
CASES = [(seed, dtype, n, m, k, rel)
         for seed, (n, m, k) in enumerate(SHAPES)
         for dtype in (np.float32, np.float64)
         for rel in (0.2, 0.01, 0.001)]


def _reg(M, rel):
    return rel * float(np.abs(M).max())


@pytest.mark.parametrize("seed,dtype,n,m,k,rel", CASES)
@pytest.mark.parametrize("method", ["sinkhorn_log", "sinkhorn_stabilized", "sinkhorn_epsilon_scaling"])
def test_log_domain_iterates_and_plan(seed, dtype, n, m, k, rel, method):
    M, a, b = problem(seed, dtype, n, m, k)
    reg = _reg(M, rel)
    # epsilon scaling: a 2-stage schedule (4 reg, then reg), 15 iterations at 4 reg; plain Sinkhorn
    kw = dict(method=method, numItermax=40, stopThr=0.0, warn=False, log=True, overrelaxation=1.0,
              reg_start=4 * reg, reg_ratio=0.25, numInnerItermax=15)
    (Pf, lf), (Pr, lr) = both(sinkhorn, a, b, M, reg, **kw)
    close_logs(lf, lr)
    if k == 1:  # the plan (n, m), of the dtype of M
        assert Pf.dtype == Pr.dtype == dtype
        np.testing.assert_allclose(Pf, Pr, **PLAN_TOL[dtype])
    else:  # the k costs <P_h, M>
        close(Pf, Pr)
    if method == "sinkhorn_epsilon_scaling":
        np.testing.assert_array_equal(lf["reg_schedule"], lr["reg_schedule"])
        assert len(lf["reg_schedule"]) == 2


@pytest.mark.parametrize("seed,dtype,n,m,k,rel", CASES)
def test_costs_and_entropic_objective(seed, dtype, n, m, k, rel):
    M, a, b = problem(seed, dtype, n, m, k)
    reg = _reg(M, rel)
    for objective in ("cost", "entropic"):
        fast, ref = both(ot.sinkhorn2, a, b, M, reg, numItermax=30, stopThr=0.0, warn=False, objective=objective)
        close(fast, ref)


@pytest.mark.parametrize("seed,dtype,n,m,k", [(s, d, n, m, k) for s, (n, m, k) in enumerate(SHAPES)
                                              for d in (np.float32, np.float64)])
@pytest.mark.parametrize("rel", [1.0, 0.1, 0.03])
def test_scaling_method(seed, dtype, n, m, k, rel):
    """method="sinkhorn" (fc_sinkhorn_knopp): the scalings, errors, plan and costs from its kernel."""
    M, a, b = problem(seed, dtype, n, m, k)
    reg = _reg(M, rel)
    kw = dict(method="sinkhorn", numItermax=40, stopThr=0.0, warn=False, log=True)
    (Pf, lf), (Pr, lr) = both(sinkhorn, a, b, M, reg, **kw)
    close_logs(lf, lr)
    if k == 1:
        np.testing.assert_allclose(Pf, Pr, **PLAN_TOL[dtype])
    else:
        close(Pf, Pr)
    for objective in ("cost", "entropic"):
        fast, ref = both(sinkhorn2, a, b, M, reg, method="sinkhorn", numItermax=40, stopThr=0.0, warn=False,
                         objective=objective)
        close(fast, ref)


@pytest.mark.parametrize("method", ["sinkhorn", "sinkhorn_log", "sinkhorn_epsilon_scaling"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_converged_runs_stop_at_the_same_iteration(method, dtype):
    """With stopThr > 0 both paths stop at the same iteration, with the same state."""
    M, a, b = problem(11, dtype, 30, 35, 2)
    reg = _reg(M, 0.05)
    kw = dict(method=method, numItermax=3000, stopThr=1e-8, warn=False, log=True)
    if method != "sinkhorn":
        kw["overrelaxation"] = 1.0
    (Cf, lf), (Cr, lr) = both(sinkhorn, a, b, M, reg, **kw)
    assert np.all(lf["converged"]) and np.all(lr["converged"])
    close_logs(lf, lr)
    close(Cf, Cr)


@pytest.mark.parametrize("method", ["sinkhorn", "sinkhorn_log"])
def test_warm_start(method):
    M, a, b = problem(5, np.float64, 20, 25, 1)
    reg = _reg(M, 0.02)
    _, lg = sinkhorn(a, b, M, reg, method=method, numItermax=10, stopThr=0.0, warn=False, log=True)
    with np.errstate(divide="ignore"):  # log 0 = -inf where a or b is 0 (a valid warm start)
        ws = (lg["log_u"], lg["log_v"]) if method != "sinkhorn" else (np.log(lg["u"]), np.log(lg["v"]))
    (Pf, lf), (Pr, lr) = both(sinkhorn, a, b, M, reg, method=method, numItermax=20, stopThr=0.0, warn=False,
                              log=True, warmstart=ws)
    close_logs(lf, lr)
    np.testing.assert_allclose(Pf, Pr, **PLAN_TOL[np.float64])


def test_reference_has_no_overrelaxation():
    """Over-relaxation is a fast-path accelerator: the reference rejects it (relax != 1), including
    the automatic one that epsilon scaling uses by default."""
    M, a, b = problem(3, np.float64, 10, 12, 1)
    reg = _reg(M, 0.05)
    sinkhorn(a, b, M, reg, method="sinkhorn_epsilon_scaling", warn=False)  # fast: fine
    with reference_path():
        for kw in (dict(method="sinkhorn_epsilon_scaling"), dict(overrelaxation=1.5),
                   dict(overrelaxation="auto")):
            with pytest.raises(ValueError):
                sinkhorn(a, b, M, reg, warn=False, **kw)


def test_use_reference_reaches_the_kernels():
    """The switch reaches C: with float32 costs the fast path's row exponentials are a degree-9
    polynomial (relative error <= 7e-12) and its sums run in vector lanes, the reference's are libm's
    exp and plain loops, so the potentials agree to rounding but not bit for bit; were both answers
    from one path, they would be identical."""
    M, a, b = problem(7, np.float32, 50, 40, 1, zeros=False)
    reg = _reg(M, 0.05)
    (_, lf), (_, lr) = both(sinkhorn, a, b, M, reg, numItermax=20, stopThr=0.0, warn=False, log=True)
    close_logs(lf, lr)
    assert not np.array_equal(lf["log_u"], lr["log_u"])
