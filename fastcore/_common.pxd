# Shared declarations for every fastcore binding: the C status codes and the one
# function that turns them into Python exceptions or warnings.

cdef extern from "fc_status.h" nogil:
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
cdef int raise_if_signalled() except -1


# Ctrl-C in long kernels (csrc/fc_parallel.h): a module whose kernels check for signals calls
# fc_set_signal_check(python_signal_check) once at import; check_status then re-raises what a
# signal handler raised (KeyboardInterrupt) once the kernel has stopped.
cdef extern from "Python.h":
    int PyErr_CheckSignals()

cdef extern from "fc_parallel.h" nogil:
    void fc_set_signal_check(int (*check)() noexcept nogil)


cdef inline int python_signal_check() noexcept nogil:
    """Runs Python's signal handlers (the GIL taken for it); 1 if one raised, its exception
    then pending in this thread until check_status re-raises it."""
    with gil:
        return PyErr_CheckSignals() < 0
