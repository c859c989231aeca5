"""Our own fuzz suite (issue 28): every public function, a small valid call, and bad or unusual
inputs derived from it one argument at a time.

For each function the table ``SPECS`` gives a factory (seeded ``rng``, dtype -> keyword
arguments of a valid call) and the role of each argument.  From the roles the cases are
derived: NaN / +inf / -inf in a float array, a wrong number of dimensions, a wrong trailing
size, an empty first axis, other dtypes (float16, float32/64, big-endian, integers, complex,
object), lists instead of arrays, out-of-range labels, negative weights, bad masks and
``n_threads`` edge values.  What each case must do comes from the docstrings:

- ``ok``: the call succeeds;
- ``ref``: the call behaves exactly like a reference call (the same argument converted as the
  documented dtype policy says, e.g. float16 -> float32, '>f4' -> float32, ints -> float64):
  bit-identical results of the same dtypes, or the same exception;
- ``error``: a ``ValueError`` / ``TypeError`` (``TypeError`` for wrong dtypes) whose message
  names the argument;
- ``either``: success, or such an error (undocumented corners).

Every call, good or bad, must leave its array arguments untouched (bytes, shape, strides,
dtype), except the ones a function exists to update (parameters of an optimiser step,
BatchNorm running statistics, ``clip_grad_norm``'s gradients).  The valid call is repeated with
every array argument in Fortran order, strided, with negative strides and read-only: the
results must be bit-identical.

The default run is small (a few seconds).  ``FASTCORE_FUZZ=1`` (100 random shapes and seeds per
function) or ``FASTCORE_FUZZ=<count>`` adds a longer random run.
"""
import hashlib
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

import fastcore
from fastcore import attention as fa
from fastcore import crf, init, norm, optim, ot

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


def _fuzz_count():
    v = os.environ.get("FASTCORE_FUZZ", "").strip()
    if not v or v == "0":
        return 0
    n = int(v)
    return 100 if n == 1 else n


N_RANDOM = _fuzz_count()

try:
    import dask  # noqa: F401
    import dask.array as da

    import fastcore.dask as fdask
except Exception:  # pragma: no cover - dask is an optional extra
    fdask = None


# ================================================================ specs
@dataclass
class Spec:
    name: str
    fn: Callable  # fn(**kwargs)
    make: Callable  # make(rng, dtype) -> dict of keyword arguments of a valid call
    roles: dict = field(default_factory=dict)  # arg -> "float" | "weights" | "int" | "mask" | "floats" | "n_threads"
    nonfinite: dict = field(default_factory=dict)  # arg -> {"nan"|"+inf"|"-inf": expectation}
    expect: dict = field(default_factory=dict)  # (arg, case) -> expectation, overriding the defaults
    extra: list = field(default_factory=list)  # (case, mutate(kw, rng) -> kw, expectation)
    bad_ints: Callable = None  # (kw, arg) -> (too_low, too_high) for "int" arguments, None: no range
    mutable: Callable = None  # (kw, result) -> names of the arguments the call may modify
    names: dict = field(default_factory=dict)  # arg -> substrings the error message must all contain
    dtypes: tuple = (F32, F64)
    strict_layout: frozenset = frozenset()  # args that must be C-contiguous (layout variants are errors)
    writable: frozenset = frozenset()  # args that must be writable (a read-only variant is an error)
    layout: bool = True
    light: bool = False  # only the valid call, non-finite values and layouts (slow functions)


SPECS = {}


def spec(**kw):
    s = Spec(**kw)
    assert s.name not in SPECS
    SPECS[s.name] = s
    return s


def OK():
    return ("ok",)


def ERR(*names, types=(ValueError, TypeError)):
    return ("error", names, types)


def EITHER(*names):
    return ("either", names)


def REF(conv):
    return ("ref", conv)


SAME = REF(lambda kw: kw)  # the result equals the valid call's
CLOSE = ("close", lambda kw: kw)  # ... to rounding (1e-12 relative)


# The long random run (FASTCORE_FUZZ) draws sizes and the positions of inserted values from this rng;
# the default run uses the fixed sizes and position 0.
_RANDOM = {"rng": None}


def _sz(n):
    """Size n, or in the random run a random size in [1, 2n]."""
    r = _RANDOM["rng"]
    return n if r is None else int(r.integers(1, 2 * n + 1))


def _randn(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _simplex(rng, n):
    w = rng.random(n) + 0.1
    return w / w.sum()


# ---------------------------------------------------------------- softmax
def _sm_make(rng, dt, extra):
    B, H, S = _sz(2), _sz(3), _sz(5)
    return dict(x=_randn(rng, (B, H, S), dt, 3), mask=rng.random((B, 1, S)) < 0.7, axis=-1, n_threads=1, **extra)


_SM_EXPECT = {
    ("x", "ndim+"): OK(), ("x", "ndim-"): ERR("mask"), ("x", "trailing+"): ERR("mask"),
    ("x", "empty0"): ERR("mask"), ("mask", "ndim-"): OK(),
}
for _name, _fn, _extra in (("masked_softmax", fastcore.masked_softmax, {}),
                           ("logsumexp", fastcore.logsumexp, {"keepdims": True})):
    spec(name=_name, fn=_fn,
         make=lambda rng, dt, _extra=_extra: _sm_make(rng, dt, _extra), 
         roles={"x": "float", "mask": "mask", "n_threads": "n_threads"},
         nonfinite={"x": dict.fromkeys(("nan", "+inf", "-inf"), OK())},  # documented results, no error
         expect=dict(_SM_EXPECT),
         extra=[("axis=3", lambda kw, rng: {**kw, "axis": 3}, ERR("axis")),
                ("axis=1.0", lambda kw, rng: {**kw, "axis": 1.0}, ERR("axis")),
                ("x-0d", lambda kw, rng: {**kw, "x": np.float64(1.0), "mask": None}, ERR("x"))])

spec(name="masked_softmax-out", fn=lambda out_copy=False, **kw: fastcore.masked_softmax(**kw),
     make=lambda rng, dt: dict(x=_randn(rng, (3, 6), dt), mask=None, axis=0, n_threads=1,
                               out=np.zeros((3, 6), dt)),
     roles={"x": "float", "n_threads": "n_threads"},
     nonfinite={"x": dict.fromkeys(("nan", "+inf", "-inf"), OK())},
     # the result's shape/dtype follow x; out must match them exactly
     expect={("x", "ndim+"): ERR("out"), ("x", "ndim-"): ERR("out"), ("x", "trailing+"): ERR("out"),
             ("x", "empty0"): ERR("out"), ("x", "list"): EITHER("out"), ("x", "int"): EITHER("out"),
             ("x", "f16"): EITHER("out"), ("x", "f32"): EITHER("out"), ("x", "f64"): EITHER("out"),
             ("x", ">f4"): EITHER("out"), ("x", ">f8"): EITHER("out")},
     extra=[("out-fortran", lambda kw, rng: {**kw, "out": np.asfortranarray(kw["out"])}, ERR("out")),
            ("out-readonly", lambda kw, rng: {**kw, "out": _readonly(kw["out"])}, ERR("out")),
            ("out-dtype", lambda kw, rng: {**kw, "out": kw["out"].astype(np.float16)}, ERR("out")),
            ("out-overlaps-x", lambda kw, rng: _softmax_overlap(kw), ERR("out"))],
     mutable=lambda kw, res: {"out"}, strict_layout=frozenset({"out"}), writable=frozenset({"out"}))


def _readonly(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


def _softmax_overlap(kw):
    big = np.zeros(kw["x"].size + 1, kw["x"].dtype)
    x = big[:-1].reshape(kw["x"].shape)
    x[...] = kw["x"]
    return {**kw, "x": x, "out": big[1:].reshape(kw["x"].shape)}


# ---------------------------------------------------------------- attention
B_, H_, T_, S_, DK, DV = 2, 2, 5, 7, 4, 3


def _att_plain(rng, dt):
    return dict(q=_randn(rng, (B_, H_, T_, DK), dt), k=_randn(rng, (B_, H_, S_, DK), dt),
                v=_randn(rng, (B_, H_, S_, DV), dt), lengths=np.array([S_, 4]), causal=True,
                mask=rng.random((B_, 1, T_, S_)) < 0.8, bias=_randn(rng, (1, H_, T_, S_), dt), n_threads=1)


def _att_mix(rng, dt):
    T = 6
    return dict(q=_randn(rng, (B_, H_, T, DK), dt), k=_randn(rng, (B_, H_, T, DK), dt),
                v=_randn(rng, (B_, H_, T, DV), dt), lengths=np.array([T, 5]),
                segment_ids=np.array([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 0]]),
                order=np.stack([rng.permutation(T) for _ in range(B_)]), order_inclusive=True,
                pre_mix=np.eye(H_, dtype=dt) + _randn(rng, (H_, H_), dt, 0.1),
                post_mix=np.eye(H_, dtype=dt) + _randn(rng, (H_, H_), dt, 0.1), scale=0.3, n_threads=1)


def _att_bad_ints(kw, arg):
    if arg == "lengths":
        return -1, kw["k"].shape[2] + 1
    if arg == "order":
        return -1, kw["q"].shape[2]
    return None  # segment_ids: any integers are meaningful (cumsum rule)


_ATT_ROLES = {"q": "float", "k": "float", "v": "float", "lengths": "int", "mask": "mask", "bias": "float",
              "segment_ids": "int", "order": "int", "pre_mix": "float", "post_mix": "float",
              "n_threads": "n_threads"}
_ATT_NONFINITE = {"bias": {"nan": ERR("bias"), "+inf": ERR("bias"), "-inf": OK()},  # -inf hides
                  "lse": {"nan": ERR("lse"), "+inf": ERR("lse"), "-inf": OK()}}
_ATT_EXPECT = {
    ("q", "trailing+"): ERR("k"),  # dk of q and k differ: k is named (with q's shape)
    ("v", "trailing+"): OK(),  # dv != dk is fine
    ("q", "empty0"): ERR("k"), ("k", "empty0"): ERR("k"), ("v", "empty0"): ERR("v"),
    ("mask", "ndim-"): OK(), ("bias", "ndim-"): OK(),  # still broadcastable
    ("pre_mix", "empty0"): ERR("pre_mix"), ("post_mix", "empty0"): ERR("post_mix"),
}


def _roles(names, table):
    return {n: table[n] for n in names}


def _att_spec(name, make, extra=()):
    keys = make(np.random.default_rng(0), F64).keys()
    spec(name=name, fn=fa.attention, make=make, roles=_roles([k for k in keys if k in _ATT_ROLES], _ATT_ROLES),
         nonfinite=_ATT_NONFINITE, expect=dict(_ATT_EXPECT), bad_ints=_att_bad_ints,
         extra=[("scale=nan", lambda kw, rng: {**kw, "scale": float("nan")}, ERR("scale")),
                ("scale=str", lambda kw, rng: {**kw, "scale": "x"}, ERR("scale")),
                ("causal=1", lambda kw, rng: {**kw, "causal": 1}, ERR("causal")),
                *extra])


_att_spec("attention", _att_plain,
          [("order+causal", lambda kw, rng: {**kw, "k": kw["k"][:, :, :T_], "v": kw["v"][:, :, :T_],
                                             "lengths": None,
                                             "order": np.tile(np.arange(T_), (B_, 1))}, ERR("order", "causal")),
           ("segment_ids-T!=S", lambda kw, rng: {**kw, "segment_ids": np.zeros((B_, S_), int)}, ERR("segment_ids"))])
_att_spec("attention-order-mix", _att_mix,
          [("order-duplicate", lambda kw, rng: {**kw, "order": np.zeros_like(kw["order"])}, ERR("order")),
           ("segment_ids-bool", lambda kw, rng: {**kw, "segment_ids": kw["segment_ids"].astype(bool)}, SAME)])


def _att_bwd(make, dbias=False):
    def mk(rng, dt):
        kw = make(rng, dt)
        out, lse = fa.attention(**kw, return_lse=True)
        extra = {"return_dbias": True} if dbias else {}
        return dict(dout=_randn(rng, out.shape, dt), out=out, lse=lse, **kw, **extra)
    return mk


for _name, _mk, _dbias in (("attention_backward", _att_plain, True), ("attention_backward-order-mix", _att_mix, False)):
    _keys = _att_bwd(_mk, _dbias)(np.random.default_rng(0), F64).keys()
    _roles_b = {**_ATT_ROLES, "dout": "float", "out": "float", "lse": "float"}
    spec(name=_name, fn=fa.attention_backward, make=_att_bwd(_mk, _dbias),
         roles=_roles([k for k in _keys if k in _roles_b], _roles_b),
         nonfinite=_ATT_NONFINITE, bad_ints=_att_bad_ints,
         expect={**_ATT_EXPECT,
                 # dv follows v: dout and out no longer match, they are named
                 ("v", "trailing+"): ERR("dout"),
                 ("dout", "empty0"): ERR("dout"), ("out", "empty0"): ERR("out"), ("lse", "empty0"): ERR("lse")},
         extra=[("return_dbias-without-bias", lambda kw, rng: {**kw, "bias": None, "return_dbias": True},
                 ERR("bias")),
                ("return_dbias=1", lambda kw, rng: {**kw, "return_dbias": 1}, ERR("return_dbias"))])

spec(name="padding_mask", fn=fa.padding_mask, make=lambda rng, dt: dict(lengths=np.array([3, 0, 5]), T=4, S=5),
     roles={"lengths": "int"}, dtypes=(F64,),
     expect={("lengths", "empty0"): OK(), ("lengths", "ndim+"): ERR("lengths"), ("lengths", "trailing+"): OK(),
             ("lengths", "ndim-"): ERR("lengths")},
     bad_ints=lambda kw, arg: None)
spec(name="unilm_mask", fn=fa.unilm_mask, make=lambda rng, dt: dict(segment_ids=np.array([[0, 0, 1, 1], [0, 1, 1, 0]])),
     roles={"segment_ids": "int"}, dtypes=(F64,),
     expect={("segment_ids", "empty0"): OK(), ("segment_ids", "trailing+"): OK()}, bad_ints=lambda kw, arg: None)
spec(name="permutation_mask", fn=fa.permutation_mask,
     make=lambda rng, dt: dict(order=np.stack([rng.permutation(5) for _ in range(2)]), inclusive=False),
     roles={"order": "int"}, dtypes=(F64,), bad_ints=lambda kw, arg: (-1, 5),
     expect={("order", "empty0"): OK(), ("order", "trailing+"): ERR("order")})
spec(name="causal_mask", fn=fa.causal_mask, make=lambda rng, dt: dict(T=3, S=5, batch=2), dtypes=(F64,),
     layout=False)


# ---------------------------------------------------------------- CRF / MEMM
CB, CT, CK = 3, 5, 4


def _crf_make(with_tags, use_mask, start_end=True, **fixed):
    def mk(rng, dt):
        kw = dict(emissions=_randn(rng, (CB, CT, CK), dt))
        if with_tags:
            kw["tags"] = rng.integers(0, CK, (CB, CT))
        kw["transitions"] = _randn(rng, (CK, CK), dt, 0.5)
        if start_end:
            kw["start"] = _randn(rng, CK, dt, 0.5)
            kw["end"] = _randn(rng, CK, dt, 0.5)
        if use_mask:
            m = rng.random((CB, CT)) < 0.7
            m[:, 0] = True  # position (b, 0) is kept: an out-of-range tag there must be refused
            m[1, 2] = False  # and (1, 2) is masked: anything may sit there
            kw["mask"] = m
        else:
            kw["lengths"] = np.array([CT, 2, 3])  # (1, 2) is padding
        kw.update(n_threads=1, **fixed)
        return kw
    return mk


def _crf_bad_ints(kw, arg):
    if arg == "tags":
        return -1, CK
    if arg == "lengths":
        return -1, CT + 1
    return None


def _masked_tag(kw, rng):
    """A label outside [0, K) at a masked position: never read (documented), same result."""
    tags = kw["tags"].copy()
    tags[1, 2] = 99
    return {**kw, "tags": tags}


def _crf_spec(name, fn, with_tags, use_mask, start_end=True, **fixed):
    make = _crf_make(with_tags, use_mask, start_end, **fixed)
    keys = make(np.random.default_rng(0), F64).keys()
    table = {"emissions": "float", "tags": "int", "transitions": "float", "start": "float", "end": "float",
             "mask": "mask", "lengths": "int", "n_threads": "n_threads"}
    scores = {"nan": None, "+inf": None, "-inf": OK()}  # -inf = forbidden
    extra = [("mask+lengths", lambda kw, rng: {**kw, "mask": np.ones((CB, CT), bool),
                                               "lengths": np.full(CB, CT)}, ERR("mask", "lengths"))]
    if with_tags:
        extra += [("tag-out-of-range-at-masked-position", lambda kw, rng: _masked_tag(kw, rng), SAME),
                  ("tags=None", lambda kw, rng: {**kw, "tags": None}, ERR("tags"))]
    spec(name=name, fn=fn, make=make, roles=_roles([k for k in keys if k in table], table),
         nonfinite={a: {k: v for k, v in scores.items() if v is not None} for a in ("transitions", "start", "end")},
         bad_ints=_crf_bad_ints,
         expect={("emissions", "trailing+"): ERR("transitions"),  # K + 1 labels: the scores are named
                 ("emissions", "empty0"): ERR(("tags", "mask", "lengths")),
                 ("mask", "ndim-"): EITHER("mask"),  # (T,) broadcasts to (B, T)
                 ("mask", "empty0"): ERR("mask"), ("lengths", "empty0"): ERR("lengths"),
                 ("tags", "empty0"): ERR("tags")},
         extra=extra)


_crf_spec("crf_log_partition", crf.crf_log_partition, False, True)
_crf_spec("crf_log_partition-lengths-nostart", crf.crf_log_partition, False, False, start_end=False)
_crf_spec("crf_score", crf.crf_score, True, False)
_crf_spec("crf_log_likelihood", crf.crf_log_likelihood, True, True)
_crf_spec("crf_marginals", crf.crf_marginals, False, False, pairwise=True)
_crf_spec("crf_nll_grad", crf.crf_nll_grad, True, True, reduction="mean")
_crf_spec("crf_nll_grad-lengths", crf.crf_nll_grad, True, False, reduction="none")
_crf_spec("viterbi", crf.viterbi, False, True)
_crf_spec("viterbi-top3", crf.viterbi, False, False, top_k=3)
_crf_spec("memm_log_likelihood", crf.memm_log_likelihood, True, True, start_end=False, bidirectional=True)
_crf_spec("memm_nll_grad", crf.memm_nll_grad, True, False, start_end=False, reduction="token_mean")
_crf_spec("memm_nll_grad-bidir", crf.memm_nll_grad, True, True, start_end=False, bidirectional=True)
_crf_spec("memm_decode-exact", crf.memm_decode, False, True, start_end=False, bidirectional=True, mode="exact")
_crf_spec("memm_decode-raw", crf.memm_decode, False, False, start_end=False, mode="raw", top_k=2)
for _n in ("viterbi", "memm_decode-exact"):
    SPECS[_n].extra += [("top_k=0", lambda kw, rng: {**kw, "top_k": 0}, ERR("top_k")),
                        ("top_k=1.5", lambda kw, rng: {**kw, "top_k": 1.5}, ERR("top_k")),
                        ("top_k=True", lambda kw, rng: {**kw, "top_k": True}, ERR("top_k"))]
SPECS["crf_nll_grad"].extra.append(("reduction=bad", lambda kw, rng: {**kw, "reduction": "avg"}, ERR("reduction")))
SPECS["memm_decode-exact"].extra.append(("mode=bad", lambda kw, rng: {**kw, "mode": "map"}, ERR("mode")))

spec(name="allowed_transitions", fn=crf.allowed_transitions,
     make=lambda rng, dt: dict(scheme="BIOES", labels=["O", "B-PER", "I-PER", "E-PER", "S-PER", "U-LOC"]),
     dtypes=(F64,), layout=False,
     extra=[("scheme=bad", lambda kw, rng: {**kw, "scheme": "XYZ"}, ERR("scheme")),
            ("label=bad", lambda kw, rng: {**kw, "labels": ["O", "Q-PER"]}, ERR("label")),
            ("labels=[]", lambda kw, rng: {**kw, "labels": []}, ERR("labels"))])
spec(name="constraint_scores", fn=crf.constraint_scores,
     make=lambda rng, dt: dict(allowed=rng.random((4, 4)) < 0.6, start=rng.random(4) < 0.5, end=None, dtype=dt),
     roles={"allowed": "mask", "start": "mask"},
     expect={(a, c): EITHER(a) for a in ("allowed", "start") for c in ("ndim+", "ndim-", "trailing+", "empty0",
                                                                       "int2", "float")})
spec(name="CRF", fn=lambda **kw: vars(crf.CRF(**kw)), make=lambda rng, dt: dict(num_tags=4, dtype=dt, rng=3),
     layout=False,
     extra=[("num_tags=0", lambda kw, rng: {**kw, "num_tags": 0}, ERR("num_tags")),
            ("num_tags=True", lambda kw, rng: {**kw, "num_tags": True}, ERR("num_tags")),
            ("num_tags=2.5", lambda kw, rng: {**kw, "num_tags": 2.5}, ERR("num_tags")),
            ("dtype=f16", lambda kw, rng: {**kw, "dtype": np.float16}, ERR("dtype"))])
spec(name="MEMM", fn=lambda **kw: vars(crf.MEMM(**kw)), make=lambda rng, dt: dict(num_tags=3, dtype=dt, rng=5),
     layout=False,
     extra=[("num_tags=-1", lambda kw, rng: {**kw, "num_tags": -1}, ERR("num_tags")),
            ("dtype=int", lambda kw, rng: {**kw, "dtype": np.int64}, ERR("dtype"))])


# ---------------------------------------------------------------- exact OT
ON, OM = 4, 5


def _ot_make(**fixed):
    def mk(rng, dt):
        n, m = _sz(ON), _sz(OM)
        return dict(a=_simplex(rng, n), b=_simplex(rng, m), M=rng.random((n, m)).astype(dt) * 3, **fixed)
    return mk


def _mass_mismatch(kw, rng):
    return {**kw, "b": np.asarray(kw["b"]) * 1.01}


_OT_EXPECT = {("a", "empty0"): OK(), ("b", "empty0"): OK(),  # [] = uniform weights
              ("M", "empty0"): ERR("M"),
              ("M", "trailing+"): ERR("b"), ("a", "trailing+"): ERR("a"), ("b", "trailing+"): ERR("b"),
              ("b", "ndim+"): ERR("b")}
_OT_EXTRA = [("mass-mismatch", _mass_mismatch, ERR("a", "b")),
             ("zero-mass", lambda kw, rng: {**kw, "a": np.zeros(ON), "b": np.zeros(OM)}, ERR("a"))]
for _name, _fn, _fixed in (("emd", ot.emd, {}), ("emd-log", ot.emd, {"log": True}),
                           ("emd2", ot.emd2, {}), ("emd2-log-matrix", ot.emd2, {"log": True, "return_matrix": True})):
    spec(name=_name, fn=_fn, make=_ot_make(**_fixed), roles={"a": "weights", "b": "weights", "M": "float"},
         expect=dict(_OT_EXPECT), extra=list(_OT_EXTRA)
         + [("numItermax=0", lambda kw, rng: {**kw, "numItermax": 0}, ERR("numItermax")),
            ("numItermax=1.5", lambda kw, rng: {**kw, "numItermax": 1.5}, ERR("numItermax")),
            ("numItermax=True", lambda kw, rng: {**kw, "numItermax": True}, ERR("numItermax"))])
# b of shape (m, k): k problems
spec(name="emd2-columns", fn=ot.emd2,
     make=lambda rng, dt: dict(a=_simplex(rng, ON), b=np.stack([_simplex(rng, OM) for _ in range(3)], 1),
                               M=rng.random((ON, OM)).astype(dt), numThreads=2),
     roles={"a": "weights", "b": "weights", "M": "float", "numThreads": "n_threads"},
     expect={**_OT_EXPECT, ("b", "ndim+"): ERR("b"), ("b", "ndim-"): ERR("b"), ("b", "trailing+"): OK(),
             ("b", "empty0"): ERR("b"),
             # numThreads=-1 is not 'max' but follows n_threads' rule (default minus 0)
             },
     extra=[("mass-mismatch", lambda kw, rng: {**kw, "b": kw["b"] * np.array([1, 1.01, 1])}, ERR("b"))])


def _1d_make(fn_kind):
    def mk(rng, dt):
        if fn_kind == "w":
            return dict(u_values=_randn(rng, 6, dt), v_values=_randn(rng, 4, dt), u_weights=rng.random(6) + 0.1,
                        v_weights=rng.random(4) + 0.1, p=2)
        return dict(x_a=_randn(rng, 6, dt), x_b=_randn(rng, 4, dt), a=_simplex(rng, 6), b=_simplex(rng, 4),
                    **({"metric": "minkowski", "p": 1.5, "log": True} if fn_kind == "2" else {}))
    return mk


for _name, _fn, _kind in (("emd_1d", ot.emd_1d, "1"), ("emd2_1d", ot.emd2_1d, "2")):
    spec(name=_name, fn=_fn, make=_1d_make(_kind), roles={"x_a": "float", "x_b": "float", "a": "weights", "b": "weights"},
         expect={("x_a", "trailing+"): ERR("a"), ("x_b", "trailing+"): ERR("b"), ("a", "trailing+"): ERR("a"),
                 ("b", "trailing+"): ERR("b"), ("a", "empty0"): OK(), ("b", "empty0"): OK(),
                 ("x_a", "empty0"): ERR("x_a"), ("x_b", "empty0"): ERR("x_b"), ("x_a", "ndim-"): ERR("x_a")},
         extra=[("mass-mismatch", _mass_mismatch, ERR("a", "b")),
                ("x_a-column", lambda kw, rng: {**kw, "x_a": kw["x_a"][:, None]}, SAME),  # (n, 1) is accepted
                ("metric=bad", lambda kw, rng: {**kw, "metric": "cosine"}, ERR("metric")),
                ("p=0.5", lambda kw, rng: {**kw, "metric": "minkowski", "p": 0.5}, ERR("p"))])
spec(name="wasserstein_1d", fn=ot.wasserstein_1d, make=_1d_make("w"),
     roles={"u_values": "float", "v_values": "float", "u_weights": "weights", "v_weights": "weights"},
     expect={("u_values", "trailing+"): ERR("u_weights"), ("v_values", "trailing+"): ERR("v_weights"),
             ("u_weights", "empty0"): OK(), ("v_weights", "empty0"): OK(),
             ("u_values", "empty0"): ERR("u_values"), ("v_values", "empty0"): ERR("v_values")},
     extra=[("p=inf", lambda kw, rng: {**kw, "p": np.inf}, ERR("p")),
            ("unequal-totals", lambda kw, rng: {**kw, "u_weights": kw["u_weights"] * 3}, CLOSE)])  # normalised

spec(name="wasserstein_1d-2d", fn=ot.wasserstein_1d,  # (n, d) values: d problems (POT's batch)
     make=lambda rng, dt: dict(u_values=_randn(rng, (6, 3), dt), v_values=_randn(rng, (4, 3), dt),
                               u_weights=rng.random(6) + 0.1, v_weights=rng.random((4, 3)) + 0.1, p=1.5),
     roles={"u_values": "float", "v_values": "float", "u_weights": "weights", "v_weights": "weights"},
     expect={("u_values", "trailing+"): ERR("v_values"), ("v_values", "trailing+"): ERR("v_values"),
             ("u_values", "ndim-"): ERR("v_values"), ("v_values", "ndim-"): ERR("v_values"),
             ("u_weights", "ndim+"): ERR("u_weights"), ("v_weights", "ndim-"): ERR("v_weights"),
             ("u_weights", "empty0"): OK(), ("v_weights", "empty0"): ERR("v_weights"),
             ("u_values", "empty0"): ERR("u_values"), ("v_values", "empty0"): ERR("v_values")},
     extra=[("return_plans", lambda kw, rng: {**kw, "return_plans": "coo_tuple"}, OK()),
            ("return_plans=bad", lambda kw, rng: {**kw, "return_plans": "dense"}, ERR("return_plans"))])
spec(name="quantile_function", fn=ot.quantile_function,
     make=lambda rng, dt: dict(qs=np.sort(rng.random(5)).astype(dt), cws=np.cumsum(np.full(6, 1 / 6)).astype(dt),
                               xs=np.sort(_randn(rng, 6, dt)), return_index=True),
     roles={"qs": "float", "cws": "float", "xs": "float"},
     nonfinite={"qs": {"nan": ERR("qs"), "+inf": OK(), "-inf": OK()},
                "cws": {"nan": ERR("cws"), "+inf": OK(), "-inf": OK()},
                "xs": dict.fromkeys(("nan", "+inf", "-inf"), OK())},  # positions are only looked up
     expect={("qs", "trailing+"): OK(), ("qs", "empty0"): OK(), ("xs", "ndim+"): ERR("xs", "cws"),
             ("xs", "trailing+"): ERR("cws"), ("xs", "empty0"): ERR("xs")})


def _docs_make(weights):
    def mk(rng, dt):
        n, m, d = _sz(3), _sz(5), _sz(4)
        kw = dict(X=_randn(rng, (n, d), dt), Y=_randn(rng, (m, d), dt))
        if weights:
            kw.update(a=_simplex(rng, n), b=_simplex(rng, m))
        return kw
    return mk


for _name, _fn, _w in (("wmd", ot.wmd, True), ("wcd", ot.wcd, True), ("rwmd", ot.rwmd, True),
                       ("wrd", ot.wrd, False), ("wrd_similarity", ot.wrd_similarity, False),
                       ("wrd_lower_bound", ot.wrd_lower_bound, False)):
    _exp = {("X", "trailing+"): ERR("Y"), ("X", "empty0"): ERR("X"), ("Y", "empty0"): ERR("Y")}
    _extra = []
    if _w:
        _exp.update({("a", "empty0"): OK(), ("b", "empty0"): OK(), ("a", "trailing+"): ERR("a"),
                     ("b", "trailing+"): ERR("b")})
        _extra = [("unequal-totals", lambda kw, rng: {**kw, "a": kw["a"] * 2}, SAME)]  # normalised to 1
    else:
        _extra = [("all-zero-X", lambda kw, rng: {**kw, "X": np.zeros_like(kw["X"])}, ERR("X")),
                  ("a-zero-vector-is-dropped", lambda kw, rng: {**kw, "X": np.vstack([kw["X"], 0 * kw["X"][:1]])},
                   SAME)]
    spec(name=_name, fn=_fn, make=_docs_make(_w),
         roles={"X": "float", "Y": "float", **({"a": "weights", "b": "weights"} if _w else {})},
         expect=_exp, extra=_extra)


def _emd2_batch(a0, b0, M0, M1, **kw):
    return ot.emd2_batch([(a0, b0, M0), ([], None, M1)], **kw)


spec(name="emd2_batch", fn=_emd2_batch,
     make=lambda rng, dt: dict(a0=_simplex(rng, ON), b0=_simplex(rng, OM), M0=rng.random((ON, OM)).astype(dt),
                               M1=rng.random((3, 2)).astype(dt), n_threads=2),
     roles={"a0": "weights", "b0": "weights", "M0": "float", "M1": "float", "n_threads": "n_threads"},
     names={"a0": ("problems[0]", "a"), "b0": ("problems[0]", "b"), "M0": ("problems[0]", "M"),
            "M1": ("problems[1]", "M")},
     expect={("a0", "empty0"): OK(), ("b0", "empty0"): OK(), ("M0", "empty0"): ERR("problems[0]"),
             ("M1", "empty0"): ERR("problems[1]"), ("M0", "trailing+"): ERR("problems[0]"), ("M1", "trailing+"): OK(),
             ("a0", "trailing+"): ERR("problems[0]"), ("b0", "trailing+"): ERR("problems[0]")},
     extra=[("problem-not-a-triple", lambda kw, rng: {"_direct": lambda: ot.emd2_batch([(kw["a0"], kw["b0"])])},
             ERR("problems[0]"))])


def _pairwise(docs_a, docs_b, **kw):
    return ot.pairwise(docs_a, docs_b, **kw)


def _docs(rng, dt, n, d=3):
    return [_randn(rng, (int(rng.integers(1, 5)), d), dt) for _ in range(n)]


spec(name="pairwise", fn=_pairwise, make=lambda rng, dt: dict(docs_a=_docs(rng, dt, 2), docs_b=_docs(rng, dt, 3),
                                                             metric="wmd", n_threads=2),
     roles={"docs_a": "floats", "docs_b": "floats", "n_threads": "n_threads"},
     names={"docs_a": ("docs_a[0]",), "docs_b": ("docs_b[0]",)},
     expect={("docs_a", "trailing+"): ERR("docs_a[1]"), ("docs_b", "trailing+"): ERR("docs_b[0]")},
     extra=[("metric=bad", lambda kw, rng: {**kw, "metric": "l2"}, ERR("metric")),
            ("one-2d-array", lambda kw, rng: {**kw, "docs_a": kw["docs_a"][0]}, ERR("docs_a")),
            ("wrd-zero-doc", lambda kw, rng: {**kw, "metric": "wrd", "docs_b": [0 * kw["docs_b"][0]]},
             ERR("docs_b[0]"))])
spec(name="knn", fn=ot.knn, make=lambda rng, dt: dict(queries=_docs(rng, dt, 2), corpus=_docs(rng, dt, 4), k=2,
                                                     metric="wrd", n_threads=2),
     roles={"queries": "floats", "corpus": "floats", "n_threads": "n_threads"},
     names={"queries": ("queries[0]",), "corpus": ("corpus[0]",)},
     expect={("queries", "trailing+"): ERR("queries[0]"), ("corpus", "trailing+"): ERR("corpus[1]")},
     extra=[("k=0", lambda kw, rng: {**kw, "k": 0}, ERR("k")), ("k=5", lambda kw, rng: {**kw, "k": 5}, ERR("k")),
            ("k=1.0", lambda kw, rng: {**kw, "k": 1.0}, ERR("k")), ("k=True", lambda kw, rng: {**kw, "k": True}, ERR("k")),
            ("corpus=[]", lambda kw, rng: {**kw, "corpus": []}, ERR("corpus"))])


# ---------------------------------------------------------------- entropic OT
def _sk_make(method, multi=False, **fixed):
    def mk(rng, dt):
        n, m = _sz(ON), _sz(OM)
        b = np.stack([_simplex(rng, m) for _ in range(2)], 1) if multi else _simplex(rng, m)
        return dict(a=_simplex(rng, n), b=b, M=rng.random((n, m)).astype(dt), reg=0.5, method=method,
                    numItermax=2000, stopThr=1e-9, n_threads=1, **fixed)
    return mk


_SK_EXTRA = [("mass-mismatch", _mass_mismatch, ERR("a", "b")),
             ("reg=0", lambda kw, rng: {**kw, "reg": 0.0}, ERR("reg")),
             ("reg=-1", lambda kw, rng: {**kw, "reg": -1.0}, ERR("reg")),
             ("reg=nan", lambda kw, rng: {**kw, "reg": float("nan")}, ERR("reg")),
             ("reg=str", lambda kw, rng: {**kw, "reg": "0.5"}, ERR("reg")),
             ("numItermax=0", lambda kw, rng: {**kw, "numItermax": 0}, ERR("numItermax")),
             ("numItermax=1.5", lambda kw, rng: {**kw, "numItermax": 1.5}, ERR("numItermax")),
             ("stopThr=-1", lambda kw, rng: {**kw, "stopThr": -1.0}, ERR("stopThr")),
             ("method=bad", lambda kw, rng: {**kw, "method": "greenkhorn"}, ERR("method")),
             ("zero-mass", lambda kw, rng: {**kw, "a": np.zeros(ON)}, ERR("a"))]
_SK_EXPECT = {("a", "empty0"): OK(), ("b", "empty0"): OK(), ("M", "empty0"): ERR("M"),
              ("M", "trailing+"): ERR("b"), ("a", "trailing+"): ERR("a"), ("b", "trailing+"): ERR("b"),
              ("a", "ndim+"): ERR("a"), ("a", "ndim-"): ERR("a"), ("b", "ndim-"): ERR("b")}
for _name, _fn, _method, _multi, _fixed in (
        ("sinkhorn", fastcore.ot.sinkhorn, "sinkhorn_log", False, {"log": True}),
        ("sinkhorn-scaling", fastcore.ot.sinkhorn, "sinkhorn", False, {}),
        ("sinkhorn-eps", fastcore.ot.sinkhorn, "sinkhorn_epsilon_scaling", False, {}),
        ("sinkhorn-stabilized", fastcore.ot.sinkhorn, "sinkhorn_stabilized", False, {"log": True, "tau": 10.0}),
        ("sinkhorn2", fastcore.ot.sinkhorn2, "sinkhorn_log", False, {}),
        ("sinkhorn2-multi", fastcore.ot.sinkhorn2, "sinkhorn_log", True, {"log": True})):
    spec(name=_name, fn=_fn, make=_sk_make(_method, _multi, **_fixed),
         roles={"a": "weights", "b": "weights", "M": "float", "n_threads": "n_threads"},
         expect={**_SK_EXPECT, **({("b", "trailing+"): OK(), ("b", "ndim+"): ERR("b"),
                                   ("b", "empty0"): ERR("b")} if _multi else {})},
         extra=list(_SK_EXTRA))


def _sk_warm(rng, dt):
    kw = _sk_make("sinkhorn_log")(rng, dt)
    _, lg = fastcore.ot.sinkhorn(**{**kw, "numItermax": 3}, log=True, warn=False)
    return {**kw, "warmstart": (lg["log_u"], lg["log_v"])}


spec(name="sinkhorn-warmstart", fn=fastcore.ot.sinkhorn, make=_sk_warm,
     roles={"a": "weights", "b": "weights", "M": "float", "warmstart": "floats"},
     names={"warmstart": ("warmstart",)},
     nonfinite={"warmstart": {"nan": ERR("warmstart"), "+inf": ERR("warmstart"), "-inf": EITHER("warmstart")}},
     expect={**_SK_EXPECT, ("warmstart", "empty0"): ERR("warmstart"), ("warmstart", "list"): SAME,
             ("b", "ndim+"): ERR(("b", "warmstart"))},  # m = 1: b[None] is a valid (1, 1) b
     extra=[("warmstart-not-a-pair", lambda kw, rng: {**kw, "warmstart": kw["warmstart"][0]}, ERR("warmstart"))])


# ---------------------------------------------------------------- optim
def _grads(rng, dt):
    return [_randn(rng, (_sz(3), _sz(4)), dt), _randn(rng, _sz(5), dt), _randn(rng, (_sz(2), 1, _sz(3)), dt)]


_SHAPE_OK = {("grads", c): OK() for c in ("ndim+", "ndim-", "trailing+", "empty0")}
spec(name="global_norm", fn=optim.global_norm, make=lambda rng, dt: dict(grads=_grads(rng, dt), norm_type=2.0,
                                                                        n_threads=1),
     roles={"grads": "floats", "n_threads": "n_threads"},
     nonfinite={"grads": dict.fromkeys(("nan", "+inf", "-inf"), OK())},  # documented: NaN / inf norms
     expect={**_SHAPE_OK, ("grads", "mixed"): ERR("grads")},
     extra=[("norm_type=0", lambda kw, rng: {**kw, "norm_type": 0}, ERR("norm_type")),
            ("norm_type=inf", lambda kw, rng: {**kw, "norm_type": np.inf}, OK()),
            ("grads=[]", lambda kw, rng: {**kw, "grads": []}, OK()),
            ("grads=str", lambda kw, rng: {**kw, "grads": "abc"}, ERR("grads"))])


def _clip_mutable(kw, res):
    # a finite norm above max_norm is applied to the gradients in place; nothing else, ever
    return {"grads"} if np.isfinite(res) and res > kw.get("max_norm", 0) else set()


_INPLACE_DTYPES = {("grads", c): ERR("grads", types=(TypeError,)) for c in ("f16", "f32", "int", ">f4", ">f8", "list")}
spec(name="clip_grad_norm", fn=optim.clip_grad_norm,
     make=lambda rng, dt: dict(grads=_grads(rng, dt), max_norm=0.5, mode="soft", n_threads=1),
     roles={"grads": "floats", "n_threads": "n_threads"},
     nonfinite={"grads": dict.fromkeys(("nan", "+inf", "-inf"), OK())},  # the norm is returned, grads untouched
     expect={**_SHAPE_OK, **_INPLACE_DTYPES, ("grads", "mixed"): ERR("grads")},
     strict_layout=frozenset({"grads"}), writable=frozenset({"grads"}), mutable=_clip_mutable,
     extra=[("max_norm=0", lambda kw, rng: {**kw, "max_norm": 0}, ERR("max_norm")),
            ("max_norm=nan", lambda kw, rng: {**kw, "max_norm": float("nan")}, ERR("max_norm")),
            ("mode=bad", lambda kw, rng: {**kw, "mode": "medium"}, ERR("mode")),
            ("nan+error_if_nonfinite", lambda kw, rng: {**kw, "error_if_nonfinite": True,
                                                        "grads": [np.full(3, np.nan, kw["grads"][0].dtype)]},
             ERR("grads"))])
spec(name="weissi", fn=optim.weissi, make=lambda rng, dt: dict(weights=_grads(rng, dt), lam1=0.1, lam2=0.01,
                                                              n_threads=1),
     roles={"weights": "floats", "n_threads": "n_threads"},
     names={"weights": ("weights[0]",)},
     expect={**{("weights", c): OK() for c in ("ndim+", "ndim-", "trailing+")},
             ("weights", "empty0"): ERR("weights[0]"), ("weights", "mixed"): ERR("weights")},
     extra=[("lam1=-1", lambda kw, rng: {**kw, "lam1": -1.0}, ERR("lam1")),
            ("lam2=inf", lambda kw, rng: {**kw, "lam2": np.inf}, ERR("lam2")),
            ("zero-weight", lambda kw, rng: {**kw, "weights": [np.zeros(3)]}, ERR("weights[0]"))])
spec(name="clip_scale", fn=optim.clip_scale, make=lambda rng, dt: dict(norm=3.0, max_norm=1.0, mode="hard"),
     dtypes=(F64,), layout=False,
     extra=[("norm=nan", lambda kw, rng: {**kw, "norm": float("nan")}, ERR("norm")),
            ("norm=-1", lambda kw, rng: {**kw, "norm": -1.0}, ERR("norm")),
            ("max_norm=-1", lambda kw, rng: {**kw, "max_norm": -1.0}, ERR("max_norm")),
            ("mode=bad", lambda kw, rng: {**kw, "mode": "x"}, ERR("mode"))])


def _opt_step(cls, params, grads, **hyper):
    """Two steps of ``cls(params, **hyper)``; returns the step results, the parameters and the state."""
    opt = cls(params, **hyper)
    res = [opt.step(grads), opt.step(grads)]
    return res, [p.copy() for p in params], opt.state_dict()["state"]


def _opt_make(rng, dt, hyper):
    params = _grads(rng, dt)
    return dict(params=params, grads=[_randn(rng, p.shape, dt) for p in params], n_threads=1, **hyper)


def _opt_mutable(kw, res):
    return set() if res[0][0].skipped else {"params"}


for _cls, _hyper in ((optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
                     (optim.Adam, dict(lr=0.01, amsgrad=True, clip=0.5)),
                     (optim.AdamW, dict(lr=0.01, clip=1.0, clip_mode="soft", regularizer="weissi",
                                        reg_lambdas=(0.01, 0.001)))):
    spec(name=_cls.__name__, fn=lambda _cls=_cls, **kw: _opt_step(_cls, **kw),
         make=lambda rng, dt, _hyper=_hyper: _opt_make(rng, dt, _hyper),
         roles={"params": "floats", "grads": "floats", "n_threads": "n_threads"},
         nonfinite={"grads": dict.fromkeys(("nan", "+inf", "-inf"), OK()),  # the step is skipped
                    "params": dict.fromkeys(("nan", "+inf", "-inf"), EITHER("params"))},
         names={"params": ("params",), "grads": ("grads",)},
         expect={**{("params", c): ERR("params", "grads") for c in ("ndim+", "ndim-", "trailing+", "empty0")},
                 **{("params", c): ERR("params", types=(TypeError,)) for c in ("f16", "f32", "int", ">f4", ">f8", "list")},
                 **{("grads", c): ERR("grads") for c in ("ndim+", "ndim-", "trailing+", "empty0")},
                 **_INPLACE_DTYPES,
                 ("params", "mixed"): ERR("params"), ("grads", "mixed"): ERR("grads"),
                 # the regulariser refuses non-finite parameters
                 **({("params", c): ERR("params") for c in ("nan", "+inf", "-inf")}
                    if "regularizer" in _hyper else {})},
         strict_layout=frozenset({"params", "grads"}), writable=frozenset({"params"}), mutable=_opt_mutable,
         extra=[("lr=-1", lambda kw, rng: {**kw, "lr": -1.0}, ERR("lr")),
                ("lr=nan", lambda kw, rng: {**kw, "lr": float("nan")}, ERR("lr")),
                ("grads-are-params", lambda kw, rng: {**kw, "grads": kw["params"]}, ERR("grads")),
                ("grads-too-few", lambda kw, rng: {**kw, "grads": kw["grads"][:2]}, ERR("grads")),
                ("params=[]", lambda kw, rng: {**kw, "params": [], "grads": []}, ERR("params")),
                ("params-overlap", lambda kw, rng: {**kw, "params": [kw["params"][0], kw["params"][0][1:]],
                                                    "grads": kw["grads"][:1] * 2}, ERR("params"))])


# ---------------------------------------------------------------- init
for _f in (init.xavier_uniform, init.xavier_normal, init.lecun_normal, init.he_normal, init.he_uniform,
           init.orthogonal):
    _mode = _f in (init.lecun_normal, init.he_normal, init.he_uniform)
    spec(name=_f.__name__, fn=lambda _f=_f, seed=0, **kw: _f(np.random.default_rng(seed), **kw),
         make=lambda rng, dt, _mode=_mode: dict(seed=1, shape=(4, 3, 2), dtype=dt,
                                                **({"mode": "fan_out"} if _mode else {"gain": 1.5})),
         layout=False,
         extra=[("rng=int", lambda kw, rng, _f=_f: {"_direct": lambda: _f(0, (3, 2))}, ERR("rng")),
                ("shape=(-1,2)", lambda kw, rng: {**kw, "shape": (-1, 2)}, ERR("shape")),
                ("shape=(3,)", lambda kw, rng: {**kw, "shape": (3,)}, ERR("shape")),
                ("shape=(2.5,2)", lambda kw, rng: {**kw, "shape": (2.5, 2)}, ERR("shape")),
                ("dtype=f16", lambda kw, rng: {**kw, "dtype": np.float16}, ERR("dtype")),
                *([("mode=bad", lambda kw, rng: {**kw, "mode": "fan_avg"}, ERR("mode")),
                   ("shape=(0,3)", lambda kw, rng: {**kw, "shape": (0, 3)}, ERR("fan_out"))] if _mode else
                  [("gain=0", lambda kw, rng: {**kw, "gain": 0.0}, ERR("gain")),
                   ("gain=nan", lambda kw, rng: {**kw, "gain": float("nan")}, ERR("gain"))])])
spec(name="compute_fans", fn=init.compute_fans, make=lambda rng, dt: dict(shape=(4, 3, 2, 2)), dtypes=(F64,),
     layout=False, extra=[("shape=(3,)", lambda kw, rng: {**kw, "shape": (3,)}, ERR("shape")),
                          ("shape=None", lambda kw, rng: {**kw, "shape": None}, ERR("shape"))])


# ---------------------------------------------------------------- norm
def _bn_make(training):
    def mk(rng, dt):
        C = _sz(3)
        return dict(x=_randn(rng, (_sz(4) + 1, C, _sz(2)), dt, 2) + 1, gamma=_randn(rng, C, dt), beta=_randn(rng, C, dt),
                    running_mean=_randn(rng, C, dt), running_var=rng.random(C).astype(dt) + 0.5,
                    training=training, momentum=0.2, eps=1e-3, n_threads=1)
    return mk


_RUNNING = ("running_mean", "running_var")
for _training in (True, False):
    spec(name=f"batch_norm_forward-{'train' if _training else 'eval'}", fn=norm.batch_norm_forward,
         make=_bn_make(_training),
         roles={"x": "float", "gamma": "float", "beta": "float", "running_mean": "float", "running_var": "float",
                "n_threads": "n_threads"},
         nonfinite={r: dict.fromkeys(("nan", "+inf", "-inf"), EITHER(r) if _training else ERR(r))
                    for r in _RUNNING},
         expect={("x", "ndim+"): ERR("gamma"), ("x", "ndim-"): ERR("gamma"), ("x", "trailing+"): OK(),
                 ("x", "empty0"): ERR("x") if _training else OK(),
                 # updated in place when training: x's dtype only; read (converted like gamma) otherwise
                 **({(r, c): ERR(r) for r in _RUNNING for c in ("f16", "int", ">f4", ">f8", "f32", "list")}
                    if _training else {}),
                 **{(r, c): ERR(r, types=(TypeError,)) for r in _RUNNING for c in ("complex", "object")}},
         # the running statistics are updated in place when training (so they must be C-contiguous and
         # writable); in inference they are only read, so any layout is accepted
         strict_layout=frozenset(_RUNNING if _training else ()), writable=frozenset(_RUNNING if _training else ()),
         mutable=(lambda kw, res: set(_RUNNING)) if _training else None,
         extra=[("momentum=2", lambda kw, rng: {**kw, "momentum": 2.0}, ERR("momentum")),
                ("eps=0", lambda kw, rng: {**kw, "eps": 0.0}, ERR("eps")),
                ("negative-running_var", lambda kw, rng: {**kw, "running_var": -kw["running_var"]},
                 ("ok",) if _training else ERR("running_var")),
                ("no-running-stats", lambda kw, rng: {**kw, "running_mean": None, "running_var": None},
                 ("ok",) if _training else ERR("running_mean"))]
         + ([("one-value-per-channel", lambda kw, rng: {**kw, "x": kw["x"][:1, :, :1]}, ERR("x"))]
            if _training else []))
# when training, f32 running stats with an f64 x (and vice versa) are refused, so their dtype cases are
# errors; the layout variants of the in-place statistics are errors too (strict_layout / writable)


def _bn_bwd_make(rng, dt):
    kw = _bn_make(True)(rng, dt)
    _, (mean, invstd) = norm.batch_norm_forward(**kw)
    return dict(dy=_randn(rng, kw["x"].shape, dt), x=kw["x"], gamma=kw["gamma"], saved_mean=mean,
                saved_invstd=invstd, training=True, n_threads=1)


spec(name="batch_norm_backward", fn=norm.batch_norm_backward, make=_bn_bwd_make,
     roles={"dy": "float", "x": "float", "gamma": "float", "saved_mean": "float", "saved_invstd": "float",
            "n_threads": "n_threads"},
     expect={("x", "ndim+"): ERR("dy"), ("x", "ndim-"): ERR("dy"), ("x", "trailing+"): ERR("dy"),
             ("x", "empty0"): ERR("dy"), ("dy", "empty0"): ERR("dy")},
     extra=[("saved_mean=None", lambda kw, rng: {**kw, "saved_mean": None}, ERR("saved_mean"))])


# ---------------------------------------------------------------- dask (optional, a few cheap calls)
if fdask is not None:
    def _dask_viterbi(emissions, transitions, **kw):
        paths, scores = fdask.viterbi(da.from_array(emissions, chunks=(2, -1, -1)), transitions, **kw)
        return dask.compute(paths, scores, scheduler="sync")

    def _dask_ll(emissions, tags, transitions, **kw):
        return fdask.crf_log_likelihood(da.from_array(emissions, chunks=(2, -1, -1)), tags, transitions,
                                        **kw).compute(scheduler="sync")

    def _dask_make(with_tags):
        def mk(rng, dt):
            kw = _crf_make(with_tags, False)(rng, dt)
            kw.pop("n_threads")
            return kw
        return mk

    for _name, _fn, _tags in (("dask.viterbi", _dask_viterbi, False), ("dask.crf_log_likelihood", _dask_ll, True)):
        spec(name=_name, fn=_fn, make=_dask_make(_tags), light=True,
             roles={"emissions": "float", "transitions": "float", "start": "float", "end": "float",
                    **({"tags": "int"} if _tags else {})},
             nonfinite={a: {"-inf": OK()} for a in ("transitions", "start", "end")})
    spec(name="dask.knn", fn=lambda **kw: fdask.knn(**kw),
         make=lambda rng, dt: dict(queries=_docs(rng, dt, 2), corpus=_docs(rng, dt, 5), k=3, metric="wmd",
                                   partition_size=2),
         roles={"queries": "floats", "corpus": "floats"}, light=True,
         names={"queries": ("queries[0]",), "corpus": ("corpus[0]",)})


# ================================================================ machinery
def _fingerprint(x):
    """bytes + shape + strides + dtype of every array reachable in x (lists, tuples, dicts)."""
    out = []

    def walk(o):
        if isinstance(o, np.ndarray):
            h = hashlib.sha1(o.tobytes() if o.dtype != object else repr(o.tolist()).encode()).hexdigest()
            out.append((h, o.shape, o.strides, o.dtype.str, o.flags.writeable))
        elif isinstance(o, (list, tuple)):
            for e in o:
                walk(e)
        elif isinstance(o, dict):
            for e in o.values():
                walk(e)
    walk(x)
    return out


def _leaves(res):
    """Every value of a result as a flat list of ndarrays (scalars become 0-d arrays)."""
    out = []

    def walk(o):
        if o is None or isinstance(o, str):
            out.append(np.array(repr(o)))
        elif isinstance(o, np.ndarray):
            out.append(o)
        elif isinstance(o, dict):
            for k in sorted(o, key=str):
                out.append(np.array(str(k)))
                walk(o[k])
        elif isinstance(o, (list, tuple)):
            out.append(np.array(f"<{type(o).__name__} {len(o)}>"))
            for e in o:
                walk(e)
        elif hasattr(o, "toarray"):  # scipy.sparse
            out.append(o.toarray())
        else:
            out.append(np.asarray(o))
    walk(res)
    return out


def assert_same_result(actual, expected, what):
    la, le = _leaves(actual), _leaves(expected)
    assert len(la) == len(le), f"{what}: results differ in structure"
    for i, (x, y) in enumerate(zip(la, le)):
        assert x.dtype == y.dtype, f"{what}: leaf {i} has dtype {x.dtype}, expected {y.dtype}"
        assert x.shape == y.shape, f"{what}: leaf {i} has shape {x.shape}, expected {y.shape}"
        eq = np.array_equal(x, y, equal_nan=x.dtype.kind in "fc")
        assert eq, f"{what}: leaf {i} differs (max |diff| {np.nanmax(np.abs(x.astype(float) - y.astype(float))) if x.dtype.kind in 'fiub' and x.size else '?'})"


def _call(s, kw):
    """Run the function: (result, None) or (None, exception)."""
    if "_direct" in kw:
        f, kw = kw["_direct"], {}
    else:
        f = s.fn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastcore.ConvergenceWarning)
        try:
            return f(**kw), None
        except (ValueError, TypeError) as exc:
            return None, exc


def _names_in(msg, names):
    """Every entry of ``names`` appears in ``msg`` as a word (a tuple entry: one of its names)."""
    for n in names:
        alternatives = n if isinstance(n, tuple) else (n,)
        if not any(re.search(r"(?<![A-Za-z0-9_])" + re.escape(a) + (r"(?![A-Za-z0-9_])" if a[-1].isalnum() else ""),
                             msg) for a in alternatives):
            return False
    return True


def _run(s, kw, exp, what, base=None):
    """One call with its expectation, the no-mutation check and, for "ref", the reference call."""
    before = _fingerprint(kw)
    res, exc = _call(s, kw)
    allowed = set()
    if exc is None and s.mutable is not None:
        allowed = s.mutable(kw, res)
    after = _fingerprint(kw)
    # which argument each fingerprint belongs to
    owners = []
    for k, v in kw.items():
        owners += [k] * len(_fingerprint(v))
    for o, b, a in zip(owners, before, after):
        assert o in allowed or a == b, f"{what}: the call modified argument {o!r}"
    kind = exp[0]
    if kind == "ok":
        assert exc is None, f"{what}: expected success, got {type(exc).__name__}: {exc}"
    elif kind == "error":
        names, types = exp[1], exp[2]
        assert exc is not None, f"{what}: expected {'/'.join(t.__name__ for t in types)} naming {names}, got success"
        assert isinstance(exc, types), f"{what}: expected {types}, got {type(exc).__name__}: {exc}"
        assert _names_in(str(exc), names), f"{what}: the message does not name {names}: {exc}"
    elif kind == "either":
        if exc is not None:
            assert _names_in(str(exc), exp[1]), f"{what}: the message does not name {exp[1]}: {exc}"
    elif kind == "close":
        assert exc is None, f"{what}: expected success, got {type(exc).__name__}: {exc}"
        expected = s.fn(**exp[1](base()))
        for x, y in zip(_leaves(res), _leaves(expected)):
            assert x.dtype == y.dtype and x.shape == y.shape, what
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=0, err_msg=what)
    elif kind == "ref":
        ref_kw = exp[1](base())
        rres, rexc = _call(s, ref_kw)
        if rexc is not None:
            assert exc is not None, f"{what}: succeeded where the reference call raised {rexc!r}"
            assert type(exc) is type(rexc), f"{what}: {exc!r} where the reference call raised {rexc!r}"
        else:
            assert exc is None, f"{what}: raised {type(exc).__name__}: {exc}; the reference call succeeded"
            assert_same_result(res, rres, what)
    return res, exc


# ---------------------------------------------------------------- deriving the cases
def _insert(x, value, idx=None):
    x = np.array(x)
    if idx is None:
        idx = 0 if _RANDOM["rng"] is None else int(_RANDOM["rng"].integers(max(x.size, 1)))
    flat = x.reshape(-1)
    flat[idx % flat.size] = value
    return flat.reshape(x.shape)


def _trailing(x):
    return np.concatenate([x, x[..., -1:]], axis=-1)


def _at(kw, arg, fn):
    """kw with argument ``arg`` replaced by fn(arg) (for a list of arrays, its element 0)."""
    v = kw[arg]
    if isinstance(v, (list, tuple)):
        v = type(v)([fn(v[0])] + list(v[1:]))
    else:
        v = fn(v)
    return {**kw, arg: v}


def _to_f(dt):
    return lambda x: np.asarray(x).astype(dt)


def _cases(s):
    """[(case id, mutate(kw, rng) -> kw, expectation)] for a spec."""
    out = [("valid", lambda kw, rng: kw, SAME)]  # deterministic and no mutation
    for arg, role in s.roles.items():
        names = s.names.get(arg, (arg,))

        def E(case, default, arg=arg):
            return s.expect.get((arg, case), default)

        def add(case, mutate, default, arg=arg):
            out.append((f"{arg}-{case}", lambda kw, rng, m=mutate, arg=arg: _at(kw, arg, m), E(case, default)))

        if role in ("float", "weights", "floats"):
            nf = s.nonfinite.get(arg, {})
            for case, val in (("nan", np.nan), ("+inf", np.inf), ("-inf", -np.inf)):
                add(case, lambda x, val=val: _insert(x, val), nf.get(case, ERR(*names)))
            if s.light:
                continue
            add("ndim+", lambda x: np.asarray(x)[None], ERR(*names))
            add("ndim-", lambda x: np.asarray(x)[0], ERR(*names))
            add("trailing+", lambda x: _trailing(np.asarray(x)), ERR(*names))
            add("empty0", lambda x: np.asarray(x)[:0], EITHER(*names))
            for case, dt, via in (("f16", np.float16, np.float32), ("f32", np.float32, None),
                                  ("f64", np.float64, None), (">f4", ">f4", np.float32), (">f8", ">f8", np.float64)):
                ref = REF(lambda kw, arg=arg, dt=dt, via=via: _at(kw, arg, lambda x: np.asarray(x).astype(dt).astype(
                    via or dt)))
                add(case, _to_f(dt), ref)
            add("int", lambda x: np.round(np.asarray(x) * 4).astype(np.int64),
                REF(lambda kw, arg=arg: _at(kw, arg, lambda x: np.round(np.asarray(x) * 4).astype(np.int64)
                                            .astype(np.float64))))
            add("complex", _to_f(np.complex128), ERR(*names, types=(TypeError,)))
            add("object", _to_f(object), ERR(*names, types=(TypeError,)))
            # Python floats: the values of x in float64
            add("list", lambda x: np.asarray(x).tolist(),
                REF(lambda kw, arg=arg: _at(kw, arg, lambda x: np.asarray(x).astype(np.float64))))
            if role == "floats":
                out.append((f"{arg}-mixed", lambda kw, rng, arg=arg: _mixed(kw, arg),
                            E("mixed", REF(lambda kw, arg=arg: _mixed(kw, arg, back=True)))))
            if role == "weights":
                add("negative", lambda x: _insert(x, -0.05, 1), ERR(*names))
        elif role == "int":
            if s.light:
                continue
            bad = s.bad_ints(s.make(np.random.default_rng(0), F64), arg) if s.bad_ints else None
            if bad is not None:
                add("too-low", lambda x, v=bad[0]: _insert(x, v, 0), ERR(*names))
                add("too-high", lambda x, v=bad[1]: _insert(x, v, 0), ERR(*names))
            add("float", lambda x: np.asarray(x).astype(np.float64), ERR(*names, types=(TypeError,)))
            add("int32", lambda x: np.asarray(x).astype(np.int32), SAME)
            add(">i8", lambda x: np.asarray(x).astype(">i8"), SAME)
            add("list", lambda x: np.asarray(x).tolist(), SAME)
            add("ndim+", lambda x: np.asarray(x)[None], ERR(*names))
            add("trailing+", lambda x: _trailing(np.asarray(x)), ERR(*names))
            add("empty0", lambda x: np.asarray(x)[:0], EITHER(*names))
        elif role == "mask":
            if s.light:
                continue
            add("float", lambda x: np.asarray(x).astype(np.float64), ERR(*names, types=(TypeError,)))
            add("int01", lambda x: np.asarray(x).astype(np.int8), SAME)
            add("int2", lambda x: np.asarray(x).astype(np.int64) * 2, ERR(*names))
            add("list", lambda x: np.asarray(x).tolist(), SAME)
            add("ndim+", lambda x: np.asarray(x)[None], ERR(*names))
            add("ndim-", lambda x: np.asarray(x)[0], ERR(*names))
            add("trailing+", lambda x: _trailing(np.asarray(x)), ERR(*names))
            add("empty0", lambda x: np.asarray(x)[:0], EITHER(*names))
        elif role == "n_threads":
            for case, val, exp in (("0", 0, ERR(arg)), ("2**40", 2**40, ERR(arg)), ("1.5", 1.5, ERR(arg)),
                                   ("True", True, ERR(arg)), ("'2'", "2", ERR(arg)), ("-1", -1, SAME),
                                   ("2", 2, SAME), ("np.int64(2)", np.int64(2), SAME), ("None", None, SAME)):
                out.append((f"{arg}={case}", lambda kw, rng, arg=arg, val=val: {**kw, arg: val}, exp))
    out += s.extra
    return out


def _mixed(kw, arg, back=False):
    """A list of arrays whose element 1 has the other float dtype (back: and its values, in the original dtype)."""
    v = list(kw[arg])
    other = np.float32 if v[1].dtype == np.float64 else np.float64
    v[1] = v[1].astype(other).astype(v[1].dtype) if back else v[1].astype(other)
    return {**kw, arg: v}


KNOWN = {}


def _case_params():
    params = []
    for s in SPECS.values():
        for case, mutate, exp in _cases(s):
            reason = KNOWN.get((s.name, case))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            params.append(pytest.param(s.name, case, id=f"{s.name}:{case}", marks=marks))
    return params


_CASES = {s.name: {c: (m, e) for c, m, e in _cases(s)} for s in SPECS.values()}


def _fresh(s, dtype, seed=0):
    return lambda: s.make(np.random.default_rng(seed), dtype)


# ================================================================ tests
@pytest.mark.parametrize("name,case", _case_params())
def test_case(name, case):
    s = SPECS[name]
    mutate, exp = _CASES[name][case]
    dtype = s.dtypes[-1]
    base = _fresh(s, dtype)
    kw = mutate(base(), np.random.default_rng(1))
    if exp[0] in ("ref", "close"):
        # the reference is computed from a fresh valid call; its own result must not depend on the run
        _run(s, kw, exp, f"{name}:{case}", base=base)
    else:
        _run(s, kw, exp, f"{name}:{case}")


def _negative_strides(x):
    return np.flip(np.flip(x).copy())


def _layout_variants(x):
    x = np.asarray(x)
    out = {}
    if x.ndim >= 2:
        out["fortran"] = np.asfortranarray(x)
    big = np.zeros(tuple(2 * s + 1 for s in x.shape), dtype=x.dtype)
    view = big[tuple(slice(1, None, 2) for _ in x.shape)]
    view[...] = x
    out["strided"] = view
    if x.ndim >= 1 and x.size:
        out["negative-strides"] = _negative_strides(x)
    out["readonly"] = _readonly(x)
    return out


def _array_args(s, kw):
    return [a for a, v in kw.items()
            if isinstance(v, np.ndarray) and v.ndim >= 1
            or isinstance(v, (list, tuple)) and v and isinstance(v[0], np.ndarray) and v[0].ndim >= 1]


KNOWN_LAYOUT = {}


def _layout_params():
    params = []
    for s in SPECS.values():
        if not s.layout:
            continue
        for dt in s.dtypes:
            for arg in _array_args(s, s.make(np.random.default_rng(0), dt)):
                reason = KNOWN_LAYOUT.get((s.name, arg))
                marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
                params.append(pytest.param(s.name, dt, arg, id=f"{s.name}:{dt.name}:{arg}", marks=marks))
    return params


@pytest.mark.parametrize("name,dtype,arg", _layout_params())
def test_layout_variants_are_bit_identical(name, dtype, arg):
    s = SPECS[name]
    base = _fresh(s, dtype)
    expected, exc = _call(s, base())
    assert exc is None, f"{name}: the valid call raised {exc!r}"
    for variant in _layout_variants(_at(base(), arg, lambda x: x)[arg] if not isinstance(base()[arg], (list, tuple))
                                    else base()[arg][0]):
        kw = _at(base(), arg, lambda x, variant=variant: _layout_variants(x)[variant])
        what = f"{name}:{dtype.name}:{arg}:{variant}"
        must_fail = (arg in s.strict_layout and variant != "readonly") or (arg in s.writable and variant == "readonly")
        if must_fail:
            _run(s, kw, ERR(*s.names.get(arg, (arg,))), what)
        else:
            res, _ = _run(s, kw, OK(), what)
            assert_same_result(res, expected, what)


# ---------------------------------------------------------------- the longer random run
def _random_params():
    if not N_RANDOM:
        return []
    return [pytest.param(s.name, id=s.name) for s in SPECS.values() if s.roles]


@pytest.mark.skipif(not N_RANDOM, reason="set FASTCORE_FUZZ=1 (or a count) for the long random run")
@pytest.mark.parametrize("name", _random_params() or ["-"])
def test_random_fuzz(name):
    """FASTCORE_FUZZ seeds per function: random shapes (the factories draw them when a spec
    is made with a random size), random dtypes, random case, random layout of every array."""
    s = SPECS[name]
    cases = [c for c in _cases(s) if c[0] != "valid" and (name, c[0]) not in KNOWN]
    for seed in range(N_RANDOM):
        rng = np.random.default_rng([seed, 20261129])
        dt = s.dtypes[rng.integers(len(s.dtypes))]
        base = _fresh_random(s, dt, seed)
        kw = base()
        # every array argument in a random layout: the results must not change
        expected, exc = _call(s, base())
        assert exc is None, f"{name} seed {seed}: the valid call raised {exc!r}"
        for arg in _array_args(s, kw):
            if arg in s.strict_layout or arg in s.writable or (name, arg) in KNOWN_LAYOUT:
                continue
            v = kw[arg][0] if isinstance(kw[arg], (list, tuple)) else kw[arg]
            variants = list(_layout_variants(v))
            variant = variants[rng.integers(len(variants))]
            kw = _at(kw, arg, lambda x, variant=variant: _layout_variants(x)[variant])
        res, _ = _run(s, kw, OK(), f"{name} seed {seed} (random layouts)")
        assert_same_result(res, expected, f"{name} seed {seed} (random layouts)")
        # one random bad/unusual case, with a random position for inserted values (from the
        # dtype the expectations are written for)
        base = _fresh_random(s, s.dtypes[-1], seed)
        case, mutate, exp = cases[rng.integers(len(cases))]
        _RANDOM["rng"] = rng  # random positions for inserted values
        try:
            kw = mutate(base(), rng)
        finally:
            _RANDOM["rng"] = None
        _run(s, kw, exp, f"{name} seed {seed}: {case}", base=base)


def _fresh_random(s, dtype, seed):
    """The spec's factory with a seed of the random run; the sizes (_sz) are drawn from a generator
    seeded alike, so every call of the factory gives the same shapes."""
    def make():
        saved = _RANDOM["rng"]
        _RANDOM["rng"] = np.random.default_rng([seed, 7])
        try:
            return s.make(np.random.default_rng(seed + 1000), dtype)
        finally:
            _RANDOM["rng"] = saved
    return make
