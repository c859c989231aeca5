"""Numerically stable softmax and log-sum-exp over one axis, with a keep-mask.

The building block of every attention and sequence kernel in fastcore; written
in C (``csrc/attention/softmax_impl.h``), vectorised over the reduced axis (or across it
when the axis is not the last one), threaded over rows.
"""
import numpy as np

from fastcore import _softmax
from fastcore._threads import resolve_n_threads
from fastcore._validation import (
    as_bool_mask,
    as_float_array,
    check_no_partial_overlap,
    mask_layout,
    normalize_axis,
    prepare_out,
)

__all__ = ["masked_softmax", "logsumexp"]


def _prepare(x, mask, axis, fname):
    x = as_float_array(x, "x")
    if x.ndim == 0:
        raise ValueError(f"{fname}: x must have at least one dimension, got a 0-d array")
    axis = normalize_axis(axis, x.ndim)
    shape = x.shape
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    n = shape[axis]
    if mask is None:
        layout = (None, None, 0, 0)
    else:
        layout = mask_layout(as_bool_mask(mask, "mask", shape), shape, axis)
    return x, axis, (outer, n, inner), layout


def masked_softmax(x, mask=None, axis=-1, out=None, *, n_threads=None):
    """Softmax of ``x`` along ``axis``, ignoring entries where ``mask`` is False.

    ``softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m)`` over the kept entries,
    with ``m`` their maximum (so no overflow for any finite input).

    Parameters
    ----------
    x : array_like of any shape (at least 1-d), float32 or float64
        Scores.  float16 is computed in float32, integers and bool in float64.
    mask : array_like of bool, optional
        Broadcastable to ``x.shape``; True = keep, False = give this entry zero
        probability.  Integer 0/1 masks (as tokenizers return) are accepted.
        A broadcast mask such as ``(B, 1, 1, S)`` for scores ``(B, H, T, S)`` is
        read in place, never expanded.
    axis : int, default -1
        The axis to normalise over.
    out : ndarray, optional
        C-contiguous array of ``x``'s shape and result dtype to write into.  It may
        be ``x`` itself (in-place softmax) but may not overlap it otherwise.
    n_threads : int or None, default None
        Threads to use; None = every available core.  Small inputs use fewer.

    Returns
    -------
    ndarray of the shape of ``x``, float32 for float32 input, else float64
        Along ``axis`` each slice sums to 1, except:

        - a slice whose entries are all masked (or all ``-inf``) gives **zeros**
          (not NaN): a padded query row in attention contributes nothing;
        - masked entries are exactly 0 and are never read, so NaN there is harmless;
        - an unmasked NaN makes the slice NaN (on its unmasked entries);
        - unmasked ``+inf`` entries share the mass equally (the limit of the
          softmax as those scores grow), the others get 0.

    Notes
    -----
    ``-inf`` scores behave exactly like masked entries.  Sums are accumulated in
    float64 for both dtypes; results match ``scipy.special.softmax`` to a few ulp.
    ``x`` is never modified unless ``out is x``.
    """
    n_threads = resolve_n_threads(n_threads)
    x_in = x
    x, axis, (outer, n, inner), (mbase, moffs, msn, msi) = _prepare(x, mask, axis, "masked_softmax")
    if out is not None and isinstance(x_in, np.ndarray) and isinstance(out, np.ndarray):
        check_no_partial_overlap(x_in, out, "x", "out")
    out = prepare_out(out, x.shape, x.dtype)
    if out is not x and x.size:
        check_no_partial_overlap(x, out, "x", "out")
    _softmax.softmax(x.reshape(outer, n, inner), out.reshape(outer, n, inner),
                     mbase, moffs, msn, msi, n_threads)
    return out


def logsumexp(x, axis=-1, mask=None, *, keepdims=False, n_threads=None):
    """``log(sum(exp(x)))`` along ``axis`` over the entries where ``mask`` is True.

    Parameters
    ----------
    x : array_like of any shape (at least 1-d), float32 or float64
        float16 is computed in float32, integers and bool in float64.
    axis : int, default -1
    mask : array_like of bool, optional
        Broadcastable to ``x.shape``; True = include the entry.
    keepdims : bool, default False
        Keep the reduced axis with length 1.
    n_threads : int or None, default None
        Threads to use; None = every available core.

    Returns
    -------
    ndarray of ``x.shape`` without ``axis`` (or with length 1 there), dtype of the input's float type
        Matches ``scipy.special.logsumexp``: a slice with no kept entries (all masked,
        all ``-inf`` or empty) gives ``-inf``; an unmasked ``+inf`` gives ``+inf``;
        an unmasked NaN gives NaN.  The sum is accumulated in float64 for both dtypes.
    """
    n_threads = resolve_n_threads(n_threads)
    x, axis, (outer, n, inner), (mbase, moffs, msn, msi) = _prepare(x, mask, axis, "logsumexp")
    out_shape = x.shape[:axis] + x.shape[axis + 1:]
    out = np.empty(out_shape, dtype=x.dtype)
    _softmax.logsumexp(x.reshape(outer, n, inner), out.reshape(outer, inner),
                       mbase, moffs, msn, msi, n_threads)
    if keepdims:
        out = np.expand_dims(out, axis)
    return out


def tour_softmax(show):
    """The tour's section for this module (see fastcore/_tour.py)."""
    from fastcore._tour import timed

    show.title("masked_softmax / logsumexp")
    scores = np.array([[2.0, 1.0, 0.1, -1.0], [0.5, 0.5, 3.0, 9.0]])
    keep = np.array([[True, True, True, False], [False, False, False, False]])
    show.line("scores            " + np.array2string(scores[0]))
    show.line("keep mask         " + np.array2string(keep[0]))
    show.line("masked_softmax    " + np.array2string(masked_softmax(scores, keep)[0]))
    show.line("fully masked row  " + np.array2string(masked_softmax(scores, keep)[1]) + "  (zeros, never NaN)")
    show.line("logsumexp         " + np.array2string(logsumexp(scores, mask=keep)) + "  (-inf for no mass)")

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 12, 256, 256), dtype=np.float32)
    pad = (np.arange(256) < 200)[None, None, None, :]

    def np_softmax(x, m):
        z = np.where(m, x, -np.inf)
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    def np_lse(x):
        m = x.max(-1, keepdims=True)
        return (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))[..., 0]

    out = np.empty_like(x)
    fast, tf = timed(masked_softmax, x, pad, out=out, n_threads=1)
    ref, tr = timed(np_softmax, x, pad)
    show.compare("softmax (4,12,256,256) f32, padding mask", tf, tr)
    show.line(f"max |difference| {np.abs(fast - ref).max():.1e}")
    fast, tf = timed(logsumexp, x, n_threads=1)
    ref, tr = timed(np_lse, x)
    show.compare("logsumexp (4,12,256,256) f32", tf, tr)
