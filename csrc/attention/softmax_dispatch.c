/* softmax.h's operations: one function each, which picks the implementation by the problem's
 * path (the reference path of softmax_reference.c, or the fast kernels) and dtype
 * (softmax_internal.h). */
#include "attention/softmax_internal.h"

#define FC_SOFTMAX_PICK(p, fn, out)                                                 \
    ((p)->path == FC_PATH_REFERENCE ? fn##_ref(p, out)                              \
     : (p)->path == FC_PATH_FAST    ? FC_BY_DTYPE((p)->dtype, fn, p, out)           \
                                    : (int)FC_BAD_ARGUMENT)

int fc_softmax(const fc_softmax_problem *p, void *out)
{
    if (p == NULL) return FC_BAD_ARGUMENT;
    return FC_SOFTMAX_PICK(p, fc_softmax, out);
}

int fc_logsumexp(const fc_softmax_problem *p, void *out)
{
    if (p == NULL) return FC_BAD_ARGUMENT;
    return FC_SOFTMAX_PICK(p, fc_logsumexp, out);
}
