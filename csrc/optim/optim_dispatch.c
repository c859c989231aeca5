/* optim.h's and norm.h's operations: one function each, which picks the precision's
 * implementation by the request's dtype. */
#include "optim/optim_internal.h"

int fc_reduce(const fc_arrays *a, int kind, double p, double scale, double *out)
{
    return a == NULL ? (int)FC_BAD_ARGUMENT : FC_BY_DTYPE(a->dtype, fc_reduce, a, kind, p, scale, out);
}

int fc_global_norm(const fc_arrays *a, double p, double *norm)
{
    return a == NULL ? (int)FC_BAD_ARGUMENT : FC_BY_DTYPE(a->dtype, fc_global_norm, a, p, norm);
}

int fc_array_norms(const fc_arrays *a, double *l2, double *l1)
{
    return a == NULL ? (int)FC_BAD_ARGUMENT : FC_BY_DTYPE(a->dtype, fc_array_norms, a, l2, l1);
}

int fc_sgd_step(const fc_sgd_request *r)
{
    return r == NULL ? (int)FC_BAD_ARGUMENT : FC_BY_DTYPE(r->dtype, fc_sgd_step, r);
}

int fc_adam_step(const fc_adam_request *r)
{
    return r == NULL ? (int)FC_BAD_ARGUMENT : FC_BY_DTYPE(r->dtype, fc_adam_step, r);
}

int fc_bn_forward(const fc_bn_problem *p, void *y)
{
    return p == NULL ? (int)FC_BAD_ARGUMENT : FC_BY_DTYPE(p->dtype, fc_bn_forward, p, y);
}

int fc_bn_backward(const fc_bn_problem *p, const void *dy, void *dx, void *dgamma, void *dbeta)
{
    return p == NULL ? (int)FC_BAD_ARGUMENT : FC_BY_DTYPE(p->dtype, fc_bn_backward, p, dy, dx, dgamma, dbeta);
}
