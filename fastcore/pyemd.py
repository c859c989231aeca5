"""A drop-in for pyemd (``emd``, ``emd_with_flow``, ``emd_samples``) on fastcore's exact solver.

``from fastcore import pyemd`` (or ``import fastcore.pyemd as pyemd``) replaces
``import pyemd``.  The distance is Pele and Werman's EMD-hat, as computed by pyemd
(its C++ ``emd_hat_gd_metric`` and the POT backend of pyemd >= 1.1):

1. each bin's common mass ``min(P_i, Q_i)`` stays in place at no cost (the
   "pre-flow"; free because the ground distance is assumed to be a metric);
2. the rest is transported optimally, ``min(sum(P), sum(Q))`` units in all: the
   heavier side keeps ``|sum(P) - sum(Q)|`` units unmatched;
3. the unmatched mass costs ``extra_mass_penalty`` per unit (``-1``: the largest
   ground distance).

So ``emd = <F, D> + |sum(P) - sum(Q)| * extra_mass_penalty`` where ``F`` is the
flow returned by :func:`emd_with_flow` (pre-flow included, the unmatched mass
not; the pre-flow's diagonal costs are not counted, as in pyemd).  Step 2 is a
balanced problem for :func:`fastcore.ot.emd`: a dummy bin on the lighter side
holds the mass difference.  Every unit reaching the dummy pays the same penalty,
so that cost is a constant, added once afterwards (the dummy's costs are 0 in the
solve), and the flow does not depend on the penalty.

Differences from pyemd, on purpose: exact float64 (pyemd < 1.1's C++ backend
rounds masses and distances to integers, about 1e-6 relative); any real
array_like is accepted (pyemd <= 1.1 requires C-contiguous float64 ndarrays);
negative or non-finite weights, NaN/inf distances and a non-finite penalty are
``ValueError`` s (pyemd gives a wrong answer or NaN).  A distance matrix larger
than N x N is allowed, as pyemd documents: its top-left N x N block is used.
"""
import numbers

import numpy as np

from fastcore import ot as _ot
from fastcore._validation import as_float_array

__all__ = ["emd", "emd_with_flow", "emd_samples"]

DEFAULT_EXTRA_MASS_PENALTY = -1.0


def _histogram(h, name, fname):
    h = as_float_array(h, name, dtype=np.float64, ndim=1)
    if h.shape[0] == 0:
        raise ValueError(f"{fname}: {name} must be non-empty, got shape (0,)")
    if not np.isfinite(h).all():
        raise ValueError(f"{fname}: {name} contains NaN or infinite values")
    if (h < 0).any():
        raise ValueError(f"{fname}: {name} has negative weights (min {h.min():g})")
    return h


def _prepare(first_histogram, second_histogram, distance_matrix, extra_mass_penalty, fname):
    """(P, Q, D as an N x N float64 block, penalty)."""
    P = _histogram(first_histogram, "first_histogram", fname)
    Q = _histogram(second_histogram, "second_histogram", fname)
    D = as_float_array(distance_matrix, "distance_matrix", ndim=2)
    n = P.shape[0]
    if n > D.shape[0] or Q.shape[0] > D.shape[0] or n > D.shape[1] or Q.shape[0] > D.shape[1]:
        raise ValueError(f"{fname}: histogram lengths ({n} and {Q.shape[0]}) cannot be greater than the "
                         f"number of rows or columns of distance_matrix, got shape {D.shape}")
    if Q.shape[0] != n:
        raise ValueError(f"{fname}: first_histogram and second_histogram must have the same length, "
                         f"got {n} and {Q.shape[0]}")
    D, _ = _ot._cost_matrix(D[:n, :n], fname, "distance_matrix")
    if isinstance(extra_mass_penalty, bool) or not isinstance(extra_mass_penalty, numbers.Real):
        raise TypeError(f"{fname}: extra_mass_penalty must be a real number, got "
                        f"{type(extra_mass_penalty).__name__}")
    penalty = float(extra_mass_penalty)
    if penalty == -1.0:
        penalty = float(D.max())
    if not np.isfinite(penalty):
        raise ValueError(f"{fname}: extra_mass_penalty must be finite, got {penalty!r}")
    return P, Q, D, penalty


def _emd_hat(P, Q, D, penalty, fname, want_flow):
    """(cost, flow (N, N) float64 or None)."""
    common = np.minimum(P, Q)  # the pre-flow
    p, q = P - common, Q - common  # one of p_i, q_i is exactly 0
    extra = abs(P.sum() - Q.sum())
    sp, sq = p.sum(), q.sum()
    flow = np.diag(common) if want_flow else None
    if sp == 0 or sq == 0:  # everything that can be matched already is
        return float(extra * penalty), flow
    n = P.shape[0]
    # a dummy bin on the lighter side holds the difference; its costs are 0 (the penalty is a constant)
    if sp < sq:
        a, b, M = np.append(p, sq - sp), q, np.vstack([D, np.zeros((1, n))])
    elif sq < sp:
        a, b, M = p, np.append(q, sp - sq), np.hstack([D, np.zeros((n, 1))])
    else:
        a, b, M = p, q, D
    if want_flow:
        G = _ot.emd(a, b, M)
        flow += G[:n, :n]
        cost = float(np.sum(G[:n, :n] * D))
    else:
        cost = float(_ot.emd2(a, b, M))
    return cost + float(extra * penalty), flow


def emd(first_histogram, second_histogram, distance_matrix, extra_mass_penalty=DEFAULT_EXTRA_MASS_PENALTY):
    """Earth Mover's Distance (EMD-hat) between two histograms, as ``pyemd.emd``.

    Parameters
    ----------
    first_histogram : array_like of shape (N,)
        Nonnegative finite masses (any real dtype; computed in float64).
    second_histogram : array_like of shape (N,)
        Same; its total may differ from ``first_histogram``'s.
    distance_matrix : array_like of shape (N, N) or larger
        Ground distances between bins (a metric is assumed, as in pyemd: the mass a
        bin shares with itself moves at no cost).  Of a larger matrix the top-left
        N x N block is used.
    extra_mass_penalty : float, default -1.0
        Cost per unit of unmatched mass; ``-1`` means the largest entry of the
        (N x N) distance matrix.  At least half the largest distance keeps the
        result a metric; 0 gives partial matching.

    Returns
    -------
    float
        ``<F, D> + |sum(P) - sum(Q)| * extra_mass_penalty`` for the optimal flow
        ``F`` of :func:`emd_with_flow`.

    Raises
    ------
    ValueError
        Histograms of different lengths, longer than the matrix, empty, with
        negative or non-finite entries; non-finite distances or penalty.
    TypeError
        Non-numeric input (e.g. a ragged object array).

    Examples
    --------
    >>> import numpy as np
    >>> from fastcore import pyemd
    >>> P = np.array([0.0, 1.0])
    >>> Q = np.array([5.0, 3.0])
    >>> D = np.array([[0.0, 0.5], [0.5, 0.0]])
    >>> pyemd.emd(P, Q, D)  # 7 unmatched units at 0.5 each
    3.5
    >>> pyemd.emd(P, Q, D, extra_mass_penalty=0.0)
    0.0
    """
    P, Q, D, penalty = _prepare(first_histogram, second_histogram, distance_matrix, extra_mass_penalty,
                                "pyemd.emd")
    return _emd_hat(P, Q, D, penalty, "pyemd.emd", False)[0]


def emd_with_flow(first_histogram, second_histogram, distance_matrix,
                  extra_mass_penalty=DEFAULT_EXTRA_MASS_PENALTY):
    """EMD-hat and its optimal flow, as ``pyemd.emd_with_flow``.

    Parameters
    ----------
    first_histogram, second_histogram, distance_matrix, extra_mass_penalty :
        As in :func:`emd`.

    Returns
    -------
    cost : float
    flow : list of N lists of N floats
        ``flow[i][j]`` is the mass moved from bin ``i`` of the first histogram to
        bin ``j`` of the second, the in-place mass ``min(P_i, Q_i)`` included; the
        unmatched mass appears nowhere (as in pyemd), so the row and column sums are
        at most ``P`` and ``Q`` and the total is ``min(sum(P), sum(Q))``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcore import pyemd
    >>> P = np.array([0.0, 1.0])
    >>> Q = np.array([5.0, 3.0])
    >>> D = np.array([[0.0, 0.5], [0.5, 0.0]])
    >>> pyemd.emd_with_flow(P, Q, D)
    (3.5, [[0.0, 0.0], [0.0, 1.0]])
    """
    P, Q, D, penalty = _prepare(first_histogram, second_histogram, distance_matrix, extra_mass_penalty,
                                "pyemd.emd_with_flow")
    cost, flow = _emd_hat(P, Q, D, penalty, "pyemd.emd_with_flow", True)
    return cost, flow.tolist()


def _euclidean_1d(x):
    return np.abs(x[:, None] - x[None, :])


def emd_samples(first_array, second_array, extra_mass_penalty=DEFAULT_EXTRA_MASS_PENALTY, distance="euclidean",
                normalized=True, bins="auto", range=None):
    """EMD-hat between the histograms of two samples, as ``pyemd.emd_samples``.

    Both samples are binned on the same edges, ``np.histogram_bin_edges`` of their
    union (converted to float64, so integer samples get as many bins as floats);
    ground distances are between bin centres.

    Parameters
    ----------
    first_array, second_array : array_like
        Samples (non-empty); flattened as ``np.histogram`` does.
    extra_mass_penalty : float, default -1.0
        As in :func:`emd` (only matters with ``normalized=False`` and samples of
        different sizes).
    distance : "euclidean" or callable
        ``"euclidean"``: ``|c_i - c_j|`` between bin centres.  A callable receives
        the (B,) bin centres and returns a (B, B) matrix (nested lists are fine).
    normalized : bool, default True
        Histograms as fractions of each sample (else counts).
    bins : int or str, default "auto"
        As in ``np.histogram`` (a number of bins or a bin-selection rule).
    range : (float, float) or None
        Lower and upper edges; None: the range of both samples together.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        An empty sample, a sample with no value inside ``range`` (when normalised),
        an unknown ``distance`` name, a distance matrix that is not square or is
        smaller than the number of bins, or the errors of :func:`emd`.

    Examples
    --------
    >>> from fastcore import pyemd
    >>> pyemd.emd_samples([1, 2, 3, 4], [2, 3, 4, 5], bins=2)
    0.5
    """
    fname = "pyemd.emd_samples"
    x = np.asarray(first_array)
    y = np.asarray(second_array)
    if x.size == 0 or y.size == 0:
        raise ValueError(f"{fname}: arrays of samples cannot be empty, got sizes {x.size} and {y.size}")
    x = as_float_array(x, "first_array", dtype=np.float64)
    y = as_float_array(y, "second_array", dtype=np.float64)
    if range is None:
        range = (min(x.min(), y.min()), max(x.max(), y.max()))
    edges = np.histogram_bin_edges(np.concatenate([x.ravel(), y.ravel()]), bins=bins, range=range)
    hx = np.histogram(x, bins=edges, range=range)[0].astype(np.float64)
    hy = np.histogram(y, bins=edges, range=range)[0].astype(np.float64)
    if normalized:
        for h, name in ((hx, "first_array"), (hy, "second_array")):
            if h.sum() == 0:
                raise ValueError(f"{fname}: no value of {name} lies in range {tuple(range)}")
        hx, hy = hx / hx.sum(), hy / hy.sum()
    centres = (edges[:-1] + edges[1:]) / 2
    if isinstance(distance, str):
        if distance != "euclidean":
            raise ValueError(f"{fname}: distance must be 'euclidean' or a callable, got {distance!r}")
        D = _euclidean_1d(centres)
    elif callable(distance):
        try:
            D = np.asarray(distance(centres))
        except ValueError as e:  # a ragged nested list
            raise ValueError(f"{fname}: the distance function must return a square matrix ({e})") from None
        if D.ndim != 2 or D.shape[0] != D.shape[1]:
            raise ValueError(f"{fname}: the distance function must return a square matrix, got shape {D.shape}; "
                             "check your `distance` function")
        if D.shape[0] < hx.shape[0]:
            raise ValueError(f"{fname}: the distance matrix must have at least as many rows/columns as there are "
                             f"bins ({hx.shape[0]}), got shape {D.shape}; check your `distance` function")
    else:
        raise TypeError(f"{fname}: distance must be 'euclidean' or a callable, got {type(distance).__name__}")
    return emd(hx, hy, D, extra_mass_penalty)
