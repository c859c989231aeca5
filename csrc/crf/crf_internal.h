/* The implementations behind crf.h's operations; crf_dispatch.c picks one by the problem's dtype
 * and path.  The fast kernels are compiled once per precision (crf_forward_f32.c, ...: the
 * FC_NAME(fc_crf_forward) of a float32 unit is fc_crf_forward_f32); the reference path is
 * crf_reference.c. */
#ifndef FC_CRF_INTERNAL_H
#define FC_CRF_INTERNAL_H

#include "crf/crf.h"

int fc_crf_forward_f32(const fc_crf_problem *p, double *logz, double *score);
int fc_crf_forward_f64(const fc_crf_problem *p, double *logz, double *score);
int fc_crf_forward_ref(const fc_crf_problem *p, double *logz, double *score);

int fc_crf_fb_f32(const fc_crf_problem *p, const fc_crf_fb_out *out);
int fc_crf_fb_f64(const fc_crf_problem *p, const fc_crf_fb_out *out);
int fc_crf_fb_ref(const fc_crf_problem *p, const fc_crf_fb_out *out);

int fc_crf_viterbi_f32(const fc_crf_problem *p, ptrdiff_t top_k, int64_t *paths, double *scores);
int fc_crf_viterbi_f64(const fc_crf_problem *p, ptrdiff_t top_k, int64_t *paths, double *scores);
int fc_crf_viterbi_ref(const fc_crf_problem *p, ptrdiff_t top_k, int64_t *paths, double *scores);

int fc_memm_nll_f32(const fc_crf_problem *p, int bidir, const double *weight, double *ll, void *g_em,
                    void *g_trans);
int fc_memm_nll_f64(const fc_crf_problem *p, int bidir, const double *weight, double *ll, void *g_em,
                    void *g_trans);
int fc_memm_nll_ref(const fc_crf_problem *p, int bidir, const double *weight, double *ll, void *g_em,
                    void *g_trans);

int fc_memm_potentials_f32(const fc_crf_problem *p, double wf, double wb, void *out);
int fc_memm_potentials_f64(const fc_crf_problem *p, double wf, double wb, void *out);
int fc_memm_potentials_ref(const fc_crf_problem *p, double wf, double wb, void *out);

int fc_crf_check_f32(const fc_crf_problem *p);
int fc_crf_check_f64(const fc_crf_problem *p);
int fc_crf_check_ref(const fc_crf_problem *p);

#endif /* FC_CRF_INTERNAL_H */
