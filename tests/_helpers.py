"""Small utilities shared by the tests."""
import importlib

import numpy as np
import pytest

FLOAT_DTYPES = [np.float32, np.float64]


_EXTRA = {"dask": "dask", "distributed": "dask", "snownlp": "examples", "pycrfsuite": "examples",
          "sklearn": "examples"}


def needs(module):
    """Mark a test as needing an optional package; skipped (with the reason) if it is absent.

    .ci/run installs every extra, so in CI these tests run."""
    try:
        importlib.import_module(module)
        ok = True
    except Exception:
        ok = False
    return pytest.mark.skipif(not ok, reason=f"{module} is not installed (pip install '.[{_EXTRA.get(module, 'peers')}]')")


def tol(dtype):
    """(rtol, atol) suitable for comparing a result of this dtype to a float64 reference."""
    return (2e-5, 1e-6) if np.dtype(dtype) == np.float32 else (1e-12, 1e-14)


def variants(x):
    """The same values as C-contiguous, Fortran-ordered, strided and read-only arrays."""
    out = {"contiguous": np.ascontiguousarray(x)}
    if x.ndim >= 2:
        out["fortran"] = np.asfortranarray(x)
    big = np.zeros(tuple(2 * s for s in x.shape), dtype=x.dtype)
    view = big[tuple(slice(None, None, 2) for _ in x.shape)]
    view[...] = x
    out["strided"] = view
    ro = np.array(x)
    ro.flags.writeable = False
    out["readonly"] = ro
    return out
