"""Exception and warning classes shared by all fastcore kernels."""


class ConvergenceWarning(RuntimeWarning):
    """An iterative kernel stopped before reaching its tolerance (result is usable but inexact)."""


class ConvergenceError(RuntimeError):
    """An iterative kernel stopped before reaching its tolerance and the caller asked to raise."""


class InternalError(RuntimeError):
    """A kernel detected a broken internal invariant. This is a bug: please report it."""
