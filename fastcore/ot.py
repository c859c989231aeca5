"""Exact optimal transport: network-simplex EMD, 1-D OT, WMD / WRD with lower bounds,
batched solves, exact k-NN document search and partial OT (``partial_wasserstein``,
from ``fastcore/ot_partial.py``).

``fastcore.ot`` follows POT's ``ot.emd`` / ``ot.emd2`` signatures and return
conventions so that it can stand in for ``ot`` in user code, with these
differences, on purpose:

- the solver runs to optimality by default (``numItermax=None``); a limit that is
  given and hit gives a :class:`~fastcore.ConvergenceWarning` (a ``UserWarning``, as in POT)
  and ``result_code`` 3 in the log, or a :class:`~fastcore.ConvergenceError` with
  ``raise_on_limit=True``;
- float32 input works: computed in float64, returned in the dtype of ``M``;
- masses that differ by more than ``1e-7`` relative, negative or non-finite weights,
  NaN/inf costs and mismatched shapes are ``ValueError`` s.

The solver (``csrc/ot/simplex.h``) is a primal network simplex on the transportation
problem: zero-mass rows and columns are removed, the start is a greedy
matrix-minimum allocation (no big-M phase), pricing is a vectorised block search over
rows, and Cunningham's strongly-feasible-tree rule prevents cycling on degenerate
problems (ties, duplicated points, uniform weights).  Cost-only square problems whose
masses are all equal (e.g. WMD between two documents of the same length) are
assignment problems and are solved by shortest augmenting paths instead (no
degenerate pivots); both solvers sum the cost row by row, so they agree to the bit
on a unique optimum.
"""
import math

import numpy as np

from fastcore import _emd
from fastcore._threads import resolve_n_threads
from fastcore._validation import MAX_COUNT, as_float_array

from fastcore.sinkhorn import sinkhorn, sinkhorn2  # noqa: E402  (entropic OT, same module for users)

__all__ = [
    "emd", "emd2", "emd_1d", "emd2_1d", "wasserstein_1d", "quantile_function",
    "wmd", "wrd", "wrd_similarity", "wcd", "rwmd", "wrd_lower_bound",
    "emd2_batch", "pairwise", "knn", "MASS_RTOL",
    "sinkhorn", "sinkhorn2", "partial_wasserstein", "partial_wasserstein2",
]

#: Relative tolerance on ``|sum(a) - sum(b)|``; within it ``b`` is rescaled to ``a``'s mass.
MASS_RTOL = 1e-7

# POT's result codes (ot.lp.emd_wrap), reported in ``log["result_code"]``.
OPTIMAL = 1
MAX_ITER_REACHED = 3

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


# ------------------------------------------------------------------ validation
def _weights(w, n, name, fname, against="M"):
    """float64 1-d nonnegative finite weights of length n (empty/None = uniform); against names
    the argument n comes from."""
    if w is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(w)
    if w.ndim == 1 and w.shape[0] == 0:
        return np.full(n, 1.0 / n)
    w = as_float_array(w, name, dtype=np.float64, ndim=1)
    if w.shape[0] != n:
        raise ValueError(f"{fname}: {name} must have length {n} to match {against}, got {w.shape[0]}")
    _check_weights(w, name, fname)
    return w


def _check_weights(w, name, fname):
    if not np.isfinite(w).all():
        raise ValueError(f"{fname}: {name} contains NaN or infinite values")
    if (w < 0).any():
        raise ValueError(f"{fname}: {name} has negative weights (min {w.min():g})")
    if not w.any():
        raise ValueError(f"{fname}: {name} has zero total mass")


def _balance(a, b, fname, aname="a", bname="b", rescale=True):
    """b rescaled to a's mass; ValueError if they differ beyond MASS_RTOL.  The C solver
    rescales itself (rescale=False), identically on every path."""
    f = _mass_scale(a, b)  # (compared scaled by a power of two when the sums would overflow)
    sa, sb = (a.sum(), b.sum()) if f == 1.0 else ((a * f).sum(), (b * f).sum())
    if abs(sa - sb) > MASS_RTOL * max(sa, sb):
        raise ValueError(f"{fname}: {aname} and {bname} must have the same total mass "
                         f"(|sum({aname}) - sum({bname})| <= {MASS_RTOL:g} relative); got {sa / f!r} and {sb / f!r}")
    if rescale and sa != sb:
        b = b * (sa / sb)
    return b


def _cost_matrix(M, fname, name="M"):
    """(float64 C-contiguous M, output dtype)."""
    M = np.asarray(M)
    if M.dtype == _F64 and M.ndim == 2 and M.flags.c_contiguous:
        out_dtype = _F64
    else:
        M = as_float_array(M, name, ndim=2)
        out_dtype = M.dtype
        M = np.ascontiguousarray(M, dtype=np.float64)
    if M.shape[0] == 0 or M.shape[1] == 0:
        raise ValueError(f"{fname}: {name} must be non-empty, got shape {M.shape}")
    if not np.isfinite(M).all():
        bad = "NaN" if np.isnan(M).any() else "infinite values"
        raise ValueError(f"{fname}: {name} contains {bad}")
    return M, out_dtype


def _max_iter(numItermax):
    if numItermax is None:
        return 0
    if isinstance(numItermax, bool) or not isinstance(numItermax, (int, float, np.integer, np.floating)) \
            or not float(numItermax).is_integer():
        raise TypeError(f"numItermax must be None or a positive int, got {numItermax!r}")
    k = int(numItermax)
    if k < 1:
        raise ValueError(f"numItermax must be None (no limit) or >= 1, got {k}")
    if k > MAX_COUNT:
        raise ValueError(f"numItermax must be at most 2**62, got {numItermax!r}")
    return k


def _mass_scale(a, b):
    """A power of two f with f * a and f * b summing without overflow (1.0 when they do)."""
    s = max(float(a.max(initial=0.0)), float(b.max(initial=0.0)))
    if s * (a.size + b.size) < 1e300:
        return 1.0
    return math.ldexp(1.0, -math.frexp(s)[1])


def _center_dual(u, v, a, b):
    # POT's center_ot_dual: shift so that the potentials are balanced (invariant to a common
    # scale of a and b, which keeps the sums finite for masses near the float64 limit)
    f = _mass_scale(a, b)
    if f != 1.0:
        a, b = a * f, b * f
    c = (b.dot(v) - a.dot(u)) / (a.sum() + b.sum())
    return u + c, v - c


def _solve(a, b, M, fname, numItermax, raise_on_limit, want_plan, want_duals, center_dual):
    n, m = M.shape
    a = _weights(a, n, "a", fname)
    b = _weights(b, m, "b", fname)
    b = _balance(a, b, fname, rescale=False)
    plan, cost, u, v, status, n_iter = _emd.emd(a, b, M, want_plan, want_duals, _max_iter(numItermax))
    warning = None
    if status == _emd.MAX_ITER_REACHED:
        from fastcore._common import raise_for_status

        warning = ("numItermax reached before optimality: the plan is feasible but may be "
                   "suboptimal. Increase numItermax or leave it None (no limit).")
        raise_for_status(status, f"{fname} (numItermax={numItermax} pivots)", warn_on_limit=not raise_on_limit)
    if want_duals and center_dual:
        u, v = _center_dual(u, v, a, b)
    log = {
        "cost": cost,
        "u": u,
        "v": v,
        "warning": warning,
        "result_code": OPTIMAL if warning is None else MAX_ITER_REACHED,
        "n_iter": n_iter,
    }
    return plan, cost, log


def _check_potentials_init(pi, shape, fname, multi=False):
    """Validate POT's potentials_init=(u, v) (accepted, not used: see emd)."""
    if pi is None:
        return
    if not isinstance(pi, (tuple, list)) or len(pi) != 2:
        raise TypeError(f"{fname}: potentials_init must be a pair (u, v) of dual potentials")
    if len(shape) != 2:
        return  # M's own check names it
    for k, (x, size) in enumerate(zip(pi, shape)):
        name = f"potentials_init[{k}]"
        x = as_float_array(x, name, dtype=np.float64)
        ok = x.shape[:1] == (size,) and (x.ndim == 1 or (multi and k == 1 and x.ndim == 2))
        if not ok:
            raise ValueError(f"{fname}: {name} must have shape ({size},), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError(f"{fname}: {name} contains NaN or infinite values")


# ------------------------------------------------------------------ EMD
def emd(a, b, M, numItermax=None, log=False, center_dual=True, numThreads=1, check_marginals=True,
        potentials_init=None, *, raise_on_limit=False):
    """Optimal transport plan between histograms ``a`` and ``b`` for the cost ``M``.

    Solves ``min_G <G, M>`` subject to ``G >= 0``, ``G 1 = a``, ``G^T 1 = b``
    exactly (network simplex, run to optimality unless ``numItermax`` is given).

    Parameters
    ----------
    a : array_like of shape (n,), or empty
        Source weights, nonnegative.  Empty (``[]``) or None means uniform ``1/n``.
    b : array_like of shape (m,), or empty
        Target weights, same total mass as ``a`` to ``MASS_RTOL`` = 1e-7 relative
        (``b`` is then rescaled to ``a``'s mass, as POT does).
    M : array_like of shape (n, m), float32 or float64
        Finite costs (any sign).
    numItermax : int or None, default None
        Pivot limit; None runs to optimality.
    log : bool
        Also return a dict with ``cost``, ``u``, ``v`` (dual potentials, float64),
        ``warning`` (None or a message), ``result_code`` (1 optimal, 3 limit hit,
        POT's codes) and ``n_iter`` (pivots).
    center_dual : bool, default True
        Shift the duals as POT's ``center_ot_dual`` does (the duals are only defined
        up to ``u + c``, ``v - c``).
    numThreads, check_marginals :
        Accepted for POT compatibility; one problem is solved on one thread and the
        masses are always checked.
    potentials_init : pair (u, v) of arrays (n,), (m,), optional
        POT's warm start of the network simplex from dual potentials (e.g. ``log["u"]``,
        ``log["v"]`` of a run stopped by ``numItermax``).  Checked (shapes, finite values)
        and otherwise unused: the solve starts from its own greedy tree and reaches the
        same optimal cost (a warm start only saves pivots).
    raise_on_limit : bool, keyword-only
        Raise :class:`~fastcore.ConvergenceError` instead of warning when
        ``numItermax`` is hit.

    Returns
    -------
    G : ndarray of shape (n, m), dtype of ``M`` (computed in float64)
        An optimal basic plan: at most ``n + m - 1`` nonzeros.
    log : dict, only if ``log=True``

    Notes
    -----
    The duals satisfy ``u_i + v_j <= M_ij`` everywhere and equality where
    ``G_ij > 0`` (complementary slackness), to rounding; rows/columns of zero mass get
    the tightest feasible dual value.  Inputs are never modified.
    """
    M, out_dtype = _cost_matrix(M, "emd")
    _check_potentials_init(potentials_init, M.shape, "emd")
    G, cost, lg = _solve(a, b, M, "emd", numItermax, raise_on_limit, True, log, center_dual)
    if out_dtype != _F64:
        G = G.astype(out_dtype)
    if log:
        return G, lg
    return G


def emd2(a, b, M, processes=1, numItermax=None, log=False, return_matrix=False, center_dual=True,
         numThreads=1, check_marginals=True, potentials_init=None, *, raise_on_limit=False):
    """Optimal transport cost ``min_G <G, M>`` (see :func:`emd`); no dense plan is built.

    Parameters
    ----------
    a, M, numItermax, center_dual, potentials_init, raise_on_limit :
        As in :func:`emd` (``potentials_init``: ``u`` of shape (n,), ``v`` of shape (m,) or
        (m, k) for a 2-d ``b``).
    b : array_like of shape (m,) or (m, k)
        With ``k`` columns, ``k`` problems sharing ``a`` and ``M`` are solved and
        ``k`` costs returned (POT's convention); without ``log`` they are solved in
        one C call, ``numThreads`` threads over the columns (results do not depend
        on it).
    log : bool
        Also return the log dict of :func:`emd`.  With a 2-d ``b``, POT's structure: a
        list with one ``[cost, log]`` per column.
    return_matrix : bool
        Put the plan in ``log["G"]`` (needs ``log=True``, as in POT).
    numThreads : int or "max", default 1
        Threads over the columns of a 2-d ``b`` (otherwise accepted for POT
        compatibility: one problem is solved on one thread).
    processes, check_marginals :
        Accepted for POT compatibility.

    Returns
    -------
    cost : float (a scalar of ``M``'s dtype), or ndarray of shape (k,) for 2-d ``b``
        (POT returns a list there; the array holds the same values)
    log : dict, only if ``log=True`` (for 2-d ``b``, see ``log`` above)
    """
    if potentials_init is not None:
        _check_potentials_init(potentials_init, np.shape(M), "emd2", np.ndim(b) == 2)
    if not log and numItermax is None:
        cost = _emd.emd2_fast(a, b, M, MASS_RTOL)  # None: not applicable, or bad input
        if cost is not None:
            return cost
    M, out_dtype = _cost_matrix(M, "emd2")
    if b is not None and np.ndim(b) == 2:
        bb = as_float_array(b, "b", dtype=np.float64, ndim=2)
        if bb.shape[0] != M.shape[1]:
            raise ValueError(f"emd2: b must have shape ({M.shape[1]}, k) to match M, got {bb.shape}")
        if not log:
            return _emd2_columns(a, bb, M, out_dtype, numItermax, numThreads, raise_on_limit)
        # POT's structure: one [cost, log] per column
        return [list(emd2(a, np.ascontiguousarray(bb[:, col]), M, numItermax=numItermax, log=True,
                          return_matrix=return_matrix, center_dual=center_dual, raise_on_limit=raise_on_limit))
                for col in range(bb.shape[1])]
    want_plan = bool(log and return_matrix)
    G, cost, lg = _solve(a, b, M, "emd2", numItermax, raise_on_limit, want_plan, log, center_dual)
    cost = out_dtype.type(cost)
    if log:
        if want_plan:
            lg["G"] = G.astype(out_dtype) if out_dtype != _F64 else G
        return cost, lg
    return cost


def _emd2_columns(a, bb, M, out_dtype, numItermax, numThreads, raise_on_limit):
    """Costs of (a, bb[:, k], M) for every column k, in one threaded C call."""
    fname = "emd2"
    n = M.shape[0]
    a = None if _is_empty(a) else _weights(a, n, "a", fname)
    n_threads = resolve_n_threads(None if numThreads == "max" else numThreads, "numThreads")
    costs, status, _ = _emd.emd2_columns(a, np.ascontiguousarray(bb.T), M, MASS_RTOL, _max_iter(numItermax),
                                         n_threads)
    bad = np.flatnonzero((status != 0) & (status != _emd.MAX_ITER_REACHED))
    if bad.size:
        from fastcore._common import raise_for_status

        k = int(bad[0])
        aa = a if a is not None else np.full(n, 1.0 / n)
        _balance(aa, _weights(bb[:, k], M.shape[1], f"b[:, {k}]", fname), fname, bname=f"b[:, {k}]")
        raise_for_status(int(status[k]), f"{fname}: column {k} of b")
    hit = np.flatnonzero(status == _emd.MAX_ITER_REACHED)
    if hit.size:
        from fastcore._common import raise_for_status

        raise_for_status(int(status[hit[0]]), f"{fname} ({hit.size} column(s) of b, first {hit[0]}): "
                         "numItermax reached before optimality", warn_on_limit=not raise_on_limit)
    return costs.astype(out_dtype, copy=False)


# ------------------------------------------------------------------ 1-D
_METRICS_1D = ("sqeuclidean", "euclidean", "cityblock", "minkowski")


def _values_1d(x, name, fname):
    x = np.asarray(x)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    x = as_float_array(x, name, ndim=1)
    if x.shape[0] == 0:
        raise ValueError(f"{fname}: {name} is empty")
    if not np.isfinite(x).all():
        raise ValueError(f"{fname}: {name} contains NaN or infinite values")
    return x


def _plan_1d(xa, xb, a, b):
    """Monotone (north-west corner on sorted supports) coupling: (i, j, flow) arrays."""
    ia = np.argsort(xa, kind="stable")
    ib = np.argsort(xb, kind="stable")
    ca = np.cumsum(a[ia])
    cb = np.cumsum(b[ib])
    total = ca[-1]
    cb[-1] = total
    cb = np.minimum(cb, total)
    t = np.union1d(ca, cb)
    t = t[t <= total]
    starts = np.concatenate(([0.0], t[:-1]))
    flows = t - starts
    keep = flows > 0
    starts, flows = starts[keep], flows[keep]
    i = np.minimum(np.searchsorted(ca, starts, side="right"), len(ca) - 1)
    j = np.minimum(np.searchsorted(cb, starts, side="right"), len(cb) - 1)
    return ia[i], ib[j], flows


def _ground_1d(d, metric, p):
    if metric == "sqeuclidean":
        return d * d
    if metric in ("euclidean", "cityblock"):
        return d
    return d ** p


def _check_p(p, fname):
    p = float(p)
    if not (p >= 1 and np.isfinite(p)):
        raise ValueError(f"{fname}: p must be a finite number >= 1, got {p}")
    return p


def _emd_1d_core(x_a, x_b, a, b, metric, p, fname):
    xa = _values_1d(x_a, "x_a", fname)
    xb = _values_1d(x_b, "x_b", fname)
    if metric not in _METRICS_1D:
        raise ValueError(f"{fname}: metric must be one of {_METRICS_1D}, got {metric!r}")
    p = _check_p(p, fname)
    a = _weights(a, xa.shape[0], "a", fname, "x_a")
    b = _balance(a, _weights(b, xb.shape[0], "b", fname, "x_b"), fname)
    out_dtype = np.result_type(xa.dtype, xb.dtype)
    i, j, f = _plan_1d(xa.astype(np.float64), xb.astype(np.float64), a, b)
    d = np.abs(xa.astype(np.float64)[i] - xb.astype(np.float64)[j])
    cost = float(np.dot(f, _ground_1d(d, metric, p)))
    return i, j, f, cost, (xa.shape[0], xb.shape[0]), out_dtype


def _plan_1d_matrix(i, j, f, n, m, dt, dense):
    if dense:
        G = np.zeros((n, m), dtype=np.float64)
        np.add.at(G, (i, j), f)
        return G.astype(dt, copy=False)
    import scipy.sparse

    return scipy.sparse.coo_matrix((f.astype(dt), (i, j)), shape=(n, m))


def emd_1d(x_a, x_b, a=None, b=None, metric="sqeuclidean", p=1.0, dense=True, log=False,
           check_marginals=True):
    """Optimal plan between two weighted 1-D samples (POT's ``ot.emd_1d``).

    For a ground cost that is a convex function of ``|x - y|`` the monotone
    (quantile) coupling is optimal, so this sorts both supports and walks the two
    cumulative distributions: ``O((n + m) log(n + m))``.

    Parameters
    ----------
    x_a : array_like of shape (n,) or (n, 1);  x_b : shape (m,) or (m, 1)
        Finite positions, float32 or float64.  Other 2-d shapes are a ValueError (POT: an
        AssertionError).
    a, b : array_like of shape (n,) / (m,), optional
        Weights (None or empty = uniform), equal masses as in :func:`emd`.
    metric : {"sqeuclidean", "euclidean", "cityblock", "minkowski"}
        Ground cost ``|x - y|^2``, ``|x - y|``, ``|x - y|`` or ``|x - y|^p``.
    p : float >= 1
        Exponent for ``"minkowski"``.
    dense : bool
        Return a dense (n, m) plan (else a ``scipy.sparse.coo_matrix``).
    log : bool
        Also return POT's dict: ``cost`` (a scalar of the inputs' float dtype) and
        ``perms_x_a``, ``perms_x_b`` (int64: the row and column of each stored flow, in the
        order of the monotone walk).
    check_marginals : bool
        Accepted for POT compatibility: the masses are always checked.

    Returns
    -------
    G : ndarray (n, m) of the inputs' float dtype, or coo_matrix
    log : dict, only if ``log=True``
    """
    i, j, f, cost, (n, m), dt = _emd_1d_core(x_a, x_b, a, b, metric, p, "emd_1d")
    G = _plan_1d_matrix(i, j, f, n, m, dt, dense)
    if log:
        return G, {"cost": dt.type(cost), "perms_x_a": i.astype(np.int64), "perms_x_b": j.astype(np.int64)}
    return G


def emd2_1d(x_a, x_b, a=None, b=None, metric="sqeuclidean", p=1.0, dense=True, log=False):
    """Optimal transport cost between two weighted 1-D samples (POT's ``ot.emd2_1d``).

    Parameters
    ----------
    x_a, x_b, a, b, metric, p :
        As in :func:`emd_1d`.
    dense : bool
        With ``log=True``: ``log["G"]`` is a dense ndarray, else a ``scipy.sparse.coo_matrix``.
    log : bool
        Also return ``{"G": plan}``.

    Returns
    -------
    cost : scalar of the inputs' float dtype
    log : dict, only if ``log=True``
    """
    i, j, f, cost, (n, m), dt = _emd_1d_core(x_a, x_b, a, b, metric, p, "emd2_1d")
    cost = dt.type(cost)
    if log:
        return cost, {"G": _plan_1d_matrix(i, j, f, n, m, dt, dense)}
    return cost


def _values_wass(x, name, fname):
    """Finite float positions of shape (n,) or (n, d), n >= 1."""
    x = as_float_array(x, name)
    if x.ndim not in (1, 2):
        raise ValueError(f"{fname}: {name} must have shape (n,) or (n, d), got {x.shape}")
    if x.shape[0] == 0 or (x.ndim == 2 and x.shape[1] == 0):
        raise ValueError(f"{fname}: {name} is empty (shape {x.shape})")
    if not np.isfinite(x).all():
        raise ValueError(f"{fname}: {name} contains NaN or infinite values")
    return x


def _weights_wass(w, n, d, batched, name, fname, against):
    """float64 (n, d) weights, each column normalised to sum 1 (None/empty = uniform; shape
    (n,) is shared by all d columns, as POT broadcasts it)."""
    if w is None or (np.ndim(w) == 1 and np.shape(w)[0] == 0):
        return np.full((n, d), 1.0 / n)
    w = as_float_array(w, name, dtype=np.float64)
    if w.ndim == 1 or (w.ndim == 2 and batched):
        if w.shape[0] != n or (w.ndim == 2 and w.shape[1] != d):
            want = f"({n},)" + (f" or ({n}, {d})" if batched else "")
            raise ValueError(f"{fname}: {name} must have shape {want} to match {against}, got {w.shape}")
    else:
        want = f"({n},)" + (f" or ({n}, {d})" if batched else "")
        raise ValueError(f"{fname}: {name} must have shape {want} to match {against}, got {w.shape}")
    W = np.repeat(w[:, None], d, axis=1) if w.ndim == 1 else np.array(w)
    for k in range(d):
        _check_weights(W[:, k], name if d == 1 or w.ndim == 1 else f"{name}[:, {k}]", fname)
    return W / W.sum(axis=0)


def wasserstein_1d(u_values, v_values, u_weights=None, v_weights=None, p=1, require_sort=True,
                   return_plans=False):
    """``W_p(u, v)^p`` between weighted 1-D samples, or d of them at once (POT's ``ot.wasserstein_1d``).

    Like POT, this returns the transport cost for ``|x - y|^p``, i.e. the p-Wasserstein
    distance **raised to the power p** (for ``p = 1`` it equals
    ``scipy.stats.wasserstein_distance``).  Unlike POT (which assumes weights summing to 1),
    the weights are normalised to sum to 1 in each column (as SciPy does), so unequal totals
    are fine.

    Parameters
    ----------
    u_values : array_like of shape (n,) or (n, d)
        Finite positions.  With shape (n, d), column k is the k-th sample (d independent
        problems, POT's batched convention); ``v_values`` must then have d columns too.
    v_values : array_like of shape (m,) or (m, d)
    u_weights, v_weights : array_like of shape (n,) / (m,), or (n, d) / (m, d), optional
        Nonnegative weights with positive sums; None (or empty) = uniform.  A 1-d weight
        vector with 2-d values is shared by all d columns (as in POT).
    p : float >= 1
    require_sort : bool
        Accepted for POT compatibility: the values are always sorted here (POT takes
        ``False`` to mean "already sorted"; on sorted input both give the same result).
    return_plans : {False, True, "coo_tuple"}
        Also return the d optimal (monotone) plans: a list of ``scipy.sparse.coo_matrix``
        of shape (n, m), or with ``"coo_tuple"`` a list of named tuples
        ``PlanTuple(data, rows, cols)`` (POT's two forms).  Zero flows are not stored.

    Returns
    -------
    cost : float of the inputs' float dtype (1-d values), or ndarray of shape (d,)
    plans : list of d plans, only if ``return_plans``
    """
    fname = "wasserstein_1d"
    xu = _values_wass(u_values, "u_values", fname)
    xv = _values_wass(v_values, "v_values", fname)
    if xu.ndim != xv.ndim or (xu.ndim == 2 and xu.shape[1] != xv.shape[1]):
        raise ValueError(f"{fname}: u_values and v_values must both be 1-d, or both 2-d with the same "
                         f"number of columns; got shapes {xu.shape} and {xv.shape}")
    p = _check_p(p, fname)
    if not (return_plans is False or return_plans is True or
            (isinstance(return_plans, str) and return_plans == "coo_tuple")):
        raise ValueError(f"{fname}: return_plans must be False, True or 'coo_tuple', got {return_plans!r}")
    batched = xu.ndim == 2
    out_dtype = np.result_type(xu.dtype, xv.dtype)
    U = (xu if batched else xu[:, None]).astype(np.float64)
    V = (xv if batched else xv[:, None]).astype(np.float64)
    (n, d), m = U.shape, V.shape[0]
    WU = _weights_wass(u_weights, n, d, batched, "u_weights", fname, "u_values")
    WV = _weights_wass(v_weights, m, d, batched, "v_weights", fname, "v_values")
    costs = np.empty(d)
    plans = []
    for k in range(d):
        wu, wv = WU[:, k], WV[:, k]
        i, j, f = _plan_1d(U[:, k], V[:, k], wu, wv * (wu.sum() / wv.sum()))
        dist = np.abs(U[i, k] - V[j, k])
        costs[k] = np.dot(f, dist ** p if p != 1 else dist)
        if return_plans is not False:
            plans.append((f.astype(out_dtype), i, j))
    res = costs.astype(out_dtype) if batched else out_dtype.type(costs[0])
    if return_plans is False:
        return res
    if return_plans is True:
        import scipy.sparse

        return res, [scipy.sparse.coo_matrix((f, (i, j)), shape=(n, m)) for f, i, j in plans]
    return res, [PlanTuple(f, i, j) for f, i, j in plans]


class PlanTuple(tuple):
    """``(data, rows, cols)`` of a sparse 1-D plan, as POT's ``wasserstein_1d(return_plans="coo_tuple")``."""

    __slots__ = ()

    def __new__(cls, data, rows, cols):
        return tuple.__new__(cls, (data, rows, cols))

    data = property(lambda self: self[0], doc="Flows (the plan's nonzero entries).")
    rows = property(lambda self: self[1], doc="Row (``u_values``) index of each flow.")
    cols = property(lambda self: self[2], doc="Column (``v_values``) index of each flow.")


def quantile_function(qs, cws, xs, return_index=False):
    """Quantile function of (batched) empirical distributions (POT's ``ot.lp.solver_1d.quantile_function``).

    For each quantile ``q`` the first position whose cumulative weight is ``>= q``
    (``searchsorted`` on the left), clipped to the last position.

    Parameters
    ----------
    qs : array_like of shape (k,) or (k, ...)
        Quantiles at which to evaluate.
    cws : array_like of shape (n,) or (n, ...)
        Cumulative weights (nondecreasing along axis 0), batched like ``xs``.
    xs : array_like of shape (n,) or (n, ...)
        Positions, sorted along axis 0, matching ``cws``.
    return_index : bool
        Also return the indices into ``xs``.

    Returns
    -------
    q : ndarray of shape (k,) or (k, ...), dtype of ``xs``
    idx : ndarray of int64, same shape, only if ``return_index``
    """
    fname = "quantile_function"
    qs = as_float_array(qs, "qs")
    cws = as_float_array(cws, "cws")
    xs = as_float_array(xs, "xs")
    if xs.ndim == 0 or xs.shape[0] == 0:
        raise ValueError(f"{fname}: xs must have shape (n, ...) with n >= 1, got {xs.shape}")
    if cws.shape != xs.shape:
        raise ValueError(f"{fname}: cws must have the shape of xs {xs.shape}, got {cws.shape}")
    if qs.ndim != cws.ndim or qs.shape[1:] != cws.shape[1:]:
        raise ValueError(f"{fname}: qs must have shape (k,{' ' if cws.ndim > 1 else ''}"
                         f"{', '.join(map(str, cws.shape[1:]))}) to match cws, got {qs.shape}")
    for arr, name in ((qs, "qs"), (cws, "cws")):
        if np.isnan(arr).any():
            raise ValueError(f"{fname}: {name} contains NaN")
    n = xs.shape[0]
    if cws.ndim == 1:
        idx = np.searchsorted(cws, qs, side="left")
    else:
        c2 = cws.reshape(n, -1)
        q2 = qs.reshape(qs.shape[0], -1)
        idx = np.empty(q2.shape, dtype=np.int64)
        for k in range(c2.shape[1]):
            idx[:, k] = np.searchsorted(c2[:, k], q2[:, k], side="left")
        idx = idx.reshape(qs.shape)
    idx = np.clip(idx, 0, n - 1).astype(np.int64, copy=False)
    q = np.take_along_axis(xs, idx, axis=0)
    return (q, idx) if return_index else q


# ------------------------------------------------------------------ documents
def _doc(X, name, fname, d=None):
    X = as_float_array(X, name, ndim=2)
    if X.shape[0] == 0:
        raise ValueError(f"{fname}: {name} is an empty document (no vectors); the distance is undefined")
    if X.shape[1] == 0 or (d is not None and X.shape[1] != d):
        raise ValueError(f"{fname}: {name} must have shape (*, {d if d is not None else 'd >= 1'}), got {X.shape}")
    X = np.ascontiguousarray(X, dtype=np.float64)
    if not np.isfinite(X).all():
        raise ValueError(f"{fname}: {name} contains NaN or infinite values")
    return X


def _doc_scale(arrays):
    """A power of two f bringing the largest |x| of the arrays near 1 when it lies outside
    [1e-150, 1e150] (where squares under- or overflow float64), else 1.0.  Distances are
    homogeneous, so they are computed on f * x (exactly scaled) and divided by f."""
    s = max((float(np.abs(x).max()) for x in arrays if x.size), default=0.0)
    if s == 0.0 or 1e-150 <= s <= 1e150:
        return 1.0
    return math.ldexp(1.0, -math.frexp(s)[1])


def _unscale(dist, f, fname):
    """dist / f (dist computed on vectors scaled by f), an error if that leaves float64."""
    if f == 1.0:
        return dist
    with np.errstate(over="ignore"):
        out = dist / f
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{fname}: the distance exceeds the float64 range (the vectors reach "
                         f"{1.0 / f:.3g})")
    return out


def _doc_weights(w, n, name, fname):
    if w is None or (np.ndim(w) == 1 and np.shape(w)[0] == 0):
        return np.full(n, 1.0 / n)  # exactly the weights pairwise/knn use
    w = _weights(w, n, name, fname)
    return w / w.sum()


def _wrd_doc(X, name, fname, d=None):
    """(unit vectors, weights proportional to norms) with zero vectors dropped."""
    X = _doc(X, name, fname, d)
    X = X * _doc_scale([X])  # WRD ignores the scale of a document: keep the norms in range
    norms = np.sqrt(np.einsum("ij,ij->i", X, X))
    keep = norms > 0
    if not keep.any():
        raise ValueError(f"{fname}: every vector of {name} is zero; WRD is undefined")
    X, norms = X[keep], norms[keep]
    return np.ascontiguousarray(X / norms[:, None]), norms / norms.sum()




def _single(metric, X, a, Y, b):
    offa = np.array([0, X.shape[0]], dtype=np.int64)
    offb = np.array([0, Y.shape[0]], dtype=np.int64)
    return float(_emd.doc_pairwise(metric, X, a, offa, Y, b, offb, 1)[0, 0])


def wmd(X, Y, a=None, b=None):
    """Word Mover's Distance between two documents given as word vectors.

    The exact transport cost between the token clouds with Euclidean (not squared)
    ground cost ``||x_i - y_j||``.

    Parameters
    ----------
    X : array_like of shape (n, d);  Y : shape (m, d)
        Word vectors (float32 or float64; computed in float64).  Empty documents
        raise ValueError.
    a, b : array_like of shape (n,) / (m,), optional
        Token weights (None = uniform 1/n, the nBOW weights of the WMD paper once
        duplicates are merged); normalised to sum to 1.

    Returns
    -------
    float
    """
    X = _doc(X, "X", "wmd")
    Y = _doc(Y, "Y", "wmd", X.shape[1])
    f = _doc_scale([X, Y])
    a = _doc_weights(a, X.shape[0], "a", "wmd")
    b = _doc_weights(b, Y.shape[0], "b", "wmd")
    return float(_unscale(_single(0, X * f, a, Y * f, b), f, "wmd"))


def wrd(X, Y):
    """Word Rotator's Distance (Yokoi et al. 2020) between two documents.

    Weights proportional to the vector norms, ground cost ``1 - cos(x_i, y_j)`` (clamped
    to >= 0 against rounding); zero vectors carry no mass and are dropped.  Lies in
    [0, 2]; invariant to rescaling either document.

    Parameters
    ----------
    X : array_like of shape (n, d);  Y : shape (m, d)

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Empty document, or one whose vectors are all zero.
    """
    Xu, a = _wrd_doc(X, "X", "wrd")
    Yu, b = _wrd_doc(Y, "Y", "wrd", Xu.shape[1])
    return _single(1, Xu, a, Yu, b)


def wrd_similarity(X, Y):
    """``1 - wrd(X, Y)``, in [-1, 1] (the post's ``word_rotator_similarity``)."""
    return 1.0 - wrd(X, Y)


def wcd(X, Y, a=None, b=None):
    """Word Centroid Distance ``||sum_i a_i x_i - sum_j b_j y_j||``, a lower bound of :func:`wmd`."""
    X = _doc(X, "X", "wcd")
    Y = _doc(Y, "Y", "wcd", X.shape[1])
    a = _doc_weights(a, X.shape[0], "a", "wcd")
    b = _doc_weights(b, Y.shape[0], "b", "wcd")
    f = _doc_scale([X, Y])
    return float(_unscale(np.linalg.norm(a @ (X * f) - b @ (Y * f)), f, "wcd"))


def _euclid(X, Y):
    return np.sqrt(((X[:, None, :] - Y[None, :, :]) ** 2).sum(-1))


def rwmd(X, Y, a=None, b=None):
    """Relaxed WMD ``max(sum_i a_i min_j D_ij, sum_j b_j min_i D_ij)``, a lower bound of :func:`wmd`."""
    X = _doc(X, "X", "rwmd")
    Y = _doc(Y, "Y", "rwmd", X.shape[1])
    a = _doc_weights(a, X.shape[0], "a", "rwmd")
    b = _doc_weights(b, Y.shape[0], "b", "rwmd")
    f = _doc_scale([X, Y])
    D = _euclid(X * f, Y * f)
    return float(_unscale(max(a @ D.min(1), b @ D.min(0)), f, "rwmd"))


def wrd_lower_bound(X, Y):
    """``0.5 * ||sum_i x_i / Z - sum_j y_j / Z'||^2`` with ``Z = sum_i ||x_i||``: a lower bound of :func:`wrd`."""
    Xu, a = _wrd_doc(X, "X", "wrd_lower_bound")
    Yu, b = _wrd_doc(Y, "Y", "wrd_lower_bound", Xu.shape[1])
    diff = a @ Xu - b @ Yu
    return float(0.5 * diff @ diff)


# ------------------------------------------------------------------ batched
def emd2_batch(problems, numItermax=None, n_threads=None, *, raise_on_limit=False):
    """Costs of many independent problems, solved in C across threads.

    Parameters
    ----------
    problems : sequence of (a, b, M)
        Each as in :func:`emd2` (1-d ``b``; empty/None weights = uniform).
    numItermax : int or None
        Pivot limit per problem (None = none).
    n_threads : int or None
        Threads (None = all cores); results do not depend on it.
    raise_on_limit : bool
        Raise instead of warning when a problem hits ``numItermax``.

    Returns
    -------
    ndarray of shape (len(problems),), float64
    """
    n_threads = resolve_n_threads(n_threads)
    problems = list(problems)
    prepared = []
    for k, pb in enumerate(problems):
        try:
            a, b, M = pb
        except (TypeError, ValueError):
            raise ValueError(f"emd2_batch: problems[{k}] must be a tuple (a, b, M)") from None
        if type(M) is np.ndarray and M.dtype == _F64 and M.ndim == 2 and M.flags.c_contiguous and M.size:
            n, m = M.shape
            a = None if _is_empty(a) else a
            b = None if _is_empty(b) else b
            if (a is None or _plain_vector(a, n)) and (b is None or _plain_vector(b, m)):
                prepared.append((a, b, M))  # values are checked in C
                continue
        prepared.append(_batch_prepare(pb, k))
    costs, status, _ = _emd.emd2_batch(prepared, MASS_RTOL, _max_iter(numItermax), n_threads)
    bad = np.flatnonzero((status != 0) & (status != _emd.MAX_ITER_REACHED))
    for k in bad:
        _batch_prepare(problems[k], k)  # raises the precise error
        from fastcore._common import raise_for_status

        raise_for_status(int(status[k]), f"emd2_batch: problems[{k}]")
    hit = np.flatnonzero(status == _emd.MAX_ITER_REACHED)
    if hit.size:
        from fastcore._common import raise_for_status

        raise_for_status(int(status[hit[0]]), f"emd2_batch ({hit.size} problem(s), first {hit[0]}): "
                         "numItermax reached before optimality",
                         warn_on_limit=not raise_on_limit)
    return costs


def _is_empty(w):
    return w is None or (isinstance(w, (list, tuple)) and len(w) == 0) or \
        (isinstance(w, np.ndarray) and w.ndim == 1 and w.shape[0] == 0)


def _plain_vector(w, n):
    return type(w) is np.ndarray and w.dtype == _F64 and w.ndim == 1 and w.shape[0] == n and w.flags.c_contiguous


def _batch_prepare(pb, k):
    a, b, M = pb
    fname = f"emd2_batch: problems[{k}]"
    try:
        M, _ = _cost_matrix(M, fname)
        a = _weights(a, M.shape[0], "a", fname)
        b = _balance(a, _weights(b, M.shape[1], "b", fname), fname, rescale=False)
    except (TypeError, ValueError) as e:  # the shared checks name the array, not the problem
        if str(e).startswith(fname):
            raise
        raise type(e)(f"{fname}: {e}") from None
    return a, b, M


_METRIC_CODES = {"wmd": 0, "wrd": 1}


def _pack(docs, name, fname, metric, d=None):
    """(X stacked, weights, offsets int64, per-doc centroids) of a list of documents."""
    if isinstance(docs, np.ndarray) and docs.ndim == 2:
        raise TypeError(f"{fname}: {name} must be a sequence of (n_i, d) arrays, got one 2-d array")
    docs = list(docs)
    Xs, ws = [], []
    for k, X in enumerate(docs):
        if metric == 1:
            Xu, w = _wrd_doc(X, f"{name}[{k}]", fname, d)
        else:
            Xu = _doc(X, f"{name}[{k}]", fname, d)
            w = np.full(Xu.shape[0], 1.0 / Xu.shape[0])
        d = Xu.shape[1]
        Xs.append(Xu)
        ws.append(w)
    off = np.zeros(len(docs) + 1, dtype=np.int64)
    if docs:
        off[1:] = np.cumsum([x.shape[0] for x in Xs])
        X = np.ascontiguousarray(np.concatenate(Xs))
        w = np.concatenate(ws)
        cent = np.ascontiguousarray(np.stack([wk @ Xk for wk, Xk in zip(ws, Xs)]))
    else:
        X = np.zeros((1, d or 1))
        w = np.zeros(1)
        cent = np.zeros((1, d or 1))
    return X, w, off, cent, d


def _metric(metric, fname):
    if metric not in _METRIC_CODES:
        raise ValueError(f"{fname}: metric must be 'wmd' or 'wrd', got {metric!r}")
    return _METRIC_CODES[metric]


def pairwise(docs_a, docs_b=None, metric="wmd", n_threads=None):
    """Exact WMD or WRD between every pair of documents, solved in C across threads.

    Parameters
    ----------
    docs_a : sequence of array_like (n_i, d)
    docs_b : sequence of array_like (m_j, d), optional (default ``docs_a``)
    metric : {"wmd", "wrd"}
        WMD with uniform token weights, or WRD (see :func:`wrd`).
    n_threads : int or None
        None = all cores; results do not depend on it.

    Returns
    -------
    ndarray of shape (len(docs_a), len(docs_b)), float64
    """
    fname = "pairwise"
    code = _metric(metric, fname)
    n_threads = resolve_n_threads(n_threads)
    XA, wa, offa, _, d = _pack(docs_a, "docs_a", fname, code)
    if docs_b is None:
        XB, wb, offb = XA, wa, offa
    else:
        XB, wb, offb, _, d2 = _pack(docs_b, "docs_b", fname, code, d)
        if d is not None and d2 is not None and d != d2:
            raise ValueError(f"{fname}: docs_a and docs_b have different dimensions {d} and {d2}")
    f = _doc_scale([XA, XB]) if code == 0 else 1.0  # (WRD's documents are scaled one by one)
    if f != 1.0:
        XA, XB = XA * f, (XA * f if docs_b is None else XB * f)
    return _unscale(_emd.doc_pairwise(code, XA, wa, offa, XB, wb, offb, n_threads), f, fname)


def knn(queries, corpus, k, metric="wmd", prune=True, n_threads=None):
    """The ``k`` nearest corpus documents of each query under exact WMD or WRD.

    With ``prune=True`` candidates are visited in increasing order of the centroid
    bound (WCD for WMD, ``wrd_lower_bound`` for WRD); the search stops when that bound
    exceeds the current k-th distance, and a candidate whose relaxed bound (RWMD)
    exceeds it is skipped without an exact solve.  Bounds must beat the k-th distance by
    a relative margin of 1e-9, so the answer is exactly the brute-force one.

    Parameters
    ----------
    queries, corpus : sequences of array_like (n_i, d)
    k : int, 1 <= k <= len(corpus)
    metric : {"wmd", "wrd"}
    prune : bool
        False solves every pair (brute force, for reference).
    n_threads : int or None
        Threads over queries (None = all cores); results do not depend on it.

    Returns
    -------
    indices : ndarray (len(queries), k), int64
        Corpus indices sorted by (distance, index): ties go to the smaller index.
    distances : ndarray (len(queries), k), float64
    stats : dict
        ``n_exact`` (per query, exact solves made) and ``n_bound`` (relaxed bounds
        evaluated).
    """
    fname = "knn"
    code = _metric(metric, fname)
    n_threads = resolve_n_threads(n_threads)
    XC, wc, offc, cc, d = _pack(corpus, "corpus", fname, code)
    nc = len(offc) - 1
    if nc == 0:
        raise ValueError(f"{fname}: corpus is empty")
    if isinstance(k, bool) or not hasattr(k, "__index__"):
        raise TypeError(f"{fname}: k must be an int, got {type(k).__name__}")
    k = int(k)
    if not 1 <= k <= nc:
        raise ValueError(f"{fname}: k must be in [1, {nc}] (corpus size), got {k}")
    XQ, wq, offq, cq, _ = _pack(queries, "queries", fname, code, d)
    f = _doc_scale([XQ, XC]) if code == 0 else 1.0  # (WRD's documents are scaled one by one)
    if f != 1.0:
        XQ, XC, cq, cc = XQ * f, XC * f, cq * f, cc * f
    idx, dist, nex, nrw = _emd.doc_knn(code, XQ, wq, offq, XC, wc, offc, cq, cc, k, bool(prune), n_threads)
    return idx, _unscale(dist, f, fname), {"n_exact": nex, "n_bound": nrw}


# ------------------------------------------------------------------ partial OT
# (in fastcore/ot_partial.py, which uses the helpers above; imported last for that reason)
from fastcore.ot_partial import partial_wasserstein, partial_wasserstein2  # noqa: E402


# ------------------------------------------------------------------ tour
def tour_ot(show):
    """The tour's section for this module (see fastcore/_tour.py)."""
    from fastcore._tour import timed

    show.title("ot: exact optimal transport (network simplex)")
    rng = np.random.default_rng(0)
    x = rng.random((400, 2))
    y = rng.random((400, 2)) + 0.25
    M = np.sqrt(((x[:, None] - y[None]) ** 2).sum(-1))
    a = np.full(400, 1 / 400)
    (cost, lg), t = timed(emd2, a, a, M, log=True, repeat=3)
    show.line(f"emd2 400x400 uniform, Euclidean: cost {cost:.6f}, {lg['n_iter']} pivots, {t * 1e3:.1f} ms")
    show.line(f"dual gap |sum(a u) + sum(b v) - cost| = {abs(a @ lg['u'] + a @ lg['v'] - cost):.1e}")
    show.line(f"wasserstein_1d on x[:,0], y[:,0]: {wasserstein_1d(x[:, 0], y[:, 0]):.6f}")
    docs = [rng.standard_normal((rng.integers(5, 15), 50)) for _ in range(40)]
    D, t = timed(pairwise, docs, docs, "wmd", repeat=1)
    show.line(f"pairwise WMD 40x40 documents of 5-15 words, d=50: {t * 1e3:.1f} ms; WMD(d0, d1) = {D[0, 1]:.4f}")
    show.line(f"bounds WCD {wcd(docs[0], docs[1]):.4f} <= RWMD {rwmd(docs[0], docs[1]):.4f} <= WMD {D[0, 1]:.4f}")
    show.line(f"WRD similarity of d0 and 3*d0: {wrd_similarity(docs[0], 3 * docs[0]):.6f}")
    _, tf = timed(emd2, a, a, M, repeat=3)
    try:
        import ot as pot
    except ImportError:
        return
    _, tp = timed(pot.emd2, a, a, M, repeat=3)
    show.compare("emd2 400x400 uniform", tf, tp, "POT")
