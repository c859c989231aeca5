/* crf.h's operations: one function each, which picks the implementation by the problem's
 * path (the reference path of crf_reference.c, or the fast kernels) and dtype. */
#include "crf/crf_internal.h"

#define FC_CRF_PICK(p, fn, ...)                                                     \
    ((p) == NULL                          ? (int)FC_BAD_ARGUMENT                    \
     : (p)->path == FC_PATH_REFERENCE     ? fn##_ref(p, __VA_ARGS__)                \
     : (p)->path == FC_PATH_FAST          ? FC_BY_DTYPE((p)->dtype, fn, p, __VA_ARGS__) \
                                          : (int)FC_BAD_ARGUMENT)

int fc_crf_forward(const fc_crf_problem *p, double *logz, double *score)
{
    return FC_CRF_PICK(p, fc_crf_forward, logz, score);
}

int fc_crf_fb(const fc_crf_problem *p, const fc_crf_fb_out *out)
{
    return FC_CRF_PICK(p, fc_crf_fb, out);
}

int fc_crf_viterbi(const fc_crf_problem *p, ptrdiff_t top_k, int64_t *paths, double *scores)
{
    return FC_CRF_PICK(p, fc_crf_viterbi, top_k, paths, scores);
}

int fc_memm_nll(const fc_crf_problem *p, int bidir, const double *weight, double *ll, void *g_em, void *g_trans)
{
    if (g_trans != NULL && g_em == NULL) return FC_BAD_ARGUMENT; /* the gradients come together */
    return FC_CRF_PICK(p, fc_memm_nll, bidir, weight, ll, g_em, g_trans);
}

int fc_memm_potentials(const fc_crf_problem *p, double wf, double wb, void *out)
{
    return FC_CRF_PICK(p, fc_memm_potentials, wf, wb, out);
}

int fc_crf_check(const fc_crf_problem *p)
{
    if (p == NULL) return -1;
    if (p->path == FC_PATH_REFERENCE) return fc_crf_check_ref(p);
    return p->dtype == FC_FLOAT32 ? fc_crf_check_f32(p) : p->dtype == FC_FLOAT64 ? fc_crf_check_f64(p) : -1;
}
