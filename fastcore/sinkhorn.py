"""Entropic optimal transport: Sinkhorn in the log domain, stable at small ``reg``.

``sinkhorn`` and ``sinkhorn2`` take POT's arguments and follow its return
conventions (``ot.sinkhorn`` / ``ot.sinkhorn2``); they are also available as
``fastcore.ot.sinkhorn`` and ``fastcore.ot.sinkhorn2``, beside the exact solver.

The default method, ``"sinkhorn_log"``, iterates on the log-potentials with a fused C
log-sum-exp (``csrc/ot/sinkhorn_rows.h``): one pass over ``M`` per iteration computes the
row update and, from the same exponentials, the column sums that give both the
stopping error and the column update.  ``exp(-M/reg)`` is never formed (one row of
exponentials at a time), so no ``reg`` underflows.  ``"sinkhorn"`` is the classic
scaling form on the kernel ``exp(-M/reg)`` (fast, fails for small ``reg`` like
POT's); ``"sinkhorn_epsilon_scaling"`` anneals ``reg`` from the spread of ``M`` down
to the target, warm-starting the potentials, which converges where a cold start
at small ``reg`` would need a very large number of iterations.
"""
import numbers

import numpy as np

from fastcore import _sinkhorn
from fastcore._errors import ConvergenceWarning, warn_user
from fastcore._threads import resolve_n_threads
from fastcore._validation import MAX_COUNT, as_float_array, check_finite

__all__ = ["sinkhorn", "sinkhorn2"]

METHODS = ("sinkhorn", "sinkhorn_log", "sinkhorn_epsilon_scaling", "sinkhorn_stabilized")

#: relative tolerance on |sum(a) - sum(b)| / max(sum(a), sum(b)); within it, b is rescaled to a's mass
MASS_RTOL = 1e-6

# exp(-x) of the stored kernel is 0 beyond these (scaling method): the kernel flushes entries below
# the dtype's smallest normal number to 0 (csrc/ot/sinkhorn_scaling.h), so a row whose every
# entry is past the limit is a zero row (it was 103 / 744, the subnormal limits, which let such
# rows through to a "numerical breakdown" warning instead of this error)
_KERNEL_LIMIT = {np.dtype(dt): float(-np.log(np.finfo(dt).tiny)) for dt in (np.float32, np.float64)}
# ... and overflows to inf beyond these
_KERNEL_OVERFLOW = {np.dtype(np.float32): 88.0, np.dtype(np.float64): 709.0}


# ---------------------------------------------------------------- validation
def _weights(w, name, size):
    """A float64 weight vector/matrix (empty = uniform over ``size``)."""
    arr = np.asarray(w)
    if arr.size == 0 and arr.ndim <= 1:
        return np.full(size, 1.0 / size)
    arr = as_float_array(arr, name, dtype=np.float64)
    check_finite(arr, name)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be non-negative, got a minimum of {arr.min():.3g}")
    return arr


def _positive_int(x, name, minimum=1):
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(x).__name__}")
    if x < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {x}")
    if x > MAX_COUNT:
        raise ValueError(f"{name} must be at most 2**62, got {x}")
    return int(x)


def _positive_float(x, name, allow_zero=False):
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    x = float(x)
    ok = (x >= 0 if allow_zero else x > 0) and np.isfinite(x)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, got {x}")
    return x


def _prepare(a, b, M, reg, method, numItermax, stopThr, warmstart):
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise ValueError(f"Unknown method {method!r}; use one of {', '.join(METHODS)}")
    method = method.lower()
    M = as_float_array(M, "M", ndim=2)
    n, m = M.shape
    if n == 0 or m == 0:
        raise ValueError(f"M must be non-empty, got shape ({n}, {m})")
    check_finite(M, "M")
    reg = _positive_float(reg, "reg")
    with np.errstate(over="ignore"):
        spread = float(np.abs(M).max()) / reg
    if not (np.isfinite(spread) and np.isfinite(1.0 / reg)):
        raise ValueError(f"reg={reg:g} is too small for M (max |M| = {float(np.abs(M).max()):g}): the "
                         f"potentials M / reg overflow float64; use reg > max|M| * 1e-300")
    numItermax = _positive_int(numItermax, "numItermax")
    stopThr = _positive_float(stopThr, "stopThr", allow_zero=True)
    a = _weights(a, "a", n)
    b = _weights(b, "b", m)
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"a must have shape ({n},) to match M of shape ({n}, {m}), got {a.shape}")
    if b.ndim not in (1, 2) or b.shape[0] != m or (b.ndim == 2 and b.shape[1] == 0):
        raise ValueError(f"b must have shape ({m},) or ({m}, k) with k >= 1 to match M of shape "
                         f"({n}, {m}), got {b.shape}")
    multi = b.ndim == 2
    B = np.ascontiguousarray(b.T if multi else b[None, :])  # (k, m)
    sa = a.sum()
    if not sa > 0:
        raise ValueError("a has no mass (all weights are 0)")
    sb = B.sum(axis=1)
    if not (sb > 0).all():
        raise ValueError("b has no mass (all weights are 0)" + (" in some column" if multi else ""))
    gap = np.abs(sb - sa) / np.maximum(sb, sa)
    if (gap > MASS_RTOL).any():
        h = int(np.argmax(gap))
        raise ValueError(
            f"a and b must have equal masses (Sinkhorn transports all of a onto all of b): "
            f"sum(a) = {sa:.9g}, sum(b{'[:, %d]' % h if multi else ''}) = {sb[h]:.9g}; masses that "
            f"differ by at most a relative {MASS_RTOL:g} are accepted (b is rescaled to a's mass)")
    B = B * (sa / sb)[:, None]
    k = B.shape[0]
    ws = None
    if warmstart is not None:
        if not isinstance(warmstart, (tuple, list)) or len(warmstart) != 2:
            raise TypeError("warmstart must be a pair (log_u, log_v) of dual potentials")
        wu = as_float_array(warmstart[0], "warmstart[0]", dtype=np.float64)
        wv = as_float_array(warmstart[1], "warmstart[1]", dtype=np.float64)
        eu, ev = ((n, k), (m, k)) if multi else ((n,), (m,))
        if wu.shape != eu or wv.shape != ev:
            raise ValueError(f"warmstart must hold log_u of shape {eu} and log_v of shape {ev}, "
                             f"got {wu.shape} and {wv.shape}")
        for arr, name in ((wu, "warmstart[0]"), (wv, "warmstart[1]")):
            if np.isnan(arr).any() or np.isposinf(arr).any():
                raise ValueError(f"{name} contains NaN or +inf")
        if method == "sinkhorn_stabilized":  # POT's (alpha, beta), in cost units
            wu, wv = wu / reg, wv / reg
        ws = (np.ascontiguousarray(wu.T if multi else wu[None, :]),
              np.ascontiguousarray(wv.T if multi else wv[None, :]))
    return a, B, M, reg, method, numItermax, stopThr, multi, ws


# ---------------------------------------------------------------- solver
def _relax(overrelaxation, method):
    if overrelaxation is None:
        return 0.0 if method == "sinkhorn_epsilon_scaling" else 1.0
    if isinstance(overrelaxation, str):
        if overrelaxation != "auto":
            raise ValueError(f"overrelaxation must be None, 'auto' or a number in [1, 2), got {overrelaxation!r}")
        if method == "sinkhorn":
            raise ValueError("overrelaxation applies to the log-domain methods only")
        return 0.0
    w = _positive_float(overrelaxation, "overrelaxation")
    if not 1.0 <= w < 2.0:
        raise ValueError(f"overrelaxation must be in [1, 2), got {w}")
    if method == "sinkhorn" and w != 1.0:
        raise ValueError("overrelaxation applies to the log-domain methods only")
    return w


def _solve(a, b, M, reg, method, numItermax, stopThr, warmstart, n_threads, reg_start, reg_ratio,
           numInnerItermax, stopThrInner, overrelaxation, want_plan=False, want_hist=False):
    """Run the C solver.  Returns (alpha (k, n), beta (k, m), info dict).  The scaling method
    also puts the plan (if want_plan and k == 1), cost and plogp in info (from its kernel).
    want_hist: keep the error of every iteration (for log / verbose: numItermax doubles per
    histogram, so not otherwise; info["hist"] is None then)."""
    a, B, M, reg, method, numItermax, stopThr, multi, ws = _prepare(
        a, b, M, reg, method, numItermax, stopThr, warmstart)
    n, m = M.shape
    k = B.shape[0]
    relax = _relax(overrelaxation, method)
    niter = np.zeros(k, dtype=np.intp)
    err = np.zeros(k)
    state = np.zeros(k, dtype=np.intc)
    if method == "sinkhorn":
        lim = _KERNEL_LIMIT[M.dtype]
        row_min = M.min(axis=1)  # (no copies of M)
        rmin = row_min[a > 0] / reg
        cmin = M.min(axis=0)[(B > 0).any(axis=0)] / reg
        over = _KERNEL_OVERFLOW[M.dtype]
        if rmin.max() > lim or cmin.max() > lim or -row_min.min() / reg > over:
            raise ValueError(
                f"method='sinkhorn': exp(-M/reg) under- or overflows in {M.dtype} (a row or column of "
                f"the kernel is 0, or an entry is infinite) at reg={reg:g}; use method='sinkhorn_log' "
                f"or 'sinkhorn_epsilon_scaling'")
        with np.errstate(over="ignore"):
            u = np.full((k, n), 1.0 / n) if ws is None else np.exp(ws[0])
        if not np.isfinite(u).all():
            raise ValueError("warmstart[0] overflows exp() for method='sinkhorn' (the scaling u is "
                             "infinite); use method='sinkhorn_log'")
        v = np.empty((k, m))
        hist = np.zeros((k, numItermax)) if want_hist else None
        plan = np.empty(M.shape, dtype=M.dtype) if want_plan and not multi else None
        cost, plogp = np.empty(k), np.empty(k)
        _sinkhorn.sinkhorn_knopp(M, a, B, reg, numItermax, stopThr, u, v, niter, err, state, hist,
                                 plan, cost, plogp, n_threads)
        with np.errstate(divide="ignore"):
            alpha, beta = np.log(u), np.log(v)
        regs = np.array([reg])
    else:
        if method == "sinkhorn_epsilon_scaling":
            start = float(np.ptp(M)) if reg_start is None else _positive_float(reg_start, "reg_start")
            ratio = _positive_float(reg_ratio, "reg_ratio")
            if not ratio < 1:
                raise ValueError(f"reg_ratio must be in (0, 1), got {ratio}")
            regs = [start]
            while regs[-1] * ratio > reg:
                regs.append(regs[-1] * ratio)
            regs = [r for r in regs if r > reg] + [reg]
            numInnerItermax = _positive_int(numInnerItermax, "numInnerItermax")
            inner = (max(stopThr, 1e-3 * a.sum() / np.sqrt(m)) if stopThrInner is None
                     else _positive_float(stopThrInner, "stopThrInner", allow_zero=True))
        else:
            regs, inner = [reg], 0.0
        regs = np.asarray(regs, dtype=np.float64)
        # the warm start is given at the target reg; the C side wants it at regs[0]
        alpha = np.zeros((k, n)) if ws is None else ws[0] * (reg / regs[0])
        alpha = np.ascontiguousarray(alpha)
        beta = np.empty((k, m))
        cap = (len(regs) - 1) * numInnerItermax + numItermax
        hist = np.zeros((k, cap)) if want_hist else None
        _sinkhorn.sinkhorn_log(M, a, B, regs, numInnerItermax, inner, numItermax, stopThr, relax, alpha,
                               beta, niter, err, state, hist, n_threads)
    info = {"niter": niter, "err": err, "state": state, "hist": hist, "multi": multi, "M": M,
            "method": method, "regs": regs, "reg": reg,  # reg: the validated Python float
            "a": np.ascontiguousarray(a, dtype=np.float64), "B": np.ascontiguousarray(B, dtype=np.float64),
            "stopThr": stopThr}
    if method == "sinkhorn":
        info.update(plan=plan, cost=cost, plogp=plogp)
    return alpha, beta, info


def _report(info, warn):
    state = info["state"]
    if not warn or (state == _sinkhorn.CONVERGED).all():
        return
    h = int(np.argmax(state != _sinkhorn.CONVERGED))
    which = f" (histogram {h})" if info["multi"] else ""
    if state[h] == _PRECISION:
        msg = (f"sinkhorn: the last iterate met stopThr={info['stopThr']:g}, but the plan returned (one "
               f"more row update) has a marginal error of {info['err'][h]:.3g}{which}: the iterations "
               f"stalled at the precision float64 leaves at reg={info['reg']:g} (max|M|/reg = "
               f"{info['spread']:.3g}). Increase reg or stopThr.")
    elif state[h] == _sinkhorn.BREAKDOWN:
        msg = (f"sinkhorn: numerical breakdown after {info['niter'][h]} iterations{which}: the scalings "
               f"u, v left the floating-point range (reg is too small for the kernel exp(-M/reg)); "
               f"the last finite iterate is returned. Use method='sinkhorn_log'.")
    else:
        msg = (f"sinkhorn did not converge{which}: marginal error {info['err'][h]:.3g} after "
               f"{info['niter'][h]} iterations. Increase numItermax or reg, or use "
               f"method='sinkhorn_epsilon_scaling'.")
    warn_user(msg, ConvergenceWarning)


_PRECISION = -2  # a state of this module: converged iterations, a returned plan outside stopThr


def _plan_and_costs(alpha, beta, want_plan, n_threads, info):
    """The returned plan (when want_plan), <P, M> and sum P log P per histogram.  For the
    log-domain methods the plan is one more row update from beta (alpha is refreshed to
    it), computed so that it stays exact where alpha + beta - M / reg loses digits, and its
    measured marginal error replaces info["err"]: a run whose iterations met stopThr while
    the plan it returns does not is reported as not converged (state _PRECISION)."""
    if "cost" in info:  # the scaling method computed them from its kernel
        return info["plan"], info["cost"], info["plogp"]
    M, k = info["M"], alpha.shape[0]
    plan = np.empty(M.shape, dtype=M.dtype) if want_plan else None
    cost, plogp, err = np.empty(k), np.empty(k), np.empty(k)
    _sinkhorn.sinkhorn_plan(M, info["a"], info["B"], alpha, beta, 1.0 / info["reg"], plan, cost, plogp,
                            err, n_threads)
    info["err"] = err
    state = info["state"]
    lost = (state == _sinkhorn.CONVERGED) & ~(err < info["stopThr"])
    if lost.any():
        state[lost] = _PRECISION
        info["spread"] = float(np.abs(M).max()) / info["reg"]
    return plan, cost, plogp


def _log_dict(alpha, beta, info):
    multi = info["multi"]
    k = alpha.shape[0]
    niter = info["niter"]
    errs = [info["hist"][h, : niter[h]].tolist() for h in range(k)]
    conv = info["state"] == _sinkhorn.CONVERGED
    lu, lv = (alpha.T.copy(), beta.T.copy()) if multi else (alpha[0].copy(), beta[0].copy())
    out = {
        "err": errs if multi else errs[0],
        "niter": niter.copy() if multi else int(niter[0]),
        "converged": conv if multi else bool(conv[0]),
    }
    with np.errstate(over="ignore", under="ignore"):
        if info["method"] != "sinkhorn":
            out["log_u"], out["log_v"] = lu, lv
        out["u"], out["v"] = np.exp(lu), np.exp(lv)
    if info["method"] == "sinkhorn_epsilon_scaling":
        out["reg_schedule"] = info["regs"].copy()
    if info["method"] == "sinkhorn_stabilized":  # POT's keys: absorbed potentials in cost units
        reg = info["reg"]
        out["n_iter"] = out["niter"]
        out["logu"], out["logv"] = lu.copy(), lv.copy()
        out["alpha"], out["beta"] = reg * lu, reg * lv
        out["warmstart"] = (out["alpha"], out["beta"])
    return out


def _verbose(info, print_period):
    for h in range(len(info["niter"])):
        print("{:5s}|{:12s}".format("It.", "Err") + "\n" + "-" * 19)
        for t, e in enumerate(info["hist"][h, : info["niter"][h]]):
            if t % print_period == 0 or t == info["niter"][h] - 1:
                print("{:5d}|{:8e}|".format(t, e))


def _pot_extras(tau, print_period, method):
    """Check POT's ``tau`` (no effect here) and return the verbose print period."""
    _positive_float(tau, "tau")
    if print_period is None:
        return 20 if isinstance(method, str) and method.lower() == "sinkhorn_stabilized" else 10
    return _positive_int(print_period, "print_period")


_DOC_PARAMS = """
    Parameters
    ----------
    a : array_like of shape (n,), float
        Source weights (non-negative).  An empty list means uniform, as in POT.
    b : array_like of shape (m,) or (m, k), float
        Target weights; with shape (m, k), k target histograms are solved at once (one
        pass over ``M`` per iteration serves all of them; each iterates and stops exactly
        as it would alone, so the result equals a loop over the columns).  Each histogram
        must carry the mass of ``a``: masses that differ by at most a relative
        ``MASS_RTOL = 1e-6`` are accepted and ``b`` is rescaled to ``sum(a)``; larger
        differences are a ValueError (Sinkhorn needs equal masses).
    M : array_like of shape (n, m), float32 or float64
        Cost matrix, finite.  float32 is read as float32 (half the memory traffic) but all
        potentials, exponentials and sums are computed in float64.
    reg : float > 0
        Entropic regularisation.
    method : {"sinkhorn_log", "sinkhorn", "sinkhorn_epsilon_scaling", "sinkhorn_stabilized"}
        ``"sinkhorn_log"`` (default): log domain, no overflow for any ``reg`` above
        ``max|M| * 1e-300`` (ValueError below); the plan returned is one more row update,
        computed shifted by each row's log-sum-exp (its rows sum to ``a``), and convergence is
        judged on its measured marginals (below ``reg`` ~ ``1e-10 * max|M|`` float64 leaves the
        potentials too few digits for ``stopThr = 1e-9``: a ConvergenceWarning says so).  ``"sinkhorn"``:
        scaling form on ``exp(-M/reg)`` (ValueError if that kernel underflows; a ConvergenceWarning
        and the last finite iterate if the scalings leave the float range later).
        ``"sinkhorn_epsilon_scaling"``: log domain with ``reg`` annealed geometrically
        (factor ``reg_ratio``) from ``reg_start`` (default ``M.max() - M.min()``) to ``reg``.
        ``"sinkhorn_stabilized"``: POT's name for its absorbing scaling solver, which exists to
        survive small ``reg``; solved here by the ``"sinkhorn_log"`` iterations (the same
        fixed point, stable for any ``reg``), with POT's stabilized interface: ``warmstart`` is
        ``(alpha, beta)`` in cost units and the log adds ``alpha``, ``beta`` (``reg * log_u``,
        ``reg * log_v``), ``logu``, ``logv``, ``n_iter`` and ``warmstart = (alpha, beta)``.
    numItermax : int >= 1, default 1000
        Iteration budget at the target ``reg`` (epsilon scaling: plus up to
        ``numInnerItermax`` iterations at each larger ``reg``).
    stopThr : float >= 0, default 1e-9
        Stop when ``||P.sum(0) - b||_2 < stopThr``; the row marginals are exact after each
        iteration, as in POT.  The error is checked at every iteration at no cost.
    verbose : bool
        Print the error every 10 iterations (after the solve).
    log : bool
        Also return a dict: ``err`` (error after every iteration), ``niter`` (iterations
        done), ``converged``, ``u``, ``v`` and, for the log-domain methods, ``log_u``,
        ``log_v`` (``P = exp(log_u[:, None] + log_v[None, :] - M / reg)``; dual potentials
        ``f = reg * log_u``, ``g = reg * log_v``), ``reg_schedule`` for epsilon scaling.
        With ``b`` of shape (m, k) these have a trailing axis k (``err`` is a list of k lists).
    warn : bool, default True
        Warn (:class:`fastcore.ConvergenceWarning`) when the stopping error is not reached.
    warmstart : pair (log_u, log_v), optional
        Starting dual potentials at the target ``reg``, shapes (n,), (m,) (or (n, k), (m, k)),
        e.g. ``log["log_u"], log["log_v"]`` of an earlier solve.  The first step updates
        ``log_v`` from ``log_u``, as POT does.  For ``"sinkhorn_stabilized"``, POT's
        ``(alpha, beta) = (reg * log_u, reg * log_v)`` (e.g. ``log["warmstart"]``).
    n_threads : int or None, default None
        Threads (None = all cores).  The result does not depend on it.
    tau : float > 0, default 1e3
        POT's absorption threshold of ``"sinkhorn_stabilized"``: accepted (and checked) for
        compatibility, with no effect (the log-domain iterations never need absorbing).
    print_period : int >= 1, optional
        With ``verbose``, print the error every ``print_period`` iterations (default 10,
        20 for ``"sinkhorn_stabilized"`` as in POT).
    reg_start, reg_ratio, numInnerItermax, stopThrInner :
        Epsilon scaling only: first ``reg`` (default ``M.max() - M.min()``), factor between
        stages (0.5), iteration cap per intermediate stage (100) and its stopping error
        (default ``max(stopThr, 1e-3 * sum(a) / sqrt(m))``).
    overrelaxation : None, "auto" or float in [1, 2)
        Log-domain methods: over-relaxed Sinkhorn at the target ``reg``
        (``log_u <- log_u + w * (update - log_u)``, same for ``log_v``), which converges
        many times faster at small ``reg``.  None (default): 1 (plain Sinkhorn, POT's
        iterates) for ``"sinkhorn_log"``, ``"auto"`` for ``"sinkhorn_epsilon_scaling"``.
        ``"auto"`` sets ``w`` from the observed convergence rate (linear SOR theory,
        ``w = 2 / (1 + sqrt(1 - rate))``, capped at 1.99) and falls back to plain Sinkhorn
        (``w = 1``) for good when the error stalls (less than 1% of progress in 100
        iterations).  With ``w != 1`` the rows are no longer exact after an iteration and the
        stopping error is ``sqrt(||P.sum(0) - b||^2 + ||P.sum(1) - a||^2)``, which on a stalled
        slow mode is ~1 / (2 - w) times the true marginal error.

        At very small ``reg`` (e.g. 0.001 x median cost) the limit is conditioning, not
        float64 round-off (which is ~1e-15 here): a row and a column can be nearly isolated
        from the rest of the plan (exchanging ~1e-7 of their mass with it), and Sinkhorn then
        corrects their imbalance by ~1e-7 of itself per iteration.  Measured at n = m = 500,
        reg = 0.001 x median cost, epsilon scaling, stopThr = 1e-9, numItermax = 5000: 11 of
        12 random problems converge (in 880-2900 iterations); the 12th stops with an error of
        1.8e-7 and a warning (all 12 reach stopThr = 1e-6 in at most 2050 iterations).
"""


def sinkhorn(a, b, M, reg, method="sinkhorn_log", numItermax=1000, stopThr=1e-9, verbose=False,
             log=False, warn=True, warmstart=None, *, n_threads=None, reg_start=None, reg_ratio=0.5,
             numInnerItermax=100, stopThrInner=None, overrelaxation=None, tau=1e3, print_period=None):
    print_period = _pot_extras(tau, print_period, method)
    n_threads = resolve_n_threads(n_threads)
    alpha, beta, info = _solve(a, b, M, reg, method, numItermax, stopThr, warmstart, n_threads,
                               reg_start, reg_ratio, numInnerItermax, stopThrInner, overrelaxation,
                               want_plan=True, want_hist=bool(log or verbose))
    if verbose:
        _verbose(info, print_period)
    plan, cost, _ = _plan_and_costs(alpha, beta, not info["multi"], n_threads, info)
    _report(info, warn)
    res = cost if info["multi"] else plan
    if log:
        return res, _log_dict(alpha, beta, info)
    return res


sinkhorn.__doc__ = """Entropic optimal transport plan (POT's ``ot.sinkhorn``, stable by default).

    Solves ``min_P <P, M> + reg * sum_ij P_ij log P_ij`` subject to ``P 1 = a``,
    ``P^T 1 = b``, ``P >= 0``.
""" + _DOC_PARAMS + """
    Returns
    -------
    P : ndarray of shape (n, m), dtype of ``M`` (float32 or float64)
        The transport plan, when ``b`` is 1-d.  With ``b`` of shape (m, k), POT's
        convention: the k costs ``<P_k, M>`` (float64) instead.
    log : dict
        Only if ``log=True`` (see above).

    Notes
    -----
    Inputs are never modified.  NaN/inf in ``a``, ``b`` or ``M``, negative weights,
    ``reg <= 0``, mismatched shapes and unequal masses raise ValueError.
    """


def sinkhorn2(a, b, M, reg, method="sinkhorn_log", numItermax=1000, stopThr=1e-9, verbose=False,
              log=False, warn=True, warmstart=None, *, objective="cost", n_threads=None,
              reg_start=None, reg_ratio=0.5, numInnerItermax=100, stopThrInner=None,
              overrelaxation=None, tau=1e3, print_period=None):
    print_period = _pot_extras(tau, print_period, method)
    if objective not in ("cost", "entropic"):
        raise ValueError(f"objective must be 'cost' or 'entropic', got {objective!r}")
    n_threads = resolve_n_threads(n_threads)
    alpha, beta, info = _solve(a, b, M, reg, method, numItermax, stopThr, warmstart, n_threads,
                               reg_start, reg_ratio, numInnerItermax, stopThrInner, overrelaxation,
                               want_hist=bool(log or verbose))
    if verbose:
        _verbose(info, print_period)
    _, cost, plogp = _plan_and_costs(alpha, beta, False, n_threads, info)
    _report(info, warn)
    val = cost if objective == "cost" else cost + info["reg"] * plogp
    res = val if info["multi"] else val[0]
    if log:
        return res, _log_dict(alpha, beta, info)
    return res


sinkhorn2.__doc__ = """Entropic optimal transport cost (POT's ``ot.sinkhorn2``, stable by default).

    Returns ``<P, M>`` for the entropic plan ``P`` of :func:`sinkhorn` (POT's
    convention), or the entropic objective ``<P, M> + reg * sum P log P`` with
    ``objective="entropic"``.  Unlike POT, ``warn`` defaults to True.
""" + _DOC_PARAMS + """
    objective : {"cost", "entropic"}, default "cost"

    Returns
    -------
    W : float (numpy.float64), or ndarray of shape (k,) when ``b`` has shape (m, k)
        Always float64, whatever the dtype of ``M``.
    log : dict
        Only if ``log=True``.
    """


def tour_sinkhorn(show):
    """The tour's section for this module (see fastcore/_tour.py)."""
    from fastcore._tour import timed

    show.title("sinkhorn / sinkhorn2 (entropic optimal transport)")
    rng = np.random.default_rng(0)
    x, y = rng.random((300, 2)), rng.random((300, 2)) + 0.3
    M = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    a = np.full(300, 1 / 300)
    reg = 1e-3 * float(np.median(M))
    P, lg = sinkhorn(a, a, M, reg, method="sinkhorn_epsilon_scaling", log=True, n_threads=1)
    show.line(f"n = m = 300, reg = 0.001 x median cost: converged={lg['converged']} in {lg['niter']} "
              f"iterations, marginal error {np.abs(P.sum(0) - a).sum():.1e}, cost <P, M> = {(P * M).sum():.5f}")

    def np_log_sinkhorn(a, b, M, reg, iters):
        u, v = np.zeros(len(a)), np.zeros(len(b))
        for _ in range(iters):
            z = v[None, :] - M / reg
            mx = z.max(1, keepdims=True)
            u = np.log(a) - (mx[:, 0] + np.log(np.exp(z - mx).sum(1)))
            z = u[:, None] - M / reg
            mx = z.max(0, keepdims=True)
            v = np.log(b) - (mx[0] + np.log(np.exp(z - mx).sum(0)))
        return u, v

    reg = 0.05 * float(np.median(M))
    _, tf = timed(sinkhorn, a, a, M, reg, numItermax=20, stopThr=0.0, warn=False, n_threads=1, repeat=3)
    _, tr = timed(np_log_sinkhorn, a, a, M, reg, 20, repeat=3)
    show.compare("log-domain, 300x300, 20 iterations", tf, tr)
