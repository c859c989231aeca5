# Shared declarations for every fastcore binding: the C status codes and the one
# function that turns them into Python exceptions or warnings.

cdef extern from "core/fc_status.h" nogil:
    ctypedef enum fc_status:
        FC_OK
        FC_BAD_ARGUMENT
        FC_OUT_OF_MEMORY
        FC_NOT_CONVERGED
        FC_MAX_ITER_REACHED
        FC_NON_FINITE
        FC_INFEASIBLE
        FC_UNBOUNDED
        FC_INTERNAL
        FC_INTERRUPTED
    const char *fc_status_message(int status)

cdef int check_status(int status, str where, bint warn_on_limit=*) except -1
cdef int dtype_of(object x, str name) except -1
cdef int raise_if_signalled() except -1


# Ctrl-C in long kernels (csrc/core/fc_parallel.h): a module whose kernels check for signals calls
# fc_set_signal_check(python_signal_check) once at import; check_status then re-raises what a
# signal handler raised (KeyboardInterrupt) once the kernel has stopped.
cdef extern from "Python.h":
    int PyErr_CheckSignals()

cdef extern from "core/fc_parallel.h" nogil:
    void fc_set_signal_check(int (*check)() noexcept nogil)


cdef inline int python_signal_check() noexcept nogil:
    """Runs Python's signal handlers (the GIL taken for it); 1 if one raised, its exception
    then pending in this thread until check_status re-raises it."""
    with gil:
        return PyErr_CheckSignals() < 0


# What every request struct shares (csrc/core/fc_request.h): the element type of its real
# arrays and which implementation answers (the fast kernels, or a family's reference path).
cdef extern from "core/fc_request.h" nogil:
    ctypedef enum fc_dtype:
        FC_FLOAT32
        FC_FLOAT64
    ctypedef enum fc_path:
        FC_PATH_FAST
        FC_PATH_REFERENCE


# The one way a binding hands arrays to C: the data pointer of a C-contiguous buffer, read
# through the buffer protocol (no fused-type memoryview dispatch, which cost microseconds per
# call) and held in a Buffers until release_buffers.  Bindings put the pointers in the
# operation's request struct, set its dtype, and make one call with the GIL released.
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE

cdef enum:
    FC_MAX_BUFFERS = 24

cdef struct Buffers:
    Py_buffer v[FC_MAX_BUFFERS]
    int n


cdef inline void *buffer_ptr(Buffers *bs, object x, bint writable) except? NULL:
    """Data pointer of x's C-contiguous buffer, held in bs (NULL for None or an empty array)."""
    if x is None:
        return NULL
    if bs.n >= FC_MAX_BUFFERS:
        raise RuntimeError("internal: too many buffers for one call")
    cdef Py_buffer *v = &bs.v[bs.n]
    PyObject_GetBuffer(x, v, PyBUF_C_CONTIGUOUS | (PyBUF_WRITABLE if writable else 0))
    bs.n += 1
    return v.buf if v.len > 0 else NULL


cdef inline void release_buffers(Buffers *bs) noexcept:
    cdef int i
    for i in range(bs.n):
        PyBuffer_Release(&bs.v[i])
    bs.n = 0
