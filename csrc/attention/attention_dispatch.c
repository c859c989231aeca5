/* attention.h's operations: one function each, which picks the precision's implementation by
 * the problem's dtype (attention_internal.h). */
#include "attention/attention_internal.h"

int fc_attention(const fc_attention_problem *p, void *out, void *lse)
{
    if (p == NULL) return FC_BAD_ARGUMENT;
    return FC_BY_DTYPE(p->dtype, fc_attention, p, out, lse);
}

int fc_attention_backward(const fc_attention_problem *p, const fc_attention_grads *g)
{
    if (p == NULL || g == NULL) return FC_BAD_ARGUMENT;
    return FC_BY_DTYPE(p->dtype, fc_attention_backward, p, g);
}

int fc_attention_finite(fc_dtype dtype, const void *x, ptrdiff_t n)
{
    /* not FC_BY_DTYPE: its FC_BAD_ARGUMENT (1) would read as "finite" */
    return dtype == FC_FLOAT32 ? fc_attention_finite_f32(x, n)
         : dtype == FC_FLOAT64 ? fc_attention_finite_f64(x, n)
                               : -1;
}
