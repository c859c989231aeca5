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
