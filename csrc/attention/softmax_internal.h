/* The implementations behind softmax.h's operations; softmax_dispatch.c picks one by the
 * problem's dtype and path.  The fast kernels are compiled once per precision (softmax_f32.c,
 * softmax_f64.c: the FC_NAME(fc_softmax) of a float32 unit is fc_softmax_f32); the reference
 * path is softmax_reference.c. */
#ifndef FC_SOFTMAX_INTERNAL_H
#define FC_SOFTMAX_INTERNAL_H

#include "attention/softmax.h"

int fc_softmax_f32(const fc_softmax_problem *p, void *out);
int fc_softmax_f64(const fc_softmax_problem *p, void *out);
int fc_softmax_ref(const fc_softmax_problem *p, void *out);

int fc_logsumexp_f32(const fc_softmax_problem *p, void *out);
int fc_logsumexp_f64(const fc_softmax_problem *p, void *out);
int fc_logsumexp_ref(const fc_softmax_problem *p, void *out);

#endif /* FC_SOFTMAX_INTERNAL_H */
