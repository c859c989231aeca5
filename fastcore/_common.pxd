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
    const char *fc_status_message(int status)

cdef int check_status(int status, str where, bint warn_on_limit=*) except -1
