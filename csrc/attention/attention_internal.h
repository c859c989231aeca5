/* The implementations behind attention.h's operations; attention_dispatch.c picks one by the
 * problem's dtype and path.  The fast kernels are compiled once per precision
 * (attention_forward_f32.c, ...: the FC_NAME(fc_attention) of a float32 unit is
 * fc_attention_f32); the reference path is attention_reference.c (fc_attention_finite has none). */
#ifndef FC_ATTENTION_INTERNAL_H
#define FC_ATTENTION_INTERNAL_H

#include "attention/attention.h"

int fc_attention_f32(const fc_attention_problem *p, void *out, void *lse);
int fc_attention_f64(const fc_attention_problem *p, void *out, void *lse);
int fc_attention_ref(const fc_attention_problem *p, void *out, void *lse);

int fc_attention_backward_f32(const fc_attention_problem *p, const fc_attention_grads *g);
int fc_attention_backward_f64(const fc_attention_problem *p, const fc_attention_grads *g);
int fc_attention_backward_ref(const fc_attention_problem *p, const fc_attention_grads *g);

int fc_attention_finite_f32(const void *x, ptrdiff_t n);
int fc_attention_finite_f64(const void *x, ptrdiff_t n);

#endif /* FC_ATTENTION_INTERNAL_H */
