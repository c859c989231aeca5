"""How many threads a kernel may use."""
import os

from fastcore._common import openmp_enabled

_OPENMP = openmp_enabled()  # fixed when the extension was built


def available_cores():
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_n_threads(n_threads, name="n_threads"):
    """Turn a user's ``n_threads`` into a positive thread count.

    ``None`` or ``-1`` means every available core; ``-k`` (k >= 1) means all cores
    but ``k - 1`` (the joblib/scikit-learn convention), never fewer than one;
    a positive int is used as given.  ``0`` and non-integers are errors.
    Builds without OpenMP run every kernel on one thread whatever is asked.
    """
    if type(n_threads) is int and n_threads > 0:  # the common case, first
        return n_threads if _OPENMP else 1
    if n_threads is None:
        n = available_cores()
    else:
        if isinstance(n_threads, bool) or not hasattr(n_threads, "__index__"):
            raise TypeError(f"{name} must be None or an int, got {type(n_threads).__name__}")
        n_threads = int(n_threads)
        if n_threads == 0:
            raise ValueError(f"{name} must be a positive int, None (all cores) or negative (all cores but |{name}| - 1); got 0")
        n = n_threads if n_threads > 0 else max(1, available_cores() + 1 + n_threads)
    return n if _OPENMP else 1
