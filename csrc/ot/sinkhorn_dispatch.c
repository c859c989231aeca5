/* sinkhorn.h's operations: one function each, which picks the implementation by the problem's
 * dtype (sinkhorn_f32.c or sinkhorn_f64.c). */
#include "ot/sinkhorn_internal.h"

int fc_sinkhorn_log(const fc_sinkhorn_problem *p, const fc_sinkhorn_state *st)
{
    if (p == NULL) return FC_BAD_ARGUMENT;
    return FC_BY_DTYPE(p->dtype, fc_sinkhorn_log, p, st);
}

int fc_sinkhorn_knopp(const fc_sinkhorn_problem *p, const fc_sinkhorn_state *st,
                      const fc_sinkhorn_plan_out *out)
{
    if (p == NULL) return FC_BAD_ARGUMENT;
    return FC_BY_DTYPE(p->dtype, fc_sinkhorn_knopp, p, st, out);
}

int fc_sinkhorn_plan(const fc_sinkhorn_problem *p, double inv_reg, const fc_sinkhorn_state *st,
                     const fc_sinkhorn_plan_out *out)
{
    if (p == NULL) return FC_BAD_ARGUMENT;
    return FC_BY_DTYPE(p->dtype, fc_sinkhorn_plan, p, inv_reg, st, out);
}
