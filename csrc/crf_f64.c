/* Linear-chain CRF and MEMM kernels (see crf.h), float64: crf_impl.h instantiated for
 * one precision.  crf_f32.c is the other; two translation units compile in parallel. */
#define FC_REAL_DOUBLE 1
#include "crf_unit.h"
