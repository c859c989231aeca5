/* The implementations behind sinkhorn.h's operations; sinkhorn_dispatch.c picks one by the
 * problem's dtype and path.  The fast kernels are compiled once per precision (sinkhorn_f32.c,
 * sinkhorn_f64.c: the FC_NAME(fc_sinkhorn_log) of a float32 unit is fc_sinkhorn_log_f32); the
 * reference path is sinkhorn_reference.c. */
#ifndef FC_SINKHORN_INTERNAL_H
#define FC_SINKHORN_INTERNAL_H

#include "ot/sinkhorn.h"

int fc_sinkhorn_log_f32(const fc_sinkhorn_problem *p, const fc_sinkhorn_state *st);
int fc_sinkhorn_log_f64(const fc_sinkhorn_problem *p, const fc_sinkhorn_state *st);
int fc_sinkhorn_log_ref(const fc_sinkhorn_problem *p, const fc_sinkhorn_state *st);

int fc_sinkhorn_knopp_f32(const fc_sinkhorn_problem *p, const fc_sinkhorn_state *st,
                          const fc_sinkhorn_plan_out *out);
int fc_sinkhorn_knopp_f64(const fc_sinkhorn_problem *p, const fc_sinkhorn_state *st,
                          const fc_sinkhorn_plan_out *out);
int fc_sinkhorn_knopp_ref(const fc_sinkhorn_problem *p, const fc_sinkhorn_state *st,
                          const fc_sinkhorn_plan_out *out);

int fc_sinkhorn_plan_f32(const fc_sinkhorn_problem *p, double inv_reg, const fc_sinkhorn_state *st,
                         const fc_sinkhorn_plan_out *out);
int fc_sinkhorn_plan_f64(const fc_sinkhorn_problem *p, double inv_reg, const fc_sinkhorn_state *st,
                         const fc_sinkhorn_plan_out *out);
int fc_sinkhorn_plan_ref(const fc_sinkhorn_problem *p, double inv_reg, const fc_sinkhorn_state *st,
                         const fc_sinkhorn_plan_out *out);

#endif /* FC_SINKHORN_INTERNAL_H */
