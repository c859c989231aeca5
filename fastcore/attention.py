"""Softmax attention with structural masks (BERT, GPT, UniLM, XLNet), talking-heads and backward.

One kernel serves every pre-training scheme: the masks are evaluated inside a tiled
online-softmax kernel (``csrc/attention/forward.h``), so no ``(T, S)`` score matrix or
mask is ever allocated, and key tiles that the structural masks hide entirely are
skipped (causal, key padding, UniLM segments, permutation orders).
"""
import math
from collections import namedtuple

import numpy as np

from fastcore import _attention
from fastcore._threads import resolve_n_threads
from fastcore._validation import shape_str, as_bool_mask, as_float_array, check_finite

__all__ = ["attention", "attention_backward", "AttentionGrads", "padding_mask", "causal_mask", "unilm_mask",
           "permutation_mask"]


# ---------------------------------------------------------------- validation
def _qkv(q, k, v, fname):
    q = as_float_array(q, "q", ndim=4)
    k = as_float_array(k, "k", ndim=4)
    v = as_float_array(v, "v", ndim=4)
    dtype = np.result_type(q.dtype, k.dtype, v.dtype)
    q, k, v = (np.asarray(a, dtype=dtype, order="C") for a in (q, k, v))
    B, H, T, dk = q.shape
    S = k.shape[2]
    if k.shape[:2] != (B, H) or k.shape[3] != dk:
        raise ValueError(f"{fname}: k must have shape (B, H, S, dk) = ({B}, {H}, *, {dk}) to match "
                         f"q {shape_str(q.shape)}, got {shape_str(k.shape)}")
    if v.shape[:3] != (B, H, S):
        raise ValueError(f"{fname}: v must have shape (B, H, S, dv) = ({B}, {H}, {S}, *) to match "
                         f"k {shape_str(k.shape)}, got {shape_str(v.shape)}")
    dv = v.shape[3]
    if dk < 1 or dv < 1:
        raise ValueError(f"{fname}: the feature sizes dk = {dk} and dv = {dv} must be at least 1")
    for a, name in ((q, "q"), (k, "k"), (v, "v")):
        _check_finite(a, name)
    return q, k, v, (B, H, T, S, dk, dv)


def _check_finite(a, name):
    """check_finite with a fast C pass first (no boolean temporary); the message comes from
    fastcore._validation.check_finite."""
    if a.size and not _attention.all_finite(a.reshape(-1)):
        check_finite(a, name)


def _int_array(x, name, shape):
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {a.dtype}")
    if a.shape != tuple(shape):
        want = "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ValueError(f"{name} must have shape {want}, got {shape_str(a.shape)}")
    return np.ascontiguousarray(a, dtype=np.int64)


def _bcast_strides(arr, shape):
    """Element strides of ``arr`` broadcast to ``shape`` (0 along broadcast axes)."""
    view = np.broadcast_to(arr.reshape((1,) * (len(shape) - arr.ndim) + arr.shape), shape)
    return tuple(int(s) // arr.itemsize for s in view.strides)


def _masks(dims, dtype, lengths, causal, segment_ids, order, order_inclusive, mask, bias, fname):
    """The kernel's mask description, the bias array, and the permutation (order, rank) or None."""
    B, H, T, S, _, _ = dims
    mk = dict(causal=False, causal_offset=0, kv_len=None, q_seg=None, k_seg=None, key_keep=None,
              mask=None, q_pos=None, k_pos=None, mask_strides=(0, 0, 0, 0), bias_strides=(0, 0, 0, 0))
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"{fname}: causal must be a bool, got {type(causal).__name__}")
    if not isinstance(order_inclusive, (bool, np.bool_)):
        raise TypeError(f"{fname}: order_inclusive must be a bool, got {type(order_inclusive).__name__}")
    kv_len = None
    if lengths is not None:
        kv_len = _int_array(lengths, "lengths", (B,))
        if kv_len.size and (kv_len.min() < 0 or kv_len.max() > S):
            raise ValueError(f"{fname}: lengths must lie in [0, S] = [0, {S}], got values in "
                             f"[{kv_len.min()}, {kv_len.max()}]")
    cseg = None
    if segment_ids is not None:
        if T != S:
            raise ValueError(f"{fname}: segment_ids needs as many queries as keys (T == S), got T={T}, S={S}")
        seg = np.asarray(segment_ids)
        if seg.dtype == np.bool_:
            seg = seg.astype(np.int64)
        cseg = np.cumsum(_int_array(seg, "segment_ids", (B, S)), axis=1)
    perm = None
    if order is not None:
        if T != S:
            raise ValueError(f"{fname}: order needs as many queries as keys (T == S), got T={T}, S={S}")
        if causal:
            raise ValueError(f"{fname}: causal and order cannot be combined: the order already defines "
                             "which keys each query sees (the identity order is the causal mask)")
        order = _int_array(order, "order", (B, T))
        if not (np.sort(order, axis=1) == np.arange(T)).all():
            raise ValueError(f"{fname}: each row of order must be a permutation of 0 .. T-1 = 0 .. {T - 1}")
        rank = np.ascontiguousarray(np.argsort(order, axis=1, kind="stable"))
        perm = (order, rank)
        # kernel index r = rank: query/key r is the token at position order[b, r]
        mk.update(causal=True, causal_offset=0 if order_inclusive else -1,
                  q_pos=order.reshape(-1), k_pos=order.reshape(-1))
        if kv_len is not None:
            mk["key_keep"] = np.ascontiguousarray(order < kv_len[:, None], dtype=np.uint8).reshape(-1)
        if cseg is not None:
            ps = np.ascontiguousarray(np.take_along_axis(cseg, order, axis=1)).reshape(-1)
            mk.update(q_seg=ps, k_seg=ps)
    else:
        if causal:
            mk.update(causal=True, causal_offset=S - T)
        if kv_len is not None:
            mk["kv_len"] = kv_len
        if cseg is not None:
            mk.update(q_seg=cseg.reshape(-1), k_seg=cseg.reshape(-1))
    full = (B, H, T, S)
    if mask is not None:
        m = as_bool_mask(mask, "mask", full)
        mk.update(mask=m.reshape(-1), mask_strides=_bcast_strides(m, full))
    bias_arr = np.empty(0, dtype=dtype)
    if bias is not None:
        bb = np.asarray(bias)
        if bb.dtype.kind not in "biuf":
            raise TypeError(f"bias must be a real numeric array, got dtype {bb.dtype}")
        bb = np.ascontiguousarray(bb, dtype=dtype)
        try:
            if np.broadcast_shapes(bb.shape, full) != full:
                raise ValueError
        except ValueError:
            raise ValueError(f"bias of shape {shape_str(bb.shape)} cannot be broadcast to shape "
                             f"{shape_str(full)}") from None
        if np.isnan(bb).any() or np.isposinf(bb).any():
            raise ValueError("bias contains NaN or +inf (-inf is allowed and hides the entry)")
        mk["bias_strides"] = _bcast_strides(bb, full)
        bias_arr = bb.reshape(-1)
    return mk, bias_arr, perm


def _scale(scale, dk):
    if scale is None:
        return 1.0 / math.sqrt(dk)
    try:
        s = float(scale)
    except (TypeError, ValueError):
        raise TypeError(f"scale must be a real number, got {type(scale).__name__}") from None
    if not math.isfinite(s):
        raise ValueError(f"scale must be finite, got {s}")
    return s


def _mix(mix, name, H, dtype):
    if mix is None:
        return None
    m = as_float_array(mix, name, dtype=dtype)
    if m.shape != (H, H):
        raise ValueError(f"{name} must have shape (H, H) = ({H}, {H}), got {shape_str(m.shape)}")
    check_finite(m, name)
    return m.reshape(-1)


def _gather_seq(x, idx):
    """out[b, :, r] = x[b, :, idx[b, r]] along axis 2 for every b (x is (B, H, N, ...) or (B, H, N)).
    (np.take per batch element: several times faster than take_along_axis here.)"""
    out = np.empty(x.shape, dtype=x.dtype)
    for b in range(x.shape[0]):
        np.take(x[b], idx[b], axis=1, out=out[b])
    return out


def _empty(dtype):
    return np.empty(0, dtype=dtype)


# ---------------------------------------------------------------- public API
def attention(q, k, v, *, lengths=None, causal=False, segment_ids=None, order=None,
              order_inclusive=False, mask=None, bias=None, scale=None, pre_mix=None, post_mix=None,
              return_lse=False, n_threads=None):
    """Softmax attention ``softmax(scale * q k^T + bias, masked) v`` with structural masks.

    Parameters
    ----------
    q : array_like of shape (B, H, T, dk), float32 or float64
        Queries.  k and v may use another float dtype; all three are computed in
        their common type (float32 only when all are float32; float16 counts as float32,
        integers as float64).
    k : array_like of shape (B, H, S, dk)
    v : array_like of shape (B, H, S, dv)
        ``dv`` may differ from ``dk`` (key size decoupled from head size).
    lengths : array_like of int, shape (B,), optional
        Key padding: key ``j`` of batch ``b`` is visible only when ``j < lengths[b]``
        (``0 <= lengths[b] <= S``).
    causal : bool, default False
        Query ``i`` sees keys ``j <= i + S - T`` (the last query sees every key, so
        ``T < S`` serves cached decoding).
    segment_ids : array_like of int, shape (B, S), optional
        The UniLM seq2seq rule (needs ``T == S``): with ``c = cumsum(segment_ids)``, key ``j``
        is visible from query ``i`` when ``c[j] <= c[i]``.  With ids 0 on
        ``[CLS] source [SEP]`` and 1 on ``target [SEP]`` the source is bidirectional and
        cannot see the target, the target is causal and sees the whole source.  Real
        tokens with id 0 after the target would be visible to the last target token
        (the cumsum rule): mask pads with ``lengths``.
    order : array_like of int, shape (B, T), optional
        Permutation-LM factorisation order (needs ``T == S``): ``order[b, r]`` is the
        position predicted ``r``-th, so ``rank(order[b, r]) = r``.  Key ``j`` is visible
        from query ``i`` when ``rank(j) < rank(i)`` (XLNet's query stream), or
        ``rank(j) <= rank(i)`` with ``order_inclusive=True`` (the content stream).
        The first token of a strict order sees nothing (output 0, lse -inf).
        Implementation: queries and keys are gathered into rank order, the mask becomes
        causal and hidden tiles are skipped; results are scattered back to positions.
        Cannot be combined with ``causal``.  Combined with ``order``, ``lengths`` is
        tested key by key (padding is no longer a contiguous tail) and ``mask`` / ``bias``
        are read at the original positions.
    order_inclusive : bool, default False
    mask : array_like of bool, optional
        Broadcastable to (B, H, T, S); True = visible.  Read through broadcast strides,
        never expanded.  (The builders below return (B, T, S): pass ``m[:, None]``.)
    bias : array_like of float, optional
        Broadcastable to (B, H, T, S), added to the (scaled, mixed) logits; ``-inf``
        hides an entry, NaN and ``+inf`` are refused.
    scale : float, optional
        Logit scale; default ``1 / sqrt(dk)``.
    pre_mix : array_like of shape (H, H), optional
        Talking-heads logit mixing before the softmax:
        ``z_h = sum_g pre_mix[h, g] * scale * q_g k_g^T`` (the post's ``λ_hg``; the
        TF reference code's matrix is the transpose).  Bias and masks are applied
        after mixing, so hidden entries never reach the mix.
    post_mix : array_like of shape (H, H), optional
        Mixing of the probabilities after the softmax:
        ``out_h = (sum_g post_mix[h, g] * P_g) v_h``.  Rows are then no longer
        probabilities.  (Computed in two passes over the keys: one for each head's
        log-normaliser, one that forms the exact ``P_g``, mixes them and multiplies by
        ``v_h``; cheaper than H x H online accumulators.)
    return_lse : bool, default False
        Also return ``lse[b, h, i] = log sum_j exp z[b, h, i, j]`` over the visible
        keys (before any post-mix), which :func:`attention_backward` needs.
    n_threads : int or None, default None
        Threads over (batch, head, query tile) work items; None = every core.  The
        result does not depend on the thread count.

    Returns
    -------
    out : ndarray of shape (B, H, T, dv), the computation dtype
    lse : ndarray of shape (B, H, T), only with ``return_lse=True``

    Notes
    -----
    All masks given are combined with AND.  A query row with no visible key gives
    ``out = 0`` and ``lse = -inf`` (never NaN).  Logits that overflow the dtype (a
    ``+inf`` or NaN ``scale * q.k``) raise ValueError; logits that all overflow to
    ``-inf`` are indistinguishable from masked keys (the row is treated as invisible).  Memory beyond the outputs: per-thread
    tiles, the gathered copies for ``order`` and, with ``pre_mix`` / ``post_mix``, a
    tiled transposed copy of ``k``: O(B H S dk).  Exponential sums are accumulated in float64; dot products
    in the computation dtype.
    """
    n_threads = resolve_n_threads(n_threads)
    q, k, v, dims = _qkv(q, k, v, "attention")
    B, H, T, S, dk, dv = dims
    dtype = q.dtype
    scale = _scale(scale, dk)
    mk, bias_arr, perm = _masks(dims, dtype, lengths, causal, segment_ids, order, order_inclusive,
                                mask, bias, "attention")
    pre = _mix(pre_mix, "pre_mix", H, dtype)
    post = _mix(post_mix, "post_mix", H, dtype)
    if perm is not None:
        q, k, v = _gather_seq(q, perm[0]), _gather_seq(k, perm[0]), _gather_seq(v, perm[0])
    out = np.empty((B, H, T, dv), dtype=dtype)
    lse = np.empty((B, H, T), dtype=dtype)
    _attention.forward(q.reshape(-1), k.reshape(-1), v.reshape(-1), out.reshape(-1), lse.reshape(-1),
                       dims, scale, mk, bias_arr, _empty(dtype) if pre is None else pre,
                       _empty(dtype) if post is None else post, n_threads)
    _check_overflow(lse, dtype, "attention")
    if perm is not None:
        out, lse = _gather_seq(out, perm[1]), _gather_seq(lse, perm[1])
    return (out, lse) if return_lse else out


def _check_overflow(res, dtype, fname):
    """The kernels mark a row whose logits overflowed (a +inf or NaN logit: scale * q.k, plus
    bias or pre_mix, beyond the dtype's range) with NaN; the inputs themselves are finite."""
    bad = np.isnan(res) | np.isposinf(res)
    if bad.any():
        b, h, i = np.unravel_index(int(np.argmax(bad.reshape(-1))), bad.shape)[:3]
        raise ValueError(
            f"{fname}: the logits overflow {np.dtype(dtype).name} (batch {b}, head {h}, query {i}): "
            f"scale * q.k (plus bias / pre_mix) reaches +-inf; q and k are too large for this dtype "
            f"({_remedy(dtype)})")


def _remedy(dtype):
    return "use float64, or scale them down" if np.dtype(dtype) == np.float32 else "scale them down"


AttentionGrads = namedtuple("AttentionGrads", ["dq", "dk", "dv", "dpre_mix", "dpost_mix", "dbias"])
AttentionGrads.__doc__ = """Gradients returned by :func:`attention_backward` when talking-heads mixing is given
or ``return_dbias=True``; a field is None when its input was not given (or not requested)."""


def attention_backward(dout, q, k, v, out, lse, *, lengths=None, causal=False, segment_ids=None,
                       order=None, order_inclusive=False, mask=None, bias=None, scale=None,
                       pre_mix=None, post_mix=None, return_dbias=False, n_threads=None):
    """Gradients of :func:`attention` with respect to q, k, v (and pre_mix, post_mix, bias).

    FlashAttention-2 style: the probabilities are recomputed tile by tile from ``lse``
    (``P = exp(z - lse)``); no (T, S) array is stored.  Without ``post_mix`` the row term
    is ``D = rowsum(dout * out)``; with it, ``D_h[i] = sum_j P_h[i, j] dP_h[i, j]`` takes a
    first sweep over the key tiles (the backward then costs about 7 tile products per
    head instead of 5).

    Parameters
    ----------
    dout : array_like of shape (B, H, T, dv)
        Gradient of the loss with respect to ``out``.
    q, k, v : the forward inputs
    out, lse : the forward outputs (``attention(..., return_lse=True)``), same masks
    lengths, causal, segment_ids, order, order_inclusive, mask, bias, scale, pre_mix, post_mix
        Exactly as given to :func:`attention`.
    return_dbias : bool, default False
        Also compute the gradient of ``bias`` (which must be given), returned with
        ``bias``'s own shape: summed over the axes along which it was broadcast.
        Entries hidden by a mask get 0.  Without it ``bias`` is a constant.
    n_threads : int or None
        Threads; results do not depend on it.  Work items are (batch, head) pairs, or
        batch elements with talking-heads mixing (all heads together, as the forward);
        items that share ``dbias`` entries (a bias broadcast over the batch or the heads)
        run on one thread, which keeps the sums deterministic but lowers the parallelism.

    Returns
    -------
    dq, dk, dv : ndarrays of the shapes of q, k, v, the computation dtype
        The plain 3-tuple when neither ``pre_mix``, ``post_mix`` nor ``return_dbias``
        is given (unchanged from earlier versions).
    grads : AttentionGrads
        Otherwise a named tuple ``(dq, dk, dv, dpre_mix, dpost_mix, dbias)``:
        ``dpre_mix[h, g] = dL/dpre_mix[h, g]`` and ``dpost_mix`` likewise, (H, H), in
        the index convention of :func:`attention` (``z_h = sum_g pre_mix[h, g] ...``);
        ``dbias`` of ``bias``'s shape; None for each input not given / not requested.
        The (H, H) and bias sums are accumulated in float64 and returned in the
        computation dtype.

    Notes
    -----
    Rows with no visible key (``lse = -inf``) contribute nothing.  Each work item is
    computed by one thread in a fixed order: deterministic for any thread count.
    """
    n_threads = resolve_n_threads(n_threads)
    q, k, v, dims = _qkv(q, k, v, "attention_backward")
    B, H, T, S, dk, dv = dims
    dtype = q.dtype
    dout = as_float_array(dout, "dout", dtype=dtype, ndim=4)
    out = as_float_array(out, "out", dtype=dtype, ndim=4)
    lse = as_float_array(lse, "lse", dtype=dtype, ndim=3)
    for a, name, shape in ((dout, "dout", (B, H, T, dv)), (out, "out", (B, H, T, dv)), (lse, "lse", (B, H, T))):
        if a.shape != shape:
            raise ValueError(f"attention_backward: {name} must have shape {shape_str(shape)}, "
                             f"got {shape_str(a.shape)}")
    _check_finite(dout, "dout")
    _check_finite(out, "out")
    if np.isnan(lse).any() or np.isposinf(lse).any():
        raise ValueError("lse contains NaN or +inf (it must come from attention(..., return_lse=True))")
    if not isinstance(return_dbias, (bool, np.bool_)):
        raise TypeError(f"attention_backward: return_dbias must be a bool, got {type(return_dbias).__name__}")
    if return_dbias and bias is None:
        raise ValueError("attention_backward: return_dbias=True needs the bias (bias=None was given)")
    scale = _scale(scale, dk)
    mk, bias_arr, perm = _masks(dims, dtype, lengths, causal, segment_ids, order, order_inclusive,
                                mask, bias, "attention_backward")
    pre = _mix(pre_mix, "pre_mix", H, dtype)
    post = _mix(post_mix, "post_mix", H, dtype)
    if perm is not None:
        o = perm[0]
        q, k, v, out, dout, lse = (_gather_seq(a, o) for a in (q, k, v, out, dout, lse))
    dq = np.empty(q.shape, dtype=dtype)
    dk_ = np.empty(k.shape, dtype=dtype)
    dv_ = np.empty(v.shape, dtype=dtype)
    dpre = np.zeros(H * H) if pre is not None else None
    dpost = np.zeros(H * H) if post is not None else None
    dbias = np.zeros(bias_arr.size) if return_dbias else None
    _attention.backward(q.reshape(-1), k.reshape(-1), v.reshape(-1), out.reshape(-1), dout.reshape(-1),
                        lse.reshape(-1), dq.reshape(-1), dk_.reshape(-1), dv_.reshape(-1), dims, scale,
                        mk, bias_arr, _empty(dtype) if pre is None else pre,
                        _empty(dtype) if post is None else post, dpre, dpost, dbias, n_threads)
    for g, name in ((dq, "dq"), (dk_, "dk"), (dv_, "dv")):
        if not np.isfinite(g).all():  # the inputs are finite: something overflowed
            raise ValueError(
                f"attention_backward: {name} is not finite: the logits scale * q.k (plus bias / pre_mix) "
                f"or their products with dout overflow {np.dtype(dtype).name} ({_remedy(dtype)})")
    if perm is not None:
        r = perm[1]
        dq, dk_, dv_ = _gather_seq(dq, r), _gather_seq(dk_, r), _gather_seq(dv_, r)
    if pre is None and post is None and not return_dbias:
        return dq, dk_, dv_
    return AttentionGrads(
        dq, dk_, dv_,
        None if dpre is None else dpre.reshape(H, H).astype(dtype),
        None if dpost is None else dpost.reshape(H, H).astype(dtype),
        None if dbias is None else dbias.reshape(np.shape(bias)).astype(dtype))


# ---------------------------------------------------------------- mask builders
def padding_mask(lengths, T, S):
    """Boolean (B, T, S) key-padding mask: ``M[b, i, j] = j < lengths[b]``."""
    ln = np.asarray(lengths)
    if ln.ndim != 1:
        raise ValueError(f"lengths must have shape (B,), got {shape_str(ln.shape)}")
    ln = _int_array(ln, "lengths", ln.shape)
    return np.broadcast_to((np.arange(S)[None, :] < ln[:, None])[:, None, :], (ln.size, T, S)).copy()


def causal_mask(T, S=None, batch=1):
    """Boolean (batch, T, S) causal mask: ``M[b, i, j] = j <= i + S - T`` (S defaults to T)."""
    S = T if S is None else S
    m = np.arange(S)[None, :] <= np.arange(T)[:, None] + (S - T)
    return np.broadcast_to(m, (batch, T, S)).copy()


def unilm_mask(segment_ids):
    """Boolean (B, S, S) UniLM mask: ``M[b, i, j] = c[b, j] <= c[b, i]``, ``c = cumsum(segment_ids)``."""
    seg = np.asarray(segment_ids)
    if seg.ndim != 2:
        raise ValueError(f"segment_ids must have shape (B, S), got {shape_str(seg.shape)}")
    if seg.dtype == np.bool_:
        seg = seg.astype(np.int64)
    c = np.cumsum(_int_array(seg, "segment_ids", seg.shape), axis=1)
    return c[:, None, :] <= c[:, :, None]


def permutation_mask(order, inclusive=False):
    """Boolean (B, T, T) permutation-LM mask: ``M[b, i, j] = rank(j) < rank(i)`` (``<=`` when inclusive),
    with ``order[b, r]`` the position predicted ``r``-th."""
    o = np.asarray(order)
    if o.ndim != 2:
        raise ValueError(f"order must have shape (B, T), got {shape_str(o.shape)}")
    o = _int_array(o, "order", o.shape)
    if not (np.sort(o, axis=1) == np.arange(o.shape[1])).all():
        raise ValueError("each row of order must be a permutation of 0 .. T-1")
    rank = np.argsort(o, axis=1)
    if inclusive:
        return rank[:, None, :] <= rank[:, :, None]
    return rank[:, None, :] < rank[:, :, None]


# ---------------------------------------------------------------- tour
def tour_attention(show):
    """The tour's section for this module (see fastcore/_tour.py)."""
    from fastcore._tour import timed

    show.title("attention (structural masks, talking-heads)")
    rng = np.random.default_rng(0)
    B, H, T, d = 2, 4, 256, 64
    q, k, v = (rng.standard_normal((B, H, T, d), dtype=np.float32) for _ in range(3))
    seg = np.zeros((B, T), np.int64)
    seg[:, 100:] = 1
    lengths = np.array([T, 200])

    def np_attention(q, k, v, m):
        z = np.einsum("bhid,bhjd->bhij", q, k) / np.sqrt(d)
        z = np.where(m, z, -np.inf)
        mx = z.max(-1, keepdims=True)
        p = np.exp(z - mx)
        return np.einsum("bhij,bhjd->bhid", p / p.sum(-1, keepdims=True), v)

    m = (unilm_mask(seg) & padding_mask(lengths, T, T))[:, None]
    fast, tf = timed(attention, q, k, v, segment_ids=seg, lengths=lengths, n_threads=1)
    ref, tr = timed(np_attention, q, k, v, m)
    show.compare(f"UniLM + padding ({B},{H},{T},{d}) f32", tf, tr)
    show.line(f"max |difference| {np.abs(fast - ref).max():.1e}; no (T, S) mask was built")
    order = np.stack([rng.permutation(T) for _ in range(B)])
    out = attention(q, k, v, order=order, n_threads=1)
    show.line(f"permutation LM: first token in the order sees nothing -> row of zeros: "
              f"{bool((out[0, 0, order[0, 0]] == 0).all())}")
    lam = np.eye(H, dtype=np.float32) + 0.1
    _, tth = timed(attention, q, k, v, causal=True, pre_mix=lam, post_mix=lam, n_threads=1)
    show.line(f"talking-heads causal ({B},{H},{T},{d}): {tth * 1e3:.2f} ms")
