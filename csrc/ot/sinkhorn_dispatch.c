/* sinkhorn.h's operations: one function each, which picks the implementation by the problem's
 * path (the reference path of sinkhorn_reference.c, or the fast kernels) and dtype
 * (sinkhorn_f32.c or sinkhorn_f64.c). */
#include "ot/sinkhorn_internal.h"

#define FC_SK_PICK(p, fn, ...)                                                      \
    ((p) == NULL                          ? (int)FC_BAD_ARGUMENT                    \
     : (p)->path == FC_PATH_REFERENCE     ? fn##_ref(p, __VA_ARGS__)                \
     : (p)->path == FC_PATH_FAST          ? FC_BY_DTYPE((p)->dtype, fn, p, __VA_ARGS__) \
                                          : (int)FC_BAD_ARGUMENT)

int fc_sinkhorn_log(const fc_sinkhorn_problem *p, const fc_sinkhorn_state *st)
{
    return FC_SK_PICK(p, fc_sinkhorn_log, st);
}

int fc_sinkhorn_knopp(const fc_sinkhorn_problem *p, const fc_sinkhorn_state *st,
                      const fc_sinkhorn_plan_out *out)
{
    return FC_SK_PICK(p, fc_sinkhorn_knopp, st, out);
}

int fc_sinkhorn_plan(const fc_sinkhorn_problem *p, double inv_reg, const fc_sinkhorn_state *st,
                     const fc_sinkhorn_plan_out *out)
{
    return FC_SK_PICK(p, fc_sinkhorn_plan, inv_reg, st, out);
}
