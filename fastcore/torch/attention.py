"""Attention, masked softmax and log-sum-exp as differentiable torch operations.

The forward and backward are fastcore's kernels (``fastcore.attention``,
``fastcore.softmax``): the structural masks (padding, causal, UniLM segments, XLNet
orders) are built inside the kernel, nothing of size (T, S) is stored for the backward
(it recomputes the probabilities from the saved log-normalisers), and talking-heads
mixing and a key size different from the value size are supported.
"""
import math

import numpy as np
import torch
from torch import nn

from fastcore import attention as _att
from fastcore import softmax as _sm
from fastcore.torch._tensors import _np, analytic_backward, cpu_float, index_array, to_tensor

__all__ = ["attention", "MultiHeadAttention", "masked_softmax", "logsumexp"]


def _mask_array(mask, name="mask"):
    """A NumPy view of a bool/0-1 mask tensor or array (None stays None)."""
    if mask is None:
        return None
    if isinstance(mask, torch.Tensor):
        if mask.device.type != "cpu":
            raise ValueError(f"{name} is on {mask.device}: fastcore.torch works on CPU tensors")
        if mask.requires_grad:
            raise TypeError(f"{name} must not require grad (it is a mask)")
        return mask.detach().numpy()
    return np.asarray(mask)


class _Attention(torch.autograd.Function):
    """softmax(scale q k^T + bias, masked) v with the kernel's analytic backward."""

    @staticmethod
    def forward(ctx, q, k, v, bias, pre_mix, post_mix, opts):
        arrays = [None if t is None else _np(t) for t in (q, k, v, bias, pre_mix, post_mix)]
        qn, kn, vn, bn, pn, mn = arrays
        out, lse = _att.attention(qn, kn, vn, bias=bn, pre_mix=pn, post_mix=mn, return_lse=True, **opts)
        ctx.opts = opts
        ctx.arrays = (qn, kn, vn, bn, pn, mn, out, lse)
        ctx.bias_shape = None if bias is None else tuple(bias.shape)
        return torch.from_numpy(out)

    @staticmethod
    @analytic_backward("attention")
    def backward(ctx, dout):
        qn, kn, vn, bn, pn, mn, out, lse = ctx.arrays
        want_dbias = bn is not None and ctx.needs_input_grad[3]
        g = _att.attention_backward(_np(dout).astype(out.dtype, copy=False), qn, kn, vn, out, lse, bias=bn,
                                    pre_mix=pn, post_mix=mn, return_dbias=want_dbias, **ctx.opts)
        dq, dk, dv = (torch.from_numpy(x) for x in g[:3])
        extra = [None, None, None]
        if len(g) > 3:
            for i, x in enumerate(g[3:]):
                extra[i] = None if x is None else torch.from_numpy(np.ascontiguousarray(x))
        dpre, dpost, dbias = extra
        return dq, dk, dv, dbias, dpre, dpost, None


def attention(q, k, v, *, causal=False, lengths=None, segment_ids=None, order=None, order_inclusive=False,
              mask=None, bias=None, pre_mix=None, post_mix=None, scale=None, n_threads=None):
    """Differentiable :func:`fastcore.attention.attention` on torch tensors.

    Parameters
    ----------
    q : Tensor of shape (B, H, T, dk), float32 or float64, CPU
    k : Tensor of shape (B, H, S, dk), q's dtype
    v : Tensor of shape (B, H, S, dv), q's dtype (``dv`` may differ from ``dk``)
    causal, lengths, segment_ids, order, order_inclusive, scale, n_threads
        As in :func:`fastcore.attention.attention`; ``lengths`` (B,), ``segment_ids``
        (B, S) and ``order`` (B, T) may be integer tensors or arrays.
    mask : bool Tensor or array broadcastable to (B, H, T, S), optional
        True = visible.  Read through broadcast strides, never expanded.
    bias : Tensor broadcastable to (B, H, T, S), q's dtype, optional
        Added to the logits; differentiable (its gradient is summed over the broadcast axes).
    pre_mix, post_mix : Tensor of shape (H, H), q's dtype, optional
        Talking-heads mixing of the logits / of the probabilities; differentiable.

    Returns
    -------
    Tensor of shape (B, H, T, dv), q's dtype
        Differentiable with respect to q, k, v, bias, pre_mix and post_mix (first
        derivatives; a second derivative raises RuntimeError).

    Examples
    --------
    >>> import torch
    >>> from fastcore.torch import attention
    >>> q, k, v = (torch.randn(2, 4, 16, 8, requires_grad=True) for _ in range(3))
    >>> out = attention(q, k, v, causal=True, lengths=torch.tensor([16, 9]))
    >>> out.sum().backward()
    >>> q.grad.shape
    torch.Size([2, 4, 16, 8])
    """
    cpu_float(q, "q")
    cpu_float(k, "k", dtype=q.dtype)
    cpu_float(v, "v", dtype=q.dtype)
    for t, name in ((bias, "bias"), (pre_mix, "pre_mix"), (post_mix, "post_mix")):
        if t is not None:
            cpu_float(t, name, dtype=q.dtype)
    opts = dict(causal=causal, lengths=index_array(lengths, "lengths"),
                segment_ids=index_array(segment_ids, "segment_ids"), order=index_array(order, "order"),
                order_inclusive=order_inclusive, mask=_mask_array(mask), scale=scale, n_threads=n_threads)
    return _Attention.apply(q, k, v, bias, pre_mix, post_mix, opts)


class MultiHeadAttention(nn.Module):
    """Multi-head attention whose core is fastcore's fused kernel.

    ``out = W_o concat_h attention(W_q^h x, W_k^h y, W_v^h z)``, inputs batch-first
    (B, T, E).  The projections are ordinary ``nn.Linear`` parameters; the attention
    core (masks, softmax, talking-heads) is one kernel call forward and one backward.

    Parameters
    ----------
    embed_dim : int
        Model width E of the query input (and of the output).
    num_heads : int
    key_size : int, optional
        Per-head size of queries and keys (default ``embed_dim // num_heads``).
    value_size : int, optional
        Per-head size of values (default ``key_size``): may differ from ``key_size``.
    kdim, vdim : int, optional
        Widths of the key and value inputs (default ``embed_dim``).
    bias : bool, default True
        Biases of the four projections.
    talking_heads : bool, default False
        Learn (H, H) logit and probability mixing matrices (``pre_mix``, ``post_mix``),
        initialised to the identity.
    dtype : torch.dtype, optional

    Examples
    --------
    >>> import torch
    >>> from fastcore.torch import MultiHeadAttention
    >>> mha = MultiHeadAttention(32, 4, key_size=16, value_size=8, talking_heads=True)
    >>> x = torch.randn(2, 10, 32)
    >>> mha(x, causal=True).shape
    torch.Size([2, 10, 32])
    """

    def __init__(self, embed_dim, num_heads, *, key_size=None, value_size=None, kdim=None, vdim=None, bias=True,
                 talking_heads=False, dtype=None):
        super().__init__()
        for val, name in ((embed_dim, "embed_dim"), (num_heads, "num_heads")):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        key_size = embed_dim // num_heads if key_size is None else key_size
        value_size = key_size if value_size is None else value_size
        for val, name in ((key_size, "key_size"), (value_size, "value_size")):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.key_size, self.value_size = key_size, value_size
        kw = {"dtype": dtype}
        self.q_proj = nn.Linear(embed_dim, num_heads * key_size, bias=bias, **kw)
        self.k_proj = nn.Linear(kdim or embed_dim, num_heads * key_size, bias=bias, **kw)
        self.v_proj = nn.Linear(vdim or embed_dim, num_heads * value_size, bias=bias, **kw)
        self.out_proj = nn.Linear(num_heads * value_size, embed_dim, bias=bias, **kw)
        if talking_heads:
            self.pre_mix = nn.Parameter(torch.eye(num_heads, dtype=dtype))
            self.post_mix = nn.Parameter(torch.eye(num_heads, dtype=dtype))
        else:
            self.register_parameter("pre_mix", None)
            self.register_parameter("post_mix", None)

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, key_size={self.key_size}, "
                f"value_size={self.value_size}, talking_heads={self.pre_mix is not None}")

    def forward(self, query, key=None, value=None, *, causal=False, lengths=None, segment_ids=None, order=None,
                order_inclusive=False, mask=None, bias=None, n_threads=None):
        """Attend from ``query`` (B, T, E) to ``key`` (B, S, kdim) / ``value`` (B, S, vdim)
        (both default to ``query``: self-attention); masks as in :func:`attention`.
        Returns (B, T, E)."""
        key = query if key is None else key
        value = key if value is None else value
        if query.dim() != 3 or key.dim() != 3 or value.dim() != 3:
            raise ValueError(f"query, key and value must be (batch, seq, features), got shapes "
                             f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
        B, T, _ = query.shape
        S = key.shape[1]
        H, dk, dv = self.num_heads, self.key_size, self.value_size
        q = self.q_proj(query).view(B, T, H, dk).transpose(1, 2)
        k = self.k_proj(key).view(B, S, H, dk).transpose(1, 2)
        v = self.v_proj(value).view(B, S, H, dv).transpose(1, 2)
        out = attention(q, k, v, causal=causal, lengths=lengths, segment_ids=segment_ids, order=order,
                        order_inclusive=order_inclusive, mask=mask, bias=bias, pre_mix=self.pre_mix,
                        post_mix=self.post_mix, scale=1.0 / math.sqrt(dk), n_threads=n_threads)
        return self.out_proj(out.transpose(1, 2).reshape(B, T, H * dv))


# ---------------------------------------------------------------- softmax and log-sum-exp
class _MaskedSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mask, dim, n_threads):
        y = torch.from_numpy(_sm.masked_softmax(_np(x), mask, axis=dim, n_threads=n_threads))
        ctx.dim = dim
        ctx.save_for_backward(y)
        return y

    @staticmethod
    @analytic_backward("masked_softmax")
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        gy = g * y  # masked entries and empty rows have y = 0, hence a 0 gradient
        return gy - y * gy.sum(ctx.dim, keepdim=True), None, None, None


def masked_softmax(x, mask=None, dim=-1, *, n_threads=None):
    """Differentiable :func:`fastcore.softmax.masked_softmax` (masked entries and fully
    masked rows are 0, never NaN).

    Parameters
    ----------
    x : Tensor of any shape, float32 or float64, CPU
    mask : bool Tensor or array broadcastable to x, optional (True = keep)
    dim : int, default -1

    Returns
    -------
    Tensor of x's shape and dtype

    Examples
    --------
    >>> import torch
    >>> from fastcore.torch import masked_softmax
    >>> x = torch.randn(2, 5, requires_grad=True)
    >>> y = masked_softmax(x, torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool))
    >>> y[1].sum().item(), y[0, 3].item()
    (0.0, 0.0)
    """
    cpu_float(x, "x")
    return _MaskedSoftmax.apply(x, _mask_array(mask), dim, n_threads)


class _LogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mask, dim, keepdim, n_threads):
        xn = _np(x)
        out = _sm.logsumexp(xn, axis=dim, mask=mask, keepdims=keepdim, n_threads=n_threads)
        ctx.args = (xn, mask, dim, keepdim, n_threads)
        return to_tensor(np.asarray(out), x)

    @staticmethod
    @analytic_backward("logsumexp")
    def backward(ctx, g):
        xn, mask, dim, keepdim, n_threads = ctx.args
        p = torch.from_numpy(_sm.masked_softmax(xn, mask, axis=dim, n_threads=n_threads))
        return (g if keepdim else g.unsqueeze(dim)) * p, None, None, None, None


def logsumexp(x, dim=-1, mask=None, *, keepdim=False, n_threads=None):
    """Differentiable :func:`fastcore.softmax.logsumexp` over the kept entries (``-inf``
    for a fully masked slice, whose gradient is 0).

    Parameters
    ----------
    x : Tensor, float32 or float64, CPU
    dim : int, default -1
    mask : bool Tensor or array broadcastable to x, optional (True = keep)
    keepdim : bool, default False

    Returns
    -------
    Tensor of x's dtype; the gradient is ``masked_softmax(x, mask, dim)``.

    Examples
    --------
    >>> import torch
    >>> from fastcore.torch import logsumexp
    >>> x = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    >>> logsumexp(x).sum().backward()
    >>> x.grad[0]
    tensor([0.2500, 0.2500, 0.2500, 0.2500], dtype=torch.float64)
    """
    cpu_float(x, "x")
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    return _LogSumExp.apply(x, _mask_array(mask), dim, bool(keepdim), n_threads)
