/* Status codes returned by every fastcore C entry point.
 *
 * C kernels never print, abort or raise: they return one of these codes and
 * the Cython layer (fastcore/_common.pyx) turns it into a Python exception or
 * warning.  Keep fc_status_message() and _common.pyx in step with this list.
 */
#ifndef FC_STATUS_H
#define FC_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum fc_status {
    FC_OK = 0,               /* success */
    FC_BAD_ARGUMENT = 1,     /* a size, pointer or parameter the caller should have rejected */
    FC_OUT_OF_MEMORY = 2,    /* a workspace allocation failed */
    FC_NOT_CONVERGED = 3,    /* an iterative method stopped at its tolerance budget */
    FC_MAX_ITER_REACHED = 4, /* an iteration limit given by the user was hit */
    FC_NON_FINITE = 5,       /* NaN or infinity met where it is not allowed */
    FC_INFEASIBLE = 6,       /* the problem has no feasible solution */
    FC_UNBOUNDED = 7,        /* the problem is unbounded */
    FC_INTERNAL = 8,         /* an invariant of the algorithm broke: a bug, please report */
    FC_INTERRUPTED = 9       /* a signal (Ctrl-C) raised while the kernel ran: it stopped early */
} fc_status;

/* A static, human-readable description of a status code (never NULL). */
const char *fc_status_message(int status);

#ifdef __cplusplus
}
#endif
#endif /* FC_STATUS_H */
