/* attention.h's operations: one function each, which picks the implementation by the problem's
 * path (the reference path of attention_reference.c, or the fast kernels) and dtype
 * (attention_internal.h). */
#include "attention/attention_internal.h"

#define FC_ATTN_PICK(p, fn, ...)                                                    \
    ((p)->path == FC_PATH_REFERENCE ? fn##_ref(p, __VA_ARGS__)                      \
     : (p)->path == FC_PATH_FAST    ? FC_BY_DTYPE((p)->dtype, fn, p, __VA_ARGS__)   \
                                    : (int)FC_BAD_ARGUMENT)

int fc_attention(const fc_attention_problem *p, void *out, void *lse)
{
    if (p == NULL) return FC_BAD_ARGUMENT;
    return FC_ATTN_PICK(p, fc_attention, out, lse);
}

int fc_attention_backward(const fc_attention_problem *p, const fc_attention_grads *g)
{
    if (p == NULL || g == NULL) return FC_BAD_ARGUMENT;
    return FC_ATTN_PICK(p, fc_attention_backward, g);
}

int fc_attention_finite(fc_dtype dtype, const void *x, ptrdiff_t n)
{
    /* not FC_BY_DTYPE: its FC_BAD_ARGUMENT (1) would read as "finite" */
    return dtype == FC_FLOAT32 ? fc_attention_finite_f32(x, n)
         : dtype == FC_FLOAT64 ? fc_attention_finite_f64(x, n)
                               : -1;
}
