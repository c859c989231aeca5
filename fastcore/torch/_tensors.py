"""Tensors in and out of the NumPy kernels: the one place that checks devices, dtypes and
gradient modes for every module of fastcore.torch."""
import numpy as np
import torch

FLOATS = (torch.float32, torch.float64)


def _np(t):
    """A NumPy view of a CPU tensor (copy only when it is not contiguous)."""
    if t.device.type != "cpu":
        raise ValueError(f"fastcore.torch works on CPU tensors, got a tensor on {t.device}")
    return t.detach().contiguous().numpy()


def cpu_float(t, name, *, dtype=None):
    """Check that t is a float32/float64 CPU tensor (of dtype, when given); returns it."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(f"{name} is on {t.device}: fastcore.torch works on CPU tensors (move it with .cpu())")
    if t.dtype not in FLOATS:
        raise TypeError(f"{name} must be float32 or float64, got {t.dtype}")
    if dtype is not None and t.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype} (that of the other inputs), got {t.dtype}")
    return t


def inplace_cpu_float(t, name):
    """Check that t is a dense, C-contiguous float32/float64 CPU tensor: one that a kernel may
    update in place through its NumPy view (no copy may stand in for it); returns it."""
    if isinstance(t, torch.Tensor) and t.layout is not torch.strided:
        raise TypeError(f"{name} is a {t.layout} tensor: fastcore.torch needs dense (strided) tensors")
    cpu_float(t, name)
    if not t.is_contiguous():
        raise ValueError(f"{name} is not contiguous (shape {tuple(t.shape)}, strides {t.stride()}): fastcore "
                         "updates it in place through a NumPy view, so it cannot work on a copy; make it "
                         "contiguous (p.data = p.data.contiguous()) before building the optimizer")
    return t


def cpu_int(t, name):
    """Check that t is an integer/bool CPU tensor that does not require grad; returns it."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(f"{name} is on {t.device}: fastcore.torch works on CPU tensors (move it with .cpu())")
    if t.dtype.is_floating_point or t.dtype.is_complex:
        raise TypeError(f"{name} must be an integer or bool tensor, got {t.dtype}")
    return t


def to_tensor(a, like):
    """A NumPy result as a tensor of like's dtype (no copy when the dtype already matches)."""
    return torch.from_numpy(np.ascontiguousarray(a)).to(like.dtype)


def once_differentiable_note(fname):
    """The message for a second derivative, which the analytic backwards do not provide."""
    return (f"{fname}: double backward is not supported (the backward is an analytic kernel, not an "
            f"autograd graph); use torch's own ops for higher derivatives")


def index_array(x, name):
    """Integer tensors (lengths, segment ids, orders, labels) as NumPy arrays; arrays, lists and
    None pass through to the NumPy API, which validates their values."""
    if x is None or not isinstance(x, torch.Tensor):
        return x
    return cpu_int(x, name).detach().numpy()


def analytic_backward(fname):
    """``once_differentiable`` that also catches a second derivative taken through a constant
    incoming gradient (``torch.autograd.grad(loss, x, create_graph=True)``, the gradient-penalty
    case): torch's decorator leaves that gradient without a graph, so the second-order term
    would silently be zero.  Here, under ``create_graph=True``, the returned gradients always
    point to a node that raises RuntimeError (with ``once_differentiable_note(fname)``) if
    anything is differentiated through them."""
    import functools

    from torch.autograd.function import once_differentiable

    def deco(backward):
        inner = once_differentiable(backward)

        @functools.wraps(backward)
        def wrapper(ctx, *grads):
            out = inner(ctx, *grads)
            if not torch.is_grad_enabled():
                return out
            outs = out if isinstance(out, tuple) else (out,)
            err = torch._C._functions.DelayedError(once_differentiable_note(fname).encode(), len(outs))
            alias = [None if o is None else o.detach().requires_grad_(True) for o in outs]
            res = err(*alias)
            res = res if isinstance(res, tuple) else (res,)
            res = tuple(None if o is None else r for o, r in zip(outs, res))
            return res if isinstance(out, tuple) else res[0]

        return wrapper

    return deco
