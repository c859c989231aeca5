/* Batch normalisation (norm.h), float32: norm_impl.h instantiated for one precision.
 * norm_f64.c is the other; the two translation units compile in parallel. */
#define FC_REAL_DOUBLE 0
#include "optim/norm_unit.h"
