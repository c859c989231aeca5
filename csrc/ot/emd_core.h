/* The one exact solve that emd.c's entry points and documents.c share (internal: not part of
 * the public interface in emd.h). */
#ifndef FC_EMD_CORE_H
#define FC_EMD_CORE_H

#include <stddef.h>
#include <stdint.h>

/* Where a solve writes its plan: sparse triplets (rows, cols, vals; nnz entries) and/or the dense
 * (n, ldg) matrix G; any may be NULL. */
typedef struct {
    int64_t *rows, *cols;
    double *vals;
    ptrdiff_t nnz;
    double *G;
    ptrdiff_t ldg;
} fc_plan_out;

/* Solves one problem (the arguments of an fc_emd_problem, a and b not NULL when n, m > 0); the
 * cost (and, where non-NULL, the plan, the duals u (n) and v (m) and the pivot count) are
 * outputs.  Returns an fc_status code.  Positional, not an fc_emd_problem: it is the solver's
 * hot function (the simplex and assignment solvers are inlined into it). */
int fc_emd_core(ptrdiff_t n, ptrdiff_t m, const double *a, const double *b, const double *M, ptrdiff_t ldm,
                fc_plan_out *out, double *u, double *v, double *cost, long long max_iter, long long *n_iter);

#endif /* FC_EMD_CORE_H */
