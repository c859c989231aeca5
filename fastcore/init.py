"""Weight initialisers (Glorot/Xavier, LeCun, He/Kaiming, orthogonal) drawing from a
``numpy.random.Generator``.

Layout convention (torch's): a dense weight has shape ``(fan_out, fan_in)`` =
``(m, n)`` for ``y = W x``; a conv kernel has shape ``(out_channels, in_channels,
*kernel)`` and its fans are multiplied by the receptive field
``prod(kernel)``: ``fan_in = in_channels * prod(kernel)``,
``fan_out = out_channels * prod(kernel)``.

The "geometric" view (an n x n matrix with iid entries of variance 1/n is nearly
orthogonal) motivates the variances: LeCun 1/fan_in, its dual 1/fan_out, Xavier
2/(fan_in + fan_out), He 2/fan (ReLU halves the norm).  Libraries default to
``fan_in``; the post argues for ``fan_out`` (``mode="fan_out"``).
"""
import math
import operator

import numpy as np

__all__ = ["compute_fans", "xavier_uniform", "xavier_normal", "lecun_normal", "he_normal", "he_uniform",
           "orthogonal"]


def _check(rng, shape, dtype, min_ndim=2):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        shape = tuple(operator.index(s) for s in shape)
    except TypeError:
        raise TypeError(f"shape must be a tuple of ints, got {shape!r}") from None
    if any(s < 0 for s in shape):
        raise ValueError(f"shape must have non-negative sizes, got {shape}")
    if len(shape) < min_ndim:
        raise ValueError(f"shape must have at least {min_ndim} dimensions (out, in, *kernel) "
                         f"to define fan_in / fan_out, got {shape}")
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return shape, dtype


def compute_fans(shape):
    """(fan_in, fan_out) of a weight of ``shape`` = (out, in, *kernel)."""
    shape, _ = _check(np.random.default_rng(0), shape, np.float64)
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _fan(shape, mode):
    fan_in, fan_out = compute_fans(shape)
    if mode == "fan_in":
        fan = fan_in
    elif mode == "fan_out":
        fan = fan_out
    else:
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    if fan == 0:
        raise ValueError(f"{mode} of shape {tuple(shape)} is 0: cannot initialise an empty weight")
    return fan


def _gain(gain):
    g = float(gain)
    if not (math.isfinite(g) and g > 0):
        raise ValueError(f"gain must be > 0 and finite, got {gain!r}")
    return g


def _normal(rng, shape, std, dtype):
    return (rng.standard_normal(shape, dtype=dtype) * dtype.type(std)).astype(dtype, copy=False)


def _uniform(rng, shape, bound, dtype):
    u = rng.random(shape, dtype=dtype)
    return ((u * dtype.type(2) - dtype.type(1)) * dtype.type(bound)).astype(dtype, copy=False)


def xavier_uniform(rng, shape, *, gain=1.0, dtype=np.float32):
    """U(-a, a) with ``a = gain * sqrt(6 / (fan_in + fan_out))``: variance ``gain^2 * 2/(fan_in + fan_out)``.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : tuple of int, at least 2-d: (out, in, *kernel)
    gain : float > 0
    dtype : float32 (default) or float64

    Returns
    -------
    ndarray of ``shape`` and ``dtype``
    """
    shape, dtype = _check(rng, shape, dtype)
    fi, fo = compute_fans(shape)
    if fi + fo == 0:
        raise ValueError(f"shape {shape} has no fan: cannot initialise an empty weight")
    return _uniform(rng, shape, _gain(gain) * math.sqrt(6.0 / (fi + fo)), dtype)


def xavier_normal(rng, shape, *, gain=1.0, dtype=np.float32):
    """N(0, std^2) with ``std = gain * sqrt(2 / (fan_in + fan_out))`` (see :func:`xavier_uniform`)."""
    shape, dtype = _check(rng, shape, dtype)
    fi, fo = compute_fans(shape)
    if fi + fo == 0:
        raise ValueError(f"shape {shape} has no fan: cannot initialise an empty weight")
    return _normal(rng, shape, _gain(gain) * math.sqrt(2.0 / (fi + fo)), dtype)


def lecun_normal(rng, shape, *, mode="fan_in", dtype=np.float32):
    """N(0, 1/fan) (not truncated); ``mode="fan_out"`` is the post's dual recipe (variance 1/m)."""
    shape, dtype = _check(rng, shape, dtype)
    return _normal(rng, shape, math.sqrt(1.0 / _fan(shape, mode)), dtype)


def he_normal(rng, shape, *, mode="fan_in", dtype=np.float32):
    """N(0, 2/fan) for ReLU layers (Kaiming).  The post uses ``mode="fan_out"`` (2/m);
    torch's default is ``fan_in``."""
    shape, dtype = _check(rng, shape, dtype)
    return _normal(rng, shape, math.sqrt(2.0 / _fan(shape, mode)), dtype)


def he_uniform(rng, shape, *, mode="fan_in", dtype=np.float32):
    """U(-a, a) with ``a = sqrt(6/fan)``: variance 2/fan (see :func:`he_normal`)."""
    shape, dtype = _check(rng, shape, dtype)
    return _uniform(rng, shape, math.sqrt(6.0 / _fan(shape, mode)), dtype)


def orthogonal(rng, shape, *, gain=1.0, dtype=np.float32):
    """A (semi-)orthogonal matrix: QR of a Gaussian matrix with the sign fix.

    The weight is viewed as ``(rows, cols) = (shape[0], prod(shape[1:]))``.  With
    ``rows >= cols`` the columns are orthonormal (``WᵀW = I``); otherwise the rows
    are (``W Wᵀ = I``).  Each column of Q is multiplied by the sign of R's diagonal
    so that the result is Haar-distributed, then by ``gain``.  Computed in float64.
    """
    shape, dtype = _check(rng, shape, dtype)
    g = _gain(gain)
    rows = shape[0]
    cols = math.prod(shape[1:])
    if rows == 0 or cols == 0:
        return np.zeros(shape, dtype=dtype)
    a = rng.standard_normal((rows, cols))
    if rows < cols:
        a = a.T
    q, r = np.linalg.qr(a)
    d = np.diagonal(r)
    q *= np.where(d >= 0, 1.0, -1.0)
    if rows < cols:
        q = q.T
    return np.ascontiguousarray((g * q).reshape(shape), dtype=dtype)
