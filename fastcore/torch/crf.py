"""A drop-in for pytorch-crf's ``torchcrf.CRF`` whose work is done by fastcore's kernels.

    from fastcore.torch import CRF        # instead of: from torchcrf import CRF
    crf = CRF(num_tags, batch_first=True)
    llh = crf(emissions, tags, mask=mask, reduction="mean")   # differentiable, as in pytorch-crf
    best = crf.decode(emissions, mask=mask)                  # List[List[int]], as in pytorch-crf
    best = crf.decode(emissions, mask=mask, as_tensor=True)  # LongTensor (B, T), -1 at masked positions
    scripted = torch.jit.script(crf)                         # TorchScript, as pytorch-crf HEAD

Same constructor, parameters (``start_transitions``, ``end_transitions``,
``transitions``), initialisation, ``forward`` and ``decode`` as pytorch-crf 0.7,
with three differences on purpose: any mask is accepted (pytorch-crf insists the
first time step is unmasked; here masked positions are simply removed from the
chain), gradients come from one analytic forward-backward pass instead of an
autograd tape (memory O(B·T·K)), and ``decode`` can return a tensor.

The kernels are registered as ``torch.library`` custom operators in the ``fastcore``
namespace, so ``CRF`` and ``MEMM`` can be scripted (``torch.jit.script``; a saved module
needs ``import fastcore.torch`` before ``torch.jit.load``) and traced by ``torch.compile``
(each op is one opaque node with a fake implementation; the compiled graph breaks around
``decode``'s lists):

- ``fastcore::crf_log_likelihood(emissions, tags, mask, transitions, start, end, reduction)
  -> (llh, g_emissions, g_transitions, g_start, g_end)``
- ``fastcore::memm_log_likelihood(emissions, tags, mask, transitions, bidirectional, reduction)
  -> (llh, g_emissions, g_transitions)``
- ``fastcore::chain_log_likelihood_backward(grad, grads, emissions, tags, mask, params, kind,
  bidirectional) -> grads`` (the backward of ``reduction="none"``)
- ``fastcore::crf_viterbi(emissions, mask, transitions, start, end) -> paths``
- ``fastcore::memm_decode(emissions, mask, transitions, bidirectional, mode) -> paths``

Tensors are batch first (B, T, K), ``tags`` int64, ``mask`` bool; ``llh`` is reduced as
``reduction`` says, and the ``g_*`` are the gradients of the negative log-likelihood
(summed over sequences for ``"none"``), which the registered backward scales.

CPU tensors only (float32 or float64); contiguous float tensors are passed to C
without a copy.  Requires PyTorch (``pip install torch``).
"""
from typing import List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from fastcore import crf as _crf
from fastcore.torch._tensors import _np, analytic_backward

__all__ = ["CRF", "MEMM"]

_REDUCTIONS = ("none", "sum", "mean", "token_mean")
_PARAM_NAMES = {"crf": ("transitions", "start", "end"), "memm": ("transitions",)}
_BACKWARD_NAME = "CRF/MEMM log-likelihood"


# ----------------------------------------------------------------------------- op bodies
def _chain_grads(kind, em, tg, mk, params, reduction, bidirectional):
    """(loss, {name: grad}) of the kernel's negative log-likelihood for kind 'crf' or 'memm'."""
    if kind == "crf":
        tr, st, en = params
        return _crf.crf_nll_grad(em, tg, tr, st, en, mask=mk, reduction=reduction)
    (tr,) = params
    return _crf.memm_nll_grad(em, tg, tr, mask=mk, bidirectional=bidirectional, reduction=reduction)


def _llh_and_grads(kind, emissions, tags, mask, params, reduction, bidirectional):
    """The body of the log-likelihood ops: (llh, g_emissions, *g_params) as new tensors."""
    em, tg, mk = _np(emissions), _np(tags), _np(mask)
    pn = tuple(_np(p).astype(em.dtype, copy=False) for p in params)
    inner = "sum" if reduction == "none" else reduction
    nll, g = _chain_grads(kind, em, tg, mk, pn, inner, bidirectional)
    if reduction == "none":
        ll = (_crf.crf_log_likelihood(em, tg, *pn, mask=mk) if kind == "crf" else
              _crf.memm_log_likelihood(em, tg, pn[0], mask=mk, bidirectional=bidirectional))
        out = torch.from_numpy(np.array(ll, dtype=em.dtype))
    else:
        out = torch.tensor(-float(nll), dtype=emissions.dtype)
    return (out, torch.from_numpy(g["emissions"]), *(torch.from_numpy(g[n]) for n in _PARAM_NAMES[kind]))


def _llh_fake(emissions, params, reduction):
    """Shapes and dtypes of what the log-likelihood ops return (for torch.compile's tracing)."""
    shape = (emissions.shape[0],) if reduction == "none" else ()
    return (emissions.new_empty(shape), torch.empty_like(emissions), *(torch.empty_like(p) for p in params))


def _crf_llh(emissions: Tensor, tags: Tensor, mask: Tensor, transitions: Tensor, start: Tensor, end: Tensor,
             reduction: str) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """CRF log-likelihood (reduced) and the gradients of the NLL, in one forward-backward pass."""
    return _llh_and_grads("crf", emissions, tags, mask, (transitions, start, end), reduction, False)


def _memm_llh(emissions: Tensor, tags: Tensor, mask: Tensor, transitions: Tensor, bidirectional: bool,
              reduction: str) -> Tuple[Tensor, Tensor, Tensor]:
    """MEMM log-likelihood (reduced) and the gradients of the NLL (per-token softmaxes)."""
    return _llh_and_grads("memm", emissions, tags, mask, (transitions,), reduction, bidirectional)


def _chain_backward(grad: Tensor, grads: List[Tensor], emissions: Tensor, tags: Tensor, mask: Tensor,
                    params: List[Tensor], kind: str, bidirectional: bool) -> List[Tensor]:
    """Gradients of ``sum_b grad[b] * llh[b]`` (reduction "none") w.r.t. emissions and params.

    ``grads`` are the gradients of the summed NLL from the forward op: emissions separate by
    sequence, so their rows are scaled; the shared parameters need the weighted sum, computed
    by one pass per sequence when the weights differ.
    """
    w = -grad.detach().to(torch.float64).numpy()
    g_em, *g_par = grads
    if w.size == 0 or np.all(w == w[0]):
        s = float(w[0]) if w.size else 0.0
        return [g * s for g in grads]
    em, tg, mk = _np(emissions), _np(tags), _np(mask)
    pn = tuple(_np(p).astype(em.dtype, copy=False) for p in params)
    acc = [np.zeros(p.shape, np.float64) for p in pn]
    for b in np.flatnonzero(w):
        _, gb = _chain_grads(kind, em[b:b + 1], tg[b:b + 1], mk[b:b + 1], pn, "sum", bidirectional)
        for a, name in zip(acc, _PARAM_NAMES[kind]):
            a += w[b] * gb[name]
    scale = torch.from_numpy(w.astype(em.dtype))[:, None, None]
    return [g_em * scale, *(torch.from_numpy(a).to(g.dtype) for a, g in zip(acc, g_par))]


def _crf_viterbi(emissions: Tensor, mask: Tensor, transitions: Tensor, start: Tensor, end: Tensor) -> Tensor:
    """Best path of each sequence, (B, T) int64 with -1 at masked positions."""
    em = _np(emissions)
    paths, _ = _crf.viterbi(em, _np(transitions).astype(em.dtype), _np(start).astype(em.dtype),
                            _np(end).astype(em.dtype), mask=_np(mask))
    return torch.from_numpy(paths)


def _memm_decode(emissions: Tensor, mask: Tensor, transitions: Tensor, bidirectional: bool, mode: str) -> Tensor:
    """Best path of each sequence under the MEMM, (B, T) int64 with -1 at masked positions."""
    em = _np(emissions)
    paths, _ = _crf.memm_decode(em, _np(transitions).astype(em.dtype), mask=_np(mask), bidirectional=bidirectional,
                                mode=mode)
    return torch.from_numpy(paths)


def _save(ctx, kind, bidirectional, reduction, emissions, tags, mask, params, grads):
    """What a backward needs: the NLL gradients, and for "none" the inputs of per-sequence passes."""
    ctx.kind, ctx.bidirectional, ctx.reduction = kind, bool(bidirectional), reduction
    if reduction == "none":
        ctx.save_for_backward(*grads, emissions, tags, mask, *params)
    else:
        ctx.save_for_backward(*grads)


def _grads(ctx, grad_llh, chain_backward):
    """[g_emissions, *g_params]: the saved NLL gradients times -grad_llh (per sequence for "none",
    through ``chain_backward``: the op under TorchScript/torch.compile, its body in eager mode)."""
    n = 1 + len(_PARAM_NAMES[ctx.kind])
    saved = ctx.saved_tensors
    if grad_llh is None:
        return [None] * n
    if ctx.reduction != "none":
        s = -grad_llh
        return [g * s for g in saved]
    g, (em, tags, mask), params = saved[:n], saved[n:n + 3], saved[n + 3:]
    return chain_backward(grad_llh, list(g), em, tags, mask, list(params), ctx.kind, ctx.bidirectional)


# ----------------------------------------------------------------------------- custom ops
# the same bodies as torch.library ops (for TorchScript and torch.compile); eager calls go to
# _ChainLogLikelihood and the bodies directly, without the ops' Python dispatch (~60 us a step)
_crf_llh_op = torch.library.custom_op("fastcore::crf_log_likelihood", _crf_llh, mutates_args=())
_memm_llh_op = torch.library.custom_op("fastcore::memm_log_likelihood", _memm_llh, mutates_args=())
_chain_backward_op = torch.library.custom_op("fastcore::chain_log_likelihood_backward", _chain_backward,
                                             mutates_args=())
_crf_viterbi_op = torch.library.custom_op("fastcore::crf_viterbi", _crf_viterbi, mutates_args=())
_memm_decode_op = torch.library.custom_op("fastcore::memm_decode", _memm_decode, mutates_args=())


@_crf_llh_op.register_fake
def _(emissions, tags, mask, transitions, start, end, reduction):
    return _llh_fake(emissions, (transitions, start, end), reduction)


@_memm_llh_op.register_fake
def _(emissions, tags, mask, transitions, bidirectional, reduction):
    return _llh_fake(emissions, (transitions,), reduction)


@_chain_backward_op.register_fake
def _(grad, grads, emissions, tags, mask, params, kind, bidirectional):
    return [torch.empty_like(g) for g in grads]


@_crf_viterbi_op.register_fake
def _(emissions, mask, transitions, start, end):
    return emissions.new_empty(emissions.shape[:2], dtype=torch.int64)


@_memm_decode_op.register_fake
def _(emissions, mask, transitions, bidirectional, mode):
    return emissions.new_empty(emissions.shape[:2], dtype=torch.int64)


def _setup_context(kind):
    def setup_context(ctx, inputs, output):
        emissions, tags, mask = inputs[:3]
        params = inputs[3:6] if kind == "crf" else inputs[3:4]
        bidirectional = inputs[4] if kind == "memm" else False
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(*output[1:])
        _save(ctx, kind, bidirectional, inputs[-1], emissions, tags, mask, params, output[1:])

    return setup_context


def _op_grads(ctx, grad_llh):
    return _grads(ctx, grad_llh, torch.ops.fastcore.chain_log_likelihood_backward)


@analytic_backward(_BACKWARD_NAME)
def _crf_backward(ctx, grad_llh, *unused):
    g_em, *g_par = _op_grads(ctx, grad_llh)
    return g_em, None, None, *g_par, None  # emissions, tags, mask, transitions, start, end, reduction


@analytic_backward(_BACKWARD_NAME)
def _memm_backward(ctx, grad_llh, *unused):
    g_em, g_tr = _op_grads(ctx, grad_llh)
    return g_em, None, None, g_tr, None, None  # emissions, tags, mask, transitions, bidirectional, reduction


torch.library.register_autograd("fastcore::crf_log_likelihood", _crf_backward, setup_context=_setup_context("crf"))
torch.library.register_autograd("fastcore::memm_log_likelihood", _memm_backward,
                                setup_context=_setup_context("memm"))


class _ChainLogLikelihood(torch.autograd.Function):
    """Log-likelihood of tag sequences under a CRF or a MEMM (batch first), the eager twin of the
    ``fastcore::*_log_likelihood`` ops: the same bodies and backward, without their dispatch.
    ``apply(kind, bidirectional, reduction, emissions, tags, mask, *params)`` with kind ``"crf"``
    (params: transitions, start, end) or ``"memm"`` (params: transitions)."""

    @staticmethod
    def forward(ctx, kind, bidirectional, reduction, emissions, tags, mask, *params):
        tags, mask = tags.to(torch.int64), mask.to(torch.bool)
        out = _llh_and_grads(kind, emissions, tags, mask, params, reduction, bidirectional)
        _save(ctx, kind, bidirectional, reduction, emissions, tags, mask, params, out[1:])
        return out[0]

    @staticmethod
    @analytic_backward(_BACKWARD_NAME)
    def backward(ctx, grad_llh):
        g_em, *g_par = _grads(ctx, grad_llh, _chain_backward)
        return (None, None, None, g_em, None, None, *g_par)


def _eager():
    """True outside TorchScript and torch.compile: the bodies may be called directly."""
    return not torch.compiler.is_compiling()


# ----------------------------------------------------------------------------- checks (scriptable)
def _shape_str(t: Tensor) -> str:
    """``str(tuple(t.shape))``, also under TorchScript."""
    if not torch.jit.is_scripting():
        return str(tuple(t.shape))
    dims = [str(s) for s in t.shape]
    return "(" + dims[0] + ",)" if len(dims) == 1 else "(" + ", ".join(dims) + ")"


def _lead_str(t: Tensor) -> str:
    """The first two dimensions of ``t`` as a tuple's repr."""
    return f"({t.size(0)}, {t.size(1)})"


def _dtype_str(t: Tensor) -> str:
    """``str(t.dtype)``, also under TorchScript (where a dtype prints as a number)."""
    if not torch.jit.is_scripting():
        return str(t.dtype)
    dt = t.dtype
    for known, name in ((torch.float32, "float32"), (torch.float64, "float64"), (torch.float16, "float16"),
                        (torch.bfloat16, "bfloat16"), (torch.complex64, "complex64"),
                        (torch.complex128, "complex128"), (torch.bool, "bool"), (torch.uint8, "uint8"),
                        (torch.int8, "int8"), (torch.int16, "int16"), (torch.int32, "int32"),
                        (torch.int64, "int64")):
        if dt == known:
            return "torch." + name
    return f"dtype {dt}"


def _check_cpu_float(t: Tensor, name: str):
    """:func:`fastcore.torch._tensors.cpu_float` (for a tensor), also under TorchScript."""
    if t.device.type != "cpu":
        raise ValueError(f"{name} is on {t.device}: fastcore.torch works on CPU tensors (move it with .cpu())")
    if t.dtype != torch.float32 and t.dtype != torch.float64:
        raise TypeError(f"{name} must be float32 or float64, got {_dtype_str(t)}")


def _kept_paths(paths: Tensor) -> List[List[int]]:
    """Rows of a (B, T) path tensor without the -1 of masked positions (pytorch-crf's format)."""
    if not torch.jit.is_scripting():
        return [row[row >= 0].tolist() for row in paths.numpy()]
    out: List[List[int]] = []
    rows: List[List[int]] = paths.tolist()
    for row in rows:
        kept: List[int] = []
        for t in row:
            if t >= 0:
                kept.append(t)
        out.append(kept)
    return out


class _ChainModule(nn.Module):
    """What CRF and MEMM share: the tag count, the layout and the checks of the inputs."""

    def __init__(self, num_tags, batch_first):
        if isinstance(num_tags, bool) or not isinstance(num_tags, int) or num_tags <= 0:
            raise ValueError(f"invalid number of tags: {num_tags}")
        super().__init__()
        self.num_tags = num_tags
        self.batch_first = bool(batch_first)

    def _batch_first(self, emissions: Tensor, tags: Optional[Tensor] = None,
                     mask: Optional[Tensor] = None) -> Tuple[Tensor, Optional[Tensor], Tensor]:
        if not torch.jit.is_scripting():
            if not isinstance(emissions, torch.Tensor):
                raise TypeError(f"emissions must be a torch.Tensor, got {type(emissions).__name__}")
        if emissions.dim() != 3:
            raise ValueError(f"emissions must have dimension of 3, got {emissions.dim()}")
        if emissions.size(2) != self.num_tags:
            raise ValueError(f"expected last dimension of emissions is {self.num_tags}, got {emissions.size(2)}")
        # checked in the caller's layout (seq first unless batch_first), so the shapes in a message
        # are the ones the caller passed; the wording contains pytorch-crf's
        if tags is not None:
            if tags.is_floating_point() or tags.is_complex() or tags.dtype == torch.bool:
                raise TypeError(f"tags must be an integer tensor, got dtype {_dtype_str(tags)}")
            if tags.dim() != 2 or tags.size(0) != emissions.size(0) or tags.size(1) != emissions.size(1):
                raise ValueError("the first two dimensions of emissions and tags must match, got "
                                 f"{_lead_str(emissions)} and {_shape_str(tags)}")
        if mask is not None:
            if mask.dtype != torch.bool and mask.dtype != torch.uint8:
                raise TypeError(f"mask must be a bool or uint8 tensor, got dtype {_dtype_str(mask)}")
            if mask.dim() != 2 or mask.size(0) != emissions.size(0) or mask.size(1) != emissions.size(1):
                raise ValueError("the first two dimensions of emissions and mask must match, got "
                                 f"{_lead_str(emissions)} and {_shape_str(mask)}")
        if not self.batch_first:
            emissions = emissions.transpose(0, 1)
            if tags is not None:
                tags = tags.transpose(0, 1)
            if mask is not None:
                mask = mask.transpose(0, 1)
        if mask is None:
            mask = torch.ones([emissions.size(0), emissions.size(1)], dtype=torch.bool)
        return emissions, tags, mask.to(torch.bool)

    def _loss_inputs(self, emissions: Tensor, tags: Optional[Tensor], mask: Optional[Tensor],
                     reduction: str) -> Tuple[Tensor, Tensor, Tensor]:
        if reduction not in ["none", "sum", "mean", "token_mean"]:
            raise ValueError(f"invalid reduction: {reduction}")
        if tags is None:
            raise TypeError("tags must be an integer tensor of the emissions' first two dimensions, got None")
        emissions, tags_bf, mask = self._batch_first(emissions, tags, mask)
        _check_cpu_float(emissions, "emissions")
        assert tags_bf is not None
        return emissions, tags_bf.to(torch.int64), mask

    def __repr__(self):
        return f"{self.__class__.__name__}(num_tags={self.num_tags})"


class CRF(_ChainModule):
    """Linear-chain CRF layer with pytorch-crf's interface, computed by fastcore.

    Scriptable (``torch.jit.script(CRF(5))``, as pytorch-crf's HEAD): ``forward`` and
    ``decode`` (lists) / ``decode_tensor`` call the ``fastcore::`` custom ops.

    Parameters
    ----------
    num_tags : int
    batch_first : bool, default False
        Inputs are (batch, seq, ...) when True, (seq, batch, ...) otherwise (pytorch-crf's default).

    Attributes
    ----------
    start_transitions, end_transitions : Parameter (num_tags,)
    transitions : Parameter (num_tags, num_tags)
        ``transitions[i, j]`` scores tag i followed by tag j. Initialised uniform in [-0.1, 0.1].
    """

    def __init__(self, num_tags, batch_first=False):
        super().__init__(num_tags, batch_first)
        self.start_transitions = nn.Parameter(torch.empty(num_tags))
        self.end_transitions = nn.Parameter(torch.empty(num_tags))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        self.reset_parameters()

    def reset_parameters(self):
        """Initialise the three parameters uniform in [-0.1, 0.1] (as pytorch-crf)."""
        nn.init.uniform_(self.start_transitions, -0.1, 0.1)
        nn.init.uniform_(self.end_transitions, -0.1, 0.1)
        nn.init.uniform_(self.transitions, -0.1, 0.1)

    def forward(self, emissions: Tensor, tags: Optional[Tensor], mask: Optional[Tensor] = None,
                reduction: str = "sum") -> Tensor:
        """Log-likelihood of ``tags``.

        Parameters
        ----------
        emissions : Tensor (seq, batch, num_tags), or (batch, seq, num_tags) when batch_first
            float32 or float64, on the CPU.
        tags : LongTensor (seq, batch), or (batch, seq) when batch_first
        mask : bool or uint8 Tensor of the shape of ``tags``, optional
            Kept positions; any pattern (masked positions are removed from the chain).
        reduction : {"none", "sum", "mean", "token_mean"}, default "sum"
            As in pytorch-crf.

        Returns
        -------
        Tensor
            A scalar, or (batch,) with ``reduction="none"``.
        """
        em, tg, mk = self._loss_inputs(emissions, tags, mask, reduction)
        dt = em.dtype
        if not torch.jit.is_scripting():
            if _eager():
                return _ChainLogLikelihood.apply("crf", False, reduction, em, tg, mk, self.transitions.to(dt),
                                                 self.start_transitions.to(dt), self.end_transitions.to(dt))
        return torch.ops.fastcore.crf_log_likelihood(em, tg, mk, self.transitions.to(dt),
                                                     self.start_transitions.to(dt), self.end_transitions.to(dt),
                                                     reduction)[0]

    def _viterbi(self, emissions: Tensor, mask: Optional[Tensor]) -> Tensor:
        em, _, mk = self._batch_first(emissions, None, mask)
        with torch.no_grad():
            if not torch.jit.is_scripting():
                if _eager():
                    return _crf_viterbi(em, mk, self.transitions, self.start_transitions, self.end_transitions)
            return torch.ops.fastcore.crf_viterbi(em, mk, self.transitions, self.start_transitions,
                                                  self.end_transitions)

    @torch.jit.export
    def decode(self, emissions: Tensor, mask: Optional[Tensor] = None, as_tensor: bool = False) -> List[List[int]]:
        """Best tag sequence of each batch element by Viterbi.

        Parameters
        ----------
        emissions, mask
            As in :meth:`forward`.
        as_tensor : bool, default False
            Return :meth:`decode_tensor`'s tensor instead of lists (not under TorchScript,
            whose methods have one return type: call ``decode_tensor`` there).

        Returns
        -------
        List[List[int]]
            pytorch-crf's format: the tags of the kept positions of each sequence.
        """
        paths = self._viterbi(emissions, mask)
        if not torch.jit.is_scripting():
            if as_tensor:
                return paths if self.batch_first else paths.transpose(0, 1)
        if as_tensor:
            raise ValueError("decode(as_tensor=True) is not available under TorchScript (one return type "
                             "per method): call decode_tensor")
        return _kept_paths(paths)

    @torch.jit.export
    def decode_tensor(self, emissions: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """Best tag sequences as a LongTensor in the layout of ``emissions`` ((seq, batch), or
        (batch, seq) when batch_first), -1 at masked positions.

        Parameters
        ----------
        emissions, mask
            As in :meth:`forward`.

        Returns
        -------
        LongTensor
        """
        paths = self._viterbi(emissions, mask)
        return paths if self.batch_first else paths.transpose(0, 1)


class MEMM(_ChainModule):
    """Maximum-entropy Markov model head (left-to-right, or the Bi-MEMM mean of both
    directions), with the conventions of :class:`CRF` (scriptable too).

    ``p(y_t | y_{t-1}, x) = softmax_c(emissions[t, c] + transitions[y_{t-1}, c])`` (the first
    kept step has no previous label); with ``bidirectional=True`` the log-likelihood is the
    mean of that and of the right-to-left model ``softmax_c(emissions[t, c] +
    transitions[c, y_{t+1}])``.  Training needs no forward-backward: every token is an
    independent softmax (:func:`fastcore.crf.memm_nll_grad`).

    Parameters
    ----------
    num_tags : int
    bidirectional : bool, default False
    batch_first : bool, default False
        Inputs are (batch, seq, ...) when True, (seq, batch, ...) otherwise (as :class:`CRF`).

    Attributes
    ----------
    transitions : Parameter (num_tags, num_tags)
        Initialised uniform in [-0.1, 0.1].

    Examples
    --------
    >>> import torch
    >>> from fastcore.torch import MEMM
    >>> memm = MEMM(5, bidirectional=True, batch_first=True)
    >>> em = torch.randn(2, 7, 5, requires_grad=True)
    >>> tags = torch.randint(0, 5, (2, 7))
    >>> memm(em, tags).backward()
    >>> len(memm.decode(em)[0])
    7
    """

    def __init__(self, num_tags, bidirectional=False, batch_first=False):
        super().__init__(num_tags, batch_first)
        self.bidirectional = bool(bidirectional)
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        self.reset_parameters()

    def reset_parameters(self):
        """Initialise ``transitions`` uniform in [-0.1, 0.1]."""
        nn.init.uniform_(self.transitions, -0.1, 0.1)

    def __repr__(self):
        return f"{self.__class__.__name__}(num_tags={self.num_tags}, bidirectional={self.bidirectional})"

    def forward(self, emissions: Tensor, tags: Optional[Tensor], mask: Optional[Tensor] = None,
                reduction: str = "sum") -> Tensor:
        """Log-likelihood of ``tags``: a scalar, or (batch,) with ``reduction="none"``.

        Parameters
        ----------
        emissions, tags, mask, reduction
            As for :meth:`CRF.forward`.

        Returns
        -------
        Tensor
        """
        em, tg, mk = self._loss_inputs(emissions, tags, mask, reduction)
        if not torch.jit.is_scripting():
            if _eager():
                return _ChainLogLikelihood.apply("memm", self.bidirectional, reduction, em, tg, mk,
                                                 self.transitions.to(em.dtype))
        return torch.ops.fastcore.memm_log_likelihood(em, tg, mk, self.transitions.to(em.dtype), self.bidirectional,
                                                      reduction)[0]

    def _decode_paths(self, emissions: Tensor, mask: Optional[Tensor], mode: str) -> Tensor:
        em, _, mk = self._batch_first(emissions, None, mask)
        with torch.no_grad():
            if not torch.jit.is_scripting():
                if _eager():
                    return _memm_decode(em, mk, self.transitions, self.bidirectional, mode)
            return torch.ops.fastcore.memm_decode(em, mk, self.transitions, self.bidirectional, mode)

    @torch.jit.export
    def decode(self, emissions: Tensor, mask: Optional[Tensor] = None, mode: str = "exact",
               as_tensor: bool = False) -> List[List[int]]:
        """Best tag sequence of each batch element (:func:`fastcore.crf.memm_decode`).

        Parameters
        ----------
        emissions, mask
            As in :meth:`forward`.
        mode : {"exact", "raw"}
            ``"exact"``: the model's MAP; ``"raw"``: Viterbi on ``emissions + transitions``.
        as_tensor : bool, default False
            Return :meth:`decode_tensor`'s tensor instead (not under TorchScript).

        Returns
        -------
        List[List[int]]
            The tags of the kept positions of each sequence.
        """
        paths = self._decode_paths(emissions, mask, mode)
        if not torch.jit.is_scripting():
            if as_tensor:
                return paths if self.batch_first else paths.transpose(0, 1)
        if as_tensor:
            raise ValueError("decode(as_tensor=True) is not available under TorchScript (one return type "
                             "per method): call decode_tensor")
        return _kept_paths(paths)

    @torch.jit.export
    def decode_tensor(self, emissions: Tensor, mask: Optional[Tensor] = None, mode: str = "exact") -> Tensor:
        """Best tag sequences as a LongTensor in the layout of ``emissions``, -1 at masked positions.

        Parameters
        ----------
        emissions, mask, mode
            As in :meth:`decode`.

        Returns
        -------
        LongTensor
        """
        paths = self._decode_paths(emissions, mask, mode)
        return paths if self.batch_first else paths.transpose(0, 1)
