"""fastcore.torch OT losses: values and gradients against POT's torch backend, gradcheck and
finite differences, a training loop, and the errors."""
import doctest
import warnings

import numpy as np
import pytest

from _helpers import needs

torch = pytest.importorskip("torch")

from fastcore import ot as fot  # noqa: E402
from fastcore.torch import emd2, emd2_batch, sinkhorn2, wmd, wrd  # noqa: E402

F64 = torch.float64


def _problem(rng, n, m, dtype=F64):
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    return (torch.tensor(a / a.sum(), dtype=dtype), torch.tensor(b / b.sum(), dtype=dtype),
            torch.tensor(rng.random((n, m)), dtype=dtype))


def _run(f, *args):
    """f(*args) with every tensor argument requiring grad: (value, grads)."""
    xs = [x.detach().clone().requires_grad_(True) for x in args]
    out = f(*xs)
    out.sum().backward()
    return out.detach(), [x.grad for x in xs]


def _zero_sum(rng, n):
    d = rng.standard_normal(n)
    return d - d.mean()


def test_docstring_examples_run():
    import fastcore.torch.ot as mod

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted >= 25 and res.failed == 0


# ---------------------------------------------------------------- emd2
@needs("ot")
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_emd2_matches_pot(rng, dtype):
    import ot

    a, b, M = _problem(rng, 6, 8, dtype)
    c, (ga, gb, gM) = _run(emd2, a, b, M)
    cr, (ra, rb, rM) = _run(ot.emd2, a, b, M)
    assert c.dtype == dtype and c.shape == () and ga.dtype == gb.dtype == gM.dtype == dtype
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-14)
    for x, y in ((c, cr), (ga, ra), (gb, rb), (gM, rM)):
        np.testing.assert_allclose(x.numpy(), y.numpy(), **tol)
    # empty weights: uniform, as POT; the dtype of M
    c, (gM,) = _run(lambda M: emd2(torch.zeros(0), [], M), M)
    cr, (rM,) = _run(lambda M: ot.emd2([], [], M), M)
    assert c.dtype == dtype
    np.testing.assert_allclose(c.numpy(), cr.numpy(), **tol)
    np.testing.assert_allclose(gM.numpy(), rM.numpy(), **tol)


def test_emd2_gradcheck_cost(rng):
    a, b, M = _problem(rng, 5, 6)
    assert torch.autograd.gradcheck(lambda M: emd2(a, b, M), (M.clone().requires_grad_(True),), eps=1e-7)


def test_emd2_weight_gradient_directional(rng):
    # the cost is piecewise linear in (a, b): along a balanced direction, at a non-degenerate
    # optimum, the centred duals give the exact derivative
    a, b, M = _problem(rng, 5, 6)
    _, (ga, gb, _) = _run(emd2, a, b, M)
    da, db = torch.tensor(_zero_sum(rng, 5)), torch.tensor(_zero_sum(rng, 6))
    t = 1e-7
    fd = (emd2(a + t * da, b + t * db, M) - emd2(a - t * da, b - t * db, M)) / (2 * t)
    np.testing.assert_allclose(float(fd), float(ga @ da + gb @ db), rtol=1e-6, atol=1e-9)
    assert abs(float(ga.sum())) < 1e-12 and abs(float(gb.sum())) < 1e-12  # centred, as POT


def test_emd2_zero_weight_one_sided(rng):
    # a zero weight gets the tightest feasible dual, which is the one-sided derivative as
    # that weight becomes positive (POT's estimate_dual_null_weights need not be)
    rng = np.random.default_rng(1)
    a, b, M = _problem(rng, 4, 5)
    a = a.clone()
    a[3] += a[1]
    a[1] = 0.0
    _, (ga, _, _) = _run(emd2, a, b, M)
    d = torch.zeros(4, dtype=F64)
    d[1], d[3] = 1.0, -1.0
    t = 1e-7
    fd = (emd2(a + t * d, b, M) - emd2(a, b, M)) / t
    np.testing.assert_allclose(float(fd), float(ga @ d), rtol=1e-6)


# ---------------------------------------------------------------- sinkhorn2
def _balanced(a0, b0, za, zb):
    """Weights moved along zero-sum directions (the projection makes gradcheck's
    perturbations mass preserving)."""
    return a0 + za - za.mean(), b0 + zb - zb.mean()


@pytest.mark.parametrize("objective", ["cost", "entropic"])
def test_sinkhorn2_gradcheck(rng, objective):
    a0, b0, M = _problem(rng, 4, 5)
    kw = {"objective": objective, "stopThr": 1e-14, "numItermax": 10000, "warn": False}

    def f(za, zb, M):
        a, b = _balanced(a0, b0, za, zb)
        return sinkhorn2(a, b, M, 0.2, **kw)

    z = [torch.zeros(4, dtype=F64, requires_grad=True), torch.zeros(5, dtype=F64, requires_grad=True),
         M.clone().requires_grad_(True)]
    assert torch.autograd.gradcheck(f, z, eps=1e-6, atol=1e-6)


@needs("ot")
@pytest.mark.parametrize("reg", [0.5, 0.1])
def test_sinkhorn2_matches_pot_autodiff(rng, reg):
    import ot

    a, b, M = _problem(rng, 6, 7)
    c, (ga, gb, gM) = _run(lambda a, b, M: sinkhorn2(a, b, M, reg, stopThr=1e-13, numItermax=10000), a, b, M)
    cr, (ra, rb, rM) = _run(lambda a, b, M: ot.sinkhorn2(a, b, M, reg, method="sinkhorn_log", numItermax=10000,
                                                          stopThr=1e-13), a, b, M)
    assert c.dtype == F64 and c.shape == ()
    np.testing.assert_allclose(float(c), float(cr), rtol=1e-10)
    np.testing.assert_allclose(gM.numpy(), rM.numpy(), atol=1e-8)
    # POT's a/b gradients carry an arbitrary constant (only balanced directions are defined)
    np.testing.assert_allclose(ga.numpy(), (ra - ra.mean()).numpy(), atol=1e-8)
    np.testing.assert_allclose(gb.numpy(), (rb - rb.mean()).numpy(), atol=1e-8)


def test_sinkhorn2_columns_and_float32(rng):
    a, _, M = _problem(rng, 5, 6)
    B = torch.tensor(rng.random((6, 3)) + 0.1)
    B = B / B.sum(0)
    w = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    kw = {"stopThr": 1e-13, "numItermax": 10000}
    c, (ga, gB, gM) = _run(lambda a, B, M: sinkhorn2(a, B, M, 0.3, **kw) * w, a, B, M)
    assert c.shape == (3,)
    ref_a, ref_M = torch.zeros(5, dtype=F64), torch.zeros(5, 6, dtype=F64)
    for h in range(3):
        ch, (gah, gbh, gMh) = _run(lambda a, b, M: sinkhorn2(a, b, M, 0.3, **kw), a, B[:, h].contiguous(), M)
        np.testing.assert_allclose(float(c[h]), float(ch) * float(w[h]), rtol=1e-12)
        np.testing.assert_allclose(gB[:, h].numpy(), (gbh * w[h]).numpy(), atol=1e-12)
        ref_a += gah * w[h]
        ref_M += gMh * w[h]
    np.testing.assert_allclose(ga.numpy(), ref_a.numpy(), atol=1e-12)
    np.testing.assert_allclose(gM.numpy(), ref_M.numpy(), atol=1e-12)
    c32, (ga32, gb32, gM32) = _run(lambda a, b, M: sinkhorn2(a, b, M, 0.3), a.float(), B[:, 0].float().contiguous(),
                                   M.float())
    assert c32.dtype == ga32.dtype == gb32.dtype == gM32.dtype == torch.float32
    _, (_, _, gM64) = _run(lambda a, b, M: sinkhorn2(a, b, M, 0.3), a, B[:, 0].contiguous(), M)
    np.testing.assert_allclose(gM32.numpy(), gM64.numpy(), atol=1e-6)


def test_sinkhorn2_zero_weight_one_sided(rng):
    # a zero weight: the gradient is the derivative as that weight becomes positive
    a, b, M = _problem(rng, 5, 6)
    a = a.clone()
    a[4] += a[2]
    a[2] = 0.0
    b = b.clone()
    b[0] += b[3]
    b[3] = 0.0
    kw = {"stopThr": 1e-14, "numItermax": 20000, "warn": False}
    _, (ga, gb, _) = _run(lambda a, b, M: sinkhorn2(a, b, M, 0.2, **kw), a, b, M)
    da, db = torch.zeros(5, dtype=F64), torch.zeros(6, dtype=F64)
    da[2], da[4] = 1.0, -1.0
    db[3], db[0] = 1.0, -1.0
    t = 1e-7
    base = sinkhorn2(a, b, M, 0.2, **kw)
    fd_a = (sinkhorn2(a + t * da, b, M, 0.2, **kw) - base) / t
    fd_b = (sinkhorn2(a, b + t * db, M, 0.2, **kw) - base) / t
    np.testing.assert_allclose(float(fd_a), float(ga @ da), rtol=1e-4)
    np.testing.assert_allclose(float(fd_b), float(gb @ db), rtol=1e-4)


# ---------------------------------------------------------------- wmd / wrd
def _fd_grad(f, X, eps=1e-6):
    g = torch.zeros_like(X)
    for idx in np.ndindex(*X.shape):
        e = torch.zeros_like(X)
        e[idx] = eps
        g[idx] = (f(X + e) - f(X - e)) / (2 * eps)
    return g


def test_wmd_gradients_finite_differences(rng):
    X, Y = torch.tensor(rng.standard_normal((4, 3))), torch.tensor(rng.standard_normal((5, 3)))
    a = torch.tensor(rng.random(4) + 0.5)
    d, (gX, gY, ga) = _run(lambda X, Y, a: wmd(X, Y, a), X, Y, a)
    np.testing.assert_allclose(float(d), fot.wmd(X.numpy(), Y.numpy(), a.numpy()), rtol=1e-12)
    np.testing.assert_allclose(gX.numpy(), _fd_grad(lambda Z: wmd(Z, Y, a), X).numpy(), atol=1e-7)
    np.testing.assert_allclose(gY.numpy(), _fd_grad(lambda Z: wmd(X, Z, a), Y).numpy(), atol=1e-7)
    np.testing.assert_allclose(ga.numpy(), _fd_grad(lambda w: wmd(X, Y, w), a).numpy(), atol=1e-7)
    # a shared point: that term's subgradient is 0, the value still right
    Y2 = Y.clone()
    Y2[0] = X[0]
    d, (gX, _) = _run(wmd, X, Y2)
    assert torch.isfinite(gX).all()
    np.testing.assert_allclose(float(d), fot.wmd(X.numpy(), Y2.numpy()), rtol=1e-12)


def test_wrd_gradients_finite_differences(rng):
    X, Y = torch.tensor(rng.standard_normal((4, 3))), torch.tensor(rng.standard_normal((3, 3)))
    d, (gX, gY) = _run(wrd, X, Y)
    np.testing.assert_allclose(float(d), fot.wrd(X.numpy(), Y.numpy()), rtol=1e-12)
    np.testing.assert_allclose(gX.numpy(), _fd_grad(lambda Z: wrd(Z, Y), X).numpy(), atol=1e-7)
    np.testing.assert_allclose(gY.numpy(), _fd_grad(lambda Z: wrd(X, Z), Y).numpy(), atol=1e-7)
    # scale invariance: the gradient is orthogonal to each document's own scaling direction
    assert abs(float((gX * X).sum())) < 1e-10
    X0 = X.clone()
    X0[1] = 0.0  # a zero vector carries no mass: zero gradient, the value of fastcore.ot.wrd
    d, (gX, _) = _run(wrd, X0, Y)
    np.testing.assert_allclose(float(d), fot.wrd(X0.numpy(), Y.numpy()), rtol=1e-12)
    assert (gX[1] == 0).all()


# ---------------------------------------------------------------- emd2_batch
def test_emd2_batch_matches_single_solves(rng):
    probs = [_problem(rng, n, m) for n, m in [(4, 5), (6, 3), (5, 5)]]
    probs[2] = (None, torch.zeros(0, dtype=F64), probs[2][2])  # uniform weights
    w = torch.tensor([1.0, -0.5, 2.0], dtype=F64)
    for n_threads in (1, 2):
        flat = [t for p in probs for t in p if t is not None and t.numel()]
        xs = [t.clone().requires_grad_(True) for t in flat]
        it = iter(xs)
        batch = [tuple(next(it) if (t is not None and t.numel()) else t for t in p) for p in probs]
        costs = emd2_batch(batch, n_threads=n_threads)
        (costs * w).sum().backward()
        assert costs.shape == (3,) and costs.dtype == F64
        it = iter(xs)
        for k, p in enumerate(probs):
            c, grads = _run(lambda *t: emd2(*(t if len(t) == 3 else (None, None, t[0]))),
                            *[t for t in p if t is not None and t.numel()])
            np.testing.assert_allclose(float(costs.detach()[k]), float(c), rtol=1e-14)
            for g in grads:
                np.testing.assert_allclose(next(it).grad.numpy(), (g * w[k]).numpy(), atol=1e-14)
    with torch.no_grad():  # the one-call C path
        plain = emd2_batch(probs)
    np.testing.assert_allclose(plain.numpy(), fot.emd2_batch([tuple(None if t is None else t.numpy() for t in p)
                                                              for p in probs]), rtol=1e-14)
    np.testing.assert_allclose(plain.numpy(), costs.detach().numpy(), rtol=1e-14)
    assert emd2_batch([]).shape == (0,)


# ---------------------------------------------------------------- training
def test_training_loop_reduces_emd_loss():
    g = torch.Generator().manual_seed(0)
    Y = torch.randn(30, 2, generator=g, dtype=F64) + 3.0
    X = torch.randn(30, 2, generator=g, dtype=F64).requires_grad_(True)
    opt = torch.optim.SGD([X], lr=10.0)  # d loss / d x_i = 2 (x_i - y_sigma(i)) / n
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = emd2(None, None, torch.cdist(X, Y) ** 2)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 1e-3 * losses[0]
    assert all(b <= a + 1e-12 for a, b in zip(losses, losses[1:]))


# ---------------------------------------------------------------- errors
def test_errors(rng):
    a, b, M = _problem(rng, 3, 4)
    with pytest.raises(ValueError, match="M is on meta"):
        emd2(a, b, M.to("meta"))
    with pytest.raises(ValueError, match="X is on meta"):
        wmd(torch.zeros(2, 3, device="meta"), torch.zeros(2, 3))
    with pytest.raises(TypeError, match="a must be float32 or float64, got torch.int64"):
        emd2(torch.ones(3, dtype=torch.int64), b, M)
    with pytest.raises(TypeError, match="b must have dtype torch.float64"):
        sinkhorn2(a, b.float(), M, 0.1)
    with pytest.raises(TypeError, match="Y must have dtype torch.float64"):
        wrd(M, M.float())
    with pytest.raises(TypeError, match="M must be a torch.Tensor"):
        emd2(a, b, M.numpy())
    with pytest.raises(ValueError, match="emd: b must have length 4 to match M, got 3"):
        emd2(a, b[:3], M.requires_grad_(True))
    with pytest.raises(ValueError, match="emd2: b must be 1-d"):
        emd2(a, torch.ones(4, 2, dtype=F64), M)
    with pytest.raises(ValueError, match="M must be 2-d"):
        sinkhorn2(a, b, M[0], 0.1)
    with pytest.raises(ValueError, match="same total mass"):
        emd2(a, 2 * b, M)
    with pytest.raises(ValueError, match="wmd: Y must have shape"):
        wmd(torch.zeros(2, 3, dtype=F64), torch.zeros(2, 4, dtype=F64))
    with pytest.raises(ValueError, match="wrd: every vector of X is zero"):
        wrd(torch.zeros(2, 3, dtype=F64), torch.ones(2, 3, dtype=F64))
    with pytest.raises(ValueError, match=r"emd2_batch: problems\[1\] must be a tuple"):
        emd2_batch([(a, b, M), (a, b)])
    with pytest.raises(TypeError, match=r"problems\[1\] M must have dtype torch.float64"):
        emd2_batch([(a, b, M), (None, None, M.float())])
    with pytest.raises(ValueError, match=r"emd2_batch: problems\[0\]"):
        emd2_batch([(a, 2 * b, M.detach().requires_grad_(True))])
    with pytest.raises(ValueError, match="reg is not differentiable"):
        sinkhorn2(a, b, M, torch.tensor(0.1, requires_grad=True))
    with pytest.raises(ValueError, match="objective"):
        sinkhorn2(a, b, M, 0.1, objective="sharp")


@pytest.mark.parametrize("fn", ["emd2", "sinkhorn2", "wmd", "wrd", "emd2_batch"])
def test_double_backward_is_an_error(rng, fn):
    a, b, M = _problem(rng, 3, 4)
    M = M.clone().requires_grad_(True)
    out = {"emd2": lambda: emd2(a, b, M), "sinkhorn2": lambda: sinkhorn2(a, b, M, 0.5),
           "wmd": lambda: wmd(M, M[:2]), "wrd": lambda: wrd(M, M[:2] + 1),
           "emd2_batch": lambda: emd2_batch([(a, b, M)]).sum()}[fn]()
    # a gradient penalty: the incoming gradient is a constant, which torch's own
    # once_differentiable lets through as a silent zero second-order term
    (g,) = torch.autograd.grad(out, M, create_graph=True)
    with pytest.raises(RuntimeError, match=f"{fn}: double backward is not supported"):
        (g.sum() + M.sum()).backward()
    (g,) = torch.autograd.grad(out * M.sum(), M, create_graph=True)  # an incoming gradient with a graph
    with pytest.raises(RuntimeError, match="double backward is not supported|once_differentiable"):
        g.sum().backward()
    (g,) = torch.autograd.grad(out, M)  # first derivatives alone are unaffected
    assert not g.requires_grad


def test_inputs_not_modified(rng):
    a, b, M = _problem(rng, 4, 5)
    copies = [t.clone() for t in (a, b, M)]
    _run(emd2, a, b, M)
    _run(lambda a, b, M: sinkhorn2(a, b, M, 0.2), a, b, M)
    _run(wmd, M, M[:2].contiguous())
    for t, c in zip((a, b, M), copies):
        assert torch.equal(t, c)
