/* softmax.h's operations: one function each, which picks the precision's implementation by
 * the problem's dtype (softmax_internal.h). */
#include "attention/softmax_internal.h"

int fc_softmax(const fc_softmax_problem *p, void *out)
{
    if (p == NULL) return FC_BAD_ARGUMENT;
    return FC_BY_DTYPE(p->dtype, fc_softmax, p, out);
}

int fc_logsumexp(const fc_softmax_problem *p, void *out)
{
    if (p == NULL) return FC_BAD_ARGUMENT;
    return FC_BY_DTYPE(p->dtype, fc_logsumexp, p, out);
}
