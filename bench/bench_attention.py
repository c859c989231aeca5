"""attention beside torch's scaled_dot_product_attention (and the tricks a torch user can write).

float32, threads from FASTCORE_BENCH_THREADS (compare.py --threads).  Work is counted as
the dense forward flops 2*B*H*T*S*(dk + dv) (the same count for masked cases, so the
ns/kflop column compares directly; GFLOP/s = 1000 / (ns/kflop)).
"""
import os

import numpy as np

from _harness import Case, benchmark_tests, have
from fastcore.attention import attention, attention_backward, permutation_mask, unilm_mask

LARGE = (1, 12, 2048, 64)
SHAPES = [LARGE, (8, 12, 128, 64), (4, 12, 512, 64)]


def _threads():
    return int(os.environ.get("FASTCORE_BENCH_THREADS", "1"))


def _flops(B, H, T, S, dk, dv):
    return ("kflop", 2.0 * B * H * T * S * (dk + dv) / 1e3)


def _setup(shape, dv=None):
    def make():
        B, H, T, d = shape
        rng = np.random.default_rng(0)
        q, k = (rng.standard_normal((B, H, T, d), dtype=np.float32) for _ in range(2))
        v = rng.standard_normal((B, H, T, dv or d), dtype=np.float32)
        lengths = np.full(B, (3 * T) // 4)  # a quarter of the keys are padding
        if B > 1:
            lengths[0] = T  # one full row
        seg = np.zeros((B, T), np.int64)
        seg[:, T // 2:] = 1  # source half, target half
        order = np.stack([rng.permutation(T) for _ in range(B)])
        d_ = dict(q=q, k=k, v=v, lengths=lengths, seg=seg, order=order, src=T // 2)
        if have("torch"):
            import torch

            d_.update(tq=torch.from_numpy(q), tk=torch.from_numpy(k), tv=torch.from_numpy(v))
            pad = np.arange(T)[None, :] < lengths[:, None]
            d_["t_pad"] = torch.from_numpy(pad[:, None, None, :])
            d_["t_causal"] = torch.from_numpy(np.tril(np.ones((T, T), bool)))
            d_["t_unilm"] = torch.from_numpy(unilm_mask(seg)[:, None])
            d_["t_perm"] = torch.from_numpy(permutation_mask(order, inclusive=True)[:, None])
            src = T // 2
            tgt_mask = np.ones((T - src, T), bool)
            tgt_mask[:, src:] = np.tril(np.ones((T - src, T - src), bool))
            d_["t_tgt_mask"] = torch.from_numpy(tgt_mask)
            d_["t_order"] = torch.from_numpy(order)
        return d_

    return make


def _check(rtol=2e-4, atol=2e-5):
    def check(results):
        ref = np.asarray(results["fastcore"])
        for name, value in results.items():
            np.testing.assert_allclose(np.asarray(value), ref, rtol=rtol, atol=atol, err_msg=name)

    return check


def _sdpa(**kw):
    import torch.nn.functional as F

    return lambda d: F.scaled_dot_product_attention(d["tq"], d["tk"], d["tv"], **{
        key: (d[val] if isinstance(val, str) else val) for key, val in kw.items()}).numpy()


def _torch_unilm_split(d):
    """Source queries see the source bidirectionally; target queries get a (T-src, T) mask."""
    import torch
    import torch.nn.functional as F

    s = d["src"]
    q, k, v = d["tq"], d["tk"], d["tv"]
    a = F.scaled_dot_product_attention(q[:, :, :s], k[:, :, :s], v[:, :, :s])
    b = F.scaled_dot_product_attention(q[:, :, s:], k, v, attn_mask=d["t_tgt_mask"])
    return torch.cat([a, b], dim=2).numpy()


def _torch_perm_gather(d):
    """Gather q, k, v into the factorisation order, is_causal, scatter back (content stream)."""
    import torch
    import torch.nn.functional as F

    o = d["t_order"]
    idx = o[:, None, :, None]
    q, k, v = (torch.take_along_dim(t, idx, dim=2) for t in (d["tq"], d["tk"], d["tv"]))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    res = torch.empty_like(out)
    res.scatter_(2, idx.expand_as(out), out)
    return res.numpy()


def _torch_talking_heads(d):
    import torch

    q, k, v = d["tq"], d["tk"], d["tv"]
    pre, post = d["t_pre"], d["t_post"]
    z = torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    z = torch.einsum("hg,bgij->bhij", pre, z)
    p = torch.softmax(z, dim=-1)
    p = torch.einsum("hg,bgij->bhij", post, p)
    return torch.matmul(p, v).numpy()


def _fc(**kw):
    def run(d):
        args = {key: (d[val] if isinstance(val, str) else val) for key, val in kw.items()}
        return attention(d["q"], d["k"], d["v"], n_threads=_threads(), **args)

    return run


def cases():
    torch_ok = have("torch")
    out = []
    for shape in SHAPES:
        B, H, T, d = shape
        tag = f"({B},{H},{T},{d})"
        work = _flops(B, H, T, T, d, d)
        setup = _setup(shape)
        impls = {"fastcore": _fc()}
        if torch_ok:
            impls["torch_sdpa"] = _sdpa()
        out.append(Case("attention", f"no mask {tag}", setup, impls, work, _check()))
        impls = {"fastcore": _fc(causal=True)}
        if torch_ok:
            impls["torch_is_causal"] = _sdpa(is_causal=True)
            impls["torch_bool_mask"] = _sdpa(attn_mask="t_causal")
        out.append(Case("attention", f"causal {tag}", setup, impls, work, _check()))
        impls = {"fastcore": _fc(lengths="lengths")}
        if torch_ok:
            impls["torch_bool_mask"] = _sdpa(attn_mask="t_pad")
        out.append(Case("attention", f"padding {tag}", setup, impls, work, _check()))
        impls = {"fastcore": _fc()}
        if torch_ok:
            impls["torch_sdpa_math"] = _sdpa()
        out.append(Case("attention", f"dk={d} dv=128 {tag}", _setup(shape, dv=128), impls,
                        _flops(B, H, T, T, d, 128), _check()))
        if shape != LARGE:
            continue
        impls = {"fastcore": _fc(segment_ids="seg")}
        if torch_ok:
            impls["torch_bool_mask"] = _sdpa(attn_mask="t_unilm")
            impls["torch_split_2_calls"] = _torch_unilm_split
        out.append(Case("attention", f"UniLM segments {tag}", setup, impls, work, _check()))
        impls = {"fastcore": _fc(order="order", order_inclusive=True)}
        if torch_ok:
            impls["torch_bool_mask"] = _sdpa(attn_mask="t_perm")
            impls["torch_gather_causal"] = _torch_perm_gather
        out.append(Case("attention", f"permutation order {tag}", setup, impls, work, _check()))
        impls = {"fastcore": _fc()}
        if torch_ok:
            impls["torch_sdpa_math"] = _sdpa()
        out.append(Case("attention", f"dk=64 dv=32 {tag}", _setup(shape, dv=32), impls,
                        _flops(B, H, T, T, d, 32), _check()))

    # talking heads at (4, 12, 512, 64): torch materialises 3 (B, H, T, T) tensors
    shape = (4, 12, 512, 64)
    B, H, T, d = shape

    def th_setup():
        dd = _setup(shape)()
        rng = np.random.default_rng(1)
        dd["pre"] = (np.eye(H) + 0.1 * rng.standard_normal((H, H))).astype(np.float32)
        dd["post"] = (np.eye(H) + 0.1 * rng.standard_normal((H, H))).astype(np.float32)
        if torch_ok:
            import torch

            dd["t_pre"], dd["t_post"] = torch.from_numpy(dd["pre"]), torch.from_numpy(dd["post"])
        return dd

    impls = {"fastcore": _fc(pre_mix="pre", post_mix="post")}
    if torch_ok:
        impls["torch_composed"] = _torch_talking_heads
    out.append(Case("attention", "talking-heads pre+post (4,12,512,64)", th_setup, impls,
                    _flops(B, H, T, T, d, d), _check(rtol=1e-3, atol=1e-4)))

    # backward, causal, T = 512: dq, dk, dv given dout (the forward is not timed)
    def bwd_setup():
        dd = _setup(shape)()
        out_, lse = attention(dd["q"], dd["k"], dd["v"], causal=True, return_lse=True)
        dd["out"], dd["lse"] = out_, lse
        dd["g"] = np.random.default_rng(2).standard_normal(out_.shape, dtype=np.float32)
        if torch_ok:
            import torch
            import torch.nn.functional as F

            tq, tk, tv = (torch.from_numpy(dd[n].copy()).requires_grad_(True) for n in ("q", "k", "v"))
            dd["t_graph"] = (F.scaled_dot_product_attention(tq, tk, tv, is_causal=True), (tq, tk, tv),
                             torch.from_numpy(dd["g"]))
        return dd

    def fc_bwd(dd):
        return np.concatenate([a.ravel() for a in attention_backward(
            dd["g"], dd["q"], dd["k"], dd["v"], dd["out"], dd["lse"], causal=True, n_threads=_threads())])

    impls = {"fastcore": fc_bwd}
    if torch_ok:
        import torch

        def torch_bwd(dd):
            o, leaves, g = dd["t_graph"]
            grads = torch.autograd.grad(o, leaves, g, retain_graph=True)
            return np.concatenate([t.numpy().ravel() for t in grads])

        impls["torch_autograd"] = torch_bwd
    out.append(Case("attention", "backward causal (4,12,512,64)", bwd_setup, impls,
                    ("kflop", 2.5 * _flops(B, H, T, T, d, d)[1]), _check(rtol=1e-3, atol=2e-4)))
    return out


test_attention = benchmark_tests(cases)
