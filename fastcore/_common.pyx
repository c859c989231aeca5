# cython: language_level=3
"""Status codes of the C kernels and their mapping to Python exceptions.

Every C entry point returns an ``fc_status`` code (``csrc/core/fc_status.h``).  This
module is the only place that maps those codes to Python: bindings call
:func:`check_status` right after leaving ``nogil``.
"""
from cpython.exc cimport PyErr_Occurred

import numpy as np

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
INTERRUPTED = FC_INTERRUPTED


def status_message(int status):
    """The C library's description of a status code."""
    return fc_status_message(status).decode("ascii")


cdef int check_status(int status, str where, bint warn_on_limit=True) except -1:
    """Raise (or warn) for a non-OK status; return the status otherwise.

    An exception left pending by a signal handler during the call (Ctrl-C) is re-raised
    first, whatever the status.  ``FC_NOT_CONVERGED`` and ``FC_MAX_ITER_REACHED`` give a
    :class:`ConvergenceWarning` when ``warn_on_limit`` is true (the caller keeps
    the code, e.g. for a ``log`` dict) and a :class:`ConvergenceError` otherwise.
    """
    if PyErr_Occurred():
        # a signal handler raised while the kernel ran (python_signal_check): re-raise it
        return -1
    if status == FC_OK:
        return 0
    msg = f"{where}: {status_message(status)}"
    if status == FC_INTERRUPTED:
        raise KeyboardInterrupt(msg)
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


cdef object _F32 = np.dtype(np.float32)
cdef object _F64 = np.dtype(np.float64)


cdef int dtype_of(object x, str name) except -1:
    """The request dtype (FC_FLOAT32 / FC_FLOAT64) of the array x.  Any other dtype is a bug
    of the Python layer, which converts first: a TypeError naming ``name``."""
    dt = x.dtype
    if dt is _F64 or dt == _F64:
        return FC_FLOAT64
    if dt is _F32 or dt == _F32:
        return FC_FLOAT32
    raise TypeError(f"internal: {name} must be float32 or float64, got {dt}")


cdef int raise_if_signalled() except -1:
    """Re-raise what a signal handler raised while a kernel ran (for bindings that handle a
    status themselves instead of calling :func:`check_status`)."""
    if PyErr_Occurred():
        return -1
    return 0


def raise_for_status(int status, str where, bint warn_on_limit=True):
    """Python-callable form of :func:`check_status` (returns the status)."""
    check_status(status, where, warn_on_limit)
    return status


cdef extern from *:
    """
    /* Exported (the extensions hide every other C symbol): threadpoolctl's controller for
     * fastcore (fastcore/_threads.py) recognises this module by it. */
    #if defined(_WIN32)
    __declspec(dllexport)
    #else
    __attribute__((visibility("default")))
    #endif
    int fastcore_threadpool_marker(void) { return 1; }

    #include "core/fc_simd.h"

    /* The code path of the kernels on this CPU: the SIMD backend (csrc/core/fc_simd.h) and, with
     * the multiversioned clones (FC_MULTIVERSION), the instruction set picked at load time. */
    static const char *fc_simd_path(void)
    {
    #if !FC_VECTOR_EXT
        return "plain C (portable backend, no vector extensions)";
    #elif FC_MULTIVERSION_CLONES
        __builtin_cpu_init();
        if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4 (AVX-512)";
        if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3 (AVX2 + FMA)";
        return "x86-64 baseline (SSE2)";
    #elif defined(FC_NO_MULTIVERSION) || defined(__SANITIZE_ADDRESS__)
        return "native build (no multiversioning)";
    #elif defined(__aarch64__) || defined(_M_ARM64)
        return "aarch64 (NEON)";
    #elif defined(__AVX2__)
        return "compiler flags (AVX2, no multiversioning)";
    #else
        return "target baseline (no multiversioning)";
    #endif
    }

    /* The compiler that built the kernels. */
    static const char *fc_compiler(void)
    {
    #if defined(__clang__)
        return "Clang " __clang_version__;
    #elif defined(__GNUC__)
        return "GCC " __VERSION__;
    #elif defined(_MSC_VER)
        return "MSVC";
    #else
        return "unknown";
    #endif
    }
    """
    int fastcore_threadpool_marker()
    const char *fc_simd_path()
    const char *fc_compiler()


def simd_path():
    """The instruction set the multiversioned C kernels use on this CPU (x86-64-v4, v3, ...)."""
    return fc_simd_path().decode("ascii")


def compiler():
    """The C compiler the kernels were built with (name and version)."""
    return fc_compiler().decode("ascii", "replace").strip()


def threads_backend():
    """How the kernels get their threads: a pool of the platform's threads (csrc/core/fc_pool.c)."""
    import sys

    return "win32 threads" if sys.platform == "win32" else "pthreads"

