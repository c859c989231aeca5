"""attention / attention_backward against a plain NumPy reference that materialises the
scores and the masks, finite differences, and torch's scaled_dot_product_attention."""
import numpy as np
import pytest

from _helpers import FLOAT_DTYPES, needs, variants
from fastcore.attention import (AttentionGrads, attention, attention_backward, causal_mask,
                                padding_mask, permutation_mask, unilm_mask)


# ---------------------------------------------------------------- reference (independent code)
def ref_keep(B, H, T, S, lengths=None, causal=False, segment_ids=None, order=None, inclusive=False,
             mask=None):
    """The visibility matrix (B, H, T, S), built element by element from the definitions."""
    keep = np.ones((B, H, T, S), bool)
    if lengths is not None:
        for b in range(B):
            keep[b, :, :, lengths[b]:] = False
    if causal:
        for i in range(T):
            for j in range(S):
                if j > i + S - T:
                    keep[:, :, i, j] = False
    if segment_ids is not None:
        for b in range(B):
            c = np.cumsum(segment_ids[b])
            for i in range(T):
                for j in range(S):
                    if c[j] > c[i]:
                        keep[b, :, i, j] = False
    if order is not None:
        for b in range(B):
            rank = np.empty(T, int)
            for r, pos in enumerate(order[b]):
                rank[pos] = r
            for i in range(T):
                for j in range(S):
                    ok = rank[j] <= rank[i] if inclusive else rank[j] < rank[i]
                    if not ok:
                        keep[b, :, i, j] = False
    if mask is not None:
        keep &= np.broadcast_to(mask, keep.shape)
    return keep


def ref_attention(q, k, v, keep=None, bias=None, scale=None, pre=None, post=None):
    """(out, lse) in float64 from the materialised (B, H, T, S) logits."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    z = scale * np.einsum("bhid,bhjd->bhij", q, k)
    if pre is not None:
        z = np.einsum("hg,bgij->bhij", np.asarray(pre, np.float64), z)
    if bias is not None:
        z = z + np.asarray(bias, np.float64)
    if keep is not None:
        z = np.where(keep, z, -np.inf)
    m = z.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(z - m)
    s = e.sum(-1, keepdims=True)
    p = np.divide(e, s, out=np.zeros_like(e), where=s > 0)
    with np.errstate(divide="ignore"):
        lse = np.where(s[..., 0] > 0, m[..., 0] + np.log(s[..., 0]), -np.inf)
    if post is not None:
        p = np.einsum("hg,bgij->bhij", np.asarray(post, np.float64), p)
    return np.einsum("bhij,bhjd->bhid", p, v), lse


def rtol_atol(dtype):
    return (2e-4, 2e-5) if np.dtype(dtype) == np.float32 else (1e-10, 1e-12)


def assert_close(actual, expected, dtype):
    rtol, atol = rtol_atol(dtype)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def qkv(rng, B, H, T, S, dk, dv, dtype=np.float64):
    return (rng.standard_normal((B, H, T, dk)).astype(dtype), rng.standard_normal((B, H, S, dk)).astype(dtype),
            rng.standard_normal((B, H, S, dv)).astype(dtype))


def random_order(rng, B, T):
    return np.stack([rng.permutation(T) for _ in range(B)])


def unilm_segments(rng, B, S):
    seg = np.zeros((B, S), np.int64)
    for b in range(B):
        src = rng.integers(1, S)
        seg[b, src:] = 1
    return seg


# ---------------------------------------------------------------- no mask
SHAPES = [(1, 1, 1, 1, 1, 1), (2, 3, 5, 7, 4, 3), (1, 2, 67, 67, 16, 16), (2, 2, 130, 70, 64, 32),
          (1, 2, 70, 200, 8, 24), (1, 1, 3, 129, 5, 17)]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_no_mask_matches_reference(rng, dtype, shape):
    q, k, v = qkv(rng, *shape, dtype=dtype)
    out, lse = attention(q, k, v, return_lse=True)
    assert out.dtype == dtype and lse.dtype == dtype
    assert out.shape == shape[:3] + (shape[5],) and lse.shape == shape[:3]
    eo, el = ref_attention(q, k, v)
    assert_close(out, eo, dtype)
    assert_close(lse, el, dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_scale_and_large_logits(rng, dtype):
    q, k, v = qkv(rng, 1, 2, 40, 50, 8, 8, dtype)
    for scale in (0.3, 7.5, -2.0):
        assert_close(attention(q, k, v, scale=scale), ref_attention(q, k, v, scale=scale)[0], dtype)


def test_float32_close_to_float64(rng):
    q, k, v = qkv(rng, 2, 3, 100, 90, 32, 16)
    o64 = attention(q, k, v, causal=True)
    o32 = attention(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32), causal=True)
    np.testing.assert_allclose(o32, o64, rtol=1e-4, atol=1e-5)


def test_dtype_policy(rng):
    q, k, v = qkv(rng, 1, 1, 4, 4, 2, 2, np.float32)
    assert attention(q, k, v).dtype == np.float32
    assert attention(q, k.astype(np.float64), v).dtype == np.float64
    assert attention(q.astype(np.float16), k, v).dtype == np.float32
    assert attention(np.ones((1, 1, 2, 2), int), np.ones((1, 1, 2, 2), int), np.ones((1, 1, 2, 2), int)).dtype == np.float64


# ---------------------------------------------------------------- masks, one at a time and combined
def _mask_args(rng, kind, B, H, T, S):
    """(kwargs for attention, kwargs for ref_keep, bias for the reference)."""
    if kind == "lengths":
        ln = rng.integers(0, S + 1, size=B)
        ln[0] = S // 2
        return dict(lengths=ln), dict(lengths=ln), None
    if kind == "causal":
        return dict(causal=True), dict(causal=True), None
    if kind == "segments":
        seg = unilm_segments(rng, B, S)
        return dict(segment_ids=seg), dict(segment_ids=seg), None
    if kind in ("order", "order_inclusive"):
        o = random_order(rng, B, T)
        inc = kind == "order_inclusive"
        return dict(order=o, order_inclusive=inc), dict(order=o, inclusive=inc), None
    if kind == "mask":
        m = rng.random((B, 1, T, S)) > 0.3
        return dict(mask=m), dict(mask=m), None
    if kind == "bias":
        bias = rng.standard_normal((1, H, T, S))
        bias[rng.random(bias.shape) < 0.2] = -np.inf
        return dict(bias=bias), {}, bias
    raise AssertionError(kind)


KINDS = ["lengths", "causal", "segments", "order", "order_inclusive", "mask", "bias"]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", [9, 131])
def test_each_mask_kind(rng, dtype, kind, T):
    B, H, S, dk, dv = 2, 3, T, 16, 12
    q, k, v = qkv(rng, B, H, T, S, dk, dv, dtype)
    kw, kkw, bias = _mask_args(rng, kind, B, H, T, S)
    out, lse = attention(q, k, v, return_lse=True, **kw)
    eo, el = ref_attention(q, k, v, ref_keep(B, H, T, S, **kkw), bias=bias)
    assert_close(out, eo, dtype)
    assert_close(lse, el, dtype)
    assert not np.isnan(out).any()


COMBOS = [("lengths", "causal"), ("lengths", "segments"), ("lengths", "order"), ("segments", "order"),
          ("mask", "causal"), ("bias", "lengths", "causal"), ("mask", "order"), ("bias", "order_inclusive"),
          ("segments", "causal", "mask", "bias", "lengths"), ("lengths", "segments", "order", "mask", "bias")]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("combo", COMBOS, ids=["+".join(c) for c in COMBOS])
def test_mask_combinations(rng, dtype, combo):
    B, H, T, dk, dv = 3, 2, 75, 8, 5
    q, k, v = qkv(rng, B, H, T, T, dk, dv, dtype)
    kw, kkw, bias = {}, {}, None
    for kind in combo:
        a, b, c = _mask_args(rng, kind, B, H, T, T)
        kw.update(a)
        kkw.update(b)
        bias = c if c is not None else bias
    out, lse = attention(q, k, v, return_lse=True, **kw)
    eo, el = ref_attention(q, k, v, ref_keep(B, H, T, T, **kkw), bias=bias)
    assert_close(out, eo, dtype)
    assert_close(lse, el, dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("T,S", [(1, 200), (37, 150), (150, 37), (64, 128), (129, 65)])
def test_causal_with_t_not_s(rng, dtype, T, S):
    q, k, v = qkv(rng, 2, 2, T, S, 16, 8, dtype)
    ln = np.array([S, S // 3])
    out, lse = attention(q, k, v, causal=True, lengths=ln, return_lse=True)
    eo, el = ref_attention(q, k, v, ref_keep(2, 2, T, S, lengths=ln, causal=True))
    assert_close(out, eo, dtype)
    assert_close(lse, el, dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_broadcast_masks_and_bias(rng, dtype):
    B, H, T, S = 2, 3, 20, 30
    q, k, v = qkv(rng, B, H, T, S, 4, 4, dtype)
    for mshape in [(S,), (T, S), (B, 1, 1, S), (1, H, T, 1), (B, H, T, S), (H, 1, S)]:
        m = rng.random(mshape) > 0.4
        bias = rng.standard_normal(mshape)
        out = attention(q, k, v, mask=m, bias=bias)
        eo, _ = ref_attention(q, k, v, np.broadcast_to(m, (B, H, T, S)), bias=bias)
        assert_close(out, eo, dtype)
    # integer 0/1 masks as tokenizers give them
    m = (rng.random((B, 1, 1, S)) > 0.5).astype(np.int64)
    np.testing.assert_array_equal(attention(q, k, v, mask=m), attention(q, k, v, mask=m.astype(bool)))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_structural_masks_equal_explicit(rng, dtype):
    B, H, T = 2, 2, 100
    q, k, v = qkv(rng, B, H, T, T, 16, 16, dtype)
    ln = np.array([T, 61])
    seg = unilm_segments(rng, B, T)
    o = random_order(rng, B, T)
    cases = [
        (dict(lengths=ln), padding_mask(ln, T, T)),
        (dict(causal=True), causal_mask(T, batch=B)),
        (dict(segment_ids=seg), unilm_mask(seg)),
        (dict(order=o), permutation_mask(o)),
        (dict(order=o, order_inclusive=True), permutation_mask(o, inclusive=True)),
        (dict(segment_ids=seg, lengths=ln), unilm_mask(seg) & padding_mask(ln, T, T)),
    ]
    rtol, atol = rtol_atol(dtype)
    for kw, m in cases:
        np.testing.assert_allclose(attention(q, k, v, **kw), attention(q, k, v, mask=m[:, None]),
                                   rtol=rtol, atol=atol, err_msg=str(list(kw)))


def test_mask_builders_match_definitions(rng):
    B, T = 3, 12
    ln = np.array([12, 5, 0])
    seg = unilm_segments(rng, B, T)
    o = random_order(rng, B, T)
    np.testing.assert_array_equal(padding_mask(ln, T, T), ref_keep(B, 1, T, T, lengths=ln)[:, 0])
    np.testing.assert_array_equal(causal_mask(T, 15, batch=B), ref_keep(B, 1, T, 15, causal=True)[:, 0])
    np.testing.assert_array_equal(unilm_mask(seg), ref_keep(B, 1, T, T, segment_ids=seg)[:, 0])
    np.testing.assert_array_equal(permutation_mask(o), ref_keep(B, 1, T, T, order=o)[:, 0])
    np.testing.assert_array_equal(permutation_mask(o, inclusive=True),
                                  ref_keep(B, 1, T, T, order=o, inclusive=True)[:, 0])
    # the identity order is the causal mask (strict: without the diagonal)
    ident = np.tile(np.arange(T), (1, 1))
    np.testing.assert_array_equal(permutation_mask(ident, inclusive=True)[0], causal_mask(T)[0])


def test_no_mask_equals_all_ones_mask(rng):
    q, k, v = qkv(rng, 2, 3, 70, 90, 16, 8, np.float32)
    np.testing.assert_array_equal(attention(q, k, v), attention(q, k, v, mask=np.ones((70, 90), bool)))
    np.testing.assert_array_equal(attention(q, k, v), attention(q, k, v, lengths=[90, 90]))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_rows_without_visible_keys(rng, dtype):
    B, H, T = 3, 2, 70
    q, k, v = qkv(rng, B, H, T, T, 8, 8, dtype)
    # lengths 0 for one batch element; strict order leaves its first token empty
    ln = np.array([T, 0, 40])
    o = random_order(rng, B, T)
    out, lse = attention(q, k, v, lengths=ln, order=o, return_lse=True)
    assert (out[1] == 0).all() and (lse[1] == -np.inf).all()
    for b in (0, 2):
        assert (out[b, :, o[b, 0]] == 0).all() and (lse[b, :, o[b, 0]] == -np.inf).all()
    assert not np.isnan(out).any() and not np.isnan(lse).any()
    # a mask row all False, a bias row all -inf
    m = np.ones((T, T), bool)
    m[5] = False
    bias = np.zeros((T, T))
    bias[9] = -np.inf
    out, lse = attention(q, k, v, mask=m, bias=bias, return_lse=True)
    assert (out[:, :, [5, 9]] == 0).all() and (lse[:, :, [5, 9]] == -np.inf).all()
    eo, el = ref_attention(q, k, v, np.broadcast_to(m, (B, H, T, T)), bias=bias)
    assert_close(out, eo, dtype)
    assert_close(lse, el, dtype)
    # no keys at all
    out, lse = attention(q, k[:, :, :0], v[:, :, :0], return_lse=True)
    assert out.shape == (B, H, T, 8) and (out == 0).all() and (lse == -np.inf).all()


def test_empty_batch_and_queries(rng):
    q, k, v = qkv(rng, 0, 2, 5, 5, 3, 4)
    assert attention(q, k, v).shape == (0, 2, 5, 4)
    q, k, v = qkv(rng, 2, 2, 0, 5, 3, 4)
    out, lse = attention(q, k, v, return_lse=True)
    assert out.shape == (2, 2, 0, 4) and lse.shape == (2, 2, 0)


# ---------------------------------------------------------------- layouts and threads
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_layouts_and_inputs_untouched(rng, dtype):
    q, k, v = qkv(rng, 2, 2, 33, 40, 8, 6, dtype)
    expected = attention(q, k, v, causal=True)
    for kind in variants(q):
        qs, ks, vs = variants(q)[kind], variants(k)[kind], variants(v)[kind]
        before = [a.copy() for a in (qs, ks, vs)]
        np.testing.assert_array_equal(attention(qs, ks, vs, causal=True), expected, err_msg=kind)
        for a, bb in zip((qs, ks, vs), before):
            np.testing.assert_array_equal(a, bb)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_thread_count_does_not_change_results(rng, dtype):
    B, H, T = 2, 3, 200
    q, k, v = qkv(rng, B, H, T, T, 16, 16, dtype)
    seg = unilm_segments(rng, B, T)
    lam = rng.standard_normal((H, H)) * 0.5
    for kw in [{}, dict(causal=True), dict(segment_ids=seg, lengths=[T, 150]),
               dict(order=random_order(rng, B, T)), dict(pre_mix=lam, post_mix=lam, causal=True)]:
        a = attention(q, k, v, n_threads=1, return_lse=True, **kw)
        b = attention(q, k, v, n_threads=2, return_lse=True, **kw)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    out, lse = attention(q, k, v, causal=True, return_lse=True)
    g = rng.standard_normal(out.shape).astype(dtype)
    r1 = attention_backward(g, q, k, v, out, lse, causal=True, n_threads=1)
    r2 = attention_backward(g, q, k, v, out, lse, causal=True, n_threads=2)
    for a, b in zip(r1, r2):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- talking heads
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("mix", ["pre", "post", "both"])
@pytest.mark.parametrize("masks", ["none", "causal", "all"])
def test_talking_heads(rng, dtype, mix, masks):
    B, H, T, dk, dv = 2, 4, 70, 8, 6
    q, k, v = qkv(rng, B, H, T, T, dk, dv, dtype)
    pre = rng.standard_normal((H, H)) if mix in ("pre", "both") else None
    post = rng.standard_normal((H, H)) if mix in ("post", "both") else None
    kw, kkw, bias = {}, {}, None
    if masks == "causal":
        kw, kkw = dict(causal=True), dict(causal=True)
    elif masks == "all":
        ln = np.array([T, 50])
        seg = unilm_segments(rng, B, T)
        m = rng.random((B, H, T, T)) > 0.2
        bias = rng.standard_normal((1, H, 1, T))
        kw = dict(lengths=ln, segment_ids=seg, mask=m, bias=bias)
        kkw = dict(lengths=ln, segment_ids=seg, mask=m)
    out, lse = attention(q, k, v, pre_mix=pre, post_mix=post, return_lse=True, **kw)
    eo, el = ref_attention(q, k, v, ref_keep(B, H, T, T, **kkw), bias=bias, pre=pre, post=post)
    assert_close(out, eo, dtype)
    assert_close(lse, el, dtype)


def test_talking_heads_identity_and_single_head(rng):
    q, k, v = qkv(rng, 2, 3, 50, 60, 8, 8)
    eye = np.eye(3)
    np.testing.assert_allclose(attention(q, k, v, pre_mix=eye, post_mix=eye, causal=True),
                               attention(q, k, v, causal=True), rtol=1e-12, atol=1e-13)
    # H = 1: the pre-mix is a logit scale, the post-mix a plain factor
    q1, k1, v1 = q[:, :1], k[:, :1], v[:, :1]
    np.testing.assert_allclose(attention(q1, k1, v1, pre_mix=[[2.5]], post_mix=[[-0.5]]),
                               -0.5 * attention(q1, k1, v1, scale=2.5 / np.sqrt(8)), rtol=1e-12, atol=1e-13)


def test_talking_heads_order(rng):
    B, H, T = 2, 3, 40
    q, k, v = qkv(rng, B, H, T, T, 4, 4)
    o = random_order(rng, B, T)
    pre, post = rng.standard_normal((H, H)), rng.standard_normal((H, H))
    out = attention(q, k, v, order=o, pre_mix=pre, post_mix=post)
    eo, _ = ref_attention(q, k, v, ref_keep(B, H, T, T, order=o), pre=pre, post=post)
    np.testing.assert_allclose(out, eo, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- backward
def _fd_grads(q, k, v, g, kw, eps=1e-6):
    grads = []
    for x in (q, k, v):
        gx = np.zeros_like(x)
        for idx in np.ndindex(*x.shape):
            old = x[idx]
            x[idx] = old + eps
            lp = np.sum(attention(q, k, v, **kw) * g)
            x[idx] = old - eps
            lm = np.sum(attention(q, k, v, **kw) * g)
            x[idx] = old
            gx[idx] = (lp - lm) / (2 * eps)
        grads.append(gx)
    return grads


FD_CASES = ["none", "causal", "lengths", "segments", "order", "order_inclusive", "mask", "bias", "combo"]


@pytest.mark.parametrize("case", FD_CASES)
def test_backward_finite_differences(rng, case):
    B, H, T, S, dk, dv = 2, 2, 5, 5, 3, 2
    q, k, v = qkv(rng, B, H, T, S, dk, dv)
    kw = {}
    if case == "combo":
        for kind in ("lengths", "segments", "bias"):
            kw.update(_mask_args(rng, kind, B, H, T, S)[0])
        kw["lengths"] = np.array([5, 4])
    elif case != "none":
        kw = _mask_args(rng, case, B, H, T, S)[0]
    out, lse = attention(q, k, v, return_lse=True, **kw)
    g = rng.standard_normal(out.shape)
    dq, dk_, dv_ = attention_backward(g, q, k, v, out, lse, **kw)
    fq, fk, fv = _fd_grads(q, k, v, g, kw)
    for a, e, name in ((dq, fq, "dq"), (dk_, fk, "dk"), (dv_, fv, "dv")):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("T,S", [(70, 70), (40, 130), (130, 40)])
def test_backward_larger_tiles_against_reference_grads(rng, T, S):
    # analytic gradients of the materialised reference, float64
    B, H, dk, dv = 1, 2, 16, 8
    q, k, v = qkv(rng, B, H, T, S, dk, dv)
    ln = np.array([S - 3])
    keep = ref_keep(B, H, T, S, lengths=ln, causal=True)
    out, lse = attention(q, k, v, lengths=ln, causal=True, return_lse=True)
    g = rng.standard_normal(out.shape)
    dq, dk_, dv_ = attention_backward(g, q, k, v, out, lse, lengths=ln, causal=True)
    sc = 1 / np.sqrt(dk)
    z = np.where(keep, sc * np.einsum("bhid,bhjd->bhij", q, k), -np.inf)
    with np.errstate(invalid="ignore"):
        p = np.where(keep, np.exp(z - np.where(np.isfinite(lse), lse, 0)[..., None]), 0.0)
    rv = np.einsum("bhij,bhid->bhjd", p, g)
    dp = np.einsum("bhid,bhjd->bhij", g, v)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True)) * sc
    np.testing.assert_allclose(dv_, rv, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dq, np.einsum("bhij,bhjd->bhid", ds, k), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dk_, np.einsum("bhij,bhid->bhjd", ds, q), rtol=1e-10, atol=1e-12)


def test_backward_bad_inputs(rng):
    q, k, v = qkv(rng, 1, 2, 4, 4, 3, 3)
    out, lse = attention(q, k, v, return_lse=True)
    with pytest.raises(ValueError, match="pre_mix must have shape"):
        attention_backward(out, q, k, v, out, lse, pre_mix=np.eye(3))
    with pytest.raises(ValueError, match="post_mix contains"):
        attention_backward(out, q, k, v, out, lse, post_mix=[[1, np.nan], [0, 1]])
    with pytest.raises(ValueError, match="return_dbias=True needs the bias"):
        attention_backward(out, q, k, v, out, lse, return_dbias=True)
    with pytest.raises(TypeError, match="return_dbias must be a bool"):
        attention_backward(out, q, k, v, out, lse, bias=np.zeros(4), return_dbias="yes")
    with pytest.raises(ValueError, match="dout must have shape"):
        attention_backward(out[:, :, :3], q, k, v, out, lse)
    with pytest.raises(ValueError, match="lse must have shape"):
        attention_backward(out, q, k, v, out, lse[:, :1])
    bad = lse.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="lse contains NaN"):
        attention_backward(out, q, k, v, out, bad)
    g = out.copy()
    g[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="dout contains"):
        attention_backward(g, q, k, v, out, lse)


# ---------------------------------------------------------------- backward: talking heads, bias
def _fd(loss, params, eps=1e-6):
    """Central differences of loss() with respect to every entry of each array in params
    (perturbed in place and restored)."""
    grads = []
    for x in params:
        gx = np.zeros_like(x)
        for idx in np.ndindex(*x.shape):
            old = x[idx]
            x[idx] = old + eps
            lp = loss()
            x[idx] = old - eps
            lm = loss()
            x[idx] = old
            gx[idx] = (lp - lm) / (2 * eps)
        grads.append(gx)
    return grads


def _grad_masks(rng, masks, B, H, T, S):
    """Mask keywords for the gradient tests; every case has a row with no visible key."""
    if masks == "causal":  # T > S: query 0 sees j <= 0 + S - T < 0, nothing
        return dict(causal=True)
    if masks == "lengths":  # batch 1 has no key at all
        return dict(lengths=np.array([S - 2, 0]))
    if masks == "order":  # the strict order's first token sees nothing
        return dict(order=random_order(rng, B, T))
    if masks == "all":
        m = rng.random((B, H, T, S)) > 0.25
        m[0, :, 1] = False  # row 1 of batch 0: nothing visible in any head
        return dict(lengths=np.array([S, S - 1]), segment_ids=unilm_segments(rng, B, S), mask=m)
    raise AssertionError(masks)


TH_FD = [(mix, masks) for mix in ("pre", "post", "both") for masks in ("causal", "lengths", "order", "all")]


@pytest.mark.parametrize("mix,masks", TH_FD, ids=[f"{a}-{b}" for a, b in TH_FD])
def test_talking_heads_backward_finite_differences(rng, mix, masks):
    B, H, dk, dv = 2, 3, 3, 2
    T, S = (6, 5) if masks == "causal" else (5, 5)
    q, k, v = qkv(rng, B, H, T, S, dk, dv)
    pre = rng.standard_normal((H, H)) if mix in ("pre", "both") else None
    post = rng.standard_normal((H, H)) if mix in ("post", "both") else None
    bias = rng.standard_normal((1, H, T, S)) if mix == "both" else None
    kw = dict(_grad_masks(rng, masks, B, H, T, S), pre_mix=pre, post_mix=post, bias=bias)
    out, lse = attention(q, k, v, return_lse=True, **kw)
    assert np.isneginf(lse).any()  # the row with no visible key is there
    g = rng.standard_normal(out.shape)
    res = attention_backward(g, q, k, v, out, lse, return_dbias=bias is not None, **kw)
    assert isinstance(res, AttentionGrads)
    params = [q, k, v] + [a for a in (pre, post, bias) if a is not None]
    names = ["dq", "dk", "dv"] + [n for n, a in (("dpre_mix", pre), ("dpost_mix", post), ("dbias", bias))
                                  if a is not None]
    fd = _fd(lambda: np.sum(attention(q, k, v, **kw) * g), params)
    for name, e in zip(names, fd):
        a = getattr(res, name)
        assert a.shape == e.shape and a.dtype == np.float64
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-8, err_msg=name)
    for name, a in (("dpre_mix", pre), ("dpost_mix", post), ("dbias", bias)):
        if a is None:
            assert getattr(res, name) is None


BIAS_SHAPES = [(2, 2, 5, 6), (1, 2, 1, 6), (5, 6), (2, 1, 5, 6), (6,), (2, 1, 1, 1)]


@pytest.mark.parametrize("bshape", BIAS_SHAPES, ids=[str(s) for s in BIAS_SHAPES])
@pytest.mark.parametrize("masks", ["none", "causal", "order", "all"])
def test_bias_gradient_finite_differences(rng, bshape, masks):
    B, H, T, S, dk, dv = 2, 2, 5, 6, 3, 2
    if masks == "order":
        S = T
        bshape = tuple(T if x == 6 else x for x in bshape)
    q, k, v = qkv(rng, B, H, T, S, dk, dv)
    bias = rng.standard_normal(bshape)
    kw = dict(bias=bias)
    if masks == "causal":
        kw.update(causal=True, lengths=np.array([S, 0]))
    elif masks == "order":
        kw.update(order=random_order(rng, B, T), lengths=np.array([T, 3]))
    elif masks == "all":
        m = rng.random((B, H, T, S)) > 0.3
        m[1, 0, 2] = False
        kw.update(mask=m, lengths=np.array([S - 1, S]), causal=True)
    out, lse = attention(q, k, v, return_lse=True, **kw)
    g = rng.standard_normal(out.shape)
    res = attention_backward(g, q, k, v, out, lse, return_dbias=True, **kw)
    assert isinstance(res, AttentionGrads) and res.dpre_mix is None and res.dpost_mix is None
    fd = _fd(lambda: np.sum(attention(q, k, v, **kw) * g), [q, k, v, bias])
    for name, e in zip(("dq", "dk", "dv", "dbias"), fd):
        np.testing.assert_allclose(getattr(res, name), e, rtol=1e-6, atol=1e-8, err_msg=name)
    # the plain call is unchanged: a 3-tuple, the same dq, dk, dv
    plain = attention_backward(g, q, k, v, out, lse, **kw)
    assert type(plain) is tuple and len(plain) == 3
    for a, b in zip(plain, res[:3]):
        np.testing.assert_array_equal(a, b)


def test_bias_gradient_hidden_entries_are_zero(rng):
    B, H, T, S = 1, 2, 7, 7
    q, k, v = qkv(rng, B, H, T, S, 4, 4)
    bias = rng.standard_normal((B, H, T, S))
    bias[0, 1, 3, 2] = -np.inf
    kw = dict(bias=bias, causal=True, lengths=[5])
    out, lse = attention(q, k, v, return_lse=True, **kw)
    db = attention_backward(rng.standard_normal(out.shape), q, k, v, out, lse, return_dbias=True, **kw).dbias
    hidden = ~ref_keep(B, H, T, S, lengths=[5], causal=True) | np.isneginf(bias)
    assert (db[hidden] == 0).all()
    # a row with one visible key has P = 1 there and a zero gradient; others are nonzero
    several = np.broadcast_to((~hidden).sum(-1, keepdims=True) > 1, hidden.shape)
    assert (db[~hidden & several] != 0).all()
    # a softmax row's logit gradients sum to 0
    np.testing.assert_allclose(db.sum(-1), 0, atol=1e-12)


@needs("torch")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("masks", ["causal", "segments+lengths", "order", "mask"])
def test_talking_heads_backward_matches_torch_autograd(rng, dtype, masks):
    """Several query and key tiles; torch composes the same computation from its ops."""
    import torch

    B, H, T, S, dk, dv = 2, 3, 130, 130, 16, 24
    if masks == "causal":
        T = 100
    q, k, v = qkv(rng, B, H, T, S, dk, dv, dtype)
    pre = (np.eye(H) + 0.3 * rng.standard_normal((H, H))).astype(dtype)
    post = (np.eye(H) + 0.3 * rng.standard_normal((H, H))).astype(dtype)
    bias = rng.standard_normal((1, H, 1, S)).astype(dtype)
    if masks == "causal":
        kw, kkw = dict(causal=True), dict(causal=True)
    elif masks == "segments+lengths":
        seg, ln = unilm_segments(rng, B, S), np.array([S, 77])
        kw, kkw = dict(segment_ids=seg, lengths=ln), dict(segment_ids=seg, lengths=ln)
    elif masks == "order":
        o = random_order(rng, B, T)
        kw, kkw = dict(order=o), dict(order=o)
    else:
        m = rng.random((B, 1, T, S)) > 0.5
        kw, kkw = dict(mask=m), dict(mask=m)
    keep = ref_keep(B, H, T, S, **kkw)
    out, lse = attention(q, k, v, return_lse=True, pre_mix=pre, post_mix=post, bias=bias, **kw)
    g = rng.standard_normal(out.shape).astype(dtype)
    res = attention_backward(g, q, k, v, out, lse, pre_mix=pre, post_mix=post, bias=bias,
                             return_dbias=True, **kw)
    leaves = [torch.from_numpy(a.copy()).requires_grad_(True) for a in (q, k, v, pre, post, bias)]
    tq, tk, tv, tpre, tpost, tb = leaves
    z = torch.einsum("hg,bgij->bhij", tpre, torch.matmul(tq, tk.transpose(-1, -2)) / np.sqrt(dk)) + tb
    z = z.masked_fill(~torch.from_numpy(keep), -np.inf)
    p = torch.nan_to_num(torch.softmax(z, dim=-1), nan=0.0)  # rows with no visible key: 0
    to = torch.matmul(torch.einsum("hg,bgij->bhij", tpost, p), tv)
    to.backward(torch.from_numpy(g))
    tol = dict(rtol=2e-3, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(out, to.detach().numpy(), **tol)
    for name, t in zip(AttentionGrads._fields, leaves):
        a = getattr(res, name)
        assert a.dtype == dtype and a.shape == t.shape
        # the (H, H) and bias gradients are sums over B*T*S entries: scale the tolerance
        scale = max(1.0, float(np.abs(t.grad.numpy()).max())) if name in ("dpre_mix", "dpost_mix", "dbias") else 1.0
        np.testing.assert_allclose(a, t.grad.numpy(), rtol=tol["rtol"], atol=tol["atol"] * scale, err_msg=name)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_mixed_and_bias_backward_thread_count_does_not_change_results(rng, dtype):
    B, H, T = 3, 3, 150
    q, k, v = qkv(rng, B, H, T, T, 8, 8, dtype)
    lam = rng.standard_normal((H, H)) * 0.5
    g = rng.standard_normal((B, H, T, 8)).astype(dtype)
    for kw in [dict(pre_mix=lam, post_mix=lam, causal=True, bias=rng.standard_normal((B, H, T, T))),
               dict(pre_mix=lam, bias=rng.standard_normal((1, H, 1, T))),
               dict(post_mix=lam, lengths=[T, 90, 0]),
               dict(bias=rng.standard_normal((1, 1, T, T)), causal=True),
               dict(bias=rng.standard_normal((B, 1, 1, T))), dict(bias=rng.standard_normal((1, H, T, T)))]:
        out, lse = attention(q, k, v, return_lse=True, **kw)
        db = "bias" in kw
        r1 = attention_backward(g, q, k, v, out, lse, n_threads=1, return_dbias=db, **kw)
        r2 = attention_backward(g, q, k, v, out, lse, n_threads=2, return_dbias=db, **kw)
        for a, b in zip(r1, r2):
            if a is None:
                assert b is None
            else:
                np.testing.assert_array_equal(a, b)


def test_talking_heads_backward_float32_close_to_float64(rng):
    B, H, T = 2, 4, 90
    q, k, v = qkv(rng, B, H, T, T, 16, 8)
    pre, post = np.eye(H) + 0.2 * rng.standard_normal((H, H)), np.eye(H) + 0.2 * rng.standard_normal((H, H))
    kw = dict(pre_mix=pre, post_mix=post, causal=True)
    g = rng.standard_normal((B, H, T, 8))
    r = {}
    for dt in (np.float32, np.float64):
        a = [x.astype(dt) for x in (q, k, v)]
        out, lse = attention(*a, return_lse=True, **kw)
        r[dt] = attention_backward(g.astype(dt), *a, out, lse, **kw)
    for x32, x64 in zip(r[np.float32], r[np.float64]):
        if x64 is not None:
            np.testing.assert_allclose(x32, x64, rtol=2e-3, atol=2e-3 * np.abs(x64).max())


def test_talking_heads_backward_empty_and_inputs_untouched(rng):
    q, k, v = qkv(rng, 2, 2, 0, 4, 3, 3)
    out, lse = attention(q, k, v, return_lse=True)
    res = attention_backward(out, q, k, v, out, lse, pre_mix=np.eye(2), post_mix=np.eye(2))
    assert res.dq.shape == q.shape and (res.dk == 0).all() and (res.dpre_mix == 0).all()
    q, k, v = qkv(rng, 1, 2, 7, 9, 3, 3)
    pre, post, bias = rng.standard_normal((2, 2)), rng.standard_normal((2, 2)), rng.standard_normal((1, 2, 1, 9))
    out, lse = attention(q, k, v, return_lse=True, pre_mix=pre, post_mix=post, bias=bias)
    g = rng.standard_normal(out.shape)
    ins = [q, k, v, out, lse, g, pre, post, bias]
    before = [a.copy() for a in ins]
    attention_backward(g, q, k, v, out, lse, pre_mix=pre, post_mix=post, bias=bias, return_dbias=True)
    for a, b in zip(ins, before):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- torch
@needs("torch")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_matches_torch_sdpa(rng, dtype):
    import torch
    import torch.nn.functional as F

    B, H, T, d = 2, 3, 150, 32
    q, k, v = qkv(rng, B, H, T, T, d, d, dtype)
    tq, tk, tv = (torch.from_numpy(a) for a in (q, k, v))
    rtol, atol = rtol_atol(dtype)
    rtol, atol = max(rtol, 1e-9), max(atol, 1e-10)
    np.testing.assert_allclose(attention(q, k, v), F.scaled_dot_product_attention(tq, tk, tv).numpy(),
                               rtol=rtol, atol=atol)
    np.testing.assert_allclose(attention(q, k, v, causal=True),
                               F.scaled_dot_product_attention(tq, tk, tv, is_causal=True).numpy(),
                               rtol=rtol, atol=atol)
    seg = unilm_segments(rng, B, T)
    m = unilm_mask(seg)[:, None]
    np.testing.assert_allclose(attention(q, k, v, segment_ids=seg),
                               F.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.from_numpy(m)).numpy(),
                               rtol=rtol, atol=atol)
    # dk != dv (torch's math path)
    v2 = rng.standard_normal((B, H, T, 12)).astype(dtype)
    np.testing.assert_allclose(attention(q, k, v2, causal=True),
                               F.scaled_dot_product_attention(tq, tk, torch.from_numpy(v2), is_causal=True).numpy(),
                               rtol=rtol, atol=atol)


@needs("torch")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kind", ["causal", "order", "segments"])
def test_backward_matches_torch_autograd(rng, dtype, kind):
    import torch
    import torch.nn.functional as F

    B, H, T, dk, dv = 2, 2, 90, 16, 8
    q, k, v = qkv(rng, B, H, T, T, dk, dv, dtype)
    kw, kkw, _ = _mask_args(rng, kind, B, H, T, T)
    keep = ref_keep(B, H, T, T, **kkw)
    out, lse = attention(q, k, v, return_lse=True, **kw)
    g = rng.standard_normal(out.shape).astype(dtype)
    dq, dk_, dv_ = attention_backward(g, q, k, v, out, lse, **kw)
    tq, tk, tv = (torch.from_numpy(a.copy()).requires_grad_(True) for a in (q, k, v))
    to = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.from_numpy(keep))
    to.backward(torch.from_numpy(g))
    tol = dict(rtol=1e-3, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-10)
    # torch gives NaN on fully masked rows (the strict order's first token); we give 0
    ok = keep.any(-1)
    np.testing.assert_allclose(out[ok], np.nan_to_num(to.detach().numpy())[ok], **tol)
    for a, t in ((dq, tq), (dk_, tk), (dv_, tv)):
        np.testing.assert_allclose(a, np.nan_to_num(t.grad.numpy()), **tol)


# ---------------------------------------------------------------- bad input
def test_bad_inputs_are_clear_errors(rng):
    q, k, v = qkv(rng, 2, 2, 6, 6, 4, 3)
    with pytest.raises(ValueError, match="q must have 4 dimension"):
        attention(q[0], k, v)
    with pytest.raises(ValueError, match="k must have shape"):
        attention(q, k[..., :3], v)
    with pytest.raises(ValueError, match="k must have shape"):
        attention(q, k[:1], v)
    with pytest.raises(ValueError, match="v must have shape"):
        attention(q, k, v[:, :, :5])
    with pytest.raises(TypeError, match="q must be a real numeric array"):
        attention(q.astype(complex), k, v)
    for name in ("q", "k", "v"):
        args = {"q": q.copy(), "k": k.copy(), "v": v.copy()}
        args[name][0, 0, 0, 0] = np.nan
        with pytest.raises(ValueError, match=f"{name} contains NaN"):
            attention(args["q"], args["k"], args["v"])
        args[name][0, 0, 0, 0] = -np.inf
        with pytest.raises(ValueError, match=f"{name} contains infinite values"):
            attention(args["q"], args["k"], args["v"])
        args[name] = args[name].astype(np.float32)  # the float32 check too
        args[name][-1, -1, -1, -1] = np.inf
        args[name][0, 0, 0, 0] = 0
        with pytest.raises(ValueError, match=f"{name} contains infinite values"):
            attention(args["q"].astype(np.float32), args["k"].astype(np.float32), args["v"].astype(np.float32))
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, S\]"):
        attention(q, k, v, lengths=[7, 3])
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, S\]"):
        attention(q, k, v, lengths=[-1, 3])
    with pytest.raises(ValueError, match=r"lengths must have shape \(2,\)"):
        attention(q, k, v, lengths=[1, 2, 3])
    with pytest.raises(TypeError, match="lengths must be an integer array"):
        attention(q, k, v, lengths=[1.5, 2.0])
    with pytest.raises(ValueError, match="permutation"):
        attention(q, k, v, order=[[0, 1, 2, 3, 4, 4], [0, 1, 2, 3, 4, 5]])
    with pytest.raises(ValueError, match=r"order must have shape \(2, 6\)"):
        attention(q, k, v, order=np.arange(6))
    with pytest.raises(ValueError, match="causal and order cannot be combined"):
        attention(q, k, v, causal=True, order=np.tile(np.arange(6), (2, 1)))
    with pytest.raises(ValueError, match="T == S"):
        attention(q[:, :, :5], k, v, segment_ids=np.zeros((2, 6), int))
    with pytest.raises(ValueError, match="T == S"):
        attention(q[:, :, :5], k, v, order=np.tile(np.arange(5), (2, 1)))
    with pytest.raises(TypeError, match="segment_ids must be an integer array"):
        attention(q, k, v, segment_ids=np.zeros((2, 6)))
    with pytest.raises(ValueError, match="mask of shape"):
        attention(q, k, v, mask=np.ones((3, 6), bool))
    with pytest.raises(TypeError, match="mask must be a boolean array"):
        attention(q, k, v, mask=np.ones((6, 6)))
    with pytest.raises(ValueError, match="bias of shape"):
        attention(q, k, v, bias=np.ones((5, 6)))
    with pytest.raises(ValueError, match="bias contains NaN"):
        attention(q, k, v, bias=np.full((6, 6), np.nan))
    with pytest.raises(ValueError, match=r"pre_mix must have shape \(H, H\)"):
        attention(q, k, v, pre_mix=np.eye(3))
    with pytest.raises(ValueError, match="post_mix contains NaN"):
        attention(q, k, v, post_mix=np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="scale must be finite"):
        attention(q, k, v, scale=np.inf)
    with pytest.raises(TypeError, match="causal must be a bool"):
        attention(q, k, v, causal="yes")
    with pytest.raises(ValueError, match="at least 1"):
        attention(q[..., :0], k[..., :0], v)
    with pytest.raises(ValueError, match="n_threads"):
        attention(q, k, v, n_threads=0)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_long_sequences_several_query_groups(rng, dtype):
    # T > 256: several work items of grouped query tiles per (b, h)
    B, H, T = 2, 2, 290
    q, k, v = qkv(rng, B, H, T, T, 8, 8, dtype)
    ln = np.array([T, 201])
    seg = unilm_segments(rng, B, T)
    for kw, kkw in [(dict(causal=True, lengths=ln), dict(causal=True, lengths=ln)),
                    (dict(segment_ids=seg), dict(segment_ids=seg)), ({}, {})]:
        out, lse = attention(q, k, v, return_lse=True, n_threads=2, **kw)
        eo, el = ref_attention(q, k, v, ref_keep(B, H, T, T, **kkw))
        assert_close(out, eo, dtype)
        assert_close(lse, el, dtype)
        np.testing.assert_array_equal(out, attention(q, k, v, n_threads=1, **kw))
    out = attention(q[:, :, :100], k, v, causal=True)
    assert_close(out, ref_attention(q[:, :, :100], k, v, ref_keep(B, H, 100, T, causal=True))[0], dtype)


@pytest.mark.parametrize("dtype,big", [(np.float32, 1e20), (np.float64, 1e160)])
@pytest.mark.parametrize("mix", [None, "pre_mix", "post_mix"])
def test_overflowing_logits_raise(dtype, big, mix):
    # issue 28 item 5: q.k ~ 1e40 in float32 (1e320 in float64) overflowed to +inf and the row
    # came back as "no visible key" (out 0, lse -inf), silently
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, 2, 3, 4)).astype(dtype)
    k = rng.standard_normal((1, 2, 5, 4)).astype(dtype)
    v = rng.standard_normal((1, 2, 5, 4)).astype(dtype)
    kw = {} if mix is None else {mix: np.eye(2, dtype=dtype)}
    q[0, 1, 2] = big
    k[0, 1, 3] = big
    # (pre_mix: 0 * inf makes the other head's logits NaN as well, and it is reported first)
    where = "head [01]" if mix == "pre_mix" else "head 1"
    with pytest.raises(ValueError, match=rf"attention: the logits overflow .*{where}, query 2"):
        attention(q, k, v, **kw)
    # large but finite logits are fine: the largest key wins
    out = attention(q / big * 1e3, k, v, **kw)
    assert np.isfinite(out).all()
    if mix is None:
        np.testing.assert_allclose(out[0, 1, 2], v[0, 1, 3], rtol=1e-6)
    # the backward recomputes the logits: the same inputs are an error there too
    out, lse = attention(q / big, k, v, return_lse=True, **kw)
    with pytest.raises(ValueError, match="attention_backward: d[qkv] is not finite"):
        attention_backward(np.ones_like(out), q, k, v, out, lse, **kw)
