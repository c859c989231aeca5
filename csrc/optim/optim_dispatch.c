/* optim.h's and norm.h's operations: one function each, which picks the implementation by the
 * request's path (the reference path of optim_reference.c, or the fast kernels) and dtype. */
#include "optim/optim_internal.h"

/* The operation fn for request req with arguments ...: fn_ref(...), fn_f32(...) or fn_f64(...). */
#define FC_OPTIM_PICK(req, fn, ...)                                                    \
    ((req) == NULL                      ? (int)FC_BAD_ARGUMENT                         \
     : (req)->path == FC_PATH_REFERENCE ? fn##_ref(__VA_ARGS__)                        \
     : (req)->path == FC_PATH_FAST      ? FC_BY_DTYPE((req)->dtype, fn, __VA_ARGS__)   \
                                        : (int)FC_BAD_ARGUMENT)

int fc_reduce(const fc_arrays *a, int kind, double p, double scale, double *out)
{
    return FC_OPTIM_PICK(a, fc_reduce, a, kind, p, scale, out);
}

int fc_global_norm(const fc_arrays *a, double p, double *norm)
{
    return FC_OPTIM_PICK(a, fc_global_norm, a, p, norm);
}

int fc_array_norms(const fc_arrays *a, double *l2, double *l1)
{
    return FC_OPTIM_PICK(a, fc_array_norms, a, l2, l1);
}

int fc_sgd_step(const fc_sgd_request *r)
{
    return FC_OPTIM_PICK(r, fc_sgd_step, r);
}

int fc_adam_step(const fc_adam_request *r)
{
    return FC_OPTIM_PICK(r, fc_adam_step, r);
}

int fc_bn_forward(const fc_bn_problem *p, void *y)
{
    return FC_OPTIM_PICK(p, fc_bn_forward, p, y);
}

int fc_bn_backward(const fc_bn_problem *p, const void *dy, void *dx, void *dgamma, void *dbeta)
{
    return FC_OPTIM_PICK(p, fc_bn_backward, p, dy, dx, dgamma, dbeta);
}
