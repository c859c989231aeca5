"""Small utilities shared by the tests."""
import importlib
import os
import subprocess
import sys

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


def ot_linprog_cost(a, b, M):
    """Exact OT cost by scipy's linprog (HiGHS), as in the post: the plan flattened row-major,
    m + n equality rows with the last (redundant) one dropped."""
    from scipy.optimize import linprog

    n, m = M.shape
    A = np.zeros((n + m, n * m))
    for i in range(n):
        A[i, i * m:(i + 1) * m] = 1
    for j in range(m):
        A[n + j, j::m] = 1
    res = linprog(M.ravel(), A_eq=A[:-1], b_eq=np.concatenate([a, b])[:-1], bounds=(0, None), method="highs")
    assert res.status == 0
    return res.fun


def fastcore_parent():
    """The folder holding the fastcore these tests import (installed, or an in-place build)."""
    import fastcore

    return os.path.dirname(os.path.dirname(os.path.abspath(fastcore.__file__)))


def run_python(code, *args, path_first=None, cwd=None, timeout=120, **env):
    """``python -c code args...`` in a child that imports the same fastcore as the tests (the
    clone's root, first on a ``-c`` child's path, would shadow an installed package: the child
    runs in ``cwd``, by default this folder).  ``path_first``: a folder put before it on the path;
    ``env``: variables to set (None removes one).  Returns the CompletedProcess."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (path_first, fastcore_parent()) if p)
    for k, v in env.items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          env=e, cwd=cwd or os.path.dirname(os.path.abspath(__file__)))


def assert_import_fails_clearly(tmp_path, missing, module, message):
    """Importing ``module`` with a broken ``missing`` package first on the path fails with ``message``."""
    fake = tmp_path / missing
    fake.mkdir()
    (fake / "__init__.py").write_text(f"raise ImportError('no {missing} here')\n")
    proc = run_python(f"import {module}", path_first=str(tmp_path), cwd=tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
