"""The shared machinery: status codes, thread resolution, validation helpers, packaging."""
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastcore
from fastcore import _common
from fastcore._threads import available_cores, resolve_n_threads
from fastcore._validation import as_bool_mask, as_float_array, check_finite, check_shape, mask_layout


def test_status_codes_map_to_exceptions():
    assert _common.raise_for_status(_common.OK, "k") == 0
    cases = [(_common.BAD_ARGUMENT, ValueError, "bad argument"),
             (_common.OUT_OF_MEMORY, MemoryError, "out of memory"),
             (_common.NON_FINITE, ValueError, "non-finite"),
             (_common.INFEASIBLE, ValueError, "problem is infeasible"),
             (_common.UNBOUNDED, ValueError, "problem is unbounded"),
             (_common.INTERNAL, fastcore.InternalError, r"internal error \(please report"),
             (99, fastcore.InternalError, "unknown status")]
    for code, exc, text in cases:
        with pytest.raises(exc, match=f"kernel_x: {text}"):
            _common.raise_for_status(code, "kernel_x")


def test_iteration_limits_warn_or_raise():
    for code in (_common.NOT_CONVERGED, _common.MAX_ITER_REACHED):
        with pytest.warns(fastcore.ConvergenceWarning, match="solver"):
            assert _common.raise_for_status(code, "solver") == code
        with pytest.raises(fastcore.ConvergenceError):
            _common.raise_for_status(code, "solver", False)
    assert issubclass(fastcore.ConvergenceWarning, RuntimeWarning)
    assert issubclass(fastcore.ConvergenceWarning, UserWarning)  # as POT's and scikit-learn's


def test_convergence_warnings_point_at_the_caller(rng):
    # the warning's file is the user's, whatever depth inside fastcore it came from
    import fastcore.ot
    n = 40
    M = rng.random((n, n))
    a = np.full(n, 1 / n)
    with pytest.warns(fastcore.ConvergenceWarning) as record:
        fastcore.ot.emd2(a, a, M, numItermax=2)
    assert record[0].filename == __file__
    with pytest.warns(fastcore.ConvergenceWarning) as record:
        fastcore.ot.sinkhorn2(a, a, M, 1e-3, numItermax=2)
    assert record[0].filename == __file__
    with pytest.warns(fastcore.ConvergenceWarning) as record:
        _common.raise_for_status(_common.NOT_CONVERGED, "solver")
    assert record[0].filename == __file__


def test_status_messages_are_distinct():
    codes = [_common.OK, _common.BAD_ARGUMENT, _common.OUT_OF_MEMORY, _common.NOT_CONVERGED,
             _common.MAX_ITER_REACHED, _common.NON_FINITE, _common.INFEASIBLE, _common.UNBOUNDED,
             _common.INTERNAL]
    msgs = [_common.status_message(c) for c in codes]
    assert len(set(msgs)) == len(msgs) and len(set(codes)) == len(codes)


def test_resolve_n_threads():
    default = fastcore.get_num_threads()
    assert 1 <= default <= available_cores()
    assert resolve_n_threads(None) == default
    assert resolve_n_threads(-1) == default
    assert resolve_n_threads(3) == 3
    assert resolve_n_threads(np.int64(2)) == 2
    assert resolve_n_threads(-(default + 5)) == 1
    with pytest.raises(ValueError, match="n_threads must be a positive int"):
        resolve_n_threads(0)
    with pytest.raises(ValueError, match="at most 65535"):
        resolve_n_threads(2**40)
    with pytest.raises(TypeError, match="workers must be None or an int"):
        resolve_n_threads(1.5, "workers")
    with pytest.raises(TypeError):
        resolve_n_threads(False)


def test_validation_messages_name_the_argument():
    with pytest.raises(ValueError, match=r"emissions must have 3 dimension\(s\), got shape \(2, 3\)"):
        as_float_array(np.zeros((2, 3)), "emissions", ndim=3)
    with pytest.raises(ValueError, match="costs contains NaN"):
        check_finite(np.array([1.0, np.nan]), "costs")
    with pytest.raises(ValueError, match="weights contains infinite values"):
        as_float_array([1.0, np.inf], "weights", finite=True)
    with pytest.raises(ValueError, match=r"trans must have shape \(4, \*\), got \(3, 4\)"):
        check_shape(np.zeros((3, 4)), "trans", (4, None))
    with pytest.raises(TypeError, match="q must be a real numeric array, got dtype object"):
        as_float_array(np.array([None]), "q")
    x = np.arange(6.0)
    y = as_float_array(x, "x", dtype=np.float32)
    assert y.dtype == np.float32 and x.dtype == np.float64


@pytest.mark.parametrize("shape,mshape,axis", [
    ((2, 3, 4, 5), (2, 1, 4, 5), 3), ((2, 3, 4, 5), (5,), 1), ((2, 3, 4, 5), (3, 1, 1), 1),
    ((2, 3, 4, 5), (2, 1, 1, 5), 0), ((2, 3, 4, 5), (1, 3, 1, 5), 1), ((6, 7), (6, 1), 0),
])
def test_mask_layout_addresses_every_element(rng, shape, mshape, axis):
    mask = rng.random(mshape) > 0.5
    base, offsets, sn, si = mask_layout(as_bool_mask(mask, "mask", shape), shape, axis)
    full = np.broadcast_to(mask, shape)
    moved = np.moveaxis(full, axis, -1)  # (outer..., inner..., n) -> compare element by element
    outer = int(np.prod(shape[:axis]))
    inner = int(np.prod(shape[axis + 1:]))
    n = shape[axis]
    got = np.empty((outer, n, inner), bool)
    for o in range(outer):
        for i in range(n):
            for j in range(inner):
                got[o, i, j] = base[offsets[o] + i * sn + j * si]
    np.testing.assert_array_equal(got, full.reshape(outer, n, inner))
    assert moved.size == got.size


def test_name_clash_with_fastai_is_detected(tmp_path):
    # A folder where fast.ai's fastcore files sit beside ours, as after installing both.
    pkg = tmp_path / "fastcore"
    pkg.mkdir()
    shutil.copy(os.path.join(os.path.dirname(fastcore.__file__), "__init__.py"), pkg / "__init__.py")
    (pkg / "basics.py").write_text("# fast.ai fastcore\n")
    code = "import fastcore"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode != 0
    assert "cannot be installed together" in proc.stderr and "basics.py" in proc.stderr


def test_tour_runs(tmp_path):
    # from a folder outside the clone (cwd first on sys.path is harmless there); PYTHONPATH
    # names the fastcore this test imported (installed, or an in-place build)
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(fastcore.__file__)))}
    proc = subprocess.run([sys.executable, "-m", "fastcore"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "masked_softmax" in proc.stdout and "Tour done" in proc.stdout
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "Traceback" not in proc.stderr


def test_big_endian_floats_keep_their_precision():
    for code in (">f4", ">f8", "<f4"):
        x = np.arange(6, dtype=code).reshape(2, 3) / 7
        arr = as_float_array(x, "x")
        assert arr.dtype == np.dtype(code).newbyteorder("=") and arr.dtype.isnative
        np.testing.assert_array_equal(arr, x)
    x = (np.arange(12, dtype=np.float32).reshape(3, 4) / 5).astype(">f4")
    out = fastcore.masked_softmax(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, fastcore.masked_softmax(x.astype(np.float32)))


def test_huge_iteration_counts_are_value_errors():
    from fastcore import ot
    from fastcore.sinkhorn import sinkhorn

    a = np.full(3, 1 / 3)
    M = np.ones((3, 3)) - np.eye(3)
    for bad in (1e20, 2**70):
        with pytest.raises(ValueError, match="numItermax must be at most"):
            ot.emd2(a, a, M, numItermax=bad)
    with pytest.raises(ValueError, match="numItermax must be at most"):
        sinkhorn(a, a, M, 1.0, numItermax=10**20)
