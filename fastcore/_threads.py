"""How many threads a kernel may use: the process's limits, resolved the way scikit-learn
resolves them for its OpenMP loops.

``n_threads=None`` (every kernel's default) means the smallest of:

- the cores this process may run on (its CPU affinity: ``taskset``, cgroups, a job scheduler);
- ``OMP_NUM_THREADS`` when it is set (read at import, as OpenMP runtimes do; joblib/loky,
  torch DataLoader workers and job schedulers set it);
- the limit set with :func:`set_num_threads`, :func:`num_threads` or threadpoolctl's
  ``threadpool_limits`` (fastcore registers a controller, so ``threadpool_info()`` lists it).

The threads themselves are a small pool per compiled module (``csrc/core/fc_pool.c``) in which the
calling thread works too; a call never waits for a thread that has not started, and a forked
child starts its own threads.
"""
import contextlib
import os

MAX_THREADS = 65535  # the largest team csrc/core/fc_pool.c runs (more ranks would not help anyway)


def available_cores():
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _env_limit():
    """OMP_NUM_THREADS as a positive int, or None (unset, empty or not a number).  A nested
    list such as "4,2" gives its first value, as OpenMP does."""
    raw = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    try:
        n = int(raw)
    except ValueError:
        return None
    return n if n > 0 else None


_ENV_LIMIT = _env_limit()
_user_limit = None  # set_num_threads / threadpoolctl
_default = 1        # what n_threads=None gives; kept current by _update()


def _update():
    global _default
    n = available_cores()
    limit = _user_limit if _user_limit is not None else _ENV_LIMIT
    _default = max(1, min(n, limit)) if limit is not None else n


_update()


def get_num_threads():
    """The number of threads a kernel uses when called with ``n_threads=None``.

    Returns
    -------
    int
        ``min(cores available to this process, OMP_NUM_THREADS, set_num_threads limit)``;
        a limit from :func:`set_num_threads` (or threadpoolctl) replaces ``OMP_NUM_THREADS``.

    Examples
    --------
    >>> import fastcore
    >>> fastcore.get_num_threads() >= 1
    True
    """
    return _default


def set_num_threads(n):
    """Set the process-wide default thread count (what ``n_threads=None`` means).

    Parameters
    ----------
    n : int or None
        A positive number of threads (capped at the cores this process may use), or None to
        go back to ``OMP_NUM_THREADS`` / all available cores.  Calls with an explicit
        ``n_threads=k`` are not affected.

    Examples
    --------
    >>> import fastcore
    >>> old = fastcore.get_num_threads()
    >>> fastcore.set_num_threads(1)
    >>> fastcore.get_num_threads()
    1
    >>> fastcore.set_num_threads(None)
    """
    global _user_limit
    if n is not None:
        if isinstance(n, bool) or not hasattr(n, "__index__"):
            raise TypeError(f"argument `n`: expected None or a positive int, got {type(n).__name__}")
        n = int(n)
        if n < 1:
            raise ValueError(f"argument `n`: expected None or a positive int, got {n}")
    _user_limit = n
    _update()


@contextlib.contextmanager
def num_threads(n):
    """Context manager: :func:`set_num_threads` ``(n)`` inside the ``with`` block.

    Examples
    --------
    >>> import fastcore
    >>> with fastcore.num_threads(1):
    ...     fastcore.get_num_threads()
    1
    """
    global _user_limit
    old = _user_limit
    set_num_threads(n)
    try:
        yield
    finally:
        _user_limit = old
        _update()


def resolve_n_threads(n_threads, name="n_threads"):
    """Turn a user's ``n_threads`` into a positive thread count.

    ``None`` means :func:`get_num_threads`; ``-k`` (k >= 1) means that many but ``k - 1``
    (``-1``: the default; the joblib/scikit-learn convention), never fewer than one; a positive
    int is used as given (up to MAX_THREADS).  ``0``, larger values and non-integers are errors.
    """
    if type(n_threads) is int and 0 < n_threads <= MAX_THREADS:  # the common case, first
        return n_threads
    if n_threads is None:
        return _default
    if isinstance(n_threads, bool) or not hasattr(n_threads, "__index__"):
        raise TypeError(f"{name} must be None or an int, got {type(n_threads).__name__}")
    n_threads = int(n_threads)
    if n_threads == 0:
        raise ValueError(f"{name} must be a positive int, None (the default) or negative (the default but "
                         f"|{name}| - 1); got 0")
    if n_threads > MAX_THREADS:
        raise ValueError(f"{name} must be at most {MAX_THREADS}; got {n_threads}")
    return n_threads if n_threads > 0 else max(1, _default + 1 + n_threads)


def _register_threadpoolctl():
    """Make threadpoolctl's threadpool_info() list fastcore and threadpool_limits() limit it.

    The controller matches fastcore's ``_common`` extension by an exported marker symbol, so
    another package's ``_common`` module is never taken for ours."""
    try:
        import threadpoolctl
    except ImportError:  # pragma: no cover - a declared dependency; fastcore works without it
        return
    if not hasattr(threadpoolctl, "register") or not hasattr(threadpoolctl, "LibController"):
        return  # pragma: no cover - threadpoolctl < 3.5

    class FastcoreController(threadpoolctl.LibController):
        user_api = "fastcore"
        internal_api = "fastcore"
        filename_prefixes = ("_common",)
        check_symbols = ("fastcore_threadpool_marker",)

        def get_num_threads(self):
            return get_num_threads()

        def set_num_threads(self, num_threads):
            set_num_threads(num_threads)

        def get_version(self):
            from fastcore._version import __version__

            return __version__

    threadpoolctl.register(FastcoreController)


_register_threadpoolctl()
