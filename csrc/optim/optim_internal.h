/* The implementations behind optim.h's and norm.h's operations; optim_dispatch.c picks one by
 * the request's dtype and path.  The fast kernels are compiled once per precision (optim_f32.c /
 * optim_f64.c, norm_f32.c / norm_f64.c: the FC_NAME(fc_sgd_step) of a float32 unit is
 * fc_sgd_step_f32); the reference path is optim_reference.c. */
#ifndef FC_OPTIM_INTERNAL_H
#define FC_OPTIM_INTERNAL_H

#include "optim/optim.h"
#include "optim/norm.h"

int fc_reduce_f32(const fc_arrays *a, int kind, double p, double scale, double *out);
int fc_reduce_f64(const fc_arrays *a, int kind, double p, double scale, double *out);
int fc_reduce_ref(const fc_arrays *a, int kind, double p, double scale, double *out);

int fc_global_norm_f32(const fc_arrays *a, double p, double *norm);
int fc_global_norm_f64(const fc_arrays *a, double p, double *norm);
int fc_global_norm_ref(const fc_arrays *a, double p, double *norm);

int fc_array_norms_f32(const fc_arrays *a, double *l2, double *l1);
int fc_array_norms_f64(const fc_arrays *a, double *l2, double *l1);
int fc_array_norms_ref(const fc_arrays *a, double *l2, double *l1);

int fc_sgd_step_f32(const fc_sgd_request *r);
int fc_sgd_step_f64(const fc_sgd_request *r);
int fc_sgd_step_ref(const fc_sgd_request *r);

int fc_adam_step_f32(const fc_adam_request *r);
int fc_adam_step_f64(const fc_adam_request *r);
int fc_adam_step_ref(const fc_adam_request *r);

int fc_bn_forward_f32(const fc_bn_problem *p, void *y);
int fc_bn_forward_f64(const fc_bn_problem *p, void *y);
int fc_bn_forward_ref(const fc_bn_problem *p, void *y);

int fc_bn_backward_f32(const fc_bn_problem *p, const void *dy, void *dx, void *dgamma, void *dbeta);
int fc_bn_backward_f64(const fc_bn_problem *p, const void *dy, void *dx, void *dgamma, void *dbeta);
int fc_bn_backward_ref(const fc_bn_problem *p, const void *dy, void *dx, void *dgamma, void *dbeta);

#endif /* FC_OPTIM_INTERNAL_H */
