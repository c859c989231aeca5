"""Exact partial optimal transport (POT's ``ot.partial.partial_wasserstein`` / ``partial_wasserstein2``).

Partial OT moves only ``m`` units of mass between histograms whose totals may
differ: ``min_G <G, M>`` subject to ``G >= 0``, ``G 1 <= a``, ``G^T 1 <= b`` and
``1^T G 1 = m``.  Like POT (Chapel et al. 2020), it is reduced to one balanced
problem solved exactly by :func:`fastcore.ot.emd`: ``nb_dummies`` reservoir points
are appended on each side, the source reservoir holding ``sum(b) - m`` and the
target reservoir ``sum(a) - m``; a real point reaches a reservoir at no cost and
reservoir-to-reservoir transport is priced high enough that none happens, so the
real block of the balanced plan carries exactly ``m``.

The functions are re-exported by :mod:`fastcore.ot` (use them from there).
"""
import numbers

import numpy as np

from fastcore.ot import MASS_RTOL, _F64, _cost_matrix, _weights, emd

__all__ = ["partial_wasserstein", "partial_wasserstein2"]


def _mass(m, sa, sb, fname):
    """The mass to move: min(sum(a), sum(b)) for None, else m checked against it."""
    cap = min(sa, sb)
    if m is None:
        return cap
    if isinstance(m, bool) or not isinstance(m, numbers.Real):
        raise TypeError(f"{fname}: m must be None or a real number, got {type(m).__name__}")
    m = float(m)
    if not np.isfinite(m):
        raise ValueError(f"{fname}: m must be finite, got {m!r}")
    if m < 0:
        raise ValueError(f"{fname}: problem infeasible: m must be >= 0, got {m!r}")
    if m > cap:
        if m - cap > MASS_RTOL * cap:
            raise ValueError(f"{fname}: problem infeasible: m must be <= min(sum(a), sum(b)) = {cap!r} "
                             f"(to {MASS_RTOL:g} relative), got {m!r}")
        m = cap  # rounding: move everything the lighter side has
    return m


def _n_dummies(nb_dummies, fname):
    if isinstance(nb_dummies, bool) or not isinstance(nb_dummies, numbers.Integral):
        raise TypeError(f"{fname}: nb_dummies must be an int, got {type(nb_dummies).__name__}")
    if nb_dummies < 1:
        raise ValueError(f"{fname}: nb_dummies must be >= 1, got {nb_dummies}")
    return int(nb_dummies)


def _partial(a, b, M, m, nb_dummies, fname, kwargs):
    """(plan float64 (n, k), cost float64, emd's log, output dtype)."""
    M, out_dtype = _cost_matrix(M, fname)
    n, k = M.shape
    a = _weights(a, n, "a", fname)
    b = _weights(b, k, "b", fname)
    nd = _n_dummies(nb_dummies, fname)
    sa, sb = float(a.sum()), float(b.sum())
    m = _mass(m, sa, sb, fname)
    # reservoir-to-reservoir price: POT's 2 max(M) when M >= 0 (then it is the same problem);
    # it must exceed -min(M) for the real block to carry exactly m, so 2 max|M| in general
    big = 2.0 * float(np.abs(M).max())
    if big == 0.0:
        big = 1.0  # M = 0: any positive price keeps the reservoirs apart
    if not np.isfinite(big):
        raise ValueError(f"{fname}: M's entries must be below 8.9e307 in magnitude (the reservoir cost "
                         "is twice the largest)")
    a_ext = np.concatenate([a, np.full(nd, max(sb - m, 0.0) / nd)])
    b_ext = np.concatenate([b, np.full(nd, max(sa - m, 0.0) / nd)])
    M_ext = np.zeros((n + nd, k + nd))
    M_ext[:n, :k] = M
    M_ext[n:, k:] = big
    G, lg = emd(a_ext, b_ext, M_ext, log=True, **kwargs)
    if lg["warning"] is not None:
        # a plan stopped early may route mass reservoir-to-reservoir: it is not a partial plan of mass m
        raise ValueError(f"{fname}: the exact solver stopped at numItermax before optimality; the plan "
                         "may not carry m.  Increase numItermax or leave it None (no limit).")
    G = np.ascontiguousarray(G[:n, :k])
    cost = float(np.sum(G * M))
    lg["u"] = lg["u"][:n]
    lg["v"] = lg["v"][:k]
    lg["partial_w_dist"] = out_dtype.type(cost)
    return G, cost, lg, out_dtype


def partial_wasserstein(a, b, M, m=None, nb_dummies=1, log=False, **kwargs):
    """Exact partial optimal transport plan moving ``m`` units of mass (POT's ``ot.partial.partial_wasserstein``).

    Solves ``min_G <G, M>`` subject to ``G >= 0``, ``G 1 <= a``, ``G^T 1 <= b``,
    ``sum(G) = m``, by reduction to one balanced problem (reservoir points, see the
    module docstring) solved to optimality by :func:`fastcore.ot.emd`.

    Parameters
    ----------
    a : array_like of shape (n,), or empty
        Source weights, nonnegative, any total (empty or None = uniform ``1/n``).
    b : array_like of shape (k,), or empty
        Target weights, nonnegative, any total (empty or None = uniform ``1/k``).
    M : array_like of shape (n, k), float32 or float64
        Finite costs.
    m : float or None, default None
        Mass to move, ``0 <= m <= min(sum(a), sum(b))`` (a value above the bound by
        at most ``MASS_RTOL`` = 1e-7 relative is taken as the bound).  None moves
        ``min(sum(a), sum(b))``.
    nb_dummies : int, default 1
        Reservoir points per side (POT's parameter; the exact solver needs one, more
        only split the reservoir mass).
    log : bool
        Also return :func:`fastcore.ot.emd`'s log (``cost``, ``u``, ``v`` cut to the
        real points, ``warning``, ``result_code``, ``n_iter``) plus
        ``partial_w_dist``, the cost ``<G, M>`` (in ``M``'s dtype).
    **kwargs
        Passed to :func:`fastcore.ot.emd` (``numItermax``, ``center_dual``, ...).

    Returns
    -------
    G : ndarray of shape (n, k), dtype of ``M`` (computed in float64)
        An optimal plan: row sums ``<= a``, column sums ``<= b``, total ``m``.
    log : dict, only if ``log=True``

    Raises
    ------
    ValueError
        ``m`` negative or above ``min(sum(a), sum(b))``; bad weights or costs (as
        :func:`fastcore.ot.emd`); a ``numItermax`` hit before optimality (POT raises
        a ``ValueError`` there too).

    Notes
    -----
    Differences from POT, on purpose: ``m=None`` moves ``min(sum(a), sum(b))`` for
    any totals (POT sends it to ``partial_wasserstein_lagrange``, which needs
    ``sum(a), sum(b) <= 1`` and returns duals of a shifted problem); the
    reservoir-to-reservoir cost is ``2 max|M|`` (POT: ``2 max(M)``, the same when
    ``M >= 0``; POT's may let more than ``m`` through when ``M`` has negative
    entries or is all zero).  Inputs are never modified.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcore import ot
    >>> a, b = [.1, .2], [.1, .1]
    >>> M = [[0., 1.], [2., 3.]]
    >>> np.round(ot.partial_wasserstein(a, b, M), 2)
    array([[0.1, 0. ],
           [0. , 0.1]])
    >>> np.round(ot.partial_wasserstein(a, b, M, m=0.1), 2)
    array([[0.1, 0. ],
           [0. , 0. ]])
    """
    G, _, lg, out_dtype = _partial(a, b, M, m, nb_dummies, "partial_wasserstein", kwargs)
    if out_dtype != _F64:
        G = G.astype(out_dtype)
    if log:
        return G, lg
    return G


def partial_wasserstein2(a, b, M, m=None, nb_dummies=1, log=False, **kwargs):
    """Exact partial optimal transport cost ``<G, M>`` for the plan of :func:`partial_wasserstein`.

    Parameters
    ----------
    a, b, M, m, nb_dummies, **kwargs :
        As in :func:`partial_wasserstein`.
    log : bool
        Also return the log of :func:`partial_wasserstein` with the plan in
        ``log["T"]`` (POT's key).

    Returns
    -------
    cost : scalar of ``M``'s dtype (computed in float64)
    log : dict, only if ``log=True``

    Examples
    --------
    >>> from fastcore import ot
    >>> a, b = [.1, .2], [.1, .1]
    >>> M = [[0., 1.], [2., 3.]]
    >>> round(float(ot.partial_wasserstein2(a, b, M)), 6)
    0.3
    >>> float(ot.partial_wasserstein2(a, b, M, m=0.1))
    0.0
    """
    G, cost, lg, out_dtype = _partial(a, b, M, m, nb_dummies, "partial_wasserstein2", kwargs)
    cost = out_dtype.type(cost)
    if log:
        lg["T"] = G if out_dtype == _F64 else G.astype(out_dtype)
        return cost, lg
    return cost
