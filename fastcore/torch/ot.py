"""Differentiable optimal-transport losses on CPU tensors, solved by fastcore's kernels.

    from fastcore.torch import emd2, sinkhorn2, wmd, wrd, emd2_batch
    loss = emd2(a, b, torch.cdist(X, Y) ** 2)           # exact OT cost, differentiable
    loss.backward()                                      # M.grad = the optimal plan

Each function is a ``torch.autograd.Function`` whose backward is analytic: the solver
runs once in the forward (in float64, in C, without the autograd tape) and the backward
is built from what it returned (the plan and the dual potentials).  A second derivative
raises RuntimeError (``once_differentiable``, also when the incoming gradient is a
constant: see ``fastcore.torch._tensors.analytic_backward``).

Gradients
---------
- :func:`emd2`, :func:`emd2_batch`: as POT's torch backend (``ot.emd2``): w.r.t. ``M`` the
  optimal plan, w.r.t. ``a`` and ``b`` the dual potentials minus their means.  These are
  (super/sub)gradients: exact where the optimum is unique (``M``) or non-degenerate
  (``a``, ``b``, along directions that keep ``sum(a) == sum(b)``).
- :func:`sinkhorn2`: through the converged potentials, not through the iterations.  For
  ``objective="entropic"`` (``<P, M> + reg * sum P log P``) this is the envelope theorem:
  w.r.t. ``M`` the plan ``P``, w.r.t. ``a``, ``b`` the potentials ``reg * log_u``,
  ``reg * log_v`` minus their means.  For ``objective="cost"`` (``<P, M>``, POT's
  ``sinkhorn2`` value, the default) ``P`` alone is *not* the gradient (the plan moves with
  ``M``); the exact gradient of ``<P(M, a, b), M>`` is obtained by implicit
  differentiation of the marginal constraints (one (m x m) linear solve per histogram):
  ``dM = P * (1 - M / reg + x_i + y_j)``, ``da = reg * x``, ``db = reg * y`` with
  ``[[diag(a), P], [P^T, diag(b)]] [x; y] = [(P * M) 1; (P * M)^T 1] / reg``.  It is what
  autodiff through fully converged iterations (POT's torch backend) tends to.
- :func:`wmd`, :func:`wrd`: envelope theorem (the optimal plan is held fixed), with the
  duals for the norm-proportional weights of WRD.

CPU tensors, float32 or float64, all of one dtype; contiguous tensors reach the solver
without a copy.  The solvers compute in float64; results and gradients have the inputs'
dtype.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from fastcore import ot as _ot
from fastcore import sinkhorn as _sk
from fastcore._threads import resolve_n_threads
from fastcore.torch._tensors import _np, analytic_backward, cpu_float

__all__ = ["emd2", "sinkhorn2", "wmd", "wrd", "emd2_batch"]


# ---------------------------------------------------------------- checks
def _is_empty(w):
    """None, [] or an empty 1-d tensor: uniform weights (as POT)."""
    if w is None:
        return True
    if isinstance(w, (list, tuple)) and len(w) == 0:
        return True
    return isinstance(w, torch.Tensor) and w.dim() == 1 and w.shape[0] == 0


def _weight(w, name, dtype):
    """None for uniform weights, else the checked tensor."""
    if _is_empty(w):
        return None
    return cpu_float(w, name, dtype=dtype)


def _center(x):
    return x - x.mean()


def _cast(x, like):
    """A float64 NumPy result as a tensor of like's dtype."""
    return torch.from_numpy(np.ascontiguousarray(x)).to(like.dtype)


# ---------------------------------------------------------------- emd2
class _EMD2(torch.autograd.Function):
    """Exact OT cost; backward: plan for M, centred duals for a and b."""

    @staticmethod
    def forward(ctx, a, b, M, numItermax):
        an = None if a is None else _np(a)
        bn = None if b is None else _np(b)
        Mn = _np(M)
        if any(ctx.needs_input_grad[:3]):
            G, lg = _ot.emd(an, bn, Mn, numItermax=numItermax, log=True)
            ctx.plan, ctx.u, ctx.v = G, lg["u"], lg["v"]
            cost = lg["cost"]
        else:
            cost = _ot.emd2(an, bn, Mn, numItermax=numItermax)
        return torch.tensor(float(cost), dtype=M.dtype)

    @staticmethod
    @analytic_backward("emd2")
    def backward(ctx, g):
        M_like = g
        ga = gb = gM = None
        if ctx.needs_input_grad[0]:
            ga = _center(_cast(ctx.u, M_like)) * g
        if ctx.needs_input_grad[1]:
            gb = _center(_cast(ctx.v, M_like)) * g
        if ctx.needs_input_grad[2]:
            gM = _cast(ctx.plan, M_like) * g
        return ga, gb, gM, None


def emd2(a, b, M, *, numItermax=None, n_threads=None):
    """Exact optimal transport cost ``min_G <G, M>``, differentiable (POT's ``ot.emd2``).

    Parameters
    ----------
    a : Tensor of shape (n,), float32 or float64, or None / empty
        Source weights, nonnegative.  None, ``[]`` or an empty tensor mean uniform ``1/n``.
    b : Tensor of shape (m,), same dtype, or None / empty
        Target weights, same total mass as ``a`` (to 1e-7 relative).  A 2-d ``b`` is a
        ValueError: use :func:`emd2_batch` for many problems.
    M : Tensor of shape (n, m), float32 or float64
        Finite costs.
    numItermax : int or None, default None
        Pivot limit (None: run to optimality); hitting it warns, as in
        :func:`fastcore.ot.emd2`.
    n_threads : int or None
        Accepted for symmetry with :func:`emd2_batch`: one problem is solved on one thread.

    Returns
    -------
    Tensor of shape (), dtype of ``M``
        The cost (computed in float64).  POT returns the dtype of ``a`` (of an empty ``a``
        too); here all inputs must share one dtype, and with empty weights it is ``M``'s.

    Notes
    -----
    Gradients are those of POT's torch backend: ``M.grad`` is the optimal plan, ``a.grad``
    and ``b.grad`` the dual potentials (POT's ``center_ot_dual``) minus their means.  The
    duals are a subgradient: the cost is piecewise linear in ``(a, b)``, and only
    directions with ``sum(da) == sum(db) == 0`` keep the problem balanced.  Zero weights
    get the tightest feasible dual value (:func:`fastcore.ot.emd`), where POT uses
    ``estimate_dual_null_weights``.

    Examples
    --------
    >>> import torch
    >>> from fastcore.torch import emd2
    >>> X = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    >>> Y = torch.tensor([[0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    >>> loss = emd2(None, None, torch.cdist(X, Y) ** 2)
    >>> loss.item()
    1.0
    >>> loss.backward()
    >>> X.grad
    tensor([[ 0., -1.],
            [ 0., -1.]], dtype=torch.float64)
    """
    M = cpu_float(M, "M")
    if M.dim() != 2:
        raise ValueError(f"emd2: M must be 2-d (n, m), got shape {tuple(M.shape)}")
    a = _weight(a, "a", M.dtype)
    b = _weight(b, "b", M.dtype)
    if b is not None and b.dim() == 2:
        raise ValueError(f"emd2: b must be 1-d (m,), got shape {tuple(b.shape)}; for many target "
                         f"histograms use fastcore.torch.emd2_batch")
    resolve_n_threads(n_threads)
    _ot._max_iter(numItermax)
    return _EMD2.apply(a, b, M, numItermax)


# ---------------------------------------------------------------- emd2_batch
def _solve_plan(k, a, b, M, numItermax):
    try:
        G, lg = _ot.emd(a, b, M, numItermax=numItermax, log=True)
    except (TypeError, ValueError) as e:
        raise type(e)(f"emd2_batch: problems[{k}]: {e}") from None
    return G, lg["u"], lg["v"], lg["cost"]


class _EMD2Batch(torch.autograd.Function):
    """Costs of P problems; backward from each problem's plan and duals."""

    @staticmethod
    def forward(ctx, numItermax, n_threads, dtype, *flat):
        probs = [tuple(None if t is None else _np(t) for t in flat[3 * k:3 * k + 3]) for k in range(len(flat) // 3)]
        if any(ctx.needs_input_grad[3:]):
            # no batched plan kernel: one fastcore.ot.emd(log=True) per problem, threaded
            # (the solver releases the GIL); the costs come from the same solves
            if n_threads > 1 and len(probs) > 1:
                with ThreadPoolExecutor(min(n_threads, len(probs))) as pool:
                    out = list(pool.map(lambda kp: _solve_plan(kp[0], *kp[1], numItermax), enumerate(probs)))
            else:
                out = [_solve_plan(k, *p, numItermax) for k, p in enumerate(probs)]
            ctx.sol = out
            costs = np.array([o[3] for o in out], dtype=np.float64)
        else:
            costs = _ot.emd2_batch(probs, numItermax=numItermax, n_threads=n_threads)
        return torch.from_numpy(np.asarray(costs, dtype=np.float64)).to(dtype)

    @staticmethod
    @analytic_backward("emd2_batch")
    def backward(ctx, g):
        grads = [None, None, None]
        need = ctx.needs_input_grad[3:]
        for k, (G, u, v, _) in enumerate(ctx.sol):
            gk = g[k]
            for j, val in enumerate((u, v, G)):
                if need[3 * k + j]:
                    t = _cast(val, g)
                    grads.append((_center(t) if j < 2 else t) * gk)
                else:
                    grads.append(None)
        return tuple(grads)


def emd2_batch(problems, *, numItermax=None, n_threads=None):
    """Exact OT costs of many independent problems, differentiable.

    Parameters
    ----------
    problems : sequence of (a, b, M)
        Each as in :func:`emd2`: ``M`` a Tensor (n_k, m_k), ``a``/``b`` Tensors (n_k,),
        (m_k,) or None / empty (uniform).  Every tensor has one dtype, float32 or float64.
    numItermax : int or None
        Pivot limit per problem (None: none).
    n_threads : int or None
        Threads (None: fastcore's default); results do not depend on it.

    Returns
    -------
    Tensor of shape (len(problems),), the problems' dtype

    Notes
    -----
    Without gradients the problems are solved in one threaded C call
    (:func:`fastcore.ot.emd2_batch`).  When an input requires grad, each problem is solved
    with :func:`fastcore.ot.emd` (plan and duals, needed by the backward) on a pool of
    ``n_threads`` threads (the solver releases the GIL).  Gradients per problem as in
    :func:`emd2`, scaled by the incoming gradient of its cost.

    Examples
    --------
    >>> import torch
    >>> from fastcore.torch import emd2_batch
    >>> M = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    >>> costs = emd2_batch([(None, None, M), (torch.tensor([1.0, 0.0], dtype=torch.float64), None, M)])
    >>> costs.detach()
    tensor([0.0000, 0.5000], dtype=torch.float64)
    >>> costs.sum().backward()
    >>> M.grad
    tensor([[1.0000, 0.5000],
            [0.0000, 0.5000]], dtype=torch.float64)
    """
    n_threads = resolve_n_threads(n_threads)
    _ot._max_iter(numItermax)
    problems = list(problems)
    flat = []
    dtype = None
    for k, pb in enumerate(problems):
        try:
            a, b, M = pb
        except (TypeError, ValueError):
            raise ValueError(f"emd2_batch: problems[{k}] must be a tuple (a, b, M)") from None
        M = cpu_float(M, f"problems[{k}] M", dtype=dtype)
        dtype = M.dtype
        if M.dim() != 2:
            raise ValueError(f"emd2_batch: problems[{k}] M must be 2-d (n, m), got shape {tuple(M.shape)}")
        flat += [_weight(a, f"problems[{k}] a", dtype), _weight(b, f"problems[{k}] b", dtype), M]
    if not problems:
        return torch.zeros(0, dtype=torch.float64)
    return _EMD2Batch.apply(numItermax, n_threads, dtype, *flat)


# ---------------------------------------------------------------- sinkhorn2
def _row_plan(Mr, a, log_v):
    """The plan fastcore's sinkhorn returns: one more row update from log_v (rows sum to a)."""
    z = log_v[None, :] - Mr
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return a[:, None] * (e / e.sum(axis=1, keepdims=True))


def _softmax_rows(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _cost_adjoint(P, M, reg, a, b, log_u, log_v):
    """(x, y): the adjoint of <P, M> through the marginal constraints (see the module notes)."""
    I, J = a > 0, b > 0
    Pr = P[np.ix_(I, J)]
    Mr = M[np.ix_(I, J)]
    PM = Pr * Mr
    c, d = PM.sum(1) / reg, PM.sum(0) / reg
    aI, bJ = a[I], b[J]
    S = np.diag(bJ) - (Pr.T / aI) @ Pr
    rhs = d - Pr.T @ (c / aI)
    S += bJ.mean()  # + mean(b) 11^T: nonsingular, and the solution has sum(y) = 0
    y = np.zeros(b.shape[0])
    x = np.zeros(a.shape[0])
    y[J] = np.linalg.solve(S, rhs)
    x[I] = (c - Pr @ y[J]) / aI
    if not I.all():  # zero-mass rows: the limit of x_i as a_i -> 0+
        q = _softmax_rows(log_v[J][None, :] - M[np.ix_(~I, J)] / reg)
        x[~I] = (q * (M[np.ix_(~I, J)] / reg - y[J][None, :])).sum(1)
    if not J.all():
        r = _softmax_rows(log_u[I][None, :] - M[np.ix_(I, ~J)].T / reg)
        y[~J] = (r * (M[np.ix_(I, ~J)].T / reg - x[I][None, :])).sum(1)
    return x, y


class _Sinkhorn2(torch.autograd.Function):
    """Entropic OT cost; backward through the converged potentials (no iterations)."""

    @staticmethod
    def forward(ctx, a, b, M, reg, objective, kwargs):
        an = np.zeros(0) if a is None else _np(a)
        bn = np.zeros(0) if b is None else _np(b)
        Mn = _np(M)
        val, lg = _sk.sinkhorn2(an, bn, Mn, reg, log=True, objective=objective, **kwargs)
        if any(ctx.needs_input_grad[:3]):
            n, m = Mn.shape
            A = np.full(n, 1.0 / n) if a is None else an.astype(np.float64)
            B = np.full(m, 1.0 / m) if b is None else bn.astype(np.float64)
            multi = B.ndim == 2
            B = B if multi else B[:, None]
            B = B * (A.sum() / B.sum(0))[None, :]  # rescaled to a's mass, as the solver does
            with np.errstate(divide="ignore"):
                lu = lg["log_u"] if "log_u" in lg else np.log(lg["u"])
                lv = lg["log_v"] if "log_v" in lg else np.log(lg["v"])
            lu, lv = (lu, lv) if multi else (lu[:, None], lv[:, None])
            ctx.sol = (A, B, Mn.astype(np.float64), float(reg), lu, lv, multi, objective)
        return torch.from_numpy(np.atleast_1d(np.asarray(val, dtype=np.float64))).to(M.dtype).reshape(
            np.shape(val))

    @staticmethod
    @analytic_backward("sinkhorn2")
    def backward(ctx, g):
        A, B, M, reg, lu, lv, multi, objective = ctx.sol
        gw = g.detach().to(torch.float64).reshape(-1).numpy()
        n, m = M.shape
        k = B.shape[1]
        gM = np.zeros((n, m))
        ga = np.zeros(n)
        gb = np.zeros((m, k))
        Mr = M / reg
        for h in range(k):
            if gw[h] == 0:
                continue
            P = _row_plan(Mr, A, lv[:, h])
            if objective == "entropic":
                gM += gw[h] * P
                fu, fv = reg * lu[:, h], reg * lv[:, h]
                with np.errstate(invalid="ignore"):
                    ga += gw[h] * (fu - fu[np.isfinite(fu)].mean())
                    gb[:, h] = gw[h] * (fv - fv[np.isfinite(fv)].mean())
            else:
                x, y = _cost_adjoint(P, M, reg, A, B[:, h], lu[:, h], lv[:, h])
                gM += gw[h] * P * (1.0 - Mr + x[:, None] + y[None, :])
                ga += gw[h] * reg * (x - x.mean())
                gb[:, h] = gw[h] * reg * (y - y.mean())
        out = []
        for j, val in enumerate((ga, gb if multi else gb[:, 0], gM)):
            out.append(_cast(val, g) if ctx.needs_input_grad[j] else None)
        return out[0], out[1], out[2], None, None, None


def sinkhorn2(a, b, M, reg, *, method="sinkhorn_log", numItermax=1000, stopThr=1e-9, n_threads=None,
              objective="cost", warn=True, **solver_kwargs):
    """Entropic OT cost (POT's ``ot.sinkhorn2``), differentiable through the converged potentials.

    Parameters
    ----------
    a : Tensor of shape (n,), float32 or float64, or None / empty
        Source weights (None, ``[]`` or an empty tensor: uniform).
    b : Tensor of shape (m,) or (m, k), same dtype, or None / empty
        Target weights; with k columns, k problems sharing ``a`` and ``M``.
    M : Tensor of shape (n, m), float32 or float64
    reg : float > 0
        Entropic regularisation (not differentiable).
    method, numItermax, stopThr, n_threads, warn :
        As in :func:`fastcore.sinkhorn.sinkhorn2` (``"sinkhorn_log"`` by default).
    objective : {"cost", "entropic"}, default "cost"
        ``"cost"``: ``<P, M>`` (POT's ``sinkhorn2`` value); ``"entropic"``:
        ``<P, M> + reg * sum P log P``.
    **solver_kwargs :
        ``reg_start``, ``reg_ratio``, ``numInnerItermax``, ``stopThrInner``,
        ``overrelaxation``, ``warmstart``, passed to :func:`fastcore.sinkhorn.sinkhorn2`.

    Returns
    -------
    Tensor of shape () or (k,), dtype of ``M``
        (computed in float64; POT's torch backend also returns ``M``'s dtype.)

    Notes
    -----
    The gradient is taken at the returned solution, as if it were exact: nothing is
    recorded per iteration.  ``objective="entropic"``: ``M.grad = P``,
    ``a.grad = reg * log_u - mean``, ``b.grad = reg * log_v - mean`` (envelope theorem;
    a zero weight gives ``-inf``, the true one-sided derivative).  ``objective="cost"``: the
    exact derivative of ``<P, M>`` by implicit differentiation of the marginal constraints
    (an (m x m) solve per histogram, O(n m^2 + m^3)); this is the limit of POT's autodiff
    through the iterations.  ``a.grad`` and ``b.grad`` are defined up to a constant (only
    mass-preserving directions matter); they are returned with zero mean, as POT does for
    ``emd2``.  The plan used is the one fastcore's :func:`~fastcore.sinkhorn.sinkhorn`
    returns (one more row update from ``log_v``).

    Examples
    --------
    >>> import torch
    >>> from fastcore.torch import sinkhorn2
    >>> M = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    >>> w = sinkhorn2(None, None, M, 1.0)
    >>> round(w.item(), 6)
    0.268941
    >>> w.backward()
    >>> M.grad.shape
    torch.Size([2, 2])
    """
    M = cpu_float(M, "M")
    if M.dim() != 2:
        raise ValueError(f"sinkhorn2: M must be 2-d (n, m), got shape {tuple(M.shape)}")
    a = _weight(a, "a", M.dtype)
    b = _weight(b, "b", M.dtype)
    if isinstance(reg, torch.Tensor):
        if reg.requires_grad:
            raise ValueError("sinkhorn2: reg is not differentiable here; pass a float (or a tensor "
                             "without requires_grad)")
        reg = float(reg)
    if objective not in ("cost", "entropic"):
        raise ValueError(f"sinkhorn2: objective must be 'cost' or 'entropic', got {objective!r}")
    kwargs = dict(method=method, numItermax=numItermax, stopThr=stopThr, n_threads=n_threads, warn=warn,
                  **solver_kwargs)
    return _Sinkhorn2.apply(a, b, M, reg, objective, kwargs)


# ---------------------------------------------------------------- WMD / WRD
class _WMD(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X, Y, a, b):
        fname = "wmd"
        Xn = _ot._doc(_np(X), "X", fname)
        Yn = _ot._doc(_np(Y), "Y", fname, Xn.shape[1])
        f = _ot._doc_scale([Xn, Yn])
        Xs, Ys = Xn * f, Yn * f
        an = _ot._doc_weights(None if a is None else _np(a), Xn.shape[0], "a", fname)
        bn = _ot._doc_weights(None if b is None else _np(b), Yn.shape[0], "b", fname)
        D = _ot._euclid(Xs, Ys)
        G, lg = _ot.emd(an, bn, D, log=True)
        ctx.sol = (G, D, Xs, Ys, lg["u"] / f, lg["v"] / f, an, bn,
                   None if a is None else float(_np(a).astype(np.float64).sum()),
                   None if b is None else float(_np(b).astype(np.float64).sum()))
        return torch.tensor(float(_ot._unscale(lg["cost"], f, fname)), dtype=X.dtype)

    @staticmethod
    @analytic_backward("wmd")
    def backward(ctx, g):
        G, D, Xs, Ys, u, v, an, bn, sa, sb = ctx.sol
        with np.errstate(divide="ignore", invalid="ignore"):
            W = np.where((G > 0) & (D > 0), G / D, 0.0)  # (x_i - y_j) / ||x_i - y_j|| weights
        gX = gY = ga = gb = None
        if ctx.needs_input_grad[0]:
            gX = _cast(W.sum(1)[:, None] * Xs - W @ Ys, g) * g
        if ctx.needs_input_grad[1]:
            gY = _cast(W.sum(0)[:, None] * Ys - W.T @ Xs, g) * g
        if ctx.needs_input_grad[2]:  # through a / sum(a)
            ga = _cast((u - u @ an) / sa, g) * g
        if ctx.needs_input_grad[3]:
            gb = _cast((v - v @ bn) / sb, g) * g
        return gX, gY, ga, gb


def wmd(X, Y, a=None, b=None):
    """Word Mover's Distance between two sets of word vectors, differentiable.

    Parameters
    ----------
    X : Tensor of shape (n, d), float32 or float64
    Y : Tensor of shape (m, d), same dtype
    a, b : Tensor of shape (n,) / (m,), same dtype, optional
        Token weights (None: uniform), normalised to sum to 1 as in :func:`fastcore.ot.wmd`.

    Returns
    -------
    Tensor of shape (), dtype of ``X``
        ``min_P sum_ij P_ij ||x_i - y_j||`` (computed in float64).

    Notes
    -----
    Envelope theorem (the optimal plan ``P`` held fixed):
    ``dX_i = sum_j P_ij (x_i - y_j) / ||x_i - y_j||`` (a term with ``x_i = y_j`` gives 0,
    a subgradient), ``dY_j = -sum_i P_ij (x_i - y_j) / ||x_i - y_j||``; for given weights,
    ``da = (u - u . a / sum(a)) / sum(a)`` with ``u`` the duals (the normalisation makes it
    unique).  Exact where the optimal plan is unique.

    Examples
    --------
    >>> import torch
    >>> from fastcore.torch import wmd
    >>> X = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float64, requires_grad=True)
    >>> Y = torch.tensor([[0.0, 1.0], [3.0, 4.0]], dtype=torch.float64)
    >>> d = wmd(X, Y)
    >>> d.item()
    0.5
    >>> d.backward()
    >>> X.grad
    tensor([[ 0.0000, -0.5000],
            [ 0.0000,  0.0000]], dtype=torch.float64)
    """
    X = cpu_float(X, "X")
    Y = cpu_float(Y, "Y", dtype=X.dtype)
    a = None if a is None else cpu_float(a, "a", dtype=X.dtype)
    b = None if b is None else cpu_float(b, "b", dtype=X.dtype)
    return _WMD.apply(X, Y, a, b)


def _wrd_side(Xn, name):
    Xn = _ot._doc(Xn, name, "wrd")
    f = _ot._doc_scale([Xn])
    Xs = Xn * f
    norms = np.sqrt(np.einsum("ij,ij->i", Xs, Xs))
    keep = norms > 0
    if not keep.any():
        raise ValueError(f"wrd: every vector of {name} is zero; WRD is undefined")
    return Xs, norms, keep, f


class _WRD(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X, Y):
        Xs, nx, kx, fx = _wrd_side(_np(X), "X")
        Ys, ny, ky, fy = _wrd_side(_np(Y), "Y")
        if Ys.shape[1] != Xs.shape[1]:
            raise ValueError(f"wrd: Y must have shape (*, {Xs.shape[1]}), got {tuple(Y.shape)}")
        Xu = Xs[kx] / nx[kx, None]
        Yu = Ys[ky] / ny[ky, None]
        wx = nx[kx] / nx[kx].sum()
        wy = ny[ky] / ny[ky].sum()
        cos = Xu @ Yu.T
        C = np.maximum(1.0 - cos, 0.0)
        G, lg = _ot.emd(wx, wy, C, log=True)
        ctx.sol = (G, cos, Xu, Yu, nx, ny, kx, ky, fx, fy, wx, wy, lg["u"], lg["v"])
        return torch.tensor(float(lg["cost"]), dtype=X.dtype)

    @staticmethod
    @analytic_backward("wrd")
    def backward(ctx, g):
        G, cos, Xu, Yu, nx, ny, kx, ky, fx, fy, wx, wy, u, v = ctx.sol

        def side(P, Pcos, U, V, n, keep, f, w, dual):
            # d/dx_i of sum_ij P_ij (1 - cos_ij): -(P V - rowsum(P cos) x_hat_i) / ||x_i||
            # plus the duals through the weights ||x_i|| / sum_k ||x_k||
            nk = n[keep]
            gk = -(P @ V - Pcos.sum(1)[:, None] * U) / nk[:, None]
            gk += ((dual - dual @ w) / nk.sum())[:, None] * U
            out = np.zeros((n.shape[0], U.shape[1]))
            out[keep] = gk * f  # the vectors were scaled by f
            return out

        Pc = G * cos
        gX = gY = None
        if ctx.needs_input_grad[0]:
            gX = _cast(side(G, Pc, Xu, Yu, nx, kx, fx, wx, u), g) * g
        if ctx.needs_input_grad[1]:
            gY = _cast(side(G.T, Pc.T, Yu, Xu, ny, ky, fy, wy, v), g) * g
        return gX, gY


def wrd(X, Y):
    """Word Rotator's Distance (Yokoi et al. 2020) between two sets of word vectors, differentiable.

    Parameters
    ----------
    X : Tensor of shape (n, d), float32 or float64
    Y : Tensor of shape (m, d), same dtype

    Returns
    -------
    Tensor of shape (), dtype of ``X``
        As :func:`fastcore.ot.wrd`: weights proportional to the norms, cost
        ``1 - cos(x_i, y_j)`` (computed in float64).

    Notes
    -----
    With ``w_i = ||x_i|| / N``, ``N = sum_k ||x_k||``, the plan ``P`` and duals ``u``:
    ``dX_i = (u_i - u . w) / N * x_i / ||x_i||
    - sum_j P_ij (y_j / ||y_j|| - cos_ij x_i / ||x_i||) / ||x_i||`` (envelope theorem:
    the plan term plus the duals times the derivative of the weights), symmetrically for
    ``Y``.  Zero vectors carry no mass and get a zero gradient (the norm is not
    differentiable there).

    Examples
    --------
    >>> import torch
    >>> from fastcore.torch import wrd
    >>> X = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64, requires_grad=True)
    >>> d = wrd(X, torch.tensor([[1.0, 1.0]], dtype=torch.float64))
    >>> round(d.item(), 6)
    0.292893
    >>> d.backward()
    >>> X.grad.shape
    torch.Size([2, 2])
    """
    X = cpu_float(X, "X")
    Y = cpu_float(Y, "Y", dtype=X.dtype)
    return _WRD.apply(X, Y)
