/* What every family's reference path (<family>_reference.c) shares: reading and writing the
 * request's real arrays element by element in double, whatever their dtype.  Slow on purpose:
 * the reference paths are written for reading, not speed. */
#ifndef FC_REFERENCE_H
#define FC_REFERENCE_H

#include <stddef.h>
#include "core/fc_request.h"

/* a[i] as a double */
static inline double fc_ref_load(const void *a, fc_dtype t, ptrdiff_t i)
{
    return t == FC_FLOAT32 ? (double)((const float *)a)[i] : ((const double *)a)[i];
}

/* a[i] = v, rounded to the array's dtype */
static inline void fc_ref_store(void *a, fc_dtype t, ptrdiff_t i, double v)
{
    if (t == FC_FLOAT32)
        ((float *)a)[i] = (float)v;
    else
        ((double *)a)[i] = v;
}

/* 1 when t is not a dtype the kernels know */
static inline int fc_ref_bad_dtype(fc_dtype t) { return t != FC_FLOAT32 && t != FC_FLOAT64; }

#endif /* FC_REFERENCE_H */
