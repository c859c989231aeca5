"""Training steps for lists of NumPy arrays: global gradient norms, hard and soft
clipping, fused clip + SGD / Adam / AdamW updates, and the WEISSI regulariser.

A step reads every gradient twice and every parameter and state array once,
whatever the options: one read pass for the global norm (which also detects a
non-finite gradient before anything is written), then one read-write pass that
clips, regularises and updates.  Both passes run in C over a flat list of
(array, chunk) work items shared by the threads, so 50 small arrays and one
big one keep all threads busy alike (``csrc/optim/optim_impl.h``).  The WEISSI
regulariser, when asked for, adds two read passes over the regularised
parameters (their L2 and L1 norms) before the update.
"""
import math
import operator
from collections import namedtuple

import numpy as np

from fastcore import _optim
from fastcore._threads import resolve_n_threads
from fastcore._validation import FLOAT_DTYPES, as_float_array

__all__ = ["global_norm", "clip_grad_norm", "clip_scale", "weissi", "StepResult", "SGD", "Adam", "AdamW"]


StepResult = namedtuple("StepResult", ["norm", "scale", "skipped", "regularization"])
StepResult.__doc__ = """What one optimiser step did.

norm : float
    Global L2 norm of the gradients (before clipping), computed in float64.
scale : float
    Factor applied to the gradients (1.0 when not clipped; 0.0 when skipped).
skipped : bool
    True when the norm was not finite (a NaN or infinite gradient): parameters and
    state were left untouched and the step counter did not advance.
regularization : float
    Value of the fused regulariser (WEISSI) at the parameters before the update,
    0.0 without one.
"""


# ----------------------------------------------------------------- validation
def _array_list(arrays, name, *, writable=False, convert=False):
    """A list of C-contiguous float arrays of one dtype, or a clear error.

    ``convert`` (read-only uses) copies non-contiguous / non-float inputs; otherwise
    the arrays must already be C-contiguous float32/float64 ndarrays (they are
    updated in place or must be read without a copy).
    """
    if isinstance(arrays, np.ndarray):
        arrays = [arrays]
    if isinstance(arrays, (str, bytes)) or not hasattr(arrays, "__iter__"):
        raise TypeError(f"{name} must be a list of arrays, got {type(arrays).__name__}")
    out = []
    for i, a in enumerate(arrays):
        label = f"{name}[{i}]"
        if convert:
            a = as_float_array(a, label)
        else:
            if not isinstance(a, np.ndarray):
                raise TypeError(f"{label} must be a numpy.ndarray, got {type(a).__name__}")
            if a.dtype not in FLOAT_DTYPES:
                raise TypeError(f"{label} must be float32 or float64, got dtype {a.dtype}")
            if not a.flags.c_contiguous:
                raise ValueError(f"{label} must be C-contiguous (it is used in place)")
            if writable and not a.flags.writeable:
                raise ValueError(f"{label} is read-only but is updated in place")
        out.append(a)
    if out:
        dt = out[0].dtype
        for i, a in enumerate(out):
            if a.dtype != dt:
                raise TypeError(f"{name} mixes dtypes: {name}[0] is {dt} but {name}[{i}] is {a.dtype}; "
                                "use one dtype per call")
    return out


def _positive(value, name, *, allow_none=False, allow_zero=False):
    if value is None and allow_none:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value!r}")
    return v


def _check_mode(mode):
    if mode not in ("hard", "soft"):
        raise ValueError(f"clip mode must be 'hard' or 'soft', got {mode!r}")
    return mode


def clip_scale(norm, max_norm, mode="hard"):
    """The factor the clipping rules apply to a gradient of norm ``norm``.

    ``hard``: ``min(1, max_norm / norm)``; ``soft``: ``max_norm / (norm + max_norm)``.
    A zero norm gives 1 for both.  They bound each other:
    ``0.5 * hard <= soft <= hard``.
    """
    max_norm = _positive(max_norm, "max_norm")
    _check_mode(mode)
    norm = float(norm)
    if not (norm >= 0) or math.isinf(norm):
        raise ValueError(f"norm must be finite and >= 0, got {norm!r}")
    if norm == 0.0:
        return 1.0
    if mode == "hard":
        return 1.0 if norm <= max_norm else max_norm / norm
    return max_norm / (norm + max_norm)


# ----------------------------------------------------------------- functions
def global_norm(grads, norm_type=2.0, *, n_threads=None):
    """The norm of all ``grads`` taken together, as one long vector.

    Parameters
    ----------
    grads : list of array_like (any shapes), float32 or float64
        Arrays of one dtype per call (a single array is accepted too).
        Non-contiguous inputs are copied; nothing is modified.
    norm_type : float, default 2.0
        ``p > 0`` or ``inf`` (max absolute value).  1 and 2 have vectorised kernels.
    n_threads : int or None
        Threads; None = all cores.  The result does not depend on it.

    Returns
    -------
    float
        Sums are accumulated in float64 for both dtypes (float32 gradients near
        3e19 do not overflow), and a sum that overflows or underflows float64 is
        recomputed with a power-of-two rescaling, so the norm is accurate for any
        finite input.  NaN if any element is NaN, ``inf`` if one is infinite; 0.0 for
        an empty list.
    """
    n_threads = resolve_n_threads(n_threads)
    p = float(norm_type)
    if not p > 0:
        raise ValueError(f"norm_type must be > 0 (or inf), got {norm_type!r}")
    grads = _array_list(grads, "grads", convert=True)
    if not grads:
        return 0.0
    return _optim.global_norm(_optim.Arrays(grads), p, n_threads)


def clip_grad_norm(grads, max_norm, mode="hard", *, norm_type=2.0, error_if_nonfinite=False, n_threads=None):
    """Scale ``grads`` in place so that their global norm obeys ``max_norm``.

    Parameters
    ----------
    grads : list of ndarray (any shapes), float32 or float64, C-contiguous, writable
        One dtype per call.  Modified in place (that is this function's purpose).
    max_norm : float > 0
        The threshold gamma.
    mode : {"hard", "soft"}
        ``hard``: scale ``min(1, gamma/||g||)`` (torch's ``clip_grad_norm_``, which
        uses ``gamma/(||g|| + 1e-6)``: the results differ by that relative 1e-6).
        ``soft``: scale ``gamma/(||g|| + gamma)``, the smooth rule of the
        (L0, L1)-smoothness analysis; always within a factor 2 of ``hard``.
        ``||g|| = 0`` gives scale 1.
    norm_type : float, default 2.0
        See :func:`global_norm`.
    error_if_nonfinite : bool, default False
        When the norm is NaN or infinite: raise ValueError if True; otherwise
        return that norm **without touching the gradients** (a non-finite norm is
        never applied).  Check the returned value with ``math.isfinite``.

    Returns
    -------
    float
        The global norm before clipping (float64 accumulation, see :func:`global_norm`).
    """
    n_threads = resolve_n_threads(n_threads)
    max_norm = _positive(max_norm, "max_norm")
    _check_mode(mode)
    p = float(norm_type)
    if not p > 0:
        raise ValueError(f"norm_type must be > 0 (or inf), got {norm_type!r}")
    grads = _array_list(grads, "grads", writable=True)
    if not grads:
        return 0.0
    norm = _optim.global_norm(_optim.Arrays(grads, True), p, n_threads)
    if not math.isfinite(norm):
        if error_if_nonfinite:
            raise ValueError(f"the {p:g}-norm of grads is {norm}: a gradient holds NaN or infinite values")
        return norm
    scale = clip_scale(norm, max_norm, mode)
    if scale != 1.0:
        for g in grads:
            g *= scale
    return norm


def weissi(weights, lam1, lam2, *, n_threads=None):
    """The WEISSI regulariser and its gradients (weight-scale-shift invariant).

    ``R = lam1 * sum_l log ||W_l||_F + lam2 * sum_l ||W_l / ||W_l||_F||_1``

    R is unchanged when the weights are rescaled ``W_l -> gamma_l W_l`` with
    ``prod gamma_l = 1`` (gamma_l > 0), unlike L2 (Liu, Cui & Chan 2020).

    Parameters
    ----------
    weights : list of array_like (any shapes), float32 or float64
        The weight matrices / conv kernels (norms over all entries); pass weights
        only, not biases.  Nothing is modified.
    lam1, lam2 : float >= 0

    Returns
    -------
    value : float
        R, from norms accumulated in float64.
    grads : list of ndarray
        ``dR/dW = lam1 * W/||W||^2 + lam2 * (sign(W)/||W|| - ||W||_1 * W/||W||^3)``
        (sign(0) = 0), one per weight, in the weight's dtype.

    Raises
    ------
    ValueError
        A weight that is all zeros (log 0 and 0/0: the index is named) or not finite.
    """
    n_threads = resolve_n_threads(n_threads)
    lam1 = _positive(lam1, "lam1", allow_zero=True)
    lam2 = _positive(lam2, "lam2", allow_zero=True)
    weights = _array_list(weights, "weights", convert=True)
    if not weights:
        return 0.0, []
    l2, l1, value = _weissi_norms(weights, lam1, lam2, n_threads, "weights", range(len(weights)))
    grads = []
    for w, n2, n1 in zip(weights, l2, l1):
        # ((lam1 - lam2 ||W||_1/||W||) W/||W|| + lam2 sign(W)) / ||W||: every factor finite
        # for any ||W|| > 0 (lam1/||W||^2 alone overflows float64 below ||W|| ~ 1e-154)
        u = w.astype(np.float64) / n2
        g = ((lam1 - lam2 * (n1 / n2)) * u + lam2 * np.sign(u)) / n2
        grads.append(g.astype(w.dtype))
    return value, grads


def _weissi_norms(arrays, lam1, lam2, n_threads, name, labels, table=None):
    """Per array ||W||_2, ||W||_1 and the value R; the gradient must fit the arrays' dtype:
    |dR/dW_i| <= (|lam1 - lam2 ||W||_1/||W||| + lam2) / ||W||.  ``table``: the arrays'
    _optim.Arrays table when the caller keeps one."""
    if table is None:
        table = _optim.Arrays(arrays)
    l2, l1 = _optim.array_norms(table, n_threads)
    for k in range(len(arrays)):
        if not (math.isfinite(l2[k]) and math.isfinite(l1[k])):
            raise ValueError(f"{name}[{labels[k]}] contains NaN or infinite values")
        if l2[k] == 0.0:
            raise ValueError(f"{name}[{labels[k]}] is all zeros: WEISSI needs log||W|| (undefined at W = 0)")
    big = np.finfo(arrays[0].dtype).max
    with np.errstate(over="ignore"):
        bound = (np.abs(lam1 - lam2 * (l1 / l2)) + lam2) / l2
    for k in np.flatnonzero(~(bound <= big)):
        raise ValueError(f"{name}[{labels[k]}] has ||W|| = {l2[k]:.3g}: the WEISSI gradient (up to "
                         f"{bound[k]:.3g}) overflows {arrays[0].dtype}; WEISSI needs weights away from 0")
    value = float(lam1 * np.sum(np.log(l2)) + lam2 * np.sum(l1 / l2))
    return l2, l1, value


def _weissi_coefficients(arrays, lam1, lam2, n_threads, name, labels, table=None):
    """Per array (a, b) with grad = a*W + b*sign(W) (the fused steps' form), and the value R."""
    l2, l1, value = _weissi_norms(arrays, lam1, lam2, n_threads, name, labels, table)
    dtype = arrays[0].dtype
    with np.errstate(over="ignore"):
        a = (lam1 - lam2 * (l1 / l2)) / l2 / l2
    # the kernels take a in the parameters' dtype: 1/||W||^2 can overflow it though a*W would fit
    for k in np.flatnonzero(~(np.abs(a) <= np.finfo(dtype).max)):
        raise ValueError(f"{name}[{labels[k]}] has ||W|| = {l2[k]:.3g}: the fused step's WEISSI "
                         f"coefficient (~1/||W||^2 = {a[k]:.3g}) overflows {dtype}; WEISSI needs weights "
                         f"away from 0")
    b = lam2 / l2
    return a, b, value


# ----------------------------------------------------------------- optimisers
def _step_options(clip, clip_mode, regularizer, reg_lambdas):
    """The checked (clip, clip_mode, regularizer, reg_lambdas) of a fused step (shared with
    fastcore.torch.optim)."""
    clip = _positive(clip, "clip", allow_none=True)
    clip_mode = _check_mode(clip_mode)
    if regularizer not in (None, "weissi"):
        raise ValueError(f"regularizer must be None or 'weissi', got {regularizer!r}")
    lams = (0.0, 0.0)
    if regularizer == "weissi":
        pair = tuple(reg_lambdas) if reg_lambdas is not None else ()
        if len(pair) != 2:
            raise ValueError(f"reg_lambdas must be a pair (lam1, lam2), got {reg_lambdas!r}")
        lams = (_positive(pair[0], "reg_lambdas[0]", allow_zero=True),
                _positive(pair[1], "reg_lambdas[1]", allow_zero=True))
    return clip, clip_mode, regularizer, lams


class _Optimizer:
    """Shared machinery: parameter list, clipping, WEISSI, step counter, state."""

    _state_names = ()

    def __init__(self, params, lr, clip, clip_mode, regularizer, reg_lambdas, reg_params, n_threads):
        self._params = _array_list(params, "params", writable=True)
        if not self._params:
            raise ValueError("params is an empty list")
        self._dtype = self._params[0].dtype
        # the kernels' pointer table of the params (their buffers held while the optimiser lives);
        # it also checks the gradients' formats, shapes and memory at each step
        self._table = _optim.Arrays(self._params, True)
        shared = self._table.first_shared()
        if shared is not None:  # each would be updated twice
            raise ValueError(f"params[{shared[0]}] and params[{shared[1]}] share memory")
        self._shapes = [p.shape for p in self._params]
        self.lr = lr
        self.clip, self.clip_mode, self.regularizer, self.reg_lambdas = _step_options(
            clip, clip_mode, regularizer, reg_lambdas)
        self.n_threads = n_threads  # resolved at each step (the property below)
        self._reg_idx = np.zeros(0, dtype=np.intp)
        if regularizer == "weissi":
            self._reg_idx = self._reg_indices(reg_params)
        self._reg_table = self._table.take(self._reg_idx)
        self.step_count = 0

    @property
    def n_threads(self):
        """Threads of each step: the value given, resolved at each step (None follows
        fastcore.get_num_threads(), so threadpool_limits and OMP_NUM_THREADS apply)."""
        return resolve_n_threads(self._n_threads)

    @n_threads.setter
    def n_threads(self, value):
        resolve_n_threads(value)  # validates
        self._n_threads = value

    def _reg_indices(self, reg_params):
        n = len(self._params)
        if reg_params is None:
            idx = [k for k, p in enumerate(self._params) if p.ndim >= 2]
        else:
            sel = list(reg_params)
            if sel and all(isinstance(s, (bool, np.bool_)) for s in sel):
                if len(sel) != n:
                    raise ValueError(f"reg_params as a mask must have {n} entries, got {len(sel)}")
                idx = [k for k, s in enumerate(sel) if s]
            else:
                idx = []
                for s in sel:
                    try:
                        k = operator.index(s)
                    except TypeError:
                        raise TypeError("reg_params must hold parameter indices or one bool per parameter") from None
                    if not -n <= k < n:
                        raise ValueError(f"reg_params index {k} is out of range for {n} params")
                    idx.append(k % n)
                if len(set(idx)) != len(idx):
                    raise ValueError("reg_params lists a parameter twice")
                idx.sort()
        return np.asarray(idx, dtype=np.intp)

    def _new_state(self):
        return [np.zeros_like(p) for p in self._params]

    @property
    def params(self):
        """The parameter arrays (updated in place by :meth:`step`)."""
        return list(self._params)

    @property
    def lr(self):
        """Learning rate; may be changed between steps (``opt.lr = 0.01``)."""
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = _positive(value, "lr", allow_zero=True)

    def _grad_table(self, grads):
        if isinstance(grads, np.ndarray):
            grads = [grads]
        grads = list(grads)
        table = self._table.like(grads)  # the per-step path: one buffer per gradient
        if table is None:  # something is off: find it and say what
            table = self._check_grads(grads)
        same = self._table.first_same(table)
        if same is not None:
            raise ValueError(f"grads[{same}] is params[{same}] itself")
        # a gradient that shares memory with any parameter would change while the step
        # writes it (the update would depend on the order of the arrays): refuse it
        hit = self._table.first_overlap(table)
        if hit is not None:
            raise ValueError(f"grads[{hit[0]}] shares memory with params[{hit[1]}]: "
                             "pass gradients held in arrays of their own")
        return table

    def _check_grads(self, grads):
        if len(grads) != len(self._params):
            raise ValueError(f"grads has {len(grads)} arrays but there are {len(self._params)} params")
        for k, (g, shape) in enumerate(zip(grads, self._shapes)):
            if not isinstance(g, np.ndarray):
                raise TypeError(f"grads[{k}] must be a numpy.ndarray, got {type(g).__name__}")
            if g.dtype != self._dtype:
                raise TypeError(f"grads[{k}] has dtype {g.dtype} but the params are {self._dtype}")
            if g.shape != shape:
                raise ValueError(f"grads[{k}] has shape {g.shape} but params[{k}] has shape {shape}")
            if not g.flags.c_contiguous:
                raise ValueError(f"grads[{k}] must be C-contiguous")
        return _optim.Arrays(grads)

    def step(self, grads):
        """Clip (if asked), regularise (if asked) and update the parameters in place.

        Parameters
        ----------
        grads : list of ndarray
            One per parameter, same shape and dtype, C-contiguous; never modified.

        Returns
        -------
        StepResult
            ``(norm, scale, skipped, regularization)``.  A NaN or infinite gradient
            gives ``skipped=True``: nothing is written and ``step_count`` stays.
        """
        gtable = self._grad_table(grads)
        norm = _optim.global_norm(gtable, 2.0, self.n_threads)
        if not math.isfinite(norm):
            return StepResult(norm, 0.0, True, 0.0)
        scale = 1.0 if self.clip is None else clip_scale(norm, self.clip, self.clip_mode)
        c_p = c_s = None
        reg_value = 0.0
        if self.regularizer == "weissi" and self._reg_idx.size:
            lam1, lam2 = self.reg_lambdas
            a, b, reg_value = _weissi_coefficients(
                [self._params[k] for k in self._reg_idx], lam1, lam2, self.n_threads, "params",
                self._reg_idx, self._reg_table)
            c_p = np.zeros(len(self._params))
            c_s = np.zeros(len(self._params))
            c_p[self._reg_idx] = a
            c_s[self._reg_idx] = b
        self._update(gtable, scale, c_p, c_s)
        self.step_count += 1
        return StepResult(norm, scale, False, reg_value)

    # -- state
    def _hyper(self):
        return {"clip": self.clip, "clip_mode": self.clip_mode, "regularizer": self.regularizer,
                "reg_lambdas": self.reg_lambdas, "reg_params": self._reg_idx.tolist()}

    def state_dict(self):
        """A snapshot: ``{"lr", "step", "hyper", "state": {name: [array copies]}}``.

        The arrays are copies, so later steps do not change the snapshot.
        """
        return {
            "lr": self.lr,
            "step": self.step_count,
            "hyper": self._hyper(),
            "state": {name: [a.copy() for a in getattr(self, "_" + name)] for name in self._state_names},
        }

    def load_state_dict(self, state):
        """Restore a :meth:`state_dict` (lr, step counter and state arrays, copied in).

        The optimiser must have been created with the same settings and parameter
        shapes/dtype; a mismatch raises ValueError and changes nothing.
        """
        if not isinstance(state, dict) or not {"lr", "step", "hyper", "state"} <= set(state):
            raise ValueError("state must be a dict made by state_dict()")
        if state["hyper"] != self._hyper():
            raise ValueError(f"state was saved with settings {state['hyper']}, this optimiser has {self._hyper()}")
        arrays = state["state"]
        if set(arrays) != set(self._state_names):
            raise ValueError(f"state holds {sorted(arrays)}, expected {sorted(self._state_names)}")
        for name in self._state_names:
            src = arrays[name]
            if len(src) != len(self._params):
                raise ValueError(f"state['{name}'] has {len(src)} arrays, expected {len(self._params)}")
            for k, (a, shape) in enumerate(zip(src, self._shapes)):
                a = np.asarray(a)
                if a.shape != shape or a.dtype != self._dtype:
                    raise ValueError(f"state['{name}'][{k}] has shape {a.shape} and dtype {a.dtype}, "
                                     f"expected {shape} and {self._dtype}")
        step = operator.index(state["step"])
        if step < 0:
            raise ValueError(f"state['step'] must be >= 0, got {step}")
        self.lr = state["lr"]
        self.step_count = step
        for name in self._state_names:
            for dst, src in zip(getattr(self, "_" + name), arrays[name]):
                np.copyto(dst, src)  # in place: the kernels' pointer tables stay valid


class SGD(_Optimizer):
    """Stochastic gradient descent with momentum, fused with clipping (torch.optim.SGD's rule).

    Per parameter, with ``d = scale * g`` (``scale`` from the clip, 1 without):

    - coupled weight decay (default): ``d += weight_decay * p``;
      decoupled: ``p *= 1 - lr * weight_decay`` before the update;
    - WEISSI (if asked): ``d += dR/dp`` for the chosen params (not clipped);
    - momentum: ``buf = d`` at the first step, then
      ``buf = momentum * buf + (1 - dampening) * d``;
      ``u = d + momentum * buf`` (nesterov) or ``u = buf``;
    - ``p -= lr * u``.

    Parameters
    ----------
    params : list of ndarray, float32 or float64 (one dtype), C-contiguous, writable
        Updated in place; the optimiser keeps references to them.
    lr : float >= 0
        Learning rate; change it between steps with ``opt.lr = value``.
    momentum, dampening : float, default 0
    nesterov : bool, default False
        Needs ``momentum > 0`` and ``dampening == 0`` (as in torch).
    weight_decay : float >= 0, default 0
    decoupled_weight_decay : bool, default False
    clip : float > 0 or None
        Max global L2 norm of the gradients (None: no clipping).
    clip_mode : {"hard", "soft"}
        ``min(1, clip/||g||)`` or ``clip/(||g|| + clip)``, see :func:`clip_grad_norm`.
    regularizer : None or "weissi"
        Adds the gradient of :func:`weissi` (``reg_lambdas = (lam1, lam2)``) for the
        params in ``reg_params`` (default: every param with ndim >= 2, i.e. weight
        matrices and conv kernels, not biases or norm scales).  It is added after
        the clip (only the loss gradient is clipped), like weight decay.
    reg_lambdas : (float, float)
    reg_params : None, list of int or list of bool
    n_threads : int or None
        Threads; None = all cores.  Results do not depend on it.

    Notes
    -----
    ``step(grads)`` makes one read pass over the gradients for the global norm and
    one read-write pass for the update; it returns a :class:`StepResult`.  A
    non-finite gradient skips the whole step (see :meth:`step`).  Float32 params
    are updated in float32 arithmetic, like torch (the norm is computed in float64).
    """

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
                 decoupled_weight_decay=False, clip=None, clip_mode="hard", *, regularizer=None,
                 reg_lambdas=(0.0, 0.0), reg_params=None, n_threads=None):
        super().__init__(params, lr, clip, clip_mode, regularizer, reg_lambdas, reg_params, n_threads)
        self.momentum = _positive(momentum, "momentum", allow_zero=True)
        try:
            self.dampening = float(dampening)
        except (TypeError, ValueError):
            raise TypeError(f"dampening must be a real number, got {type(dampening).__name__}") from None
        if not math.isfinite(self.dampening):
            raise ValueError(f"dampening must be finite, got {dampening!r}")
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov momentum requires momentum > 0 and dampening == 0")
        self.weight_decay = _positive(weight_decay, "weight_decay", allow_zero=True)
        self.decoupled_weight_decay = bool(decoupled_weight_decay)
        if self.momentum > 0:
            self._state_names = ("momentum_buffer",)
            self._momentum_buffer = self._new_state()
            self._buf_table = _optim.Arrays(self._momentum_buffer, True)
        else:
            self._buf_table = None

    def _hyper(self):
        h = super()._hyper()
        h.update(momentum=self.momentum, dampening=self.dampening, nesterov=self.nesterov,
                 weight_decay=self.weight_decay, decoupled_weight_decay=self.decoupled_weight_decay)
        return h

    def _update(self, gtable, scale, c_p, c_s):
        lr, wd = self.lr, self.weight_decay
        decay = 1.0
        if wd != 0.0:
            if self.decoupled_weight_decay:
                decay = 1.0 - lr * wd
            else:
                c_p = (np.zeros(len(self._params)) if c_p is None else c_p) + wd
        if self.step_count == 0:
            keep, new = 0.0, 1.0  # torch: the buffer starts as the first gradient
        else:
            keep, new = self.momentum, 1.0 - self.dampening
        _optim.sgd_step(self._table, gtable, self._buf_table, c_p, c_s, scale, lr, decay, self.momentum, keep,
                        new, self.nesterov, self.n_threads)


class Adam(_Optimizer):
    """Adam with L2 weight decay **coupled** into the gradient, fused with clipping.

    torch.optim.Adam's rule (bias correction, eps outside the square root), with
    ``d = scale * g + weight_decay * p`` (+ WEISSI gradient):
    ``m = lerp(m, d, 1 - beta1)``, ``v = beta2 v + (1 - beta2) d^2``,
    ``vmax = max(vmax, v)`` (amsgrad), ``p -= lr/(1 - beta1^t) * m / (sqrt(v or vmax)/sqrt(1 - beta2^t) + eps)``.
    With Adam the decay is divided by sqrt(v) like the gradient, so it acts
    roughly like ``lr * weight_decay * sign(p)``: use :class:`AdamW` for real decay.

    Parameters are as for :class:`SGD` (``params``, ``lr``, ``clip``, ``clip_mode``,
    ``regularizer``, ``reg_lambdas``, ``reg_params``, ``n_threads``) plus
    ``betas=(beta1, beta2)`` in [0, 1), ``eps >= 0``, ``weight_decay >= 0`` and ``amsgrad``.
    The step counter ``t`` is ``step_count + 1`` (skipped steps do not count).
    """

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 clip=None, clip_mode="hard", *, regularizer=None, reg_lambdas=(0.0, 0.0), reg_params=None,
                 n_threads=None):
        super().__init__(params, lr, clip, clip_mode, regularizer, reg_lambdas, reg_params, n_threads)
        try:
            b1, b2 = (float(b) for b in betas)
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair of floats, got {betas!r}") from None
        for name, b in (("betas[0]", b1), ("betas[1]", b2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {b!r}")
        self.betas = (b1, b2)
        self.eps = _positive(eps, "eps", allow_zero=True)
        self.weight_decay = _positive(weight_decay, "weight_decay", allow_zero=True)
        self.amsgrad = bool(amsgrad)
        self._state_names = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if self.amsgrad else ())
        self._exp_avg = self._new_state()
        self._exp_avg_sq = self._new_state()
        self._m_table = _optim.Arrays(self._exp_avg, True)
        self._v_table = _optim.Arrays(self._exp_avg_sq, True)
        self._vmax_table = None
        if self.amsgrad:
            self._max_exp_avg_sq = self._new_state()
            self._vmax_table = _optim.Arrays(self._max_exp_avg_sq, True)

    def _hyper(self):
        h = super()._hyper()
        h.update(betas=self.betas, eps=self.eps, weight_decay=self.weight_decay, amsgrad=self.amsgrad)
        return h

    def _update(self, gtable, scale, c_p, c_s):
        lr, wd = self.lr, self.weight_decay
        b1, b2 = self.betas
        t = self.step_count + 1
        decay = 1.0
        if wd != 0.0:
            if self._decoupled:
                decay = 1.0 - lr * wd
            else:
                c_p = (np.zeros(len(self._params)) if c_p is None else c_p) + wd
        step_size = lr / (1.0 - b1**t)
        bc2_sqrt = (1.0 - b2**t) ** 0.5
        _optim.adam_step(self._table, gtable, self._m_table, self._v_table, self._vmax_table, c_p, c_s, scale,
                         decay, b1, b2, step_size, bc2_sqrt, self.eps, self.n_threads)


class AdamW(Adam):
    """Adam with **decoupled** weight decay (Loshchilov & Hutter), fused with clipping.

    As :class:`Adam`, but the gradient carries no decay term; instead
    ``p *= 1 - lr * weight_decay`` before the Adam update (torch.optim.AdamW's rule).
    Default ``weight_decay=0.01``.
    """

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, amsgrad=False,
                 clip=None, clip_mode="hard", *, regularizer=None, reg_lambdas=(0.0, 0.0), reg_params=None,
                 n_threads=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, clip, clip_mode,
                         regularizer=regularizer, reg_lambdas=reg_lambdas, reg_params=reg_params,
                         n_threads=n_threads)


def tour_optim(show):
    """The tour's section for this module (see fastcore/_tour.py)."""
    from fastcore._tour import timed

    show.title("optim: global norm, hard/soft clip, fused AdamW step; init; batch norm")
    g = [np.array([3e19, 4e19], dtype=np.float32)]
    show.line(f"global_norm of float32 [3e19, 4e19]   {global_norm(g):.4g}  (float64 sums: no overflow)")
    for mode in ("hard", "soft"):
        show.line(f"clip scale, ||g|| = 10, gamma = 1, {mode:4s}  {clip_scale(10.0, 1.0, mode):.4f}")

    rng = np.random.default_rng(0)
    sizes = [200_000] * 5
    params = [rng.standard_normal(n, dtype=np.float32) for n in sizes]
    grads = [rng.standard_normal(n, dtype=np.float32) for n in sizes]
    opt = AdamW(params, lr=1e-3, clip=1.0, n_threads=1)
    res, tf = timed(opt.step, grads)
    ps = [p.copy() for p in params]
    ms = [np.zeros_like(p) for p in params]
    vs = [np.zeros_like(p) for p in params]

    def np_adamw(t=1, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, wd=0.01):
        norm = np.sqrt(sum(float(np.dot(x, x)) for x in (g.astype(np.float64) for g in grads)))
        c = min(1.0, 1.0 / norm)
        for p, g, m, v in zip(ps, grads, ms, vs):
            gc = g * c
            p *= 1 - lr * wd
            m += (1 - b1) * (gc - m)
            v *= b2
            v += (1 - b2) * gc * gc
            p -= lr / (1 - b1**t) * m / (np.sqrt(v) / np.sqrt(1 - b2**t) + eps)

    _, tr = timed(np_adamw)
    show.line(f"AdamW step: norm {res.norm:.1f}, scale {res.scale:.2e}, skipped {res.skipped}")
    show.compare("clip + AdamW step, 1M float32 params", tf, tr)
    bad = [x.copy() for x in grads]
    bad[2][7] = np.nan
    show.line(f"a NaN gradient: {opt.step(bad)}  (params untouched)")

    from fastcore import init, norm

    w = init.orthogonal(rng, (256, 256))
    show.line(f"orthogonal(256,256): max |WᵀW - I| = {np.abs(w.T @ w - np.eye(256)).max():.1e}")
    w = init.he_normal(rng, (512, 256), mode="fan_out")
    show.line(f"he_normal fan_out (512,256): var {w.var():.5f} (2/512 = {2 / 512:.5f})")
    x = rng.standard_normal((128, 64, 50)).astype(np.float32) * 3 + 1
    gamma, beta = np.ones(64, np.float32), np.zeros(64, np.float32)
    rm, rv = np.zeros(64, np.float32), np.ones(64, np.float32)
    (y, cache), tf = timed(norm.batch_norm_forward, x, gamma, beta, rm, rv, True, 0.1, 1e-5, n_threads=1)

    def np_bn(x):
        mu = x.mean(axis=(0, 2), keepdims=True)
        var = x.var(axis=(0, 2), keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5)

    _, tr = timed(np_bn, x)
    show.compare("batch_norm_forward (128,64,50) f32", tf, tr)
