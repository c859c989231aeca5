"""Input checks shared by the public modules.

Every message names the argument and says what was received.  These helpers
never modify their inputs; they return new arrays (or the same array when no
conversion is needed).
"""
import operator

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
MAX_COUNT = 2**62  # iteration counts travel to C as 64-bit integers


def shape_str(shape):
    return "(" + ", ".join(str(int(s)) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def as_float_array(x, name, *, dtype=None, ndim=None, min_ndim=None, finite=False):
    """``x`` as a C-contiguous float32 or float64 ndarray.

    Parameters
    ----------
    x : array_like
    name : str
        Argument name used in error messages.
    dtype : None or numpy dtype
        Target dtype.  ``None`` keeps float32/float64, turns float16 into float32 and
        bool/integers into float64.
    ndim, min_ndim : int, optional
        Required (minimum) number of dimensions.
    finite : bool
        Reject NaN and +-inf.

    Raises
    ------
    TypeError
        Complex, object, string or other non-real input.
    ValueError
        Wrong number of dimensions, non-finite values when ``finite``.
    """
    arr = np.asarray(x)
    kind = arr.dtype.kind
    if kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if dtype is None:
        if kind == "f" and arr.dtype.itemsize in (4, 8):  # native byte order: '>f4' stays float32
            target = np.dtype(f"f{arr.dtype.itemsize}")
        elif kind == "f" and arr.dtype.itemsize < 4:
            target = np.dtype(np.float32)
        else:
            target = np.dtype(np.float64)
    else:
        target = np.dtype(dtype)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {shape_str(arr.shape)}")
    if min_ndim is not None and arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {shape_str(arr.shape)}")
    arr = np.asarray(arr, dtype=target, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
    if finite:
        check_finite(arr, name)
    return arr


def check_finite(arr, name):
    """Raise ValueError if ``arr`` holds NaN or +-inf."""
    if arr.size and not np.isfinite(arr).all():
        bad = "NaN" if np.isnan(arr).any() else "infinite values"
        raise ValueError(f"{name} contains {bad}")


def check_shape(arr, name, expected):
    """Raise ValueError unless ``arr.shape`` matches ``expected`` (None = any size)."""
    ok = arr.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected, arr.shape))
    if not ok:
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"{name} must have shape {want}, got {shape_str(arr.shape)}")


def normalize_axis(axis, ndim, name="axis"):
    """A non-negative axis index, or a ValueError naming ``name``."""
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(axis).__name__}") from None
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for an array with {ndim} dimension(s)")
    return axis % ndim


def as_bool_mask(mask, name, shape):
    """``mask`` as a C-contiguous uint8 array (1 = keep) broadcastable to ``shape``.

    Accepts bool arrays, and integer arrays holding only 0 and 1 (as tokenizers
    return attention masks).  Floats are refused: an additive bias is a different thing.
    """
    m = np.asarray(mask)
    if m.dtype == np.bool_:
        pass
    elif m.dtype.kind in "iu":
        if m.size and ((m != 0) & (m != 1)).any():
            raise ValueError(f"{name} must be boolean (or integers 0/1), got other integer values")
    else:
        raise TypeError(f"{name} must be a boolean array (True = keep), got dtype {m.dtype}")
    try:
        if np.broadcast_shapes(m.shape, tuple(shape)) != tuple(shape):
            raise ValueError
    except ValueError:
        raise ValueError(
            f"{name} of shape {shape_str(m.shape)} cannot be broadcast to shape {shape_str(shape)}"
        ) from None
    return np.ascontiguousarray(m, dtype=np.uint8)


def mask_layout(mask_u8, shape, axis):
    """Describe a broadcast mask to a kernel working on ``shape`` viewed as (outer, n, inner).

    Returns ``(base, offsets, stride_n, stride_inner)``: the byte of element
    (o, i, j) is ``base[offsets[o] + i * stride_n + j * stride_inner]``.  The mask is
    not copied unless its trailing (inner) dimensions cannot be described by one
    stride, in which case it is materialised at full shape.
    """
    shape = tuple(int(s) for s in shape)
    nd = len(shape)
    mshape = (1,) * (nd - mask_u8.ndim) + tuple(mask_u8.shape)
    base = mask_u8.reshape(-1)
    cstr = [0] * nd
    acc = 1
    for d in range(nd - 1, -1, -1):
        cstr[d] = acc if mshape[d] != 1 else 0
        acc *= mshape[d]
    inner_dims = [d for d in range(axis + 1, nd) if shape[d] > 1]
    stride_inner = 0
    if inner_dims:
        stride_inner = cstr[inner_dims[-1]]
        block = 1
        for d in range(nd - 1, axis, -1):
            if shape[d] > 1 and cstr[d] != stride_inner * block:
                full = np.ascontiguousarray(np.broadcast_to(mask_u8.reshape(mshape), shape))
                return mask_layout(full, shape, axis)
            block *= shape[d]
    offsets = np.zeros(shape[:axis], dtype=np.intp)
    for d in range(axis):
        idx_shape = [1] * axis
        idx_shape[d] = shape[d]
        offsets += (np.arange(shape[d], dtype=np.intp) * cstr[d]).reshape(idx_shape)
    offsets = np.ascontiguousarray(offsets.reshape(-1))
    n = shape[axis]
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    if offsets.size and n and inner:
        last = int(offsets.max()) + (n - 1) * cstr[axis] + (inner - 1) * stride_inner
        if last >= base.size:  # cannot happen for a mask that broadcasts; never read past the end
            raise RuntimeError("internal error: mask layout out of bounds")
    return base, offsets, cstr[axis], stride_inner


def prepare_out(out, shape, dtype, name="out"):
    """Check a user-supplied output array, or allocate one."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {shape_str(shape)}, got {shape_str(out.shape)}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {out.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return out


def check_no_partial_overlap(a, b, name_a, name_b):
    """Allow ``a`` and ``b`` to be the very same buffer, but not to overlap otherwise."""
    if a is b or a.size == 0 or b.size == 0:
        return
    same = (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.shape == b.shape and a.strides == b.strides
    )
    if not same and np.shares_memory(a, b):
        raise ValueError(f"{name_b} overlaps {name_a} without being the same array")
