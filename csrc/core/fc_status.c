#include "core/fc_status.h"

const char *fc_status_message(int status)
{
    switch (status) {
    case FC_OK: return "ok";
    case FC_BAD_ARGUMENT: return "bad argument";
    case FC_OUT_OF_MEMORY: return "out of memory";
    case FC_NOT_CONVERGED: return "did not converge";
    case FC_MAX_ITER_REACHED: return "iteration limit reached";
    case FC_NON_FINITE: return "non-finite value (NaN or infinity)";
    case FC_INFEASIBLE: return "problem is infeasible";
    case FC_UNBOUNDED: return "problem is unbounded";
    case FC_INTERNAL: return "internal error (please report this as a bug)";
    case FC_INTERRUPTED: return "interrupted by a signal (Ctrl-C)";
    default: return "unknown status";
    }
}
