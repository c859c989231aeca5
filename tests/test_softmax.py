"""masked_softmax and logsumexp against SciPy and a row-by-row NumPy reference."""
import threading

import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastcore
from _helpers import FLOAT_DTYPES, tol, variants


# ---------------------------------------------------------------- reference
def _ref_slice(v, keep):
    """Documented semantics of one slice, in float64 (softmax, logsumexp)."""
    v = v.astype(np.float64)
    kv = v[keep]
    sm = np.zeros_like(v)
    if np.isnan(kv).any():
        sm[keep] = np.nan
        return sm, np.nan
    if np.isposinf(kv).any():
        hot = keep & np.isposinf(v)
        sm[hot] = 1.0 / hot.sum()
        return sm, np.inf
    finite = kv[np.isfinite(kv)]
    if finite.size == 0:
        return sm, -np.inf
    m = finite.max()
    e = np.where(keep & np.isfinite(v), np.exp(v - m), 0.0)
    s = e.sum()
    return e / s, m + np.log(s)


def ref(x, mask=None, axis=-1):
    x = np.asarray(x, dtype=np.float64)
    keep = np.ones(x.shape, bool) if mask is None else np.broadcast_to(np.asarray(mask, bool), x.shape)
    xs, ks = np.moveaxis(x, axis, -1), np.moveaxis(keep, axis, -1)
    sm = np.empty_like(xs)
    lse = np.empty(xs.shape[:-1])
    for idx in np.ndindex(*xs.shape[:-1]):
        sm[idx], lse[idx] = _ref_slice(xs[idx], ks[idx])
    return np.moveaxis(sm, -1, axis), lse


def assert_close(actual, expected, dtype):
    rtol, atol = tol(dtype)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


SHAPES_AXES = [((7,), 0), ((3, 5), -1), ((3, 5), 0), ((2, 3, 17), 1), ((2, 3, 4, 33), -1),
               ((2, 3, 4, 5), 0), ((4, 300), 0), ((2, 600, 3), 1), ((1, 1), 0), ((5, 1000), -1)]


# ---------------------------------------------------------------- values
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape,axis", SHAPES_AXES)
def test_matches_scipy(rng, dtype, shape, axis):
    x = (rng.standard_normal(shape) * 10).astype(dtype)
    sm = fastcore.masked_softmax(x, axis=axis)
    lse = fastcore.logsumexp(x, axis=axis)
    assert sm.dtype == dtype and lse.dtype == dtype
    assert lse.shape == tuple(np.delete(np.array(shape), axis % len(shape)))
    assert_close(sm, scipy.special.softmax(x.astype(np.float64), axis=axis), dtype)
    assert_close(lse, scipy.special.logsumexp(x.astype(np.float64), axis=axis), dtype)
    np.testing.assert_allclose(sm.sum(axis=axis), 1.0, rtol=tol(dtype)[0] * 10)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_huge_and_tiny_scores_do_not_overflow(dtype):
    big = 3e4 if dtype == np.float32 else 1e300
    x = np.array([[big, big - 1, big - 50], [-big, -big + 1, -big - 50]], dtype=dtype)
    assert_close(fastcore.masked_softmax(x), ref(x)[0], dtype)
    assert_close(fastcore.logsumexp(x), ref(x)[1], dtype)


def test_float32_exp_is_accurate_to_a_few_ulp(rng):
    # softmax of [x, 0] is exp(x) / (exp(x) + 1): the shared float exp polynomial (fc_math.h)
    # shows through with one rounding of the sum and one of the division on top.  A polynomial
    # a degree too short (2.8 ulp alone) fails here.
    x = np.concatenate([rng.uniform(-80.0, 0.0, 200_000), rng.uniform(-1.0, 0.0, 100_000)]).astype(np.float32)
    rows = np.stack([x, np.zeros_like(x)], axis=1)
    sm = fastcore.masked_softmax(rows)[:, 0].astype(np.float64)
    e = np.exp(x.astype(np.float64))
    exact = e / (e + 1.0)
    ulps = np.abs(sm - exact) / np.spacing(exact.astype(np.float32)).astype(np.float64)
    assert ulps.max() <= 2.5, ulps.max()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_subnormal_probabilities(dtype):
    # differences that push exp into the subnormal range must still be right
    d = 100.0 if dtype == np.float32 else 740.0
    x = np.array([0.0, -d, -d / 2], dtype=dtype)
    sm = fastcore.masked_softmax(x)
    expected = scipy.special.softmax(x.astype(np.float64))
    assert sm[1] > 0  # not flushed to zero
    # subnormals carry few bits: allow one unit in the last place of the subnormal grid
    np.testing.assert_allclose(sm, expected, rtol=1e-5, atol=np.finfo(dtype).smallest_subnormal)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kind", list(variants(np.zeros((2, 3))).keys()))
def test_layouts_and_input_untouched(rng, dtype, kind):
    base = (rng.standard_normal((4, 6, 9)) * 3).astype(dtype)
    for axis in (0, 1, 2):
        x = variants(base)[kind]
        before = x.copy()
        assert_close(fastcore.masked_softmax(x, axis=axis), ref(base, axis=axis)[0], dtype)
        assert_close(fastcore.logsumexp(x, axis=axis), ref(base, axis=axis)[1], dtype)
        np.testing.assert_array_equal(x, before)


# ---------------------------------------------------------------- masks
MASK_SHAPES = [(4, 6, 9), (6, 9), (9,), (1, 1, 9), (4, 1, 9), (4, 6, 1), (1, 6, 1), (4, 1, 1), (1,)]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("mshape", MASK_SHAPES)
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_broadcast_masks(rng, dtype, mshape, axis):
    x = (rng.standard_normal((4, 6, 9)) * 3).astype(dtype)
    mask = rng.random(mshape) > 0.3
    mask_before = mask.copy()
    sm = fastcore.masked_softmax(x, mask, axis=axis)
    lse = fastcore.logsumexp(x, axis=axis, mask=mask)
    esm, else_ = ref(x, mask, axis)
    assert_close(sm, esm, dtype)
    assert_close(lse, else_, dtype)
    np.testing.assert_array_equal(mask, mask_before)
    assert (sm[~np.broadcast_to(mask, x.shape)] == 0).all()


def test_mask_equivalent_to_minus_inf(rng):
    x = rng.standard_normal((5, 11))
    mask = rng.random((5, 11)) > 0.4
    np.testing.assert_array_equal(fastcore.masked_softmax(x, mask), fastcore.masked_softmax(np.where(mask, x, -np.inf)))


def test_all_ones_mask_equals_no_mask(rng):
    x = rng.standard_normal((3, 4, 50)).astype(np.float32)
    np.testing.assert_array_equal(fastcore.masked_softmax(x, np.ones(50, bool)), fastcore.masked_softmax(x))


def test_integer_01_mask_accepted(rng):
    x = rng.standard_normal((2, 7))
    m = np.array([1, 1, 0, 1, 0, 0, 1], dtype=np.int64)
    np.testing.assert_array_equal(fastcore.masked_softmax(x, m), fastcore.masked_softmax(x, m.astype(bool)))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_fully_masked_rows(dtype):
    x = np.arange(12, dtype=dtype).reshape(3, 4)
    mask = np.array([[True, False, True, True], [False] * 4, [True] * 4])
    sm = fastcore.masked_softmax(x, mask)
    assert (sm[1] == 0).all() and not np.isnan(sm).any()
    lse = fastcore.logsumexp(x, mask=mask)
    assert lse[1] == -np.inf
    assert_close(sm, ref(x, mask)[0], dtype)
    # along a non-last axis too
    smt = fastcore.masked_softmax(x.T, mask.T, axis=0)
    np.testing.assert_array_equal(smt.T, sm)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("axis", [0, 1])
def test_special_values(dtype, axis):
    inf, nan = np.inf, np.nan
    rows = np.array([
        [1.0, 2.0, 3.0, 4.0],
        [-inf, -inf, -inf, -inf],   # no mass: zeros / -inf
        [1.0, nan, 2.0, 3.0],       # NaN: NaN / NaN
        [1.0, inf, 2.0, inf],       # +inf entries share the mass / +inf
        [-inf, 0.0, -inf, 1.0],     # -inf entries act as masked
        [nan, -inf, -inf, -inf],    # NaN beside no mass
        [inf, nan, 0.0, 0.0],       # NaN beats +inf
    ], dtype=dtype)
    x = rows if axis == 1 else np.ascontiguousarray(rows.T)
    sm = fastcore.masked_softmax(x, axis=axis)
    lse = fastcore.logsumexp(x, axis=axis)
    esm, else_ = ref(x, axis=axis)
    assert_close(sm, esm, dtype)
    assert_close(lse, else_, dtype)
    # logsumexp agrees with scipy on every row, including the special ones
    with np.errstate(invalid="ignore"):
        assert_close(lse, scipy.special.logsumexp(x.astype(np.float64), axis=axis), dtype)


def test_masked_nan_is_ignored():
    x = np.array([[1.0, np.nan, 2.0]])
    mask = np.array([True, False, True])
    sm = fastcore.masked_softmax(x, mask)
    assert not np.isnan(sm).any()
    np.testing.assert_allclose(sm, [[1 / (1 + np.e), 0.0, np.e / (1 + np.e)]])


# ---------------------------------------------------------------- shapes and dtypes
def test_empty_arrays():
    for shape, axis in [((0, 5), -1), ((0, 5), 0), ((3, 0), -1), ((3, 0), 0), ((0,), 0), ((2, 0, 4), 1)]:
        x = np.zeros(shape, np.float32)
        sm = fastcore.masked_softmax(x, axis=axis)
        assert sm.shape == shape and sm.dtype == np.float32
        lse = fastcore.logsumexp(x, axis=axis)
        expected = scipy.special.logsumexp(x.astype(np.float64), axis=axis)
        assert lse.shape == expected.shape
        np.testing.assert_array_equal(lse, expected)  # empty sum: -inf


def test_keepdims(rng):
    x = rng.standard_normal((3, 4, 5))
    for axis in range(3):
        np.testing.assert_allclose(fastcore.logsumexp(x, axis=axis, keepdims=True),
                                   scipy.special.logsumexp(x, axis=axis, keepdims=True), rtol=1e-12)


def test_dtype_policy():
    x16 = np.array([[1, 2, 3]], dtype=np.float16)
    assert fastcore.masked_softmax(x16).dtype == np.float32
    assert fastcore.logsumexp(x16).dtype == np.float32
    assert fastcore.masked_softmax(np.array([[1, 2, 3]])).dtype == np.float64
    assert fastcore.masked_softmax([[True, False]]).dtype == np.float64
    assert fastcore.masked_softmax([1.0, 2.0]).dtype == np.float64
    with pytest.raises(TypeError, match="x must be a real numeric array"):
        fastcore.masked_softmax(np.array([1 + 1j, 2]))
    with pytest.raises(TypeError, match="x must be a real numeric array"):
        fastcore.logsumexp(np.array(["a", "b"]))


def test_bad_arguments_are_clear_errors(rng):
    x = rng.standard_normal((3, 4))
    with pytest.raises(ValueError, match="at least one dimension"):
        fastcore.masked_softmax(np.float64(1.0))
    with pytest.raises(ValueError, match=r"axis=2 is out of range"):
        fastcore.masked_softmax(x, axis=2)
    with pytest.raises(TypeError, match="axis must be an int"):
        fastcore.logsumexp(x, axis=1.5)
    with pytest.raises(ValueError, match=r"mask of shape \(5,\) cannot be broadcast to shape \(3, 4\)"):
        fastcore.masked_softmax(x, np.ones(5, bool))
    with pytest.raises(TypeError, match="mask must be a boolean array"):
        fastcore.masked_softmax(x, np.ones(4))
    with pytest.raises(ValueError, match="mask must be boolean"):
        fastcore.masked_softmax(x, np.array([0, 1, 2, 1]))
    with pytest.raises(ValueError, match="n_threads must be a positive int"):
        fastcore.masked_softmax(x, n_threads=0)
    with pytest.raises(TypeError, match="n_threads must be None or an int"):
        fastcore.masked_softmax(x, n_threads=True)


# ---------------------------------------------------------------- out=
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place_over_a_middle_axis_with_infinite_or_nan_columns(dtype):
    """Columns whose maximum is not finite (all -inf, some +inf) or that hold a NaN, reduced
    over axis 0 (the inner > 1 layout) in place: the same answer as out of place.  In place,
    the kernel used to re-read such columns after overwriting them, and wrote NaN."""
    z = np.array([[-np.inf, 1.0, np.inf, np.nan, 2.0],
                  [-np.inf, 2.0, 0.0, 1.0, -np.inf],
                  [-np.inf, 3.0, np.inf, 0.0, 1.0]], dtype=dtype)
    mask = np.ones_like(z, dtype=bool)
    mask[2, 4] = False
    for m in (None, mask):
        want = fastcore.masked_softmax(z, m, axis=0)
        np.testing.assert_array_equal(want[:, 0], 0.0)
        np.testing.assert_array_equal(want[:, 2], [0.5, 0.0, 0.5])
        assert np.isnan(want[:, 3]).all()
        got = z.copy()
        assert fastcore.masked_softmax(got, m, axis=0, out=got) is got
        np.testing.assert_array_equal(got, want)


def test_out_argument(rng):
    x = rng.standard_normal((3, 8)).astype(np.float32)
    expected = fastcore.masked_softmax(x)
    out = np.empty_like(x)
    assert fastcore.masked_softmax(x, out=out) is out
    np.testing.assert_array_equal(out, expected)
    y = x.copy()
    assert fastcore.masked_softmax(y, out=y) is y  # in place
    np.testing.assert_array_equal(y, expected)
    with pytest.raises(ValueError, match=r"out must have shape \(3, 8\)"):
        fastcore.masked_softmax(x, out=np.empty((8, 3), np.float32))
    with pytest.raises(TypeError, match="out must have dtype float32"):
        fastcore.masked_softmax(x, out=np.empty((3, 8)))
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        fastcore.masked_softmax(x, out=np.empty((8, 3), np.float32).T)
    ro = np.empty_like(x)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        fastcore.masked_softmax(x, out=ro)
    with pytest.raises(TypeError, match="out must be a numpy.ndarray"):
        fastcore.masked_softmax(x, out=[0.0] * 24)
    buf = np.zeros(40, np.float32)
    a = buf[:24].reshape(3, 8)
    a[...] = x
    with pytest.raises(ValueError, match="out overlaps x"):
        fastcore.masked_softmax(a, out=buf[8:32].reshape(3, 8))


# ---------------------------------------------------------------- threads
@pytest.mark.parametrize("shape,axis", [((64, 3000), -1), ((40, 700, 3), 1), ((3000, 65), 0)])
def test_threads_give_identical_results(rng, shape, axis):
    x = rng.standard_normal(shape).astype(np.float32)
    mask = rng.random(shape) > 0.2
    for fn in (lambda t: fastcore.masked_softmax(x, mask, axis=axis, n_threads=t),
               lambda t: fastcore.logsumexp(x, axis=axis, mask=mask, n_threads=t)):
        np.testing.assert_array_equal(fn(1), fn(2))
        np.testing.assert_array_equal(fn(1), fn(None))
        np.testing.assert_array_equal(fn(1), fn(-1))


def test_concurrent_calls_from_python_threads(rng):
    xs = [rng.standard_normal((50, 513)) for _ in range(8)]
    expected = [fastcore.masked_softmax(x) for x in xs]
    results = [None] * len(xs)

    def work(i):
        for _ in range(20):
            results[i] = fastcore.masked_softmax(xs[i], n_threads=2)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r, e in zip(results, expected):
        np.testing.assert_array_equal(r, e)


# ---------------------------------------------------------------- properties
@given(
    x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
                 elements=st.floats(-1e3, 1e3) | st.sampled_from([-np.inf])),
    data=st.data(),
)
def test_property_matches_reference(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    mask = data.draw(hnp.arrays(bool, x.shape))
    sm = fastcore.masked_softmax(x, mask, axis=axis)
    lse = fastcore.logsumexp(x, axis=axis, mask=mask)
    esm, else_ = ref(x, mask, axis)
    np.testing.assert_allclose(sm, esm, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(lse, else_, rtol=1e-12, atol=1e-12)
    total = sm.sum(axis=axis)
    assert np.all((np.abs(total - 1) < 1e-12) | (total == 0))
