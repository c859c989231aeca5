"""Batch normalisation forward and backward in C, for (N, C) and (N, C, L) inputs.

Statistics are per channel (axis 1) over the batch and the trailing positions,
accumulated in float64 with two passes (mean, then squared deviations), so a
large common offset does not cancel the variance.
"""
import math

import numpy as np

from fastcore import _optim
from fastcore._threads import resolve_n_threads
from fastcore._validation import as_float_array, check_finite, check_shape

__all__ = ["batch_norm_forward", "batch_norm_backward"]


def _as_ncl(x, name):
    x = as_float_array(x, name)
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (N, C) or (N, C, L), got {x.shape}")
    n, c = x.shape[:2]
    length = math.prod(x.shape[2:])
    return x, x.reshape(n, c, length)


def _vector(v, name, c, dtype, *, inplace=False):
    if v is None:
        return None
    if inplace:
        if not isinstance(v, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray (it is updated in place), got {type(v).__name__}")
        if v.dtype != dtype:
            raise TypeError(f"{name} must have the dtype of x ({dtype}), got {v.dtype}")
        if not v.flags.c_contiguous or not v.flags.writeable:
            raise ValueError(f"{name} must be C-contiguous and writable (it is updated in place)")
        check_shape(v, name, (c,))
        return v
    v = as_float_array(v, name, dtype=dtype)
    check_shape(v, name, (c,))
    check_finite(v, name)
    return v


def batch_norm_forward(x, gamma=None, beta=None, running_mean=None, running_var=None, training=True,
                       momentum=0.1, eps=1e-5, *, n_threads=None):
    """Batch normalisation ``y = (x - mean) / sqrt(var + eps) * gamma + beta`` per channel.

    Parameters
    ----------
    x : array_like of shape (N, C) or (N, C, L) (more trailing dims are flattened into L),
        float32 or float64 (other types: see the dtype policy of masked_softmax).
    gamma, beta : array_like of shape (C,) or None
        Scale and shift (None = 1 and 0), converted to x's dtype.
    running_mean, running_var : ndarray of shape (C,), or None
        When ``training``: C-contiguous, writable arrays of x's dtype, **updated in
        place** (that is part of this function's job, as in torch):
        ``new = (1 - momentum) * old + momentum * batch_stat`` with the **unbiased**
        batch variance ``var * M/(M-1)`` (M = N*L), exactly torch's convention (note
        momentum weighs the *new* value); may be None (no running statistics kept).
        When not training: required, only read, so any array_like (read-only, e.g. a
        checkpoint loaded with ``np.load(mmap_mode="r")``, strided, another float
        dtype), converted to x's dtype like ``gamma``.
    training : bool, default True
        True: normalise with the batch statistics (biased variance); False: with the
        running statistics.
    momentum : float in [0, 1], default 0.1
    eps : float > 0, default 1e-5
    n_threads : int or None
        Threads over channels; None = all cores.  Results do not depend on it.

    Returns
    -------
    y : ndarray of x's shape and dtype
    cache : (saved_mean, saved_invstd), two ndarrays of shape (C,) in x's dtype
        The mean and ``1/sqrt(var + eps)`` used (batch ones when training, running
        ones otherwise), to pass to :func:`batch_norm_backward`.

    Raises
    ------
    ValueError
        Wrong shapes, NaN/inf in x, gamma or beta, training with a single value per
        channel (N*L < 2: the variance is undefined), missing running stats in inference.
    """
    n_threads = resolve_n_threads(n_threads)
    x, x3 = _as_ncl(x, "x")
    check_finite(x, "x")
    n, c, length = x3.shape
    momentum = float(momentum)
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
    eps = float(eps)
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be > 0 and finite, got {eps!r}")
    training = bool(training)
    gamma = _vector(gamma, "gamma", c, x.dtype)
    beta = _vector(beta, "beta", c, x.dtype)
    # updated in place when training; only read otherwise (checked for finiteness below)
    running_mean = _vector(running_mean, "running_mean", c, x.dtype, inplace=training)
    running_var = _vector(running_var, "running_var", c, x.dtype, inplace=training)
    if training and n * length < 2:
        raise ValueError(f"training batch norm needs more than one value per channel, got x of shape {x.shape}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("running_mean and running_var are required when training=False")
    if not training:
        check_finite(running_mean, "running_mean")
        check_finite(running_var, "running_var")
        if c and running_var.min() < 0:
            raise ValueError("running_var has negative entries")
        # the binding's buffers are writable ones (the kernel writes them when training only)
        running_mean = np.require(running_mean, requirements=["C", "W"])
        running_var = np.require(running_var, requirements=["C", "W"])
    y = np.empty_like(x)
    saved_mean = np.empty(c, dtype=x.dtype)
    saved_invstd = np.empty(c, dtype=x.dtype)
    _optim.bn_forward(x3, y.reshape(n, c, length), gamma, beta, running_mean, running_var, training,
                      momentum, eps, saved_mean, saved_invstd, n_threads)
    return y, (saved_mean, saved_invstd)


def batch_norm_backward(dy, x, gamma, saved_mean, saved_invstd, training=True, *, n_threads=None):
    """Gradients of :func:`batch_norm_forward` with respect to x, gamma and beta.

    Parameters
    ----------
    dy : array_like of x's shape
        Gradient of the loss with respect to y.
    x : array_like of shape (N, C) or (N, C, L), float32 or float64
    gamma : array_like of shape (C,) or None (= 1)
    saved_mean, saved_invstd : array_like of shape (C,)
        The ``cache`` returned by the forward.
    training : bool, default True
        Must match the forward: in training the batch statistics depend on x, so
        ``dx = gamma*invstd*(dy - mean(dy) - xhat*mean(dy*xhat))``; in inference
        ``dx = gamma*invstd*dy``.

    Returns
    -------
    dx : ndarray of x's shape and dtype
    dgamma, dbeta : ndarrays of shape (C,): ``sum(dy * xhat)`` and ``sum(dy)`` over N and L
        (accumulated in float64).
    """
    n_threads = resolve_n_threads(n_threads)
    x, x3 = _as_ncl(x, "x")
    dy = as_float_array(dy, "dy", dtype=x.dtype)
    if dy.shape != x.shape:
        raise ValueError(f"dy must have the shape of x {x.shape}, got {dy.shape}")
    check_finite(x, "x")
    check_finite(dy, "dy")
    n, c, length = x3.shape
    gamma = _vector(gamma, "gamma", c, x.dtype)
    if saved_mean is None or saved_invstd is None:
        raise ValueError("saved_mean and saved_invstd are required (the cache of batch_norm_forward)")
    saved_mean = _vector(saved_mean, "saved_mean", c, x.dtype)
    saved_invstd = _vector(saved_invstd, "saved_invstd", c, x.dtype)
    dx = np.empty_like(x)
    dgamma = np.empty(c, dtype=x.dtype)
    dbeta = np.empty(c, dtype=x.dtype)
    _optim.bn_backward(dy.reshape(n, c, length), x3, gamma, saved_mean, saved_invstd, bool(training),
                       dx.reshape(n, c, length), dgamma, dbeta, n_threads)
    return dx, dgamma, dbeta
