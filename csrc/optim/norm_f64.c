/* Batch normalisation (norm.h), float64: norm_impl.h instantiated for one precision.
 * norm_f32.c is the other; the two translation units compile in parallel. */
#define FC_REAL_DOUBLE 1
#include "optim/norm_unit.h"
