# cython: language_level=3
"""Status codes of the C kernels and their mapping to Python exceptions.

Every C entry point returns an ``fc_status`` code (``csrc/fc_status.h``).  This
module is the only place that maps those codes to Python: bindings call
:func:`check_status` right after leaving ``nogil``.
"""
from fastcore._errors import ConvergenceError, ConvergenceWarning, InternalError, warn_user

# The codes, for the Python layer (e.g. POT-style ``result_code`` in logs).
OK = FC_OK
BAD_ARGUMENT = FC_BAD_ARGUMENT
OUT_OF_MEMORY = FC_OUT_OF_MEMORY
NOT_CONVERGED = FC_NOT_CONVERGED
MAX_ITER_REACHED = FC_MAX_ITER_REACHED
NON_FINITE = FC_NON_FINITE
INFEASIBLE = FC_INFEASIBLE
UNBOUNDED = FC_UNBOUNDED
INTERNAL = FC_INTERNAL


def status_message(int status):
    """The C library's description of a status code."""
    return fc_status_message(status).decode("ascii")


cdef int check_status(int status, str where, bint warn_on_limit=True) except -1:
    """Raise (or warn) for a non-OK status; return the status otherwise.

    ``FC_NOT_CONVERGED`` and ``FC_MAX_ITER_REACHED`` give a
    :class:`ConvergenceWarning` when ``warn_on_limit`` is true (the caller keeps
    the code, e.g. for a ``log`` dict) and a :class:`ConvergenceError` otherwise.
    """
    if status == FC_OK:
        return 0
    msg = f"{where}: {status_message(status)}"
    if status == FC_BAD_ARGUMENT:
        raise ValueError(msg)
    if status == FC_OUT_OF_MEMORY:
        raise MemoryError(msg)
    if status == FC_NOT_CONVERGED or status == FC_MAX_ITER_REACHED:
        if warn_on_limit:
            warn_user(msg, ConvergenceWarning)
            return status
        raise ConvergenceError(msg)
    if status == FC_NON_FINITE or status == FC_INFEASIBLE or status == FC_UNBOUNDED:
        raise ValueError(msg)
    raise InternalError(f"{msg} (status {status})")


def raise_for_status(int status, str where, bint warn_on_limit=True):
    """Python-callable form of :func:`check_status` (returns the status)."""
    check_status(status, where, warn_on_limit)
    return status


def openmp_enabled():
    """Whether the extensions were compiled with OpenMP."""
    return bool(_OPENMP_ENABLED)


cdef extern from *:
    """
    #ifdef _OPENMP
    #define FC_OPENMP_ENABLED 1
    #else
    #define FC_OPENMP_ENABLED 0
    #endif
    """
    int FC_OPENMP_ENABLED

_OPENMP_ENABLED = FC_OPENMP_ENABLED
