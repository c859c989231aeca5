/* Linear-chain CRF and MEMM kernels (see crf.h), float32: crf_impl.h instantiated for
 * one precision.  crf_f64.c is the other; two translation units compile in parallel. */
#define FC_REAL_DOUBLE 0
#include "crf_unit.h"
