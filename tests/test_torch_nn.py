"""fastcore.torch: attention, MultiHeadAttention, masked_softmax, logsumexp and MEMM as
differentiable torch operations (gradcheck in float64, torch's own ops as references)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fastcore import crf  # noqa: E402
from fastcore.attention import permutation_mask, unilm_mask  # noqa: E402
from fastcore.torch import MEMM, MultiHeadAttention, attention, logsumexp, masked_softmax  # noqa: E402

F64 = torch.float64


def _qkv(B=2, H=3, T=5, S=5, dk=4, dv=6, dtype=F64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*shape, generator=g, dtype=dtype, requires_grad=True)
                 for shape in ((B, H, T, dk), (B, H, S, dk), (B, H, S, dv)))


MASKS = {
    "none": {},
    "causal": {"causal": True},
    "lengths": {"lengths": torch.tensor([5, 2])},
    "causal+lengths": {"causal": True, "lengths": np.array([3, 5])},
    "segments": {"segment_ids": torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]])},
    "order": {"order": torch.tensor([[2, 0, 4, 1, 3], [0, 1, 2, 3, 4]])},
    "order-inclusive": {"order": torch.tensor([[2, 0, 4, 1, 3], [4, 3, 2, 1, 0]]), "order_inclusive": True},
    "bool-mask": {"mask": torch.tensor(np.random.default_rng(1).random((2, 1, 5, 5)) < 0.7)},
}


@pytest.mark.parametrize("kind", sorted(MASKS))
def test_attention_gradcheck_every_mask(kind):
    q, k, v = _qkv()
    bias = torch.randn(1, 3, 5, 5, dtype=F64, requires_grad=True)
    pre = (torch.eye(3, dtype=F64) + 0.3 * torch.randn(3, 3, dtype=F64)).requires_grad_()
    post = (torch.eye(3, dtype=F64) + 0.3 * torch.randn(3, 3, dtype=F64)).requires_grad_()
    opts = MASKS[kind]
    assert torch.autograd.gradcheck(lambda *a: attention(*a, **opts), (q, k, v))
    assert torch.autograd.gradcheck(lambda q, k, v, b: attention(q, k, v, bias=b, **opts), (q, k, v, bias))
    assert torch.autograd.gradcheck(
        lambda q, k, v, p1, p2: attention(q, k, v, pre_mix=p1, post_mix=p2, **opts), (q, k, v, pre, post))


def _dense_mask(kind, B, T, S):
    """The (B, 1, T, S) bool mask that the structural options of MASKS mean."""
    o = MASKS[kind]
    m = np.ones((B, T, S), bool)
    if o.get("causal"):
        m &= np.tril(np.ones((T, S), bool), S - T)
    if "lengths" in o:
        m &= np.arange(S)[None, None, :] < np.asarray(o["lengths"])[:, None, None]
    if "segment_ids" in o:
        m &= unilm_mask(np.asarray(o["segment_ids"]))
    if "order" in o:
        m &= permutation_mask(np.asarray(o["order"]), inclusive=o.get("order_inclusive", False))
    if "mask" in o:
        m &= np.asarray(o["mask"])[:, 0]
    return torch.from_numpy(m[:, None])


@pytest.mark.parametrize("kind", sorted(MASKS))
def test_attention_equals_sdpa_forward_and_backward(kind):
    q, k, v = (t.detach().float().requires_grad_() for t in _qkv(B=2, H=3, T=5, S=5, dk=4, dv=4, seed=3))
    q2, k2, v2 = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = attention(q, k, v, **MASKS[kind])
    m = _dense_mask(kind, 2, 5, 5)
    ref = torch.nn.functional.scaled_dot_product_attention(q2, k2, v2, attn_mask=m)
    ref = torch.where(m.any(-1, keepdim=True), ref, 0.0)  # rows that see nothing: 0 here, NaN in SDPA
    w = torch.randn_like(ref)
    (out * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for a, b in ((q, q2), (k, k2), (v, v2)):
        torch.testing.assert_close(a.grad, torch.nan_to_num(b.grad), rtol=1e-4, atol=1e-5)


def test_attention_key_size_differs_from_value_size_and_float32():
    q, k, v = (t.detach().float().requires_grad_() for t in _qkv(dk=8, dv=3))
    out = attention(q, k, v, causal=True)
    assert out.shape == (2, 3, 5, 3) and out.dtype == torch.float32
    out.sum().backward()
    assert q.grad.shape == q.shape and v.grad.shape == v.shape


def test_bias_gradient_is_summed_over_broadcast_axes():
    q, k, v = _qkv()
    b = torch.zeros(5, 5, dtype=F64, requires_grad=True)  # broadcast over B and H
    attention(q, k, v, bias=b).pow(2).sum().backward()
    b2 = torch.zeros(2, 3, 5, 5, dtype=F64, requires_grad=True)
    attention(q, k, v, bias=b2).pow(2).sum().backward()
    torch.testing.assert_close(b.grad, b2.grad.sum((0, 1)))


def test_multihead_attention_module_trains():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, key_size=8, value_size=4, talking_heads=True, dtype=F64)
    assert mha.pre_mix.shape == (4, 4) and mha.out_proj.in_features == 16
    x = torch.randn(3, 7, 16, dtype=F64)
    target = torch.randn(3, 7, 16, dtype=F64)
    opt = torch.optim.Adam(mha.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = (mha(x, causal=True, lengths=torch.tensor([7, 5, 3])) - target).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert all(p.grad is not None for p in mha.parameters())
    # cross-attention with a key/value input of another width and length
    mha2 = MultiHeadAttention(8, 2, kdim=5, vdim=6)
    assert mha2(torch.randn(2, 4, 8), torch.randn(2, 9, 5), torch.randn(2, 9, 6)).shape == (2, 4, 8)


def test_multihead_attention_equals_a_manual_computation():
    torch.manual_seed(1)
    mha = MultiHeadAttention(12, 3, dtype=F64)
    x = torch.randn(2, 6, 12, dtype=F64)
    B, T, H, d = 2, 6, 3, 4
    q = mha.q_proj(x).view(B, T, H, d).transpose(1, 2)
    k = mha.k_proj(x).view(B, T, H, d).transpose(1, 2)
    v = mha.v_proj(x).view(B, T, H, d).transpose(1, 2)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    ref = mha.out_proj(ref.transpose(1, 2).reshape(B, T, H * d))
    torch.testing.assert_close(mha(x, causal=True), ref)


def test_masked_softmax_and_logsumexp():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, dtype=F64, generator=g, requires_grad=True)
    m = torch.rand(4, 6, generator=g) < 0.6
    m[1] = False  # a fully masked row
    m[2] = True
    y = masked_softmax(x, m)
    ref = torch.softmax(x.masked_fill(~m, -torch.inf), -1).nan_to_num(0.0)
    torch.testing.assert_close(y, ref)
    assert torch.autograd.gradcheck(lambda x: masked_softmax(x, m), (x,))
    assert torch.autograd.gradcheck(lambda x: masked_softmax(x.transpose(0, 1), m.T, dim=0), (x,))
    lse = logsumexp(x, mask=m)
    assert lse[1].item() == -np.inf
    torch.testing.assert_close(lse[m.any(1)], torch.logsumexp(x.masked_fill(~m, -torch.inf), -1)[m.any(1)])
    lse.masked_fill(torch.isinf(lse), 0.0).sum().backward()
    torch.testing.assert_close(x.grad, ref)  # d lse / dx = softmax; 0 on the fully masked row
    x.grad = None
    assert torch.autograd.gradcheck(lambda x: logsumexp(x, dim=0, keepdim=True), (x,))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_memm_module(bidirectional):
    torch.manual_seed(0)
    model = MEMM(4, bidirectional=bidirectional, batch_first=True).double()
    em = torch.randn(3, 6, 4, dtype=F64, requires_grad=True)
    tags = torch.randint(0, 4, (3, 6))
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1, 4:] = False
    mask[2, 0] = False  # any mask
    ll = model(em, tags, mask, reduction="none")
    ref = crf.memm_log_likelihood(em.detach().numpy(), tags.numpy(), model.transitions.detach().numpy(),
                                  mask=mask.numpy(), bidirectional=bidirectional)
    np.testing.assert_allclose(ll.detach().numpy(), ref, rtol=1e-12)
    assert model(em, tags, mask).item() == pytest.approx(ref.sum(), rel=1e-12)
    for reduction in ("sum", "mean", "token_mean", "none"):
        def f(e, t, reduction=reduction):
            model.transitions.data.copy_(t)
            from fastcore.torch.crf import _ChainLogLikelihood
            out = _ChainLogLikelihood.apply("memm", bidirectional, reduction, e, tags, mask, t)
            return out * torch.arange(1, out.numel() + 1, dtype=F64).view(out.shape)  # unequal weights
        assert torch.autograd.gradcheck(f, (em, model.transitions.detach().clone().requires_grad_()))
    paths = model.decode(em, mask)
    ref_paths, _ = crf.memm_decode(em.detach().numpy(), model.transitions.detach().numpy(), mask=mask.numpy(),
                                   bidirectional=bidirectional)
    assert paths == [row[row >= 0].tolist() for row in ref_paths]
    assert torch.equal(model.decode(em, mask, as_tensor=True), torch.from_numpy(ref_paths))
    raw = model.decode(em, mask, mode="raw", as_tensor=True)
    assert raw.shape == (3, 6)


def test_memm_seq_first_layout_and_training():
    torch.manual_seed(2)
    model = MEMM(3)
    em = torch.randn(5, 2, 3)  # (seq, batch, tags)
    tags = torch.randint(0, 3, (5, 2))
    assert model(em, tags).item() == pytest.approx(
        float(crf.memm_log_likelihood(em.transpose(0, 1).numpy(), tags.T.numpy(),
                                      model.transitions.detach().numpy()).sum()), rel=1e-5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    first = None
    for _ in range(20):
        opt.zero_grad()
        loss = -model(em, tags)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < first


def test_errors():
    q, k, v = _qkv()
    with pytest.raises(TypeError, match="q must be float32 or float64"):
        attention(q.detach().long(), k, v)
    with pytest.raises(TypeError, match="k must have dtype torch.float64"):
        attention(q, k.float(), v)
    with pytest.raises(ValueError, match="q is on meta"):
        attention(torch.empty(2, 3, 5, 4, device="meta"), k, v)
    with pytest.raises(TypeError, match="lengths must be an integer or bool tensor"):
        attention(q, k, v, lengths=torch.tensor([5.0, 2.0]))
    with pytest.raises(TypeError, match="mask must not require grad"):
        attention(q, k, v, mask=torch.ones(5, 5, requires_grad=True))
    with pytest.raises(ValueError, match="lengths"):  # values are checked by the NumPy API
        attention(q, k, v, lengths=torch.tensor([9, 2]))
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        masked_softmax(torch.ones(3, dtype=torch.int32))
    with pytest.raises(TypeError, match="emissions must be float32 or float64"):
        MEMM(3, batch_first=True)(torch.ones(1, 2, 3, dtype=torch.int64), torch.zeros(1, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="tags must be an integer tensor"):
        MEMM(3, batch_first=True)(torch.ones(1, 2, 3), torch.zeros(1, 2))
    # second derivatives: the backwards are analytic kernels
    out = attention(q, k, v)
    (gq,) = torch.autograd.grad(out.sum(), q, create_graph=True)
    with pytest.raises(RuntimeError, match="attention: double backward is not supported"):
        gq.sum().backward()
    x = torch.randn(3, 4, dtype=F64, requires_grad=True)
    for f in (lambda x: masked_softmax(x).pow(2), lambda x: logsumexp(x)):
        (gx,) = torch.autograd.grad(f(x).sum(), x, create_graph=True)
        with pytest.raises(RuntimeError, match="double backward is not supported"):
            gx.sum().backward()
    model = MEMM(3, batch_first=True).double()
    em = torch.randn(1, 4, 3, dtype=F64, requires_grad=True)
    (ge,) = torch.autograd.grad(model(em, torch.zeros(1, 4, dtype=torch.int64)), em, create_graph=True)
    with pytest.raises(RuntimeError, match="CRF/MEMM log-likelihood: double backward"):
        ge.sum().backward()
