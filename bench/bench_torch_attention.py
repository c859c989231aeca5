"""One training step (forward + backward) of a 12-head attention core in a torch model:
fastcore.torch.attention beside torch's scaled_dot_product_attention with a bool mask.
(FlexAttention, ``torch.nn.attention.flex_attention``, is the other peer the issue names:
torch 2.13 raises "FlexAttention does not support backward on CPU", so it cannot take part
in a training step here; bench_attention.py times forwards.)

float32, (4, 12, 512, 64); threads from FASTCORE_BENCH_THREADS (compare.py --threads).
Work is the dense forward flops 2*B*H*T*S*(dk + dv) (GFLOP/s = 1000 / (ns/kflop)); a step
costs about 3.5 times that.
"""
import os

import numpy as np

from _harness import Case, benchmark_tests, have
from fastcore.attention import unilm_mask

SHAPE = (4, 12, 512, 64)


def _threads():
    return int(os.environ.get("FASTCORE_BENCH_THREADS", "1"))


def _setup():
    import torch

    B, H, T, d = SHAPE
    g = torch.Generator().manual_seed(0)
    qkv = [torch.randn(B, H, T, d, generator=g) for _ in range(3)]
    dout = torch.randn(B, H, T, d, generator=g)
    lengths = torch.full((B,), (3 * T) // 4, dtype=torch.int64)
    lengths[0] = T
    seg = torch.zeros(B, T, dtype=torch.int64)
    seg[:, T // 2:] = 1
    pad = torch.arange(T)[None, :] < lengths[:, None]
    causal_pad = torch.tril(torch.ones(T, T, dtype=torch.bool))[None] & pad[:, None, :]
    unilm = torch.from_numpy(unilm_mask(seg.numpy()))
    pre = torch.eye(H) + 0.1 * torch.randn(H, H, generator=g)
    post = torch.eye(H) + 0.1 * torch.randn(H, H, generator=g)
    return dict(qkv=qkv, dout=dout, lengths=lengths, seg=seg, pad=pad, causal_pad=causal_pad[:, None],
                unilm=unilm[:, None], pre=pre, post=post)


def _step(fn):
    """A training step: leaves that require grad, fn's forward, backward from dout; returns
    (out, dq) for the agreement check."""
    def run(d):
        q, k, v = (t.detach().requires_grad_() for t in d["qkv"])
        out = fn(d, q, k, v)
        out.backward(d["dout"])
        return out.detach().numpy(), q.grad.numpy()

    return run


def _fastcore(**kw):
    from fastcore.torch import attention

    def fwd(d, q, k, v):
        args = {key: (d[val] if isinstance(val, str) else val) for key, val in kw.items()}
        return attention(q, k, v, n_threads=_threads(), **args)

    return _step(fwd)


def _sdpa(mask_key):
    import torch.nn.functional as F

    def fwd(d, q, k, v):
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=d[mask_key])
        return out.masked_fill(~d[mask_key].any(-1, keepdim=True), 0.0)  # NaN rows of SDPA -> 0

    return _step(fwd)


def _torch_talking_heads(d, q, k, v):
    import torch

    z = torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    z = torch.einsum("hg,bgij->bhij", d["pre"], z)
    z = z.masked_fill(~d["causal_pad"], float("-inf"))
    p = torch.softmax(z, dim=-1)
    p = torch.einsum("hg,bgij->bhij", d["post"], p)
    return torch.matmul(p, v)


def _check(rtol=2e-4, atol=2e-5):
    def check(results):
        out, dq = results["fastcore"]
        for name, (o, g) in results.items():
            np.testing.assert_allclose(o, out, rtol=rtol, atol=atol, err_msg=f"{name} out")
            np.testing.assert_allclose(g, dq, rtol=10 * rtol, atol=10 * atol, err_msg=f"{name} dq")

    return check


def cases():
    if not have("torch"):
        return []
    B, H, T, d = SHAPE
    tag = f"({B},{H},{T},{d}) step"
    work = ("kflop", 2.0 * B * H * T * T * 2 * d / 1e3)
    out = []
    for name, kw, mask in (("causal+padding", dict(causal=True, lengths="lengths"), "causal_pad"),
                           ("UniLM", dict(segment_ids="seg"), "unilm")):
        impls = {"fastcore": _fastcore(**kw), "torch_sdpa_bool_mask": _sdpa(mask)}
        out.append(Case("torch_attention", f"{name} {tag}", _setup, impls, work, _check()))
    impls = {"fastcore": _fastcore(causal=True, lengths="lengths", pre_mix="pre", post_mix="post"),
             "torch_composed": _step(_torch_talking_heads)}
    out.append(Case("torch_attention", f"talking-heads causal+padding {tag}", _setup, impls, work,
                    _check(rtol=1e-3, atol=1e-4)))
    return out


test_benchmark = benchmark_tests(cases)
